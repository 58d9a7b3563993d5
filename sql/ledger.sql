-- The ledger before the request: each request's row is written, with its
-- estimated cost, before it is sent; the answer completes it.
\set VERBOSITY terse

-- Pages LlamaParse is expected to bill: a PDF's uncompressed page objects
-- (not its /Pages tree), else one page per 20 kB, at least one.
SELECT tvdb._estimate_pages(convert_to('%PDF-1.4 1 0 obj <</Type /Pages /Count 3>> 2 0 obj <</Type /Page>> '
                                       '3 0 obj <</Type/Page /Parent 1 0 R>> 4 0 obj <</Type' || E'\n' || '/Page>>', 'UTF8')) AS pdf_three,
       tvdb._estimate_pages(convert_to('%PDF-1.7 ' || repeat('x', 45000), 'UTF8')) AS pdf_compressed_45kb,
       tvdb._estimate_pages(convert_to(repeat('y', 40000), 'UTF8')) AS other_40kb,
       tvdb._estimate_pages(convert_to(repeat('y', 40001), 'UTF8')) AS other_40kb_and_one,
       tvdb._estimate_pages(''::bytea) AS empty;

-- A request about to go: its row is 'sent', its estimate reserved.
SELECT tvdb.upload('l1.pdf', convert_to('%PDF-1.4 <</Type /Page>>', 'UTF8')) AS l1 \gset
SELECT tvdb._request_sent('llamaparse', 'upload', :'l1', NULL, 'tvdb worker 9 pid 1', 4, 0) AS up \gset
SELECT tvdb._request_sent('openai', 'embeddings', NULL, ARRAY[:'l1'::uuid], 'tvdb worker 9 pid 1', 0, 1000000) AS emb \gset
SELECT tvdb._request_sent('llamaparse', 'job_status', :'l1', NULL, 'tvdb worker 9 pid 1', 0, 0) AS poll \gset
SELECT operation, state, http_status, estimated_usd, reserved_usd, cost_usd, model
FROM upload_pipeline.usage WHERE usage_id IN (:up, :emb, :poll) ORDER BY usage_id;
-- the estimates: 4 pages at the default mode's price, a million tokens of
-- text-embedding-3-small; a poll is free
SELECT tvdb._llamaparse_cost(4, false, NULL, 'default') AS four_pages, tvdb._openai_cost(1000000, 'text-embedding-3-small') AS million_tokens;

-- Outside the worker's recording an answer's row is a row of its own.
SELECT tvdb._sent_requests('llamaparse', 'upload', :'l1', NULL) AS none_outside_the_worker;
SELECT tvdb._record_usage('llamaparse', 'job_status', :'l1', NULL, 200, 5);
SELECT count(*) AS polls FROM upload_pipeline.usage WHERE job_id = :'l1' AND operation = 'job_status';

-- Its worker is gone: what it sent is of unknown outcome, held at its estimate.
SELECT tvdb._requests_lost() AS lost;
SELECT operation, state, reserved_usd, error FROM upload_pipeline.usage WHERE usage_id IN (:up, :emb, :poll) ORDER BY usage_id;

-- An accepted upload holds its estimate until its parse is settled: the job
-- leaving parse_queued (its result's cost recorded) releases it.
UPDATE upload_pipeline.usage SET state = 'answered', http_status = 200 WHERE usage_id = :up;
SELECT tvdb.transition(:'l1', 'parse_queued');
SELECT reserved_usd AS held_while_parsing FROM upload_pipeline.usage WHERE usage_id = :up;
SELECT tvdb.transition(:'l1', 'parsed', '{"via": "poll"}');
SELECT reserved_usd AS released_when_parsed FROM upload_pipeline.usage WHERE usage_id = :up;
-- the request of unknown outcome keeps its estimate
SELECT reserved_usd AS unknown_still_held FROM upload_pipeline.usage WHERE usage_id = :emb;

SELECT service, operation, requests, in_flight, unknown, cost_usd, reserved_usd
FROM tvdb.usage_summary WHERE service IN ('llamaparse', 'openai') ORDER BY 1, 2;

-- (the rows of this test go: other tests count the ledger's rows)
DELETE FROM upload_pipeline.usage WHERE job_id = :'l1' OR :'l1' = ANY(job_ids);
