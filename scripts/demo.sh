#!/usr/bin/env bash
# demo.sh — the main job: installs what is missing, builds tvdb, starts a
# throwaway cluster, uploads the sample documents in samples/ and takes each
# one through the job state machine, then prints every job's event history.
# Offline: nothing leaves the machine.
#
# At this stage the stages are driven by tvdb.transition() from this script;
# the background worker (a later issue) will do the parsing and embedding.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$TVDB_ROOT"

tvdb_install_deps
tvdb_build
trap tvdb_cluster_stop EXIT
tvdb_cluster_start
psql() { command psql -X -q -v ON_ERROR_STOP=1 -d tvdb_demo "$@"; }
command psql -X -q -d postgres -c "CREATE DATABASE tvdb_demo"
psql -c "SET client_min_messages = warning" -c "CREATE EXTENSION tvdb CASCADE"

echo "== uploading samples/"
for f in samples/*; do
    name=$(basename "$f")
    job=$({ printf '\\set content '; base64 -w0 "$f"
            printf "\nSELECT tvdb.upload(:'name', decode(:'content', 'base64'));\n"; } |
          psql -At -v name="$name")
    echo "   $name -> job $job"
done

# Walk one job through the stages, as the worker will.
advance() {
    psql -c "SELECT tvdb.transition(job_id, '$2', '$3'::jsonb) FROM tvdb.jobs WHERE filename = '$1'" >/dev/null
}
happy_path() {
    advance "$1" parse_queued '{"parser": "demo"}'
    advance "$1" parsed '{"parser": "demo", "pages": 1}'
    advance "$1" chunking '{}'
    advance "$1" chunks_stored '{"chunks": 3}'
    advance "$1" embedding_queued '{}'
    advance "$1" embedding_in_progress '{"model": "text-embedding-3-small"}'
    advance "$1" embeddings_stored '{"vectors": 3}'
    advance "$1" complete '{}'
}

echo "== processing"
happy_path quarterly-report.md
happy_path onboarding.txt
happy_path release-notes.html
# The scanned invoice fails its first parse, is retried, and goes through.
advance scanned-invoice.pdf parse_queued '{"parser": "demo"}'
advance scanned-invoice.pdf failed_parse '{"error": "no text layer found"}'
advance scanned-invoice.pdf parse_queued '{"reason": "retry with OCR"}'
psql -c "SELECT tvdb.transition(job_id, 'parsed', '{\"ocr\": true}') FROM tvdb.jobs WHERE filename = 'scanned-invoice.pdf'" >/dev/null
for s in chunking chunks_stored embedding_queued embedding_in_progress embeddings_stored complete; do
    advance scanned-invoice.pdf $s '{}'
done
# An illegal step is refused, and says what is allowed.
echo "== an illegal change is refused:"
psql -c "UPDATE upload_pipeline.upload_jobs j SET status = 'parsed' FROM upload_pipeline.documents d
         WHERE d.document_id = j.document_id AND d.filename = 'onboarding.txt'" 2>&1 | sed 's/^/   /' || true

echo "== jobs"
psql -c "SELECT filename, status, attempts, last_error, stage_seconds FROM tvdb.jobs ORDER BY filename"
echo "== event history"
psql -c "SELECT d.filename, h.seq, coalesce(h.from_status, '-') AS from_status, h.to_status,
                h.type, h.severity, h.code, h.attempt, h.payload
         FROM tvdb.jobs d, tvdb.job_history(d.job_id) h ORDER BY d.filename, h.seq"
