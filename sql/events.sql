-- Events written by the C trigger: one per accepted change, in the same
-- transaction, with the job's correlation id, timings and attempt number.
-- Also the replaced system's own statements, which must run unchanged.
\set VERBOSITY default
\set SHOW_CONTEXT never

SELECT tvdb.upload('report.md', convert_to('# Report', 'UTF8'), NULL,
                   'aaaaaaaa-0000-4000-8000-000000000001') AS job \gset

-- Creation wrote the first event.
SELECT from_status, to_status, type, severity, code, attempt, payload,
       correlation_id, in_previous_state
FROM upload_pipeline.events WHERE job_id = :'job' ORDER BY seq;

-- detail lands in the payload; the time in the previous state is recorded.
SELECT tvdb.transition(:'job', 'parse_queued', '{"parser": "llamaparse", "pages": 3}');
SELECT from_status, to_status, type, code, payload,
       in_previous_state >= '0'::interval AS timed,
       correlation_id = 'aaaaaaaa-0000-4000-8000-000000000001' AS same_correlation
FROM upload_pipeline.events WHERE job_id = :'job' ORDER BY seq DESC LIMIT 1;

-- Setting the current status again: no event, no change of timestamps.
SELECT status_changed_at AS changed_at FROM upload_pipeline.upload_jobs WHERE job_id = :'job' \gset
UPDATE upload_pipeline.upload_jobs SET status = 'parse_queued' WHERE job_id = :'job';
SELECT tvdb.transition(:'job', 'parse_queued');
SELECT count(*) AS events, max(j.status_changed_at) = :'changed_at' AS unchanged
FROM upload_pipeline.events e JOIN upload_pipeline.upload_jobs j USING (job_id)
WHERE job_id = :'job';

-- Updates that leave the status alone write nothing either.
UPDATE upload_pipeline.upload_jobs SET parse_job_id = 'lp-123' WHERE job_id = :'job';
SELECT count(*) AS events FROM upload_pipeline.events WHERE job_id = :'job';

-- A rolled-back change leaves neither the change nor its event.
BEGIN;
SELECT tvdb.transition(:'job', 'failed_parse', '{"error": "boom"}');
SELECT count(*) AS events_inside FROM upload_pipeline.events WHERE job_id = :'job';
ROLLBACK;
SELECT status, last_error, attempts FROM upload_pipeline.upload_jobs WHERE job_id = :'job';
SELECT count(*) AS events FROM upload_pipeline.events WHERE job_id = :'job';

-- A failure keeps detail.error as last_error; a retry counts a new attempt.
SELECT tvdb.transition(:'job', 'failed_parse', '{"error": "parser timed out"}');
SELECT status, last_error, attempts FROM upload_pipeline.upload_jobs WHERE job_id = :'job';
SELECT tvdb.transition(:'job', 'parse_queued', '{"reason": "retry"}');
SELECT status, last_error, attempts FROM upload_pipeline.upload_jobs WHERE job_id = :'job';
SELECT from_status, to_status, type, severity, code, attempt, payload
FROM upload_pipeline.events WHERE job_id = :'job' ORDER BY seq;

-- The replaced system's statements, unchanged, with parameters.
PREPARE legacy_parsed(text, text, uuid) AS
  UPDATE upload_pipeline.upload_jobs SET status = 'parsed', parsed_path = $1, parsed_sha256 = $2, updated_at = now() WHERE job_id = $3;
PREPARE legacy_failed(text, uuid) AS
  UPDATE upload_pipeline.upload_jobs SET status = 'failed_parse', last_error = $1, updated_at = now() WHERE job_id = $2;
PREPARE legacy_event(uuid, uuid, uuid, text, text, text, jsonb, uuid) AS
  INSERT INTO upload_pipeline.events (event_id, job_id, document_id, type, severity, code, payload, correlation_id, ts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NOW());

EXECUTE legacy_parsed('storage://parsed/doc/job.md', repeat('ab', 32), :'job');
SELECT status, parsed_path, parsed_sha256 = repeat('ab', 32) AS sha_ok
FROM upload_pipeline.upload_jobs WHERE job_id = :'job';
SELECT to_status, code FROM upload_pipeline.events WHERE job_id = :'job' ORDER BY seq DESC LIMIT 1;

-- failed_parse is reachable only from uploaded / parse_queued: from parsed
-- the replaced statement is refused, as the state machine requires.
EXECUTE legacy_failed('too late', :'job');
\echo :LAST_ERROR_SQLSTATE

SELECT tvdb.upload('second.pdf', '\x255044462d', 'application/pdf') AS job2 \gset
SELECT tvdb.transition(:'job2', 'parse_queued');
EXECUTE legacy_failed('LlamaParse: unsupported file', :'job2');
SELECT status, last_error FROM upload_pipeline.upload_jobs WHERE job_id = :'job2';
SELECT to_status, type, severity, code FROM upload_pipeline.events
WHERE job_id = :'job2' ORDER BY seq DESC LIMIT 1;

-- Applications may still insert their own events.
SELECT document_id AS doc, correlation_id AS corr FROM upload_pipeline.upload_jobs WHERE job_id = :'job2' \gset
EXECUTE legacy_event('bbbbbbbb-0000-4000-8000-000000000002', :'job2', :'doc', 'stage_error',
                     'warn', 'parse_webhook_late', '{"note": "app event"}', :'corr');
SELECT type, severity, code, payload, from_status IS NULL AS no_from
FROM upload_pipeline.events WHERE event_id = 'bbbbbbbb-0000-4000-8000-000000000002';
\set VERBOSITY terse
EXECUTE legacy_event('bbbbbbbb-0000-4000-8000-000000000003', :'job2', :'doc', 'stage_error',
                     'fatal', 'x', '{}', :'corr');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default

-- Stage timings, attempts and last error as an application sees them.
SELECT status, attempts, last_error, jsonb_object_keys(stage_seconds) AS past_statuses
FROM tvdb.jobs WHERE job_id = :'job';
SELECT count(*) AS history_rows, min(seq) < max(seq) AS ordered FROM tvdb.job_history(:'job');

-- A change made from inside another (a user trigger moving a second job
-- while the first one's UPDATE runs) keeps both movers' details: the
-- outer detail reaches the outer job's event and last_error, the inner
-- detail the inner job's.
CREATE TEMP TABLE nested_pair AS
SELECT tvdb.upload('outer.txt', 'o'::bytea) AS outer_job, tvdb.upload('inner.txt', 'i'::bytea) AS inner_job;
CREATE FUNCTION pg_temp.move_inner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.job_id = (SELECT outer_job FROM nested_pair) THEN
        PERFORM tvdb.transition((SELECT inner_job FROM nested_pair), 'failed_parse', '{"error": "inner reason"}');
    END IF;
    RETURN NULL;
END $$;
-- named to fire before tvdb_record_update, which writes the outer event
CREATE TRIGGER a_move_inner AFTER UPDATE ON upload_pipeline.upload_jobs
    FOR EACH ROW EXECUTE FUNCTION pg_temp.move_inner();
SELECT tvdb.transition(outer_job, 'failed_parse', '{"error": "outer reason"}') FROM nested_pair;
DROP TRIGGER a_move_inner ON upload_pipeline.upload_jobs;
SELECT d.filename, j.status, j.last_error, e.payload ->> 'error' AS event_error
FROM nested_pair p JOIN upload_pipeline.upload_jobs j ON j.job_id IN (p.outer_job, p.inner_job)
JOIN upload_pipeline.documents d USING (document_id)
JOIN upload_pipeline.events e ON e.job_id = j.job_id AND e.to_status = 'failed_parse'
ORDER BY 1;
