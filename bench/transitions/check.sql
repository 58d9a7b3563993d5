-- bench/transitions/check.sql — run by run.sh after one pgbench transaction of
-- each variant on job 1 (-t 2: both edges of the toggle).  Fails unless the
-- three variants left the same job row and wrote the same event rows, and
-- unless both trigger variants reject an illegal edge.
\set ON_ERROR_STOP 1
\pset footer off
\echo == job 1 after two transitions, and its last two events, per variant
WITH j AS (
    SELECT 'tvdb' AS variant, * FROM upload_pipeline.upload_jobs
    UNION ALL SELECT 'bare', * FROM bench.jobs_bare
    UNION ALL SELECT 'plpgsql', * FROM bench.jobs_plpgsql
)
SELECT variant, status, attempts, status_changed_at > now() - interval '1 minute' AS stamped,
       updated_at = status_changed_at AS updated_too
FROM j WHERE job_id = md5('job1')::uuid ORDER BY variant;

CREATE TEMP VIEW last_events AS
SELECT variant, seq, job_id, document_id, type, severity, code, payload, correlation_id,
       ts > now() - interval '1 minute' AS ts_now, from_status, to_status, in_previous_state IS NOT NULL AS has_interval,
       attempt
FROM (SELECT 'tvdb' AS variant, *, row_number() OVER (ORDER BY seq DESC) AS r FROM upload_pipeline.events WHERE job_id = md5('job1')::uuid
      UNION ALL
      SELECT 'bare', *, row_number() OVER (ORDER BY seq DESC) FROM bench.events_bare WHERE job_id = md5('job1')::uuid
      UNION ALL
      SELECT 'plpgsql', *, row_number() OVER (ORDER BY seq DESC) FROM bench.events_plpgsql WHERE job_id = md5('job1')::uuid) e
WHERE r <= 2;
SELECT variant, from_status, to_status, type, severity, code, payload, attempt, ts_now, has_interval
FROM last_events ORDER BY variant, seq;

DO $$
DECLARE
    n_jobs int;
    n_events int;
BEGIN
    SELECT count(DISTINCT (status, attempts, status_changed_at > now() - interval '1 minute',
                          updated_at = status_changed_at))
    INTO n_jobs
    FROM (SELECT * FROM upload_pipeline.upload_jobs UNION ALL SELECT * FROM bench.jobs_bare
          UNION ALL SELECT * FROM bench.jobs_plpgsql) j
    WHERE job_id = md5('job1')::uuid;
    SELECT count(*) INTO n_events FROM (
        SELECT job_id, document_id, type, severity, code, payload, correlation_id, ts_now,
               from_status, to_status, has_interval, attempt, count(*)
        FROM last_events
        GROUP BY job_id, document_id, type, severity, code, payload, correlation_id, ts_now,
                 from_status, to_status, has_interval, attempt
        HAVING count(*) = 3) same;
    IF n_jobs <> 1 OR n_events <> 2 THEN
        RAISE EXCEPTION 'the variants do not write the same rows (job rows: % kinds, events in common: %)',
            n_jobs, n_events;
    END IF;

    BEGIN
        UPDATE upload_pipeline.upload_jobs SET status = 'complete' WHERE job_id = md5('job1')::uuid;
        RAISE EXCEPTION 'tvdb accepted an illegal edge';
    EXCEPTION WHEN SQLSTATE 'TV001' THEN NULL;
    END;
    BEGIN
        UPDATE bench.jobs_plpgsql SET status = 'complete' WHERE job_id = md5('job1')::uuid;
        RAISE EXCEPTION 'plpgsql accepted an illegal edge';
    EXCEPTION WHEN SQLSTATE 'TV001' THEN NULL;
    END;
END
$$;
\echo == same job row and same event rows in all three variants; illegal edge rejected by tvdb and plpgsql
