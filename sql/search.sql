-- tvdb.search: exact nearest chunks, checked against the same search written
-- in plain SQL; its filters, its isolation, its parallel plan, its errors;
-- and tvdb.embed's built-in embedder and refusals (the OpenAI path is in
-- test/embed, against the fake service).
SET client_min_messages = warning;
SELECT setseed(0.42);

-- 30 documents of two types, 4 chunks each, with seeded random unit vectors
-- of 64 dimensions under a model of their own.
CREATE TEMP TABLE corpus AS
SELECT tvdb.upload(format('doc%s.%s', i, CASE WHEN i % 3 = 0 THEN 'html' ELSE 'md' END),
                   convert_to('document ' || i, 'UTF8'),
                   CASE WHEN i % 3 = 0 THEN 'text/html' ELSE 'text/markdown' END) AS job_id, i
FROM generate_series(1, 30) i;
CREATE TEMP TABLE raw_vectors AS
SELECT c.job_id, n AS chunk_index, ARRAY(SELECT (random() - 0.5)::real FROM generate_series(1, 64) WHERE n >= 0) AS v
FROM corpus c, generate_series(0, 3) n;
INSERT INTO upload_pipeline.document_chunks (document_id, job_id, chunk_index, content, token_estimate, sha256,
                                             heading_path, embedding, model)
SELECT j.document_id, j.job_id, r.chunk_index, format('chunk %s of %s', r.chunk_index, c.i), 3,
       encode(sha256(convert_to(r.job_id::text || r.chunk_index, 'UTF8')), 'hex'), ARRAY['Doc ' || c.i],
       ARRAY(SELECT (x / sqrt((SELECT sum(y * y) FROM unnest(r.v) y)))::real FROM unnest(r.v) x), 'regress-64'
FROM raw_vectors r JOIN corpus c USING (job_id) JOIN upload_pipeline.upload_jobs j USING (job_id);
SELECT count(*) AS chunks, min(abs(1 - sqrt((SELECT sum(y * y) FROM unnest(embedding) y)))) < 1e-6 AS unit_length
FROM upload_pipeline.document_chunks WHERE model = 'regress-64';

-- The same search in plain SQL: every distance computed from its definition.
CREATE FUNCTION pg_temp.brute(q real[], k integer, metric text, docs uuid[] DEFAULT NULL)
    RETURNS TABLE (document_id uuid, chunk_index integer, distance double precision) LANGUAGE sql AS $$
    SELECT c.document_id, c.chunk_index,
           CASE metric
               WHEN 'cosine' THEN 1 - (SELECT sum(a * b) FROM unnest(c.embedding, q) t(a, b))
                                      / sqrt((SELECT sum(a * a) FROM unnest(c.embedding) a) * (SELECT sum(b * b) FROM unnest(q) b))
               WHEN 'inner_product' THEN -(SELECT sum(a * b) FROM unnest(c.embedding, q) t(a, b))
               ELSE sqrt((SELECT sum((a - b) ^ 2) FROM unnest(c.embedding, q) t(a, b))) END AS distance
    FROM upload_pipeline.document_chunks c
    WHERE c.model = 'regress-64' AND (docs IS NULL OR c.document_id = ANY (docs))
    ORDER BY 3
    LIMIT k
$$;
-- Do two result lists name the same chunks in the same order, at the same distances?
CREATE FUNCTION pg_temp.same(q real[], k integer, metric text, docs uuid[] DEFAULT NULL) RETURNS boolean
    LANGUAGE sql AS $$
    WITH s AS (SELECT row_number() OVER () AS n, * FROM tvdb.search(q, k, docs, metric => metric, model => 'regress-64')),
         b AS (SELECT row_number() OVER () AS n, * FROM pg_temp.brute(q, k, metric, docs))
    SELECT count(*) = k AND bool_and(s.document_id = b.document_id AND s.chunk_index = b.chunk_index
                                     AND abs(s.distance - b.distance) < 1e-5)
    FROM s FULL JOIN b USING (n)
$$;
CREATE TEMP TABLE queries AS
SELECT q, ARRAY(SELECT ((random() - 0.5) * 3)::real FROM generate_series(1, 64) WHERE q > 0) AS v
FROM generate_series(1, 5) q;
SELECT m AS metric, bool_and(pg_temp.same(v, 10, m)) AS same_as_sql, bool_and(pg_temp.same(v, 1, m)) AS same_k1,
       bool_and(pg_temp.same(v, 120, m)) AS same_all
FROM queries, unnest(ARRAY['cosine', 'inner_product', 'l2']) m GROUP BY m ORDER BY m;
-- k beyond the chunks there are: all of them, nearest first.
SELECT count(*) AS all_chunks FROM tvdb.search((SELECT v FROM queries WHERE q = 1), 1000, model => 'regress-64');
-- A stored vector is its own nearest chunk, at distance 0.
SELECT s.content, round(s.distance::numeric, 6) AS distance
FROM tvdb.search((SELECT embedding FROM upload_pipeline.document_chunks WHERE content = 'chunk 2 of 17'), 1,
                 model => 'regress-64') s;

-- Filters: documents by id (any documents column, joined by the caller),
-- by correlation id, by media type.
SELECT pg_temp.same(v, 5, 'cosine', ARRAY(SELECT d.document_id FROM upload_pipeline.documents d
                                          WHERE d.filename IN ('doc4.md', 'doc9.html', 'doc20.md'))) AS same_in_three
FROM queries WHERE q = 2;
SELECT DISTINCT d.filename
FROM tvdb.search((SELECT v FROM queries WHERE q = 2), 20, model => 'regress-64',
                 document_ids => ARRAY(SELECT d.document_id FROM upload_pipeline.documents d
                                       WHERE d.filename IN ('doc4.md', 'doc9.html'))) s
JOIN upload_pipeline.documents d USING (document_id) ORDER BY 1;
SELECT DISTINCT d.filename
FROM tvdb.search((SELECT v FROM queries WHERE q = 3), 20, model => 'regress-64',
                 correlation_id => (SELECT j.correlation_id FROM upload_pipeline.upload_jobs j
                                    JOIN corpus c USING (job_id) WHERE c.i = 7)) s
JOIN upload_pipeline.documents d USING (document_id);
SELECT count(*) AS html_chunks, bool_and(d.mime_type = 'text/html') AS only_html
FROM tvdb.search((SELECT v FROM queries WHERE q = 4), 100, model => 'regress-64', mime_type => 'text/html') s
JOIN upload_pipeline.documents d USING (document_id);

-- Parallel: each worker keeps its own k best, the leader merges them.
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
EXPLAIN (COSTS OFF)
SELECT tvdb._nearest(x.document_id, x.chunk_index, x.embedding, '{1,0}'::real[], 10, 'cosine')
FROM upload_pipeline.document_chunks x;
SELECT m AS metric, bool_and(pg_temp.same(v, 10, m)) AS same_in_parallel
FROM queries, unnest(ARRAY['cosine', 'l2']) m GROUP BY m ORDER BY m;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;
-- tvdb.search plans its scan for each call's filters: a cached generic plan
-- keeps every optional filter and lost the parallel scan (bench/search).
SELECT proconfig FROM pg_proc
WHERE oid = 'tvdb._search(real[], text, integer, uuid[], uuid, text, text, boolean)'::regprocedure;

-- Vectors sit in the row, not in TOAST, up to a page: 1536 dimensions add
-- nothing to the TOAST table.
SELECT attstorage AS embedding_storage FROM pg_attribute
WHERE attrelid = 'upload_pipeline.document_chunks'::regclass AND attname = 'embedding';
SELECT reltoastrelid::regclass AS toast FROM pg_class WHERE oid = 'upload_pipeline.document_chunks'::regclass \gset
SELECT count(*) AS toast_before FROM :toast \gset
INSERT INTO upload_pipeline.document_chunks (document_id, job_id, chunk_index, content, token_estimate, sha256, embedding, model)
SELECT j.document_id, j.job_id, 10, 'wide', 1, repeat('0', 64), tvdb.embed('wide ' || c.i, 'mock'), 'mock'
FROM corpus c JOIN upload_pipeline.upload_jobs j USING (job_id);
SELECT count(*) - :toast_before AS toast_rows_added FROM :toast;

-- Isolation: with tvdb.isolate_documents an application finds only its own chunks.
CREATE ROLE tvdb_regress_searcher IN ROLE tvdb_app;
SET ROLE tvdb_regress_searcher;
SELECT tvdb.upload('mine.md', convert_to('mine', 'UTF8')) AS mine \gset
RESET ROLE;
INSERT INTO upload_pipeline.document_chunks (document_id, job_id, chunk_index, content, token_estimate, sha256, embedding, model)
SELECT j.document_id, j.job_id, 0, 'my chunk', 1, repeat('0', 64), (SELECT v FROM queries WHERE q = 5), 'regress-64'
FROM upload_pipeline.upload_jobs j WHERE j.job_id = :'mine';
SELECT v AS q1 FROM queries WHERE q = 1 \gset
SET tvdb.isolate_documents = on;
SET ROLE tvdb_regress_searcher;
SELECT content FROM tvdb.search(:'q1'::real[], 100, model => 'regress-64');
SELECT count(*) AS mock_chunks_seen FROM tvdb.search('wide 3', 100, model => 'mock');
SELECT * FROM upload_pipeline.document_chunks LIMIT 1;
RESET ROLE;
RESET tvdb.isolate_documents;
SELECT count(*) AS mock_chunks_seen_by_owner FROM tvdb.search('wide 3', 100, model => 'mock');
SELECT count(*) AS regress_chunks_seen_by_owner FROM tvdb.search(:'q1'::real[], 1000, model => 'regress-64');

-- The built-in embedder: same text, same unit vector, of the model's dimensions.
SELECT array_length(tvdb.embed('what is tvdb?', 'mock'), 1) AS dims,
       round(sqrt((SELECT sum(x * x) FROM unnest(tvdb.embed('what is tvdb?', 'mock')) x))::numeric, 5) AS length,
       tvdb.embed('what is tvdb?', 'mock') = tvdb.embed('what is tvdb?', 'mock') AS deterministic;
SELECT content FROM tvdb.search('wide 17', 1, model => 'mock');

-- Errors the caller can act on, before anything is read or sent.
\set VERBOSITY default
SELECT * FROM tvdb.search('{1,0}'::real[], 0);
SELECT * FROM tvdb.search('{1,0}'::real[], 10, metric => 'hamming');
SELECT * FROM tvdb.search('{}'::real[], 10);
SELECT * FROM tvdb.search('{1,NULL}'::real[], 10);
SELECT * FROM tvdb.search('{0,0}'::real[], 10);
SELECT * FROM tvdb.search('{{1,0},{0,1}}'::real[], 10);
SELECT count(*) FROM tvdb.search('{1,0,0}'::real[], 10, model => 'regress-64');
SELECT tvdb.embed('');
SELECT tvdb.embed(repeat('long ', 2000), 'mock');
SELECT tvdb.embed('a question', 'text-embedding-3-large');
-- real mode (this cluster's) without a key: said before anything is sent
SELECT tvdb.embed('a question');
SELECT * FROM tvdb.search(NULL::text);
-- pgvector is not in this database: use_pgvector says so; search stays exact.
SELECT tvdb.use_pgvector();
SELECT * FROM tvdb.pgvector();
\set VERBOSITY terse

DELETE FROM upload_pipeline.documents
WHERE document_id IN (SELECT j.document_id FROM upload_pipeline.upload_jobs j
                      WHERE j.job_id IN (SELECT job_id FROM corpus) OR j.job_id = :'mine');
DROP ROLE tvdb_regress_searcher;
