#!/usr/bin/env bash
# bench/storm/run.sh — 200 documents through a fault storm on both fake
# services (30 % 429 with Retry-After 1 s, 20 % 500, 5 % connections dropped
# with no answer), timed with the code as it was before the retry policy,
# circuits and pauses (BASE) and with this tree, in the same run on the same
# machine; prints both times and their ratio.  Nobody calls anything during
# a run: it ends when every document is complete or failed, or at CAP_S.
#
#   sudo bash bench/storm/run.sh          BASE=45ed814 N=200 CAP_S=900
#
# BASE is built from a git worktree and installed, then this tree is built
# and installed again (it is what stays installed).  Both use the same fakes
# (this tree's) and the same settings; this tree also gets max_attempts = 25
# and retry_max_delay = 5 s (under a 55 % failure rate the default 8 tries
# would fail some documents, for tvdb.retry_failed() to retry later) and no
# rate limits (BASE had none).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
source "$ROOT/scripts/common.sh"
BASE=${BASE:-45ed814}   # the last commit before the retry policy (issue 11)
N=${N:-200}
CAP_S=${CAP_S:-900}
WORK=$(mktemp -d /tmp/tvdb-storm.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    tvdb_cluster_stop 2>/dev/null || true
    git -C "$ROOT" worktree remove --force "$WORK/base" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
tvdb_install_deps

q() { psql -X -q -At -v ON_ERROR_STOP=1 -d storm -c "$1"; }

run() {  # run <label> <source dir> [extra statements...]: prints label, seconds, outcome, left
    local label=$1 src=$2
    shift 2
    local extra=()
    for stmt in "$@"; do extra+=(-c "$stmt"); done
    make -C "$src" -s clean >/dev/null 2>&1 || true
    make -C "$src" -s -j2 >/dev/null && make -C "$src" -s install >/dev/null
    tvdb_cluster_start "tvdb.database = 'storm'" "tvdb.workers = 2" >/dev/null
    for f in lp oa; do rm -f "$WORK/$f"; done
    python3 "$ROOT/test/fakes/fake_llamaparse.py" --port 0 --port-file "$WORK/lp" --parse-latency 0.3 >/dev/null 2>&1 & pids+=($!)
    python3 "$ROOT/test/fakes/fake_openai.py" --port 0 --port-file "$WORK/oa" >/dev/null 2>&1 & pids+=($!)
    for _ in $(seq 1 50); do [ -s "$WORK/lp" ] && [ -s "$WORK/oa" ] && break; sleep 0.1; done
    psql -X -q -d postgres -c "CREATE DATABASE storm" >/dev/null
    q "SET client_min_messages = warning; CREATE EXTENSION tvdb CASCADE" >/dev/null
    psql -X -q -d postgres -c "ALTER SYSTEM SET tvdb.service_mode = 'real'" \
        -c "ALTER SYSTEM SET tvdb.llamaparse_base_url = 'http://127.0.0.1:$(cat "$WORK/lp")'" \
        -c "ALTER SYSTEM SET tvdb.openai_base_url = 'http://127.0.0.1:$(cat "$WORK/oa")/v1'" \
        -c "ALTER SYSTEM SET tvdb.llamaparse_api_key = 'k'" -c "ALTER SYSTEM SET tvdb.openai_api_key = 'k'" \
        -c "ALTER SYSTEM SET tvdb.embedding_dimensions = 64" \
        -c "ALTER SYSTEM SET tvdb.poll_interval_min = '100ms'" -c "ALTER SYSTEM SET tvdb.poll_interval_max = '500ms'" \
        -c "ALTER SYSTEM SET tvdb.http_timeout = '8s'" -c "ALTER SYSTEM SET tvdb.connect_timeout = '2s'" \
        -c "ALTER SYSTEM SET tvdb.lease_seconds = 15" "${extra[@]}" -c "SELECT pg_reload_conf()" >/dev/null
    for f in lp oa; do
        curl -s -X POST "127.0.0.1:$(cat "$WORK/$f")/_control" \
             -d '{"rate_limit_rate": 0.3, "error_rate": 0.2, "drop_rate": 0.05, "retry_after": 1}' >/dev/null
    done
    sleep 1
    local t0 t1 left
    t0=$(date +%s.%N)
    # a quarter each: markdown and text (parsed locally), HTML and PDF (LlamaParse)
    q "SELECT count(tvdb.upload(format('storm-%s.%s', i, (ARRAY['md', 'txt', 'html', 'pdf'])[1 + i % 4]),
              convert_to(CASE i % 4 WHEN 2 THEN format('<h1>Storm %s</h1><p>%s</p>', i, s)
                                    WHEN 3 THEN '%PDF-1.4 ' || s
                                    ELSE format(E'# Storm %s\n\n%s', i, s) END, 'UTF8')))
       FROM generate_series(1, $N) i, LATERAL (SELECT repeat('A sentence of the storm. ', 1 + i % 200) AS s) t" >/dev/null
    while :; do
        left=$(q "SELECT count(*) FROM upload_pipeline.upload_jobs
                  WHERE status NOT IN ('complete', 'failed_parse', 'failed_chunking', 'failed_embedding')")
        t1=$(date +%s.%N)
        [ "$left" = 0 ] && break
        python3 -c "import sys; sys.exit(float(sys.argv[2]) - float(sys.argv[1]) < $CAP_S)" "$t0" "$t1" && break
        sleep 1
    done
    printf '%s %s %s %s\n' "$label" "$(python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))" "$t0" "$t1")" \
        "$(q "SELECT count(*) FILTER (WHERE status = 'complete') || '/' || count(*) || ' complete, '
                     || count(*) FILTER (WHERE status LIKE 'failed%') || ' failed' FROM upload_pipeline.upload_jobs")" \
        "$left"
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    pids=()
    tvdb_cluster_stop >/dev/null 2>&1
}

git -C "$ROOT" worktree add -q --detach "$WORK/base" "$BASE"
echo "== $N documents through the storm; base $BASE (before the retry policy), then this tree"
base=$(run base "$WORK/base")
head=$(run head "$ROOT" "ALTER SYSTEM SET tvdb.max_attempts = 25" "ALTER SYSTEM SET tvdb.retry_max_delay = '5s'" \
       "ALTER SYSTEM SET tvdb.llamaparse_requests_per_minute = 0" "ALTER SYSTEM SET tvdb.openai_requests_per_minute = 0" \
       "ALTER SYSTEM SET tvdb.openai_tokens_per_minute = 0")
echo "  $base"
echo "  $head"
read -r _ bs bdone _ <<<"$base"
read -r _ hs hdone _ <<<"$head"
echo "RESULT storm, $N documents: base $bs s ($(echo "$base" | cut -d' ' -f3-)), this tree $hs s ($(echo "$head" | cut -d' ' -f3-));" \
     "this tree / base = $(python3 -c "import sys; print(round(float(sys.argv[2]) / float(sys.argv[1]), 3))" "$bs" "$hs")" \
     "(a base that hit CAP_S=$CAP_S s was stopped there: the ratio is then an upper bound)"
