#!/usr/bin/env bash
# Backup and restore, mid-pipeline.  The worker takes documents through the
# fake LlamaParse and OpenAI until they are spread over the pipeline, then
# the cluster is restarted serving no database, which freezes the
# source where it stood (leases held, requests out).  pg_dump in custom and
# plain formats, pg_restore and psql into two new databases: every row of
# every table, the sequences and a user's index come back, the triggers
# neither refuse nor re-stamp the restored jobs, and the worker then
# finishes every unfinished job of the restored database with nothing done
# twice.  Starts and stops its own cluster.  Prints TAP.
set -uo pipefail
source "$(dirname "$0")/../../scripts/common.sh"
source "$(dirname "$0")/../lib/tap.sh"
cd "$TVDB_ROOT"
WORK=$(mktemp -d /tmp/tvdb-restore-test.XXXXXX)
chmod 777 "$WORK"

q() { local db=$1; shift; psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" -c "$1"; }
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; tvdb_cluster_stop; rm -rf "$WORK"; }
trap cleanup EXIT
trap "exit 1" TERM INT
restart_serving() {  # the workers serve only the named database
    psql -X -q -d postgres -c "ALTER SYSTEM SET tvdb.database = '$1'" >/dev/null
    as_pg "$PGBIN/pg_ctl" -D "$TVDB_PGDATA" -m fast -w restart >/dev/null
}

tvdb_cluster_start "tvdb.database = 'tvdb_src'" "tvdb.workers = 2" >/dev/null || exit 1
start_fake fake_llamaparse.py "$WORK/lp" --parse-latency 20 --fail-marker FAILME
start_fake fake_openai.py "$WORK/oa" --latency 4
LP=$(cat "$WORK/lp"); OA=$(cat "$WORK/oa")
psql -X -q -d postgres >/dev/null <<SQL
ALTER SYSTEM SET tvdb.service_mode = 'real';
ALTER SYSTEM SET tvdb.llamaparse_base_url = 'http://127.0.0.1:$LP';
ALTER SYSTEM SET tvdb.openai_base_url = 'http://127.0.0.1:$OA/v1';
ALTER SYSTEM SET tvdb.llamaparse_api_key = 'test-llamaparse-key';
ALTER SYSTEM SET tvdb.openai_api_key = 'test-openai-key';
ALTER SYSTEM SET tvdb.embedding_dimensions = 16;
ALTER SYSTEM SET tvdb.poll_interval_min = '100ms';
ALTER SYSTEM SET tvdb.poll_interval_max = '500ms';
ALTER SYSTEM SET tvdb.chunk_overlap_tokens = 16;
ALTER SYSTEM SET tvdb.chunk_target_tokens = 96;
ALTER SYSTEM SET tvdb.embedding_batch_inputs = 4;
SELECT pg_reload_conf();
SQL
psql -X -q -d postgres -c "CREATE DATABASE tvdb_src"
q tvdb_src "SET client_min_messages = warning; CREATE EXTENSION tvdb CASCADE"
q tvdb_src "SELECT tvdb.set_budget('openai', 'day', 5), tvdb.set_budget('llamaparse', 'month', 50)" >/dev/null
q tvdb_src "CREATE INDEX my_events_code_idx ON upload_pipeline.events (code, ts)"

pdf() { printf '%%PDF-1.4\n1 0 obj << /Type /Page >> endobj\n%s\n%%%%EOF\n' "$1"; }
md() { local i; for i in $(seq 1 12); do printf '# Part %s of %s\n\nSome words about %s, paragraph %s.\n\n' "$i" "$1" "$1" "$i"; done; }
upload() {  # upload <db> <filename> <file>
    q "$1" "SELECT tvdb.upload('$2', pg_read_binary_file('$3'))" >/dev/null
}
for i in 1 2 3; do md "done $i" > "$WORK/done$i.md"; upload tvdb_src "done-$i.md" "$WORK/done$i.md"; done
pdf "bad" > "$WORK/bad.pdf"; upload tvdb_src "FAILME.pdf" "$WORK/bad.pdf"
for i in 1 2; do pdf "queued $i" > "$WORK/q$i.pdf"; done
chmod 644 "$WORK"/*

# The markdown documents complete, LlamaParse fails one PDF (after 20 s).
for _ in $(seq 1 120); do
    [ "$(q tvdb_src "SELECT count(*) FILTER (WHERE status = 'complete' AND filename LIKE 'done-%') = 3
                            AND count(*) FILTER (WHERE status = 'failed_parse') = 1
                     FROM upload_pipeline.upload_jobs JOIN upload_pipeline.documents USING (document_id)")" = t ] && break
    sleep 0.5
done
# Then two PDFs go out to LlamaParse, and two documents' embeddings are in
# flight (OpenAI answers after 4 s).
for i in 1 2; do upload tvdb_src "queued-$i.pdf" "$WORK/q$i.pdf"; done
for i in 1 2; do md "embedding $i" > "$WORK/e$i.md"; chmod 644 "$WORK/e$i.md"; upload tvdb_src "embedding-$i.md" "$WORK/e$i.md"; done
for _ in $(seq 1 60); do
    [ "$(q tvdb_src "SELECT count(*) FILTER (WHERE status = 'embedding_in_progress') = 2
                            AND count(*) FILTER (WHERE status = 'parse_queued') = 2
                     FROM upload_pipeline.upload_jobs")" = t ] && break
    sleep 0.2
done
restart_serving tvdb_elsewhere
# Uploaded after the workers left: these wait in 'uploaded'.
for i in 1 2; do md "late $i" > "$WORK/l$i.md"; chmod 644 "$WORK/l$i.md"; upload tvdb_src "late-$i.md" "$WORK/l$i.md"; done
statuses=$(q tvdb_src "SELECT string_agg(status || ':' || n, ' ' ORDER BY status) FROM
                       (SELECT status, count(*) n FROM upload_pipeline.upload_jobs GROUP BY status) s")
is "$statuses" "complete:3 embedding_in_progress:2 failed_parse:1 parse_queued:2 uploaded:2" \
   "the source stands mid-pipeline"
# And one job in each status the run did not leave one in, moved there by
# hand along the state machine's edges (no worker: nothing else moves them).
walk() {  # walk <filename> <status>...
    local job; job=$(q tvdb_src "SELECT tvdb.upload('$1', convert_to('# $1', 'UTF8'))")
    shift
    for s in "$@"; do q tvdb_src "SELECT tvdb.transition('$job', '$s', '{\"error\": \"by hand\"}')" >/dev/null; done
}
walk status-1.md parse_queued parsed
walk status-2.md parse_queued parsed chunking
walk status-3.md parse_queued parsed chunking chunks_stored
walk status-4.md parse_queued parsed chunking chunks_stored embedding_queued
walk status-5.md parse_queued parsed chunking chunks_stored embedding_queued embedding_in_progress embeddings_stored
walk status-6.md parse_queued parsed failed_chunking
walk status-7.md parse_queued parsed chunking chunks_stored failed_embedding
walk status-8.md cancelled
is "$(q tvdb_src "SELECT count(*) FROM tvdb.statuses s WHERE NOT EXISTS
                  (SELECT FROM upload_pipeline.upload_jobs j WHERE j.status = s.status)")" 0 \
   "the source has a job in every status"
is "$(q tvdb_src "SELECT count(*) > 0 FROM upload_pipeline.usage WHERE state = 'sent'") \
$(q tvdb_src "SELECT count(*) > 0 FROM upload_pipeline.alerts") \
$(q tvdb_src "SELECT count(*) FROM upload_pipeline.upload_jobs JOIN upload_pipeline.documents USING (document_id)
                WHERE lease_owner IS NOT NULL AND filename LIKE 'embedding-%'")" "t t 2" \
   "with requests out, alerts, and the embedding jobs' leases held"

as_pg pg_dump -Fc -f "$WORK/src.dump" tvdb_src
as_pg pg_dump -Fp -f "$WORK/src.sql" tvdb_src
psql -X -q -d postgres -c "CREATE DATABASE tvdb_plain" -c "CREATE DATABASE tvdb_dst"
out=$(as_pg pg_restore --exit-on-error --single-transaction -d tvdb_dst "$WORK/src.dump" 2>&1); rc=$?
is "$rc:$out" "0:" "pg_restore of the custom format: no error"
out=$(psql -X -q -v ON_ERROR_STOP=1 --single-transaction -d tvdb_plain -f "$WORK/src.sql" 2>&1 >/dev/null); rc=$?
is "$rc:$(echo "$out" | grep -v 'WARNING\|HINT' | head -3)" "0:" "psql of the plain format: no error"

# Every row of every table tvdb dumps, as it was (a job's lease excepted: it
# named a process of the dumped cluster; the default prices are not dumped,
# the install writes them).
rows() {
    q "$1" "SELECT string_agg(c.oid::regclass::text, ' ' ORDER BY c.oid::regclass::text)
            FROM pg_extension e, unnest(e.extconfig) x(oid) JOIN pg_class c ON c.oid = x.oid
            WHERE e.extname = 'tvdb' AND c.relkind = 'r'" | tr ' ' '\n' | while read -r t; do
        printf '%s %s\n' "$t" "$(q "$1" "SELECT count(*) || ' ' || coalesce(md5(string_agg(r::text, '|' ORDER BY r::text)), '-')
                                       FROM (SELECT to_jsonb(t) - 'lease_owner' - 'lease_expires_at' r FROM $t t) s
                                       WHERE NOT coalesce((r->>'is_default')::boolean, false)")"
    done
}
seqs() {
    q "$1" "SELECT string_agg(format('%s=%s/%s', c.relname, s.last_value, s.is_called), ' ' ORDER BY c.relname)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
                 LATERAL (SELECT * FROM pg_sequences ps WHERE ps.schemaname = n.nspname AND ps.sequencename = c.relname) s0,
                 LATERAL (SELECT s0.last_value, s0.last_value IS NOT NULL AS is_called) s
            WHERE n.nspname = 'upload_pipeline' AND c.relkind = 'S'"
}
rows tvdb_src > "$WORK/rows.src"
echo "# source tables (rows): $(awk '{printf "%s:%s ", $1, $2}' "$WORK/rows.src")"
for db in tvdb_dst tvdb_plain; do
    rows $db > "$WORK/rows.$db"
    is "$(diff "$WORK/rows.src" "$WORK/rows.$db" && echo same)" same "$db: every row of every table restored"
    is "$(seqs $db)" "$(seqs tvdb_src)" "$db: the sequences restored"
    is "$(q $db "SELECT pg_get_indexdef('upload_pipeline.my_events_code_idx'::regclass)")" \
       "CREATE INDEX my_events_code_idx ON upload_pipeline.events USING btree (code, ts)" "$db: the user's index restored"
    is "$(q $db "SELECT count(*) FROM upload_pipeline.upload_jobs WHERE lease_owner IS NOT NULL OR lease_expires_at IS NOT NULL")" 0 \
       "$db: no lease restored"
    # what the status triggers keep beside the jobs is not dumped: they refill it
    is "$(psql -X -q -At -v ON_ERROR_STOP=1 -d $db -f "$TVDB_ROOT/test/lib/queue_agrees.sql" \
             -c "SELECT pg_temp.queue_mismatches() || ' ' || pg_temp.count_mismatches()") \
$(q $db "SELECT count(*) FROM upload_pipeline.job_queue") \
$(q $db "SELECT string_agg(format('%s=%s', status, n), ' ' ORDER BY status) FROM
           (SELECT status, sum(jobs) AS n FROM upload_pipeline.finished_counts GROUP BY status) f")" \
       "0 0 $(q tvdb_src "SELECT count(*) FROM upload_pipeline.job_queue") \
$(q tvdb_src "SELECT string_agg(format('%s=%s', status, n), ' ' ORDER BY status) FROM
                (SELECT status, count(*) AS n FROM upload_pipeline.upload_jobs JOIN tvdb.statuses s USING (status)
                 WHERE s.is_terminal GROUP BY status) f")" \
       "$db: the queue of open jobs and the counts of finished ones refilled"
    days="SELECT coalesce(string_agg(format('%s/%s=%s', day, service, cost), ' ' ORDER BY day, service), '-') FROM
            (SELECT day, service, sum(cost_usd) AS cost FROM upload_pipeline.usage_days GROUP BY 1, 2 HAVING sum(cost_usd) <> 0) d"
    is "$(q $db "$days")" "$(q tvdb_src "SELECT coalesce(string_agg(format('%s/%s=%s', day, service, cost), ' ' ORDER BY day, service), '-') FROM
            (SELECT (ts AT TIME ZONE 'UTC')::date AS day, service, sum(cost_usd) AS cost FROM upload_pipeline.usage
             GROUP BY 1, 2 HAVING sum(cost_usd) <> 0) d")" "$db: the daily costs refilled from the restored ledger"
done
is "$(wc -l < "$WORK/rows.src" | tr -d ' ')" \
   "$(q tvdb_src "SELECT count(*) FROM pg_tables WHERE schemaname = 'upload_pipeline'
                    AND tablename NOT IN ('job_queue', 'finished_counts', 'usage_days')")" \
   "every table of upload_pipeline is dumped and was compared, but the three the triggers keep"
is "$(q tvdb_src "SELECT count(*) FROM upload_pipeline.upload_jobs j WHERE status_changed_at <> (SELECT max(ts)
        FROM upload_pipeline.events e WHERE e.job_id = j.job_id AND e.to_status IS NOT NULL)")" 0 \
   "(in the source each job's status time is its last event's)"

# A restore is not a way around the state machine: a superuser's ordinary
# session still cannot insert a job past 'uploaded' or rewrite history.
err=$(psql -X -q -v ON_ERROR_STOP=1 -d tvdb_plain -c "INSERT INTO upload_pipeline.upload_jobs (document_id, status)
        SELECT document_id, 'complete' FROM upload_pipeline.documents LIMIT 1" 2>&1)
is "$(echo "$err" | grep -o 'invalid initial job status "complete"')" 'invalid initial job status "complete"' \
   "an INSERT in 'complete' outside a restore is refused"
err=$(psql -X -q -v ON_ERROR_STOP=1 -d tvdb_plain -c "SET row_security = off" -c "SELECT set_config('search_path', '', false)" \
        -c "INSERT INTO upload_pipeline.upload_jobs (document_id, status, created_at, status_changed_at)
            SELECT document_id, 'parsed', now(), now() - interval '1 day' FROM upload_pipeline.documents LIMIT 1" 2>&1)
is "$(echo "$err" | grep -o 'entered status "parsed" before it was created')" 'entered status "parsed" before it was created' \
   "a restored job is checked: its times must be in order"
err=$(psql -X -q -v ON_ERROR_STOP=1 -d tvdb_plain -c "SET row_security = off" -c "SELECT set_config('search_path', '', false)" \
        -c "INSERT INTO upload_pipeline.upload_jobs (document_id, status)
            SELECT document_id, 'half_done' FROM upload_pipeline.documents LIMIT 1" 2>&1)
is "$(echo "$err" | grep -o 'unknown job status "half_done"')" 'unknown job status "half_done"' \
   "a restored job is checked: its status must be known"

# The worker resumes the restored database: everything unfinished
# completes, nothing is asked of the services twice.
# The hand-moved jobs have no markdown behind them: they were there to be
# restored, not finished.
q tvdb_dst "SELECT count(tvdb.delete_document(document_id)) FROM upload_pipeline.documents WHERE filename LIKE 'status-%'" >/dev/null
restart_serving tvdb_dst
lp_before=$(curl -s "127.0.0.1:$LP/_stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['uploads'])")
for _ in $(seq 1 240); do
    [ "$(q tvdb_dst "SELECT count(*) FROM upload_pipeline.upload_jobs WHERE status NOT IN ('complete', 'failed_parse')")" = 0 ] && break
    sleep 0.5
done
is "$(q tvdb_dst "SELECT string_agg(status || ':' || n, ' ' ORDER BY status) FROM
                  (SELECT status, count(*) n FROM upload_pipeline.upload_jobs GROUP BY status) s")" \
   "complete:9 failed_parse:1" "restored: every unfinished job completes"
lp_after=$(curl -s "127.0.0.1:$LP/_stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['uploads'])")
is "$lp_after" "$lp_before" "the PDFs out at LlamaParse were fetched, not uploaded again"
is "$(q tvdb_dst "SELECT count(*) FROM upload_pipeline.usage WHERE state = 'sent'")" 0 \
   "the requests the dumped cluster had out are no longer 'sent'"
is "$(q tvdb_dst "SELECT count(*) FROM (SELECT job_id FROM upload_pipeline.events WHERE code = 'upload_received'
                  GROUP BY job_id HAVING count(*) <> 1) s") $(q tvdb_dst "SELECT count(*) FROM
                  (SELECT job_id FROM upload_pipeline.events WHERE code = 'pipeline_completed' GROUP BY job_id HAVING count(*) <> 1) s")" \
   "0 0" "one upload event and one completion event per job"
is "$(q tvdb_dst "SELECT count(*) FROM (SELECT document_id FROM upload_pipeline.document_chunks GROUP BY document_id
                  HAVING max(chunk_index) + 1 <> count(*) OR count(*) FILTER (WHERE embedding IS NULL) > 0) s")" 0 \
   "no chunk duplicated or missing, every chunk embedded"
is "$(q tvdb_dst "SELECT count(*) > $(q tvdb_src "SELECT count(*) FROM upload_pipeline.usage")
                        AND max(usage_id) <= (SELECT last_value FROM pg_sequences WHERE sequencename = 'usage_usage_id_seq')
                  FROM upload_pipeline.usage")" t \
   "the ledger grew after the restore, its identity ahead of every row"

tap_done
