-- (a0) bare, lean: bare.sql without the self-join that reads the old row, so
-- in_previous_state is left NULL.  Not the same event row as the others: a
-- lower bound showing what the old-row lookup costs the bare variant.  Only
-- used in run.sh's mixed run.  Same tables as bare.sql.
\set n random(1, :jobs)
WITH upd AS (
    UPDATE bench.jobs_bare j
    SET status = CASE j.status WHEN 'parse_queued' THEN 'failed_parse' ELSE 'parse_queued' END,
        attempts = j.attempts + CASE j.status WHEN 'failed_parse' THEN 1 ELSE 0 END,
        status_changed_at = now(),
        updated_at = now()
    WHERE j.job_id = md5('job' || (:n)::text)::uuid
    RETURNING j.job_id, j.document_id, j.correlation_id, j.attempts, j.status
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
       status, NULL, attempts
FROM upd;
