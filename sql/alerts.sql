-- Alerts: a row per kind and service while it keeps happening (a count),
-- raised by any path that fails a job, and by a service refusing the key.
\set VERBOSITY default
\set SHOW_CONTEXT never
DELETE FROM upload_pipeline.alerts;

-- Three parse failures and one embedding failure: two rows, not four.
SELECT tvdb.transition(tvdb.upload(format('alert-%s.pdf', i), 'x'), 'failed_parse',
                       jsonb_build_object('error', 'scanned image ' || i))
FROM generate_series(1, 3) i;
SELECT kind, severity, service, count, message ~ '^job [0-9a-f-]+ failed_parse: scanned image 3$' AS latest_message,
       details
FROM tvdb.alerts ORDER BY kind, service;
SELECT tvdb.upload('alert-e.pdf', 'x') AS e \gset
SELECT tvdb.transition(:'e', s) FROM unnest(ARRAY['parse_queued', 'parsed', 'chunking', 'chunks_stored',
                                                 'embedding_queued', 'embedding_in_progress']) s;
SELECT tvdb.transition(:'e', 'failed_embedding', '{"error": "HTTP 500 (gave up after 8 tries)", "class": "retries_exhausted"}');
SELECT kind, service, count FROM tvdb.alerts ORDER BY kind, service;

-- An application role that fails a job by hand needs no right on the alerts.
CREATE ROLE tvdb_regress_app;
GRANT USAGE ON SCHEMA tvdb, upload_pipeline TO tvdb_regress_app;
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA upload_pipeline TO tvdb_regress_app;
REVOKE ALL ON upload_pipeline.alerts FROM tvdb_regress_app;
SELECT tvdb.upload('alert-app.pdf', 'x') AS app \gset
SET ROLE tvdb_regress_app;
UPDATE upload_pipeline.upload_jobs SET status = 'failed_parse', last_error = 'by hand' WHERE job_id = :'app';
SELECT count(*) FROM upload_pipeline.alerts;
RESET ROLE;
SELECT kind, service, count FROM tvdb.alerts WHERE kind = 'job_failed';
REVOKE ALL ON ALL TABLES IN SCHEMA upload_pipeline FROM tvdb_regress_app;
REVOKE USAGE ON SCHEMA tvdb, upload_pipeline FROM tvdb_regress_app;
DROP ROLE tvdb_regress_app;

-- A refused key is the service's alert, critical, and the job is not failed.
CREATE FUNCTION pg_temp.leased(name text) RETURNS uuid LANGUAGE sql AS $$
  UPDATE upload_pipeline.upload_jobs SET lease_owner = 'regress', lease_expires_at = now() + interval '1 minute'
  WHERE job_id = tvdb.upload(name, 'x') RETURNING job_id
$$;
SELECT tvdb._parse_submitted(pg_temp.leased('alert-k' || i || '.pdf'), 'regress', 401, '{"detail": "Invalid API key"}', 5, NULL, NULL, 1000)
FROM generate_series(1, 2) i;
SELECT kind, severity, service, count, message FROM tvdb.alerts WHERE kind LIKE 'service_%';
SELECT count(*) AS failed FROM tvdb.jobs WHERE filename LIKE 'alert-k%' AND status LIKE 'failed%';

-- Outside the window, a new row.
UPDATE upload_pipeline.alerts SET last_at = now() - interval '1 hour' WHERE kind = 'service_auth';
SELECT tvdb._parse_submitted(pg_temp.leased('alert-k3.pdf'), 'regress', 401, '{"detail": "Invalid API key"}', 5, NULL, NULL, 1000);
SELECT count, last_at > now() - interval '1 minute' AS recent FROM tvdb.alerts WHERE kind = 'service_auth' ORDER BY alert_id;
