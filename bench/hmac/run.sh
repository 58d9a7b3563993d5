#!/usr/bin/env bash
# bench/hmac/run.sh — webhook signature verifications per second:
#   C           tvdb.verify_webhook_signature(body, headers, secrets)
#   SQL         the same check as a SQL function over pgcrypto's hmac() and
#               encode() (bench.sql_verify_webhook_signature, setup.sql)
#   SQL inline  the same SQL written into the query, without the function call
# at 1 KiB and 1 MiB bodies read from one table (setup.sql), in two modes:
#   one    one verification per statement (what a webhook request costs)
#   batch  every body of the size in one statement (the function's own cost)
# Every case runs DURATION seconds, ROUNDS times interleaved (order reversed
# every other round); then each case once more as one pgbench run mixing the
# three at random per transaction (ratios from per-script latency, robust
# against other load on the machine).  The ratios come from the same run.  setup.sql aborts
# unless both C and SQL accept every genuine signature and reject forgeries,
# and every pgbench transaction checks its results.  A benchmark, not a test:
# exits 0 after printing, non-zero only if something broke.
#
#   sudo bash bench/hmac/run.sh
#   defaults: CLIENTS=2 DURATION=4 ROUNDS=2 MIXED_DURATION=5
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../../scripts/common.sh"
cd "$TVDB_ROOT"

CLIENTS=${CLIENTS:-2}
DURATION=${DURATION:-4}
ROUNDS=${ROUNDS:-2}
MIXED_DURATION=${MIXED_DURATION:-5}
PGBENCH=$PGBIN/pgbench
DB=postgres

tvdb_install_deps
tvdb_build
trap tvdb_cluster_stop EXIT
tvdb_cluster_start

psql_v() { psql -X -A -t -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }

echo "== machine: $(tvdb_machine)"
echo "== server: $(psql_v -c 'SELECT version()' | cut -d' ' -f1-2), fsync=$(psql_v -c 'SHOW fsync')," \
     "shared_buffers=$(psql_v -c 'SHOW shared_buffers')"
echo "== setup and check"
psql -X -q -t -v ON_ERROR_STOP=1 -d "$DB" -f "$HERE/setup.sql" | sed '/^ *$/d'

declare -A ROWS=([1]=256 [1024]=8) SIZE=([1]="1 KiB" [1024]="1 MiB")
IMPLS=(c sql sqlinline)
declare -A NAME=([c]=C [sql]="SQL" [sqlinline]="SQL inline")
declare -A SUM

# tps of one pgbench run
bench_once() {
    local script=$1 kib=$2 duration=$3 out tps
    if ! out=$("$PGBENCH" -n -M prepared -c "$CLIENTS" -j "$CLIENTS" -T "$duration" \
                 -D kib="$kib" -D rows="${ROWS[$kib]}" -f "$HERE/$script" "$DB" 2>&1); then
        echo "pgbench failed for $script at $kib KiB:" >&2
        echo "$out" >&2
        return 1
    fi
    tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")
    [ -n "$tps" ] || { echo "no tps from pgbench for $script:" >&2; echo "$out" >&2; return 1; }
    echo "$tps"
}

echo "== warm-up: 1 s per case"
for kib in 1 1024; do for mode in one batch; do for impl in "${IMPLS[@]}"; do
    bench_once "${impl}_$mode.sql" "$kib" 1 >/dev/null
done; done; done

echo "== measuring: pgbench -n -M prepared -c $CLIENTS -j $CLIENTS -T $DURATION per case, $ROUNDS rounds" \
     "(load average $(cut -d' ' -f1-3 /proc/loadavg))"
for kib in 1 1024; do for mode in one batch; do for impl in "${IMPLS[@]}"; do
    SUM[$kib.$mode.$impl]=0
done; done; done
for ((r = 1; r <= ROUNDS; r++)); do
    order=("${IMPLS[@]}")
    if ((r % 2 == 0)); then order=(sqlinline sql c); fi
    for kib in 1 1024; do for mode in one batch; do
        line=$(printf "   round %d, %-5s %-5s:" "$r" "${SIZE[$kib]}" "$mode")
        for impl in "${order[@]}"; do
            tps=$(bench_once "${impl}_$mode.sql" "$kib" "$DURATION")
            per=$([ "$mode" = one ] && echo 1 || echo "${ROWS[$kib]}")
            v=$(awk -v t="$tps" -v p="$per" 'BEGIN {print t * p}')
            SUM[$kib.$mode.$impl]=$(awk -v a="${SUM[$kib.$mode.$impl]}" -v b="$v" 'BEGIN {print a + b}')
            line+=$(printf "  %s %.0f" "${NAME[$impl]}" "$v")
        done
        echo "$line /s  (load $(cut -d' ' -f1 /proc/loadavg))"
    done; done
done

echo
echo "verifications/s, mean of $ROUNDS runs of $DURATION s, $CLIENTS clients:"
printf "  %-6s %-30s %12s %12s %12s %8s %10s\n" size mode C SQL "SQL inline" C/SQL "C/inline"
for kib in 1 1024; do for mode in one batch; do
    if [ "$mode" = one ]; then desc="one per statement"; else desc="batch (${ROWS[$kib]} per statement)"; fi
    awk -v size="${SIZE[$kib]}" -v desc="$desc" -v n="$ROUNDS" -v kib="$kib" \
        -v c="${SUM[$kib.$mode.c]}" -v s="${SUM[$kib.$mode.sql]}" -v i="${SUM[$kib.$mode.sqlinline]}" 'BEGIN {
        c /= n; s /= n; i /= n;
        verdict = "";
        if (kib == 1) verdict = (c / s >= 2) ? "  (target >= 2x: met)" : "  (target >= 2x: MISSED)";
        printf("  %-6s %-30s %12.0f %12.0f %12.0f %7.2fx %9.2fx%s\n", size, desc, c, s, i, c / s, c / i, verdict);
    }'
done; done

# The three scripts mixed in one pgbench run per case: every transaction picks
# one at random, so all three share the same moments of this (possibly busy)
# machine; ratios from pgbench's per-script latency averages.
echo
echo "== mixed runs: C, SQL and SQL inline at equal weight in one pgbench run per case, -T $MIXED_DURATION"
printf "  %-6s %-30s %10s %10s %10s %8s %10s\n" size mode "C ms" "SQL ms" "inline ms" SQL/C inline/C
for kib in 1 1024; do for mode in one batch; do
    if [ "$mode" = one ]; then desc="one per statement"; else desc="batch (${ROWS[$kib]} per statement)"; fi
    if ! out=$("$PGBENCH" -n -M prepared -c "$CLIENTS" -j "$CLIENTS" -T "$MIXED_DURATION" \
                 -D kib="$kib" -D rows="${ROWS[$kib]}" -f "$HERE/c_$mode.sql" -f "$HERE/sql_$mode.sql" \
                 -f "$HERE/sqlinline_$mode.sql" "$DB" 2>&1); then
        echo "pgbench failed for the mixed run at $kib KiB, $mode:" >&2
        echo "$out" >&2
        exit 1
    fi
    declare -A LAT=()
    for impl in "${IMPLS[@]}"; do
        LAT[$impl]=$(awk -v s="$HERE/${impl}_$mode.sql" '$0 ~ "^SQL script [0-9]+: " && $4 == s {f = 1; next}
                     f && /latency average/ {print $5; exit}' <<<"$out")
        [ -n "${LAT[$impl]}" ] || { echo "no latency for $impl in:" >&2; echo "$out" >&2; exit 1; }
    done
    awk -v size="${SIZE[$kib]}" -v desc="$desc" -v kib="$kib" \
        -v c="${LAT[c]}" -v s="${LAT[sql]}" -v i="${LAT[sqlinline]}" 'BEGIN {
        verdict = "";
        if (kib == 1) verdict = (s / c >= 2) ? "  (target >= 2x: met)" : "  (target >= 2x: MISSED)";
        printf("  %-6s %-30s %10.3f %10.3f %10.3f %7.2fx %9.2fx%s\n", size, desc, c, s, i, s / c, i / c, verdict);
    }'
done; done
echo "   (SQL/C = latency(SQL) / latency(C) = how many times as many verifications/s C does)"
echo "   load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
exit 0
