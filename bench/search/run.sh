#!/usr/bin/env bash
# bench/search/run.sh — exact search over CHUNKS chunks of DIMS dimensions:
# tvdb.search against the same search written in plain SQL (unnest and
# array arithmetic, ORDER BY ... LIMIT), and against the machine's memory
# bandwidth, all in the same run on the same cluster.
#
#   tvdb          SELECT * FROM tvdb.search(q, 10, model => 'bench'): the C
#                 top-k aggregate, parallel as PostgreSQL plans it
#   plain SQL     SELECT ... ORDER BY (SELECT sum(a::float8 * b) FROM unnest(embedding, q))
#                 DESC LIMIT 10 over the same rows, also free to run in parallel
#   bandwidth     bench/search/membw.c reads a buffer the size of the vectors
#                 (CHUNKS x DIMS float32) from 1 thread and from as many as the
#                 search uses (leader + parallel workers), summing it with the
#                 search's own loop: the most any scan of those bytes can do here
#
# Reports queries/s for both searches, their ratio (target >= 20), and the
# search's vector bytes per second over each bandwidth (target >= 0.5, i.e.
# within 2x).  The vectors are dense and seeded random: each chunk a centre
# (one of CENTERS) plus as much noise, scaled to about unit length (as stored
# vectors are; dense floats do not compress, as real embeddings do not), so
# that neighbours exist for HNSW's recall to mean something; loaded once and
# held in shared buffers (pg_prewarm).  Each query is a centre plus noise.
# A benchmark, not a test: it exits 0 whatever the figures.
#
#   sudo bash bench/search/run.sh
#   defaults: CHUNKS=100000 DIMS=1536 QUERIES=20 SQL_QUERIES=2 WORKERS=cores-1 PGVECTOR=1 CENTERS=1000
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../../scripts/common.sh"
cd "$TVDB_ROOT"

CHUNKS=${CHUNKS:-100000}
DIMS=${DIMS:-1536}
QUERIES=${QUERIES:-20}
CENTERS=${CENTERS:-1000}   # chunks are noisy copies of this many centres, as real texts cluster by topic
SQL_QUERIES=${SQL_QUERIES:-2}
WORKERS=${WORKERS:-$(( $(nproc) > 1 ? $(nproc) - 1 : 0 ))}   # leader + workers = cores: more only take turns
DB=tvdb_bench_search
BUILD=${BUILD:-1}
PGVECTOR=${PGVECTOR:-1}   # also the HNSW path, if pgvector is installed

[ "$BUILD" = 1 ] && { tvdb_install_deps; tvdb_build; }
MEMBW=$(mktemp /tmp/tvdb-membw.XXXXXX)
trap 'tvdb_cluster_stop; rm -rf "$MEMBW" "${WORK:-}"' EXIT
gcc -O2 -o "$MEMBW" "$HERE/membw.c" -lpthread

tvdb_cluster_start "shared_buffers = '$(( CHUNKS * DIMS * 4 / 1048576 * 2 + 256 ))MB'" \
                   "max_parallel_workers_per_gather = $WORKERS" "tvdb.embedding_dimensions = $DIMS" \
                   "tvdb.database = 'none'" >/dev/null
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
psql -X -q -d postgres -c "CREATE DATABASE $DB"
q -c "SET client_min_messages = error" -c "CREATE EXTENSION tvdb CASCADE" -c "CREATE EXTENSION pg_prewarm"

echo "== loading $CHUNKS chunks of $DIMS dimensions"
start=$(date +%s)
q <<SQL
SET client_min_messages = error;
SET session_replication_role = replica;   -- bulk load: no state-machine triggers
SELECT setseed(0.5);
CREATE TABLE centers AS SELECT c, ARRAY(SELECT (random() - 0.5)::real FROM generate_series(1, $DIMS) WHERE c >= 0) AS v
FROM generate_series(0, $CENTERS - 1) c;
INSERT INTO upload_pipeline.documents (document_id, filename, mime_type, size_bytes, sha256, storage_path)
SELECT ('00000000-0000-0000-0000-' || lpad(to_hex(d), 12, '0'))::uuid, 'doc' || d || '.md', 'text/markdown', 1,
       repeat('0', 64), 'storage://raw/' || d
FROM generate_series(1, ($CHUNKS + 99) / 100) d;
INSERT INTO upload_pipeline.upload_jobs (job_id, document_id, status)
SELECT document_id, document_id, 'complete' FROM upload_pipeline.documents;
INSERT INTO upload_pipeline.document_chunks (document_id, job_id, chunk_index, content, token_estimate, sha256,
                                             embedding, model)
SELECT d, d, i % 100, 'chunk ' || i, 3, repeat('0', 64),
       (SELECT array_agg(((x + random() - 0.5) * sqrt(6.0 / $DIMS))::real ORDER BY o)
        FROM unnest(c.v) WITH ORDINALITY u(x, o)), 'bench'
FROM generate_series(0, $CHUNKS - 1) i
JOIN centers c ON c.c = i % $CENTERS,
     LATERAL (SELECT ('00000000-0000-0000-0000-' || lpad(to_hex(i / 100 + 1), 12, '0'))::uuid) x(d);
SQL
q -c "VACUUM ANALYZE upload_pipeline.document_chunks" -c "SELECT pg_prewarm('upload_pipeline.document_chunks')" >/dev/null
echo "loaded in $(( $(date +%s) - start )) s: $(q -c "SELECT pg_size_pretty(pg_table_size('upload_pipeline.document_chunks'))")," \
     "TOAST $(q -c "SELECT pg_size_pretty(pg_relation_size(reltoastrelid)) FROM pg_class WHERE oid = 'upload_pipeline.document_chunks'::regclass")"
q -c "CREATE TABLE bench_queries AS SELECT n, (SELECT array_agg((x + random() - 0.5)::real ORDER BY o)
                                               FROM unnest(c.v) WITH ORDINALITY u(x, o)) AS v
      FROM generate_series(1, $QUERIES) n JOIN centers c ON c.c = n * 37 % $CENTERS"

# Seconds for each way over n queries, as an application sends them (one
# statement at a time through pgbench: in a DO block's loop the search ran
# as slowly with a parallel worker as without).  A warm-up query first.
WORK=$(mktemp -d /tmp/tvdb-bench-search.XXXXXX)
chmod 755 "$WORK"
bench_time() {  # bench_time <n> <sql using :n>: seconds for n statements
    printf '\\set n random(1, %s)\n%s\n' "$QUERIES" "$2" >"$WORK/q.sql"
    "$PGBIN/pgbench" -n -t 1 -f "$WORK/q.sql" "$DB" >/dev/null
    "$PGBIN/pgbench" -n -t "$1" --random-seed=7 -f "$WORK/q.sql" "$DB" 2> >(grep -v "random seed" >&2) |
        awk -v n="$1" '/latency average/ { print $4 * n / 1000 }'
}
time_tvdb() {
    bench_time "$1" "SELECT * FROM tvdb.search((SELECT v FROM bench_queries WHERE n = :n), 10, model => 'bench');"
}
time_sql() {
    bench_time "$1" "SELECT c.document_id, c.chunk_index FROM upload_pipeline.document_chunks c WHERE c.model = 'bench'
ORDER BY (SELECT sum(a::float8 * b) FROM unnest(c.embedding, (SELECT v FROM bench_queries WHERE n = :n)) u(a, b)) DESC LIMIT 10;"
}
# Do both return the same chunks for a query?
same=$(q -c "SELECT bool_and(a = b) FROM (
               SELECT array(SELECT document_id::text || ':' || chunk_index FROM tvdb.search(v, 10, model => 'bench')) a,
                      array(SELECT c.document_id::text || ':' || c.chunk_index FROM upload_pipeline.document_chunks c
                            WHERE c.model = 'bench'
                            ORDER BY (SELECT sum(a::float8 * b) FROM unnest(c.embedding, v) u(a, b)) DESC LIMIT 10) b
               FROM bench_queries WHERE n = 1) x")

echo "== plans"
q -c "EXPLAIN (ANALYZE, VERBOSE, COSTS OFF) SELECT tvdb._nearest(x.document_id, x.chunk_index, x.embedding, '$(q -c "SELECT v FROM bench_queries WHERE n = 1")'::real[], 10, 'cosine')
      FROM upload_pipeline.document_chunks x JOIN upload_pipeline.documents d ON d.document_id = x.document_id
      WHERE x.model = 'bench' AND tvdb._may_see(d.owner)" | grep -v 'Output:' | sed 's/^/   /'   # each worker's share

echo "== measuring"
bw=$("$MEMBW" $(( CHUNKS * DIMS * 4 )) $(( WORKERS + 1 )) 5)
bw1=${bw% *}
bwp=${bw#* }
t_tvdb=$(time_tvdb "$QUERIES")
t_sql=$(time_sql "$SQL_QUERIES")
bw2=$("$MEMBW" $(( CHUNKS * DIMS * 4 )) $(( WORKERS + 1 )) 5)   # again after, for the spread

# With pgvector, where it is installed: the HNSW copy, its build time, its
# queries/s and its recall of the exact 10 nearest.
hnsw=""
if [ "$PGVECTOR" = 1 ] && q -c "CREATE EXTENSION IF NOT EXISTS vector" 2>/dev/null; then
    t0=$(date +%s)
    q -c "SET maintenance_work_mem = '2GB'" -c "SELECT tvdb.use_pgvector('bench', $DIMS)" >/dev/null
    build=$(( $(date +%s) - t0 ))
    t_hnsw=$(time_tvdb "$QUERIES")
    recall=$(q -c "SELECT round(avg((SELECT count(*) FROM tvdb.search(v, 10, model => 'bench') h
                                     WHERE (h.document_id, h.chunk_index) IN
                                           (SELECT e.document_id, e.chunk_index FROM tvdb.search(v, 10, model => 'bench', exact => true) e)) / 10.0), 3)
                   FROM bench_queries")
    hnsw="$t_hnsw $recall $(q -c "SELECT index_size FROM tvdb.pgvector()" | tr ' ' '_') $build"
fi
echo
echo "machine: $(tvdb_machine)"
python3 - "$CHUNKS" "$DIMS" "$QUERIES" "$SQL_QUERIES" "$t_tvdb" "$t_sql" "$bw1" "$bwp" "$bw2" "$WORKERS" "$same" "$hnsw" <<'PY'
import sys
chunks, dims, nq, nsql = map(int, sys.argv[1:5])
t_tvdb, t_sql = float(sys.argv[5]), float(sys.argv[6])
bw1, bwp = float(sys.argv[7]), float(sys.argv[8])
after1, afterp = map(float, sys.argv[9].split())
workers, same = sys.argv[10], sys.argv[11]
qps, qps_sql = nq / t_tvdb, nsql / t_sql
scanned = chunks * dims * 4 * qps
print(f"{chunks} chunks x {dims} dimensions ({chunks * dims * 4 / 1e6:.0f} MB of vectors), k = 10, "
      f"up to {workers} parallel workers; same 10 chunks as plain SQL: {same}")
print(f"tvdb.search      {qps:8.2f} queries/s  ({1000 / qps:7.1f} ms each, {nq} queries)")
print(f"plain SQL        {qps_sql:8.3f} queries/s  ({1000 / qps_sql:7.1f} ms each, {nsql} queries)")
print(f"ratio tvdb / SQL {qps / qps_sql:8.1f}x   (target >= 20)")
print(f"vector bytes scanned by tvdb.search: {scanned / 1e9:.2f} GB/s")
print(f"memory read, 1 thread:   {bw1 / 1e9:.2f} GB/s (after: {after1 / 1e9:.2f})  search / bandwidth = {scanned / bw1:.2f}")
print(f"memory read, {int(workers) + 1} threads:  {bwp / 1e9:.2f} GB/s (after: {afterp / 1e9:.2f})  search / bandwidth = {scanned / bwp:.2f}")
print("target: search / bandwidth >= 0.5 (within 2x)")
if sys.argv[12]:
    t_hnsw, recall, size, build = sys.argv[12].split()
    print(f"with pgvector HNSW (ef_search 40): {nq / float(t_hnsw):8.1f} queries/s, "
          f"{nq / float(t_hnsw) / qps:.1f}x the exact search, recall@10 {recall}, "
          f"index {size.replace('_', ' ')} built in {build} s")
else:
    print("pgvector: not installed here (or PGVECTOR=0): HNSW path not measured")
PY
