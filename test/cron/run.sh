#!/usr/bin/env bash
# pg_cron runs tvdb's maintenance on a cluster that listens only on a Unix
# socket, both ways the README documents: cron.use_background_workers = on,
# and then cron.host set to the socket directory.  Starts and stops its own
# cluster.  Prints TAP; exits non-zero on any failure.
set -uo pipefail
source "$(dirname "$0")/../../scripts/common.sh"
source "$(dirname "$0")/../lib/tap.sh"
cd "$TVDB_ROOT"

q() { psql -X -q -At -v ON_ERROR_STOP=1 -d postgres -c "$1"; }

trap tvdb_cluster_stop EXIT
trap "exit 1" TERM INT
tvdb_cluster_start "listen_addresses = ''" "cron.use_background_workers = on" \
                   "max_worker_processes = 16" "tvdb.workers = 0" >/dev/null || exit 1

is "$(psql -X -At -h 127.0.0.1 -d postgres -c 'select 1' 2>/dev/null || echo refused)" refused \
   "the cluster takes no TCP connection"
q "SET client_min_messages = warning; CREATE EXTENSION pg_cron; CREATE EXTENSION tvdb CASCADE" >/dev/null

# A job that ran out of tries an hour ago: tvdb.retry_failed() sends it back.
job=$(q "SELECT tvdb.upload('cron.pdf', 'x')")
q "SELECT tvdb.transition('$job', 'failed_parse', '{\"error\": \"HTTP 503 (gave up after 8 tries)\", \"class\": \"retries_exhausted\"}');
   UPDATE upload_pipeline.upload_jobs SET status_changed_at = now() - interval '1 hour' WHERE job_id = '$job'" >/dev/null
is "$(q "SELECT count(*) FROM tvdb.schedule_maintenance()")" 2 "tvdb.schedule_maintenance() makes the two jobs"

# wait_runs <since>: both maintenance jobs have run and succeeded since then (at most ~2 minutes).
wait_runs() {
    for _ in $(seq 1 260); do
        [ "$(q "SELECT count(DISTINCT jobid) FROM cron.job_run_details
                WHERE status IN ('succeeded', 'failed') AND start_time >= '$1'")" = 2 ] && break
        sleep 0.5
    done
    q "SELECT string_agg(DISTINCT r, ', ' ORDER BY r) FROM (
           SELECT j.jobname || ' ' || d.status || CASE WHEN d.status = 'failed' THEN ': ' || d.return_message ELSE '' END
             FROM cron.job_run_details d JOIN cron.job j USING (jobid) WHERE d.start_time >= '$1') AS runs(r)"
}

start=$(q "SELECT now()")
is "$(wait_runs "$start")" "tvdb-reap-stuck-postgres succeeded, tvdb-retry-failed-postgres succeeded" \
   "with cron.use_background_workers = on both jobs run and succeed"
is "$(q "SELECT status || ' ' || attempts FROM upload_pipeline.upload_jobs WHERE job_id = '$job'")" "uploaded 2" \
   "tvdb.retry_failed() sent the exhausted job back"

# The other way: pg_cron connects as a client, through the socket directory.
echo "cron.use_background_workers = off" | as_pg tee -a "$TVDB_PGDATA/postgresql.conf" >/dev/null
echo "cron.host = '$TVDB_CLUSTER_DIR'" | as_pg tee -a "$TVDB_PGDATA/postgresql.conf" >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$TVDB_PGDATA" -l "$TVDB_CLUSTER_DIR/server.log" -w -t 60 restart >/dev/null
is "$(q "SHOW cron.use_background_workers") $(q "SHOW cron.host")" "off $TVDB_CLUSTER_DIR" "restarted with cron.host at the socket"
# pg_cron keeps the host a job was scheduled with: calling it again moves them.
is "$(q "SELECT count(*) FROM tvdb.schedule_maintenance()") $(q "SELECT string_agg(DISTINCT nodename, ',') || ' ' || count(*) FROM cron.job")" \
   "2 $TVDB_CLUSTER_DIR 2" "tvdb.schedule_maintenance() again moves the two jobs to the new cron.host"
start=$(q "SELECT now()")
is "$(wait_runs "$start")" "tvdb-reap-stuck-postgres succeeded, tvdb-retry-failed-postgres succeeded" \
   "with cron.host = the socket directory both jobs run and succeed"
is "$(q "SELECT tvdb.unschedule_maintenance()")" 2 "tvdb.unschedule_maintenance() removes them"

tap_done
