#!/usr/bin/env bash
# test/webhookd/run.sh — tvdb-webhookd end to end, with curl, against the real
# tvdb.handle_llamaparse_webhook(), tvdb.upload_with_token(), tvdb.health and
# tvdb.metrics(): every check asserts the HTTP status and what the database
# holds afterwards.  Prints one TAP-like line per check.  The daemon logs in
# as a role that is only granted tvdb_webhook and tvdb_monitor.
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
ROLE=tvdb_webhookd_test
SECRET=tvdb-test-secret
MAX_BODY=65536
MAX_UPLOAD=100000
HOOK=/api/v1/webhooks/llamaparse
HEALTH=/api/v1/webhooks/health
UPLOAD=/api/v1/upload
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
field() { "$PYTHON" -c 'import json,sys; v = json.load(open(sys.argv[1])).get(sys.argv[2]); print("" if v is None else v)' "$WORK/body" "$1"; }
# No worker serves this database (the workers serve tvdb_worker): tvdb.health
# says down, 503; the database itself is up.
database_up() { health >/dev/null; [ "$(field database 2>/dev/null)" = up ]; }
wait_health() {                  # wait_health SECONDS: until health finds the database up
    local i
    for ((i = 0; i < $1 * 10; i++)); do
        database_up && return 0
        sleep 0.1
    done
    return 1
}
upload() {                       # upload TOKEN [CURL ARGS...]: POST a form with a bearer token
    local token=$1
    shift
    request POST "$UPLOAD" -H "Authorization: Bearer $token" "$@"
}
documents() { sql "SELECT count(*) FROM upload_pipeline.documents"; }

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
    sql "CREATE ROLE $ROLE LOGIN; GRANT tvdb_webhook, tvdb_monitor TO $ROLE"
} >/dev/null || { echo "Bail out! could not set up database $DB"; exit 1; }

PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
TVDB_WEBHOOKD_MAX_UPLOAD=$MAX_UPLOAD "$DAEMON" --listen 127.0.0.1 --port "$PORT" --max-body "$MAX_BODY" --timeout 10 --pool 4 \
    --dsn "host=$PGHOST port=$PGPORT dbname=$DB user=$ROLE" 2>"$WORK/daemon.log" &
DAEMON_PID=$!
if ! wait_health 10; then
    echo "Bail out! tvdb-webhookd did not reach the database"
    cat "$WORK/daemon.log"
    exit 1
fi
echo "# tvdb-webhookd pid $DAEMON_PID on $URL, as role $ROLE"

# ---- checks ------------------------------------------------------------------
check "health: 503, down (no worker serves this database), database up" eq \
    "$(health) $(field status) $(field database) $(field workers)" "503 down up 0"
check "  the reason names tvdb.database" eq "$(field reason)" \
    "no tvdb worker: tvdb.database is $(sql "SHOW tvdb.database"), not this database ($DB)"
check "GET /health: the same tvdb.health" eq "$(request GET /health) $(field status) $(field backlog)" "503 down 0"

new_job first
sha=$(helper payload "$JOB" "$DOC" parsed "$WORK/first.json")
check "genuine parsed callback: 200 applied" eq "$(deliver "$WORK/first.json") $(result)" "200 applied"
check "  job is parsed, one parse_completed event" eq "$(job_status "$JOB") $(events "$JOB" parse_completed)" "parsed 1"
check "  markdown stored at storage://parsed/{document_id}/{job_id}.md" eq \
    "$(sql "SELECT sha256 = '$sha' AND encode(sha256(content), 'hex') = '$sha'
                   AND convert_from(content, 'UTF8') LIKE '# Title%'
            FROM upload_pipeline.blobs WHERE path = 'storage://parsed/$DOC/$JOB.md'")" t
before=$(events "$JOB")
# (the line is written when the connection is done with, just after the answer)
line="POST $HOOK 200 .* job=$JOB correlation=$(sql "SELECT correlation_id FROM upload_pipeline.upload_jobs WHERE job_id = '$JOB'")"
for _ in $(seq 1 30); do grep -q "$line" "$WORK/daemon.log" && break; sleep 0.1; done
check "  the daemon's line names the job and its correlation id" eq "$(grep -c "$line" "$WORK/daemon.log")" 1
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
check "  job unchanged, daemon answering" eq "$(job_status "$JOB") $(events "$JOB") $(database_up && echo up)" "parse_queued $before up"

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
check "client hanging up mid-body: daemon still answering" database_up
check "unknown path: 404" eq "$(request GET /api/v1/nope) $(result)" "404 not_found"
check "GET on the webhook path: 405 with Allow: POST" eq \
    "$(request GET "$HOOK") $(tr -d '\r' <"$WORK/headers" | grep -i '^allow:')" "405 Allow: POST"
check "POST on the health path: 405" eq "$(request POST "$HEALTH" --data-binary x)" 405

# ---- metrics -----------------------------------------------------------------
code=$(request GET /metrics)
check "GET /metrics: 200, Prometheus text 0.0.4" eq \
    "$code $(tr -d '\r' <"$WORK/headers" | grep -i '^content-type:')" \
    "200 Content-Type: text/plain; version=0.0.4; charset=utf-8"
check "  every line is a HELP, a TYPE or a sample" eq "$("$PYTHON" "$HERE/webhook.py" check-metrics "$WORK/body")" ok
check "  jobs by status as the database counts them" eq \
    "$(grep -E '^tvdb_jobs\{status="(parsed|failed_parse)"\} ' "$WORK/body" | tr '\n' ' ')" \
    "$(sql "SELECT string_agg(format('tvdb_jobs{status=\"%s\"} %s ', status, jobs), '' ORDER BY ordinal)
            FROM tvdb.pipeline_status JOIN tvdb.statuses USING (status) WHERE status IN ('parsed', 'failed_parse')")"
check "  a stage latency histogram ends in +Inf, _sum, _count" eq \
    "$(grep -c '^tvdb_stage_duration_seconds_bucket{stage="parse_queued",le="+Inf"} ' "$WORK/body") $(grep -c '^tvdb_stage_duration_seconds_\(sum\|count\){stage="parse_queued"} ' "$WORK/body")" "1 2"
check "  health, circuits and ledger are there" eq \
    "$(grep -c '^tvdb_health{status="down"} 1$\|^tvdb_circuit_state{service="openai",state="closed"} \|^tvdb_service_requests_total{service="llamaparse"} ' "$WORK/body")" 3
check "POST /metrics: 405 with Allow: GET, HEAD" eq \
    "$(request POST /metrics --data-binary x) $(tr -d '\r' <"$WORK/headers" | grep -i '^allow:')" "405 Allow: GET, HEAD"

# ---- uploads -----------------------------------------------------------------
TOKEN=$(sql "SELECT tvdb.create_api_token('webhookd-test')")
head -c 5000 /dev/urandom >"$WORK/scan.pdf"
before=$(documents)
code=$(upload "$TOKEN" -F "file=@$WORK/scan.pdf;type=application/pdf")
JOB=$(field job_id)
check "upload: 201 created with job_id and correlation_id" eq "$code $(field result) $(field http_status)" "201 created 201"
check "  the document: its name, type and exact bytes, its job uploaded, the correlation id" eq \
    "$(sql "SELECT d.filename, d.mime_type, d.sha256, j.status, j.correlation_id
            FROM upload_pipeline.upload_jobs j JOIN upload_pipeline.documents d USING (document_id)
            WHERE j.job_id = '$JOB'" | tr '|' ' ')" \
    "scan.pdf application/pdf $(sha256sum "$WORK/scan.pdf" | cut -c1-64) uploaded $(field correlation_id)"
printf '# Notes\n\nplain markdown\n' >"$WORK/notes.md"
check "upload with other form fields around the file: 201" eq \
    "$(upload "$TOKEN" -F note=hello -F "file=@$WORK/notes.md;type=text/markdown" -F more=1) $(documents)" "201 $((before + 2))"
before=$(documents)
code=$(request POST "$UPLOAD" -F "file=@$WORK/notes.md")
check "no Authorization header: 401 with WWW-Authenticate: Bearer" eq \
    "$code $(field result) $(tr -d '\r' <"$WORK/headers" | grep -i '^www-authenticate:')" \
    '401 unauthorized WWW-Authenticate: Bearer realm="tvdb"'
# the token with its last hex digit changed (to one it is not)
code=$(upload "${TOKEN%?}$([ "${TOKEN: -1}" = 0 ] && echo 1 || echo 0)" -F "file=@$WORK/notes.md")
check "a wrong token: 401, invalid_token" eq \
    "$code $(tr -d '\r' <"$WORK/headers" | grep -i '^www-authenticate:')" \
    '401 WWW-Authenticate: Bearer realm="tvdb", error="invalid_token"'
check "Basic instead of Bearer: 401" eq \
    "$(request POST "$UPLOAD" -u user:pass -F "file=@$WORK/notes.md")" 401
check "  nothing stored, the token not in the log" eq "$(documents) $(grep -c -- "$TOKEN" "$WORK/daemon.log")" "$before 0"
check "not multipart: 400" eq \
    "$(upload "$TOKEN" -H 'Content-Type: application/json' --data-binary '{"file": "x"}') $(field result)" "400 bad_request"
check "no part named file: 400" eq \
    "$(upload "$TOKEN" -F "document=@$WORK/notes.md") $(field detail)" '400 the form has no part named "file"'
check "two file parts: 400" eq \
    "$(upload "$TOKEN" -F "file=@$WORK/notes.md" -F "file=@$WORK/scan.pdf") $(field result)" "400 bad_request"
check "a file part with no filename: 400" eq \
    "$(upload "$TOKEN" -F "file=<$WORK/notes.md") $(field detail)" '400 the "file" part has no filename'
printf -- '--XYZ\r\nContent-Disposition: form-data; name="file"; filename="a.md"\r\n\r\nno closing boundary' >"$WORK/broken"
check "malformed multipart (no closing boundary): 400" eq \
    "$(upload "$TOKEN" -H 'Content-Type: multipart/form-data; boundary=XYZ' --data-binary @"$WORK/broken") $(field result)" \
    "400 bad_request"
check "a filename with a path: 400 from tvdb.upload's checks" eq \
    "$(upload "$TOKEN" -F "file=@$WORK/notes.md;filename=../etc/passwd") $(field result)" "400 bad_request"
printf -- '--XYZ\r\nContent-Disposition: form-data; name="file"; filename="a.md"\r\nContent-Type: text\r\n\r\nx\r\n--XYZ--\r\n' >"$WORK/notype"
check "a part Content-Type that is no media type: 400" eq \
    "$(upload "$TOKEN" -H 'Content-Type: multipart/form-data; boundary=XYZ' --data-binary @"$WORK/notype") $(field detail)" \
    "400 invalid mime_type: it is not type/subtype, each a token"
check "an empty file: 400" eq "$(upload "$TOKEN" -F "file=@/dev/null;filename=empty.md") $(field result)" "400 bad_request"
head -c $((MAX_UPLOAD + 1)) /dev/zero | tr '\0' 'x' >"$WORK/big.md"
check "a file over --max-upload (from the environment): 413" eq \
    "$(upload "$TOKEN" -F "file=@$WORK/big.md") $(field result)" "413 payload_too_large"
check "  the same, chunked: 413" eq \
    "$(upload "$TOKEN" -H 'Transfer-Encoding: chunked' -F "file=@$WORK/big.md") $(field result)" "413 payload_too_large"
head -c $((MAX_UPLOAD + 70000)) /dev/zero | tr '\0' 'x' >"$WORK/bigger.md"
check "  a declared length far over it: 413 before the body is read" eq \
    "$(upload "$TOKEN" -F "file=@$WORK/bigger.md") $(field result)" "413 payload_too_large"
head -c "$MAX_UPLOAD" /dev/zero | tr '\0' 'y' >"$WORK/limit.md"
check "  a file of exactly --max-upload: 201" eq "$(upload "$TOKEN" -F "file=@$WORK/limit.md") $(documents)" "201 $((before + 1))"
check "GET on the upload path: 405 with Allow: POST" eq \
    "$(request GET "$UPLOAD") $(tr -d '\r' <"$WORK/headers" | grep -i '^allow:')" "405 Allow: POST"
sql "SELECT tvdb.revoke_api_token('webhookd-test')" >/dev/null
check "a revoked token: 401" eq "$(upload "$TOKEN" -F "file=@$WORK/notes.md")" 401
check "  the daemon's log never shows a token" eq "$(grep -c -- "$TOKEN" "$WORK/daemon.log")" 0

if [ -n "${TVDB_PGDATA:-}" ]; then
    pg_ctl() { as_pg "$BINDIR/pg_ctl" -D "$TVDB_PGDATA" -l "$(dirname "$TVDB_PGDATA")/server.log" -w -t 60 "$@" >/dev/null; }
    pg_ctl restart -m fast
    check "database restart: health recovers" wait_health 30
    new_job restarted
    helper payload "$JOB" "$DOC" parsed "$WORK/restarted.json" >/dev/null
    check "  then a delivery succeeds" eq "$(deliver "$WORK/restarted.json") $(job_status "$JOB")" "200 parsed"

    pg_ctl stop -m fast
    check "database down: health 503 down" eq \
        "$(health) $("$PYTHON" -c 'import json,sys; d = json.load(open(sys.argv[1])); print(d["status"], d["database"], bool(d["detail"]))' "$WORK/body")" \
        "503 down down True"
    check "database down: metrics 503" eq "$(request GET /metrics) $(result)" "503 database_unavailable"
    check "database down: webhook 503" eq "$(deliver "$WORK/restarted.json") $(result)" "503 database_unavailable"
    pg_ctl start
    check "database back: health finds it up" wait_health 30
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
