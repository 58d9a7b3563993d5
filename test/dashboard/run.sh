#!/usr/bin/env bash
# The operator's window, tested as a person would use it: a cluster with
# documents in several states (moved by tvdb.transition, as the worker
# would), requests and their costs in the ledger, a budget, an alert, chunks;
# tvdb-webhookd serving it; curl for the endpoints' answers and refusals;
# headless Chromium (Debian's chromium) opening the dashboard, a search and
# a document's timeline, whose rendered DOM must show the numbers SQL gives.
# Screenshots go to test/dashboard/out/.  Then, on 100,000 finished jobs,
# no statement behind GET /api/v1/status scans the history.  Starts and
# stops its own cluster; prints TAP, exits non-zero on any failure.
set -uo pipefail
source "$(dirname "$0")/../../scripts/common.sh"
source "$(dirname "$0")/../lib/tap.sh"
cd "$TVDB_ROOT"
tvdb_install_deps chromium || exit 1

DB=tvdb_dashboard
OUT=$TVDB_ROOT/test/dashboard/out
WORK=$(mktemp -d /tmp/tvdb-dashboard.XXXXXX)
chmod 755 "$WORK"
mkdir -p "$OUT"
DAEMON_PID=
cleanup() {
    [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
    tvdb_cluster_stop
    rm -rf "$WORK"
}
trap cleanup EXIT
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB" -c "$1"; }

tvdb_cluster_start "tvdb.database = 'elsewhere'" >/dev/null || exit 1
psql -X -q -d postgres -c "CREATE DATABASE $DB"
q "SET client_min_messages = error; CREATE EXTENSION tvdb CASCADE"
q "CREATE ROLE dash_daemon LOGIN; GRANT tvdb_webhook TO dash_daemon"

# ---- a pipeline in several states -----------------------------------------
cat >"$WORK/setup.sql" <<'SQL'
SET client_min_messages = error;
\i test/lib/walk_job.sql
CREATE TEMP TABLE done (i serial, job uuid);
INSERT INTO done (job) SELECT pg_temp.job('report-' || i || '.md',
    '{parse_queued,parsed,chunking,chunks_stored,embedding_queued,embedding_in_progress,embeddings_stored,complete}')
FROM generate_series(1, 3) i;
SELECT pg_temp.job('waiting-' || i || '.md', '{parse_queued}') FROM generate_series(1, 2) i;
SELECT pg_temp.job('embedding.md', '{parse_queued,parsed,chunking,chunks_stored,embedding_queued}');
SELECT pg_temp.job('<img src=x onerror=alert(1)>.md', '{}');
SELECT tvdb.transition(pg_temp.job('broken.md', '{parse_queued}'), 'failed_parse',
                       '{"error": "LlamaParse said the file is corrupt"}');
-- the ledger: an upload and a result per finished job, one embeddings batch for all three
INSERT INTO upload_pipeline.usage (service, operation, job_id, http_status, latency_ms, pages, cost_usd)
SELECT 'llamaparse', 'upload', job, 200, 120.5, 2, 0.006 FROM done;
INSERT INTO upload_pipeline.usage (service, operation, job_id, http_status, latency_ms, cost_usd)
SELECT 'llamaparse', 'result', job, 200, 30.5, 0 FROM done;
INSERT INTO upload_pipeline.usage (service, operation, job_ids, job_tokens, http_status, latency_ms, prompt_tokens,
                                   cost_usd, model)
SELECT 'openai', 'embeddings', array_agg(job ORDER BY i), '{100,100,200}', 200, 80.25, 400, 0.000008, 'text-embedding-3-small'
FROM done;
INSERT INTO upload_pipeline.document_chunks (document_id, job_id, chunk_index, content, token_estimate, sha256, heading_path)
SELECT j.document_id, j.job_id, n, 'chunk ' || n, 50 + n, repeat('0', 64), ARRAY['Report', 'Part ' || n]
FROM upload_pipeline.upload_jobs j JOIN upload_pipeline.documents d USING (document_id), generate_series(0, 2) n
WHERE d.filename = 'report-1.md';
SELECT tvdb.set_budget('openai', 'month', 1.00);
SQL
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -f "$WORK/setup.sql" >/dev/null || { echo "Bail out! setup failed"; exit 1; }
MON=$(q "SELECT tvdb.create_api_token('ops', 'tvdb_monitor')")
UP=$(q "SELECT tvdb.create_api_token('uploader')")

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
"$PGBIN/tvdb-webhookd" --listen 127.0.0.1 --port "$PORT" --timeout 10 \
    --dsn "host=$PGHOST port=$PGPORT dbname=$DB user=dash_daemon" 2>"$WORK/daemon.log" &
DAEMON_PID=$!
for _ in $(seq 1 50); do curl -s -o /dev/null "$URL/health" && break; sleep 0.1; done

# ---- the endpoints ---------------------------------------------------------
code() { curl -s -o "$WORK/body" -w '%{http_code}' "$@"; }
is "$(code "$URL/")" 200 "GET / serves the page without a token (it holds no data)"
grep -q "<title>tvdb pipeline</title>" "$WORK/body"; ok $? "it is the dashboard"
! grep -Eiq '(src|href)="(https?:)?//' "$WORK/body"; ok $? "the page loads nothing from another host"
curl -s -D "$WORK/headers" -o /dev/null "$URL/dashboard.js"
grep -qi "^content-security-policy: default-src 'none'; script-src 'self'; connect-src 'self'" "$WORK/headers"
ok $? "the page is served with a content security policy that allows only its own script and requests"
is "$(code "$URL/api/v1/status")" 401 "GET /api/v1/status without a token: 401"
is "$(code -H "Authorization: Bearer $UP" "$URL/api/v1/status")" 403 "with an upload token: 403"
is "$(code -H "Authorization: Bearer tvdb_0000" "$URL/api/v1/status")" 401 "with an unknown token: 401"
is "$(code -H "Authorization: Bearer $MON" "$URL/api/v1/status")" 200 "with a monitor's token: 200"
is "$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["backlog"]["jobs"], len(d["recent"]))' "$WORK/body")" \
   "$(q "SELECT backlog FROM tvdb.health") 8" "its backlog is tvdb.health's, and it lists the 8 documents"
api() { code -H "Authorization: Bearer $MON" "$URL$1"; }
corr=$(q "SELECT correlation_id FROM tvdb.jobs WHERE filename = 'broken.md'")
is "$(api "/api/v1/documents?q=$corr")" 200 "a search by correlation id: 200"
is "$(python3 -c 'import json,sys; print([d["filename"] for d in json.load(open(sys.argv[1]))["documents"]])' "$WORK/body")" \
   "['broken.md']" "finds that document"
api "/api/v1/documents?q=REPORT-" >/dev/null
is "$(python3 -c 'import json,sys; print(sorted(d["filename"] for d in json.load(open(sys.argv[1]))["documents"]))' "$WORK/body")" \
   "['report-1.md', 'report-2.md', 'report-3.md']" "a search by the start of a filename, in any case"
api "/api/v1/documents?q=%25" >/dev/null
is "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["documents"]))' "$WORK/body")" 0 \
   "a % in the term is a character, not a wildcard"
is "$(api "/api/v1/documents")" 400 "a search without a term: 400"
is "$(api "/api/v1/documents/not-a-uuid")" 400 "a document id that is not a uuid: 400"
is "$(api "/api/v1/documents/$(q "SELECT gen_random_uuid()")")" 404 "an unknown document: 404"
is "$(code "$URL/documents/../../etc/passwd")" 404 "a page path that is not a document id: 404"

# ---- the dashboard in a browser ----------------------------------------------
browse() {  # browse URL: the DOM after the page's script ran, into $WORK/dom.html
    timeout 120 chromium --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars \
        --user-data-dir="$WORK/chromium" --virtual-time-budget=10000 --dump-dom "$1" >"$WORK/dom.html" 2>>"$WORK/chromium.log"
}
shoot() {   # shoot URL FILE
    timeout 120 chromium --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars \
        --user-data-dir="$WORK/chromium" --window-size=1400,1500 --virtual-time-budget=10000 --screenshot="$2" "$1" \
        >>"$WORK/chromium.log" 2>&1
}
dom() {     # dom PYTHON-EXPRESSION over d (the parsed DOM, test/dashboard/dom.py)
    python3 "$TVDB_ROOT/test/dashboard/dom.py" "$WORK/dom.html" "$1"
}

browse "$URL/#token=$MON"
is "$(dom 'd.attr("body", "data-loaded")')" "dashboard" "Chromium renders the dashboard from /api/v1/status"
is "$(dom '" ".join(g["data-status"] + "=" + g["data-jobs"] for g in d.all("g", "data-status"))')" \
   "$(q "SELECT string_agg(status || '=' || jobs, ' ' ORDER BY ordinal) FROM tvdb._pipeline_status()")" \
   "the status chart has one bar per status with tvdb.pipeline_status's counts"
is "$(dom 'd.count("rect", parent_attr="data-status")')" "$(q "SELECT count(*) FROM tvdb.statuses")" "and draws each bar"
is "$(dom 'd.text("backlog-jobs")')" "$(q "SELECT backlog FROM tvdb.health")" "the backlog card shows tvdb.health's backlog"
is "$(dom 'd.text("hour-completed") + " " + d.text("hour-failed")')" \
   "$(q "SELECT sum(completed) || ' ' || sum(failed) FROM tvdb.throughput")" "completed and failed in the last hour, as tvdb.throughput"
is "$(dom 'str(len(d.all("g", "data-minute")))')" "60" "the throughput chart has a column per minute of the hour"
is "$(dom 'd.text("cost-today")')" "\$$(q "SELECT to_char(sum(cost_usd), 'FM0.0000') FROM upload_pipeline.usage")" \
   "cost today is the ledger's"
is "$(dom 'd.row_text("budgets", "data-budget", "openai/month")')" \
   "$(q "SELECT format('openai per month $%s $%s $%s',
                       -- under a hundredth of a cent: two significant digits, as the page shows it
                       CASE WHEN spent_usd <> 0 AND abs(spent_usd) < 0.0001
                            THEN round(spent_usd, (1 - floor(log(abs(spent_usd))))::integer)::text
                            ELSE to_char(spent_usd, 'FM0.0000') END,
                       to_char(reserved_usd, 'FM0.0000'), to_char(limit_usd, 'FM0.0000')) FROM tvdb.budgets")" \
   "the budget row shows its spend against its limit (millionths of a dollar, not \$0.0000)"
is "$(dom 'd.text("health")')" "$(q "SELECT status FROM tvdb.health")" "the health badge is tvdb.health's"
is "$(dom 'str(len(d.all("tr", "data-service")))')" "2" "a row per circuit"
dom 'd.text_of("alerts")' | grep -q "broken.md\|failed_parse"; ok $? "the latest alerts include the failed job's"
is "$(dom 'str(len(d.all("tr", "data-job")))')" "8" "the newest documents: all 8"
broken_doc=$(q "SELECT document_id FROM upload_pipeline.documents WHERE filename = 'broken.md'")
is "$(dom 'd.link_to("/documents/'"$broken_doc"'")')" "broken.md" "each links to its timeline page"
is "$(dom 'd.attr_count("img")')" "0" "a filename holding HTML is shown as text, never run as HTML"
dom 'd.text_of("recent")' | grep -qF "<img src=x onerror=alert(1)>.md"; ok $? "(it is there, as text)"
shoot "$URL/#token=$MON" "$OUT/dashboard.png"
[ -s "$OUT/dashboard.png" ]; ok $? "screenshot: test/dashboard/out/dashboard.png"

browse "$URL/?q=waiting#token=$MON"
is "$(dom 'd.count("a", parent_id="found")')" "2" "the search box (a /?q= link) finds the two waiting documents"

report=$(q "SELECT document_id FROM upload_pipeline.documents WHERE filename = 'report-1.md'")
browse "$URL/documents/$report#token=$MON"
is "$(dom 'd.attr("body", "data-loaded")')" "document" "the timeline page renders"
is "$(dom 'd.text("doc-title")')" "report-1.md" "for its document"
is "$(dom 'd.text("health")')" "$(q "SELECT status FROM tvdb.health")" "under the pipeline's health, as the dashboard's header"
is "$(dom '" ".join(r[2] for r in d.rows("timeline", "data-kind", "status"))')" \
   "$(q "SELECT string_agg(to_status, ' ' ORDER BY seq) FROM upload_pipeline.events WHERE document_id = '$report' AND to_status IS NOT NULL")" \
   "every status in order, as the event log has them"
is "$(dom '" ".join(r[2] + ":" + r[6] for r in d.rows("timeline", "data-kind", "request"))')" \
   "llamaparse upload:\$0.0060 llamaparse result:\$0.0000 openai embeddings:\$0.0000020" \
   "every request with its cost (the batch's share: 100 of its 400 tokens, in millionths of a dollar)"
is "$(dom 'd.text("doc-cost")')" "\$$(q "SELECT to_char(sum(cost_usd), 'FM0.0000') FROM tvdb.job_costs WHERE filename = 'report-1.md'")" \
   "the document's cost is tvdb.job_costs'"
is "$(dom '" | ".join(r[1] for r in d.rows("chunks", "data-chunk"))')" \
   "Report > Part 0; 50 tokens; not embedded | Report > Part 1; 51 tokens; not embedded | Report > Part 2; 52 tokens; not embedded" \
   "its chunks with their heading paths"
shoot "$URL/documents/$report#token=$MON" "$OUT/timeline.png"
browse "$URL/documents/$broken_doc#token=$MON"
dom 'd.text("doc-error")' | grep -q "LlamaParse said the file is corrupt"; ok $? "a failed document's page says why it failed"

# ---- logs that follow a document ---------------------------------------------
LOG=$TVDB_CLUSTER_DIR/server.log
printf '# title\n' >"$WORK/new.md"
curl -s -o "$WORK/body" -H "Authorization: Bearer $UP" -F "file=@$WORK/new.md;type=text/markdown" "$URL/api/v1/upload"
new_job=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["job_id"])' "$WORK/body")
new_corr=$(q "SELECT correlation_id FROM upload_pipeline.upload_jobs WHERE job_id = '$new_job'")
for _ in $(seq 1 20); do grep -q "POST /api/v1/upload 201" "$WORK/daemon.log" && break; sleep 0.1; done
grep -q "POST /api/v1/upload 201 .*job=$new_job correlation=$new_corr" "$WORK/daemon.log"
ok $? "tvdb-webhookd's line for an upload names its job and correlation id" "$(tail -2 "$WORK/daemon.log")"
quiet=$(q "INSERT INTO upload_pipeline.usage (service, operation, job_id, http_status, latency_ms)
           VALUES ('llamaparse', 'job_status', '$new_job', 200, 5) RETURNING usage_id")
q "ALTER SYSTEM SET tvdb.log_requests = on"; q "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
sent=$(q "INSERT INTO upload_pipeline.usage (service, operation, job_id, state, estimated_usd, reserved_usd, owner)
          VALUES ('llamaparse', 'upload', '$new_job', 'sent', 0.003, 0.003, 'test pid 1') RETURNING usage_id")
q "UPDATE upload_pipeline.usage SET state = 'answered', http_status = 200, latency_ms = 321.25, cost_usd = 0.003,
   reserved_usd = 0 WHERE usage_id = $sent"
q "SELECT tvdb.transition('$new_job', 'parse_queued'), tvdb.transition('$new_job', 'failed_parse', '{\"error\": \"the parser gave up\"}')" >/dev/null
q "ALTER SYSTEM RESET tvdb.log_requests"; q "SELECT pg_reload_conf()" >/dev/null
grep -q "tvdb request: service=llamaparse operation=upload status=200 latency_ms=321.3 state=answered cost_usd=0.003 usage_id=$sent job=$new_job correlation=$new_corr" "$LOG"
ok $? "with tvdb.log_requests on, an answered request's line names service, status, latency, cost, job and correlation id" \
   "$(grep "tvdb request" "$LOG" | tail -3)"
! grep -q "usage_id=$quiet " "$LOG"; ok $? "with it off, none"
grep -q "tvdb job failed: job=$new_job correlation=$new_corr status=failed_parse attempt=1 error=the parser gave up" "$LOG"
ok $? "a failed job's line names the job, its correlation id and why" "$(grep "tvdb job failed" "$LOG" | tail -2)"
! grep -q "tvdb_[0-9a-f]\{20\}" "$LOG" "$WORK/daemon.log"; ok $? "no bearer token in either log"

# ---- cheap on a large history ------------------------------------------------
# 100,000 finished jobs with their events, loaded in bulk; then no statement
# behind the dashboard reads upload_jobs, events, usage or documents whole.
q "SET session_replication_role = replica;
   INSERT INTO upload_pipeline.blobs (document_id, path, content, content_type, sha256, size_bytes, created_at)
   SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, 'storage://raw/h' || i, '\\x00', 'text/plain',
          repeat('0', 64), 1, now() - interval '2 days'
   FROM generate_series(1, 100000) i;
   INSERT INTO upload_pipeline.documents (document_id, filename, mime_type, size_bytes, sha256, storage_path)
   SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, 'old-' || i || '.md', 'text/markdown', 1,
          repeat('0', 64), 'storage://raw/h' || i FROM generate_series(1, 100000) i;
   INSERT INTO upload_pipeline.upload_jobs (job_id, document_id, status, created_at, status_changed_at)
   SELECT document_id, document_id, 'complete', now() - interval '2 days', now() - interval '2 days'
   FROM upload_pipeline.documents WHERE filename LIKE 'old-%';
   INSERT INTO upload_pipeline.events (job_id, document_id, type, severity, code, ts, from_status, to_status, in_previous_state)
   SELECT j.job_id, j.document_id, 'status_changed', 'info', 'status_changed', now() - interval '2 days', NULL, s, interval '1 second'
   FROM upload_pipeline.upload_jobs j, unnest('{parse_queued,parsed,chunking,complete}'::text[]) s WHERE j.status = 'complete';
   INSERT INTO upload_pipeline.usage (ts, service, operation, job_id, http_status, cost_usd)
   SELECT now() - interval '40 days', 'llamaparse', 'upload', job_id, 200, 0.003 FROM upload_pipeline.upload_jobs;
   ANALYZE" >/dev/null
plans=$(psql -X -q -At -d "$DB" -c "LOAD 'auto_explain'" -c "SET auto_explain.log_min_duration = 0" \
        -c "SET auto_explain.log_nested_statements = on" -c "SET auto_explain.log_level = notice" \
        -c "SET client_min_messages = notice" -c "SELECT tvdb.dashboard() IS NOT NULL" 2>&1)
echo "$plans" > "$OUT/dashboard-plans.txt"
scans=$(echo "$plans" | grep -Eo "Seq Scan on (upload_jobs|events|usage|documents|document_chunks) " | sort -u | tr -d '\n')
grep -q "Index Scan Backward using upload_jobs_created_idx" "$OUT/dashboard-plans.txt"
ok $? "(the plans were captured: the newest documents come from upload_jobs_created_idx)"
is "$scans" "" "on 100,000 finished jobs no statement of tvdb.dashboard() scans the history (plans: test/dashboard/out/dashboard-plans.txt)"
plans=$(psql -X -q -At -d "$DB" -c "LOAD 'auto_explain'" -c "SET auto_explain.log_min_duration = 0" \
        -c "SET auto_explain.log_nested_statements = on" -c "SET auto_explain.log_level = notice" \
        -c "SET client_min_messages = notice" \
        -c "SELECT count(*) FROM tvdb.document_timeline('$report')" \
        -c "SELECT count(*) FROM tvdb.find_documents('old-5')" -c "SELECT count(*) FROM tvdb.find_documents('$report')" 2>&1)
echo "$plans" > "$OUT/timeline-plans.txt"
scans=$(echo "$plans" | grep -Eo "Seq Scan on (upload_jobs|events|usage|documents) " | sort -u | tr -d '\n')
grep -q "Index Scan.* on usage" "$OUT/timeline-plans.txt"; ok $? "(the plans were captured: the timeline's requests come from the ledger's indexes)"
is "$scans" "" "nor does a document's timeline or a search (plans: test/dashboard/out/timeline-plans.txt)"
is "$(api "/api/v1/documents?q=old-99999")" 200 "a search by filename still answers"
grep -q '"old-99999.md"' "$WORK/body"; ok $? "and finds the one document"

kill "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null; DAEMON_PID=
grep -q "GET /api/v1/status 200" "$WORK/daemon.log"; ok $? "the daemon logged each request"
tap_done
