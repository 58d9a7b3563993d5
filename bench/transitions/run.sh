#!/usr/bin/env bash
# bench/transitions/run.sh — status transitions per second, with pgbench:
#   (a)  bare         UPDATE + hand-written event INSERT on trigger-less copies
#   (b)  tvdb         plain UPDATE through the tvdb C triggers
#   (c)  plpgsql      the same work done by PL/pgSQL triggers (baseline, bench/ only)
# and, in the mixed run only, two informational ones:
#   (a0) bare, lean   (a) without reading the old row (in_previous_state NULL)
#   (a2) bare+notify  (a) plus the NOTIFY the triggers send
# Each transaction toggles a random job parse_queued <-> failed_parse (both
# legal edges; the second is a retry edge that counts an attempt).  All
# variants write the same job columns and the same event row (check.sql
# verifies it) into tables with the same indexes and constraints (setup.sql).
#
# Two measurements, both in this run:
#   separate  each variant alone, DURATION s, interleaved ROUNDS times (order
#             reversed every other round): tps, and server CPU per transition
#   mixed     one pgbench run of MIXED_DURATION s where every transaction picks
#             a variant at random: per-variant latency under exactly the same
#             conditions, robust against other load on the machine
# A benchmark, not a test: exits 0 after printing, non-zero only if something
# broke (pgbench error, or a transaction that did not write exactly one event).
#
#   sudo bash bench/transitions/run.sh
#   defaults: JOBS=10000 CLIENTS=2 DURATION=4 ROUNDS=6 MIXED_DURATION=20 PERF=0
#   PERF=1 also profiles the tvdb variant's backends for 8 s with perf and prints
#   the top libraries and symbols (adds ~15 s).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../../scripts/common.sh"
cd "$TVDB_ROOT"

JOBS=${JOBS:-10000}
CLIENTS=${CLIENTS:-2}
DURATION=${DURATION:-4}
ROUNDS=${ROUNDS:-6}
MIXED_DURATION=${MIXED_DURATION:-20}
PERF=${PERF:-0}
PGBENCH=$PGBIN/pgbench
DB=postgres

tvdb_install_deps
tvdb_build
trap tvdb_cluster_stop EXIT
# autovacuum off: it would start at random moments in one variant and not in
# another; run.sh vacuums every table before each measured run instead.
tvdb_cluster_start "autovacuum = off"

psql_q() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
psql_v() { psql -X -A -t -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }

echo "== machine: $(tvdb_machine)"
echo "== server: $(psql_v -c 'SELECT version()' | cut -d' ' -f1-2)," \
     "fsync=$(psql_v -c 'SHOW fsync'), synchronous_commit=$(psql_v -c 'SHOW synchronous_commit')," \
     "shared_buffers=$(psql_v -c 'SHOW shared_buffers'), autovacuum=$(psql_v -c 'SHOW autovacuum')"

echo "== setup: $JOBS jobs in each of the three copies"
psql_q -v jobs="$JOBS" -f "$HERE/setup.sql"
echo "   triggers on upload_pipeline.upload_jobs:" \
     "$(psql_v -c "SELECT string_agg(tgname, ', ' ORDER BY tgname) FROM pg_trigger
                   WHERE tgrelid = 'upload_pipeline.upload_jobs'::regclass AND NOT tgisinternal")"

PM_PID=$(head -1 "$TVDB_PGDATA/postmaster.pid")
# CPU seconds x 100 used by backends that have exited (the postmaster reaps
# them, so their time lands in its cutime + cstime).
reaped_cpu_ticks() { awk '{print $16 + $17}' "/proc/$PM_PID/stat"; }

# One pgbench run of one or more scripts.  Vacuums first; afterwards checks
# that every transaction wrote exactly one event row.  Leaves the pgbench
# output in $OUT and the server CPU it cost (ticks of 10 ms) in $TICKS.
bench_once() {
    local duration=$1; shift
    local before after txns c0 c1 fargs=()
    for s in "$@"; do fargs+=(-f "$HERE/$s"); done
    before=$(psql_v -c "VACUUM $JOB_TABLES" -c "CHECKPOINT" -c "$COUNT_EVENTS")
    sleep 0.3; c0=$(reaped_cpu_ticks)
    if ! OUT=$("$PGBENCH" -n -M prepared -c "$CLIENTS" -j "$CLIENTS" -T "$duration" \
                 -D jobs="$JOBS" "${fargs[@]}" "$DB" 2>&1); then
        echo "pgbench failed for $*:" >&2
        echo "$OUT" >&2
        return 1
    fi
    sleep 0.3; c1=$(reaped_cpu_ticks)
    TICKS=$((c1 - c0))
    txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$OUT")
    after=$(psql_v -c "$COUNT_EVENTS")
    if [ -z "$txns" ] || [ $((after - before)) -ne "$txns" ]; then
        echo "$*: $txns transactions but $((after - before)) new event rows" >&2
        echo "$OUT" >&2
        return 1
    fi
}
JOB_TABLES="upload_pipeline.upload_jobs, bench.jobs_bare, bench.jobs_plpgsql"
COUNT_EVENTS="SELECT (SELECT count(*) FROM upload_pipeline.events) + (SELECT count(*) FROM bench.events_bare)
                   + (SELECT count(*) FROM bench.events_plpgsql)"
tps_of() { sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$OUT"; }
txns_of() { sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$OUT"; }

VARIANTS=(bare tvdb plpgsql)
declare -A LABEL=([bare_lean]="(a0) bare, lean" [bare]="(a)  bare" [bare_notify]="(a2) bare+notify"
                  [tvdb]="(b)  tvdb" [plpgsql]="(c)  plpgsql")
declare -A SUM_TPS SUM_TXNS SUM_TICKS TPS US
RATIO_AB=() RATIO_BC=()
median() { printf "%s\n" "$@" | sort -g | awk '{v[NR] = $1} END {printf "%.3f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

echo "== check: two transitions of job 1 per variant write the same rows"
for v in bare tvdb plpgsql; do
    "$PGBENCH" -n -M prepared -c 1 -t 2 -D jobs=1 -f "$HERE/$v.sql" "$DB" >/dev/null
done
psql_q -f "$HERE/check.sql"

echo "== warm-up: 2 s per script"
for v in bare_lean bare bare_notify tvdb plpgsql; do bench_once 2 "$v.sql"; done

echo "== separate runs: pgbench -n -M prepared -c $CLIENTS -j $CLIENTS -T $DURATION per variant," \
     "$ROUNDS rounds, order reversed every other round (load average $(cut -d' ' -f1-3 /proc/loadavg))"
for v in "${VARIANTS[@]}"; do SUM_TPS[$v]=0; SUM_TXNS[$v]=0; SUM_TICKS[$v]=0; done
for ((r = 1; r <= ROUNDS; r++)); do
    order=("${VARIANTS[@]}")
    if ((r % 2 == 0)); then order=(plpgsql tvdb bare); fi
    line=$(printf "   round %d:" "$r")
    declare -A R=()
    for v in "${order[@]}"; do
        bench_once "$DURATION" "$v.sql"
        R[$v]=$(tps_of)
        SUM_TPS[$v]=$(awk -v a="${SUM_TPS[$v]}" -v b="${R[$v]}" 'BEGIN {print a + b}')
        SUM_TXNS[$v]=$((SUM_TXNS[$v] + $(txns_of)))
        SUM_TICKS[$v]=$((SUM_TICKS[$v] + TICKS))
        line+=$(printf "  %s %.0f" "$v" "${R[$v]}")
    done
    RATIO_AB+=("$(awk -v a="${R[bare]}" -v b="${R[tvdb]}" 'BEGIN {print a / b}')")
    RATIO_BC+=("$(awk -v b="${R[tvdb]}" -v c="${R[plpgsql]}" 'BEGIN {print b / c}')")
    line+=$(printf " tps;  a/b %.3f  b/c %.3f" "${RATIO_AB[-1]}" "${RATIO_BC[-1]}")
    echo "$line  (load $(cut -d' ' -f1 /proc/loadavg))"
done

echo
echo "transitions/s, mean of $ROUNDS separate runs of $DURATION s ($CLIENTS clients, $JOBS jobs);"
echo "server CPU per transition = CPU time of the backends / transitions:"
for v in "${VARIANTS[@]}"; do
    TPS[$v]=$(awk -v s="${SUM_TPS[$v]}" -v n="$ROUNDS" 'BEGIN {printf "%.1f", s / n}')
    US[$v]=$(awk -v t="${SUM_TICKS[$v]}" -v n="${SUM_TXNS[$v]}" 'BEGIN {printf "%.1f", t * 10000 / n}')
    printf "  %-18s %10s tps   %7s us CPU/transition\n" "${LABEL[$v]}" "${TPS[$v]}" "${US[$v]}"
done
echo
awk -v a="${TPS[bare]}" -v b="${TPS[tvdb]}" -v c="${TPS[plpgsql]}" \
    -v ua="${US[bare]}" -v ub="${US[tvdb]}" -v uc="${US[plpgsql]}" \
    -v mab="$(median "${RATIO_AB[@]}")" -v mbc="$(median "${RATIO_BC[@]}")" 'BEGIN {
    r = a / b;
    printf("  cost of tvdb vs bare   tps(a)/tps(b) = %.3f  (target <= 1.25: %s);  median of rounds %.3f;  by CPU %.3f\n",
           r, (r <= 1.25) ? "met" : "MISSED", mab, ub / ua);
    r = b / c;
    printf("  tvdb vs plpgsql        tps(b)/tps(c) = %.3f  (target > 1: %s);  median of rounds %.3f;  by CPU %.3f\n",
           r, (r > 1) ? "met" : "MISSED", mbc, uc / ub);
}'

# The same scripts mixed in one run: every client picks a script at random
# for each transaction, so all variants share the same moments of the
# machine; from pgbench's per-script latency averages.
MIXED=(bare_lean bare bare_notify tvdb plpgsql)
echo
echo "== mixed run: the ${#MIXED[@]} scripts at equal weight in one pgbench run, -T $MIXED_DURATION" \
     "(load average $(cut -d' ' -f1-3 /proc/loadavg))"
bench_once "$MIXED_DURATION" "${MIXED[@]/%/.sql}"
declare -A LAT
for v in "${MIXED[@]}"; do
    LAT[$v]=$(awk -v s="$HERE/$v.sql" '$0 ~ "^SQL script [0-9]+: " && $4 == s {f = 1; next}
              f && /latency average/ {print $5; exit}' <<<"$OUT")
    printf "  %-18s %8s ms latency average\n" "${LABEL[$v]}" "${LAT[$v]}"
done
awk -v a0="${LAT[bare_lean]}" -v a="${LAT[bare]}" -v a2="${LAT[bare_notify]}" -v b="${LAT[tvdb]}" -v c="${LAT[plpgsql]}" 'BEGIN {
    printf("  cost of tvdb vs bare   lat(b)/lat(a) = %.3f  (same meaning as tps(a)/tps(b); target <= 1.25: %s)\n",
           b / a, (b / a <= 1.25) ? "met" : "MISSED");
    printf("  tvdb vs plpgsql        lat(c)/lat(b) = %.3f  (target > 1: %s)\n", c / b, (c / b > 1) ? "met" : "MISSED");
    printf("  informational: NOTIFY alone lat(a2)/lat(a) = %.3f;  tvdb vs bare+notify lat(b)/lat(a2) = %.3f;\n", a2 / a, b / a2);
    printf("                 reading the old row in bare lat(a)/lat(a0) = %.3f;  tvdb vs lean bare lat(b)/lat(a0) = %.3f\n",
           a / a0, b / a0);
}'
echo "   load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

if [ "$PERF" = 1 ]; then
    if command -v perf >/dev/null; then
        echo
        echo "== perf: the backends of the tvdb variant, 8 s"
        perfdata=$(mktemp /tmp/tvdb-perf.XXXXXX)
        "$PGBENCH" -n -M prepared -c "$CLIENTS" -j "$CLIENTS" -T 10 -D jobs="$JOBS" \
            -f "$HERE/tvdb.sql" "$DB" >/dev/null &
        bench_pid=$!
        sleep 1
        pids=$(psql_v -c "SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE application_name = 'pgbench'")
        perf record -q -p "$pids" -o "$perfdata" -- sleep 8 >/dev/null 2>&1 || true
        wait "$bench_pid"
        perf report -i "$perfdata" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -8 || true
        echo
        perf report -i "$perfdata" --no-children --sort dso,symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -30 || true
        echo
        echo "   in tvdb.so:"
        perf report -i "$perfdata" --no-children --dsos tvdb.so --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -8 || true
        rm -f "$perfdata"
    else
        echo "PERF=1 but perf is not installed" >&2
    fi
fi
exit 0
