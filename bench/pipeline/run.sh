#!/usr/bin/env bash
# bench/pipeline/run.sh — the background worker end to end, over real HTTP
# (libcurl) against the fake LlamaParse and OpenAI servers in test/fakes/,
# measured against a reference client (reference.c, built here) run on the
# same fakes just before each tvdb run: libcurl multi with the same
# max_inflight, tvdb's chunker and tvdb's requests, that uploads every
# document, polls each once after the parse latency, fetches, embeds in
# tvdb's batches, and writes nothing anywhere (what a perfect worker does).
#
#   1. slow services: N1 documents, parses take PARSE_LATENCY s, embeddings
#      EMBED_LATENCY s; tvdb.max_inflight = each of INFLIGHT (and INFLIGHT_WH
#      with webhooks, against the same polling reference).  tvdb wall /
#      reference wall (target <= 1.3x), where tvdb's time went, CPU.
#   2. no latency: N2 documents, reference then tvdb; documents/s (target
#      >= 600) and the worker's CPU per document (target <= 1 ms).
#   3. memory: the worker's resident and palloc'd memory before and after N3
#      more documents, at each of RSS_AT (it should stay flat).
#
# A benchmark, not a test: it prints figures and never fails on timing; it
# exits non-zero only when something broke (a document that did not complete,
# the worker restarting, a fake not starting, the reference failing).
#
#   sudo bash bench/pipeline/run.sh                     # PostgreSQL from /usr
#   sudo PG_CONFIG=/opt/x/usr/lib/postgresql/15/bin/pg_config bash bench/pipeline/run.sh
# With the default PG_CONFIG, missing Debian packages are installed first
# (scripts/common.sh, tvdb_install_deps; INSTALL_DEPS=0 skips that).
#
# Knobs (environment): N1=1000 INFLIGHT="64 256" INFLIGHT_WH=64 PARSE_LATENCY=2
#   EMBED_LATENCY=0.05 POLL_MIN_MS=250 POLL_MAX_MS=1000 N2=2000 INFLIGHT2=64
#   N3=10000 RSS_AT="2000 5000 10000" DIMS=0 (0: the model's 1536)
#   ENCODING=base64 (or float) BUILD=1 (0: use the installed tvdb)
#   STALL_S=90 (no progress for that long = broken) PGSS=0 (1: also print the
#   worker's costliest statements from pg_stat_statements) PERF=0 (1: profile
#   the worker with perf during phase 2).
# Needs: PostgreSQL 15 server + dev files, a C compiler, libcurl dev,
# libcmark-gfm dev (see scripts/common.sh), python3 (3.8+, stdlib only), curl.
# Runs PostgreSQL as the postgres user when started as root.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
FAKES=$ROOT/test/fakes

export PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PGBIN=$("$PG_CONFIG" --bindir)
export PATH="$PGBIN:$PATH"   # psql and friends of the same installation
N1=${N1:-1000}
INFLIGHT=${INFLIGHT-"64 256"}   # empty: skip phase 1 (polling)
INFLIGHT_WH=${INFLIGHT_WH-"64"}  # empty: skip phase 1 with webhooks
WH_POLL_MS=${WH_POLL_MS:-10000}
WH_SECRET=bench-webhook-secret
PARSE_LATENCY=${PARSE_LATENCY:-2}
EMBED_LATENCY=${EMBED_LATENCY:-0.05}
POLL_MIN_MS=${POLL_MIN_MS:-250}
POLL_MAX_MS=${POLL_MAX_MS:-1000}
N2=${N2:-2000}
INFLIGHT2=${INFLIGHT2:-64}
N3=${N3:-10000}
RSS_AT=${RSS_AT:-"2000 5000 10000"}
DIMS=${DIMS:-0}
ENCODING=${ENCODING:-base64}   # tvdb.embedding_encoding: base64 or float
BUILD=${BUILD:-1}
STALL_S=${STALL_S:-90}
PGSS=${PGSS:-0}
PERF=${PERF:-0}
DB=tvdb_bench
TERMINAL="'complete', 'failed_parse', 'failed_chunking', 'failed_embedding', 'cancelled'"
ORDER="ARRAY['uploaded', 'parse_queued', 'parsed', 'chunking', 'chunks_stored', 'embedding_queued',
             'embedding_in_progress', 'embeddings_stored', 'complete']"

WORK=""
FAKE_PIDS=()
PGDATA_DIR=""
broke=0

as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
    for p in "${FAKE_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ -n "$PGDATA_DIR" ]; then
        as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w stop >/dev/null 2>&1 || true
    fi
    [ -n "$WORK" ] && rm -rf "$WORK"
    return 0
}
trap cleanup EXIT
die() { echo "BROKEN: $*" >&2; [ -n "$WORK" ] && [ -f "$WORK/server.log" ] && tail -20 "$WORK/server.log" >&2; exit 1; }

q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB" -c "$1"; }
qt() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -P footer=off -c "$1"; }   # a table, for reading
now_s() { date +%s.%N; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }   # utime + stime
runq_ns() { awk '{print $2}' "/proc/$1/schedstat" 2>/dev/null || echo 0; }   # time runnable, waiting for a CPU
CLK_TCK=$(getconf CLK_TCK)
calc() { python3 -c "import sys, math; print($1)"; }

# ---------------------------------------------------------------- machine
echo "== bench/pipeline $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "== machine: $(tvdb_machine); load average at start: $(loadavg)"
echo "== PostgreSQL: $("$PGBIN/postgres" --version) from $PGBIN"

# Missing packages are installed (apt, as root) only for the default PostgreSQL
# in /usr; with another PG_CONFIG the caller provides what is needed.
if [ "$PG_CONFIG" = /usr/lib/postgresql/15/bin/pg_config ] && [ "${INSTALL_DEPS:-1}" = 1 ]; then
    ( source "$ROOT/scripts/common.sh" && tvdb_install_deps ) || die "could not install the packages needed"
fi
if [ "$BUILD" = 1 ]; then
    echo "== building and installing tvdb with $PG_CONFIG"
    make -C "$ROOT" -s -j2 >/dev/null
    make -C "$ROOT" -s install >/dev/null
fi

# ---------------------------------------------------------------- cluster
WORK=$(mktemp -d /tmp/tvdb-bench-pipeline.XXXXXX)
chmod 755 "$WORK"
[ "$(id -u)" -eq 0 ] && chown postgres: "$WORK"
PGDATA_DIR=$WORK/data
REF=$WORK/reference
cc -std=c11 -O2 -Wall -o "$REF" "$HERE/reference.c" "$ROOT/src/chunker/chunker.c" -I"$ROOT/src/chunker" \
    -lcurl -lcmark-gfm-extensions -lcmark-gfm || die "could not build the reference client"
port=$((55000 + RANDOM % 5000))
while (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null; do port=$((port + 1)); done
as_pg "$PGBIN/initdb" -D "$PGDATA_DIR" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
{
    echo "listen_addresses = '127.0.0.1'"
    echo "port = $port"
    echo "unix_socket_directories = '$WORK'"
    if [ "$PGSS" = 1 ]; then
        echo "shared_preload_libraries = 'tvdb,pg_stat_statements'"
        echo "pg_stat_statements.track = all"
        echo "pg_stat_statements.track_utility = off"
    else
        echo "shared_preload_libraries = 'tvdb'"
    fi
    echo "fsync = off"
    echo "log_min_messages = warning"
    echo "tvdb.database = '$DB'"
    echo "tvdb.workers = 1"
    echo "tvdb.webhook_secrets = '$WH_SECRET'"
    # tvdb's own throughput is measured: the services' rate limits are off
    echo "tvdb.llamaparse_requests_per_minute = 0"
    echo "tvdb.openai_requests_per_minute = 0"
    echo "tvdb.openai_tokens_per_minute = 0"
} | as_pg tee -a "$PGDATA_DIR/postgresql.conf" >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$WORK/server.log" -w -t 60 start >/dev/null
export PGHOST=$WORK PGPORT=$port PGUSER=postgres
echo "== cluster: port $port, fsync=off, tvdb.workers=1 (postgresql.conf), autovacuum on"

# ---------------------------------------------------------------- fakes
mkdir -p "$WORK/fakes"
start_fake() {  # start_fake <script> <portfile> args...
    local script=$1 portfile=$2; shift 2
    python3 "$FAKES/$script" --port 0 --port-file "$portfile" "$@" >"$portfile.log" 2>&1 &
    FAKE_PIDS+=($!)
    for _ in $(seq 1 100); do [ -s "$portfile" ] && return 0; sleep 0.1; done
    cat "$portfile.log" >&2
    die "could not start $script"
}
start_fake fake_llamaparse.py "$WORK/fakes/lp" --parse-latency "$PARSE_LATENCY"
LP_PID=${FAKE_PIDS[-1]}
start_fake fake_openai.py "$WORK/fakes/oa" --latency "$EMBED_LATENCY"
OA_PID=${FAKE_PIDS[-1]}
LP=http://127.0.0.1:$(cat "$WORK/fakes/lp")
OA=http://127.0.0.1:$(cat "$WORK/fakes/oa")/v1
knobs() { curl -sf -X POST "$1/_control" -d "$2" >/dev/null || die "knobs $2 on $1"; }
lp_knobs() { knobs "$LP" "$1"; }
oa_knobs() { knobs "${OA%/v1}" "$1"; }
reset_fakes() { curl -sf -X POST "$LP/_reset" >/dev/null; curl -sf -X POST "${OA%/v1}/_reset" >/dev/null; }

# ---------------------------------------------------------------- database
psql -X -q -d postgres -c "CREATE DATABASE $DB"
psql -X -q -d "$DB" -c "SET client_min_messages = warning" -c "CREATE EXTENSION tvdb CASCADE"
[ "$PGSS" = 1 ] && psql -X -q -d "$DB" -c "CREATE EXTENSION pg_stat_statements"
psql -X -q -d postgres >/dev/null <<SQL
ALTER SYSTEM SET tvdb.service_mode = 'real';
ALTER SYSTEM SET tvdb.llamaparse_base_url = '$LP';
ALTER SYSTEM SET tvdb.openai_base_url = '$OA';
ALTER SYSTEM SET tvdb.llamaparse_api_key = 'bench-llamaparse-key';
ALTER SYSTEM SET tvdb.openai_api_key = 'bench-openai-key';
ALTER SYSTEM SET tvdb.embedding_dimensions = $DIMS;
ALTER SYSTEM SET tvdb.embedding_encoding = '$ENCODING';
ALTER SYSTEM SET tvdb.poll_interval_min = '${POLL_MIN_MS}ms';
ALTER SYSTEM SET tvdb.poll_interval_max = '${POLL_MAX_MS}ms';
SELECT pg_reload_conf();
SQL
DIMS_EFF=$DIMS; [ "$DIMS" -gt 0 ] || DIMS_EFF=1536
echo "== settings: $(q "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name)
                       FROM pg_settings WHERE name IN ('tvdb.poll_interval_min', 'tvdb.poll_interval_max',
                       'tvdb.chunk_target_tokens', 'tvdb.embedding_batch_inputs', 'tvdb.embedding_model',
                       'tvdb.lease_seconds', 'shared_buffers')"), embedding dimensions $DIMS_EFF"

# tvdb-webhookd, for phase 1 with webhooks, as a role that may only apply them
WH_PID=""
WH_URL=""
if [ -n "$INFLIGHT_WH" ]; then
    psql -X -q -d "$DB" -c "CREATE ROLE tvdb_bench_webhookd LOGIN" \
         -c "GRANT tvdb_webhook, tvdb_monitor TO tvdb_bench_webhookd"
    wh_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    WH_URL=http://127.0.0.1:$wh_port
    "$PGBIN/tvdb-webhookd" --listen 127.0.0.1 --port "$wh_port" --pool 4 \
        --dsn "host=$WORK port=$port dbname=$DB user=tvdb_bench_webhookd" 2>"$WORK/webhookd.log" &
    WH_PID=$!
    FAKE_PIDS+=("$WH_PID")
    # health answers 503 while tvdb.health says down; the database being up is enough here
    for _ in $(seq 1 50); do curl -s "$WH_URL/api/v1/webhooks/health" | grep -q '"database": "up"' && break; sleep 0.1; done
    curl -s "$WH_URL/api/v1/webhooks/health" | grep -q '"database": "up"' || { cat "$WORK/webhookd.log" >&2; die "tvdb-webhookd did not start"; }
    echo "== tvdb-webhookd on $WH_URL (pool 4)"
fi

worker_pid() { q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'tvdb worker' AND datname = '$DB'"; }
WPID=""
for _ in $(seq 1 60); do WPID=$(worker_pid); [ -n "$WPID" ] && break; sleep 0.5; done
[ -n "$WPID" ] || die "no tvdb worker serves $DB"

# Documents: HTML (LlamaParse reads it; markdown and text would be parsed
# locally), two sections of ~1.2 KB, unique text (no parse cache hits): two
# chunks each at the default chunk size.
upload_docs() {  # upload_docs <tag> <from> <to>; prints the epoch right after the commit
    psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB" \
        -c "SELECT count(tvdb.upload(format('$1-%s.html', i), convert_to(format(
              '<h1>Report %s of %s</h1><h2>Summary</h2><p>%s</p><h2>Details</h2><p>%s</p>', i, '$1',
              repeat(format('Summary sentence about document %s of run %s. ', i, '$1'), 26),
              repeat(format('A detail of document %s, run %s, goes here. ', i, '$1'), 26)), 'UTF8')))
            FROM generate_series($2, $3) i" \
        -c "SELECT extract(epoch FROM clock_timestamp())" | tail -1
}
in_flight() { q "SELECT count(*) FROM upload_pipeline.upload_jobs WHERE status NOT IN ($TERMINAL)"; }
# Wait until no job is in flight; broken if nothing moves for STALL_S seconds.
wait_settled() {
    local left last="" since
    since=$(date +%s)
    while :; do
        left=$(in_flight)
        [ "$left" = 0 ] && return 0
        if [ "$left" != "$last" ]; then last=$left; since=$(date +%s);
        elif [ $(($(date +%s) - since)) -ge "$STALL_S" ]; then
            echo "  stalled: $left jobs in flight, by status:" \
                 "$(q "SELECT string_agg(status || ' ' || n, ', ') FROM (SELECT status, count(*) n
                       FROM upload_pipeline.upload_jobs WHERE status NOT IN ($TERMINAL) GROUP BY 1) s")"
            return 1
        fi
        sleep 0.25
    done
}
check_worker() {  # the same worker process all along (a restart would void the figures)
    local p; p=$(worker_pid)
    [ "$p" = "$WPID" ] || die "the tvdb worker changed from pid $WPID to '${p}' (crash?)"
}
check_complete() {  # check_complete <expected complete>
    local c; c=$(q "SELECT count(*) FROM upload_pipeline.upload_jobs WHERE status = 'complete'")
    if [ "$c" != "$1" ]; then
        echo "  BROKEN: $c of $1 documents complete; others:" \
             "$(q "SELECT string_agg(status || ' ' || n || coalesce(' (' || e || ')', ''), '; ')
                   FROM (SELECT status, count(*) n, min(last_error) e FROM upload_pipeline.upload_jobs
                         WHERE status <> 'complete' GROUP BY 1) s")"
        broke=1
        return 1
    fi
}
clear_tables() {
    q "TRUNCATE upload_pipeline.document_chunks, upload_pipeline.upload_jobs, upload_pipeline.documents,
                upload_pipeline.blobs, upload_pipeline.events, upload_pipeline.usage CASCADE"
    q "VACUUM ANALYZE upload_pipeline.upload_jobs" >/dev/null
    [ "$PGSS" = 1 ] && q "SELECT pg_stat_statements_reset()" >/dev/null
    return 0
}

echo "== warm-up: 20 documents, no latency"
lp_knobs '{"parse_latency": 0}'; oa_knobs '{"latency": 0}'
upload_docs warm 1 20 >/dev/null
wait_settled || die "warm-up documents did not settle"
check_complete 20 || die "warm-up documents did not complete"
check_worker

# ---------------------------------------------------------------- analysis
# report <t0 epoch> <t_end epoch> <n docs>: where the time went, from the
# events, the usage ledger and the fakes' counters.
report() {
    local t0=$1 tend=$2 n=$3
    echo "  -- documents complete (s after the upload commit): first $(q "SELECT round((min(extract(epoch FROM ts)) - $t0)::numeric, 2)
             FROM upload_pipeline.events WHERE to_status = 'complete'"), 10% / 50% / 90% at $(q "SELECT string_agg(round(v::numeric, 2)::text, ' / ')
             FROM unnest((SELECT percentile_cont(ARRAY[0.1, 0.5, 0.9]) WITHIN GROUP (ORDER BY extract(epoch FROM ts) - $t0)
                          FROM upload_pipeline.events WHERE to_status = 'complete')) v"), last $(calc "round($tend - $t0, 2)")"
    echo "  -- time spent in each status (from the events), and when the last job left it (last_left_at_s, s after the upload commit):"
    qt "SELECT e.from_status AS status, count(*) AS jobs,
               round(avg(extract(epoch FROM e.in_previous_state))::numeric, 3) AS avg_s,
               round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM e.in_previous_state))::numeric, 3) AS p50_s,
               round(percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM e.in_previous_state))::numeric, 3) AS p95_s,
               round(max(extract(epoch FROM e.in_previous_state))::numeric, 3) AS max_s,
               round((max(extract(epoch FROM e.ts)) - $t0)::numeric, 2) AS last_left_at_s
        FROM upload_pipeline.events e WHERE e.from_status IS NOT NULL AND e.to_status IS NOT NULL
        GROUP BY 1 ORDER BY array_position($ORDER, e.from_status)" | sed 's/^/  /'
    echo "  -- usage ledger (latency_ms = request start to answer handled by the worker):"
    qt "SELECT service, operation, count(*) AS requests, round(count(*)::numeric / $n, 2) AS per_doc,
               count(*) FILTER (WHERE http_status = 200) AS ok,
               round(avg(latency_ms)::numeric, 1) AS avg_ms,
               round(percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms)::numeric, 1) AS p50_ms,
               round(percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms)::numeric, 1) AS p95_ms,
               round(max(latency_ms)::numeric, 1) AS max_ms, round(avg(inputs)::numeric, 1) AS avg_inputs
        FROM upload_pipeline.usage GROUP BY 1, 2 ORDER BY 1 DESC, min(usage_id)" | sed 's/^/  /'
    echo "  -- concurrency: average requests in flight = sum(latency) / wall =" \
         "$(q "SELECT round((sum(latency_ms) / 1000 / ($tend - $t0))::numeric, 1) FROM upload_pipeline.usage");" \
         "events per second (status changes) = $(q "SELECT round((count(*) / ($tend - $t0))::numeric) FROM upload_pipeline.events WHERE to_status IS NOT NULL")"
    if [ "$PGSS" = 1 ]; then
        echo "  -- pg_stat_statements: the costliest statements (nested ones are part of their callers' time):"
        qt "SELECT round(total_exec_time::numeric) AS total_ms, calls, round(mean_exec_time::numeric, 3) AS mean_ms,
                   round((total_exec_time / ($tend - $t0) / 10)::numeric, 1) AS pct_of_wall, toplevel AS top,
                   left(regexp_replace(query, '\s+', ' ', 'g'), 90) AS query
            FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%'
            ORDER BY total_exec_time DESC LIMIT 14" | sed 's/^/  /'
    fi
}

# ---------------------------------------------------------------- reference
# reference <tag> <M>: the reference client on the fakes as their knobs are
# now, with tvdb's chunk and batch settings; prints its figures and sets
# REF_WALL (s), REF_RATE (documents/s).  Its tag has the same length as the
# tvdb run's, so the documents have the same size.
REF_OPTS=$(q "SELECT format('--model %s --chunk-target %s --chunk-overlap %s --bytes-per-token %s --batch-inputs %s --batch-tokens %s',
                 current_setting('tvdb.embedding_model'), current_setting('tvdb.chunk_target_tokens'),
                 current_setting('tvdb.chunk_overlap_tokens'), current_setting('tvdb.chunk_bytes_per_token'),
                 current_setting('tvdb.embedding_batch_inputs'), current_setting('tvdb.embedding_batch_tokens'))")
jget() { python3 -c "import json, sys; d = json.loads(sys.argv[1])
for k in sys.argv[2].split('.'): d = d[k]
print(d)" "$1" "$2"; }
reference() {
    local tag=$1 M=$2 n=$3 latency=$4 out l0 o0 l1 o1
    reset_fakes
    l0=$(ticks "$LP_PID"); o0=$(ticks "$OA_PID")
    # --batch-docs 64: tvdb's embed stage claims 64 jobs at a time (src/stages/openai.c)
    # shellcheck disable=SC2086
    out=$("$REF" --llamaparse "$LP" --openai "$OA" --documents "$n" --tag "$tag" --inflight "$M" \
                 --parse-latency "$latency" --dims "$DIMS" --encoding "$ENCODING" --batch-docs 64 $REF_OPTS) \
        || die "the reference client failed"
    l1=$(ticks "$LP_PID"); o1=$(ticks "$OA_PID")
    REF_WALL=$(jget "$out" wall_s); REF_RATE=$(jget "$out" documents_per_s)
    echo "  reference: $n documents in $REF_WALL s = $REF_RATE documents/s;" \
         "requests: $(jget "$out" requests.upload) uploads, $(jget "$out" requests.poll) polls" \
         "($(jget "$out" extra_polls) found the parse running), $(jget "$out" requests.fetch) fetches," \
         "$(jget "$out" requests.embed) embeddings ($(jget "$out" inputs_per_embed) inputs each on average);" \
         "its CPU $(jget "$out" cpu_ms_per_document) ms per document;" \
         "fake LlamaParse $(calc "round(($l1-$l0)/$CLK_TCK/$REF_WALL*100)")%, fake OpenAI $(calc "round(($o1-$o0)/$CLK_TCK/$REF_WALL*100)")% of a core"
    reset_fakes
}

# ---------------------------------------------------------------- phase 1
# tvdb's poll rule (first poll poll_interval_min after the upload, then every
# quarter of the time waited so far, within poll_interval_min..max): when it
# first polls a parse that takes PARSE_LATENCY, and how many polls that is.
poll_schedule() {
    python3 -c "
p, lo, hi = $PARSE_LATENCY, $POLL_MIN_MS / 1000, $POLL_MAX_MS / 1000
t, k = lo, 1
while t < p:
    t += min(hi, max(lo, t / 4)); k += 1
print('%.3f %d' % (t, k))"
}
read -r P_SCHED POLLS_SCHED < <(poll_schedule)

declare -A P1_RATE P1_WALL P1_REF P1_RATIO P1_CPU
# phase1 <M> <poll|webhook>: with webhook, LlamaParse (the fake) pushes each
# result to tvdb-webhookd as soon as it is parsed; polls are only a safety net
# (every WH_POLL_MS).  The reference polls in both cases: learning of the
# parse at PARSE_LATENCY by a push or by an oracle's poll is the same schedule.
phase1() {
    local M=$1 mode=$2 key="$1 $2"
    echo
    echo "== phase 1 ($mode): $N1 documents, parse latency ${PARSE_LATENCY} s, embedding latency ${EMBED_LATENCY} s, max_inflight = $M"
    psql -X -q -d postgres -c "ALTER SYSTEM SET tvdb.max_inflight = $M" -c "SELECT pg_reload_conf()" >/dev/null
    clear_tables
    lp_knobs "{\"parse_latency\": $PARSE_LATENCY, \"webhook\": false}"; oa_knobs "{\"latency\": $EMBED_LATENCY}"
    reference "r1m$M$mode" "$M" "$N1" "$PARSE_LATENCY"
    if [ "$mode" = webhook ]; then
        psql -X -q -d postgres -c "ALTER SYSTEM SET tvdb.callback_url_rules = 'local'" \
             -c "ALTER SYSTEM SET tvdb.parse_webhook_url = '$WH_URL/api/v1/webhooks/llamaparse'" \
             -c "ALTER SYSTEM SET tvdb.poll_interval_max = '${WH_POLL_MS}ms'" \
             -c "ALTER SYSTEM SET tvdb.poll_interval_min = '${WH_POLL_MS}ms'" -c "SELECT pg_reload_conf()" >/dev/null
        lp_knobs '{"webhook": true, "webhook_style": "push"}'
    else
        echo "  (tvdb's poll rule, ${POLL_MIN_MS}..${POLL_MAX_MS} ms, first polls a ${PARSE_LATENCY} s parse at ${P_SCHED} s, its ${POLLS_SCHED}th poll)"
    fi
    sleep 0.5   # let the worker see the reload

    load0=$(loadavg); w0=$(ticks "$WPID"); rq0=$(runq_ns "$WPID"); l0=$(ticks "$LP_PID"); o0=$(ticks "$OA_PID")
    d0=$(ticks "${WH_PID:-$$}")
    tu=$(now_s)
    t0=$(upload_docs "p1m$M$mode" 1 "$N1")
    tu=$(calc "round($t0 - $tu, 2)")
    wait_settled || broke=1
    w1=$(ticks "$WPID"); rq1=$(runq_ns "$WPID"); l1=$(ticks "$LP_PID"); o1=$(ticks "$OA_PID"); load1=$(loadavg)
    d1=$(ticks "${WH_PID:-$$}")
    check_worker
    check_complete "$N1" || true
    tend=$(q "SELECT extract(epoch FROM max(ts)) FROM upload_pipeline.events WHERE to_status IN ($TERMINAL)")
    wall=$(calc "round($tend - $t0, 3)")
    rate=$(calc "round($N1 / $wall, 1)")
    ratio=$(calc "round($wall / $REF_WALL, 2)")
    P1_RATE[$key]=$rate; P1_WALL[$key]=$wall; P1_REF[$key]=$REF_WALL; P1_RATIO[$key]=$ratio
    P1_CPU[$key]=$(calc "round(($w1-$w0)/$CLK_TCK/$N1*1000, 2)")
    echo "  uploading $N1 documents into tvdb took ${tu} s (not counted); load average before/after: $load0 / $load1"
    echo "  RESULT max_inflight=$M, $mode: tvdb $N1 documents in $wall s = $rate documents/s;" \
         "tvdb / reference = $wall / $REF_WALL = ${ratio}x (target <= 1.3x)"
    echo "  CPU over the run (% of one core): worker $(calc "round(($w1-$w0)/$CLK_TCK/$wall*100)")%," \
         "fake LlamaParse $(calc "round(($l1-$l0)/$CLK_TCK/$wall*100)")%," \
         "fake OpenAI $(calc "round(($o1-$o0)/$CLK_TCK/$wall*100)")%;" \
         "the worker was runnable but waiting for a CPU $(calc "round(($rq1-$rq0)/1e9/$wall*100)")% of the wall time;" \
         "worker CPU per document ${P1_CPU[$key]} ms"
    [ "$mode" = webhook ] && echo "  tvdb-webhookd CPU (its database sessions not included): $(calc "round(($d1-$d0)/$CLK_TCK/$wall*100)")%;" \
         "webhooks applied: $(q "SELECT count(*) FROM upload_pipeline.webhook_deliveries")"
    echo "  worker busy (on a CPU or waiting for one): $(calc "round((($w1-$w0)/$CLK_TCK + ($rq1-$rq0)/1e9)/$wall*100)")% of the wall time" \
         "(near 100%: the worker itself is the bottleneck, not max_inflight or the services)"
    report "$t0" "$tend" "$N1"
    if [ "$mode" = webhook ]; then
        lp_knobs '{"webhook": false}'
        psql -X -q -d postgres -c "ALTER SYSTEM SET tvdb.parse_webhook_url = ''" \
             -c "ALTER SYSTEM SET tvdb.poll_interval_min = '${POLL_MIN_MS}ms'" \
             -c "ALTER SYSTEM SET tvdb.poll_interval_max = '${POLL_MAX_MS}ms'" -c "SELECT pg_reload_conf()" >/dev/null
    fi
}
for M in $INFLIGHT; do phase1 "$M" poll; done
for M in $INFLIGHT_WH; do phase1 "$M" webhook; done

# ---------------------------------------------------------------- phase 2
echo
echo "== phase 2: $N2 documents, no latency, max_inflight = $INFLIGHT2"
psql -X -q -d postgres -c "ALTER SYSTEM SET tvdb.max_inflight = $INFLIGHT2" -c "SELECT pg_reload_conf()" >/dev/null
lp_knobs '{"parse_latency": 0}'; oa_knobs '{"latency": 0}'
clear_tables
reference r2 "$INFLIGHT2" "$N2" 0
P2_REF_WALL=$REF_WALL; P2_REF_RATE=$REF_RATE
sleep 0.5
load0=$(loadavg); w0=$(ticks "$WPID"); rq0=$(runq_ns "$WPID"); l0=$(ticks "$LP_PID"); o0=$(ticks "$OA_PID")
t0=$(upload_docs p2 1 "$N2")
perfdata=""
if [ "$PERF" = 1 ]; then
    perfdata=$(mktemp /tmp/tvdb-perf.XXXXXX)
    perf record -q -g -p "$WPID" -o "$perfdata" >/dev/null 2>&1 &
    PERF_PID=$!
fi
wait_settled || broke=1
if [ -n "$perfdata" ]; then
    kill -INT "$PERF_PID" 2>/dev/null || true; wait "$PERF_PID" 2>/dev/null || true
fi
w1=$(ticks "$WPID"); rq1=$(runq_ns "$WPID"); l1=$(ticks "$LP_PID"); o1=$(ticks "$OA_PID"); load1=$(loadavg)
check_worker
check_complete "$N2" || true
tend=$(q "SELECT extract(epoch FROM max(ts)) FROM upload_pipeline.events WHERE to_status IN ($TERMINAL)")
P2_WALL=$(calc "round($tend - $t0, 3)")
P2_RATE=$(calc "round($N2 / $P2_WALL, 1)")
P2_PATHS=$(q "SELECT count(*) FROM (SELECT job_id, string_agg(to_status, ',' ORDER BY seq) AS path
              FROM upload_pipeline.events WHERE to_status IS NOT NULL GROUP BY 1) s
              WHERE path = array_to_string($ORDER, ',')")
P2_CPU=$(calc "round(($w1-$w0)/$CLK_TCK/$P2_WALL*100)")
P2_CPU_DOC=$(calc "round(($w1-$w0)/$CLK_TCK/$N2*1000, 2)")
echo "  load average before/after: $load0 / $load1"
echo "  RESULT no latency: tvdb $N2 documents in $P2_WALL s = $P2_RATE documents/s (target >= 600)," \
     "the reference $P2_REF_RATE documents/s (tvdb / reference wall $(calc "round($P2_WALL / $P2_REF_WALL, 2)")x);" \
     "$P2_PATHS of $N2 went through exactly the nine states in order"
echo "  worker CPU per document $P2_CPU_DOC ms (target <= 1 ms);" \
     "worker CPU $P2_CPU% of a core, fake LlamaParse $(calc "round(($l1-$l0)/$CLK_TCK/$P2_WALL*100)")%," \
     "fake OpenAI $(calc "round(($o1-$o0)/$CLK_TCK/$P2_WALL*100)")%;" \
     "the worker was runnable but waiting for a CPU $(calc "round(($rq1-$rq0)/1e9/$P2_WALL*100)")% of the wall time"
echo "  worker busy (on a CPU or waiting for one): $(calc "round((($w1-$w0)/$CLK_TCK + ($rq1-$rq0)/1e9)/$P2_WALL*100)")% of the wall time"
report "$t0" "$tend" "$N2"
if [ -n "$perfdata" ]; then
    echo "  -- perf: the worker during phase 2, by shared object and by symbol (self time)"
    perf report -i "$perfdata" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -8 | sed 's/^/  /' || true
    perf report -i "$perfdata" --no-children --sort dso,symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -40 | sed 's/^/  /' || true
    echo "  -- perf: including callees, by symbol"
    perf report -i "$perfdata" --children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -60 | sed 's/^/  /' || true
    rm -f "$perfdata"
fi

# ---------------------------------------------------------------- phase 3
echo
echo "== phase 3: the worker's memory over $N3 documents (no latency, tvdb.max_inflight = $INFLIGHT2)"
rss() {  # VmRSS RssAnon RssFile RssShmem (kB)
    awk '/^(VmRSS|RssAnon|RssFile|RssShmem):/ {v[$1] = $2} END {print v["VmRSS:"], v["RssAnon:"], v["RssFile:"], v["RssShmem:"]}' \
        "/proc/$WPID/status"
}
memctx() {  # palloc'd memory of the worker, from pg_log_backend_memory_contexts(): "<TopMemoryContext used> <all contexts used>" (bytes)
    local before; before=$(grep -c "Grand total" "$WORK/server.log" || true)
    q "SELECT pg_log_backend_memory_contexts($WPID)" >/dev/null
    for _ in $(seq 1 60); do
        [ "$(grep -c "Grand total" "$WORK/server.log" || true)" -gt "$before" ] && break
        sleep 0.05
    done
    echo "$(grep "level: 0; TopMemoryContext:" "$WORK/server.log" | tail -1 | sed -n 's/.*; \([0-9]*\) used.*/\1/p')" \
         "$(grep "Grand total" "$WORK/server.log" | tail -1 | sed -n 's/.*; \([0-9]*\) used.*/\1/p')"
}
clear_tables
reset_fakes
sleep 1
read -r rss0 anon0 file0 shm0 < <(rss)
read -r top0 ctx0 < <(memctx)
echo "  before: VmRSS ${rss0} kB (anon ${anon0}, file ${file0}, shmem ${shm0});" \
     "palloc'd: TopMemoryContext ${top0:-?} B used, all contexts ${ctx0:-?} B used"
echo "  (VmRSS counts the shared buffers the worker has touched, RssShmem, which grows up to"
echo "   shared_buffers and is not the worker's own: RssAnon and palloc'd memory are the ones to watch)"
done_n=0
t_start=$(now_s)
P3_LINES=()
for at in $RSS_AT; do
    [ "$at" -le "$N3" ] || continue
    # upload in commits of 1000 so that the queue never holds more than that at once
    while [ "$done_n" -lt "$at" ]; do
        next=$((done_n + 1000)); [ "$next" -gt "$at" ] && next=$at
        upload_docs p3 $((done_n + 1)) "$next" >/dev/null
        wait_settled || { broke=1; break 2; }
        done_n=$next
    done
    check_worker
    read -r r a _ sh < <(rss)
    read -r top ctx < <(memctx)
    line="after $at: VmRSS $r kB ($(calc "$r - $rss0") vs before), RssAnon $a kB ($(calc "$a - $anon0")),"
    line+=" RssShmem $sh kB ($(calc "$sh - $shm0")); TopMemoryContext used ${top:-?} B ($(calc "${top:-0} - ${top0:-0}")),"
    line+=" all contexts used ${ctx:-?} B ($(calc "${ctx:-0} - ${ctx0:-0}")); $(calc "round($(now_s) - $t_start, 1)") s elapsed"
    echo "  $line"
    P3_LINES+=("$line")
done
if [ "$done_n" -gt 0 ] && [ -n "${top0:-}" ] && [ -n "${top:-}" ]; then
    echo "  palloc'd growth per document in TopMemoryContext: $(calc "round(($top - $top0) / $done_n)") B"
fi
check_complete "$done_n" || true
P3_RATE=$(calc "round($done_n / ($(now_s) - $t_start), 1)")
echo "  $done_n documents, $P3_RATE documents/s including the 1000-document upload commits"
echo "  load average at the end: $(loadavg)"

# ---------------------------------------------------------------- summary
echo
echo "== summary"
for key in $(printf '%s\n' "${!P1_RATE[@]}" | sort -k2,2 -k1,1n | tr ' ' '_'); do
    key=${key/_/ }
    echo "  parse latency ${PARSE_LATENCY} s, max_inflight=${key% *}, ${key#* }: tvdb ${P1_WALL[$key]} s," \
         "reference ${P1_REF[$key]} s: ${P1_RATIO[$key]}x (target <= 1.3x); ${P1_RATE[$key]} documents/s," \
         "worker CPU ${P1_CPU[$key]} ms per document"
done
echo "  no latency: tvdb $P2_RATE documents/s (target >= 600), reference $P2_REF_RATE; worker CPU $P2_CPU_DOC ms per document (target <= 1 ms)" \
     "($N2 documents, max_inflight=$INFLIGHT2)"
if [ "${#P3_LINES[@]}" -gt 0 ]; then
    echo "  memory: before VmRSS $rss0 kB, RssAnon $anon0 kB; ${P3_LINES[-1]}"
fi
if [ "$broke" -ne 0 ]; then echo "BROKEN: see above"; exit 1; fi
exit 0
