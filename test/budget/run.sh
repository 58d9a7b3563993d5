#!/usr/bin/env bash
# The budget race: four workers, 64 requests in flight each, racing for the
# last dollars of a small OpenAI budget against the fake OpenAI (slowed, so
# that many requests are out at once).  Reservations are made before each
# request goes, so the estimates of everything sent never pass the limit,
# and the actual spend passes it by no more than the estimates' error.  Then
# the limit is raised and everything completes.  Starts and stops its own
# cluster.  Prints TAP; exits non-zero on any failure.
set -uo pipefail
source "$(dirname "$0")/../../scripts/common.sh"
source "$(dirname "$0")/../lib/tap.sh"
cd "$TVDB_ROOT"
DB=tvdb_budget
WORK=$(mktemp -d /tmp/tvdb-budget-test.XXXXXX)
fake=

q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB" -c "$1"; }
cleanup() { [ -n "$fake" ] && kill "$fake" 2>/dev/null; tvdb_cluster_stop; rm -rf "$WORK"; }
trap cleanup EXIT
trap "exit 1" TERM INT

tvdb_cluster_start "tvdb.database = '$DB'" "tvdb.workers = 4" >/dev/null || exit 1
python3 "$FAKES/fake_openai.py" --port 0 --port-file "$WORK/oa" --latency 0.3 >"$WORK/oa.log" 2>&1 &
fake=$!
for _ in $(seq 1 50); do [ -s "$WORK/oa" ] && break; sleep 0.1; done
OA=$(cat "$WORK/oa")

psql -X -q -d postgres -c "CREATE DATABASE $DB"
q "SET client_min_messages = warning; CREATE EXTENSION tvdb CASCADE"
psql -X -q -d postgres >/dev/null <<SQL
ALTER SYSTEM SET tvdb.service_mode = 'real';
ALTER SYSTEM SET tvdb.llamaparse_base_url = 'http://127.0.0.1:9';
ALTER SYSTEM SET tvdb.openai_base_url = 'http://127.0.0.1:$OA/v1';
ALTER SYSTEM SET tvdb.llamaparse_api_key = 'unused';
ALTER SYSTEM SET tvdb.openai_api_key = 'test-openai-key';
ALTER SYSTEM SET tvdb.embedding_dimensions = 16;
ALTER SYSTEM SET tvdb.max_inflight = 64;
ALTER SYSTEM SET tvdb.chunk_overlap_tokens = 16;
ALTER SYSTEM SET tvdb.chunk_target_tokens = 96;
ALTER SYSTEM SET tvdb.embedding_batch_inputs = 2;
ALTER SYSTEM SET tvdb.embedding_cache = off;  -- the documents repeat their paragraphs
SELECT pg_reload_conf();
SQL
sleep 0.5

# 300 markdown documents (parsed locally), ~5 chunks each, two to a request:
# about 750 requests of ~200 tokens; at 0.02 USD per million tokens all of
# them cost ~0.003 USD.  The budget allows nothing, then a quarter of that,
# then more.
q "SELECT tvdb.set_budget('openai', 'day', 0)" >/dev/null
q "SELECT count(tvdb.upload(format('b-%s.md', i),
          convert_to(repeat(format(E'Budget race document %s, a paragraph of plain words.\n\n', i), 40), 'UTF8')))
   FROM generate_series(1, 300) i" >/dev/null

# Quiet: nothing in flight, and every unfinished job waits for the budget.
waiting() {
    q "SELECT count(*) FILTER (WHERE j.status <> 'complete' AND
                               (SELECT e.code FROM upload_pipeline.events e WHERE e.job_id = j.job_id
                                ORDER BY e.seq DESC LIMIT 1) IS DISTINCT FROM 'budget_exhausted')
              + (SELECT count(*) FROM upload_pipeline.usage WHERE state = 'sent')
       FROM upload_pipeline.upload_jobs j"
}
# Nothing may be spent yet: every document gets as far as its embeddings and
# waits.  Then three rounds, the operator raising the limit each time: the
# raise wakes every waiting job at once, and the four workers race for it.
for _ in $(seq 1 240); do [ "$(waiting)" = 0 ] && break; sleep 0.5; done
is "$(waiting) $(q "SELECT count(*) FROM upload_pipeline.usage WHERE service = 'openai'")" "0 0" \
   "with a limit of 0 every document waits at its embeddings, nothing sent"
for limit in 0.0008 0.0014 0.002; do
    q "SELECT tvdb.set_budget('openai', 'day', $limit)" >/dev/null
    sleep 1
    for _ in $(seq 1 240); do [ "$(waiting)" = 0 ] && break; sleep 0.5; done
    is "$(waiting)" 0 "limit $limit: the workers stopped, nothing in flight, every unfinished job waiting for the budget"
    # What it cost passed the limit by no more than the estimates fell
    # short, and the workers stopped only when no further request fitted.
    is "$(q "SELECT sum(cost_usd) <= $limit + sum(greatest(cost_usd - estimated_usd, 0))
                    AND $limit - sum(cost_usd + reserved_usd) < max(estimated_usd)
             FROM upload_pipeline.usage WHERE service = 'openai'")" t \
       "limit $limit: spent within the limit plus the estimates' shortfall, and used up"
    echo "# limit $limit: spent $(q "SELECT round(sum(cost_usd), 7) FROM upload_pipeline.usage WHERE service = 'openai'") USD;" \
         "$(q "SELECT count(*) FROM upload_pipeline.upload_jobs WHERE status = 'complete'") of 300 complete"
done
tokens=$(python3 -c "import json,sys; print(json.load(sys.stdin)['prompt_tokens'])" < <(curl -s "127.0.0.1:$OA/_stats"))
is "$(q "SELECT $tokens * 0.02 / 1e6 <= $limit + sum(greatest(cost_usd - estimated_usd, 0)),
                $tokens = sum(prompt_tokens)
         FROM upload_pipeline.usage WHERE service = 'openai'")" "t|t" \
   "by the fake's own token count too, and the ledger has every token it counted"
is "$(q "SELECT count(*) > 0 AND count(*) < 300 FROM upload_pipeline.upload_jobs WHERE status <> 'complete'")" t \
   "the limit bit: some documents wait"
is "$(q "SELECT count(*) FROM upload_pipeline.upload_jobs WHERE status LIKE 'failed%' OR tries > 0")" 0 \
   "none failed, none spent a try"
is "$(q "SELECT string_agg(kind || ':' || count, ' ' ORDER BY kind) FROM upload_pipeline.alerts WHERE kind LIKE 'budget%'")" \
   "budget_80:1 budget_exhausted:1" "one alert at 80 % and one at 100 % in the period"

# The operator raises the limit: the waiting documents go on at once.
q "SELECT tvdb.set_budget('openai', 'day', 1)" >/dev/null
for _ in $(seq 1 240); do
    [ "$(q "SELECT count(*) FROM upload_pipeline.upload_jobs WHERE status <> 'complete'")" = 0 ] && break; sleep 0.5
done
is "$(q "SELECT count(*) FROM upload_pipeline.upload_jobs WHERE status = 'complete'")" 300 "with the limit raised all complete"
is "$(q "SELECT count(*) FROM (SELECT document_id FROM upload_pipeline.document_chunks GROUP BY document_id
          HAVING max(chunk_index) + 1 <> count(*) OR count(*) FILTER (WHERE embedding IS NULL) > 0) s")" 0 \
   "no chunk duplicated or missing, every chunk embedded"

tap_done
