#!/usr/bin/env bash
# test/webhookd/run.sh — tvdb-webhookd end to end, with curl, against the real
# tvdb.handle_llamaparse_webhook(): every check asserts the HTTP status and
# what the database holds afterwards.  Prints one TAP-like line per check.
#
# Needs a running cluster with tvdb installed and preloaded, PGHOST / PGPORT /
# PGUSER (a superuser) exported, 'tvdb-test-secret' among tvdb.webhook_secrets,
# and TVDB_PGDATA for the database-restart checks (skipped without it).  Runs
# as root (the cluster is then controlled as postgres) or as the cluster owner.
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BINDIR=$("${PG_CONFIG:-pg_config}" --bindir)
DAEMON=${TVDB_WEBHOOKD_BIN:-$BINDIR/tvdb-webhookd}   # override to test another build
DB=tvdb_webhookd
ROLE=tvdb_regress_webhookd   # a login role granted tvdb_webhook, as the README says
SECRET=tvdb-test-secret
MAX_BODY=65536
HOOK=/api/v1/webhooks/llamaparse
HEALTH=/api/v1/webhooks/health
WORK=$(mktemp -d /tmp/tvdb-webhookd-test.XXXXXX)
DAEMON_PID=

as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
psql_db() { PGOPTIONS="-c client_min_messages=warning" "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -At -d "$@"; }
sql() { psql_db "$DB" -c "$1"; }
# The system python3 first: a version-manager shim costs half a second a call.
PYTHON=$(command -v /usr/bin/python3 || command -v python3)
helper() { "$PYTHON" "$HERE/webhook.py" "$@"; }

cleanup() {
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID"
        wait "$DAEMON_PID" 2>/dev/null
    fi
    psql_db postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
    psql_db postgres -c "DROP ROLE IF EXISTS $ROLE" >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT

# ---- TAP-like reporting ------------------------------------------------------
n=0
failed=0
check() {                        # check DESCRIPTION COMMAND [ARGS...]
    local desc=$1
    shift
    n=$((n + 1))
    if "$@"; then
        echo "ok $n - $desc"
    else
        echo "not ok $n - $desc"
        failed=$((failed + 1))
    fi
}
eq() {                           # eq GOT EXPECTED
    [ "$1" = "$2" ] && return 0
    echo "#   got:      $1"
    echo "#   expected: $2"
    return 1
}
all() {                          # all EXPECTED FILE: every line of FILE is EXPECTED
    local bad
    bad=$(grep -cvx -- "$1" "$2")
    [ "$bad" -eq 0 ] && [ -s "$2" ] && return 0
    echo "#   $bad of $(wc -l <"$2") responses were not $1: $(sort "$2" | uniq -c | tr -s ' \n' ' ')"
    return 1
}

# ---- HTTP --------------------------------------------------------------------
# Each prints the status code and leaves the body in $WORK/body, headers in $WORK/headers.
request() {                      # request METHOD PATH [CURL ARGS...]
    local method=$1 path=$2
    shift 2
    curl -s --max-time 30 -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' \
        -X "$method" "$@" "$URL$path"
}
deliver() {                      # deliver FILE [CURL ARGS...]: POST it, signed (FILE.sig if there)
    local file=$1
    shift
    local sig
    sig=$(cat "$file.sig" 2>/dev/null || helper sign "$SECRET" "$file")
    request POST "$HOOK" -H 'Content-Type: application/json' \
        -H "X-Webhook-Signature: $sig" --data-binary @"$file" "$@"
}
result() { sed -n 's/.*"result": *"\([a-z_]*\)".*/\1/p' "$WORK/body"; }
health() { request GET "$HEALTH"; }
wait_health() {                  # wait_health SECONDS: until health answers 200
    local i
    for ((i = 0; i < $1 * 10; i++)); do
        [ "$(health)" = 200 ] && return 0
        sleep 0.1
    done
    return 1
}

# ---- jobs --------------------------------------------------------------------
new_job() {                      # new_job NAME: a job in parse_queued; sets JOB, DOC
    JOB=$(sql "SELECT tvdb.upload('$1.pdf', convert_to('bytes of $1', 'UTF8'))")
    sql "SELECT tvdb.transition('$JOB', 'parse_queued')" >/dev/null
    DOC=$(sql "SELECT document_id FROM upload_pipeline.upload_jobs WHERE job_id = '$JOB'")
}
job_status() { sql "SELECT status FROM upload_pipeline.upload_jobs WHERE job_id = '$1'"; }
events() { sql "SELECT count(*) FROM upload_pipeline.events WHERE job_id = '$1' ${2:+AND code = '$2'}"; }
forgeries() { sql "SELECT coalesce(sum(refused), 0) FROM upload_pipeline.webhook_refusals"; }

# ---- setup -------------------------------------------------------------------
[ -x "$DAEMON" ] || { echo "Bail out! $DAEMON is not installed (make install)"; exit 1; }
{
    psql_db postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" &&
    psql_db postgres -c "DROP ROLE IF EXISTS $ROLE" &&
    psql_db postgres -c "CREATE DATABASE $DB" &&
    sql "CREATE EXTENSION tvdb CASCADE" &&
    sql "CREATE ROLE $ROLE LOGIN IN ROLE tvdb_webhook"
} >/dev/null || { echo "Bail out! could not set up database $DB"; exit 1; }

PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
"$DAEMON" --listen 127.0.0.1 --port "$PORT" --max-body "$MAX_BODY" --timeout 10 --pool 4 \
    --dsn "host=$PGHOST port=$PGPORT dbname=$DB user=$ROLE" 2>"$WORK/daemon.log" &
DAEMON_PID=$!
if ! wait_health 10; then
    echo "Bail out! tvdb-webhookd did not become healthy"
    cat "$WORK/daemon.log"
    exit 1
fi
echo "# tvdb-webhookd pid $DAEMON_PID on $URL, as role $ROLE"

# ---- checks ------------------------------------------------------------------
check "health: 200 and database up" eq "$(health) $(cat "$WORK/body")" \
    '200 {"status":"ok","database":"up"}'

new_job first
sha=$(helper payload "$JOB" "$DOC" parsed "$WORK/first.json")
check "genuine parsed callback: 200 applied" eq "$(deliver "$WORK/first.json") $(result)" "200 applied"
check "  job is parsed, one parse_completed event" eq "$(job_status "$JOB") $(events "$JOB" parse_completed)" "parsed 1"
check "  markdown stored at storage://parsed/{document_id}/{job_id}.md" eq \
    "$(sql "SELECT sha256 = '$sha' AND encode(sha256(content), 'hex') = '$sha'
                   AND convert_from(content, 'UTF8') LIKE '# Title%'
            FROM upload_pipeline.blobs WHERE path = 'storage://parsed/$DOC/$JOB.md'")" t
before=$(events "$JOB")
check "same delivery again: 200 duplicate" eq "$(deliver "$WORK/first.json") $(result)" "200 duplicate"
check "  no second event" eq "$(events "$JOB") $(events "$JOB" parse_completed)" "$before 1"

# What LlamaParse sends: an unsigned push, to the callback URL tvdb handed
# out; the query (job and token) reaches the database with the body.
new_job pushed
token=$("$PYTHON" -c 'import base64, hashlib, hmac, sys
print(base64.urlsafe_b64encode(hmac.new(sys.argv[1].encode(), b"tvdb-callback-v1:" + sys.argv[2].encode(), hashlib.sha256).digest()).decode().rstrip("="))' "$SECRET" "$JOB")
printf '{"txt": "Pushed.", "md": "# Pushed\\n\\nBy LlamaParse.", "json": [{"page": 1, "text": "Pushed.", "md": "# Pushed", "images": []}], "images": []}' >"$WORK/push.json"
code=$(request POST "$HOOK?job=$JOB&token=$token" -H 'Content-Type: application/json' --data-binary @"$WORK/push.json")
check "LlamaParse push at ?job=&token=: 200 applied, job parsed" eq "$code $(result) $(job_status "$JOB")" "200 applied parsed"
# the token with its last character changed (to one it is not: 1 time in 64 it ended in A)
wrong=${token%?}$([ "${token: -1}" = A ] && echo B || echo A)
code=$(request POST "$HOOK?job=$JOB&token=$wrong" -H 'Content-Type: application/json' --data-binary @"$WORK/push.json")
check "  the same push with a wrong token: 401" eq "$code $(result)" "401 unauthorized"
check "  the daemon's log does not show the token" eq "$(grep -c -- "$token" "$WORK/daemon.log")" 0

new_job forged
helper payload "$JOB" "$DOC" parsed "$WORK/forged.json" >/dev/null
forged_before=$(forgeries)
before=$(events "$JOB")
code=$(request POST "$HOOK" --data-binary @"$WORK/forged.json" \
    -H "X-Webhook-Signature: sha256=$(printf '0%.0s' {1..64})")
check "bad signature: 401" eq "$code $(result)" "401 unauthorized"
code=$(request POST "$HOOK" --data-binary @"$WORK/forged.json" \
    -H "X-Webhook-Signature: $(helper sign wrong-secret "$WORK/forged.json")")
check "signature made with another key: 401" eq "$code" 401
check "missing signature: 401" eq "$(request POST "$HOOK" --data-binary @"$WORK/forged.json") $(result)" \
    "401 unauthorized"
check "  job unchanged, no job event, three security events" eq \
    "$(job_status "$JOB") $(events "$JOB") $(forgeries)" "parse_queued $before $((forged_before + 3))"

new_job concurrent
helper payload "$JOB" "$DOC" parsed "$WORK/concurrent.json" >/dev/null
sig=$(helper sign "$SECRET" "$WORK/concurrent.json")
mkdir "$WORK/c"
# One curl process making all 50 requests at once, each on its own connection.
copies=()
for i in $(seq -w 1 50); do
    copies+=(-s --max-time 30 -o "$WORK/c/$i" -w '%{http_code}\n' -X POST \
             -H "X-Webhook-Signature: $sig" --data-binary @"$WORK/concurrent.json" "$URL$HOOK" --next)
done
curl --no-progress-meter --parallel --parallel-immediate --parallel-max 50 "${copies[@]:0:${#copies[@]}-1}" >"$WORK/c.codes"
check "50 concurrent copies of one callback: all 200" all 200 "$WORK/c.codes"
check "  one applied, 49 duplicate" eq \
    "$(grep -l '"applied"' "$WORK"/c/* | wc -l) $(grep -l '"duplicate"' "$WORK"/c/* | wc -l)" "1 49"
check "  exactly one parse_completed event, job parsed" eq \
    "$(events "$JOB" parse_completed) $(job_status "$JOB")" "1 parsed"

new_job garbage
helper payload "$JOB" "$DOC" parsed "$WORK/genuine.json" >/dev/null
before=$(events "$JOB")
mkdir "$WORK/g"
helper garbage "$SECRET" "$WORK/genuine.json" "$WORK/g"
: >"$WORK/g.codes"
for f in "$WORK"/g/garbage-??; do deliver "$f" >>"$WORK/g.codes"; echo >>"$WORK/g.codes"; done
check "$(ls "$WORK"/g/garbage-?? | wc -l) random and truncated bodies, correctly signed: 400 each" all 400 "$WORK/g.codes"
check "  job unchanged, daemon healthy" eq "$(job_status "$JOB") $(events "$JOB") $(health)" "parse_queued $before 200"

new_job failed
helper payload "$JOB" "$DOC" failed "$WORK/failed.json" >/dev/null
check "genuine failed callback: 200, job failed_parse with the error" eq \
    "$(deliver "$WORK/failed.json") $(sql "SELECT status || ': ' || last_error FROM upload_pipeline.upload_jobs WHERE job_id = '$JOB'")" \
    "200 failed_parse: unsupported file format"

new_job odd
helper payload "$JOB" "$DOC" parsed "$WORK/odd.json" >/dev/null
check "control characters, bad UTF-8, repeated headers: still 200" eq \
    "$(helper odd-headers "$PORT" "$WORK/odd.json" "$(helper sign "$SECRET" "$WORK/odd.json")") $(job_status "$JOB")" \
    "200 parsed"

head -c $((MAX_BODY + 1)) /dev/zero | tr '\0' 'x' >"$WORK/big"
forged_before=$(forgeries)
check "body over --max-body (Content-Length): 413" eq \
    "$(request POST "$HOOK" --data-binary @"$WORK/big") $(result)" "413 payload_too_large"
check "body over --max-body (chunked): 413" eq \
    "$(request POST "$HOOK" -H 'Transfer-Encoding: chunked' --data-binary @"$WORK/big") $(result)" \
    "413 payload_too_large"
check "  the database was not called" eq "$(forgeries)" "$forged_before"

helper abort "$PORT"
check "client hanging up mid-body: daemon still healthy" eq "$(health)" 200
check "unknown path: 404" eq "$(request GET /api/v1/nope) $(result)" "404 not_found"
check "GET on the webhook path: 405 with Allow: POST" eq \
    "$(request GET "$HOOK") $(tr -d '\r' <"$WORK/headers" | grep -i '^allow:')" "405 Allow: POST"
check "POST on the health path: 405" eq "$(request POST "$HEALTH" --data-binary x)" 405

if [ -n "${TVDB_PGDATA:-}" ]; then
    pg_ctl() { as_pg "$BINDIR/pg_ctl" -D "$TVDB_PGDATA" -l "$(dirname "$TVDB_PGDATA")/server.log" -w -t 60 "$@" >/dev/null; }
    pg_ctl restart -m fast
    check "database restart: health recovers" wait_health 30
    new_job restarted
    helper payload "$JOB" "$DOC" parsed "$WORK/restarted.json" >/dev/null
    check "  then a delivery succeeds" eq "$(deliver "$WORK/restarted.json") $(job_status "$JOB")" "200 parsed"

    pg_ctl stop -m fast
    check "database down: health 503 degraded" eq \
        "$(health) $("$PYTHON" -c 'import json,sys; d = json.load(open(sys.argv[1])); print(d["status"], d["database"], bool(d["detail"]))' "$WORK/body")" \
        "503 degraded down True"
    check "database down: webhook 503" eq "$(deliver "$WORK/restarted.json") $(result)" "503 database_unavailable"
    pg_ctl start
    check "database back: health 200" wait_health 30
else
    echo "ok $((n += 1)) - database restart # SKIP TVDB_PGDATA is not set"
fi

kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID"
rc=$?
DAEMON_PID=
check "SIGTERM: daemon exits 0" eq "$rc $(tail -n 1 "$WORK/daemon.log" | sed 's/.*: //')" "0 stopped"

if [ "$failed" -ne 0 ]; then
    echo "# ---- tvdb-webhookd log"
    sed 's/^/# /' "$WORK/daemon.log"
fi
echo "1..$n"
echo "# $((n - failed)) of $n webhookd checks passed"
[ "$failed" -eq 0 ]
