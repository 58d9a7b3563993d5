-- What the worker does with each kind of answer, without a network: the SQL
-- functions the worker calls after a request, fed the answers LlamaParse and
-- OpenAI give.  A job must be leased by the caller for anything to move.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;

CREATE FUNCTION pg_temp.leased_job(name text, status text DEFAULT 'uploaded') RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE j uuid := tvdb.upload(name, convert_to('# ' || name, 'UTF8'));
BEGIN
  IF status = 'parse_queued' THEN
    PERFORM tvdb.transition(j, 'parse_queued');
    UPDATE upload_pipeline.upload_jobs SET parse_job_id = 'pj-' || name WHERE job_id = j;
  END IF;
  UPDATE upload_pipeline.upload_jobs
  SET lease_owner = 'regress', lease_expires_at = now() + interval '1 hour' WHERE job_id = j;
  RETURN j;
END $$;
CREATE FUNCTION pg_temp.walk(j uuid, statuses text[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE s text;
BEGIN
  FOREACH s IN ARRAY statuses LOOP PERFORM tvdb.transition(j, s); END LOOP;
END $$;
CREATE FUNCTION pg_temp.state(j uuid) RETURNS text LANGUAGE sql AS $$
  SELECT concat_ws(' | ', status, coalesce(lease_owner, 'no lease'),
                   CASE WHEN next_poll_at IS NULL THEN 'no wait'
                        WHEN next_poll_at <= clock_timestamp() THEN 'due'
                        ELSE 'waits ' || ceil(extract(epoch FROM next_poll_at - clock_timestamp()))::text || ' s' END,
                   last_error)
  FROM upload_pipeline.upload_jobs WHERE job_id = j
$$;

-- Upload answers: accepted, refused for good, refused for now (Retry-After), no answer.
SELECT pg_temp.leased_job('u1.pdf') AS u1, pg_temp.leased_job('u2.pdf') AS u2,
       pg_temp.leased_job('u3.pdf') AS u3, pg_temp.leased_job('u4.pdf') AS u4 \gset
SELECT tvdb._parse_submitted(:'u1', 'regress', 200, '{"id": "pj-9", "status": "PENDING"}', 12, NULL, NULL, 30000);
SELECT pg_temp.state(:'u1'), parse_job_id FROM upload_pipeline.upload_jobs WHERE job_id = :'u1';
SELECT tvdb._parse_submitted(:'u2', 'regress', 400, '{"detail": "Unsupported file type: .xyz"}', 5, NULL, NULL, 1000);
SELECT pg_temp.state(:'u2');
SELECT tvdb._parse_submitted(:'u3', 'regress', 429, '{"detail": "Too many requests"}', 5, NULL, 20000, 1000);
SELECT pg_temp.state(:'u3');
SELECT code, severity, payload->>'error' AS error, payload->>'retry_in_seconds' AS retry_in
FROM upload_pipeline.events WHERE job_id = :'u3' ORDER BY seq DESC LIMIT 1;
SELECT tvdb._parse_submitted(:'u4', 'regress', 0, NULL, 10001, 'Timeout was reached: Operation timed out', NULL, 1000);
SELECT j.status, j.lease_owner, e.code, e.payload->>'error' AS error,
       (e.payload->>'retry_in_seconds')::numeric BETWEEN 0 AND 0.5 AS retry_within_first_cap
FROM upload_pipeline.upload_jobs j JOIN upload_pipeline.events e USING (job_id)
WHERE j.job_id = :'u4' ORDER BY e.seq DESC LIMIT 1;
-- A 200 that is not what LlamaParse sends is not taken for an id.
SELECT tvdb._parse_submitted(pg_temp.leased_job('u5.pdf'), 'regress', 200, '<html>proxy</html>', 5, NULL, NULL, 1000);
-- Somebody else's lease: nothing moves (but the request is in the ledger).
SELECT tvdb._parse_submitted(:'u3', 'another worker', 200, '{"id": "pj-x"}', 5, NULL, NULL, 1000);
SELECT pg_temp.state(:'u3');

-- Poll answers: still working, done, failed in each way LlamaParse reports.
SELECT pg_temp.leased_job('p1.pdf', 'parse_queued') AS p1, pg_temp.leased_job('p2.pdf', 'parse_queued') AS p2 \gset
SELECT tvdb._parse_polled(:'p1', 'regress', 200, '{"id": "pj-p1", "status": "PENDING"}', 3, NULL, NULL, 60000, 120000);
SELECT pg_temp.state(:'p1');
SELECT tvdb._parse_polled(:'p2', 'regress', 200, '{"id": "pj-p2", "status": "SUCCESS"}', 3, NULL, NULL, 1000, 30000);
SELECT pg_temp.state(:'p2');
CREATE TEMP TABLE polled AS
SELECT s AS service_status, j,
       tvdb._parse_polled(j, 'regress', 200,
         jsonb_build_object('status', s, 'error_code', 'E42', 'error_message', 'scanned image has no text')::text,
         3, NULL, NULL, 1000, 30000) AS outcome
FROM unnest(ARRAY['ERROR', 'CANCELLED', 'CANCELED', 'PARTIAL_SUCCESS']) AS s,
     LATERAL pg_temp.leased_job('p-' || s, 'parse_queued') AS j;
SELECT service_status, outcome, pg_temp.state(j) FROM polled ORDER BY service_status;
-- PARTIAL_SUCCESS is finished: its result is fetched, with a warning event.
SELECT e.code, e.severity, e.payload FROM polled p JOIN upload_pipeline.events e ON e.job_id = p.j
WHERE p.service_status = 'PARTIAL_SUCCESS' AND e.code = 'parse_partial_success';
SELECT tvdb._parse_polled(pg_temp.leased_job('p3.pdf', 'parse_queued'), 'regress', 404,
                          '{"detail": "Job not found"}', 3, NULL, NULL, 1000, 30000);

-- Result answers: the markdown, not there yet, and a webhook that got there first.
SELECT tvdb._parse_fetched(:'p2', 'regress', 200,
         '{"markdown": "# P2\n\nParsed text.", "job_metadata": {"job_pages": 3, "job_is_cache_hit": false, "job_credits_usage": 30}}',
         8, NULL, NULL, 1000);
SELECT pg_temp.state(:'p2'), parsed_path LIKE 'storage://parsed/%/' || job_id || '.md' AS path_ok
FROM upload_pipeline.upload_jobs WHERE job_id = :'p2';
-- Its cost from the credits the service reported: 30 x $1.25 / 1000.
SELECT service, operation, http_status, pages, cache_hit, credits, model, cost_usd FROM upload_pipeline.usage
WHERE job_id = :'p2' ORDER BY usage_id;
SELECT tvdb._parse_fetched(:'p1', 'regress', 404, '{"detail": "Job not yet complete"}', 3, NULL, NULL, 1000);
SELECT pg_temp.state(:'p1');
-- A result that stays unavailable after SUCCESS is not polled for ever: the
-- fifth 404 in the status fails the parse with that reason.
SELECT pg_temp.leased_job('p404.pdf', 'parse_queued') AS p404 \gset
CREATE FUNCTION pg_temp.fetch_404(j uuid) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  UPDATE upload_pipeline.upload_jobs SET lease_owner = 'regress' WHERE job_id = j;
  RETURN tvdb._parse_fetched(j, 'regress', 404, '{"detail": "Job not yet complete"}', 3, NULL, NULL, 1000);
END $$;
SELECT n, pg_temp.fetch_404(:'p404') AS outcome FROM generate_series(1, 5) n ORDER BY n;
SELECT pg_temp.state(:'p404');
UPDATE upload_pipeline.upload_jobs SET lease_owner = 'regress' WHERE job_id = :'p1';
SELECT tvdb.transition(:'p1', 'parsed', '{"via": "webhook"}');
SELECT tvdb._parse_fetched(:'p1', 'regress', 200, '{"markdown": "# late"}', 8, NULL, NULL, 1000);
SELECT count(*) AS blobs_for_p1 FROM upload_pipeline.blobs WHERE path LIKE '%/' || :'p1' || '.md';

-- Embedding answers (the worker reads well-formed ones in C; errors and
-- mismatches come here).
SELECT pg_temp.leased_job('e1.md') AS e1 \gset
SELECT pg_temp.walk(:'e1', ARRAY['parse_queued', 'parsed', 'chunking', 'chunks_stored',
                                 'embedding_queued', 'embedding_in_progress']);
SELECT status FROM upload_pipeline.upload_jobs WHERE job_id = :'e1';
INSERT INTO upload_pipeline.document_chunks (document_id, job_id, chunk_index, content, token_estimate, sha256)
SELECT document_id, job_id, i, 'chunk ' || i, 2, encode(sha256(convert_to('chunk ' || i, 'UTF8')), 'hex')
FROM upload_pipeline.upload_jobs, generate_series(0, 1) i WHERE job_id = :'e1';
CREATE TEMP TABLE batch AS
  SELECT array_agg(job_id ORDER BY chunk_index) AS jobs, array_agg(document_id ORDER BY chunk_index) AS docs,
         array_agg(chunk_index ORDER BY chunk_index) AS idx
  FROM upload_pipeline.document_chunks WHERE job_id = :'e1';
-- Answers that do not fit the request are retried, not stored (the first
-- gives the jobs back; the later ones find them no longer leased: lost).
SELECT tvdb._embeddings_received('regress', jobs, docs, idx, 200, b, 40, NULL, NULL, 3, 'text-embedding-3-small') AS outcome
FROM batch, unnest(ARRAY[
  '{"data": [{"index": 0, "embedding": [1, 0, 0]}], "usage": {"prompt_tokens": 4}}',
  '{"data": [{"index": 0, "embedding": [1, 0, 0]}, {"index": 0, "embedding": [0, 1, 0]}]}',
  '{"data": [{"index": 0, "embedding": [1, 0]}, {"index": 1, "embedding": [0, 1]}]}',
  '{"object": "list"}']) AS b;
SELECT error FROM upload_pipeline.usage WHERE service = 'openai' ORDER BY usage_id;
UPDATE upload_pipeline.upload_jobs SET lease_owner = 'regress', next_poll_at = NULL WHERE job_id = :'e1';
-- A well-formed answer, in any order: stored by index, the job completes.
SELECT tvdb._embeddings_received('regress', jobs, docs, idx, 200,
         '{"data": [{"index": 1, "embedding": [0, 1, 0]}, {"index": 0, "embedding": [1, 0, 0]}], "usage": {"prompt_tokens": 4}}',
         40, NULL, NULL, 3, 'text-embedding-3-small') AS outcome FROM batch;
SELECT chunk_index, embedding, model FROM upload_pipeline.document_chunks WHERE job_id = :'e1' ORDER BY chunk_index;
SELECT pg_temp.state(:'e1');
-- OpenAI refuses the input: the stage fails with OpenAI's message.
SELECT pg_temp.leased_job('e2.md') AS e2 \gset
SELECT pg_temp.walk(:'e2', ARRAY['parse_queued', 'parsed', 'chunking', 'chunks_stored',
                                 'embedding_queued', 'embedding_in_progress']);
SELECT tvdb._embeddings_received('regress', ARRAY[:'e2'::uuid], ARRAY[document_id], ARRAY[0], 400,
         '{"error": {"message": "This model''s maximum context length is 8192 tokens", "type": "invalid_request_error", "param": null, "code": null}}',
         40, NULL, NULL, 3, 'text-embedding-3-small') AS outcome
FROM upload_pipeline.upload_jobs WHERE job_id = :'e2';
SELECT pg_temp.state(:'e2');

-- Batch moves (what the worker's chunking and embedding steps use): one
-- UPDATE for all, each job with its own event detail; a job leased to
-- somebody else, or already elsewhere, is left alone and not returned.
SELECT pg_temp.leased_job('b1.md') AS b1, pg_temp.leased_job('b2.md') AS b2,
       pg_temp.leased_job('b3.md') AS b3 \gset
UPDATE upload_pipeline.upload_jobs SET lease_owner = 'another worker' WHERE job_id = :'b3';
SELECT cardinality(tvdb._advance_all(ARRAY[:'b1', :'b2', :'b3']::uuid[], 'regress', 'uploaded', 'parse_queued',
                                     ARRAY['{"parse_job_id": "pj-b1"}', '{"parse_job_id": "pj-b2"}', '{}']::jsonb[], true)) AS moved;
SELECT d.filename, pg_temp.state(j.job_id), e.payload
FROM upload_pipeline.upload_jobs j JOIN upload_pipeline.documents d USING (document_id)
LEFT JOIN upload_pipeline.events e ON e.job_id = j.job_id AND e.to_status = 'parse_queued'
WHERE d.filename IN ('b1.md', 'b2.md', 'b3.md') ORDER BY 1;
-- A failure with an error becomes the job's last error; without details the payload is {}.
SELECT cardinality(tvdb._advance_all(ARRAY[:'b1']::uuid[], 'regress', 'parse_queued', 'failed_parse',
                                     ARRAY['{"error": "LlamaParse job ERROR: bad pdf"}']::jsonb[])) AS failed,
       cardinality(tvdb._advance_all(ARRAY[:'b2']::uuid[], 'regress', 'parse_queued', 'parsed')) AS parsed;
SELECT pg_temp.state(:'b1') AS b1, pg_temp.state(:'b2') AS b2;
SELECT to_status, payload FROM upload_pipeline.events WHERE job_id = :'b2' ORDER BY seq DESC LIMIT 1;
SELECT tvdb._advance_all(ARRAY[:'b1']::uuid[], 'regress', 'uploaded', 'parse_queued', ARRAY['{}', '{}']::jsonb[]);
-- A parse's result moves its job to parsed with the markdown's path and hash
-- in the same UPDATE (one row version); a job leased to another is left alone.
SELECT pg_temp.leased_job('ap1.md', 'parse_queued') AS ap1, pg_temp.leased_job('ap2.md', 'parse_queued') AS ap2 \gset
UPDATE upload_pipeline.upload_jobs SET lease_owner = 'another worker' WHERE job_id = :'ap2';
SELECT tvdb._advance_parsed(ARRAY[:'ap1', :'ap2']::uuid[], 'regress', ARRAY['storage://parsed/ap1', 'storage://parsed/ap2'],
                            ARRAY[repeat('a', 64), repeat('b', 64)], ARRAY['{"via": "poll"}', '{}']::jsonb[]) = ARRAY[:'ap1']::uuid[] AS moved_ap1_only;
SELECT d.filename, pg_temp.state(j.job_id), j.parsed_path, j.parsed_sha256, e.payload
FROM upload_pipeline.upload_jobs j JOIN upload_pipeline.documents d USING (document_id)
LEFT JOIN upload_pipeline.events e ON e.job_id = j.job_id AND e.to_status = 'parsed'
WHERE d.filename IN ('ap1.md', 'ap2.md') ORDER BY 1;
SELECT tvdb._advance_parsed(ARRAY[:'ap2']::uuid[], 'another worker', ARRAY['a', 'b'], ARRAY['c']);
-- An edge the state machine does not allow is refused by the trigger, as for anybody.
UPDATE upload_pipeline.upload_jobs SET lease_owner = 'regress' WHERE job_id = :'b2';
SELECT tvdb._advance(:'b2', 'regress', 'parsed', 'complete');
-- _take: due, unleased jobs only, moved under a new lease in the same statement.
SELECT pg_temp.walk(:'b2', ARRAY['chunking', 'chunks_stored', 'embedding_queued']);
UPDATE upload_pipeline.upload_jobs SET lease_owner = NULL, lease_expires_at = NULL WHERE job_id = :'b2';
SELECT count(*) AS queued FROM upload_pipeline.upload_jobs WHERE status = 'embedding_queued';
SELECT tvdb._take('embedding_queued', 'embedding_in_progress', 'regress', 10, 60) = ARRAY[:'b2']::uuid[] AS took_b2;
SELECT tvdb._take('embedding_queued', 'embedding_in_progress', 'regress', 10, 60) = '{}' AS nothing_left;
SELECT pg_temp.state(:'b2'), lease_expires_at > now() + interval '50 seconds' AS leased_60s
FROM upload_pipeline.upload_jobs WHERE job_id = :'b2';
SELECT tvdb._take('parsed', 'no such status', 'regress', 10, 60);

-- Many answers at once, as the worker records its commonest ones: uploads
-- accepted, and polls that find the parse still running.  Only the caller's
-- leased jobs move; each request is in the ledger.
SELECT pg_temp.leased_job('m1.pdf') AS m1, pg_temp.leased_job('m2.pdf') AS m2,
       pg_temp.leased_job('m3.pdf') AS m3 \gset
UPDATE upload_pipeline.upload_jobs SET lease_owner = 'another worker' WHERE job_id = :'m3';
SELECT tvdb._parse_submitted_all('regress', ARRAY[:'m1', :'m2', :'m3']::uuid[], ARRAY['pj-m1', 'pj-m2', 'pj-m3'],
                                 ARRAY[11.5, 12.5, 13.5], 30000) AS moved;
SELECT d.filename, pg_temp.state(j.job_id), j.parse_job_id, e.payload,
       (SELECT string_agg(u.operation || ' ' || u.http_status || ' ' || u.latency_ms, ', ')
        FROM upload_pipeline.usage u WHERE u.job_id = j.job_id) AS ledger
FROM upload_pipeline.upload_jobs j JOIN upload_pipeline.documents d USING (document_id)
LEFT JOIN upload_pipeline.events e ON e.job_id = j.job_id AND e.to_status = 'parse_queued'
WHERE d.filename IN ('m1.pdf', 'm2.pdf', 'm3.pdf') ORDER BY 1;
-- Polled 2 s after parse_queued: the next poll is a quarter of that later, within 100 ms .. 1 s.
UPDATE upload_pipeline.upload_jobs SET lease_owner = 'regress', status_changed_at = now() - interval '2 seconds'
WHERE job_id IN (:'m1', :'m2');
UPDATE upload_pipeline.upload_jobs SET status_changed_at = now() - interval '40 seconds' WHERE job_id = :'m2';
SELECT tvdb._parse_polled_all('regress', ARRAY[:'m1', :'m2', :'m3']::uuid[], ARRAY[3.0, 4.0, 5.0], 100, 1000) AS recorded;
SELECT d.filename, j.status, coalesce(j.lease_owner, 'no lease') AS lease,
       CASE WHEN j.next_poll_at - clock_timestamp() BETWEEN interval '0.3 s' AND interval '0.6 s' THEN 'in 0.5 s'
            WHEN j.next_poll_at - clock_timestamp() BETWEEN interval '0.8 s' AND interval '1.0 s' THEN 'in 1 s'
            ELSE (j.next_poll_at - clock_timestamp())::text END AS next_poll,
       (SELECT count(*) FROM upload_pipeline.usage u WHERE u.job_id = j.job_id AND u.operation = 'job_status') AS polls
FROM upload_pipeline.upload_jobs j JOIN upload_pipeline.documents d USING (document_id)
WHERE d.filename IN ('m1.pdf', 'm2.pdf', 'm3.pdf') ORDER BY 1;

-- Results fetched together: stored and parsed for the jobs still ours; a
-- job that moved on meanwhile gets only its ledger row.
UPDATE upload_pipeline.upload_jobs SET lease_owner = 'regress' WHERE job_id IN (:'m1', :'m2');
SELECT pg_temp.walk(:'m2', ARRAY['parsed']);
SELECT tvdb._parse_fetched_all('regress', ARRAY[:'m1', :'m2']::uuid[],
                               ARRAY['{"markdown": "# M1\n\nbody", "job_metadata": {"job_pages": 3, "job_is_cache_hit": false}}',
                                     '{"markdown": "# M2", "job_metadata": {"job_pages": 1, "job_is_cache_hit": true}}']::jsonb[],
                               ARRAY[7.0, 8.0]) AS parsed;
SELECT d.filename, j.status, coalesce(j.lease_owner, 'no lease') AS lease, j.parsed_path = format('storage://parsed/%s/%s.md', j.document_id, j.job_id) AS path_ok,
       convert_from(b.content, 'UTF8') AS markdown, j.parsed_sha256 = b.sha256 AS sha_ok,
       (SELECT e.payload FROM upload_pipeline.events e WHERE e.job_id = j.job_id ORDER BY e.seq DESC LIMIT 1) AS last_event,
       (SELECT string_agg(u.http_status || ' ' || u.pages || ' ' || u.cache_hit || ' ' || u.cost_usd, ', ')
        FROM upload_pipeline.usage u WHERE u.job_id = j.job_id AND u.operation = 'result') AS ledger
FROM upload_pipeline.upload_jobs j JOIN upload_pipeline.documents d USING (document_id)
LEFT JOIN upload_pipeline.blobs b ON b.path = j.parsed_path
WHERE d.filename IN ('m1.pdf', 'm2.pdf') ORDER BY 1;

-- _json_or_null: answers that are not JSON, or not what jsonb can hold, are NULL.
SELECT tvdb._json_or_null('{"id": "pj-1"}') AS object, tvdb._json_or_null('{"id": ') IS NULL AS truncated,
       tvdb._json_or_null('') IS NULL AS empty, tvdb._json_or_null('<html>') IS NULL AS html,
       tvdb._json_or_null('"\u0000"') IS NULL AS nul_escape, tvdb._json_or_null('"\ud800"') IS NULL AS lone_surrogate,
       tvdb._json_or_null('[1, "é"]') AS utf8;

-- The rules the worker's C and this SQL share, asked of the C directly.
SELECT tvdb._embeddings_problem(b, 2, 3) AS problem
FROM unnest(ARRAY[
  '{"data": [{"index": 0, "embedding": [1, 0, 0]}, {"index": 1, "embedding": [0, 1, 0]}]}',
  '{"data": [{"index": 0, "embedding": [1, 0, 0]}, {"index": 2, "embedding": [0, 1, 0]}]}',
  '{"data": [{"index": 0, "embedding": [1, 0, 0]}, {"index": 1, "embedding": [0, "x", 0]}]}',
  '{"data": [{"index": 0, "embedding": [1, 0, 0]}, {"index": 1, "embedding": [0, 1e99, 0]}]}',
  '{"data": [{"index": 0, "embedding": [1, 0, 0]}, {"index": 1, "embedding": [0, 1, 0]}, {"index": 1, "embedding": [0, 1, 0]}]}',
  '{"data": [{"index": 0, "embedding": [1, 0, 0]}]',
  'not json',
  -- encoding_format "base64": little-endian float32s, as the official client reads them
  '{"data": [{"index": 0, "embedding": "AACAPwAAAAAAAAAA"}, {"index": 1, "embedding": "AAAAAAAAgD8AAAAA"}]}',
  '{"data": [{"index": 0, "embedding": "AACAPwAAAAAAAAAA"}, {"index": 1, "embedding": "AAAAAAAAgD8="}]}',
  '{"data": [{"index": 0, "embedding": "AACAPwAAAAAAAAAA"}, {"index": 1, "embedding": "AAAAAAAAgH8AAAAA"}]}',
  '{"data": [{"index": 0, "embedding": "AACAPwAAAAAAAAAA"}, {"index": 1, "embedding": "AAAA!"}]}'])
  WITH ORDINALITY AS t(b, n) ORDER BY n;
SELECT s, tvdb._llamaparse_running(s) AS running
FROM unnest(ARRAY['PENDING', 'running', 'IN_PROGRESS', 'SUCCESS', 'PARTIAL_SUCCESS', 'ERROR']) AS s;

-- OpenAI refuses for good a request carrying several documents: none is
-- failed for it; each is given back at once to be embedded alone, with a
-- warning event, and the request is in the ledger once with OpenAI's message.
SELECT pg_temp.leased_job('s1.md') AS s1, pg_temp.leased_job('s2.md') AS s2 \gset
SELECT pg_temp.walk(j, ARRAY['parse_queued', 'parsed', 'chunking', 'chunks_stored',
                             'embedding_queued', 'embedding_in_progress'])
FROM unnest(ARRAY[:'s1', :'s2']::uuid[]) AS j;
SELECT tvdb._embeddings_split('regress', ARRAY[:'s1', :'s2']::uuid[], 5, 400,
         '{"error": {"message": "input[3] is invalid", "type": "invalid_request_error", "param": "input", "code": null}}',
         12, NULL, NULL) AS outcome;
SELECT pg_temp.state(:'s1') AS s1, pg_temp.state(:'s2') AS s2;
SELECT e.code, e.severity, e.payload ->> 'error' AS error FROM upload_pipeline.events e
WHERE e.job_id = :'s1' AND e.code LIKE '%retry_scheduled';
SELECT http_status, inputs, cardinality(job_ids) AS jobs, error FROM upload_pipeline.usage
WHERE ARRAY[:'s1']::uuid[] <@ job_ids;

-- Work the worker could not record holds back only its job: given back with
-- a backoff twice, failed with the reason the third time in one status; at
-- once for bad data; nothing for a job no longer leased to the caller.
SELECT pg_temp.leased_job('h1.pdf', 'parse_queued') AS h1, pg_temp.leased_job('h2.pdf', 'parse_queued') AS h2 \gset
SELECT tvdb._hold_back(:'h1', 'regress', 'failed_parse', 'poisoned', false, 3) AS first;
SELECT pg_temp.state(:'h1');
UPDATE upload_pipeline.upload_jobs SET lease_owner = 'regress' WHERE job_id = :'h1';
SELECT tvdb._hold_back(:'h1', 'regress', 'failed_parse', 'poisoned', false, 3) AS second;
UPDATE upload_pipeline.upload_jobs SET lease_owner = 'regress' WHERE job_id = :'h1';
SELECT tvdb._hold_back(:'h1', 'regress', 'failed_parse', 'poisoned', false, 3) AS third;
SELECT pg_temp.state(:'h1');
SELECT tvdb._hold_back(:'h2', 'regress', 'failed_parse', 'integer out of range', true, 3) AS bad_data;
SELECT pg_temp.state(:'h2');
SELECT tvdb._hold_back(:'h2', 'regress', 'failed_parse', 'late', false, 3) AS not_ours;

-- Every error answer classified, one classifier for both services (the
-- worker's after-answer hook; x-should-retry, when sent, decides retrying).
SELECT s AS http_status, b IS NOT NULL AS has_body, r AS should_retry, tvdb._answer_class(s, b, r) AS kind
FROM (VALUES (200, NULL, NULL), (0, NULL, NULL), (429, '{"error": {"message": "Rate limit reached", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}', NULL),
             (429, '{"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}', NULL),
             (429, '{"error": {"message": "quota", "type": "insufficient_quota", "param": null, "code": null}}', NULL),
             (503, '{"error": {"message": "The engine is currently overloaded"}}', NULL),
             (402, '{"detail": "Insufficient credits"}', NULL), (401, '{"error": {"message": "Incorrect API key provided"}}', NULL),
             (403, NULL, NULL), (400, '{"detail": "Unsupported file type"}', NULL), (404, NULL, NULL),
             (500, NULL, NULL), (502, NULL, NULL), (408, NULL, NULL), (409, NULL, NULL),
             (400, NULL, true), (500, NULL, false), (429, NULL, false), (401, NULL, true))
     AS v(s, b, r);

-- A refused key, or quota or credits run out, are not the document's fault:
-- the job waits (a minute, or the service's Retry-After) with a warning
-- event, and is not failed; nor is any document of an embeddings batch.
SELECT pg_temp.leased_job('k1.pdf') AS k1, pg_temp.leased_job('k2.pdf') AS k2 \gset
SELECT tvdb._parse_submitted(:'k1', 'regress', 401, '{"detail": "Invalid API key"}', 5, NULL, NULL, 1000) AS bad_key,
       tvdb._parse_submitted(:'k2', 'regress', 402, '{"detail": "Insufficient credits"}', 5, NULL, 120000, 1000) AS no_credits;
SELECT pg_temp.state(:'k1') AS k1, pg_temp.state(:'k2') AS k2;
SELECT e.code, e.severity, e.payload ->> 'class' AS class, e.payload ->> 'error' AS error
FROM upload_pipeline.events e WHERE e.job_id IN (:'k1', :'k2') AND e.code LIKE '%waiting_for_service' ORDER BY 4;
SELECT pg_temp.leased_job('q1.md') AS q1, pg_temp.leased_job('q2.md') AS q2 \gset
SELECT pg_temp.walk(j, ARRAY['parse_queued', 'parsed', 'chunking', 'chunks_stored',
                             'embedding_queued', 'embedding_in_progress'])
FROM unnest(ARRAY[:'q1', :'q2']::uuid[]) AS j;
SELECT tvdb._embeddings_received('regress', ARRAY[:'q1', :'q2']::uuid[], ARRAY[d1.document_id, d2.document_id],
         ARRAY[0, 0], 429,
         '{"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}',
         30, NULL, NULL, 3, 'text-embedding-3-small') AS outcome
FROM upload_pipeline.upload_jobs d1, upload_pipeline.upload_jobs d2 WHERE d1.job_id = :'q1' AND d2.job_id = :'q2';
SELECT pg_temp.state(:'q1') AS q1, pg_temp.state(:'q2') AS q2;
-- The worker's own kind wins over the status: x-should-retry false on a 500
-- makes it a refusal for good.
SELECT pg_temp.leased_job('x1.pdf') AS x1 \gset
SELECT tvdb._parse_submitted(:'x1', 'regress', 500, '{"detail": "boom"}', 5, NULL, NULL, 1000, 'invalid') AS outcome;
SELECT pg_temp.state(:'x1');

-- Leave the shared regression database as it was found (other files count jobs).
DELETE FROM upload_pipeline.documents
WHERE filename IN ('u1.pdf', 'u2.pdf', 'u3.pdf', 'u4.pdf', 'u5.pdf', 'p1.pdf', 'p2.pdf', 'p3.pdf',
                   'p-ERROR', 'p-CANCELLED', 'p-CANCELED', 'p-PARTIAL_SUCCESS', 'e1.md', 'e2.md',
                   'b1.md', 'b2.md', 'b3.md', 'm1.pdf', 'm2.pdf', 'm3.pdf', 's1.md', 's2.md',
                   'h1.pdf', 'h2.pdf', 'p404.pdf', 'k1.pdf', 'k2.pdf', 'q1.md', 'q2.md', 'x1.pdf');

-- LlamaParse v2 answers (GET /api/v2/parse/{id}), as the official client
-- reads them: PENDING and RUNNING wait, COMPLETED is fetched, FAILED and
-- CANCELLED fail with the service's message.
CREATE TEMP TABLE polled_v2 AS
SELECT s AS service_status, j,
       tvdb._parse_polled(j, 'regress', 200,
         jsonb_build_object('job', jsonb_build_object('id', 'pj2-' || s, 'project_id', 'p', 'status', s,
                                                      'error_message', CASE WHEN s IN ('FAILED', 'CANCELLED') THEN 'the PDF is encrypted' END,
                                                      'name', 'v2.pdf', 'tier', 'cost_effective'))::text,
         3, NULL, NULL, 1000, 30000) AS outcome
FROM unnest(ARRAY['PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED']) AS s,
     LATERAL pg_temp.leased_job('v2-' || s, 'parse_queued') AS j;
SELECT service_status, outcome, regexp_replace(pg_temp.state(j), 'waits [0-9]+ s', 'waits') AS state
FROM polled_v2 ORDER BY service_status;
-- The result (expand=markdown,job_metadata): pages joined in order; a page
-- the service could not read is left out and named in a warning event.
SELECT j AS v2done FROM polled_v2 WHERE service_status = 'COMPLETED' \gset
SELECT tvdb._parse_fetched(:'v2done', 'regress', 200,
         '{"job": {"id": "pj2-COMPLETED", "status": "COMPLETED"},
           "markdown": {"pages": [{"page_number": 2, "success": true, "markdown": "Page two."},
                                  {"page_number": 3, "success": false, "error": "OCR timed out"},
                                  {"page_number": 1, "success": true, "markdown": "# Title"}]},
           "job_metadata": {"job_is_cache_hit": false}}',
         9, NULL, NULL, 1000) AS outcome;
SELECT j.status, convert_from(b.content, 'UTF8') AS markdown
FROM upload_pipeline.upload_jobs j JOIN upload_pipeline.blobs b ON b.path = j.parsed_path WHERE j.job_id = :'v2done';
SELECT code, severity, payload ->> 'error' AS error FROM upload_pipeline.events
WHERE job_id = :'v2done' AND code = 'parse_partial_success';
SELECT operation, pages, cache_hit, model FROM upload_pipeline.usage WHERE job_id = :'v2done' AND operation = 'result';

-- The retry policy: full jitter under a cap that doubles per failed try
-- (tvdb.retry_base_delay 500 ms) up to tvdb.retry_max_delay (60 s), never
-- below the service's Retry-After.
SELECT min(d) >= interval '0' AND max(d) <= interval '4 seconds' AS within_cap_after_3,
       count(DISTINCT d) > 150 AS jittered
FROM (SELECT tvdb._retry_delay(3, NULL) AS d FROM generate_series(1, 200)) s;
SELECT max(tvdb._retry_delay(40, 0)) <= interval '60 seconds' AS capped,
       min(tvdb._retry_delay(0, 5000)) >= interval '5 seconds' AS retry_after_honoured
FROM generate_series(1, 50);
-- A transient failure spends a try and says when the job is due (full
-- jitter: from now, whole milliseconds, up to the first try's cap of 1 s);
-- the tvdb.max_attempts-th (8) fails the stage with class retries_exhausted.
SELECT pg_temp.leased_job('r1.pdf') AS r1 \gset
CREATE FUNCTION pg_temp.fail_once(j uuid) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  UPDATE upload_pipeline.upload_jobs SET lease_owner = 'regress' WHERE job_id = j;
  RETURN tvdb._parse_submitted(j, 'regress', 503, '{"detail": "overloaded"}', 5, NULL, NULL, 1000);
END $$;
SELECT pg_temp.fail_once(:'r1') AS first;
SELECT tries, next_retry_at BETWEEN now() AND now() + interval '1 second' AS due_within_cap, next_retry_at = next_poll_at AS same_due, failure_class
FROM upload_pipeline.upload_jobs WHERE job_id = :'r1';
SELECT n, pg_temp.fail_once(:'r1') AS outcome FROM generate_series(2, 8) n ORDER BY n;
SELECT j.status, j.tries, j.failure_class, j.last_error, j.next_retry_at
FROM tvdb.jobs j WHERE j.job_id = :'r1';
-- A refusal that no retry can fix fails at once with class permanent.
SELECT tvdb._parse_submitted(pg_temp.leased_job('r2.pdf'), 'regress', 400, '{"detail": "Invalid configuration"}', 5, NULL, NULL, 1000) AS outcome;
SELECT status, failure_class, tries FROM tvdb.jobs WHERE filename = 'r2.pdf';
-- A success starts the count over: a poll that finds the parse running, or a move.
SELECT pg_temp.leased_job('r3.pdf', 'parse_queued') AS r3 \gset
SELECT tvdb._parse_polled(:'r3', 'regress', 500, '{"detail": "boom"}', 3, NULL, NULL, 1000, 30000) AS outcome;
SELECT tries FROM upload_pipeline.upload_jobs WHERE job_id = :'r3';
UPDATE upload_pipeline.upload_jobs SET lease_owner = 'regress' WHERE job_id = :'r3';
SELECT tvdb._parse_polled(:'r3', 'regress', 200, '{"id": "pj-r3", "status": "PENDING"}', 3, NULL, NULL, 1000, 30000) AS outcome;
SELECT tries, next_retry_at FROM upload_pipeline.upload_jobs WHERE job_id = :'r3';
-- ... and so does one of a document's embedding batches, while others are still out.
SELECT pg_temp.leased_job('r4.md') AS r4 \gset
SELECT pg_temp.walk(:'r4', ARRAY['parse_queued', 'parsed', 'chunking', 'chunks_stored',
                                 'embedding_queued', 'embedding_in_progress']);
INSERT INTO upload_pipeline.document_chunks (document_id, job_id, chunk_index, content, token_estimate, sha256)
SELECT document_id, job_id, i, 'chunk ' || i, 2, encode(sha256(convert_to('chunk ' || i, 'UTF8')), 'hex')
FROM upload_pipeline.upload_jobs, generate_series(0, 1) i WHERE job_id = :'r4';
SELECT tvdb._embeddings_received('regress', ARRAY[:'r4'::uuid], ARRAY[document_id], ARRAY[0], 500,
         '{"error": {"message": "boom", "type": "server_error", "param": null, "code": null}}',
         40, NULL, NULL, 3, 'text-embedding-3-small') AS outcome
FROM upload_pipeline.upload_jobs WHERE job_id = :'r4';
UPDATE upload_pipeline.upload_jobs SET lease_owner = 'regress' WHERE job_id = :'r4';
-- (looking for finished jobs is no success: the tries stay)
SELECT tvdb._finish_embeddings(ARRAY[:'r4'::uuid], 'regress') AS finished;
SELECT tries AS tries_after_a_look FROM upload_pipeline.upload_jobs WHERE job_id = :'r4';
SELECT tvdb._embeddings_received('regress', ARRAY[:'r4'::uuid], ARRAY[document_id], ARRAY[0], 200,
         '{"data": [{"index": 0, "embedding": [1, 0, 0]}], "usage": {"prompt_tokens": 2}}',
         40, NULL, NULL, 3, 'text-embedding-3-small') AS outcome
FROM upload_pipeline.upload_jobs WHERE job_id = :'r4';
SELECT status, tries, next_retry_at FROM upload_pipeline.upload_jobs WHERE job_id = :'r4';
-- Leaving a failure by a retry edge clears its class.
SELECT tvdb.transition(:'r1', 'uploaded');
SELECT status, attempts, tries, failure_class FROM tvdb.jobs WHERE job_id = :'r1';
