-- (a) bare: no triggers.  The application writes what the triggers would:
-- the new status, the stamps, the attempt count on the retry edge, and the
-- event row, in one statement (one round trip, like the other variants).
-- The self-join o reads the row as it was before the update, for
-- in_previous_state; from_status is the other status of the toggle.  No
-- validation and no NOTIFY.
\set n random(1, :jobs)
WITH upd AS (
    UPDATE bench.jobs_bare j
    SET status = CASE j.status WHEN 'parse_queued' THEN 'failed_parse' ELSE 'parse_queued' END,
        attempts = j.attempts + CASE j.status WHEN 'failed_parse' THEN 1 ELSE 0 END,
        status_changed_at = now(),
        updated_at = now()
    FROM bench.jobs_bare o
    WHERE j.job_id = md5('job' || (:n)::text)::uuid AND o.job_id = j.job_id
    RETURNING j.job_id, j.document_id, j.correlation_id, j.attempts, j.status,
              j.status_changed_at - o.status_changed_at AS in_previous_state
)
INSERT INTO bench.events_bare (job_id, document_id, type, severity, code, payload,
                               correlation_id, ts, from_status, to_status,
                               in_previous_state, attempt)
SELECT job_id, document_id,
       CASE status WHEN 'failed_parse' THEN 'stage_error' ELSE 'stage_started' END,
       CASE status WHEN 'failed_parse' THEN 'error' ELSE 'warn' END,
       CASE status WHEN 'failed_parse' THEN 'parse_failed' ELSE 'parse_retried' END,
       '{}', correlation_id, now(),
       CASE status WHEN 'failed_parse' THEN 'parse_queued' ELSE 'failed_parse' END,
       status, in_previous_state, attempts
FROM upd;
