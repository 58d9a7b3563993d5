-- Never paying twice: identical bytes reuse a finished LlamaParse parse of
-- the same mode; a chunk whose text was embedded before with the same model
-- and dimensions takes that vector.  Each reuse is a ledger row at no cost.
\set VERBOSITY terse

-- The first copy was parsed by LlamaParse (its result in the ledger, its markdown stored).
SELECT tvdb.upload('r-first.pdf', convert_to('%PDF-1.4 same bytes', 'UTF8')) AS ra \gset
UPDATE upload_pipeline.upload_jobs SET lease_owner = 'regress' WHERE job_id = :'ra';
SELECT tvdb._advance(:'ra', 'regress', 'uploaded', 'parse_queued', '{}', true);
SELECT tvdb._record_usage('llamaparse', 'result', :'ra', NULL, 200, 10, pages => 2,
                          cost_usd => tvdb._llamaparse_cost(2, false, NULL, tvdb._parse_mode()));
SELECT tvdb._store_parsed(:'ra', 'regress', E'# Report\n\nThe same words.', '{"via": "poll"}');

-- The second copy, same bytes: its parse is the first's.
SELECT tvdb.upload('r-second.pdf', convert_to('%PDF-1.4 same bytes', 'UTF8')) AS rb \gset
SELECT tvdb.upload('r-other.pdf', convert_to('%PDF-1.4 other bytes', 'UTF8')) AS rc \gset
SELECT tvdb._parse_source(:'rb') = :'ra' AS reuses_first, tvdb._parse_source(:'rc') IS NULL AS other_bytes_do_not;
UPDATE upload_pipeline.upload_jobs SET lease_owner = 'regress' WHERE job_id = :'rb';
SELECT tvdb._parse_reused(:'rb', 'regress', :'ra');
SELECT status FROM upload_pipeline.upload_jobs WHERE job_id = :'rb';
SELECT convert_from(content, 'UTF8') AS markdown FROM upload_pipeline.blobs
WHERE path = tvdb._parsed_path((SELECT document_id FROM upload_pipeline.upload_jobs WHERE job_id = :'rb'), :'rb');
SELECT operation, pages, cost_usd, saved_usd FROM upload_pipeline.usage WHERE job_id = :'rb';
SELECT payload - 'from_job' AS payload, payload ->> 'from_job' = :'ra' AS from_first FROM upload_pipeline.events WHERE job_id = :'rb' AND to_status = 'parsed';

-- tvdb.reuse_parses = off turns reuse off.
ALTER SYSTEM SET tvdb.reuse_parses = off;
SELECT pg_reload_conf();
SELECT pg_sleep(0.3);
SELECT tvdb._parse_source(:'rb') IS NULL AS off;
ALTER SYSTEM RESET tvdb.reuse_parses;
SELECT pg_reload_conf();
SELECT pg_sleep(0.3);

-- Vectors: chunks of the same text take the vector of the same model and
-- dimensions; another model's or another size's are not taken.
INSERT INTO upload_pipeline.document_chunks (document_id, job_id, chunk_index, content, token_estimate, sha256, embedding, model)
SELECT document_id, job_id, i, 'text ' || i, 100, encode(sha256(convert_to('text ' || i, 'UTF8')), 'hex'),
       CASE i WHEN 0 THEN '{1,0,0}'::real[] WHEN 1 THEN '{0,1,0}'::real[] ELSE '{0,0,1,0}'::real[] END,
       CASE i WHEN 1 THEN 'text-embedding-3-large' ELSE 'text-embedding-3-small' END
FROM upload_pipeline.upload_jobs, generate_series(0, 2) i WHERE job_id = :'ra';
DELETE FROM upload_pipeline.document_chunks WHERE job_id = :'rb';
INSERT INTO upload_pipeline.document_chunks (document_id, job_id, chunk_index, content, token_estimate, sha256)
SELECT document_id, job_id, i, 'text ' || i, 100, encode(sha256(convert_to('text ' || i, 'UTF8')), 'hex')
FROM upload_pipeline.upload_jobs, generate_series(0, 3) i WHERE job_id = :'rb';
SELECT tvdb._embeddings_from_cache(ARRAY[:'rb'::uuid], 'text-embedding-3-small', 3) AS from_cache;
SELECT chunk_index, embedding, model FROM upload_pipeline.document_chunks WHERE job_id = :'rb' ORDER BY chunk_index;
SELECT operation, job_ids = ARRAY[:'rb'::uuid] AS its_job, inputs, cost_usd, saved_usd, model
FROM upload_pipeline.usage WHERE operation = 'embeddings_cached';
SELECT tvdb._embeddings_from_cache(ARRAY[:'rb'::uuid], 'text-embedding-3-small', 3) AS nothing_more;

DELETE FROM upload_pipeline.usage WHERE job_id IN (:'ra', :'rb', :'rc') OR job_ids && ARRAY[:'ra', :'rb', :'rc']::uuid[];
