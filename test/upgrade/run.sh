#!/usr/bin/env bash
# ALTER EXTENSION tvdb UPDATE from the released 0.1.0 (extension/frozen) to
# the current version, on a database with documents in flight.  While the
# database is at 0.1.0 the workers wait for it; after the update its
# catalog (test/upgrade/catalog.sql: every member, column, constraint,
# index, trigger, privilege and comment) equals a fresh install's, and the
# pipeline completes every document, old and new.  Starts and stops its own
# cluster.  Prints TAP.
set -uo pipefail
source "$(dirname "$0")/../../scripts/common.sh"
source "$(dirname "$0")/../lib/tap.sh"
cd "$TVDB_ROOT"
WORK=$(mktemp -d /tmp/tvdb-upgrade-test.XXXXXX)
DB=tvdb_up
CURRENT=$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" tvdb.control)

q() { local db=$1; shift; psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" -c "$1"; }
cleanup() { tvdb_cluster_stop; rm -rf "$WORK"; }
trap cleanup EXIT
trap "exit 1" TERM INT

tvdb_cluster_start "tvdb.database = '$DB'" "tvdb.workers = 2" "tvdb.service_mode = 'mock'" "tvdb.job_retry_delay = 0" \
                   "tvdb.webhook_secrets = 'upgrade-test-secret'" >/dev/null || exit 1
psql -X -q -d postgres -c "CREATE DATABASE $DB" -c "CREATE DATABASE tvdb_fresh"
q $DB "SET client_min_messages = error; CREATE EXTENSION tvdb VERSION '0.1.0' CASCADE"
q tvdb_fresh "SET client_min_messages = error; CREATE EXTENSION tvdb CASCADE"
is "$(q $DB "SELECT extversion FROM pg_extension WHERE extname = 'tvdb'") $(q tvdb_fresh "SELECT extversion FROM pg_extension WHERE extname = 'tvdb'")" \
   "0.1.0 $CURRENT" "one database at 0.1.0, one fresh at $CURRENT"

# Work in flight under 0.1.0: documents waiting, one failed with its alert,
# a budget. The workers (this library is $CURRENT) leave the database alone.
q $DB "SELECT count(tvdb.upload(format('doc-%s.md', i),
         convert_to(repeat(format(E'# Section %s\n\nWords of document %s.\n\n', i, i), 20), 'UTF8')))
       FROM generate_series(1, 8) i" >/dev/null
q $DB "SELECT tvdb.set_budget('openai', 'day', 10)" >/dev/null
q $DB "SELECT tvdb.transition(job_id, 'failed_parse', '{\"error\": \"parser gave up\", \"class\": \"retries_exhausted\"}')
       FROM upload_pipeline.upload_jobs j JOIN upload_pipeline.documents d USING (document_id)
       WHERE d.filename = 'doc-8.md'" >/dev/null
# Three forged webhook deliveries: 0.1.0 records an event for each.
for i in 1 2 3; do
    q $DB "SELECT tvdb.handle_llamaparse_webhook(convert_to('{\"job_id\": \"x\"}', 'UTF8'),
                                                 '{\"X-Webhook-Signature\": \"sha256=00\"}') ->> 'http_status'" >/dev/null
done
is "$(q $DB "SELECT count(*) FROM upload_pipeline.events WHERE code = 'webhook_signature_invalid' AND document_id IS NULL")" 3 \
   "0.1.0 (on the new library) writes an event for each refused delivery"
for _ in $(seq 1 60); do
    grep -q "database \"$DB\" has tvdb 0.1.0" "$TVDB_CLUSTER_DIR/server.log" && break; sleep 0.5
done
is "$(grep -c "tvdb worker waits: database \"$DB\" has tvdb 0.1.0, this library is $CURRENT" "$TVDB_CLUSTER_DIR/server.log" | tr -d ' ' | sed 's/^[1-9][0-9]*$/logged/')" \
   logged "the workers say they wait for the update"
is "$(q $DB "SELECT string_agg(status || ':' || n, ' ' ORDER BY status)
             FROM (SELECT status, count(*) n FROM upload_pipeline.upload_jobs GROUP BY status) s")" \
   "failed_parse:1 uploaded:7" "nothing moved while the database is at 0.1.0"

q $DB "ALTER EXTENSION tvdb UPDATE"
is "$(q $DB "SELECT extversion FROM pg_extension WHERE extname = 'tvdb'")" "$CURRENT" "ALTER EXTENSION tvdb UPDATE"
is "$(q $DB "SELECT sum(refused) || ' ' || max(signature_headers::text) FROM upload_pipeline.webhook_refusals") \
$(q $DB "SELECT count(*) FROM upload_pipeline.events WHERE document_id IS NULL")" "3 {x-webhook-signature} 0" \
   "the update counts 0.1.0's refused deliveries per minute and keeps no event without a document"
is "$(q $DB "SELECT count(*) FROM upload_pipeline.blobs b JOIN upload_pipeline.documents d
             ON d.document_id = b.document_id AND d.storage_path = b.path")" 8 \
   "every blob of 0.1.0 now names its document"
psql -X -q -At -v ON_ERROR_STOP=1 -d $DB -f test/upgrade/catalog.sql > "$WORK/upgraded.txt"
psql -X -q -At -v ON_ERROR_STOP=1 -d tvdb_fresh -f test/upgrade/catalog.sql > "$WORK/fresh.txt"
is "$(diff "$WORK/fresh.txt" "$WORK/upgraded.txt" > "$WORK/diff.txt" && echo equal || { sed 's/^/# /' "$WORK/diff.txt" | head -60 >&2; echo differ; })" \
   equal "the upgraded catalog equals a fresh install's ($(wc -l < "$WORK/fresh.txt" | tr -d ' ') lines)"
is "$(grep -c '^function ' "$WORK/fresh.txt" | tr -d ' ' | sed 's/^[0-9]\{2,\}$/many/')" many \
   "(the description is not empty: it lists the functions)"

# The pipeline goes on: the waiting documents and the retried one complete.
q $DB "SELECT tvdb.retry_failed()" >/dev/null
for _ in $(seq 1 120); do
    [ "$(q $DB "SELECT count(*) FROM upload_pipeline.upload_jobs WHERE status <> 'complete'")" = 0 ] && break; sleep 0.5
done
q $DB "SELECT tvdb.upload('after.md', convert_to(E'# After\n\nUploaded after the update.', 'UTF8'))" >/dev/null
for _ in $(seq 1 60); do
    [ "$(q $DB "SELECT count(*) FROM upload_pipeline.upload_jobs WHERE status <> 'complete'")" = 0 ] && break; sleep 0.5
done
is "$(q $DB "SELECT count(*) FILTER (WHERE status = 'complete') || '/' || count(*) FROM upload_pipeline.upload_jobs")" \
   "9/9" "after the update every document completes, old and new"
is "$(q $DB "SELECT count(*) FROM upload_pipeline.document_chunks WHERE embedding IS NULL") \
$(q $DB "SELECT count(DISTINCT document_id) FROM upload_pipeline.document_chunks")" "0 9" "every document chunked and embedded"

tap_done
