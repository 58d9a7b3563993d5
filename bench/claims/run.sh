#!/usr/bin/env bash
# bench/claims/run.sh — claims per second: tvdb's claim-and-advance unit
# against a minimal SKIP LOCKED queue written here (the pattern of pgmq and
# of every Postgres queue), each single and batched (10), at 1 and 2 clients.
#
#   tvdb_single   SELECT tvdb._take('parsed', 'chunking', owner, 1, 60): claims one
#                 due, unleased job (SKIP LOCKED) and moves it on under a lease, in
#                 one UPDATE; the C triggers check the edge, write the event row
#                 and NOTIFY.  One call, one transaction.
#   tvdb_batch    the same with n = 10
#   bare_single   pgmq's read then archive, in one transaction: UPDATE bench.q
#                 SET vt = now() + 60 s WHERE msg_id = (SELECT ... WHERE vt <= now()
#                 ORDER BY msg_id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING ...;
#                 WITH d AS (DELETE ... RETURNING ...) INSERT INTO bench.a ...
#   bare_batch    the same with LIMIT 10 (msg_id IN (...), then = ANY (ids))
# A unit is one item taken off its queue and moved on: for tvdb, a job moved to
# the next status with its event written; for the bare queue, a message read
# and archived.  units/s for a batch script = its transactions/s x 10.
# Round trips: tvdb's unit is one statement; the bare one four (BEGIN, read,
# archive, COMMIT: the archive needs the ids the read returned), as a client
# of pgmq does it in one transaction; pgbench -r prints each one's latency.
#
# Fair because every script runs in the same pgbench run on the same cluster:
# for each client count, ONE pgbench run of DURATION s with the four scripts at
# equal weight, each client picking a script at random for every transaction,
# so all four share the same moments of the machine, the same background load
# and the same cache and bloat state (autovacuum is off; every table is
# vacuumed before each run).  In such a run pgbench gives every script about the
# same number of transactions (the weights decide that), so a script's own
# speed is its latency: units/s = clients x units per transaction / latency
# average, the rate the clients would reach running only that script at that
# latency.  The ratio tvdb/bare is lat(bare)/lat(tvdb); target >= 1.0.
# Both queues start with JOBS ready items; the counts left are printed, and a
# claim that came back short (a queue run dry) is reported.
#
# A benchmark, not a test: it exits 0 whatever the figures; non-zero only if
# something broke (pgbench error, a unit that did not write what it should).
#
#   sudo bash bench/claims/run.sh
#   defaults: DURATION=30 WARMUP=3 CLIENTS="1 2" JOBS=5000 x (WARMUP + DURATION) x
#   number of client counts + 20000 (items in each queue)
#   TVDB_PGBIN=/path/to/bin uses another PostgreSQL (scripts/common.sh)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../../scripts/common.sh"
cd "$TVDB_ROOT"

DURATION=${DURATION:-30}
WARMUP=${WARMUP:-3}
CLIENTS=${CLIENTS:-"1 2"}
read -r -a CLIENT_COUNTS <<<"$CLIENTS"
JOBS=${JOBS:-$((5000 * (WARMUP + DURATION) * ${#CLIENT_COUNTS[@]} + 20000))}
PGBENCH=$PGBIN/pgbench
DB=postgres
SCRIPTS=(tvdb_single tvdb_batch bare_single bare_batch)
declare -A SIZE=([tvdb_single]=1 [tvdb_batch]=10 [bare_single]=1 [bare_batch]=10)

tvdb_install_deps
tvdb_build
trap tvdb_cluster_stop EXIT
# autovacuum off: it would start at random moments; each run starts vacuumed.
# No tvdb worker: it would chunk the 'parsed' jobs itself.
tvdb_cluster_start "autovacuum = off" "tvdb.workers = 0"

psql_q() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
psql_v() { psql -X -A -t -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }

echo "== machine: $(tvdb_machine)"
echo "== server: $(psql_v -c 'SELECT version()' | cut -d' ' -f1-2)," \
     "fsync=$(psql_v -c 'SHOW fsync'), synchronous_commit=$(psql_v -c 'SHOW synchronous_commit')," \
     "shared_buffers=$(psql_v -c 'SHOW shared_buffers'), autovacuum=$(psql_v -c 'SHOW autovacuum')"

echo "== setup: $JOBS jobs in 'parsed' (made through the tvdb triggers) and $JOBS messages in the bare queue"
t0=$(date +%s.%N)
psql_q -v jobs="$JOBS" -f "$HERE/setup.sql"
psql_q -c "VACUUM ANALYZE"
echo "   took $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.0f", b - a}') s;" \
     "tables beside the jobs in upload_pipeline: $(psql_v -c "SELECT string_agg(relname, ', ' ORDER BY relname)
         FROM pg_stat_user_tables WHERE schemaname = 'upload_pipeline' AND n_live_tup > 0
         AND relname NOT IN ('upload_jobs', 'events', 'documents', 'blobs')")"
echo "   triggers on upload_pipeline.upload_jobs:" \
     "$(psql_v -c "SELECT string_agg(tgname, ', ' ORDER BY tgname) FROM pg_trigger
                   WHERE tgrelid = 'upload_pipeline.upload_jobs'::regclass AND NOT tgisinternal")"

# What is left and what was done: jobs in 'parsed' and in 'chunking', event
# rows, messages in the queue and in the archive.
COUNTS="SELECT (SELECT count(*) FROM upload_pipeline.upload_jobs WHERE status = 'parsed'),
               (SELECT count(*) FROM upload_pipeline.upload_jobs WHERE status = 'chunking'),
               (SELECT count(*) FROM upload_pipeline.events),
               (SELECT count(*) FROM bench.q), (SELECT count(*) FROM bench.a)"

# One interleaved pgbench run: run_mixed clients duration.  Leaves the output
# in $OUT and the counts before and after in B and A (arrays).
run_mixed() {
    local c=$1 duration=$2 fargs=()
    for s in "${SCRIPTS[@]}"; do fargs+=(-f "$HERE/$s.sql@1"); done
    psql_q -c "VACUUM ANALYZE upload_pipeline.upload_jobs, upload_pipeline.events, bench.q, bench.a" -c "CHECKPOINT"
    IFS='|' read -r -a B <<<"$(psql_v -c "$COUNTS")"
    sleep 0.3
    if ! OUT=$("$PGBENCH" -n -M prepared -r -c "$c" -j "$c" -T "$duration" "${fargs[@]}" "$DB" 2>&1); then
        echo "pgbench failed ($c clients):" >&2
        echo "$OUT" >&2
        return 1
    fi
    IFS='|' read -r -a A <<<"$(psql_v -c "$COUNTS")"
}

# Field of script k (1-based) in $OUT: transactions or latency.
script_txns() { awk -v k="$1" '$1 == "SQL" && $2 == "script" {n = $3 + 0} n == k && $3 == "transactions" {print $2; exit}' <<<"$OUT"; }
script_lat() { awk -v k="$1" '$1 == "SQL" && $2 == "script" {n = $3 + 0} n == k && /latency average/ {print $5; exit}' <<<"$OUT"; }

declare -A UNITS RATIO_S RATIO_B
for c in "${CLIENT_COUNTS[@]}"; do
    echo
    echo "== $c client(s): warm-up $WARMUP s, then pgbench -n -M prepared -r -c $c -j $c -T $DURATION" \
         "with ${SCRIPTS[*]} at weight 1 (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    run_mixed "$c" "$WARMUP"
    run_mixed "$c" "$DURATION"
    declare -A TX LAT
    k=0
    for s in "${SCRIPTS[@]}"; do
        k=$((k + 1))
        TX[$s]=$(script_txns $k)
        LAT[$s]=$(script_lat $k)
        UNITS[$s,$c]=$(awk -v c="$c" -v n="${SIZE[$s]}" -v l="${LAT[$s]}" 'BEGIN {printf "%.0f", c * n * 1000 / l}')
        printf "   %-12s %7d transactions  latency %7.3f ms  %8d units/s\n" \
               "$s" "${TX[$s]}" "${LAT[$s]}" "${UNITS[$s,$c]}"
    done
    RATIO_S[$c]=$(awk -v t="${LAT[tvdb_single]}" -v b="${LAT[bare_single]}" 'BEGIN {printf "%.3f", b / t}')
    RATIO_B[$c]=$(awk -v t="${LAT[tvdb_batch]}" -v b="${LAT[bare_batch]}" 'BEGIN {printf "%.3f", b / t}')
    echo "   tvdb/bare: single ${RATIO_S[$c]}, batch ${RATIO_B[$c]} (target >= 1.0)"
    # Every unit did its work: tvdb moved 1 or 10 jobs per call, each with one
    # event; the bare queue archived 1 or 10 messages per transaction.
    want_t=$((TX[tvdb_single] + 10 * TX[tvdb_batch]))
    want_b=$((TX[bare_single] + 10 * TX[bare_batch]))
    moved=$((A[1] - B[1])) events=$((A[2] - B[2])) archived=$((A[4] - B[4]))
    echo "   done: tvdb $moved jobs moved to chunking, $events event rows (expected $want_t);" \
         "bare $archived messages archived (expected $want_b)"
    echo "   left: ${A[0]} jobs in 'parsed', ${A[3]} messages in the queue"
    if [ "$events" -ne "$moved" ]; then
        echo "tvdb wrote $events event rows for $moved moved jobs" >&2
        exit 1
    fi
    if [ "$moved" -ne "$want_t" ] || [ "$archived" -ne "$want_b" ]; then
        echo "   WARNING: some claims came back short (a queue ran dry?): the figures above are not comparable;" \
             "raise JOBS" >&2
    fi
    echo "   pgbench's per-script output:"
    sed -n '/^SQL script 1:/,$p' <<<"$OUT" | sed 's/^/     /'
    unset TX LAT
done

echo
echo "== summary: units/s (jobs or messages per second; batch = transactions/s x 10), from per-script latency" \
     "in one interleaved run per client count, $DURATION s"
printf "   %-8s %12s %12s %12s %12s   %14s %14s\n" clients tvdb_single bare_single tvdb_batch bare_batch \
       "single t/b" "batch t/b"
for c in "${CLIENT_COUNTS[@]}"; do
    printf "   %-8s %12s %12s %12s %12s   %8s %-5s %8s %-5s\n" "$c" "${UNITS[tvdb_single,$c]}" "${UNITS[bare_single,$c]}" \
           "${UNITS[tvdb_batch,$c]}" "${UNITS[bare_batch,$c]}" \
           "${RATIO_S[$c]}" "$(awk -v r="${RATIO_S[$c]}" 'BEGIN {print (r >= 1) ? "met" : "MISS"}')" \
           "${RATIO_B[$c]}" "$(awk -v r="${RATIO_B[$c]}" 'BEGIN {print (r >= 1) ? "met" : "MISS"}')"
done
echo "   target: tvdb/bare >= 1.0 (tvdb's unit at least as fast as the bare queue's)"

# Informational: is each claim statement planned on every call, and what
# would a plan made once cost?  The text of tvdb's claim is read from the
# installed library (strings), so it is the one that ran; skipped if not found.
echo
echo "== planning (informational): each statement PREPAREd, run 10 times, then EXPLAIN ANALYZE x 5, rolled back;"
echo "   tvdb's claim under plan_cache_mode auto and forced generic (which one tvdb gets depends on how its C code prepares it)"
take_sql=$(strings "$($PG_CONFIG --pkglibdir)/tvdb.so" 2>/dev/null \
           | grep -F 'SKIP LOCKED' | grep -F 'UPDATE upload_pipeline.upload_jobs' | grep -F 'SET status = $2' | head -1 || true)
if [ -n "$take_sql" ]; then
    echo "   tvdb_take_N: the statement tvdb._take runs: $take_sql"
    psql_q -v take_sql="$take_sql" -f "$HERE/planning.sql" | sed 's/^/   /'
else
    echo "   (tvdb._take's statement not found in tvdb.so: only the bare ones)"
    psql_q -f "$HERE/planning.sql" | sed 's/^/   /'
fi
echo "   load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
exit 0
