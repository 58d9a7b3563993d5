#!/usr/bin/env bash
# The pgvector path, by hand, where pgvector is installed (it is not
# packaged for Debian 12, so scripts/test.sh does not run this; README,
# "With pgvector", says how to build it): tvdb.use_pgvector copies a model's
# vectors and indexes them with HNSW, tvdb.search asks the index (and finds
# what the exact search finds when the index is asked to look at
# everything), the copy follows inserts, updates, re-chunking and deletes,
# and tvdb.drop_pgvector goes back to exact search.  Starts and stops its own
# cluster.  Prints TAP; exits non-zero on any failure, or when pgvector is
# not installed.
set -uo pipefail
source "$(dirname "$0")/../../scripts/common.sh"
source "$(dirname "$0")/../lib/tap.sh"
cd "$TVDB_ROOT"
DB=tvdb_pgvector

[ -f "$("$PG_CONFIG" --sharedir)/extension/vector.control" ] || {
    echo "pgvector is not installed for $("$PG_CONFIG" --version): build it first (README, \"With pgvector\")"; exit 1; }
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB" -c "$1"; }
trap tvdb_cluster_stop EXIT
tvdb_cluster_start >/dev/null || exit 1
psql -X -q -d postgres -c "CREATE DATABASE $DB"
q "SET client_min_messages = error; CREATE EXTENSION tvdb CASCADE; CREATE EXTENSION vector"

# 20 documents x 50 chunks of 32 seeded random unit vectors under model 'pgv'
q "SET client_min_messages = error;
   SELECT setseed(0.3);
   CREATE TABLE docs AS SELECT i, tvdb.upload('d' || i || CASE WHEN i % 2 = 0 THEN '.md' ELSE '.html' END,
                                              convert_to('d' || i, 'UTF8'),
                                              CASE WHEN i % 2 = 0 THEN 'text/markdown' ELSE 'text/html' END) AS job
                        FROM generate_series(1, 20) i;
   INSERT INTO upload_pipeline.document_chunks (document_id, job_id, chunk_index, content, token_estimate, sha256, embedding, model)
   SELECT j.document_id, j.job_id, n, 'c' || d.i || '.' || n, 1, repeat('0', 64),
          (SELECT array_agg((x / norm)::real) FROM (SELECT x, sqrt(sum(x * x) OVER ()) AS norm
                                                    FROM (SELECT random() - 0.5 AS x FROM generate_series(1, 32) WHERE n >= 0) r) r2),
          'pgv'
   FROM docs d JOIN upload_pipeline.upload_jobs j ON j.job_id = d.job, generate_series(0, 49) n;
   CREATE TABLE queries AS SELECT k, ARRAY(SELECT (random() - 0.5)::real FROM generate_series(1, 32) WHERE k > 0) AS v
                           FROM generate_series(1, 10) k;"

is "$(q "SELECT tvdb.use_pgvector('pgv', 32)")" "1000 vectors of model pgv (32 dimensions) copied and indexed with HNSW" \
   "use_pgvector copies the model's vectors and indexes them"
is "$(q "SELECT model || ' ' || dims || ' ' || vectors FROM tvdb.pgvector()")" "pgv 32 1000" "tvdb.pgvector() shows the copy"

# Same answers as the exact search when HNSW looks at every candidate.
same="SELECT bool_and(a = b) FROM (SELECT
        array(SELECT document_id::text || chunk_index || round(distance::numeric, 5)
              FROM tvdb.search(v, 10, model => 'pgv', metric => m)) a,
        array(SELECT document_id::text || chunk_index || round(distance::numeric, 5)
              FROM tvdb.search(v, 10, model => 'pgv', metric => m, exact => true)) b
      FROM queries, unnest(ARRAY['cosine', 'inner_product', 'l2']) m) x"
is "$(q "SET hnsw.ef_search = 1000; $same")" "t" "with ef_search 1000 the index finds the exact 10 nearest, at the same distances, in all three metrics"
got=$(q "SET hnsw.ef_search = 1000; SELECT bool_and(a = b) FROM (SELECT
        array(SELECT chunk_index FROM tvdb.search(v, 5, model => 'pgv', mime_type => 'text/html')) a,
        array(SELECT chunk_index FROM tvdb.search(v, 5, model => 'pgv', mime_type => 'text/html', exact => true)) b
      FROM queries) x")
is "$got" "t" "and with a filter"

# The index is what answers.
plan=$(psql -X -q -At -d "$DB" -c "LOAD 'auto_explain'" -c "SET auto_explain.log_min_duration = 0" \
       -c "SET auto_explain.log_nested_statements = on" -c "SET client_min_messages = log" \
       -c "SET auto_explain.log_level = notice" \
       -c "SELECT count(*) FROM tvdb.search((SELECT v FROM queries WHERE k = 1), 5, model => 'pgv')" 2>&1)
echo "$plan" | grep -q "Index Scan using chunk_vectors_hnsw"; ok $? "tvdb.search scans chunk_vectors_hnsw" "$plan"

# The copy follows the chunks.
q "UPDATE upload_pipeline.document_chunks SET embedding = NULL WHERE content = 'c1.0'"
is "$(q "SELECT vectors FROM tvdb.pgvector()")" "999" "a vector set to NULL leaves the copy"
q "UPDATE upload_pipeline.document_chunks SET embedding = (SELECT v FROM queries WHERE k = 2) WHERE content = 'c1.0'"
is "$(q "SELECT vectors FROM tvdb.pgvector()")" "1000" "a vector stored again comes back"
is "$(q "SET hnsw.ef_search = 1000; SELECT content FROM tvdb.search((SELECT v FROM queries WHERE k = 2), 1, model => 'pgv')")" \
   "c1.0" "and is found where it now points"
q "SELECT tvdb.delete_document((SELECT document_id FROM upload_pipeline.documents WHERE filename = 'd3.html'))" >/dev/null
is "$(q "SELECT vectors FROM tvdb.pgvector()")" "950" "a deleted document's vectors leave the copy"
q "UPDATE upload_pipeline.document_chunks SET embedding = embedding[1:16] WHERE content = 'c4.1'"
is "$(q "SELECT vectors FROM tvdb.pgvector()")" "949" "a vector of another dimension is not copied"

q "SELECT tvdb.drop_pgvector()" >/dev/null
is "$(q "SELECT coalesce(model, 'none') || ' ' || (to_regclass('upload_pipeline.chunk_vectors') IS NULL) FROM tvdb.pgvector()")" \
   "none true" "drop_pgvector removes the copy"
is "$(q "SELECT count(*) FROM tvdb.search((SELECT v FROM queries WHERE k = 1), 5, model => 'pgv')")" "5" "and search is exact again"
tap_done
