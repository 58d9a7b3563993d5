-- Cost per document, per job and per operation; a batched embeddings
-- request is shared by its jobs' tokens in it.
SELECT tvdb.upload('c-a.pdf', convert_to('%PDF-1.4 a', 'UTF8')) AS ca \gset
SELECT tvdb.upload('c-b.pdf', convert_to('%PDF-1.4 b', 'UTF8')) AS cb \gset
INSERT INTO upload_pipeline.usage (service, operation, job_id, http_status, cost_usd, model)
VALUES ('llamaparse', 'upload', :'ca', 200, 0, 'default'),
       ('llamaparse', 'result', :'ca', 200, 0.00375, 'default'),
       ('llamaparse', 'result', :'cb', 200, 0.0075, 'default');
INSERT INTO upload_pipeline.usage (service, operation, job_ids, job_tokens, http_status, cost_usd, model)
VALUES ('openai', 'embeddings', ARRAY[:'ca', :'cb']::uuid[], '{300,100}', 200, 0.004, 'text-embedding-3-small'),
       ('openai', 'embeddings', ARRAY[:'ca', :'cb']::uuid[], NULL, 200, 0.002, 'text-embedding-3-small');
-- an unknown outcome counts at its estimate, as reserved
INSERT INTO upload_pipeline.usage (service, operation, job_ids, job_tokens, http_status, state, estimated_usd, reserved_usd, model)
VALUES ('openai', 'embeddings', ARRAY[:'cb']::uuid[], '{50}', 0, 'unknown', 0.000001, 0.000001, 'text-embedding-3-small');

SELECT filename, service, operation, requests, cost_usd, reserved_usd
FROM tvdb.job_costs WHERE job_id IN (:'ca', :'cb') ORDER BY filename, service, operation;
SELECT filename, jobs, llamaparse_usd, openai_usd, cost_usd, reserved_usd, by_operation
FROM tvdb.document_costs WHERE filename LIKE 'c-_.pdf' ORDER BY filename;
SELECT service, operation, model, requests, cost_usd, reserved_usd
FROM tvdb.cost_summary WHERE day = (now() AT TIME ZONE 'UTC')::date AND service = 'openai'
ORDER BY 1, 2;

DELETE FROM upload_pipeline.usage WHERE job_id IN (:'ca', :'cb') OR job_ids && ARRAY[:'ca', :'cb']::uuid[];
