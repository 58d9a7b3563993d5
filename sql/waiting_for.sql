-- tvdb.jobs.waiting_for: why an unfinished job is not moving when the reason
-- is outside it.  The test cluster's workers serve only tvdb_worker, so this
-- database is not served: every unfinished job here says so first.  What the
-- services' requests would wait for is read from tvdb._waiting_for(), the
-- once-per-query function the view joins.
\set VERBOSITY terse
SELECT tvdb._database_served() AS served, tvdb._served_databases() AS listed;
-- tvdb.database is a list of names, as PostgreSQL reads its own lists: a
-- malformed one is refused when set.
\set VERBOSITY default
ALTER SYSTEM SET tvdb.database = 'app,,sales';
ALTER SYSTEM SET tvdb.database = 'sales db';
ALTER SYSTEM SET tvdb.database = 'app, "sales db';
ALTER SYSTEM SET tvdb.database = 'app, ""';
\set VERBOSITY terse

SELECT tvdb.upload('wf-one.md', convert_to('waiting for a worker', 'UTF8')) AS wf1 \gset
SELECT tvdb.upload('wf-two.pdf', convert_to('%PDF-1.4 waiting', 'UTF8'), 'application/pdf') AS wf2 \gset
SELECT status, waiting_for FROM tvdb.jobs WHERE job_id = :'wf1';
-- A finished job waits for nothing.
SELECT tvdb.transition(:'wf2', 'failed_parse', '{"error": "refused"}');
SELECT status, waiting_for FROM tvdb.jobs WHERE job_id = :'wf2';
-- the last column, as the upgrade appends it
SELECT attname FROM pg_attribute WHERE attrelid = 'tvdb.jobs'::regclass AND attnum > 0
ORDER BY attnum DESC LIMIT 1;

-- Only the statuses a worker moves on (from the C table) can wait.
SELECT working FROM tvdb._waiting_for();

-- Real mode (the default) without keys: both services' requests wait for
-- them, as the worker does (it sends nothing to either until both are set).
SHOW tvdb.service_mode;
SELECT every_job, parse, parse_budget, embed FROM tvdb._waiting_for();
ALTER SYSTEM SET tvdb.llamaparse_api_key = 'regress-llamaparse-key';
SELECT pg_reload_conf();
SELECT pg_sleep(0.3);
SELECT every_job, parse, parse_budget, embed FROM tvdb._waiting_for();
ALTER SYSTEM SET tvdb.openai_api_key = 'regress-openai-key';
SELECT pg_reload_conf();
SELECT pg_sleep(0.3);
SELECT every_job, parse, parse_budget, embed FROM tvdb._waiting_for();

-- An exhausted budget holds its service's requests (LlamaParse's only for
-- documents LlamaParse would parse: the view asks tvdb.parse_route).
SELECT tvdb.set_budget('openai', 'day', 0);
SELECT tvdb.set_budget('all', 'month', 0);
SELECT every_job, parse, parse_budget, embed FROM tvdb._waiting_for();
SELECT tvdb.set_budget('openai', 'day', NULL);
SELECT every_job, parse, parse_budget, embed FROM tvdb._waiting_for();
SELECT tvdb.set_budget('all', 'month', NULL);
SELECT every_job, parse, parse_budget, embed FROM tvdb._waiting_for();

ALTER SYSTEM RESET tvdb.llamaparse_api_key;
ALTER SYSTEM RESET tvdb.openai_api_key;
SELECT pg_reload_conf();
SELECT pg_sleep(0.3);
SELECT every_job, parse, parse_budget, embed FROM tvdb._waiting_for();

-- Computed once per query, not once per row.
BEGIN;
SET LOCAL track_functions = 'pl';
SELECT count(*) > 1 AS several_rows, count(waiting_for) > 1 AS several_waiting FROM tvdb.jobs;
SELECT pg_stat_get_xact_function_calls('tvdb._waiting_for()'::regprocedure) AS calls;
COMMIT;

-- Applications and monitors may ask; others may not.
SELECT has_function_privilege('tvdb_app', 'tvdb._waiting_for()', 'EXECUTE') AS app,
       has_function_privilege('tvdb_monitor', 'tvdb._waiting_for()', 'EXECUTE') AS monitor,
       has_function_privilege('public', 'tvdb._waiting_for()', 'EXECUTE') AS public,
       has_function_privilege('tvdb_app', 'tvdb._database_served()', 'EXECUTE') AS app_served;

DELETE FROM upload_pipeline.documents WHERE document_id IN
    (SELECT document_id FROM upload_pipeline.upload_jobs WHERE job_id IN (:'wf1', :'wf2'));
SELECT count(*) AS left_behind FROM tvdb.jobs WHERE filename LIKE 'wf-%';
