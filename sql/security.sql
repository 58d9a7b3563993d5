-- Least privilege: what an application role can and cannot do. Two
-- applications, a monitor, a webhook receiver and a settings reader.
CREATE ROLE tvdb_regress_app1 IN ROLE tvdb_app;
CREATE ROLE tvdb_regress_app2 IN ROLE tvdb_app;
CREATE ROLE tvdb_regress_watch IN ROLE tvdb_monitor;
CREATE ROLE tvdb_regress_hook IN ROLE tvdb_webhook;
CREATE ROLE tvdb_regress_settings IN ROLE pg_monitor, pg_read_all_settings;
SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname IN ('tvdb_app', 'tvdb_webhook', 'tvdb_monitor') ORDER BY 1;

SET ROLE tvdb_regress_app1;
SELECT tvdb.upload('app1.md', convert_to(E'# One\n\nThe first application''s document.', 'UTF8')) AS job1 \gset
SET ROLE tvdb_regress_app2;
SELECT tvdb.upload('app2.md', convert_to(E'# Two\n\nThe second application''s document.', 'UTF8')) AS job2 \gset
RESET ROLE;
SELECT d.filename, d.owner FROM upload_pipeline.documents d WHERE d.filename IN ('app1.md', 'app2.md') ORDER BY 1;

-- The attacks, as the second application against the first one's document:
-- none reaches the tables, and the worker's functions are not callable.
SET ROLE tvdb_regress_app2;
UPDATE upload_pipeline.upload_jobs SET parse_job_id = 'someone-elses-llamaparse-job' WHERE job_id = :'job2';
INSERT INTO upload_pipeline.events (type, severity, code) VALUES ('state_change', 'info', 'pipeline_completed');
UPDATE upload_pipeline.events SET code = 'forged' WHERE job_id = :'job1';
DELETE FROM upload_pipeline.events;
UPDATE upload_pipeline.blobs SET content = 'replaced';
UPDATE upload_pipeline.upload_jobs SET lease_owner = 'me', lease_expires_at = now() + interval '1 day';
SELECT tvdb.transition(:'job1', 'parse_queued');
SELECT * FROM tvdb._claim('uploaded', 'me', 10, 86400);
SELECT tvdb.reprocess((SELECT document_id FROM tvdb.jobs WHERE job_id = :'job2'), 'embed');
SELECT tvdb.set_budget('openai', 'day', 1000000);
-- Header injection through the media type or the filename: refused by
-- their RFC syntax before anything is written.
SELECT tvdb.upload('x.pdf', 'x', E'application/pdf\r\nX-Injected: yes');
SELECT tvdb.upload('x.pdf', 'x', 'application/p df');
SELECT tvdb.upload(E'x.pdf"\r\nContent-Type: text/html', 'x');
RESET ROLE;
SELECT count(*) AS jobs_of_x FROM upload_pipeline.documents WHERE filename LIKE 'x.pdf%';

-- Without isolation every application sees every job through the API.
SET ROLE tvdb_regress_app2;
SELECT filename, status FROM tvdb.jobs WHERE filename IN ('app1.md', 'app2.md') ORDER BY 1;
-- tvdb.isolate_documents is the superuser's to set: the application cannot turn it off.
SET tvdb.isolate_documents = off;
RESET ROLE;

-- A chunk for each document, as the worker would store them.
INSERT INTO upload_pipeline.document_chunks (document_id, job_id, chunk_index, content, token_estimate, sha256)
SELECT j.document_id, j.job_id, 0, d.filename || ' chunk', 2, encode(sha256(convert_to(d.filename, 'UTF8')), 'hex')
FROM upload_pipeline.upload_jobs j JOIN upload_pipeline.documents d USING (document_id)
WHERE j.job_id IN (:'job1', :'job2');

-- With isolation each sees only its own documents; a monitor sees all.
SET tvdb.isolate_documents = on;
SET ROLE tvdb_regress_app2;
SELECT filename FROM tvdb.jobs WHERE filename IN ('app1.md', 'app2.md') ORDER BY 1;
SELECT content, embedded FROM tvdb.chunks WHERE job_id IN (:'job1', :'job2') ORDER BY 1;
SELECT filename FROM tvdb.job(:'job2');
SELECT set_config('regress.job1', :'job1', false) IS NOT NULL AS noted;
DO $$
BEGIN
    PERFORM tvdb.job(current_setting('regress.job1')::uuid);
    RAISE NOTICE 'the other application''s job is visible';
EXCEPTION WHEN SQLSTATE 'TV004' THEN
    RAISE NOTICE 'the other application''s job does not exist for it (TV004)';
END
$$;
SELECT count(*) AS others_history FROM tvdb.job_history(:'job1');
SELECT count(*) > 0 AS own_history FROM tvdb.job_history(:'job2');
SET ROLE tvdb_regress_watch;
SELECT filename FROM tvdb.jobs WHERE filename IN ('app1.md', 'app2.md') ORDER BY 1;
SELECT content FROM tvdb.chunks WHERE job_id IN (:'job1', :'job2') ORDER BY 1;
SELECT 'no permission error' AS monitor_reads_costs FROM tvdb.cost_summary LIMIT 1;
SELECT count(*) AS monitor_reads_budgets FROM tvdb.budgets;
SELECT tvdb.upload('m.md', 'm');
RESET ROLE;
RESET tvdb.isolate_documents;

-- The webhook receiver's role calls the handler and nothing else.
SET ROLE tvdb_regress_hook;
SELECT tvdb.handle_llamaparse_webhook('{}', '{}')->>'http_status' AS unsigned_delivery;
SELECT tvdb.upload('h.md', 'h');
SELECT count(*) FROM tvdb.jobs;
RESET ROLE;

-- Secrets: superusers only, not pg_read_all_settings (pg_monitor).
SET tvdb.webhook_secrets = 'regress-secret';
SET ROLE tvdb_regress_settings;
SHOW tvdb.webhook_secrets;
SELECT current_setting('tvdb.webhook_secrets') AS webhook_secrets;
SELECT count(*) AS listed FROM pg_settings WHERE name IN ('tvdb.webhook_secrets', 'tvdb.openai_api_key', 'tvdb.llamaparse_api_key');
RESET ROLE;
SELECT current_setting('tvdb.webhook_secrets') = 'regress-secret' AS superuser_reads_it;
RESET tvdb.webhook_secrets;
-- Nor can they be stored where every role reads them.
ALTER ROLE tvdb_regress_settings SET tvdb.webhook_secrets = 'regress-secret';
ALTER DATABASE postgres SET tvdb.webhook_secrets = 'regress-secret';
CREATE FUNCTION pg_temp.leaky() RETURNS int LANGUAGE sql SET tvdb.webhook_secrets = 'regress-secret' AS 'SELECT 1';
SELECT count(*) AS stored FROM pg_db_role_setting WHERE array_to_string(setconfig, ',') LIKE '%webhook_secrets%';

-- Nothing in tvdb is executable by PUBLIC but the HMAC arithmetic.
SELECT p.oid::regprocedure AS public_function
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'tvdb' AND has_function_privilege('public', p.oid, 'EXECUTE') ORDER BY 1;
-- Every application function runs as its definer with a pinned search_path.
SELECT p.oid::regprocedure AS app_function, p.prosecdef, p.proconfig
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'tvdb' AND has_function_privilege('tvdb_app', p.oid, 'EXECUTE')
  AND p.proname NOT IN ('version', 'status_table', 'transition_table', 'parse_route', '_may_see')
ORDER BY 1;
-- No role has any privilege on the tables but their owner.
SELECT count(*) AS table_grants FROM information_schema.role_table_grants
WHERE table_schema = 'upload_pipeline' AND grantee <> (SELECT rolname FROM pg_roles WHERE oid = 10);

DELETE FROM upload_pipeline.events WHERE job_id IN (:'job1', :'job2');
DELETE FROM upload_pipeline.documents WHERE filename IN ('app1.md', 'app2.md');
DELETE FROM upload_pipeline.blobs b WHERE NOT EXISTS (SELECT FROM upload_pipeline.documents d WHERE d.storage_path = b.path)
  AND b.path LIKE 'storage://uploads/%';
DROP ROLE tvdb_regress_app1, tvdb_regress_app2, tvdb_regress_watch, tvdb_regress_hook, tvdb_regress_settings;
