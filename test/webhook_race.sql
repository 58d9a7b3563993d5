-- One genuine callback delivered 50 times at once, each in its own session:
-- it is applied exactly once and every delivery is answered 200.
\set QUIET 1
SET client_min_messages = warning;
\set ON_ERROR_STOP 1
\ir lib/at_once.sql
-- Signed with the secret the test cluster is configured with.
CREATE OR REPLACE FUNCTION tvdb_test.deliver(body text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r jsonb;
BEGIN
  PERFORM tvdb_test.gate();
  r := tvdb.handle_llamaparse_webhook(convert_to(body, 'UTF8'), jsonb_build_object(
         'X-Webhook-Signature', 'sha256=' || encode(hmac(convert_to(body, 'UTF8'), 'tvdb-test-secret', 'sha256'), 'hex')));
  RETURN concat_ws(' ', r->>'http_status', r->>'result');
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ' ' || SQLERRM;
END $$;

CREATE OR REPLACE FUNCTION tvdb_test.storm(body text, senders int)
RETURNS SETOF text LANGUAGE sql AS $$
  SELECT tvdb_test.at_once(format('SELECT tvdb_test.deliver(%L)', body), senders)
$$;
\unset QUIET

SELECT plan(6);

CREATE TEMP TABLE storm_job AS SELECT tvdb.upload('storm.pdf', 'pdf') AS job;
SELECT tvdb.transition(job, 'parse_queued') FROM storm_job \gset
CREATE TEMP TABLE storm_body AS
  SELECT jsonb_build_object('job_id', j.job_id, 'document_id', j.document_id, 'parse_job_id', 'pj-storm',
           'status', 'parsed', 'meta', jsonb_build_object('parser_name', 'llamaparse', 'parser_version', '1'),
           'artifacts', jsonb_build_array(jsonb_build_object('type', 'markdown', 'content', '# Storm',
              'sha256', encode(sha256('# Storm'), 'hex'), 'bytes', 7)))::text AS body
  FROM upload_pipeline.upload_jobs j JOIN storm_job s ON s.job = j.job_id;
CREATE TEMP TABLE storm_result AS
  SELECT tvdb_test.storm(body, 50) AS r FROM storm_body;

SELECT is((SELECT count(*) FROM storm_result WHERE r LIKE '200 %'), 50::bigint,
          'all 50 concurrent deliveries are answered 200');
SELECT is((SELECT count(*) FROM storm_result WHERE r = '200 applied'), 1::bigint,
          'exactly one delivery is applied');
SELECT is((SELECT count(*) FROM storm_result WHERE r = '200 duplicate'), 49::bigint,
          'the other 49 are marked duplicate');
SELECT is((SELECT count(*) FROM upload_pipeline.events e JOIN storm_job s ON e.job_id = s.job
           WHERE e.code = 'parse_completed'), 1::bigint, 'one parse_completed event');
SELECT is((SELECT count(*) FROM upload_pipeline.blobs b JOIN upload_pipeline.upload_jobs j ON b.path = j.parsed_path
           JOIN storm_job s ON s.job = j.job_id), 1::bigint, 'one parsed blob');
SELECT is((SELECT count(*) FROM upload_pipeline.webhook_deliveries d JOIN storm_job s ON d.job_id = s.job),
          1::bigint, 'one delivery recorded');

SELECT * FROM finish();

\set QUIET 1
SET client_min_messages = warning;
DELETE FROM upload_pipeline.documents WHERE document_id IN
  (SELECT document_id FROM upload_pipeline.upload_jobs j JOIN storm_job s ON s.job = j.job_id);
DROP SCHEMA tvdb_test CASCADE;
