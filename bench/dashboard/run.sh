#!/usr/bin/env bash
# bench/dashboard/run.sh — what the operator's window costs as the history
# grows: tvdb.dashboard() (GET /api/v1/status), tvdb.find_documents() and
# tvdb.document_timeline() on a database holding 200 open and recent
# documents (A) and on one holding the same plus HISTORY finished jobs with
# their events and ledger rows (those all in this month, the worst case for
# the month's cost), loaded in bulk (B), in the same run on the
# same cluster.  Reports each call's mean latency in A and B and B/A (the
# target: flat, B/A near 1).  A benchmark, not a test: it exits 0 whatever
# the figures.
#
#   sudo bash bench/dashboard/run.sh          defaults: HISTORY=1000000 CALLS=200
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../../scripts/common.sh"
cd "$TVDB_ROOT"
HISTORY=${HISTORY:-1000000}
CALLS=${CALLS:-200}
BUILD=${BUILD:-1}

[ "$BUILD" = 1 ] && { tvdb_install_deps; tvdb_build; }
WORK=$(mktemp -d /tmp/tvdb-bench-dashboard.XXXXXX)
chmod 755 "$WORK"
trap 'tvdb_cluster_stop; rm -rf "$WORK"' EXIT
tvdb_cluster_start "tvdb.database = 'none'" "shared_buffers = '1GB'" "max_wal_size = '8GB'" >/dev/null

# The same 200 recent documents in both: 150 complete with three requests,
# 30 waiting for their parse, 20 failed; a monthly and a daily budget.
recent() {
    psql -X -q -v ON_ERROR_STOP=1 -d "$1" <<'SQL'
SET client_min_messages = error;
\i test/lib/walk_job.sql
CREATE TEMP TABLE done AS SELECT pg_temp.job('report-' || i || '.md',
    '{parse_queued,parsed,chunking,chunks_stored,embedding_queued,embedding_in_progress,embeddings_stored,complete}') AS job
FROM generate_series(1, 150) i;
SELECT count(pg_temp.job('waiting-' || i || '.md', '{parse_queued}')) FROM generate_series(1, 30) i;
SELECT count(tvdb.transition(pg_temp.job('broken-' || i || '.md', '{parse_queued}'), 'failed_parse', '{"error": "corrupt"}'))
FROM generate_series(1, 20) i;
INSERT INTO upload_pipeline.usage (service, operation, job_id, http_status, latency_ms, pages, cost_usd)
SELECT 'llamaparse', op, job, 200, 100, 2, 0.003 FROM done, unnest('{upload,job_status,result}'::text[]) op;
SELECT tvdb.set_budget('llamaparse', 'month', 100000), tvdb.set_budget('all', 'day', 100000);
SQL
}
for db in a b; do
    psql -X -q -d postgres -c "CREATE DATABASE bench_$db"
    psql -X -q -d "bench_$db" -c "SET client_min_messages = error" -c "CREATE EXTENSION tvdb CASCADE"
done

echo "== B: loading $HISTORY finished jobs (4 events a week old, 3 ledger rows each from this month)"
start=$(date +%s)
psql -X -q -v ON_ERROR_STOP=1 -d bench_b <<SQL
SET session_replication_role = replica;   -- bulk load: no state-machine triggers
INSERT INTO upload_pipeline.blobs (document_id, path, content, content_type, sha256, size_bytes, created_at)
SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, 'storage://raw/h' || i, '\\x00', 'text/plain',
       repeat('0', 64), 1, now() - interval '7 days'
FROM generate_series(1, $HISTORY) i;
INSERT INTO upload_pipeline.documents (document_id, filename, mime_type, size_bytes, sha256, storage_path)
SELECT document_id, 'old-' || substr(path, 16) || '.md', 'text/markdown', 1, repeat('0', 64), path
FROM upload_pipeline.blobs;
INSERT INTO upload_pipeline.upload_jobs (job_id, document_id, status, created_at, status_changed_at)
SELECT document_id, document_id, 'complete', now() - interval '7 days', now() - interval '7 days'
FROM upload_pipeline.documents;
INSERT INTO upload_pipeline.finished_counts (status, slot, jobs) VALUES ('complete', 0, $HISTORY)
ON CONFLICT (status, slot) DO UPDATE SET jobs = finished_counts.jobs + excluded.jobs;
INSERT INTO upload_pipeline.events (job_id, document_id, type, severity, code, ts, from_status, to_status, in_previous_state)
SELECT j.job_id, j.document_id, 'status_changed', 'info', 'status_changed', now() - interval '7 days', NULL, s, interval '1 second'
FROM upload_pipeline.upload_jobs j, unnest('{parse_queued,parsed,embedding_queued,complete}'::text[]) s;
-- the ledger rows all in this month and today's share today (the worst case
-- for "cost today" and "this month"; triggers on: the daily totals follow)
SET session_replication_role = origin;
INSERT INTO upload_pipeline.usage (ts, service, operation, job_id, http_status, cost_usd)
SELECT greatest(date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', now() - interval '2 hours')
       - random() * (interval '1 hour'), 'llamaparse', op, job_id, 200, 0.003
FROM upload_pipeline.upload_jobs, unnest('{upload,job_status,result}'::text[]) op;
SQL
psql -X -q -d bench_b -c "VACUUM ANALYZE"
echo "   loaded in $(( $(date +%s) - start )) s; $(psql -X -At -d bench_b -c "SELECT pg_size_pretty(pg_database_size('bench_b'))")"
for db in a b; do recent "bench_$db" >/dev/null; psql -X -q -d "bench_$db" -c "VACUUM ANALYZE"; done

# Mean ms per call of one statement (pgbench, one client), after a warm-up.
mean_ms() {  # mean_ms DB SQL
    printf '%s\n' "$2" >"$WORK/q.sql"
    "$PGBIN/pgbench" -n -t 5 -f "$WORK/q.sql" "$1" >/dev/null
    "$PGBIN/pgbench" -n -t "$CALLS" -f "$WORK/q.sql" "$1" | awk '/latency average/ { print $4 }'
}
doc=$(psql -X -At -d bench_b -c "SELECT document_id FROM upload_pipeline.documents WHERE filename = 'report-7.md'")
doc_a=$(psql -X -At -d bench_a -c "SELECT document_id FROM upload_pipeline.documents WHERE filename = 'report-7.md'")
echo
echo "machine: $(tvdb_machine)"
printf '%-44s %10s %10s %8s\n' "call ($CALLS each)" "A ms" "B ms" "B/A"
while IFS='|' read -r name sql; do
    a=$(mean_ms bench_a "${sql//@DOC@/$doc_a}")
    b=$(mean_ms bench_b "${sql//@DOC@/$doc}")
    awk -v n="$name" -v a="$a" -v b="$b" 'BEGIN { printf "%-44s %10.3f %10.3f %8.2f\n", n, a, b, b / a }'
done <<'CALLS'
tvdb.dashboard() (GET /api/v1/status)|SELECT tvdb.dashboard();
tvdb.find_documents('report-7') (a filename)|SELECT * FROM tvdb.find_documents('report-7');
tvdb.find_documents(<a document id>)|SELECT * FROM tvdb.find_documents('@DOC@');
tvdb.document_timeline(<a document>)|SELECT * FROM tvdb.document_timeline('@DOC@');
CALLS
echo "(A: 200 documents; B: the same 200 and $HISTORY finished jobs)"
