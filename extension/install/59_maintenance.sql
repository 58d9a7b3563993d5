-- Scheduled maintenance: plain SQL functions that pg_cron runs every minute
-- (tvdb.schedule_maintenance()) and an operator may call by hand.
--
--  tvdb.retry_failed(): a job that failed with class retries_exhausted
--    (its service kept failing) goes back through its retry edge after a
--    delay that doubles with each retry (tvdb.job_retry_delay), at most
--    tvdb.max_job_retries times; after that it is a dead letter.
--  tvdb.reap_stuck(): gives back leases that lapsed (a worker died) and
--    alerts about jobs in one working status for longer than
--    tvdb.stuck_after.

-- The retry edge out of each failure status.
CREATE FUNCTION tvdb._retry_target(failed_status text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE failed_status WHEN 'failed_parse' THEN 'uploaded'
                              WHEN 'failed_chunking' THEN 'parsed'
                              WHEN 'failed_embedding' THEN 'embedding_queued' END
$$;
COMMENT ON FUNCTION tvdb._retry_target(text) IS 'internal: where tvdb.retry_failed() sends a job that failed';

CREATE FUNCTION tvdb.retry_failed(max_jobs integer DEFAULT 1000) RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j record;
    n integer := 0;
BEGIN
    FOR j IN
        SELECT u.job_id, u.status FROM upload_pipeline.upload_jobs u
        -- the failed jobs are open: the queue holds them, the history need not be read
        WHERE u.job_id = ANY (ARRAY(SELECT q.job_id FROM upload_pipeline.job_queue q JOIN tvdb.statuses s USING (status)
                                    WHERE s.is_failure))
          AND u.failure_class = 'retries_exhausted'
          AND u.attempts <= current_setting('tvdb.max_job_retries')::integer
          AND u.status_changed_at <= now() - current_setting('tvdb.job_retry_delay')::interval * 2 ^ (u.attempts - 1)
        ORDER BY u.status_changed_at
        LIMIT max_jobs
        FOR UPDATE SKIP LOCKED
    LOOP
        IF tvdb.transition(j.job_id, tvdb._retry_target(j.status),
                           jsonb_build_object('via', 'tvdb.retry_failed()'), j.status) THEN
            n := n + 1;
        END IF;
    END LOOP;
    IF n > 0 THEN
        PERFORM tvdb._wake_workers();
    END IF;
    RETURN n;
END
$$;
COMMENT ON FUNCTION tvdb.retry_failed(integer) IS
    'retry jobs that failed with retries_exhausted, after tvdb.job_retry_delay doubling per retry, at most tvdb.max_job_retries times; how many were retried';

CREATE FUNCTION tvdb.reap_stuck(OUT leases_reaped integer, OUT stuck_jobs integer)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    oldest timestamptz;
BEGIN
    WITH reaped AS (
        UPDATE upload_pipeline.upload_jobs u SET lease_owner = NULL, lease_expires_at = NULL
        WHERE u.job_id = ANY (ARRAY(SELECT q.job_id FROM upload_pipeline.job_queue q WHERE q.lease_expires_at < now()))
          AND u.lease_expires_at < now()
        RETURNING u.job_id)
    SELECT count(*) INTO leases_reaped FROM reaped;
    PERFORM tvdb._requests_lost();
    IF leases_reaped > 0 THEN
        PERFORM tvdb._alert('lease_reaped', 'warn', NULL, NULL,
                            format('%s lapsed leases given back (a worker stopped while it held them)', leases_reaped),
                            jsonb_build_object('jobs', leases_reaped));
        PERFORM tvdb._wake_workers();
    END IF;
    EXECUTE format($q$
        SELECT count(*), min(status_changed_at) FROM upload_pipeline.job_queue
        WHERE status IN (%s) AND status_changed_at < now() - current_setting('tvdb.stuck_after')::interval
        $q$, tvdb._status_list(true, false))
    INTO stuck_jobs, oldest;
    IF stuck_jobs > 0 THEN
        PERFORM tvdb._alert('stuck_jobs', 'warn', NULL, NULL,
                            format('%s jobs have been in one working status for longer than tvdb.stuck_after (%s); the oldest since %s',
                                   stuck_jobs, current_setting('tvdb.stuck_after'), oldest),
                            jsonb_build_object('jobs', stuck_jobs, 'oldest', oldest));
    END IF;
END
$$;
COMMENT ON FUNCTION tvdb.reap_stuck() IS
    'give back lapsed leases and alert about jobs stuck in a working status longer than tvdb.stuck_after';

-- Jobs that gave up: failed for good, or out of retries.
CREATE VIEW tvdb.dead_letters AS
    SELECT j.job_id, j.document_id, d.filename, j.status, j.failure_class, j.attempts, j.last_error,
           j.status_changed_at AS failed_at,
           (SELECT jsonb_agg(jsonb_build_object('at', e.ts, 'status', e.to_status, 'error', e.payload ->> 'error')
                             ORDER BY e.seq)
            FROM upload_pipeline.events e
            WHERE e.job_id = j.job_id AND e.payload ? 'error') AS errors
    FROM upload_pipeline.upload_jobs j JOIN upload_pipeline.documents d USING (document_id)
    -- failed jobs are open: found in the queue, not by reading the history
    WHERE j.job_id = ANY (ARRAY(SELECT q.job_id FROM upload_pipeline.job_queue q
                                WHERE q.status IN ('failed_parse', 'failed_chunking', 'failed_embedding')))
      AND j.status IN ('failed_parse', 'failed_chunking', 'failed_embedding')
      AND (j.failure_class IS DISTINCT FROM 'retries_exhausted'
           OR j.attempts > current_setting('tvdb.max_job_retries')::integer);
COMMENT ON VIEW tvdb.dead_letters IS
    'failed jobs that tvdb.retry_failed() will not retry: failed for good, or out of retries; with every error they met';

-- pg_cron: two jobs, every minute, in this database.  pg_cron lives in one
-- database (cron.database_name); from there it runs jobs in any.
CREATE FUNCTION tvdb.schedule_maintenance() RETURNS SETOF bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    db text := current_database();
    name text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in database "%"', db
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('pg_cron lives in the database named by cron.database_name (%s).',
                                  coalesce(current_setting('cron.database_name', true), 'not set')),
                  HINT = format('In that database run: SELECT cron.schedule_in_database(''tvdb-retry-failed-%1$s'', ''* * * * *'', ''SELECT tvdb.retry_failed()'', %2$L); '
                                'SELECT cron.schedule_in_database(''tvdb-reap-stuck-%1$s'', ''* * * * *'', ''SELECT tvdb.reap_stuck()'', %2$L);',
                                db, db);
    END IF;
    -- pg_cron keeps the host and port a job was scheduled with (cron.host,
    -- port): a job from before a change of either would never connect again.
    FOR name IN EXECUTE
        'SELECT jobname FROM cron.job WHERE jobname IN ($1, $2)
            AND (nodename IS DISTINCT FROM $3 OR nodeport IS DISTINCT FROM $4)'
        USING 'tvdb-retry-failed-' || db, 'tvdb-reap-stuck-' || db,
              current_setting('cron.host', true), current_setting('port')::integer
    LOOP
        EXECUTE 'SELECT cron.unschedule($1)' USING name;
    END LOOP;
    RETURN QUERY EXECUTE
        'SELECT cron.schedule_in_database($1, ''* * * * *'', ''SELECT tvdb.retry_failed()'', $3)
         UNION ALL
         SELECT cron.schedule_in_database($2, ''* * * * *'', ''SELECT tvdb.reap_stuck()'', $3)'
        USING 'tvdb-retry-failed-' || db, 'tvdb-reap-stuck-' || db, db;
END
$$;
COMMENT ON FUNCTION tvdb.schedule_maintenance() IS
    'schedule tvdb.retry_failed() and tvdb.reap_stuck() every minute with pg_cron (idempotent); call it in pg_cron''s database';

CREATE FUNCTION tvdb.unschedule_maintenance() RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer := 0;
    name text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RETURN 0;
    END IF;
    FOR name IN EXECUTE 'SELECT jobname FROM cron.job WHERE jobname IN ($1, $2)'
        USING 'tvdb-retry-failed-' || current_database(), 'tvdb-reap-stuck-' || current_database()
    LOOP
        EXECUTE 'SELECT cron.unschedule($1)' USING name;
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION tvdb.unschedule_maintenance() IS 'remove the pg_cron jobs tvdb.schedule_maintenance() made; how many';

REVOKE ALL ON FUNCTION tvdb.retry_failed(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb.reap_stuck() FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb.schedule_maintenance() FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb.unschedule_maintenance() FROM PUBLIC;
