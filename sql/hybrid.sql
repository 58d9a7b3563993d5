-- Reprocessing a document from a stage, and serving one model's vectors at a time.
\set VERBOSITY terse

SELECT tvdb.reprocess('00000000-0000-0000-0000-000000000000', 'embed');
SELECT tvdb.upload('h1.md', convert_to(E'# H\n\nHybrid text.', 'UTF8')) AS h1 \gset
SELECT document_id AS d1 FROM upload_pipeline.upload_jobs WHERE job_id = :'h1' \gset
SELECT tvdb.reprocess(:'d1', 'everything');
SELECT tvdb.reprocess(:'d1', 'embed');   -- still being processed

-- A finished document (parsed, chunked, embedded by the mock).
UPDATE upload_pipeline.upload_jobs SET lease_owner = 'regress' WHERE job_id = :'h1';
SELECT tvdb._advance(:'h1', 'regress', 'uploaded', 'parse_queued', '{}', true);
SELECT tvdb._store_parsed(:'h1', 'regress', E'# H\n\nHybrid text.', '{"via": "mock"}');
SELECT tvdb.transition(:'h1', s) FROM unnest(ARRAY['chunking', 'chunks_stored', 'embedding_queued',
                                                   'embedding_in_progress', 'embeddings_stored', 'complete']) s;
INSERT INTO upload_pipeline.document_chunks (document_id, job_id, chunk_index, content, token_estimate, sha256, embedding, model)
VALUES (:'d1', :'h1', 0, 'Hybrid text.', 3, encode(sha256(convert_to('Hybrid text.', 'UTF8')), 'hex'), '{1,0}', 'mock');
SELECT count(*) AS mock_vectors FROM tvdb.embeddings_of('mock') WHERE document_id = :'d1';
SELECT count(*) AS served_in_real_mode FROM tvdb.embeddings WHERE document_id = :'d1';
-- not hybrid: nothing is redone by itself
SELECT tvdb._reprocess_mock(10) AS redone_outside_hybrid;

-- From embed: a new job, parsed with the last parse, for the worker to chunk and embed.
SELECT tvdb.reprocess(:'d1', 'embed') AS h2 \gset
SELECT job_id = :'h1' AS old, status FROM upload_pipeline.upload_jobs WHERE document_id = :'d1' ORDER BY created_at, job_id = :'h2';
SELECT e.code, e.payload - 'previous_job' - 'from_job' - 'parse_job_id' AS payload
FROM upload_pipeline.events e WHERE e.job_id = :'h2' ORDER BY e.seq;
SELECT convert_from(b.content, 'UTF8') = E'# H\n\nHybrid text.' AS same_markdown
FROM upload_pipeline.upload_jobs j JOIN upload_pipeline.blobs b ON b.path = j.parsed_path WHERE j.job_id = :'h2';
SELECT tvdb.reprocess(:'d1', 'parse');   -- the new job is under way

-- From parse: a new job in uploaded, for a parse of its own (never a reused one).
SELECT tvdb.transition(:'h2', 'failed_chunking', '{"error": "regress"}');
SELECT tvdb.reprocess(:'d1', 'parse') AS h3 \gset
SELECT status, parse_job_id FROM upload_pipeline.upload_jobs WHERE job_id = :'h3';
SELECT tvdb._parse_source(:'h3') AS source;
