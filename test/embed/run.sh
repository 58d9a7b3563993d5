#!/usr/bin/env bash
# tvdb.embed and tvdb.search(text) against the fake OpenAI, from an
# application's backend: the vector is the service's (at unit length), the
# request is in the ledger at its price (committed before it goes, so a
# rollback keeps it), a repeated question is not sent
# again, budgets and a blocked circuit refuse before anything is sent,
# statement_timeout and a cancel stop a slow request at once, a model other
# than the documents' is refused, and mock mode sends nothing.  Starts and
# stops its own cluster.  Prints TAP; exits non-zero on any failure.
set -uo pipefail
source "$(dirname "$0")/../../scripts/common.sh"
source "$(dirname "$0")/../lib/tap.sh"
cd "$TVDB_ROOT"
DB=tvdb_embed
WORK=$(mktemp -d /tmp/tvdb-embed-test.XXXXXX)
KEY=test-openai-key

q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB" -c "$1"; }
# the SQLSTATE and message of a statement that must fail
err() { psql -X -q -At -v VERBOSITY=verbose -d "$DB" -c "$1" 2>&1 | sed -n 's/^ERROR:  //p' | head -1; }
sys() { psql -X -q -d postgres -c "ALTER SYSTEM SET $1" -c "SELECT pg_reload_conf()" >/dev/null; sleep 0.3; }
requests() { curl -s "http://127.0.0.1:$OA/_stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])'; }
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; tvdb_cluster_stop; rm -rf "$WORK"; }
trap cleanup EXIT
trap "exit 1" TERM INT

tvdb_cluster_start >/dev/null || exit 1
start_fake fake_openai.py "$WORK/oa" --api-key "$KEY"
OA=$(cat "$WORK/oa")
psql -X -q -d postgres -c "CREATE DATABASE $DB"
q "SET client_min_messages = error; CREATE EXTENSION tvdb CASCADE"   # no workers serve it
sys "tvdb.service_mode = 'real'"
sys "tvdb.openai_base_url = 'http://127.0.0.1:$OA/v1'"
sys "tvdb.openai_api_key = '$KEY'"
q "CREATE ROLE embed_app LOGIN IN ROLE tvdb_app"

# 1. The vector is the service's, at unit length.
QUESTION='How do retries avoid spending twice?'
curl -s -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
     -d "{\"model\": \"text-embedding-3-small\", \"input\": \"$QUESTION\", \"encoding_format\": \"float\"}" \
     "http://127.0.0.1:$OA/v1/embeddings" \
     | python3 -c 'import json,sys; print("{" + ",".join(repr(x) for x in json.load(sys.stdin)["data"][0]["embedding"]) + "}")' \
     > "$WORK/expected"
before=$(requests)
got=$(q "SELECT array_length(e, 1) || ' ' || (SELECT max(abs(a - b)) < 1e-6 FROM unnest(e, '$(cat "$WORK/expected")'::real[]) t(a, b))
         || ' ' || round(sqrt((SELECT sum(x * x) FROM unnest(e) x))::numeric, 5)
         FROM tvdb.embed('$QUESTION') e")
is "$got" "1536 true 1.00000" "tvdb.embed returns OpenAI's vector for the question, 1536 dimensions at unit length"
is "$(requests)" "$((before + 1))" "one request was sent"

# 2. In the ledger, at the model's price.
row=$(q "SELECT service, operation, http_status, inputs, prompt_tokens, state,
                cost_usd = tvdb._openai_cost(prompt_tokens, 'text-embedding-3-small'), cost_usd > 0
         FROM upload_pipeline.usage WHERE operation = 'query_embedding'")
tokens=$(( (${#QUESTION} + 3) / 4 ))
is "$row" "openai|query_embedding|200|1|$tokens|answered|t|t" "the request is one ledger row: 200, the service's prompt tokens, their price"

# 3. A repeated question is answered from the session's cache: no request, no row.
got="$(q "SELECT tvdb.embed('$QUESTION') = tvdb.embed('$QUESTION')")|$(q "SELECT count(*) FROM upload_pipeline.usage WHERE operation = 'query_embedding'")"
is "$got" "t|2" "in one session the question is sent once (the second call is the cache's)"
is "$(requests)" "$((before + 2))" "a new session sent it once more, then used its cache"
q "SET tvdb.query_cache_entries = 0; SELECT tvdb.embed('$QUESTION'), tvdb.embed('$QUESTION')" >/dev/null
is "$(requests)" "$((before + 4))" "with tvdb.query_cache_entries = 0 every call is sent"

# 4. tvdb.search(text): the question's vector against stored vectors of the model.
q "SET client_min_messages = error; SELECT tvdb.upload('notes.md', convert_to('notes', 'UTF8'))" >/dev/null
q "INSERT INTO upload_pipeline.document_chunks (document_id, job_id, chunk_index, content, token_estimate, sha256, embedding, model)
   SELECT j.document_id, j.job_id, i, t, 3, repeat('0', 64), tvdb.embed(t), 'text-embedding-3-small'
   FROM upload_pipeline.upload_jobs j,
        unnest(ARRAY['Retries reserve the budget first.', 'Webhooks are signed.', '$QUESTION']) WITH ORDINALITY AS u(t, i)"
got=$(psql -X -q -At -d "$DB" -U embed_app -c "SELECT content, round(distance::numeric, 4) FROM tvdb.search('$QUESTION', 1)")
is "$got" "$QUESTION|0.0000" "an application's tvdb.search(text) finds the chunk with the question's own text at distance 0"

# 2b. The row is committed before the request goes: a caller that rolls back
# does not take the record of what its question may have cost with it.
q "BEGIN; SELECT tvdb.embed('asked, then rolled back') IS NOT NULL; ROLLBACK;" >/dev/null
row=$(q "SELECT state, reserved_usd = estimated_usd AND estimated_usd > 0 FROM upload_pipeline.usage
         WHERE operation = 'query_embedding' ORDER BY usage_id DESC LIMIT 1")
is "$row" "sent|t" "after a rollback the request's row stays, sent and held at its estimate"
q "SELECT tvdb._requests_lost()" >/dev/null
row=$(q "SELECT state, reserved_usd = estimated_usd FROM upload_pipeline.usage
         WHERE operation = 'query_embedding' ORDER BY usage_id DESC LIMIT 1")
is "$row" "unknown|t" "and once its session is gone it is unknown, still counted at its estimate"

# 5. A budget with no room refuses before anything is sent.
before=$(requests)
q "SELECT tvdb.set_budget('openai', 'day', 0.0000000001)" >/dev/null
got=$(err "SELECT tvdb.embed('a question no one asked before')")
case "$got" in TV006:\ a\ budget\ has\ no\ room*) r=0 ;; *) r=1 ;; esac
ok $r "an exhausted budget refuses with TV006" "$got"
is "$(requests)" "$before" "nothing was sent"
is "$(q "SELECT count(*) FROM tvdb.alerts WHERE kind = 'budget_exhausted'")" "1" "and the budget's exhaustion is an alert, as when a worker meets it"
q "SELECT tvdb.set_budget('openai', 'day', NULL)" >/dev/null

# 6. statement_timeout and a cancel stop a slow request at once.
curl -s -d '{"latency": 5}' "http://127.0.0.1:$OA/_control" >/dev/null
start=$(date +%s%N)
got=$(err "SET statement_timeout = '500ms'; SELECT tvdb.embed('a slow question')")
ms=$(( ($(date +%s%N) - start) / 1000000 ))
is "$got" "57014: canceling statement due to statement timeout" "statement_timeout stops a request the service is slow to answer"
[ "$ms" -lt 3000 ]; ok $? "within 3 s of its start, not the 5 s the service takes" "took $ms ms"
psql -X -q -At -d "$DB" -c "SELECT tvdb.embed('another slow question')" >"$WORK/cancel.out" 2>&1 &
cancelled=$!
sleep 1
start=$(date +%s%N)
q "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%another slow question%' AND pid <> pg_backend_pid()" >/dev/null
wait $cancelled
ms=$(( ($(date +%s%N) - start) / 1000000 ))
grep -q "canceling statement due to user request" "$WORK/cancel.out"; ok $? "pg_cancel_backend stops it" "$(cat "$WORK/cancel.out")"
[ "$ms" -lt 2000 ]; ok $? "at once" "took $ms ms"
curl -s -d '{"latency": 0}' "http://127.0.0.1:$OA/_control" >/dev/null

# 7. A refused key blocks the circuit; then nothing is sent until it is reset.
sys "tvdb.openai_api_key = 'a-wrong-key'"
got=$(err "SELECT tvdb.embed('is the key right?')")
case "$got" in TV005:\ openai\ did\ not\ embed\ the\ query:\ HTTP\ 401*) r=0 ;; *) r=1 ;; esac
ok $r "a 401 is TV005 naming the answer" "$got"
is "$(q "SELECT state FROM tvdb.circuits WHERE service = 'openai'")" "blocked" "and blocks openai's circuit, as the worker's answers do"
before=$(requests)
got=$(err "SELECT tvdb.embed('is the key right now?')")
case "$got" in TV005:\ openai\ cannot\ embed\ the\ query\ now:\ its\ circuit\ is\ blocked*) r=0 ;; *) r=1 ;; esac
ok $r "then a query is refused with TV005: the circuit is blocked" "$got"
is "$(requests)" "$before" "and nothing is sent"
sys "tvdb.openai_api_key = '$KEY'"
q "SELECT tvdb.reset_circuit('openai')" >/dev/null
is "$(q "SELECT array_length(tvdb.embed('is the key right now?'), 1)")" "1536" "with the key fixed and the circuit reset, it embeds again"

# 8. Another model than the documents' is refused.
got=$(err "SELECT tvdb.embed('a question', 'text-embedding-3-large')")
case "$got" in 22023:\ documents\ are\ embedded\ with\ model\ \"text-embedding-3-small\"*) r=0 ;; *) r=1 ;; esac
ok $r "a model other than the documents' is refused (22023)" "$got"

# 9. Mock mode: the built-in embedder, nothing sent.
sys "tvdb.service_mode = 'mock'"
before=$(requests)
is "$(q "SELECT tvdb.embed('offline question') = tvdb.embed('offline question', 'mock')")" "t" "in mock mode the question is embedded by the built-in embedder"
is "$(requests)" "$before" "and nothing is sent"

tap_done
