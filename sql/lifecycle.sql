-- A document's lifecycle: tvdb.cancel(), tvdb.retry(), tvdb.delete_document(),
-- and tvdb.job() reading the job tvdb.upload() made in the same statement.
-- A worker's answer that arrives after a cancel is fed to the SQL the
-- worker records answers with: it must move nothing, store nothing, and
-- still be in the ledger.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;

CREATE FUNCTION pg_temp.walk(j uuid, statuses text[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE s text;
BEGIN
  FOREACH s IN ARRAY statuses LOOP PERFORM tvdb.transition(j, s); END LOOP;
END $$;
CREATE FUNCTION pg_temp.lease(j uuid) RETURNS void LANGUAGE sql AS $$
  UPDATE upload_pipeline.upload_jobs
  SET lease_owner = 'regress', lease_expires_at = now() + interval '1 hour' WHERE job_id = j
$$;
CREATE FUNCTION pg_temp.state(j uuid) RETURNS text LANGUAGE sql AS $$
  SELECT concat_ws(' | ', status, coalesce(lease_owner, 'no lease'),
                   CASE WHEN next_poll_at IS NULL THEN 'no poll due' ELSE 'poll due' END,
                   'attempt ' || attempts, 'tries ' || tries, failure_class, last_error)
  FROM upload_pipeline.upload_jobs WHERE job_id = j
$$;
CREATE FUNCTION pg_temp.last_event(j uuid) RETURNS text LANGUAGE sql AS $$
  SELECT concat_ws(' | ', from_status || ' -> ' || to_status, type, severity, code, payload::text)
  FROM upload_pipeline.events WHERE job_id = j ORDER BY seq DESC LIMIT 1
$$;
CREATE FUNCTION pg_temp.doc(j uuid) RETURNS uuid LANGUAGE sql AS $$
  SELECT document_id FROM upload_pipeline.upload_jobs WHERE job_id = j
$$;
-- Run a statement; its error's SQLSTATE, message, detail and hint, with
-- ids written as <id> (they differ from run to run).
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; msg text; det text; hin text;
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hin = PG_EXCEPTION_HINT;
  RETURN regexp_replace(concat_ws(E'\n', st || ': ' || msg, nullif(det, ''), nullif(hin, '')),
                        '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<id>', 'g');
END $$;

-- tvdb.job() sees the job tvdb.upload() creates in the same statement
-- (a STABLE function would read with the statement's older snapshot).
SELECT filename, status, attempts FROM tvdb.job(tvdb.upload('same-statement.txt', 'hello'));
SELECT code FROM tvdb.job_history(tvdb.upload('same-statement-history.txt', 'hello'));
SELECT proname, provolatile FROM pg_proc
WHERE pronamespace = 'tvdb'::regnamespace AND proname IN ('job', 'job_history') ORDER BY 1;

-- ---- tvdb.cancel ----
-- A waiting job: cancelled, with one event saying why and who.
SELECT tvdb.upload('c1.txt', 'one') AS c1 \gset
SELECT tvdb.cancel(:'c1', 'uploaded by mistake') AS cancelled;
SELECT pg_temp.state(:'c1');
SELECT pg_temp.last_event(:'c1');
-- Again: nothing to do, false, no event.
SELECT count(*) AS events_before FROM upload_pipeline.events WHERE job_id = :'c1' \gset
SELECT tvdb.cancel(:'c1') AS cancelled_again;
SELECT count(*) - :events_before AS new_events FROM upload_pipeline.events WHERE job_id = :'c1';
-- Cancelled is terminal: no retry, no way back, not even by hand.
SELECT pg_temp.try(format('SELECT tvdb.retry(%L)', :'c1')) AS error;
SELECT pg_temp.try(format('UPDATE upload_pipeline.upload_jobs SET status = ''uploaded'' WHERE job_id = %L', :'c1')) AS error;
SELECT status, is_terminal, is_failure FROM tvdb.statuses WHERE status IN ('complete', 'cancelled') ORDER BY ordinal;
-- A complete job cannot be cancelled; no job, or none named, is an error.
SELECT tvdb.upload('done.txt', 'done') AS done \gset
SELECT pg_temp.walk(:'done', ARRAY['parse_queued', 'parsed', 'chunking', 'chunks_stored', 'embedding_queued',
                                   'embedding_in_progress', 'embeddings_stored', 'complete']);
SELECT pg_temp.try(format('SELECT tvdb.cancel(%L)', :'done')) AS error;
SELECT pg_temp.try('SELECT tvdb.cancel(''00000000-0000-4000-8000-000000000000'')') AS error;
SELECT pg_temp.try('SELECT tvdb.cancel(NULL)') AS error;

-- A job a worker holds, with its requests in flight: the lease goes with
-- the cancel (whatever path cancels it), the event says what was under way.
SELECT tvdb.upload('c2.md', '# two') AS c2 \gset
SELECT pg_temp.walk(:'c2', ARRAY['parse_queued', 'parsed', 'chunking', 'chunks_stored',
                                 'embedding_queued', 'embedding_in_progress']);
SELECT pg_temp.lease(:'c2');
INSERT INTO upload_pipeline.document_chunks (document_id, job_id, chunk_index, content, token_estimate, sha256)
SELECT document_id, job_id, i, 'chunk ' || i, 2, encode(sha256(convert_to('chunk ' || i, 'UTF8')), 'hex')
FROM upload_pipeline.upload_jobs, generate_series(0, 1) i WHERE job_id = :'c2';
SELECT tvdb._request_sent('openai', 'embeddings', NULL, ARRAY[:'c2'::uuid], 'regress', 0, 4) IS NOT NULL AS request_sent;
SELECT tvdb.cancel(:'c2', 'no longer needed') AS cancelled;
SELECT pg_temp.state(:'c2');
SELECT pg_temp.last_event(:'c2');
-- Its answer arrives late: recorded in the ledger at its cost, no vector
-- stored, the job stays cancelled.
SELECT tvdb._embeddings_received('regress', ARRAY[:'c2'::uuid, :'c2'::uuid], ARRAY[d, d], ARRAY[0, 1], 200,
         '{"data": [{"index": 0, "embedding": [1, 0, 0]}, {"index": 1, "embedding": [0, 1, 0]}], "usage": {"prompt_tokens": 4}}',
         40, NULL, NULL, 3, 'text-embedding-3-small') AS outcome
FROM pg_temp.doc(:'c2') d;
SELECT count(*) FILTER (WHERE embedding IS NOT NULL) AS vectors_stored FROM upload_pipeline.document_chunks WHERE job_id = :'c2';
SELECT operation, http_status, prompt_tokens, cost_usd > 0 AS cost_recorded
FROM upload_pipeline.usage WHERE :'c2' = ANY(job_ids) AND state = 'answered';
SELECT pg_temp.state(:'c2');
-- An error answer, a quota refusal: recorded, no event, nothing moves.
SELECT tvdb._embeddings_received('regress', ARRAY[:'c2'::uuid], ARRAY[d], ARRAY[0], 429,
         '{"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": "insufficient_quota"}}',
         40, NULL, NULL, 3, 'text-embedding-3-small') AS outcome
FROM pg_temp.doc(:'c2') d;
SELECT pg_temp.last_event(:'c2');
SELECT pg_temp.state(:'c2');

-- A parse accepted before the cancel: the upload's reservation is released
-- when the job leaves parse_queued for cancelled.
SELECT tvdb.upload('c3.pdf', convert_to('%PDF-1.4 <</Type /Page>>', 'UTF8')) AS c3 \gset
SELECT tvdb._request_sent('llamaparse', 'upload', :'c3', NULL, 'regress', 2, 0) AS up \gset
UPDATE upload_pipeline.usage SET state = 'answered', http_status = 200 WHERE usage_id = :up;
SELECT tvdb.transition(:'c3', 'parse_queued');
SELECT pg_temp.lease(:'c3');
SELECT reserved_usd > 0 AS held_while_parsing FROM upload_pipeline.usage WHERE usage_id = :up;
SELECT tvdb.cancel(:'c3') AS cancelled;
SELECT reserved_usd AS released_on_cancel FROM upload_pipeline.usage WHERE usage_id = :up;
-- The late result: its cost in the ledger, its markdown not stored.
SELECT tvdb._parse_fetched(:'c3', 'regress', 200, '{"markdown": "# late", "job_metadata": {"job_pages": 1}}',
                           8, NULL, NULL, 1000) AS outcome;
SELECT operation, http_status, pages, cost_usd > 0 AS cost_recorded
FROM upload_pipeline.usage WHERE job_id = :'c3' AND operation = 'result';
SELECT count(*) AS markdown_stored FROM upload_pipeline.blobs WHERE path = tvdb._parsed_path(pg_temp.doc(:'c3'), :'c3');
SELECT pg_temp.state(:'c3');
-- LlamaParse's push of the same parse: refused, its pages in the ledger
-- once (a redelivery is a duplicate).
SELECT r ->> 'http_status' AS http_status, r ->> 'result' AS result, r ->> 'detail' AS detail
FROM tvdb._apply_llamaparse_push('{"md": "# pushed", "json": [{"page": 1}]}',
                                 convert_to('{"md": "# pushed", "json": [{"page": 1}]}', 'UTF8'), :'c3') r;
SELECT r ->> 'result' AS redelivery
FROM tvdb._apply_llamaparse_push('{"md": "# pushed", "json": [{"page": 1}]}',
                                 convert_to('{"md": "# pushed", "json": [{"page": 1}]}', 'UTF8'), :'c3') r;
SELECT operation, pages, cost_usd > 0 AS cost_recorded FROM upload_pipeline.usage
WHERE job_id = :'c3' AND operation = 'webhook_push';
SELECT pg_temp.state(:'c3');
-- The late answer of an upload, and of a mock parse: recorded, nothing moves.
SELECT tvdb.upload('c4.pdf', '%PDF-1.4') AS c4 \gset
SELECT pg_temp.lease(:'c4');
SELECT tvdb.cancel(:'c4') AS cancelled;
SELECT tvdb._parse_submitted_all('regress', ARRAY[:'c4'::uuid], ARRAY['pj-c4'], ARRAY[12.0::float8], 1000) AS moved;
SELECT tvdb._store_parsed(:'c4', 'regress', '# mock', '{}') AS stored;
SELECT pg_temp.state(:'c4');
SELECT operation, http_status FROM upload_pipeline.usage WHERE job_id = :'c4';

-- A cancelled job is never retried by tvdb.retry_failed(): its failure
-- class is gone (and it holds no lease for tvdb.reap_stuck() to reap).
SELECT tvdb.upload('c5.txt', 'five') AS c5 \gset
SELECT tvdb.transition(:'c5', 'failed_parse', '{"error": "LlamaParse kept failing", "class": "retries_exhausted"}');
UPDATE upload_pipeline.upload_jobs SET status_changed_at = now() - interval '1 day' WHERE job_id = :'c5';
-- (tvdb.retry_failed() acts on every job in the database: rolled back)
BEGIN;
SELECT tvdb.retry_failed() > 0 AS retried;
SELECT pg_temp.state(:'c5') AS would_be_retried;
ROLLBACK;
SELECT tvdb.cancel(:'c5', 'given up') AS cancelled;
SELECT pg_temp.state(:'c5');
BEGIN;
SELECT tvdb.retry_failed() IS NOT NULL AS ran;
SELECT pg_temp.state(:'c5') AS not_retried;
ROLLBACK;

-- ---- tvdb.retry ----
-- Each failure status goes back along its retry edge: a new attempt, no
-- failed tries, due at once, whatever its class.
CREATE TEMP TABLE failures (status text, path text[], job uuid);
INSERT INTO failures VALUES
  ('failed_parse',     '{failed_parse}', NULL),
  ('failed_chunking',  '{parse_queued,parsed,failed_chunking}', NULL),
  ('failed_embedding', '{parse_queued,parsed,chunking,chunks_stored,embedding_queued,failed_embedding}', NULL);
UPDATE failures SET job = tvdb.upload('r-' || status || '.md', '# retry me');
SELECT pg_temp.walk(job, path[1:cardinality(path) - 1]) FROM failures;
SELECT tvdb.transition(job, status, '{"error": "refused", "class": "permanent"}') FROM failures;
UPDATE upload_pipeline.upload_jobs j SET tries = 2, next_poll_at = now() + interval '1 hour',
       lease_owner = 'gone', lease_expires_at = now() + interval '1 hour'
FROM failures f WHERE j.job_id = f.job;
SELECT f.status AS failed, tvdb.retry(f.job) AS now_in FROM failures f ORDER BY f.status;
SELECT f.status AS failed, pg_temp.state(f.job), pg_temp.last_event(f.job) FROM failures f ORDER BY f.status;
-- Not failed: a clear error, nothing changes.
SELECT pg_temp.try(format('SELECT tvdb.retry(%L)', job)) AS error FROM failures WHERE status = 'failed_parse';
SELECT pg_temp.try(format('SELECT tvdb.retry(%L)', :'done')) AS error;
SELECT pg_temp.try('SELECT tvdb.retry(''00000000-0000-4000-8000-000000000000'')') AS error;
-- last_error tells the last failure until the job completes, then nothing.
SELECT pg_temp.walk(job, ARRAY['embedding_in_progress', 'embeddings_stored', 'complete'])
FROM failures WHERE status = 'failed_embedding';
SELECT j.status, j.last_error, j.failure_class FROM tvdb.jobs j JOIN failures f ON f.job = j.job_id
WHERE f.status IN ('failed_embedding', 'failed_chunking') ORDER BY f.status;

-- ---- tvdb.reprocess from a cancelled job ----
SELECT tvdb.reprocess(pg_temp.doc(:'c1'), 'parse') AS again \gset
SELECT status FROM upload_pipeline.upload_jobs WHERE job_id = :'again';

-- ---- tvdb.delete_document ----
-- A document mid-pipeline with a parse, chunks, events and usage: its job
-- is cancelled first (a worker's late answer then finds nothing), then
-- everything goes but the ledger.
SELECT tvdb.upload('d1.md', '# delete me') AS d1 \gset
SELECT pg_temp.lease(:'d1');
SELECT tvdb.transition(:'d1', 'parse_queued');
SELECT tvdb._store_parsed(:'d1', 'regress', '# delete me', '{}') AS parsed;
SELECT pg_temp.walk(:'d1', ARRAY['chunking', 'chunks_stored', 'embedding_queued']);
INSERT INTO upload_pipeline.document_chunks (document_id, job_id, chunk_index, content, token_estimate, sha256)
SELECT document_id, job_id, 0, 'delete me', 2, encode(sha256(convert_to('delete me', 'UTF8')), 'hex')
FROM upload_pipeline.upload_jobs WHERE job_id = :'d1';
SELECT tvdb._record_usage('mock', 'parse', :'d1', NULL, 200, 0);
SELECT pg_temp.lease(:'d1');
SELECT pg_temp.doc(:'d1') AS d1_doc \gset
SELECT (SELECT storage_path FROM upload_pipeline.documents WHERE document_id = :'d1_doc') AS upload_path,
       (SELECT parsed_path FROM upload_pipeline.upload_jobs WHERE job_id = :'d1') AS parsed_path \gset
SELECT * FROM tvdb.delete_document(:'d1_doc');
SELECT (SELECT count(*) FROM upload_pipeline.documents WHERE document_id = :'d1_doc') AS documents,
       (SELECT count(*) FROM upload_pipeline.upload_jobs WHERE document_id = :'d1_doc') AS jobs,
       (SELECT count(*) FROM upload_pipeline.document_chunks WHERE document_id = :'d1_doc') AS chunks,
       (SELECT count(*) FROM upload_pipeline.blobs WHERE path IN (:'upload_path', :'parsed_path')) AS blobs,
       (SELECT count(*) FROM upload_pipeline.events WHERE job_id = :'d1' OR document_id = :'d1_doc') AS events,
       (SELECT count(*) FROM upload_pipeline.usage WHERE job_id = :'d1') AS usage_rows_kept;
-- The worker's late answer for the deleted job: in the ledger, nothing else.
SELECT tvdb._store_parsed(:'d1', 'regress', '# too late', '{}') AS stored;
SELECT count(*) AS blobs FROM upload_pipeline.blobs WHERE path = :'parsed_path';
SELECT pg_temp.try(format('SELECT tvdb.job(%L)', :'d1')) AS error;

-- keep_events: the history stays, with a document_deleted event per job.
SELECT pg_temp.doc(:'c2') AS c2_doc \gset
SELECT count(*) AS c2_events FROM upload_pipeline.events WHERE job_id = :'c2' \gset
SELECT * FROM tvdb.delete_document(:'c2_doc', keep_events => true);
SELECT count(*) - :c2_events AS events_added FROM upload_pipeline.events WHERE job_id = :'c2';
SELECT pg_temp.last_event(:'c2');

-- A blob belongs to one document (its key holds the document id), so no
-- other document can name it, and deleting a document deletes its blobs.
SELECT tvdb.upload('shared.txt', 'shared') AS s1 \gset
SELECT storage_path AS shared_path FROM upload_pipeline.documents WHERE document_id = pg_temp.doc(:'s1') \gset
SELECT pg_temp.try(format('INSERT INTO upload_pipeline.documents (filename, mime_type, size_bytes, sha256, storage_path)
                           SELECT %L, mime_type, size_bytes, sha256, storage_path FROM upload_pipeline.documents
                           WHERE storage_path = %L', 'shared-copy.txt', :'shared_path')) AS error;
SELECT jobs, blobs FROM tvdb.delete_document(pg_temp.doc(:'s1'));
SELECT count(*) AS blob_now FROM upload_pipeline.blobs WHERE path = :'shared_path';

-- No such document, or none named.
SELECT pg_temp.try('SELECT tvdb.delete_document(''00000000-0000-4000-8000-000000000000'')') AS error;
SELECT pg_temp.try('SELECT tvdb.delete_document(NULL)') AS error;

-- ---- privileges: applications call these, and only through tvdb_app ----
SELECT p.oid::regprocedure AS function, p.prosecdef AS security_definer, p.proconfig AS settings,
       has_function_privilege('tvdb_app', p.oid, 'EXECUTE') AS tvdb_app,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public
FROM pg_proc p
WHERE p.pronamespace = 'tvdb'::regnamespace AND p.proname IN ('cancel', 'retry', 'delete_document')
ORDER BY 1;

-- With tvdb.isolate_documents, another role's job or document does not exist
-- for the caller; its own it cancels, and the event says who did.
CREATE ROLE tvdb_regress_lc1 IN ROLE tvdb_app;
CREATE ROLE tvdb_regress_lc2 IN ROLE tvdb_app;
SET ROLE tvdb_regress_lc1;
SELECT tvdb.upload('lc1.md', '# mine') AS lc1 \gset
RESET ROLE;
SET tvdb.isolate_documents = on;
SET ROLE tvdb_regress_lc2;
SELECT pg_temp.try(format('SELECT tvdb.cancel(%L)', :'lc1')) AS cancel_others;
SELECT pg_temp.try(format('SELECT tvdb.retry(%L)', :'lc1')) AS retry_others;
RESET ROLE;
SELECT pg_temp.doc(:'lc1') AS lc1_doc \gset
SET ROLE tvdb_regress_lc2;
SELECT pg_temp.try(format('SELECT tvdb.delete_document(%L)', :'lc1_doc')) AS delete_others;
SET ROLE tvdb_regress_lc1;
SELECT tvdb.cancel(:'lc1', 'mine to cancel') AS cancel_own;
RESET ROLE;
RESET tvdb.isolate_documents;
SELECT pg_temp.last_event(:'lc1');
SELECT jobs, cancelled FROM tvdb.delete_document(:'lc1_doc');
DROP ROLE tvdb_regress_lc1, tvdb_regress_lc2;

-- (what this test made goes: other tests count jobs and ledger rows)
SELECT count(*) AS documents_deleted
FROM (SELECT tvdb.delete_document(d.document_id)
      FROM upload_pipeline.documents d
      WHERE d.filename IN ('same-statement.txt', 'same-statement-history.txt', 'c1.txt', 'done.txt', 'c3.pdf',
                           'c4.pdf', 'c5.txt', 'r-failed_parse.md', 'r-failed_chunking.md', 'r-failed_embedding.md')) x;
DELETE FROM upload_pipeline.usage
WHERE job_id IN (:'c2', :'c3', :'c4', :'d1') OR :'c2' = ANY(job_ids);
DELETE FROM upload_pipeline.events WHERE job_id = :'c2';
DELETE FROM upload_pipeline.webhook_deliveries WHERE job_id = :'c3';
DELETE FROM upload_pipeline.alerts WHERE job_id = :'c2';
