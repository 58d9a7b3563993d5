#!/usr/bin/env bash
# bench/history/run.sh — does the worker's cost stay flat as the history
# grows?  The same round of N documents (mock mode: the built-in parser and
# embedder, no HTTP) against an empty history and against HISTORY finished
# jobs (~9 events each), loaded in bulk (bench/history/load.sql).
#
# One cluster, two databases, both served by the tvdb worker(s)
# (tvdb.database lists both, tvdb.workers each):
#   A  tvdb_hist_empty  emptied (TRUNCATE, VACUUM ANALYZE) before each of its rounds
#   B  tvdb_hist_big    HISTORY complete jobs with documents, blobs, events and
#                       ledger rows, vacuumed and analyzed (an old, maintained
#                       database), plus the documents of the earlier B rounds
# The rounds alternate in ORDER (default A B B A: a drift of the machine over
# the run, such as other work starting or the OS cache filling, falls on both
# alike).  The cluster is restarted after the load, so both databases' workers
# start with the history in place, and each database gets WARMUP documents
# before the rounds.  A and B differ only by the history: same cluster,
# settings, worker code, document shapes.  Each round's documents have text of
# their own (its round tag), so no parse or vector is reused from an earlier
# round.
#
# Each round: N documents uploaded by one tvdb.upload statement (as in
# bench/pipeline), then wait until none is in a working status.
#   documents/s = N / (last completion - the jobs' creation, the upload
#                 transaction's start; the upload itself included)
#   worker CPU  = utime + stime (/proc/<pid>/stat) of the database's tvdb
#                 worker processes, before the upload to after the last completion
#   cluster CPU = the same for every process of the cluster (postmaster and its
#                 children, the exited ones included): the uploading backend,
#                 autovacuum, the other database's idle worker, this script's polls
# Then the ratios B/A over all rounds of each kind (target from the issue:
# documents/s B/A >= 1/1.2, worker CPU per document B/A <= 1.2), and
# tvdb._next_due_ms() timed in each database with nothing due.
#
# A benchmark, not a test: it never fails on timing; it exits non-zero only
# when something broke (a document that did not complete, nothing moving for
# STALL_S seconds, a worker restarting, too little disk).
#
#   sudo bash bench/history/run.sh
#   sudo TVDB_PGBIN=/opt/x/lib/postgresql/15/bin bash bench/history/run.sh   # another PostgreSQL
#   sudo HISTORY=50000 N=500 bash bench/history/run.sh                       # a quick look
# Time: the load of a million jobs takes ~6.5 min (2 cores) and ~6.2 GB; a
# round of 3000 documents ~20 s on the empty history, and as long as the worker
# needs on the big one (~11 min each with the code of December 2026, which
# reads the blobs by path alone: ORDER="A B" then does it once).
#
# Knobs (environment): N=3000 HISTORY=1000000 WORKERS=1 ORDER="A B B A" WARMUP=50
#   STALL_S=120 BUILD=1 (0: use the installed tvdb) INSTALL_DEPS=1
#   HISTORY_CHUNKS=0 (chunks per history job; the vectors have HISTORY_DIMS=8
#   dimensions, a real one's 6 kB would make a million jobs' chunks 12 GB)
#   SHARED_BUFFERS= (empty: PostgreSQL's default, as bench/pipeline)
#   DUE_CALLS=500 (tvdb._next_due_ms() calls timed in each database)
#   PGSS=0 (1: pg_stat_statements, track = all; prints each database's costliest
#   statements over its rounds, nested ones included; adds some overhead)
#   KEEP_CLUSTER= (a directory: the cluster with its loaded history is kept
#   there at the end, and a later run with the same directory, HISTORY,
#   HISTORY_CHUNKS, HISTORY_DIMS and extension SQL starts it again instead of
#   loading; by default everything is thrown away)
# Needs what scripts/common.sh installs; runs PostgreSQL as the postgres user
# when started as root.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=../../scripts/common.sh
source "$ROOT/scripts/common.sh"   # PGBIN (TVDB_PGBIN), PG_CONFIG, as_pg, tvdb_*
export PATH="$PGBIN:$PATH"

N=${N:-3000}
HISTORY=${HISTORY:-1000000}
WORKERS=${WORKERS:-1}
ORDER=${ORDER:-"A B B A"}
WARMUP=${WARMUP:-50}
STALL_S=${STALL_S:-120}
BUILD=${BUILD:-1}
INSTALL_DEPS=${INSTALL_DEPS:-1}
HISTORY_CHUNKS=${HISTORY_CHUNKS:-0}
HISTORY_DIMS=${HISTORY_DIMS:-8}
SHARED_BUFFERS=${SHARED_BUFFERS:-}
DUE_CALLS=${DUE_CALLS:-500}
PGSS=${PGSS:-0}
KEEP_CLUSTER=${KEEP_CLUSTER:-}
DB_A=tvdb_hist_empty
DB_B=tvdb_hist_big
CLK_TCK=$(getconf CLK_TCK)

broke=0
cleanup() {
    if [ -n "$KEEP_CLUSTER" ] && [ -n "${TVDB_PGDATA:-}" ]; then
        as_pg "$PGBIN/pg_ctl" -D "$TVDB_PGDATA" -m fast -w stop >/dev/null 2>&1 || true
        if [ "$TVDB_CLUSTER_DIR" != "$KEEP_CLUSTER" ] && [ -f "$TVDB_CLUSTER_DIR/history.ok" ]; then
            # a fresh cluster, loaded: moved to where it is kept, its socket with it
            mv "$TVDB_CLUSTER_DIR" "$KEEP_CLUSTER"
            echo "unix_socket_directories = '$KEEP_CLUSTER'" | as_pg tee -a "$KEEP_CLUSTER/data/postgresql.conf" >/dev/null
            echo "== cluster kept in $KEEP_CLUSTER"
        elif [ "$TVDB_CLUSTER_DIR" != "$KEEP_CLUSTER" ]; then
            rm -rf "$TVDB_CLUSTER_DIR"
        fi
    else
        tvdb_cluster_stop
    fi
    return 0
}
trap cleanup EXIT
die() {
    echo "BROKEN: $*" >&2
    [ -n "${TVDB_CLUSTER_DIR:-}" ] && [ -f "$TVDB_CLUSTER_DIR/server.log" ] && tail -20 "$TVDB_CLUSTER_DIR/server.log" >&2
    exit 1
}

q() { local db=$1; shift; psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" -c "$1"; }
qt() { local db=$1; shift; psql -X -q -v ON_ERROR_STOP=1 -d "$db" -P footer=off -c "$1"; }
calc() { python3 -c "print($1)"; }
now_s() { date +%s.%N; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }   # utime + stime
ticks_sum() { local t=0 p; for p in "$@"; do t=$((t + $(ticks "$p"))); done; echo "$t"; }
# Everything the cluster ran: the postmaster, its live children, and the
# children it has reaped (cutime + cstime).
cluster_ticks() {
    local pm t p
    pm=$(head -1 "$TVDB_PGDATA/postmaster.pid")
    t=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$pm/stat")
    for p in $(ps -o pid= --ppid "$pm"); do t=$((t + $(ticks "$p"))); done
    echo "$t"
}
worker_pids() { q "$1" "SELECT string_agg(pid::text, ' ' ORDER BY pid) FROM pg_stat_activity
                        WHERE backend_type = 'tvdb worker' AND datname = '$1'"; }

# ---------------------------------------------------------------- machine
echo "== bench/history $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "== machine: $(tvdb_machine); load average at start: $(loadavg)"
echo "== PostgreSQL: $("$PGBIN/postgres" --version) from $PGBIN"
echo "== N=$N HISTORY=$HISTORY WORKERS=$WORKERS ORDER=\"$ORDER\" WARMUP=$WARMUP HISTORY_CHUNKS=$HISTORY_CHUNKS" \
     "SHARED_BUFFERS=${SHARED_BUFFERS:-default} PGSS=$PGSS KEEP_CLUSTER=${KEEP_CLUSTER:-no}"

# Disk: the history takes about 6.5 kB a job (plus WAL and the loader's
# temporary table); ask for 10 kB a job and 2 GB besides.
disk_dir=/tmp; [ -n "$KEEP_CLUSTER" ] && disk_dir=$(dirname "$KEEP_CLUSTER")
avail_kb=$(df -Pk "$disk_dir" | awk 'NR == 2 {print $4}')
need_kb=$((HISTORY * 10 + 2 * 1024 * 1024))
[ "$HISTORY_CHUNKS" -gt 0 ] && need_kb=$((need_kb + HISTORY * HISTORY_CHUNKS * (1 + HISTORY_DIMS / 256)))
echo "== free disk on $disk_dir: $(calc "round($avail_kb / 1048576, 1)") GiB (this run needs about $(calc "round($need_kb / 1048576, 1)") GiB)"
df -h "$disk_dir" | sed 's/^/   /'
[ "$avail_kb" -ge "$need_kb" ] || die "not enough free disk on $disk_dir"

if [ "$INSTALL_DEPS" = 1 ]; then
    tvdb_install_deps || die "could not install the packages needed"
fi
if [ "$BUILD" = 1 ]; then
    echo "== building and installing tvdb with $PG_CONFIG"
    tvdb_build >/dev/null || die "build failed"
fi
EXT_VERSION=$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$("$PG_CONFIG" --sharedir)/extension/tvdb.control")
EXT_SQL_MD5=$(md5sum < "$("$PG_CONFIG" --sharedir)/extension/tvdb--$EXT_VERSION.sql" | cut -d' ' -f1)
LOAD_KEY="HISTORY=$HISTORY HISTORY_CHUNKS=$HISTORY_CHUNKS HISTORY_DIMS=$HISTORY_DIMS tvdb=$EXT_VERSION sql=$EXT_SQL_MD5"

# ---------------------------------------------------------------- cluster
conf=("tvdb.database = '$DB_A, $DB_B'" "tvdb.workers = $WORKERS" "tvdb.service_mode = 'mock'"
      "max_worker_processes = 16")
[ -n "$SHARED_BUFFERS" ] && conf+=("shared_buffers = '$SHARED_BUFFERS'")
if [ "$PGSS" = 1 ]; then
    conf+=("shared_preload_libraries = 'pg_cron,tvdb,pg_stat_statements'" "pg_stat_statements.track = all"
           "pg_stat_statements.track_utility = off")
fi
restart() {
    as_pg "$PGBIN/pg_ctl" -D "$TVDB_PGDATA" -l "$TVDB_CLUSTER_DIR/server.log" -m fast -w -t 120 restart >/dev/null \
        || die "the cluster did not restart"
}
reused=0
if [ -n "$KEEP_CLUSTER" ] && [ -f "$KEEP_CLUSTER/history.ok" ]; then
    [ "$(cat "$KEEP_CLUSTER/history.ok")" = "$LOAD_KEY" ] \
        || die "$KEEP_CLUSTER holds a history loaded as '$(cat "$KEEP_CLUSTER/history.ok")', not '$LOAD_KEY': remove it"
    TVDB_CLUSTER_DIR=$KEEP_CLUSTER
    export TVDB_PGDATA=$KEEP_CLUSTER/data
    port=$((55000 + RANDOM % 5000))
    while (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null; do port=$((port + 1)); done
    echo "port = $port" | as_pg tee "$TVDB_PGDATA/port.conf" >/dev/null
    printf '%s\n' "${conf[@]}" | as_pg tee -a "$TVDB_PGDATA/postgresql.conf" >/dev/null   # this run's knobs win
    as_pg "$PGBIN/pg_ctl" -D "$TVDB_PGDATA" -l "$TVDB_CLUSTER_DIR/server.log" -w -t 120 start >/dev/null \
        || die "the kept cluster in $KEEP_CLUSTER did not start"
    export PGHOST=$TVDB_CLUSTER_DIR PGPORT=$port PGUSER=postgres
    reused=1
    echo "== the kept cluster in $KEEP_CLUSTER, port $port: history loaded by an earlier run ($LOAD_KEY)"
else
    [ -n "$KEEP_CLUSTER" ] && [ -e "$KEEP_CLUSTER" ] && die "KEEP_CLUSTER=$KEEP_CLUSTER exists and holds no loaded history"
    tvdb_cluster_start "${conf[@]}" || die "the cluster did not start"
    for db in "$DB_A" "$DB_B"; do
        psql -X -q -d postgres -c "CREATE DATABASE $db"
        psql -X -q -d "$db" -c "SET client_min_messages = warning" -c "CREATE EXTENSION tvdb CASCADE"
    done
fi
if [ "$PGSS" = 1 ]; then
    for db in "$DB_A" "$DB_B"; do psql -X -q -d "$db" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"; done
fi
echo "== settings: $(q postgres "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name)
                   FROM pg_settings WHERE name IN ('tvdb.database', 'tvdb.workers', 'tvdb.service_mode', 'shared_buffers',
                   'fsync', 'autovacuum', 'max_worker_processes', 'tvdb.lease_seconds')")"

WORKING=$(q "$DB_A" "SELECT tvdb._status_list(true, false)")    # the claimable index's statuses
FINISHED=$(q "$DB_A" "SELECT tvdb._finished_list()")            # complete and the failures

# ---------------------------------------------------------------- history
if [ "$reused" = 0 ]; then
    echo "== loading a history of $HISTORY finished jobs into $DB_B (bench/history/load.sql)"
    t=$(now_s)
    psql -X -q -v ON_ERROR_STOP=1 -d "$DB_B" -v jobs="$HISTORY" -v chunks="$HISTORY_CHUNKS" -v dims="$HISTORY_DIMS" \
         -f "$HERE/load.sql" >/dev/null || die "the history did not load"
    LOAD_S=$(calc "round($(now_s) - $t, 1)")
    echo "$LOAD_KEY" | as_pg tee "$TVDB_CLUSTER_DIR/history.ok" >/dev/null
    echo "  loaded, vacuumed and analyzed in $LOAD_S s"
fi
# The workers start again with the history in place (as in an old database):
# no plan or cache of theirs is from before the load.
restart
echo "== restarted the cluster; history in $DB_B:"
qt "$DB_B" "SELECT c.relname AS table, c.reltuples::bigint AS rows_estimated,
                   pg_size_pretty(pg_relation_size(c.oid)) AS heap,
                   pg_size_pretty(pg_indexes_size(c.oid)) AS indexes,
                   pg_size_pretty(pg_total_relation_size(c.oid)) AS total
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'upload_pipeline' AND c.relkind = 'r' AND c.reltuples > 0
            ORDER BY pg_total_relation_size(c.oid) DESC" | sed 's/^/  /'
H_JOBS=$(q "$DB_B" "SELECT count(*) FROM upload_pipeline.upload_jobs")
H_EVENTS=$(q "$DB_B" "SELECT count(*) FROM upload_pipeline.events")
H_OPEN=$(q "$DB_B" "SELECT count(*) FROM upload_pipeline.job_queue WHERE status IN ($WORKING)")
echo "  jobs $H_JOBS (in a working status: $H_OPEN), events $H_EVENTS; database $DB_B" \
     "$(q "$DB_B" "SELECT pg_size_pretty(pg_database_size('$DB_B'))"), $DB_A $(q "$DB_A" "SELECT pg_size_pretty(pg_database_size('$DB_A'))")"

for db in "$DB_A" "$DB_B"; do
    for _ in $(seq 1 60); do [ "$(worker_pids "$db" | wc -w)" = "$WORKERS" ] && break; sleep 0.5; done
    [ "$(worker_pids "$db" | wc -w)" = "$WORKERS" ] || die "not $WORKERS tvdb workers on $db: '$(worker_pids "$db")'"
done
declare -A WPIDS=([A]=$(worker_pids "$DB_A") [B]=$(worker_pids "$DB_B"))
declare -A DBOF=([A]=$DB_A [B]=$DB_B)
echo "== workers: $DB_A pid ${WPIDS[A]}, $DB_B pid ${WPIDS[B]}"

# ---------------------------------------------------------------- rounds
# Documents as bench/pipeline's: HTML of ~1.8 kB, two sections, two chunks
# each; the text names the round, so no round reuses another's parse or vectors.
# upload <db> <tag> <n>: prints the upload transaction's start and its commit (epoch s)
upload() {
    psql -X -q -At -v ON_ERROR_STOP=1 -d "$1" \
        -c "BEGIN" -c "SELECT extract(epoch FROM now())" \
        -c "SELECT count(tvdb.upload(format('$2-%s.html', i), convert_to(format(
              '<h1>Report %s of %s</h1><h2>Summary</h2><p>%s</p><h2>Details</h2><p>%s</p>', i, '$2',
              repeat(format('Summary sentence about document %s of run %s. ', i, '$2'), 26),
              repeat(format('A detail of document %s, run %s, goes here. ', i, '$2'), 26)), 'UTF8')))
            FROM generate_series(1, $3) i" \
        -c "COMMIT" -c "SELECT extract(epoch FROM clock_timestamp())" | sed -n '1p; 3p' | paste -sd ' '
}
# Jobs in a working status: the claimable index answers, however large the history.
# the open jobs, from the queue of open jobs (reading the history would cost what it measures)
in_flight() { q "$1" "SELECT count(*) FROM upload_pipeline.job_queue WHERE status IN ($WORKING)"; }
wait_settled() {  # wait_settled <db>; 1 when nothing moved for STALL_S seconds
    local left last="" since
    since=$(date +%s)
    while :; do
        left=$(in_flight "$1")
        [ "$left" = 0 ] && return 0
        if [ "$left" != "$last" ]; then last=$left; since=$(date +%s);
        elif [ $(($(date +%s) - since)) -ge "$STALL_S" ]; then
            echo "  stalled: $left jobs in flight in $1, by status:" \
                 "$(q "$1" "SELECT string_agg(status || ' ' || n, ', ') FROM (SELECT status, count(*) n
                            FROM upload_pipeline.upload_jobs WHERE status IN ($WORKING) GROUP BY 1) s")"
            return 1
        fi
        sleep 0.2
    done
}
# finished_since <db> <epoch>: "<complete> <failed> <last finish epoch>" of the jobs finished since then
finished_since() {
    q "$1" "SELECT count(*) FILTER (WHERE to_status = 'complete'), count(*) FILTER (WHERE to_status <> 'complete'),
                   coalesce(extract(epoch FROM max(ts)), 0)
            FROM upload_pipeline.events WHERE to_status IN ($FINISHED) AND ts >= to_timestamp($2)" | tr '|' ' '
}
empty_a() {
    q "$DB_A" "TRUNCATE upload_pipeline.document_chunks, upload_pipeline.upload_jobs, upload_pipeline.documents,
                        upload_pipeline.blobs, upload_pipeline.events, upload_pipeline.usage CASCADE"
    q "$DB_A" "VACUUM ANALYZE upload_pipeline.document_chunks, upload_pipeline.upload_jobs, upload_pipeline.documents,
                              upload_pipeline.blobs, upload_pipeline.events, upload_pipeline.usage"
}
check_workers() {
    local k
    for k in A B; do
        [ "$(worker_pids "${DBOF[$k]}")" = "${WPIDS[$k]}" ] \
            || die "the tvdb workers of ${DBOF[$k]} changed from '${WPIDS[$k]}' to '$(worker_pids "${DBOF[$k]}")' (crash?)"
    done
}

echo "== warm-up: $WARMUP documents in each database"
for k in A B; do
    read -r t0 _ < <(upload "${DBOF[$k]}" "warm$k" "$WARMUP")
    wait_settled "${DBOF[$k]}" || die "the warm-up documents of ${DBOF[$k]} did not settle"
    read -r c f _ < <(finished_since "${DBOF[$k]}" "$t0")
    [ "$c" = "$WARMUP" ] || die "$c of $WARMUP warm-up documents complete in ${DBOF[$k]} ($f failed)"
done
check_workers
if [ "$PGSS" = 1 ]; then for k in A B; do q "${DBOF[$k]}" "SELECT pg_stat_statements_reset()" >/dev/null; done; fi

declare -A SUM_N=([A]=0 [B]=0) SUM_WALL=([A]=0 [B]=0) SUM_W=([A]=0 [B]=0) SUM_C=([A]=0 [B]=0) SUM_PROC=([A]=0 [B]=0)
ROUND_LINES=()
r=0
for k in $ORDER; do
    case "$k" in A|B) ;; *) die "ORDER: '$k' is neither A nor B";; esac
    r=$((r + 1))
    db=${DBOF[$k]}
    if [ "$k" = A ]; then
        empty_a
        jobs_before=0
    else
        jobs_before="~$(q "$db" "SELECT reltuples::bigint FROM pg_class WHERE oid = 'upload_pipeline.upload_jobs'::regclass")"
    fi
    sleep 1   # let the truncate's and the last round's aftermath (autovacuum, wakeups) pass
    load0=$(loadavg)
    # shellcheck disable=SC2086  # the pids, one word each
    w0=$(ticks_sum ${WPIDS[$k]}); c0=$(cluster_ticks)
    read -r t_create t_commit < <(upload "$db" "r$r" "$N")
    wait_settled "$db" || { broke=1; echo "  BROKEN: round $r ($k) stalled"; }
    # shellcheck disable=SC2086
    w1=$(ticks_sum ${WPIDS[$k]}); c1=$(cluster_ticks)
    load1=$(loadavg)
    check_workers
    read -r n_done n_failed t_end < <(finished_since "$db" "$t_create")
    if [ "$n_done" != "$N" ]; then
        broke=1
        echo "  BROKEN: round $r ($k): $n_done of $N documents complete, $n_failed failed:" \
             "$(q "$db" "SELECT string_agg(status || ' ' || n || coalesce(' (' || e || ')', ''), '; ')
                         FROM (SELECT status, count(*) n, min(last_error) e FROM upload_pipeline.upload_jobs
                               WHERE status <> 'complete' AND created_at >= to_timestamp($t_create) GROUP BY 1) s")"
        continue
    fi
    wall=$(calc "$t_end - $t_create"); proc=$(calc "$t_end - $t_commit")
    SUM_N[$k]=$((SUM_N[$k] + N)); SUM_W[$k]=$((SUM_W[$k] + w1 - w0)); SUM_C[$k]=$((SUM_C[$k] + c1 - c0))
    SUM_WALL[$k]=$(calc "${SUM_WALL[$k]} + $wall"); SUM_PROC[$k]=$(calc "${SUM_PROC[$k]} + $proc")
    line="round $r $k ($db, $jobs_before jobs before): $N documents in $(calc "round($wall, 2)") s"
    line+=" (upload $(calc "round($t_commit - $t_create, 2)") s, then $(calc "round($proc, 2)") s) ="
    line+=" $(calc "round($N / $wall, 1)") documents/s; worker CPU $(calc "round(($w1 - $w0) / $CLK_TCK / $N * 1000, 3)") ms/document"
    line+=" ($(calc "round(($w1 - $w0) / $CLK_TCK / $wall * 100)")% of a core), cluster CPU"
    line+=" $(calc "round(($c1 - $c0) / $CLK_TCK / $N * 1000, 3)") ms/document; load $load0 -> $load1"
    echo "  $line"
    ROUND_LINES+=("$line")
done
check_workers

# ---------------------------------------------------------------- due time
echo
echo "== tvdb._next_due_ms() with nothing due, $DUE_CALLS calls in one DO block (after $DUE_CALLS warm-up calls)"
declare -A DUE_US
for k in A B; do
    DUE_US[$k]=$(psql -X -q -At -v ON_ERROR_STOP=1 -d "${DBOF[$k]}" -c "DO \$\$
        DECLARE t0 timestamptz; d double precision;
        BEGIN
            FOR i IN 1..$DUE_CALLS LOOP d := tvdb._next_due_ms(); END LOOP;
            t0 := clock_timestamp();
            FOR i IN 1..$DUE_CALLS LOOP d := tvdb._next_due_ms(); END LOOP;
            RAISE NOTICE 'us=%', round((extract(epoch FROM clock_timestamp() - t0) * 1e6 / $DUE_CALLS)::numeric, 1);
        END \$\$" 2>&1 | sed -n 's/.*us=//p')
    echo "  $k (${DBOF[$k]}): ${DUE_US[$k]:-?} us per call"
done
echo "  its query in $DB_B, EXPLAIN (ANALYZE, BUFFERS):"
psql -X -q -At -d "$DB_B" >"$TVDB_CLUSTER_DIR/explain.txt" 2>&1 <<'SQL' || true
SELECT 'EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) ' || substring(p.prosrc FROM 'RETURN \((.*)\);')
FROM pg_proc p WHERE p.oid = 'tvdb._next_due_ms'::regproc AND p.prosrc ~ 'RETURN \(' \gexec
SQL
if [ -s "$TVDB_CLUSTER_DIR/explain.txt" ]; then sed 's/^/    /' "$TVDB_CLUSTER_DIR/explain.txt"
else echo "    (its body is not one RETURN (query))"; fi

if [ "$PGSS" = 1 ]; then
    for k in A B; do
        echo
        echo "== $k (${DBOF[$k]}): costliest statements over its rounds (pg_stat_statements, track = all)"
        qt "${DBOF[$k]}" "SELECT calls, round(total_exec_time::numeric, 1) AS total_ms,
                                 round((total_exec_time / calls)::numeric, 4) AS mean_ms,
                                 round((shared_blks_hit + shared_blks_read)::numeric / calls, 1) AS blks_per_call,
                                 left(regexp_replace(query, '\s+', ' ', 'g'), 110) AS query
                          FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                          ORDER BY total_exec_time DESC LIMIT 15" | sed 's/^/  /'
    done
fi

# ---------------------------------------------------------------- summary
echo
echo "== summary (N=$N per round, WORKERS=$WORKERS, ORDER=\"$ORDER\"; history $H_JOBS jobs, $H_EVENTS events${LOAD_S:+, loaded in $LOAD_S s})"
for line in "${ROUND_LINES[@]}"; do echo "  $line"; done
if [ "${SUM_N[A]}" -gt 0 ] && [ "${SUM_N[B]}" -gt 0 ]; then
    declare -A RATE CPU CCPU
    for k in A B; do
        RATE[$k]=$(calc "${SUM_N[$k]} / ${SUM_WALL[$k]}")
        CPU[$k]=$(calc "${SUM_W[$k]} / $CLK_TCK / ${SUM_N[$k]} * 1000")
        CCPU[$k]=$(calc "${SUM_C[$k]} / $CLK_TCK / ${SUM_N[$k]} * 1000")
        echo "  RESULT $k ($([ "$k" = A ] && echo 'empty history' || echo "history of $H_JOBS jobs")," \
             "${SUM_N[$k]} documents): $(calc "round(${RATE[$k]}, 1)") documents/s" \
             "($(calc "round(${SUM_N[$k]} / ${SUM_PROC[$k]}, 1)") after the upload's commit);" \
             "worker CPU $(calc "round(${CPU[$k]}, 3)") ms/document; cluster CPU $(calc "round(${CCPU[$k]}, 3)") ms/document"
    done
    rr=$(calc "round(${RATE[B]} / ${RATE[A]}, 3)"); cr=$(calc "round(${CPU[B]} / ${CPU[A]}, 3)")
    echo "  RATIO B/A: documents/s $rr (target >= $(calc "round(1 / 1.2, 3)"): $(calc "'met' if $rr >= 1 / 1.2 else 'NOT met'"));" \
         "worker CPU per document $cr (target <= 1.2: $(calc "'met' if $cr <= 1.2 else 'NOT met'"));" \
         "cluster CPU per document $(calc "round(${CCPU[B]} / ${CCPU[A]}, 3)")"
    echo "  tvdb._next_due_ms() with nothing due: A ${DUE_US[A]:-?} us, B ${DUE_US[B]:-?} us per call"
fi
echo "  load average at the end: $(loadavg)"
if [ "$broke" -ne 0 ]; then echo "BROKEN: see above"; exit 1; fi
exit 0
