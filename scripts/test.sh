#!/usr/bin/env bash
# test.sh — every tvdb test, from a fresh Debian 12 machine: installs what is
# missing, builds, runs the chunker's and the fake servers' own tests, starts
# a throwaway cluster, runs pg_regress (sql/, expected/), the isolation specs
# (specs/), pgTAP (test/*.sql), tvdb-webhookd through curl (test/webhookd)
# and the background worker against the fake servers (test/worker), stops
# the cluster; then query embeddings against the fake OpenAI (test/embed),
# the budget race on a cluster of its own with four
# workers (test/budget), several databases on a cluster of their own
# (test/multidb), the upgrade from 0.1.0 (test/upgrade) and pg_dump/pg_restore
# mid-pipeline (test/restore), the dashboard in headless Chromium
# (test/dashboard) and the main command, scripts/demo.sh (test/demo).  Meanwhile pg_cron on a socket-only cluster of its own
# (test/cron), which mostly waits for the minute.  Exits non-zero on any failure.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$TVDB_ROOT"

tvdb_install_deps
tvdb_build
failed=0
echo "== chunker (C, standalone)"
bash test/chunker/run.sh || failed=1
echo "== fake servers"
bash test/fakes/selftest.sh || failed=1

cron_log=$(mktemp)
bash test/cron/run.sh >"$cron_log" 2>&1 &
cron_pid=$!
trap 'tvdb_cluster_stop; kill $cron_pid 2>/dev/null || true; rm -f "$cron_log"' EXIT
# Webhook tests in other sessions (pgTAP, tvdb-webhookd) sign with these; the
# workers serve only tvdb_worker, which test/worker creates.
tvdb_cluster_start "tvdb.webhook_secrets = 'tvdb-test-secret,whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'" \
                   "tvdb.database = 'tvdb_worker'" "tvdb.workers = 2"

echo "== pg_regress and isolation"
rm -rf results output_iso regression.diffs
if ! make -s installcheck; then
    failed=1
    for f in regression.diffs output_iso/regression.diffs; do
        [ -f "$f" ] && { echo "---- $f"; cat "$f"; }
    done
fi

echo "== pgTAP"
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE tvdb_tap"
psql -X -q -v ON_ERROR_STOP=1 -d tvdb_tap -c "CREATE EXTENSION pgtap" -c "CREATE EXTENSION dblink" -c "SET client_min_messages = warning" -c "CREATE EXTENSION tvdb CASCADE"
pg_prove -d tvdb_tap test/*.sql || failed=1

echo "== tvdb-webhookd"
bash test/webhookd/run.sh || failed=1
echo "== background worker"
bash test/worker/run.sh || failed=1
echo "== query embeddings from an application's backend (tvdb.embed, tvdb.search)"
bash test/embed/run.sh || failed=1
echo "== budgets: four workers racing for the last dollars"
bash test/budget/run.sh || failed=1
echo "== several databases: one cluster, four listed databases"
bash test/multidb/run.sh || failed=1
echo "== ALTER EXTENSION tvdb UPDATE from 0.1.0, with documents in flight"
bash test/upgrade/run.sh || failed=1
echo "== backup and restore, mid-pipeline"
bash test/restore/run.sh || failed=1
echo "== the operator's window: tvdb-webhookd's dashboard in headless Chromium"
bash test/dashboard/run.sh || failed=1
echo "== the README's main command (scripts/demo.sh, offline and --real)"
bash test/demo/run.sh || failed=1
echo "== pg_cron on a socket-only cluster"
wait $cron_pid || failed=1
cat "$cron_log"

if [ $failed -ne 0 ]; then echo "FAILED"; exit 1; fi
echo "all tests passed"
