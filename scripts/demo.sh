#!/usr/bin/env bash
# demo.sh — the main job: installs what is missing, builds tvdb, starts a
# throwaway cluster whose tvdb background worker serves database tvdb_demo,
# uploads the sample documents in samples/ and waits while the worker takes
# each through the nine states; then prints each job's path, its chunks and
# the usage ledger.
#
#   scripts/demo.sh          offline: tvdb.service_mode = 'mock' (built-in
#                            parser and embedder, no network, no keys)
#   scripts/demo.sh --real   real mode against the bundled fake LlamaParse and
#                            OpenAI servers (test/fakes), over HTTP on loopback
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$TVDB_ROOT"

mode=mock
[ "${1:-}" = "--real" ] && mode=real

tvdb_install_deps
tvdb_build
fakes=()
stop_all() {
    for p in "${fakes[@]}"; do kill "$p" 2>/dev/null || true; done
    tvdb_cluster_stop
}
trap stop_all EXIT

settings=("tvdb.database = 'tvdb_demo'" "tvdb.service_mode = '$mode'" "tvdb.embedding_dimensions = 256"
          "tvdb.chunk_target_tokens = 128" "tvdb.chunk_overlap_tokens = 16")
if [ "$mode" = real ]; then
    portdir=$(mktemp -d)
    python3 test/fakes/fake_llamaparse.py --port 0 --port-file "$portdir/lp" --parse-latency 1 >/dev/null 2>&1 &
    fakes+=($!)
    python3 test/fakes/fake_openai.py --port 0 --port-file "$portdir/oa" >/dev/null 2>&1 &
    fakes+=($!)
    for _ in $(seq 1 50); do [ -s "$portdir/lp" ] && [ -s "$portdir/oa" ] && break; sleep 0.1; done
    echo "== fake LlamaParse on port $(cat "$portdir/lp"), fake OpenAI on port $(cat "$portdir/oa")"
    settings+=("tvdb.llamaparse_base_url = 'http://127.0.0.1:$(cat "$portdir/lp")'"
               "tvdb.openai_base_url = 'http://127.0.0.1:$(cat "$portdir/oa")/v1'"
               "tvdb.llamaparse_api_key = 'demo-key'" "tvdb.openai_api_key = 'demo-key'"
               "tvdb.poll_interval_min = '250ms'")
    rm -rf "$portdir"
fi
tvdb_cluster_start "${settings[@]}"
psql() { command psql -X -q -v ON_ERROR_STOP=1 -d tvdb_demo "$@"; }
command psql -X -q -d postgres -c "CREATE DATABASE tvdb_demo"
psql -c "SET client_min_messages = warning" -c "CREATE EXTENSION tvdb CASCADE"

echo "== uploading samples/ (service mode: $mode)"
for f in samples/*; do
    name=$(basename "$f")
    job=$({ printf '\\set content '; base64 -w0 "$f"
            printf "\nSELECT tvdb.upload(:'name', decode(:'content', 'base64'));\n"; } |
          psql -At -v name="$name")
    echo "   $name -> job $job"
done

echo "== waiting for the worker"
for _ in $(seq 1 120); do
    left=$(psql -At -c "SELECT count(*) FROM tvdb.jobs WHERE status NOT IN ('complete', 'failed_parse', 'failed_chunking', 'failed_embedding')")
    [ "$left" = 0 ] && break
    sleep 0.5
done
[ "$left" = 0 ] || { echo "jobs still in flight after 60 s:"; psql -c "SELECT filename, status FROM tvdb.jobs"; exit 1; }

echo "== jobs"
psql -c "SELECT filename, status, attempts, last_error FROM tvdb.jobs ORDER BY filename"
echo "== each job's path through the states"
psql -c "SELECT d.filename, string_agg(h.to_status, ' → ' ORDER BY h.seq) AS path
         FROM tvdb.jobs d, tvdb.job_history(d.job_id) h WHERE h.to_status IS NOT NULL
         GROUP BY d.filename ORDER BY d.filename"
echo "== chunks"
psql -c "SELECT d.filename, c.chunk_index, c.token_estimate AS tokens,
                array_to_string(c.heading_path, ' > ') AS heading_path,
                left(regexp_replace(c.content, '\s+', ' ', 'g'), 60) AS starts_with,
                array_length(c.embedding, 1) AS dims
         FROM upload_pipeline.document_chunks c JOIN upload_pipeline.documents d USING (document_id)
         ORDER BY d.filename, c.chunk_index"
echo "== usage"
psql -c "SELECT * FROM tvdb.usage_summary ORDER BY service, operation"
echo "== cost of each document (USD; mock mode is free)"
psql -c "SELECT filename, llamaparse_usd, openai_usd, cost_usd, by_operation FROM tvdb.document_costs ORDER BY filename"
echo "== asking the corpus a question: the nearest chunks (tvdb.search)"
question="How much did revenue grow over the quarter?"
echo "   \"$question\""
# psql interpolates :'question' (quoted safely) only in what it reads, not in -c
psql -v question="$question" <<'SQL'
SELECT d.filename, s.chunk_index, array_to_string(s.heading_path, ' > ') AS heading_path,
       left(regexp_replace(s.content, '\s+', ' ', 'g'), 60) AS starts_with, round(s.distance::numeric, 3) AS distance
FROM tvdb.search(:'question', 3) s JOIN upload_pipeline.documents d USING (document_id);
SQL
