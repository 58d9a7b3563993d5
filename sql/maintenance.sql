-- Maintenance that pg_cron runs: retrying jobs that ran out of tries,
-- giving back lapsed leases, alerting about stuck jobs; and the dead letters.
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE FUNCTION pg_temp.failed(name text, to_status text, class text) RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE j uuid := tvdb.upload(name, 'x');
BEGIN
  IF to_status = 'failed_embedding' THEN
    PERFORM tvdb.transition(j, s) FROM unnest(ARRAY['parse_queued', 'parsed', 'chunking', 'chunks_stored',
                                                   'embedding_queued', 'embedding_in_progress']) s;
  END IF;
  PERFORM tvdb.transition(j, to_status, jsonb_build_object('error', 'HTTP 503 (gave up)', 'class', class));
  RETURN j;
END $$;
SELECT pg_temp.failed('m-exhausted.pdf', 'failed_parse', 'retries_exhausted') AS ex,
       pg_temp.failed('m-exhausted-e.pdf', 'failed_embedding', 'retries_exhausted') AS exe,
       pg_temp.failed('m-permanent.pdf', 'failed_parse', 'permanent') AS perm \gset

-- Too soon (tvdb.job_retry_delay, 1 min, not over): nothing.
SELECT tvdb.retry_failed() AS retried;
-- A minute later: the two that ran out of tries go back through their retry edge; the permanent one stays.
UPDATE upload_pipeline.upload_jobs SET status_changed_at = now() - interval '61 seconds'
WHERE job_id IN (:'ex', :'exe', :'perm');
SELECT tvdb.retry_failed() AS retried;
SELECT filename, status, attempts, failure_class FROM tvdb.jobs WHERE filename LIKE 'm-%' ORDER BY filename;
SELECT code, payload FROM upload_pipeline.events WHERE job_id = :'ex' ORDER BY seq DESC LIMIT 1;

-- Out of retries (tvdb.max_job_retries = 3): a dead letter, with every error it met.
UPDATE upload_pipeline.upload_jobs SET attempts = 4 WHERE job_id = :'ex';
SELECT tvdb.transition(:'ex', 'failed_parse', '{"error": "HTTP 503 again", "class": "retries_exhausted"}');
UPDATE upload_pipeline.upload_jobs SET status_changed_at = now() - interval '1 day' WHERE job_id = :'ex';
SELECT tvdb.retry_failed() AS retried;
SELECT filename, status, failure_class, attempts, jsonb_array_length(errors) AS errors_met,
       errors -> -1 ->> 'error' AS last
FROM tvdb.dead_letters WHERE filename LIKE 'm-%' ORDER BY filename;

-- Lapsed leases are given back, with one alert; jobs stuck in a working
-- status longer than tvdb.stuck_after (1 h) raise one too.
DELETE FROM upload_pipeline.alerts WHERE kind IN ('lease_reaped', 'stuck_jobs');
SELECT tvdb.upload('m-leased.pdf', 'x') AS leased \gset
UPDATE upload_pipeline.upload_jobs SET lease_owner = 'dead worker', lease_expires_at = now() - interval '1 second',
       status_changed_at = now() - interval '2 hours'
WHERE job_id = :'leased';
SELECT leases_reaped, stuck_jobs >= 1 AS some_stuck FROM tvdb.reap_stuck();
SELECT lease_owner, lease_expires_at FROM upload_pipeline.upload_jobs WHERE job_id = :'leased';
SELECT kind, severity, count FROM tvdb.alerts WHERE kind IN ('lease_reaped', 'stuck_jobs') ORDER BY kind;
SELECT (tvdb.reap_stuck()).leases_reaped AS again;

-- pg_cron is in another database here (cron.database_name): the error says what to run there.
SELECT tvdb.schedule_maintenance();
SELECT tvdb.unschedule_maintenance() AS removed;

-- Leave the shared database as it was for the tests after this one.
DELETE FROM upload_pipeline.documents WHERE filename LIKE 'm-%';
