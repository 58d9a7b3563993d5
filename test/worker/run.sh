#!/usr/bin/env bash
# The real background worker against the fake LlamaParse and OpenAI servers,
# over real HTTP.  Needs a running cluster (PGHOST/PGPORT/PGUSER, TVDB_PGDATA)
# started with tvdb.database = 'tvdb_worker' and tvdb.workers = 2.
#
#  1. 120 documents of mixed type and size, some failing parse: final states,
#     each job's event order, chunk sizes and embedding dimensions, and the
#     usage ledger against the fake servers' own request counts.
#  2. 80 more with the fakes slowed down and a worker killed with kill -9
#     mid-run: every document still ends complete or failed, no duplicates.
#  2b. Five worker kills and two pg_ctl restart -m immediate in one run.
#  3. SIGTERM with requests in flight: the worker is gone within a second.
#  4. Callbacks as LlamaParse sends them, through tvdb-webhookd: a v1 push is
#     applied without a fetch; a LlamaCloud event makes the worker poll at once.
#  5. Mock mode: no network; same text gives the same vector.
#  1g-1s. The resilience drills: circuits, backoff, rate limits, storms;
#      1r: the same bytes and the same text are not paid for twice;
#      1z: a job cancelled while its request is in flight: the answer is
#      ignored, its cost recorded;
#      1y: hybrid mode: the mock stands in for a blocked service, and its
#      work is redone by the service when it is back.
#  7. pg_cron runs tvdb.retry_failed() and tvdb.reap_stuck().
# Prints TAP; exits non-zero on any failure.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../lib/tap.sh"
DB=tvdb_worker
WORK=$(mktemp -d /tmp/tvdb-worker-test.XXXXXX)

cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB" -c "$1"; }
wait_ready() {
    for _ in $(seq 1 120); do pg_isready -q && psql -X -q -d "$DB" -c "select 1" >/dev/null 2>&1 && return 0; sleep 0.5; done
    return 1
}
# Wait until no job of the given filename prefix is still in flight.
wait_settled() {
    for _ in $(seq 1 "${2:-240}"); do
        left=$(q "select count(*) from upload_pipeline.upload_jobs j join upload_pipeline.documents d using (document_id)
                  where d.filename like '$1%' and j.status not in ('complete', 'failed_parse', 'failed_chunking', 'failed_embedding', 'cancelled')" 2>/dev/null)
        [ "$left" = "0" ] && return 0
        sleep 0.5
    done
    echo "# still in flight: $left"
    return 1
}

start_fake fake_llamaparse.py "$WORK/lp" --parse-latency 0.3 --fail-marker FAILME
start_fake fake_openai.py "$WORK/oa" --shuffle
LP=$(cat "$WORK/lp"); OA=$(cat "$WORK/oa")

psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
psql -X -q -d "$DB" -c "SET client_min_messages = warning" -c "CREATE EXTENSION tvdb CASCADE"
psql -X -q -d postgres <<SQL
ALTER SYSTEM SET tvdb.service_mode = 'real';
ALTER SYSTEM SET tvdb.llamaparse_base_url = 'http://127.0.0.1:$LP';
ALTER SYSTEM SET tvdb.openai_base_url = 'http://127.0.0.1:$OA/v1';
ALTER SYSTEM SET tvdb.llamaparse_api_key = 'test-llamaparse-key';
ALTER SYSTEM SET tvdb.openai_api_key = 'test-openai-key';
ALTER SYSTEM SET tvdb.embedding_dimensions = 64;
ALTER SYSTEM SET tvdb.poll_interval_min = '100ms';
ALTER SYSTEM SET tvdb.poll_interval_max = '500ms';
ALTER SYSTEM SET tvdb.lease_seconds = 4;
ALTER SYSTEM SET tvdb.http_timeout = '8s';
ALTER SYSTEM SET tvdb.connect_timeout = '2s';
ALTER SYSTEM SET tvdb.chunk_overlap_tokens = 16;
ALTER SYSTEM SET tvdb.chunk_target_tokens = 96;
-- no reuse of earlier parses or vectors but where a phase asks for it:
-- the phases upload the same generated documents again
ALTER SYSTEM SET tvdb.reuse_parses = off;
ALTER SYSTEM SET tvdb.embedding_cache = off;
-- no rate limits here but where a phase sets them
ALTER SYSTEM SET tvdb.llamaparse_requests_per_minute = 0;
ALTER SYSTEM SET tvdb.openai_requests_per_minute = 0;
ALTER SYSTEM SET tvdb.openai_tokens_per_minute = 0;
SELECT pg_reload_conf();
SQL
sleep 0.5

# Documents: markdown with sections, plain text, HTML and PDF-ish bytes, of
# sizes from a line to ~60 KB; every 12th (a PDF) named to fail at LlamaParse.
# Markdown and plain text are parsed by the built-in parser, the rest by LlamaParse.
upload_batch() {  # upload_batch <prefix> <count>
    q "SELECT count(tvdb.upload(
          format('$1-%s%s.%s', i, CASE WHEN i % 12 = 11 THEN '-FAILME' ELSE '' END,
                 (ARRAY['md', 'txt', 'html', 'pdf'])[1 + i % 4]),
          convert_to(CASE i % 4
            WHEN 0 THEN (SELECT string_agg(format(E'# Part %s\n\n## Section %s.%s\n\n%s\n', i, i, k,
                               repeat(format('Sentence %s of part %s is here. ', k, i), 1 + (i * k) % 40)), '')
                         FROM generate_series(1, 1 + i % 6) k)
            WHEN 1 THEN repeat(format('Plain text line %s. ', i), 1 + (i * 37) % 900)
            WHEN 2 THEN format('<h1>Page %s</h1><p>%s</p>', i, repeat('html words go here. ', 1 + i % 300))
            ELSE '%PDF-1.4 ' || repeat(md5(i::text), 1 + i % 200) END, 'UTF8')))
       FROM generate_series(1, $2) i" >/dev/null
}
expected_path="uploaded,parse_queued,parsed,chunking,chunks_stored,embedding_queued,embedding_in_progress,embeddings_stored,complete"

echo "# phase 1: 120 documents, two workers"
workers_up() {  # the workers restart within seconds of their database appearing
    for _ in $(seq 1 40); do
        [ "$(q "select count(*) from pg_stat_activity where backend_type = 'tvdb worker' and datname = '$DB'")" = 2 ] && return 0
        sleep 0.5
    done
    return 1
}
workers_up; ok $? "two workers serve the database"
upload_batch p1 120
wait_settled p1-; ok $? "every phase-1 document reached complete or a failure state"
is "$(q "select count(*) from tvdb.jobs where filename like 'p1-%' and status = 'complete'")" 110 "110 documents complete"
is "$(q "select count(*) from tvdb.jobs where filename like 'p1-%' and status = 'failed_parse'
          and last_error like '%ERROR%FAKE_PARSE_ERROR%'")" 10 "10 failed parse with LlamaParse's error code and message"
is "$(q "select count(*) || ' ' || sum(count) from upload_pipeline.alerts where kind = 'job_failed' and service = 'llamaparse'")" \
   "1 10" "the ten failures are one alert with a count of 10"
is "$(q "select count(*) from tvdb.jobs j where filename like 'p1-%' and status = 'complete' and
          (select string_agg(to_status, ',' order by seq) from upload_pipeline.events e
           where e.job_id = j.job_id and to_status is not null) <> '$expected_path'")" 0 \
   "each complete job's events follow the nine states in order, once each"
is "$(q "select count(*) from tvdb.jobs j where filename like 'p1-%' and status = 'failed_parse' and
          (select string_agg(to_status, ',' order by seq) from upload_pipeline.events e
           where e.job_id = j.job_id and to_status is not null) <> 'uploaded,parse_queued,failed_parse'")" 0 \
   "each failed job's events are uploaded, parse_queued, failed_parse"
is "$(q "select count(*) from upload_pipeline.blobs b join upload_pipeline.upload_jobs j on b.document_id = j.document_id and b.path = j.parsed_path
          join upload_pipeline.documents d on d.document_id = j.document_id
          where d.filename like 'p1-%' and b.path = format('storage://parsed/%s/%s.md', j.document_id, j.job_id)
            and b.sha256 = j.parsed_sha256")" 110 "parsed markdown stored at storage://parsed/{document_id}/{job_id}.md"
is "$(q "select count(*) from upload_pipeline.document_chunks c join upload_pipeline.documents d using (document_id)
          where d.filename like 'p1-%' and (octet_length(c.content) > 8192 or c.content = ''
                or c.token_estimate <> ceil(octet_length(c.content) / 4.0))")" 0 \
   "every chunk is non-empty, under 8192 bytes, with its token estimate"
is "$(q "select count(*) from (select c.document_id, max(chunk_index) + 1 = count(*) as dense
          from upload_pipeline.document_chunks c join upload_pipeline.documents d using (document_id)
          where d.filename like 'p1-%' group by 1) s where not dense")" 0 "chunk indexes are 0..n-1 per document"
is "$(q "select count(*) > 200 from upload_pipeline.document_chunks c join upload_pipeline.documents d using (document_id)
          where d.filename like 'p1-%'")" t "large documents were cut into several chunks"
is "$(q "select count(*) from upload_pipeline.document_chunks c join upload_pipeline.documents d using (document_id)
          where d.filename like 'p1-%.md' and not (array_length(c.heading_path, 1) = 2
                and c.heading_path[1] ~ '^Part [0-9]+$' and c.heading_path[2] ~ '^Section [0-9]+\.[0-9]+$'
                and c.content not like '#%')")" 0 "markdown chunks carry their heading path (Part > Section), not the heading line"
is "$(q "select count(*) from upload_pipeline.document_chunks c join upload_pipeline.documents d using (document_id)
          where d.filename like 'p1-%' and (c.embedding is null or array_length(c.embedding, 1) <> 64)")" 0 \
   "every chunk has a 64-dimension embedding"
is "$(q "select string_agg(distinct c.model, ',') || ' ' || (select string_agg(distinct u.model, ',') from upload_pipeline.usage u where u.service = 'openai')
          from upload_pipeline.document_chunks c join upload_pipeline.documents d using (document_id) where d.filename like 'p1-%'")" \
   "text-embedding-3-small text-embedding-3-small" "every chunk and every embeddings ledger row names the model"
is "$(q "select count(*) from (select job_id from upload_pipeline.usage where service = 'llamaparse'
          and operation = 'upload' and http_status = 200 group by 1 having count(*) > 1) s")" 0 \
   "no document was submitted twice (two workers never took the same job)"

stats_lp=$(curl -s "127.0.0.1:$LP/_stats"); stats_oa=$(curl -s "127.0.0.1:$OA/_stats")
jget() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))" "$1" "$2"; }
is "$(q "select count(*) from upload_pipeline.usage where service = 'llamaparse' and operation = 'upload'")" \
   "$(jget "$stats_lp" "d['uploads']")" "usage: LlamaParse uploads match the fake's count"
is "$(q "select count(*) from upload_pipeline.usage where service = 'llamaparse' and operation = 'job_status'")" \
   "$(jget "$stats_lp" "d['job_polls']")" "usage: LlamaParse polls match the fake's count"
is "$(q "select count(*) from upload_pipeline.usage where service = 'llamaparse' and operation = 'result'")" \
   "$(jget "$stats_lp" "d['result_fetches']")" "usage: LlamaParse result fetches match the fake's count"
is "$(q "select coalesce(sum(pages), 0) from upload_pipeline.usage where service = 'llamaparse' and operation = 'result'")" \
   "$(jget "$stats_lp" "d['result_pages_served']")" "usage: pages match the fake's count"
is "$(q "select count(*) from upload_pipeline.usage where service = 'openai'")" \
   "$(jget "$stats_oa" "d['requests']")" "usage: OpenAI requests match the fake's count"
is "$(q "select sum(prompt_tokens) from upload_pipeline.usage where service = 'openai'")" \
   "$(jget "$stats_oa" "d['prompt_tokens']")" "usage: prompt tokens match the fake's count"
is "$(q "select sum(inputs) from upload_pipeline.usage where service = 'openai' and http_status = 200")" \
   "$(q "select count(*) from upload_pipeline.document_chunks")" "usage: one embedding input per chunk"
is "$(q "select bool_and(cost_usd > 0) from upload_pipeline.usage where service = 'openai'")" t "usage: embedding cost recorded"
is "$(q "select count(*) filter (where state <> 'answered') || ' ' || bool_and(estimated_usd is not null) || ' ' || sum(reserved_usd)
          from upload_pipeline.usage where service in ('llamaparse', 'openai')")" "0 true 0" \
   "usage: every request had its row, with an estimate, before it went; all answered, nothing still reserved"
is "$(q "select abs(sum(estimated_usd) - sum(cost_usd)) <= 0.1 * sum(cost_usd) from upload_pipeline.usage where service = 'openai'")" t \
   "usage: OpenAI's estimates were within 10 % of the actual cost"
is "$(q "select abs((select sum(cost_usd) from tvdb.document_costs) - (select sum(cost_usd) from upload_pipeline.usage)) < 1e-6
               and (select count(*) from tvdb.document_costs c join tvdb.jobs j using (document_id)
                    where j.filename like 'p1-%' and j.status = 'complete' and c.openai_usd > 0) = 110")" t \
   "cost per document: shares of batched requests add up to the ledger's total; every complete document has its embedding cost"
is "$(q "select count(*) filter (where u.service = 'local' and u.operation = 'parse' and u.cost_usd = 0)
               || ' ' || count(*) filter (where u.service = 'llamaparse')
          from upload_pipeline.usage u join tvdb.jobs j using (job_id)
          where j.filename like 'p1-%.md' or j.filename like 'p1-%.txt'")" "60 0" \
   "markdown and plain text were parsed by the built-in parser, at no cost, never sent to LlamaParse"
is "$(jget "$(curl -s "127.0.0.1:$LP/_stats?jobs=1")" "sorted({k for j in d['job_list'] for k in j.get('fields', {})})")" "[]" \
   "uploads carried the file and no other field (no tvdb ids: LlamaParse refuses unknown fields)"
is "$(jget "$stats_oa" "sorted(d['by_encoding'])")" "['base64']" \
   "embeddings are asked for as base64, as the official client does (read in C)"

echo "# phase 1b: rate limits and server errors are retried; a 4xx from OpenAI fails the stage"
curl -s -X POST "127.0.0.1:$LP/_control" -d '{"rate_limit_every": 5, "error_rate": 0.1}' >/dev/null
curl -s -X POST "127.0.0.1:$OA/_control" -d '{"rate_limit_every": 3, "fail_marker": "POISON"}' >/dev/null
upload_batch p1b 10
q "SELECT tvdb.upload('p1b-poison.md', convert_to(E'# Bad\n\nThis chunk carries POISON for the embedder.', 'UTF8'))" >/dev/null
wait_settled p1b- 240; ok $? "every phase-1b document settled"
is "$(q "select count(*) from tvdb.jobs where filename like 'p1b-%' and status = 'complete'")" 10 \
   "429s and 500s were retried until the documents completed"
is "$(q "select count(*) > 0 from upload_pipeline.usage where http_status in (429, 500)")" t "the ledger shows the refused requests"
is "$(q "select count(*) > 0 from upload_pipeline.events where code like '%\_retry\_scheduled' and severity = 'warn'")" t \
   "each retry is a warning event"
is "$(q "select status || ': ' || (last_error like 'HTTP 400: %POISON%')::text from tvdb.jobs where filename = 'p1b-poison.md'")" \
   "failed_embedding: true" "a 400 from OpenAI fails the embedding stage with OpenAI's message"
curl -s -X POST "127.0.0.1:$LP/_control" -d '{"rate_limit_every": 0, "error_rate": 0}' >/dev/null
curl -s -X POST "127.0.0.1:$OA/_control" -d '{"rate_limit_every": 0, "fail_marker": null}' >/dev/null

echo "# phase 1c: an answer that can never be recorded holds back only its own job"
# A result whose page count no integer holds fails the batch that records
# the results; the answers are then recorded one by one, and that one job
# ends failed_parse with the reason, its request still in the ledger.
curl -s -X POST "127.0.0.1:$LP/_control" -d '{"absurd_pages_marker": "ABSURD"}' >/dev/null
q "SELECT tvdb.upload('p1c-a.pdf', convert_to(E'# A\n\nFine.', 'UTF8')),
          tvdb.upload('p1c-ABSURD.pdf', convert_to(E'# B\n\nCounted wrong.', 'UTF8')),
          tvdb.upload('p1c-c.pdf', convert_to(E'# C\n\nAlso fine.', 'UTF8'))" >/dev/null
wait_settled p1c- 120; ok $? "every phase-1c document settled"
is "$(q "select string_agg(filename || ':' || status, ' ' order by filename) from tvdb.jobs where filename like 'p1c-%'")" \
   "p1c-ABSURD.pdf:failed_parse p1c-a.pdf:complete p1c-c.pdf:complete" \
   "the unrecordable answer fails only its own job"
is "$(q "select last_error like '%out of range%' from tvdb.jobs where filename = 'p1c-ABSURD.pdf'")" t \
   "its reason names what could not be recorded"
is "$(q "select count(*) || ':' || bool_and(u.http_status = 200 and u.error like 'answer not recorded:%')
          from upload_pipeline.usage u join tvdb.jobs j using (job_id)
          where j.filename = 'p1c-ABSURD.pdf' and u.operation = 'result'")" "1:true" \
   "its result request is in the ledger once, as not recorded"
curl -s -X POST "127.0.0.1:$LP/_control" -d '{"absurd_pages_marker": null}' >/dev/null

echo "# phase 1d: a claim whose transaction fails leaves no memory behind"
# A deferred trigger refuses, at commit, every move into embedding_in_progress:
# each pass the workers build a claim's requests and lose them with the
# rolled-back transaction.  Their palloc'd memory must not grow with it.
LOG=$PGHOST/server.log
memctx() {  # "<TopMemoryContext used> <tvdb's own contexts used>" of worker $1, in bytes
    # (caches and plans are left out: autovacuum's ANALYZE replans, which moves them)
    local before; before=$(grep -c "Grand total" "$LOG" || true)
    q "SELECT pg_log_backend_memory_contexts($1)" >/dev/null
    for _ in $(seq 1 50); do
        [ "$(grep -c "Grand total" "$LOG" || true)" -gt "$before" ] && break; sleep 0.1
    done
    grep "\[$1\]" "$LOG" | awk '/logging memory contexts of PID/ { top = 0; own = 0 }
        /level: 0; TopMemoryContext:/ { match($0, /[0-9]+ used/); top = substr($0, RSTART, RLENGTH - 5) }
        /level: [0-9]+; tvdb / { match($0, /[0-9]+ used/); own += substr($0, RSTART, RLENGTH - 5) }
        END { print top + 0, own + 0 }'
}
# refuse_at_commit <from> <to> <what>: a deferred trigger makes every commit
# that moves a job from <from> to <to> fail with "tvdb test: <what> refused at
# commit"; allow_commits takes it away.
refuse_at_commit() {
    q "CREATE FUNCTION tvdb_test_refuse() RETURNS trigger LANGUAGE plpgsql AS \$\$
       BEGIN RAISE EXCEPTION 'tvdb test: $3 refused at commit'; END \$\$;
       CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER UPDATE ON upload_pipeline.upload_jobs
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
           WHEN (OLD.status = '$1' AND NEW.status = '$2')
           EXECUTE FUNCTION tvdb_test_refuse()" >/dev/null
}
allow_commits() {
    q "DROP TRIGGER refuse_at_commit ON upload_pipeline.upload_jobs; DROP FUNCTION tvdb_test_refuse()" >/dev/null
}
refuse_at_commit embedding_queued embedding_in_progress embedding
q "SELECT tvdb.upload('p1d-refused.md', convert_to(E'# Refused\n\nEmbedding this one fails at commit.', 'UTF8'))" >/dev/null
for _ in $(seq 1 80); do
    [ "$(q "select status from tvdb.jobs where filename = 'p1d-refused.md'")" = embedding_queued ] && break; sleep 0.25
done
# Let the claim fail a few times first: the plan cache keeps a generic plan of
# a statement after its fifth run, a one-time growth that is not a leak.
sleep 8
wpids=$(q "select string_agg(pid::text, ' ') from pg_stat_activity where backend_type = 'tvdb worker' and datname = '$DB'")
fails0=$(grep -c "embedding refused at commit" "$LOG" || true)
declare -A m0
for p in $wpids; do m0[$p]=$(memctx "$p"); done
sleep 8
grown=""
for p in $wpids; do
    read -r top0 all0 <<<"${m0[$p]}"; read -r top1 all1 <<<"$(memctx "$p")"
    grown+=" worker $p: TopMemoryContext +$((top1 - top0)) B, tvdb's contexts +$((all1 - all0)) B;"
    [ $((top1 - top0)) -le 1024 ] && [ $((all1 - all0)) -le 8192 ] || bad=1
done
fails=$(( $(grep -c "embedding refused at commit" "$LOG" || true) - fails0 ))
[ "$fails" -ge 8 ]; ok $? "the claims kept failing at commit ($fails times in 8 s)"
[ -z "${bad:-}" ]; ok $? "the workers' memory did not grow with them:$grown"
allow_commits
wait_settled p1d- 60; ok $? "the document completes once the trigger is gone"

echo "# phase 1e: answers whose transaction fails at commit are still in the ledger"
# A deferred trigger refuses, at commit, the move to parsed: the transaction
# that records the fetched result fails as a whole; its request must still
# have its ledger row.
refuse_at_commit parse_queued parsed parsed
q "SELECT tvdb.upload('p1e-refused.pdf', convert_to(E'# Refused\n\nParsed, but not at commit.', 'UTF8'))" >/dev/null
unrecorded() {
    q "select count(*) from upload_pipeline.usage u join tvdb.jobs j using (job_id)
       where j.filename = 'p1e-refused.pdf' and u.operation = 'result' and u.http_status = 200
         and u.error like 'outcome not recorded%'"
}
for _ in $(seq 1 60); do [ "$(unrecorded)" -ge 1 ] && break; sleep 0.25; done
is "$(unrecorded) $(q "select status from tvdb.jobs where filename = 'p1e-refused.pdf'")" "1 parse_queued" \
   "the fetched result's request is in the ledger, the job is not moved"
allow_commits
wait_settled p1e- 120; ok $? "the document completes once the trigger is gone (after its lease lapses)"

echo "# phase 1f: a partial parse is a finished one"
q "SELECT tvdb.upload('p1f-partial.pdf', convert_to('%PDF-1.4 partly readable', 'UTF8'))" >/dev/null
wait_settled p1f- 60; ok $? "the partially parsed document settled"
is "$(q "select status || ' ' || (select count(*) from upload_pipeline.events e
          where e.job_id = j.job_id and e.code = 'parse_partial_success' and e.severity = 'warn')
        from tvdb.jobs j where filename = 'p1f-partial.pdf'")" "complete 1" \
   "PARTIAL_SUCCESS: its result is used, with one warning event"

echo "# phase 1g: a refused key makes documents wait, not fail"
# OpenAI answers 401 to every request; the documents wait with a warning
# event naming the class, and complete once the key is right again.
curl -s -X POST "127.0.0.1:$OA/_control" -d '{"api_key": "not-the-workers-key"}' >/dev/null
q "SELECT tvdb.upload('p1g-a.md', convert_to(E'# A\n\nWaits for a key.', 'UTF8')),
          tvdb.upload('p1g-b.md', convert_to(E'# B\n\nWaits too.', 'UTF8'))" >/dev/null
waiting() {
    q "select count(distinct e.job_id) from upload_pipeline.events e join tvdb.jobs j using (job_id)
       where j.filename like 'p1g-%' and e.code = 'embedding_waiting_for_service' and e.payload ->> 'class' = 'auth'"
}
for _ in $(seq 1 120); do [ "$(waiting)" = 2 ] && break; sleep 0.25; done
is "$(waiting) $(q "select string_agg(distinct status, ',') from tvdb.jobs where filename like 'p1g-%'")" \
   "2 embedding_in_progress" "a 401 from OpenAI: both documents wait, with a warning event, none failed"
is "$(q "select severity from upload_pipeline.alerts where kind = 'service_auth' and service = 'openai'")" \
   "critical" "an operator is alerted once (a count, not a row per document)"
is "$(q "select state from tvdb.circuits where service = 'openai'") $(q "select count(*) from upload_pipeline.alerts where kind = 'circuit_blocked' and service = 'openai'")" \
   "blocked 1" "OpenAI's circuit is blocked, with a critical alert: nothing more is sent"
sent=$(jget "$(curl -s "127.0.0.1:$OA/_stats")" "d['requests']"); sleep 2
is "$(jget "$(curl -s "127.0.0.1:$OA/_stats")" "d['requests']")" "$sent" "while blocked, OpenAI receives no request"
curl -s -X POST "127.0.0.1:$OA/_control" -d '{"api_key": null}' >/dev/null
# the operator fixed the key and reloads: the circuit closes; they need not wait out the minute
q "UPDATE upload_pipeline.upload_jobs j SET next_poll_at = now() FROM upload_pipeline.documents d
   WHERE d.document_id = j.document_id AND d.filename LIKE 'p1g-%';
   SELECT pg_reload_conf(), tvdb._wake_workers()" >/dev/null
wait_settled p1g- 60; ok $? "they complete once the key is accepted"
is "$(q "select count(*) from tvdb.jobs where filename like 'p1g-%' and status = 'complete'")" 2 "both complete"
is "$(q "select state from tvdb.circuits where service = 'openai'")" closed "the reload closed the circuit"

echo "# phase 1k: LlamaParse stops answering for 60 s: the circuit opens, probes, and closes when it is back"
# Every connection to LlamaParse is dropped with no answer.  After 5 in a row
# (tvdb.breaker_failures) the circuit opens; probes follow after 10 s, then 20 s more.
before=$(jget "$(curl -s "127.0.0.1:$LP/_stats")" "d['faults'].get('dropped', 0)")
curl -s -X POST "127.0.0.1:$LP/_control" -d '{"drop_rate": 1.0}' >/dev/null
k_start=$(q "select now()")
q "SELECT tvdb.upload(format('p1k-%s.pdf', i), convert_to('%PDF-1.4 outage ' || i, 'UTF8')) FROM generate_series(1, 6) i" >/dev/null
for _ in $(seq 1 40); do [ "$(q "select state from tvdb.circuits where service = 'llamaparse'")" != closed ] && break; sleep 0.25; done
is "$(q "select state in ('open', 'half_open') from tvdb.circuits where service = 'llamaparse'")" t \
   "after five unanswered requests in a row LlamaParse's circuit is open"
opened=$(jget "$(curl -s "127.0.0.1:$LP/_stats")" "d['faults'].get('dropped', 0)")
sleep 60
during=$(( $(jget "$(curl -s "127.0.0.1:$LP/_stats")" "d['faults'].get('dropped', 0)") - opened ))
# Probes go after 10 s and then 20 s more: two in the minute.  A probe may
# reach the fake twice: libcurl sends a request again, once, on a fresh
# connection when the reused one it went out on turns out closed.
[ "$during" -ge 1 ] && [ "$during" -le 6 ]; ok $? "in the 60 s it was down, LlamaParse saw only the probes ($during connections; the first wave was $((opened - before)))"
is "$(q "select count(*) from tvdb.jobs where filename like 'p1k-%' and status like 'failed%'")" 0 \
   "no document failed for the outage"
curl -s -X POST "127.0.0.1:$LP/_control" -d '{"drop_rate": 0}' >/dev/null
wait_settled p1k- 120; ok $? "after the outage every document settled"
is "$(q "select count(*) from tvdb.jobs where filename like 'p1k-%' and status = 'complete'") $(q "select state from tvdb.circuits where service = 'llamaparse'")" \
   "6 closed" "all six complete, and the circuit is closed again"
is "$(q "select string_agg(kind, ',' order by kind) from upload_pipeline.alerts
          where service = 'llamaparse' and kind like 'circuit%' and last_at >= '$k_start'")" "circuit_closed,circuit_half_open,circuit_opened" \
   "the operator was told when it opened, probed and closed"

echo "# phase 1h: Retry-After as an HTTP date, and x-should-retry"
# Every request is refused with a 429 whose Retry-After is a date 3 s ahead:
# the retry waits those seconds, not the 0.5 s of the worker's own backoff.
curl -s -X POST "127.0.0.1:$OA/_control" -d '{"rate_limit_every": 1, "retry_after": 3, "retry_after_date": true}' >/dev/null
q "SELECT tvdb.upload('p1h-date.md', convert_to(E'# Date\n\nRetry after a date.', 'UTF8'))" >/dev/null
retry_in() {
    q "select min((e.payload ->> 'retry_in_seconds')::numeric) from upload_pipeline.events e join tvdb.jobs j using (job_id)
       where j.filename = '$1' and e.code = 'embedding_retry_scheduled'"
}
for _ in $(seq 1 120); do [ -n "$(retry_in p1h-date.md)" ] && break; sleep 0.25; done
r=$(retry_in p1h-date.md)
awk -v r="${r:-0}" 'BEGIN { exit !(r >= 1.5 && r <= 4.5) }'; ok $? "a 429 with an HTTP-date Retry-After: the retry waits ~3 s (got ${r:-none} s)"
curl -s -X POST "127.0.0.1:$OA/_control" -d '{"rate_limit_every": 0, "retry_after_date": false}' >/dev/null
wait_settled p1h-date 60; ok $? "it completes after the wait"
# A 500 that says x-should-retry: false is not retried: the stage fails.
curl -s -X POST "127.0.0.1:$OA/_control" -d '{"error_rate": 1.0, "should_retry": "false"}' >/dev/null
q "SELECT tvdb.upload('p1h-noretry.md', convert_to(E'# No retry\n\nThe service says so.', 'UTF8'))" >/dev/null
wait_settled p1h-noretry 60; ok $? "the x-should-retry: false document settled"
is "$(q "select status || ' ' || (last_error like 'HTTP 500:%')::text from tvdb.jobs where filename = 'p1h-noretry.md'")" \
   "failed_embedding true" "x-should-retry: false on a 500: failed at once, with OpenAI's message"
curl -s -X POST "127.0.0.1:$OA/_control" -d '{"error_rate": 0, "should_retry": null}' >/dev/null

echo "# phase 1j: a service that always fails: bounded tries with jittered backoff"
psql -X -q -d postgres -c "ALTER SYSTEM SET tvdb.max_attempts = 3" -c "ALTER SYSTEM SET tvdb.retry_base_delay = '100ms'" \
     -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
curl -s -X POST "127.0.0.1:$OA/_control" -d '{"error_rate": 1.0}' >/dev/null
q "SELECT tvdb.upload('p1j-exhausted.md', convert_to(E'# Doomed\n\nOpenAI always answers 500.', 'UTF8'))" >/dev/null
wait_settled p1j- 60; ok $? "the document settled"
is "$(q "select status || ' ' || failure_class || ' ' || (last_error like 'HTTP 500:%(gave up after 3 tries)')::text
               || ' ' || (select count(*) from upload_pipeline.usage u where u.service = 'openai' and j.job_id = any(u.job_ids))
               || ' ' || (select count(*) from upload_pipeline.events e where e.job_id = j.job_id and e.code = 'embedding_retry_scheduled')
          from tvdb.jobs j where filename = 'p1j-exhausted.md'")" "failed_embedding retries_exhausted true 3 2" \
   "after tvdb.max_attempts (3) tries, two of them retries, it fails with class retries_exhausted"
# tvdb.retry_failed() (what pg_cron runs, phase 7) gives it one more visit
# (tvdb.max_job_retries = 1); OpenAI still fails, so it then is a dead letter.
psql -X -q -d postgres -c "ALTER SYSTEM SET tvdb.max_job_retries = 1" -c "ALTER SYSTEM SET tvdb.job_retry_delay = 0" \
     -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
is "$(q "select tvdb.retry_failed()")" 1 "tvdb.retry_failed() retries the exhausted document"
wait_settled p1j- 60; ok $? "its second visit settled"
is "$(q "select status || ' ' || attempts || ' ' || failure_class || ' ' || jsonb_array_length(errors)
               || ' ' || (select count(*) from jsonb_array_elements(errors) x where x ->> 'status' = 'failed_embedding')
          from tvdb.dead_letters where filename = 'p1j-exhausted.md'")" "failed_embedding 2 retries_exhausted 6 2" \
   "out of retries it is a dead letter, with every error it met: 2 visits of 3 tries, each ending failed"
is "$(q "select tvdb.retry_failed()")" 0 "tvdb.retry_failed() leaves a dead letter alone"
curl -s -X POST "127.0.0.1:$OA/_control" -d '{"error_rate": 0}' >/dev/null
psql -X -q -d postgres -c "ALTER SYSTEM RESET tvdb.max_attempts" -c "ALTER SYSTEM RESET tvdb.retry_base_delay" \
     -c "ALTER SYSTEM RESET tvdb.max_job_retries" -c "ALTER SYSTEM RESET tvdb.job_retry_delay" \
     -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5

echo "# phase 1l: a requests-per-minute limit holds for both workers together"
# 120 uploads a minute: a bucket of 2, refilled 2 a second, shared by the two
# workers.  Twelve uploads take at least 5 s, and no stretch of time sees
# more than the bucket plus its refill (one more for clock jitter).
curl -s -X POST "127.0.0.1:$LP/_reset" >/dev/null
psql -X -q -d postgres -c "ALTER SYSTEM SET tvdb.llamaparse_requests_per_minute = 120" -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
q "SELECT tvdb.upload(format('p1l-%s.pdf', i), convert_to('%PDF-1.4 paced ' || i, 'UTF8')) FROM generate_series(1, 12) i" >/dev/null
wait_settled p1l- 60; ok $? "the paced documents settled"
times=$(jget "$(curl -s "127.0.0.1:$LP/_stats?times=1")" "d['upload_times']")
is "$(python3 -c "import sys; t = eval(sys.argv[1]); r = 2.0; c = 2
print(len(t), t[-1] - t[0] >= (len(t) - c) / r - 0.2,
      max(j - i + 1 - (c + r * (t[j] - t[i])) for i in range(len(t)) for j in range(i, len(t))) <= 1)" "$times")" \
   "12 True True" "12 uploads, paced at 2 a second after a burst of 2, never faster (checked from the fake's own times)"
is "$(q "select count(*) from tvdb.jobs where filename like 'p1l-%' and status = 'complete'")" 12 "all complete"
psql -X -q -d postgres -c "ALTER SYSTEM SET tvdb.llamaparse_requests_per_minute = 0" -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5

echo "# phase 1m: a tokens-per-minute limit, and what OpenAI says is left"
# 30000 tokens a minute: a bucket of 500, refilled 500 a second, shared by the
# two workers; four chunks to a request.  No stretch of time sees more
# tokens sent before its last request than the bucket plus its refill.
curl -s -X POST "127.0.0.1:$OA/_reset" >/dev/null
psql -X -q -d postgres -c "ALTER SYSTEM SET tvdb.openai_tokens_per_minute = 30000" \
     -c "ALTER SYSTEM SET tvdb.embedding_batch_inputs = 4" -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
q "SELECT tvdb.upload(format('p1m-%s.md', i), convert_to(repeat(format(E'Paragraph %s of the paced tokens test, long enough to chunk.\n\n', i), 30), 'UTF8'))
   FROM generate_series(1, 12) i" >/dev/null
wait_settled p1m- 120; ok $? "the token-paced documents settled"
times=$(jget "$(curl -s "127.0.0.1:$OA/_stats?times=1")" "d['embedding_times']")
is "$(python3 -c "import sys; t = eval(sys.argv[1]); r = 500.0; c = 500
ts = [x[0] for x in t]; tok = [x[1] for x in t]; total = sum(tok)
worst = max(sum(tok[i:j]) - (c + r * (ts[j] - ts[i] + 0.2)) for i in range(len(t)) for j in range(i, len(t)))
print(len(t) > 10, total > 5000, ts[-1] - ts[0] >= (total - c - max(tok)) / r - 0.5, worst <= 0)" "$times")" \
   "True True True True" "over 5000 tokens in more than ten requests, paced at 500 a second after a burst of 500 (the fake's own times)"
is "$(q "select count(*) from tvdb.jobs where filename like 'p1m-%' and status = 'complete'")" 12 "all complete"
# The fake allows two requests in an 8 s window and says so in its
# x-ratelimit-* headers.  After two, it says none is left, and when one
# will be again: the third waits for that instead of spending a 429.
psql -X -q -d postgres -c "ALTER SYSTEM SET tvdb.openai_tokens_per_minute = 0" \
     -c "ALTER SYSTEM RESET tvdb.embedding_batch_inputs" -c "SELECT pg_reload_conf()" >/dev/null
curl -s -X POST "127.0.0.1:$OA/_reset" >/dev/null
curl -s -X POST "127.0.0.1:$OA/_control" -d '{"rpm": 2, "rate_window": 8}' >/dev/null
sleep 0.5
for d in a b c; do
    q "SELECT tvdb.upload('p1m-left-$d.md', convert_to('Only a line for $d.', 'UTF8'))" >/dev/null
    wait_settled p1m-left-$d 60
done
stats_oa=$(curl -s "127.0.0.1:$OA/_stats?times=1")
is "$(jget "$stats_oa" "len(d['embedding_times']), d['http_429'], round(d['embedding_times'][2][0] - d['embedding_times'][0][0]) >= 7")" \
   "(3, 0, True)" "the third request waited out the window the service named: no 429"
is "$(q "select count(*) from tvdb.jobs where filename like 'p1m-left-%' and status = 'complete'")" 3 "all complete"
curl -s -X POST "127.0.0.1:$OA/_control" -d '{"rpm": 0, "rate_window": 60}' >/dev/null

echo "# phase 1r: never paying twice: the same bytes again reuse the parse, the same text the vectors"
psql -X -q -d postgres -c "ALTER SYSTEM SET tvdb.reuse_parses = on" -c "ALTER SYSTEM SET tvdb.embedding_cache = on" \
     -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
same="'%PDF-1.4 the same report, twice: ' || repeat('words of the report ', 200)"
q "SELECT tvdb.upload('p1r-first.pdf', convert_to($same, 'UTF8'))" >/dev/null
wait_settled p1r- 60; ok $? "the first copy settled"
before_lp=$(jget "$(curl -s "127.0.0.1:$LP/_stats")" "d['uploads']"); before_oa=$(jget "$(curl -s "127.0.0.1:$OA/_stats")" "d['requests']")
q "SELECT tvdb.upload('p1r-second.pdf', convert_to($same, 'UTF8'))" >/dev/null
wait_settled p1r- 60; ok $? "the second copy settled"
is "$(q "select status from tvdb.jobs where filename = 'p1r-second.pdf'") $(( $(jget "$(curl -s "127.0.0.1:$LP/_stats")" "d['uploads']") - before_lp )) $(( $(jget "$(curl -s "127.0.0.1:$OA/_stats")" "d['requests']") - before_oa ))" \
   "complete 0 0" "the second copy completed without a request to LlamaParse or OpenAI"
is "$(q "select string_agg(u.operation || ' ' || (u.cost_usd = 0)::text || ' ' || (u.saved_usd > 0)::text, ', ' order by u.operation)
          from upload_pipeline.usage u join tvdb.jobs j on j.job_id = u.job_id or j.job_id = any(u.job_ids)
          where j.filename = 'p1r-second.pdf'")" "embeddings_cached true true, parse_reused true true" \
   "the ledger shows the reuse at no cost, and what it saved"
is "$(q "select count(*) from upload_pipeline.document_chunks a join tvdb.jobs ja on ja.job_id = a.job_id
          join upload_pipeline.document_chunks b on b.chunk_index = a.chunk_index join tvdb.jobs jb on jb.job_id = b.job_id
          where ja.filename = 'p1r-first.pdf' and jb.filename = 'p1r-second.pdf' and a.embedding = b.embedding and a.content = b.content")" \
   "$(q "select count(*) from upload_pipeline.document_chunks c join tvdb.jobs j using (job_id) where j.filename = 'p1r-first.pdf'")" \
   "the second copy has the first's chunks and vectors"
is "$(q "select string_agg(to_status, ',' order by seq) from upload_pipeline.events e join tvdb.jobs j using (job_id)
          where j.filename = 'p1r-second.pdf' and to_status is not null")" "$expected_path" "and went through the nine states"
# An embeddings answer that comes after its job's lease was lost (here taken
# away by hand, the job parked for an hour) is stored all the same, and the
# job then finishes without asking again.
curl -s -X POST "127.0.0.1:$OA/_control" -d '{"latency": 2}' >/dev/null
before_oa=$(jget "$(curl -s "127.0.0.1:$OA/_stats")" "d['requests']")
q "SELECT tvdb.upload('p1r-late.md', convert_to(E'# Late\n\nAn answer that comes after the lease.', 'UTF8'))" >/dev/null
late_sent() { q "select count(*) from upload_pipeline.usage u join tvdb.jobs j on j.job_id = any(u.job_ids)
                 where j.filename = 'p1r-late.md' and u.state = '$1'"; }
for _ in $(seq 1 80); do [ "$(late_sent sent)" = 1 ] && break; sleep 0.1; done
q "UPDATE upload_pipeline.upload_jobs u SET lease_owner = NULL, lease_expires_at = NULL, next_poll_at = now() + interval '1 hour'
   FROM upload_pipeline.documents d WHERE d.document_id = u.document_id AND d.filename = 'p1r-late.md'" >/dev/null
for _ in $(seq 1 80); do [ "$(late_sent answered)" = 1 ] && break; sleep 0.1; done
is "$(late_sent answered) $(q "select count(*) filter (where c.embedding is null) || '/' || count(*) from upload_pipeline.document_chunks c
          join tvdb.jobs j using (job_id) where j.filename = 'p1r-late.md'") $(q "select status from tvdb.jobs where filename = 'p1r-late.md'")" \
   "1 0/1 embedding_in_progress" "an answer after the lease was lost is stored all the same"
q "UPDATE upload_pipeline.upload_jobs u SET next_poll_at = now() FROM upload_pipeline.documents d
   WHERE d.document_id = u.document_id AND d.filename = 'p1r-late.md'; SELECT tvdb._wake_workers()" >/dev/null
wait_settled p1r-late 40
is "$(q "select status from tvdb.jobs where filename = 'p1r-late.md'") $(( $(jget "$(curl -s "127.0.0.1:$OA/_stats")" "d['requests']") - before_oa ))" \
   "complete 1" "the job then completes without a second request"
curl -s -X POST "127.0.0.1:$OA/_control" -d '{"latency": 0}' >/dev/null
psql -X -q -d postgres -c "ALTER SYSTEM SET tvdb.reuse_parses = off" -c "ALTER SYSTEM SET tvdb.embedding_cache = off" \
     -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5

echo "# phase 1z: a job cancelled while its request is in flight: the answer is ignored, its cost recorded"
# Each service answers after 2 s; the job is cancelled as soon as its
# request's ledger row says it was sent.
curl -s -X POST "127.0.0.1:$OA/_control" -d '{"latency": 2}' >/dev/null
curl -s -X POST "127.0.0.1:$LP/_control" -d '{"latency": 2}' >/dev/null
before_oa=$(jget "$(curl -s "127.0.0.1:$OA/_stats")" "d['requests']")
before_lp=$(jget "$(curl -s "127.0.0.1:$LP/_stats")" "d['uploads']")
q "SELECT tvdb.upload('p1z-embed.md', convert_to(E'# Cancelled\n\nEmbedded, but too late to be kept.', 'UTF8'))" >/dev/null
q "SELECT tvdb.upload('p1z-parse.pdf', convert_to('%PDF-1.4 ' || repeat('a parse nobody waits for ', 40), 'UTF8'))" >/dev/null
z_usage() {  # z_usage <file> <operation> <state>: that request's ledger rows in that state
    q "select count(*) from upload_pipeline.usage u join tvdb.jobs j on j.job_id = u.job_id or j.job_id = any(u.job_ids)
       where j.filename = '$1' and u.operation = '$2' and u.state = '$3'"; }
for _ in $(seq 1 100); do
    [ "$(z_usage p1z-embed.md embeddings sent)" = 1 ] && [ "$(z_usage p1z-parse.pdf upload sent)" = 1 ] && break; sleep 0.1
done
is "$(z_usage p1z-embed.md embeddings sent) $(z_usage p1z-parse.pdf upload sent)" "1 1" "both requests are in flight"
is "$(q "select string_agg(tvdb.cancel(job_id, 'phase 1z')::text, ' ' order by filename) from tvdb.jobs where filename like 'p1z-%'")" \
   "true true" "both jobs are cancelled while their requests are in flight"
for _ in $(seq 1 100); do
    [ "$(z_usage p1z-embed.md embeddings answered)" = 1 ] && [ "$(z_usage p1z-parse.pdf upload answered)" = 1 ] && break; sleep 0.1
done
sleep 1  # a pass after the answers: nothing may be claimed again
is "$(z_usage p1z-embed.md embeddings answered) $(q "select u.http_status || ' ' || (u.cost_usd > 0) || ' ' || u.reserved_usd
        from upload_pipeline.usage u join tvdb.jobs j on j.job_id = any(u.job_ids) where j.filename = 'p1z-embed.md'")" \
   "1 200 true 0" "the embeddings answer is in the ledger with its cost, nothing reserved"
is "$(q "select count(*) filter (where c.embedding is not null) || '/' || count(*) from upload_pipeline.document_chunks c
          join tvdb.jobs j using (job_id) where j.filename = 'p1z-embed.md'")" "0/1" "its vector is not stored"
is "$(z_usage p1z-parse.pdf upload answered) $(q "select u.http_status || ' ' || u.reserved_usd || ' ' || (u.estimated_usd > 0)
        from upload_pipeline.usage u join tvdb.jobs j using (job_id) where j.filename = 'p1z-parse.pdf' and u.operation = 'upload'")" \
   "1 200 0 true" "the accepted upload is in the ledger and holds no reservation (its parse will never be settled)"
is "$(q "select string_agg(j.status || ' ' || coalesce(u.lease_owner, 'no lease'), ', ' order by j.filename)
          from tvdb.jobs j join upload_pipeline.upload_jobs u using (job_id) where j.filename like 'p1z-%'") $(q "select coalesce(u.parse_job_id, 'none')
          from upload_pipeline.upload_jobs u join tvdb.jobs j using (job_id) where j.filename = 'p1z-parse.pdf'")" \
   "cancelled no lease, cancelled no lease none" "both jobs stay cancelled and unleased; LlamaParse's job id is not taken"
is "$(q "select string_agg(e.code, ',' order by e.seq) from upload_pipeline.events e join tvdb.jobs j using (job_id)
          where j.filename = 'p1z-parse.pdf'") $(q "select (e.payload ->> 'requests_in_flight') || ' ' || (e.payload ->> 'lease_owner' like 'tvdb worker%')
          from upload_pipeline.events e join tvdb.jobs j using (job_id) where j.filename = 'p1z-embed.md' and e.code = 'pipeline_cancelled'")" \
   "upload_received,pipeline_cancelled 1 true" "no event after the cancel; its event names the worker and the request in flight"
is "$(( $(jget "$(curl -s "127.0.0.1:$OA/_stats")" "d['requests']") - before_oa )) $(( $(jget "$(curl -s "127.0.0.1:$LP/_stats")" "d['uploads']") - before_lp )) $(q "select count(*) from upload_pipeline.usage u join tvdb.jobs j using (job_id)
          where j.filename = 'p1z-parse.pdf' and u.operation <> 'upload'")" \
   "1 1 0" "one request each, none after: no retry, no poll"
curl -s -X POST "127.0.0.1:$OA/_control" -d '{"latency": 0}' >/dev/null
curl -s -X POST "127.0.0.1:$LP/_control" -d '{"latency": 0}' >/dev/null

echo "# phase 1y: hybrid mode: the mock stands in for a refused service, and is redone when it is back"
psql -X -q -d postgres -c "ALTER SYSTEM SET tvdb.service_mode = 'hybrid'" -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
curl -s -X POST "127.0.0.1:$OA/_control" -d '{"api_key": "not-the-workers-key"}' >/dev/null
q "SELECT tvdb.upload('p1y-doc.md', convert_to(E'# Hybrid\n\nEmbedded by the mock while OpenAI refuses the key.\n\n## Later\n\nThen by OpenAI.', 'UTF8'))" >/dev/null
wait_settled p1y- 60; ok $? "the document settled while OpenAI refused the key"
doc=$(q "select document_id from tvdb.jobs where filename = 'p1y-doc.md'")
is "$(q "select status from tvdb.jobs where filename = 'p1y-doc.md'") $(q "select string_agg(distinct model, ',') from upload_pipeline.document_chunks where document_id = '$doc'") $(q "select state from tvdb.circuits where service = 'openai'")" \
   "complete mock blocked" "OpenAI blocked: the mock embedded it, and its chunks say so"
is "$(q "select count(*) from tvdb.embeddings where document_id = '$doc'") $(q "select count(*) > 0 from tvdb.embeddings_of('mock') where document_id = '$doc'")" \
   "0 t" "tvdb.embeddings serves only the model in use: the mock vectors are not among them"
curl -s -X POST "127.0.0.1:$OA/_control" -d '{"api_key": null}' >/dev/null
q "SELECT pg_reload_conf()" >/dev/null
redone() { q "select count(*) || ' ' || (array_agg(status order by created_at desc))[1] from upload_pipeline.upload_jobs where document_id = '$doc'"; }
for _ in $(seq 1 120); do [ "$(redone)" = "2 complete" ] && break; sleep 0.5; done
is "$(redone) $(q "select string_agg(distinct model, ',') from upload_pipeline.document_chunks where document_id = '$doc'")" \
   "2 complete text-embedding-3-small" "the key accepted again: it was reprocessed by itself in a new job, with OpenAI's vectors, no mock vector left"
is "$(q "select count(*) = (select count(*) from upload_pipeline.document_chunks where document_id = '$doc') from tvdb.embeddings where document_id = '$doc'")" t \
   "tvdb.embeddings serves them now"
is "$(q "select string_agg(e.code, ',' order by e.seq) from upload_pipeline.events e join upload_pipeline.upload_jobs j using (job_id)
          where j.document_id = '$doc' and j.created_at = (select max(created_at) from upload_pipeline.upload_jobs where document_id = '$doc')
            and (e.to_status is null or e.to_status in ('uploaded', 'parsed'))")" \
   "upload_received,reprocess_requested,parse_completed" "the new job says it is a reprocess, and reused the parse"
is "$(q "select count(*) from upload_pipeline.upload_jobs j where j.document_id = '$doc' and j.status = 'complete'
          and (select string_agg(to_status, ',' order by seq) from upload_pipeline.events e
               where e.job_id = j.job_id and to_status is not null) = '$expected_path'")" 2 \
   "both jobs' histories are kept, each the nine states once"
psql -X -q -d postgres -c "ALTER SYSTEM SET tvdb.service_mode = 'real'" -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5

echo "# phase 1i: routing refusals, and LlamaParse's v2 API"
q "SELECT tvdb.upload('p1i-archive.zip', convert_to('PK not a document', 'UTF8'), 'application/zip')" >/dev/null
wait_settled p1i-archive 40; ok $? "a type no parser reads settled"
is "$(q "select status || ': ' || (last_error like 'no parser reads this document%.zip%')::text
          || ' ' || (select count(*) from upload_pipeline.usage u where u.job_id = j.job_id)
          from tvdb.jobs j where filename = 'p1i-archive.zip'")" "failed_parse: true 0" \
   "a .zip fails parse at once with the reason, nothing sent anywhere"
# v1 options are passed through as form fields; a file over the size limit is never sent.
psql -X -q -d postgres -c "ALTER SYSTEM SET tvdb.llamaparse_options = '{\"parse_mode\": \"parse_page_with_llm\", \"language\": [\"en\", \"fr\"], \"disable_ocr\": true}'" \
     -c "ALTER SYSTEM SET tvdb.llamaparse_max_file_size = '1MB'" -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
q "SELECT tvdb.upload('p1i-options.pdf', convert_to('%PDF-1.4 with options', 'UTF8')),
          tvdb.upload('p1i-big.pdf', convert_to('%PDF-1.4 ' || repeat('x', 1100000), 'UTF8'))" >/dev/null
wait_settled p1i- 60; ok $? "the documents with options and over the size limit settled"
is "$(jget "$(curl -s "127.0.0.1:$LP/_stats?jobs=1")" "[sorted(j['fields'].items()) for j in d['job_list'] if j['filename'] == 'p1i-options.pdf'][0]")" \
   "[('disable_ocr', 'true'), ('language', ['en', 'fr']), ('parse_mode', 'parse_page_with_llm')]" \
   "tvdb.llamaparse_options reached LlamaParse as its form fields (an array as a repeated field)"
is "$(q "select status || ' ' || (last_error like '%LlamaParse takes files up to 1048576 bytes%')::text
          || ' ' || (select count(*) from upload_pipeline.usage u where u.job_id = j.job_id)
          from tvdb.jobs j where filename = 'p1i-big.pdf'")" "failed_parse true 0" \
   "a file over tvdb.llamaparse_max_file_size fails parse before any upload"
is "$(q "select model from upload_pipeline.usage u join tvdb.jobs j using (job_id)
          where j.filename = 'p1i-options.pdf' and u.operation = 'result'")" "parse_page_with_llm" \
   "the ledger names the parse mode the options asked for"
psql -X -q -d postgres -c "ALTER SYSTEM RESET tvdb.llamaparse_options" -c "ALTER SYSTEM RESET tvdb.llamaparse_max_file_size" \
     -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
psql -X -q -d postgres -c "ALTER SYSTEM SET tvdb.llamaparse_api = 'v2'" \
     -c "ALTER SYSTEM SET tvdb.llamaparse_options = '{\"tier\": \"agentic\", \"version\": \"latest\"}'" \
     -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
v2_before=$(jget "$(curl -s "127.0.0.1:$LP/_stats")" "d.get('v2_uploads', 0)")
q "SELECT tvdb.upload(n, convert_to('%PDF-1.4 v2 ' || n || repeat(' body', 2000), 'UTF8'))
   FROM unnest(ARRAY['p1i-v2-ok.pdf', 'p1i-v2-partial.pdf', 'p1i-v2-FAILME.pdf', 'p1i-v2-cancel.pdf']) AS n" >/dev/null
wait_settled p1i-v2 60; ok $? "v2: every document settled"
is "$(q "select string_agg(filename || ':' || status, ' ' order by filename) from tvdb.jobs where filename like 'p1i-v2%'")" \
   "p1i-v2-FAILME.pdf:failed_parse p1i-v2-cancel.pdf:failed_parse p1i-v2-ok.pdf:complete p1i-v2-partial.pdf:complete" \
   "v2: COMPLETED parses complete, FAILED and CANCELLED fail parse"
is "$(q "select string_agg(last_error, ' | ' order by filename) from tvdb.jobs where filename in ('p1i-v2-FAILME.pdf', 'p1i-v2-cancel.pdf')" | sed 's/:.*|/ |/; s/: .*//')" \
   "LlamaParse job FAILED | LlamaParse job CANCELLED" "v2: the failures carry the service's status (and message)"
is "$(q "select count(*) from upload_pipeline.events e join tvdb.jobs j using (job_id)
          where j.filename = 'p1i-v2-partial.pdf' and e.code = 'parse_partial_success'")" 1 \
   "v2: a page the service could not read is named in a warning event, the rest used"
is "$(q "select count(*) filter (where u.operation = 'result' and u.pages > 0 and u.model = 'agentic' and u.cost_usd > 0)
          from upload_pipeline.usage u join tvdb.jobs j using (job_id) where j.filename = 'p1i-v2-ok.pdf'")" 1 \
   "v2: the result's pages in the ledger, priced at the tier's credits per page"
is "$(jget "$(curl -s "127.0.0.1:$LP/_stats")" "d.get('v2_uploads', 0)")" "$((v2_before + 4))" \
   "v2: the uploads went to /api/v2/parse/upload (the fake counted them)"
psql -X -q -d postgres -c "ALTER SYSTEM RESET tvdb.llamaparse_options" -c "ALTER SYSTEM RESET tvdb.llamaparse_api" \
     -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5

echo "# phase 1s: a fault storm on both services"
# 30 % 429 (Retry-After 1 s), 20 % 500, 5 % dropped connections, on every
# request to either service; 200 documents.  Nobody calls anything: the
# retry policy, the pauses and the circuits bring every one to complete.
psql -X -q -d postgres -c "ALTER SYSTEM SET tvdb.max_attempts = 25" -c "ALTER SYSTEM SET tvdb.retry_max_delay = '5s'" \
     -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
for f in "$LP" "$OA"; do
    curl -s -X POST "127.0.0.1:$f/_control" -d '{"rate_limit_rate": 0.3, "error_rate": 0.2, "drop_rate": 0.05, "retry_after": 1}' >/dev/null
done
storm_t0=$(date +%s.%N)
upload_batch p1s 200
wait_settled p1s- 600; ok $? "every storm document settled"
storm_s=$(python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))" "$storm_t0" "$(date +%s.%N)")
echo "# the storm's 200 documents took ${storm_s} s"
is "$(q "select count(*) filter (where status = 'complete') || ' ' || count(*) filter (where status = 'failed_parse')
          from tvdb.jobs where filename like 'p1s-%'")" "184 16" \
   "all complete but the 16 named to fail at LlamaParse (and those with LlamaParse's reason)"
is "$(q "select count(*) from tvdb.jobs where filename like 'p1s-%' and status = 'failed_parse' and last_error not like '%FAKE_PARSE_ERROR%'")" 0 \
   "no document failed for the storm itself"
is "$(q "select count(*) from (select c.document_id from upload_pipeline.document_chunks c join upload_pipeline.documents d using (document_id)
          where d.filename like 'p1s-%' group by c.document_id having max(chunk_index) + 1 <> count(*) or count(*) filter (where c.embedding is null) > 0) s")" 0 \
   "no chunk duplicated or missing, every chunk embedded"
is "$(q "select count(*) from tvdb.jobs j where filename like 'p1s-%' and status = 'complete' and
          (select string_agg(to_status, ',' order by seq) from upload_pipeline.events e
           where e.job_id = j.job_id and to_status is not null) <> '$expected_path'")" 0 \
   "each complete job went through the nine states once"
is "$(q "select count(*) filter (where http_status = 429) > 0 and count(*) filter (where http_status = 500) > 0
               and count(*) filter (where http_status = 0) > 0 from upload_pipeline.usage u join tvdb.jobs j
          on j.job_id = u.job_id or j.job_id = any(u.job_ids) where j.filename like 'p1s-%'")" t \
   "the ledger shows 429s, 500s and unanswered requests"
for f in "$LP" "$OA"; do
    curl -s -X POST "127.0.0.1:$f/_control" -d '{"rate_limit_rate": 0, "error_rate": 0, "drop_rate": 0}' >/dev/null
done
psql -X -q -d postgres -c "ALTER SYSTEM RESET tvdb.max_attempts" -c "ALTER SYSTEM RESET tvdb.retry_max_delay" \
     -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5

echo "# idle: no CPU"
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
w=$(q "select pid from pg_stat_activity where backend_type = 'tvdb worker' and datname = '$DB' limit 1")
before=$(cpu "$w"); sleep 3; after=$(cpu "$w")
[ $((after - before)) -le 1 ]; ok $? "an idle worker uses no CPU (ticks over 3 s: $((after - before)))"

echo "# phase 2: 80 documents, slow services, a worker killed with kill -9"
curl -s -X POST "127.0.0.1:$LP/_control" -d '{"latency": 0.3}' >/dev/null
curl -s -X POST "127.0.0.1:$OA/_control" -d '{"latency": 0.3}' >/dev/null
upload_batch p2 80
sleep 1.5
victim=$(q "select pid from pg_stat_activity where backend_type = 'tvdb worker' and datname = '$DB' limit 1")
kill -9 "$victim"; ok $? "killed worker $victim with SIGKILL mid-run"
sleep 2
wait_ready; ok $? "the postmaster restarted after the crash"
wait_settled p2- 360; ok $? "every phase-2 document reached complete or a failure state after the crash"
workers_up; ok $? "both workers are back"
is "$(q "select count(*) from tvdb.jobs where filename like 'p2-%' and status = 'complete'")" 74 "74 documents complete"
is "$(q "select count(*) from tvdb.jobs where filename like 'p2-%' and status = 'failed_parse'")" 6 "6 failed parse"
is "$(q "select count(*) from tvdb.jobs j where filename like 'p2-%' and status = 'complete' and
          (select string_agg(to_status, ',' order by seq) from upload_pipeline.events e
           where e.job_id = j.job_id and to_status is not null) <> '$expected_path'")" 0 \
   "after the crash, each job still went through the nine states once"
is "$(q "select count(*) from upload_pipeline.document_chunks c join upload_pipeline.documents d using (document_id)
          where d.filename like 'p2-%' and (c.embedding is null or array_length(c.embedding, 1) <> 64)")" 0 \
   "after the crash, every chunk has its embedding"
is "$(q "select count(*) from (select c.document_id, max(chunk_index) + 1 = count(*) as dense
          from upload_pipeline.document_chunks c join upload_pipeline.documents d using (document_id)
          where d.filename like 'p2-%' group by 1) s where not dense")" 0 "after the crash, no chunk duplicated or missing"
is "$(q "select count(*) from (select job_id from upload_pipeline.usage where service = 'llamaparse'
          and operation = 'result' and http_status = 200 and error is null group by 1 having count(*) > 1) s")" 0 \
   "after the crash, no parse result was recorded twice"

echo "# phase 2b: five worker kills and two immediate restarts during one run"
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
curl -s -X POST "127.0.0.1:$LP/_control" -d '{"latency": 0.1}' >/dev/null
curl -s -X POST "127.0.0.1:$OA/_control" -d '{"latency": 0.1}' >/dev/null
curl -s -X POST "127.0.0.1:$LP/_reset" >/dev/null; curl -s -X POST "127.0.0.1:$OA/_reset" >/dev/null
t2b=$(q "select clock_timestamp()")
upload_batch p2b 120
for i in 1 2 3 4 5; do
    workers_up >/dev/null; sleep 0.7
    victim=$(q "select pid from pg_stat_activity where backend_type = 'tvdb worker' and datname = '$DB' limit 1")
    [ -n "$victim" ] && kill -9 "$victim"
    sleep 1; wait_ready >/dev/null
done
for i in 1 2; do
    sleep 1.5
    as_pg "$(pg_config --bindir)/pg_ctl" -D "$TVDB_PGDATA" -l "$PGHOST/server.log" -m immediate -w -t 60 restart >/dev/null 2>&1
    wait_ready >/dev/null
done
ok $? "five workers killed with SIGKILL and two pg_ctl restart -m immediate, and the cluster is back"
wait_settled p2b- 360; ok $? "every phase-2b document reached complete or a failure state"
is "$(q "select count(*) filter (where status = 'complete') || ' ' || count(*) filter (where status = 'failed_parse')
          from tvdb.jobs where filename like 'p2b-%'")" "110 10" "110 complete, the 10 named to fail failed: nothing lost"
is "$(q "select count(*) from tvdb.jobs j where filename like 'p2b-%' and status = 'complete' and
          (select string_agg(to_status, ',' order by seq) from upload_pipeline.events e
           where e.job_id = j.job_id and to_status is not null) <> '$expected_path'")" 0 \
   "each complete job went through the nine states exactly once"
is "$(q "select count(*) from (select c.document_id from upload_pipeline.document_chunks c join upload_pipeline.documents d using (document_id)
          where d.filename like 'p2b-%' group by c.document_id
          having max(chunk_index) + 1 <> count(*) or count(*) filter (where c.embedding is null) > 0) s")" 0 \
   "no chunk duplicated or missing, every chunk embedded"
is "$(q "select count(*) from (select job_id from upload_pipeline.usage where service = 'llamaparse'
          and operation = 'result' and http_status = 200 and error is null group by 1 having count(*) > 1) s")" 0 \
   "no parse result was recorded twice"
# Every request has its ledger row before it is sent: after the crashes
# every request a fake received is in the ledger, and a row the fake never
# saw (its worker died between the ledger's commit and the send) is of
# unknown outcome: fake <= ledger <= fake + unknown, per operation.
ledger() {  # the ledger's rows for one operation: "all unknown"
    q "select count(*) || ' ' || count(*) filter (where state = 'unknown') from upload_pipeline.usage
       where service = '$1' and operation = '$2' and ts >= '$t2b'"
}
within() {  # within <fake count> <ledger all> <ledger unknown>
    [ "$1" -le "$2" ] && [ "$2" -le $(($1 + $3)) ] && echo yes || echo "no: fake $1, ledger $2 ($3 unknown)"
}
stats_lp=$(curl -s "127.0.0.1:$LP/_stats"); stats_oa=$(curl -s "127.0.0.1:$OA/_stats")
is "$(within "$(jget "$stats_lp" "d['uploads']")" $(ledger llamaparse upload)) \
$(within "$(jget "$stats_lp" "d['job_polls']")" $(ledger llamaparse job_status)) \
$(within "$(jget "$stats_lp" "d['result_fetches']")" $(ledger llamaparse result)) \
$(within "$(jget "$stats_oa" "d['requests']")" $(ledger openai embeddings))" "yes yes yes yes" \
   "after the crashes the ledger has every request each fake received, and only unknown rows beyond them (uploads, polls, results, embeddings)"
is "$(q "select count(*) from upload_pipeline.usage where state = 'sent'")" 0 "no ledger row is left in flight"
echo "# $(q "select count(*) from upload_pipeline.usage where state = 'unknown' and ts >= '$t2b'") requests of unknown outcome (their workers died)"
curl -s -X POST "127.0.0.1:$LP/_control" -d '{"latency": 0}' >/dev/null
curl -s -X POST "127.0.0.1:$OA/_control" -d '{"latency": 0}' >/dev/null

echo "# phase 3: SIGTERM with requests in flight"
curl -s -X POST "127.0.0.1:$LP/_control" -d '{"latency": 5}' >/dev/null
upload_batch p3 8
sleep 1
victim=$(q "select pid from pg_stat_activity where backend_type = 'tvdb worker' and datname = '$DB' limit 1")
kill -TERM "$victim"
gone=1
for _ in $(seq 1 10); do sleep 0.1; kill -0 "$victim" 2>/dev/null || { gone=0; break; }; done
ok $gone "a worker with requests in flight stops within a second of SIGTERM"
curl -s -X POST "127.0.0.1:$LP/_control" -d '{"latency": 0}' >/dev/null
curl -s -X POST "127.0.0.1:$OA/_control" -d '{"latency": 0}' >/dev/null
wait_settled p3- 240; ok $? "its jobs are finished by the workers afterwards"

echo "# phase 4: callbacks as LlamaParse sends them, through tvdb-webhookd"
# Polls are an hour apart here, so only a callback can move these jobs on
# soon.  The fake posts to the callback URL the worker handed it, on
# loopback over http (tvdb.callback_url_rules = local).
q "CREATE ROLE tvdb_worker_webhookd LOGIN; GRANT tvdb_webhook, tvdb_monitor TO tvdb_worker_webhookd" >/dev/null
wh_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$(pg_config --bindir)/tvdb-webhookd" --listen 127.0.0.1 --port "$wh_port" --pool 2 \
    --dsn "host=$PGHOST port=$PGPORT dbname=$DB user=tvdb_worker_webhookd" 2>"$WORK/webhookd.log" &
pids+=($!)
for _ in $(seq 1 50); do curl -s "127.0.0.1:$wh_port/api/v1/webhooks/health" | grep -q '"database": "up"' && break; sleep 0.1; done
psql -X -q -d postgres -c "ALTER SYSTEM SET tvdb.poll_interval_max = '1h'" -c "ALTER SYSTEM SET tvdb.poll_interval_min = '1h'" \
     -c "ALTER SYSTEM SET tvdb.callback_url_rules = 'local'" \
     -c "ALTER SYSTEM SET tvdb.parse_webhook_url = 'http://127.0.0.1:$wh_port/api/v1/webhooks/llamaparse'" \
     -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
curl -s -X POST "127.0.0.1:$LP/_control" -d '{"webhook": true, "webhook_style": "push", "webhook_repeat": 2}' >/dev/null
q "SELECT tvdb.upload('p4-pushed.pdf', convert_to('%PDF-1.4 pushed by LlamaParse', 'UTF8'))" >/dev/null
wait_settled p4-pushed 40; ok $? "a pushed parse completes long before the next poll would have been due"
pushed_job=$(q "select job_id from tvdb.jobs where filename = 'p4-pushed.pdf'")
is "$(q "select status || ' ' || count(*) filter (where u.operation in ('job_status', 'result'))
               || ' ' || count(*) filter (where u.operation = 'webhook_push' and u.pages > 0)
          from tvdb.jobs j left join upload_pipeline.usage u using (job_id)
          where j.filename = 'p4-pushed.pdf' group by status")" "complete 0 1" \
   "the push's markdown was used: no poll, no fetch, its pages in the ledger once (delivered twice)"
is "$(jget "$(curl -s "127.0.0.1:$LP/_stats?jobs=1")" "[j['webhook_url'] for j in d['job_list'] if j['filename'] == 'p4-pushed.pdf'][0].split('?')[1].split('&')[0]")" \
   "job=$pushed_job" "the callback URL LlamaParse got names our job (its token beside it)"
is "$(grep -c 'llamaparse 200' "$WORK/webhookd.log") $(grep -c 'token=' "$WORK/webhookd.log")" "2 0" \
   "tvdb-webhookd answered both copies 200 and logged no token"

curl -s -X POST "127.0.0.1:$LP/_control" -d '{"webhook_style": "events", "webhook_repeat": 2}' >/dev/null
q "SELECT tvdb.upload('p4-event.pdf', convert_to('%PDF-1.4 announced by an event', 'UTF8'))" >/dev/null
wait_settled p4-event 40; ok $? "a job announced by a LlamaCloud event completes long before the next poll"
is "$(q "select count(*) from upload_pipeline.usage u join tvdb.jobs j using (job_id)
          where j.filename = 'p4-event.pdf' and u.operation in ('job_status', 'result') and u.http_status = 200")" 2 \
   "the parse.success event made the worker poll and fetch at once (its repeat did not)"
is "$(q "select string_agg(d.result, ',' order by d.received_at) from upload_pipeline.webhook_deliveries d
          join tvdb.jobs j using (job_id) where j.filename = 'p4-event.pdf'")" "hint_recorded" \
   "the event was recorded once, by its X-Webhook-Event-ID"
# v2: the callback goes in the job's webhook_configurations; LlamaParse sends events there.
curl -s -X POST "127.0.0.1:$LP/_control" -d '{"webhook": false, "webhook_repeat": 1}' >/dev/null
psql -X -q -d postgres -c "ALTER SYSTEM SET tvdb.llamaparse_api = 'v2'" -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
q "SELECT tvdb.upload('p4-v2.pdf', convert_to('%PDF-1.4 announced by a v2 event', 'UTF8'))" >/dev/null
wait_settled p4-v2 40; ok $? "v2: a job announced by its webhook_configurations event completes long before the next poll"
is "$(q "select count(*) from upload_pipeline.webhook_deliveries d join tvdb.jobs j using (job_id)
          where j.filename = 'p4-v2.pdf' and d.result = 'hint_recorded'")" 1 "v2: the parse.success event was the hint"
psql -X -q -d postgres -c "ALTER SYSTEM RESET tvdb.llamaparse_api" -c "SELECT pg_reload_conf()" >/dev/null
psql -X -q -d postgres -c "ALTER SYSTEM RESET tvdb.parse_webhook_url" -c "ALTER SYSTEM RESET tvdb.callback_url_rules" \
     -c "SELECT pg_reload_conf()" >/dev/null

echo "# phase 5: mock mode, offline"
kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; pids=()
psql -X -q -d postgres -c "ALTER SYSTEM SET tvdb.service_mode = 'mock'" -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
q "SELECT tvdb.upload('m-a.md', convert_to(E'# Cats\n\nCats purr and sleep in the sun.', 'UTF8')),
          tvdb.upload('m-b.md', convert_to(E'# Cats\n\nCats purr and sleep in the sun.', 'UTF8')),
          tvdb.upload('m-c.md', convert_to(E'# Cats\n\nCats purr and nap in the warm sun.', 'UTF8')),
          tvdb.upload('m-d.md', convert_to(E'# Taxes\n\nQuarterly VAT filings are due in April.', 'UTF8')),
          tvdb.upload('m-e.html', '<h1>Hi</h1><p>Some <b>HTML</b> &amp; text.</p>'),
          tvdb.upload('m-f.pdf', '%PDF-1.4 binary'),
          tvdb.upload('m-g.md', convert_to(E'# Only a title\n\n---\n', 'UTF8'))" >/dev/null
wait_settled m- 60; ok $? "mock documents settle with no network"
is "$(q "select string_agg(filename || ':' || status, ' ' order by filename) from tvdb.jobs where filename like 'm-%'")" \
   "m-a.md:complete m-b.md:complete m-c.md:complete m-d.md:complete m-e.html:complete m-f.pdf:failed_parse m-g.md:failed_chunking" \
   "mock: text, markdown and HTML complete; PDF fails parse with a reason; a document with no text fails chunking"
is "$(q "select last_error from tvdb.jobs where filename = 'm-g.md'")" "no text: the parsed document has nothing to embed" \
   "a document with no text says so, and has no chunks to send"
emb() { echo "(select c.embedding from upload_pipeline.document_chunks c join upload_pipeline.documents d using (document_id) where d.filename = '$1')"; }
cos() { echo "(select sum(a * b) from unnest($(emb "$1"), $(emb "$2")) as t(a, b))"; }
is "$(q "select $(emb m-a.md) = $(emb m-b.md)")" t "mock: the same text gives the same vector"
is "$(q "select $(cos m-a.md m-c.md) > $(cos m-a.md m-d.md) + 0.2")" t "mock: similar text gives a nearer vector than unrelated text"
is "$(q "select convert_from(b.content, 'UTF8') from upload_pipeline.blobs b join upload_pipeline.upload_jobs j on b.document_id = j.document_id and b.path = j.parsed_path
          join upload_pipeline.documents d on d.document_id = j.document_id where d.filename = 'm-e.html'")" "$(printf '# Hi\n\nSome HTML & text.')" \
   "mock: HTML becomes markdown"

echo "# phase 6: a document whose chunks cannot be stored holds back only itself"
# Chunking takes parsed jobs in batches; when a batch fails, each job is tried
# in its own transaction, and only the one at fault waits (with a backoff).
q "CREATE FUNCTION tvdb_test_poison() RETURNS trigger LANGUAGE plpgsql AS \$\$
   BEGIN IF NEW.content LIKE '%POISON%' THEN RAISE EXCEPTION 'poisoned chunk'; END IF; RETURN NEW; END \$\$;
   CREATE TRIGGER poison BEFORE INSERT ON upload_pipeline.document_chunks
       FOR EACH ROW EXECUTE FUNCTION tvdb_test_poison()" >/dev/null
q "SELECT tvdb.upload('p6-ok1.md', convert_to(E'# One\n\nFine text.', 'UTF8')),
          tvdb.upload('p6-poison.md', convert_to(E'# Two\n\nPOISON text.', 'UTF8')),
          tvdb.upload('p6-ok2.md', convert_to(E'# Three\n\nMore fine text.', 'UTF8'))" >/dev/null
p6() { q "select string_agg(filename || ':' || status, ' ' order by filename) from tvdb.jobs where filename like 'p6-%'"; }
for _ in $(seq 1 150); do
    [ "$(p6)" = "p6-ok1.md:complete p6-ok2.md:complete p6-poison.md:parsed" ] &&
        [ "$(q "select count(*) from upload_pipeline.events e join tvdb.jobs j using (job_id)
                where j.filename = 'p6-poison.md' and e.code = 'worker_retry_scheduled'")" -ge 1 ] && break
    sleep 0.2
done
is "$(p6)" "p6-ok1.md:complete p6-ok2.md:complete p6-poison.md:parsed" \
   "a failing chunk insert: the other documents of the batch complete, that one stays parsed"
is "$(q "select count(*) >= 1 from upload_pipeline.events e join tvdb.jobs j using (job_id)
         where j.filename = 'p6-poison.md' and e.code = 'worker_retry_scheduled' and e.severity = 'warn'")" t \
   "it is held back with a warning event and a backoff"
is "$(q "select next_poll_at > now() + interval '10 seconds' and lease_owner is null from tvdb.jobs j
         join upload_pipeline.upload_jobs u using (job_id) where j.filename = 'p6-poison.md'")" t \
   "its retry is not before the backoff, and nobody holds it"
q "DROP TRIGGER poison ON upload_pipeline.document_chunks; DROP FUNCTION tvdb_test_poison()" >/dev/null

# After every phase above (crashes, kills, restarts, cancels, reprocessing):
# the queue of open jobs is exactly the open jobs, each with its status and
# times, and the counts of finished jobs are the finished jobs (one snapshot).
is "$(psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB" -f "$HERE/../lib/queue_agrees.sql" \
          -c "SELECT pg_temp.queue_mismatches() || ' ' || pg_temp.count_mismatches()") \
$(q "SELECT count(*) > 100 FROM upload_pipeline.upload_jobs")" "0 0 t" \
   "the queue of open jobs and the counts of finished ones agree with the jobs, after every phase"

echo "# phase 7: pg_cron runs the maintenance"
# pg_cron lives in cron.database_name (postgres here): tvdb is installed there
# too, and a job that ran out of tries an hour ago waits for tvdb.retry_failed().
pq() { psql -X -q -At -v ON_ERROR_STOP=1 -d postgres -c "$1"; }
pq "SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS pg_cron; CREATE EXTENSION IF NOT EXISTS tvdb CASCADE" >/dev/null
cron_job=$(pq "SELECT tvdb.upload('cron.pdf', 'x')")
pq "SELECT tvdb.transition('$cron_job', 'failed_parse', '{\"error\": \"HTTP 503 (gave up after 8 tries)\", \"class\": \"retries_exhausted\"}');
    UPDATE upload_pipeline.upload_jobs SET status_changed_at = now() - interval '1 hour' WHERE job_id = '$cron_job'" >/dev/null
is "$(pq "SELECT count(*) FROM tvdb.schedule_maintenance()") $(pq "SELECT count(*) FROM tvdb.schedule_maintenance()") $(pq "SELECT count(*) FROM cron.job WHERE jobname LIKE 'tvdb-%'")" \
   "2 2 2" "tvdb.schedule_maintenance() makes two pg_cron jobs, and again changes nothing"
for _ in $(seq 1 150); do [ "$(pq "SELECT status FROM upload_pipeline.upload_jobs WHERE job_id = '$cron_job'")" = uploaded ] && break; sleep 0.5; done
is "$(pq "SELECT status || ' ' || attempts FROM upload_pipeline.upload_jobs WHERE job_id = '$cron_job'")" "uploaded 2" \
   "within a minute or so pg_cron ran tvdb.retry_failed(): the job is retried"
is "$(pq "SELECT count(DISTINCT j.jobname) FROM cron.job_run_details d JOIN cron.job j USING (jobid)
          WHERE j.jobname LIKE 'tvdb-%' AND d.status = 'succeeded'")" 2 "both maintenance jobs ran and succeeded"
is "$(pq "SELECT tvdb.unschedule_maintenance()") $(pq "SELECT count(*) FROM cron.job WHERE jobname LIKE 'tvdb-%'")" "2 0" \
   "tvdb.unschedule_maintenance() removes them"

psql -X -q -d postgres -c "ALTER SYSTEM RESET ALL" -c "SELECT pg_reload_conf()" >/dev/null
tap_done
