#!/usr/bin/env bash
# Several databases: one cluster whose tvdb.database lists four names -- two
# databases with tvdb (one named with a space, so quoted), a third without
# the extension, and a fourth that does not exist yet. Two workers serve
# each. Mock mode first: documents in both complete, each database's by its
# own workers, and a commit in B wakes none of A's idle workers; a document
# in B completes while A's workers are stuck behind a lock and A's backlog
# waits, and before A's backlog of several hundred documents drains. Then
# real mode against the fake OpenAI: missing keys, a budget in A (holding
# only A's documents), a blocked circuit (shared by both) and a version
# mismatch show in tvdb.jobs.waiting_for; a worker killed with requests in
# flight loses nothing in either database. The database without the
# extension and the missing one break nothing, and the missing one is served
# once it is created. Starts and stops its own cluster. Prints TAP; exits
# non-zero on any failure.
set -uo pipefail
source "$(dirname "$0")/../../scripts/common.sh"
source "$(dirname "$0")/../lib/tap.sh"
cd "$TVDB_ROOT"
A=tvdb_multi_a
B="tvdb multi b"
C=tvdb_multi_c
D=tvdb_multi_later
WORK=$(mktemp -d /tmp/tvdb-multidb-test.XXXXXX)

qd() { local db=$1; shift; psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" -c "$1"; }
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    tvdb_cluster_stop; rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 1" TERM INT

wait_ready() {
    for _ in $(seq 1 120); do pg_isready -q && qd "$A" "select 1" >/dev/null 2>&1 && return 0; sleep 0.5; done
    return 1
}
unfinished() {  # unfinished <db> <filename prefix>
    qd "$1" "select count(*) from tvdb.jobs where filename like '$2%'
             and status not in ('complete', 'failed_parse', 'failed_chunking', 'failed_embedding')"
}
wait_settled() {  # wait_settled <db> <filename prefix> [half-seconds]
    for _ in $(seq 1 "${3:-240}"); do
        [ "$(unfinished "$1" "$2" 2>/dev/null)" = 0 ] && return 0
        sleep 0.5
    done
    echo "# still in flight in $1: $(unfinished "$1" "$2")"
    return 1
}
workers_in() {  # the workers connected to a database
    qd postgres "select count(*) from pg_stat_activity where backend_type = 'tvdb worker' and datname = '$1'"
}
wait_workers() {  # wait_workers <db> <count>
    for _ in $(seq 1 60); do [ "$(workers_in "$1")" = "$2" ] && return 0; sleep 0.5; done
    return 1
}
upload() {  # upload <db> <prefix> <count> [paragraphs]
    qd "$1" "SELECT count(tvdb.upload(format('$2-%s.md', i),
                 convert_to(repeat(format(E'Document %s of $2, a paragraph of plain words to chunk and embed.\n\n', i),
                                   ${4:-8}), 'UTF8')))
             FROM generate_series(1, $3) i" >/dev/null
}
chunks_ok() {  # every chunk of the prefix's documents embedded, none duplicated or missing
    qd "$1" "select count(*) from (select c.document_id from upload_pipeline.document_chunks c
              join upload_pipeline.documents d using (document_id) where d.filename like '$2%'
              group by c.document_id having max(chunk_index) + 1 <> count(*)
                 or count(*) filter (where c.embedding is null) > 0) s"
}

# Four databases, two workers each, a launcher: nine background workers.
tvdb_cluster_start "tvdb.database = '$A, \"$B\" , $C,$D'" "tvdb.workers = 2" "max_worker_processes = 16" \
                   "tvdb.service_mode = 'mock'" "tvdb.embedding_dimensions = 16" "log_min_messages = log" \
                   >/dev/null || exit 1
LOG=$TVDB_CLUSTER_DIR/server.log
for db in "$A" "$B" "$C"; do psql -X -q -d postgres -c "CREATE DATABASE \"$db\""; done
for db in "$A" "$B"; do qd "$db" "SET client_min_messages = warning; CREATE EXTENSION tvdb CASCADE"; done

echo "# the databases"
is "$(qd "$A" "SELECT array_to_string(tvdb._served_databases(), '|')")" "$A|$B|$C|$D" \
   "tvdb.database is read as a list: spaces around names dropped, a quoted name kept whole"
is "$(qd "$A" "SELECT tvdb._database_served()") $(qd "$B" "SELECT tvdb._database_served()")" "t t" \
   "both databases with tvdb are served"
wait_workers "$A" 2; ok $? "two workers serve $A"
wait_workers "$B" 2; ok $? "two workers serve \"$B\""
wait_workers "$C" 2; ok $? "two workers wait in $C, which has no tvdb"
is "$(qd postgres "select count(*) from pg_stat_activity where backend_type = 'tvdb launcher' and datname is null")" 1 \
   "one launcher, connected to no database"
for _ in $(seq 1 20); do grep -q "waits for CREATE EXTENSION tvdb in database \"$C\"" "$LOG" && break; sleep 0.5; done
is "$(grep -c "waits for CREATE EXTENSION tvdb in database \"$C\"" "$LOG")" 2 \
   "each worker of $C says once that it waits for CREATE EXTENSION"
is "$(grep -c "database \"$D\" in tvdb.database does not exist" "$LOG")" 1 \
   "the launcher says once that $D does not exist, and serves the others meanwhile"

echo "# phase 1: documents in both databases complete, each by its own workers"
upload "$A" a1 40
upload "$B" b1 40
wait_settled "$A" a1; ok $? "every document in $A settled"
wait_settled "$B" b1; ok $? "every document in \"$B\" settled"
is "$(qd "$A" "select count(*) from tvdb.jobs where filename like 'a1-%' and status = 'complete'")" 40 "40 complete in $A"
is "$(qd "$B" "select count(*) from tvdb.jobs where filename like 'b1-%' and status = 'complete'")" 40 "40 complete in \"$B\""
is "$(chunks_ok "$A" a1) $(chunks_ok "$B" b1)" "0 0" "every chunk embedded once, in both"
is "$(qd "$A" "select count(*) from upload_pipeline.documents where filename like 'b1-%'")" 0 "nothing of \"$B\" in $A"

# Idle workers sleep until a commit in their own database wakes them: A's
# do not run a single pass (their last state change stays) for B's work.
idle_a() {
    qd postgres "select string_agg(pid || ' ' || state || ' ' || state_change, ', ' order by pid)
                 from pg_stat_activity where backend_type = 'tvdb worker' and datname = '$A'"
}
# A is idle once its workers' last passes hold still for 2 s: a pass that
# found work due but held by the other worker's open transaction looks
# again a second later (a worker that kept doing so would never settle).
a_before=$(idle_a)
settled=no
for _ in $(seq 1 10); do
    sleep 2
    [ "$(idle_a)" = "$a_before" ] && { settled=yes; break; }
    a_before=$(idle_a)
done
# (diagnostic: CI once saw both of A's workers pass again a second later)
[ $settled = yes ] || echo "# $A's workers never held still for 2 s in 20 s; its queue then: $(qd "$A" \
    "select coalesce(string_agg(status || ' due ' || due_at || ' lease ' || coalesce(lease_expires_at::text, '-'), ', '), 'empty')
     from upload_pipeline.job_queue")"
upload "$B" b1w 5
wait_settled "$B" b1w 60; ok $? "five more documents in \"$B\" complete"
is "$(idle_a)" "$a_before" "$A's idle workers were not woken by \"$B\"'s commits"
[ "$(idle_a)" = "$a_before" ] || echo "# $A's open jobs then: $(qd "$A" "select coalesce(string_agg(status || ' due ' || due_at, ', '), 'none')
                                                                    from upload_pipeline.job_queue")"

echo "# phase 2: B does not wait on A"
# A lock on A's chunks table stops A's workers at their next chunk (uploads
# do not touch it): none of A's documents can complete while B's does.
psql -X -q -d "$A" -c "BEGIN" -c "LOCK TABLE upload_pipeline.document_chunks IN ACCESS EXCLUSIVE MODE" \
     -c "SELECT pg_sleep(3600)" >/dev/null 2>&1 &
locker=$!
pids+=("$locker")
for _ in $(seq 1 40); do
    [ "$(qd postgres "select count(*) from pg_locks l join pg_database d on d.oid = l.database
                       where d.datname = '$A' and l.mode = 'AccessExclusiveLock' and l.granted and l.locktype = 'relation'")" = 1 ] && break
    sleep 0.25
done
upload "$A" a2 30
stuck() {
    qd postgres "select count(distinct a.pid) from pg_locks l join pg_stat_activity a using (pid)
                 where a.backend_type = 'tvdb worker' and a.datname = '$A' and not l.granted"
}
for _ in $(seq 1 40); do [ "$(stuck)" -ge 1 ] && break; sleep 0.25; done
[ "$(stuck)" -ge 1 ]; ok $? "$A's workers are stuck on the lock with its documents (the other, if idle, has nothing to claim)"
upload "$B" b2 1
wait_settled "$B" b2 60; ok $? "a document uploaded into \"$B\" completes while $A's workers are stuck"
is "$(qd "$B" "select status from tvdb.jobs where filename like 'b2-%'")" complete "it is complete"
is "$(unfinished "$A" a2)" 30 "meanwhile none of $A's 30 documents completed"
kill "$locker" 2>/dev/null; wait "$locker" 2>/dev/null
qd postgres "select pg_terminate_backend(pid) from pg_stat_activity where datname = '$A' and query like '%pg_sleep(3600)%'" >/dev/null
wait_settled "$A" a2; ok $? "once the lock is gone $A's documents complete"

# A backlog of hundreds in A, then one document in B: B's is done before A's backlog drains.
upload "$A" a3 600 40
upload "$B" b3 1
wait_settled "$B" b3 60; ok $? "the document in \"$B\" completes"
b_done=$(qd "$B" "select max(e.ts) from upload_pipeline.events e join tvdb.jobs j using (job_id)
                  where j.filename like 'b3-%' and e.to_status = 'complete'")
wait_settled "$A" a3 600; ok $? "$A's backlog of 600 completes"
is "$(qd "$A" "select count(*) > 0 from upload_pipeline.events e join tvdb.jobs j using (job_id)
               where j.filename like 'a3-%' and e.to_status = 'complete' and e.ts > '$b_done'")" t \
   "\"$B\"'s document completed before $A's backlog (uploaded first) had drained"
is "$(qd "$A" "select count(*) from tvdb.jobs where filename like 'a3-%' and status = 'complete'")" 600 "all 600 complete"

echo "# phase 3: real mode against the fake OpenAI; keys and budgets"
python3 "$FAKES/fake_openai.py" --port 0 --port-file "$WORK/oa" --latency 0.2 >"$WORK/oa.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do [ -s "$WORK/oa" ] && break; sleep 0.1; done
OA=$(cat "$WORK/oa")
psql -X -q -d postgres >/dev/null <<SQL
ALTER SYSTEM SET tvdb.service_mode = 'real';
ALTER SYSTEM SET tvdb.llamaparse_base_url = 'http://127.0.0.1:9';
ALTER SYSTEM SET tvdb.openai_base_url = 'http://127.0.0.1:$OA/v1';
SELECT pg_reload_conf();
SQL
sleep 0.5
upload "$B" b4 2
sleep 2
is "$(qd "$B" "select string_agg(distinct status || ': ' || waiting_for, ',') from tvdb.jobs where filename like 'b4-%'")" \
   "uploaded: api key: llamaparse, openai" "without keys the documents wait, and tvdb.jobs says for what"
is "$(qd "$B" "select count(*) from tvdb.jobs where status = 'complete' and waiting_for is not null")" 0 \
   "finished documents wait for nothing"
psql -X -q -d postgres >/dev/null <<SQL
ALTER SYSTEM SET tvdb.llamaparse_api_key = 'unused';
ALTER SYSTEM SET tvdb.openai_api_key = 'test-openai-key';
SELECT pg_reload_conf();
SQL
wait_settled "$B" b4 120; ok $? "with the keys set they complete"

# A budget of nothing in A: A's documents wait for it, B's do not.
qd "$A" "SELECT tvdb.set_budget('openai', 'day', 0)" >/dev/null
upload "$A" a5 20
upload "$B" b5 20
wait_settled "$B" b5 240; ok $? "\"$B\"'s 20 documents complete"
for _ in $(seq 1 120); do
    [ "$(qd "$A" "select count(*) from tvdb.jobs where filename like 'a5-%' and waiting_for = 'budget: openai day'")" = 20 ] && break
    sleep 0.5
done
is "$(qd "$A" "select waiting_for, count(*) from tvdb.jobs where filename like 'a5-%'
               and status like 'embedding%' group by 1")" \
   "budget: openai day|20" "$A's 20 wait at their embeddings for its budget, and tvdb.jobs says so"
is "$(qd "$A" "select count(*) from upload_pipeline.usage where service = 'openai'")" 0 "$A sent nothing to OpenAI"
is "$(qd "$B" "select count(*) > 0 from upload_pipeline.usage where service = 'openai'")" t "\"$B\" did, under no budget of its own"
is "$(qd "$A" "BEGIN; UPDATE pg_catalog.pg_extension SET extversion = '0.0.1' WHERE extname = 'tvdb';
               SELECT count(*) FROM tvdb.jobs WHERE filename LIKE 'a5-%' AND waiting_for = 'extension update'; ROLLBACK")" 20 \
   "a database whose tvdb is not at the library's version shows 'extension update' (in a transaction rolled back)"

# OpenAI refuses the key: the circuit, shared by all databases, blocks, and
# the documents of both that wait on OpenAI say so; fixed, they go on.
curl -s -X POST "127.0.0.1:$OA/_control" -d '{"api_key": "another-key"}' >/dev/null
upload "$B" b7 1
for _ in $(seq 1 120); do
    [ "$(qd "$B" "select state from tvdb.circuits where service = 'openai'")" = blocked ] && break; sleep 0.5
done
for _ in $(seq 1 40); do
    [ "$(qd "$B" "select waiting_for from tvdb.jobs where filename like 'b7-%'")" = "circuit: openai blocked" ] && break; sleep 0.25
done
is "$(qd "$B" "select waiting_for from tvdb.jobs where filename like 'b7-%'")" "circuit: openai blocked" \
   "a refused key blocks OpenAI's circuit, and tvdb.jobs says so"
is "$(qd "$A" "select waiting_for, count(*) from tvdb.jobs where filename like 'a5-%' group by 1")" \
   "circuit: openai blocked|20" "the circuit is the service's, shared by every database: $A's documents wait for it too"
curl -s -X POST "127.0.0.1:$OA/_control" -d '{"api_key": "test-openai-key"}' >/dev/null
qd "$B" "SELECT tvdb.reset_circuit('openai')" >/dev/null
wait_settled "$B" b7 120; ok $? "with the key accepted again and the circuit reset, it completes"
is "$(qd "$A" "select waiting_for, count(*) from tvdb.jobs where filename like 'a5-%' group by 1")" \
   "budget: openai day|20" "$A's documents wait for their budget again"

# A worker of B killed with requests in flight: after the restart no request
# of either database is left in flight, and every document completes once.
qd "$A" "SELECT tvdb.set_budget('openai', 'day', NULL)" >/dev/null
upload "$B" b6 60
sleep 1
victim=$(qd postgres "select pid from pg_stat_activity where backend_type = 'tvdb worker' and datname = '$B' limit 1")
kill -9 "$victim"; ok $? "killed a worker of \"$B\" with SIGKILL mid-run"
sleep 2
wait_ready; ok $? "the postmaster restarted after the crash"
wait_settled "$A" a5 360; ok $? "$A's documents complete once its budget is lifted, crash or not"
wait_settled "$B" b6 360; ok $? "\"$B\"'s documents complete after the crash"
is "$(chunks_ok "$A" a5) $(chunks_ok "$B" b6)" "0 0" "no chunk duplicated or missing, every chunk embedded"
is "$(qd "$A" "select count(*) from upload_pipeline.usage where state = 'sent'") $(qd "$B" "select count(*) from upload_pipeline.usage where state = 'sent'")" \
   "0 0" "no ledger row is left in flight in either database"
is "$(qd "$B" "select count(*) from upload_pipeline.upload_jobs where lease_owner is not null and status = 'complete'")" 0 \
   "no finished job keeps a lease"
# Slots 0-1 serve the first listed database, 2-3 the second (owner "tvdb worker <slot> pid <pid>").
is "$(qd "$A" "select count(*) > 0 and bool_and(split_part(owner, ' ', 3) in ('0', '1')) from upload_pipeline.usage where owner is not null")" \
   t "$A's requests were sent by its own workers only (slots 0 and 1)"
is "$(qd "$B" "select count(*) > 0 and bool_and(split_part(owner, ' ', 3) in ('2', '3')) from upload_pipeline.usage where owner is not null")" \
   t "\"$B\"'s requests were sent by its own workers only (slots 2 and 3)"
wait_workers "$A" 2; ok $? "$A has its two workers again"
wait_workers "$B" 2; ok $? "\"$B\" has its two workers again"

echo "# phase 4: databases created later, listed or not"
psql -X -q -d postgres -c "CREATE DATABASE $D"
qd "$D" "SET client_min_messages = warning; CREATE EXTENSION tvdb CASCADE"
wait_workers "$D" 2; ok $? "the launcher finds $D once it exists and starts its two workers"
upload "$D" d1 5
wait_settled "$D" d1 120; ok $? "its documents complete"
psql -X -q -d postgres -c "CREATE DATABASE tvdb_multi_unlisted"
warn=$(qd tvdb_multi_unlisted "CREATE EXTENSION tvdb CASCADE" 2>&1 >/dev/null)
echo "$warn" | grep -q "serve \"$A\", \"$B\", \"$C\", \"$D\" (tvdb.database), not \"tvdb_multi_unlisted\""
ok $? "CREATE EXTENSION in a database not listed warns, naming the listed ones"
qd tvdb_multi_unlisted "SELECT tvdb.upload('u.md', convert_to('unserved', 'UTF8'))" >/dev/null
is "$(qd tvdb_multi_unlisted "select status || ': ' || waiting_for from tvdb.jobs")" \
   "uploaded: worker: database not served" "its document shows that no worker serves the database"
is "$(workers_in "$C")" 2 "$C's workers still wait for its extension, harmlessly"

tap_done
