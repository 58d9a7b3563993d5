-- Every (from, to) pair of job statuses, table-driven: each edge DESIGN.md
-- allows is accepted and writes exactly one event with the right vocabulary;
-- every other pair is rejected with SQLSTATE TV001 and writes nothing.
\set VERBOSITY default
\set SHOW_CONTEXT never

-- The edges as DESIGN.md states them, written out here independently of the
-- C table so that a change to either one shows up as a difference.
CREATE TEMP TABLE spec_edges (from_status text, to_status text, type text, severity text, code text);
INSERT INTO spec_edges VALUES
  (NULL,                    'uploaded',              'stage_done',    'info',  'upload_received'),
  ('uploaded',              'parse_queued',          'stage_started', 'info',  'parse_queued'),
  ('parse_queued',          'parsed',                'stage_done',    'info',  'parse_completed'),
  ('parsed',                'chunking',              'stage_started', 'info',  'chunking_started'),
  ('chunking',              'chunks_stored',         'stage_done',    'info',  'chunking_completed'),
  ('chunks_stored',         'embedding_queued',      'stage_started', 'info',  'embedding_queued'),
  ('embedding_queued',      'embedding_in_progress', 'stage_started', 'info',  'embedding_started'),
  ('embedding_in_progress', 'embeddings_stored',     'stage_done',    'info',  'embedding_completed'),
  ('embeddings_stored',     'complete',              'stage_done',    'info',  'pipeline_completed'),
  ('uploaded',              'failed_parse',          'stage_error',   'error', 'parse_failed'),
  ('parse_queued',          'failed_parse',          'stage_error',   'error', 'parse_failed'),
  ('parsed',                'failed_chunking',       'stage_error',   'error', 'chunking_failed'),
  ('chunking',              'failed_chunking',       'stage_error',   'error', 'chunking_failed'),
  ('chunks_stored',         'failed_embedding',      'stage_error',   'error', 'embedding_failed'),
  ('embedding_queued',      'failed_embedding',      'stage_error',   'error', 'embedding_failed'),
  ('embedding_in_progress', 'failed_embedding',      'stage_error',   'error', 'embedding_failed'),
  ('failed_parse',          'uploaded',              'stage_started', 'warn',  'parse_retried'),
  ('failed_parse',          'parse_queued',          'stage_started', 'warn',  'parse_retried'),
  ('failed_chunking',       'parsed',                'stage_started', 'warn',  'chunking_retried'),
  ('failed_embedding',      'embedding_queued',      'stage_started', 'warn',  'embedding_retried');
-- tvdb.cancel(): from every status but complete, into a terminal status.
INSERT INTO spec_edges
SELECT s, 'cancelled', 'stage_error', 'warn', 'pipeline_cancelled'
FROM unnest(ARRAY['uploaded', 'parse_queued', 'parsed', 'chunking', 'chunks_stored', 'embedding_queued',
                  'embedding_in_progress', 'embeddings_stored',
                  'failed_parse', 'failed_chunking', 'failed_embedding']) s;

-- The view shows exactly the specified edges (both differences are empty).
SELECT 'in view, not in spec' AS problem, from_status, to_status FROM
  (SELECT from_status, to_status, event_type, severity, code FROM tvdb.allowed_transitions
   EXCEPT SELECT * FROM spec_edges) x
UNION ALL
SELECT 'in spec, not in view', from_status, to_status FROM
  (SELECT * FROM spec_edges
   EXCEPT SELECT from_status, to_status, event_type, severity, code FROM tvdb.allowed_transitions) y;

-- A shortest legal path from uploaded to each status, to set up each pair.
CREATE TEMP TABLE paths (status text PRIMARY KEY, path text[]);
INSERT INTO paths VALUES
  ('uploaded',              '{}'),
  ('parse_queued',          '{parse_queued}'),
  ('parsed',                '{parse_queued,parsed}'),
  ('chunking',              '{parse_queued,parsed,chunking}'),
  ('chunks_stored',         '{parse_queued,parsed,chunking,chunks_stored}'),
  ('embedding_queued',      '{parse_queued,parsed,chunking,chunks_stored,embedding_queued}'),
  ('embedding_in_progress', '{parse_queued,parsed,chunking,chunks_stored,embedding_queued,embedding_in_progress}'),
  ('embeddings_stored',     '{parse_queued,parsed,chunking,chunks_stored,embedding_queued,embedding_in_progress,embeddings_stored}'),
  ('complete',              '{parse_queued,parsed,chunking,chunks_stored,embedding_queued,embedding_in_progress,embeddings_stored,complete}'),
  ('failed_parse',          '{failed_parse}'),
  ('failed_chunking',       '{parse_queued,parsed,failed_chunking}'),
  ('failed_embedding',      '{parse_queued,parsed,chunking,chunks_stored,failed_embedding}'),
  ('cancelled',             '{cancelled}');

-- Try one change with a plain UPDATE; report 'ok' or the SQLSTATE.
CREATE FUNCTION pg_temp.try_update(job uuid, target text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  UPDATE upload_pipeline.upload_jobs SET status = target WHERE job_id = job;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE;
END $$;

CREATE TEMP TABLE outcomes AS
SELECT f.status AS from_status, t.status AS to_status, f.path,
       tvdb.upload(f.status || '-' || t.status || '.txt', 'x') AS job_id,
       NULL::bigint AS events_before, NULL::text AS result
FROM paths f CROSS JOIN paths t;

DO $$
DECLARE o record; s text;
BEGIN
  FOR o IN SELECT * FROM outcomes LOOP
    FOREACH s IN ARRAY o.path LOOP
      PERFORM tvdb.transition(o.job_id, s);
    END LOOP;
  END LOOP;
END $$;

UPDATE outcomes o SET events_before =
  (SELECT count(*) FROM upload_pipeline.events e WHERE e.job_id = o.job_id);
UPDATE outcomes o SET result = pg_temp.try_update(o.job_id, o.to_status);

-- The full matrix: 169 pairs.
SELECT o.from_status, o.to_status, o.result,
       (SELECT count(*) FROM upload_pipeline.events e WHERE e.job_id = o.job_id) - o.events_before AS new_events,
       (SELECT j.status FROM upload_pipeline.upload_jobs j WHERE j.job_id = o.job_id) AS status_now
FROM outcomes o
JOIN tvdb.statuses fs ON fs.status = o.from_status
JOIN tvdb.statuses ts ON ts.status = o.to_status
ORDER BY fs.ordinal, ts.ordinal;

-- Summary against the spec: every spec edge accepted with one event, every
-- other change rejected with TV001 and no event, every no-op silent.
SELECT CASE WHEN o.from_status = o.to_status THEN 'same status'
            WHEN s.to_status IS NOT NULL THEN 'allowed by spec'
            ELSE 'not allowed by spec' END AS kind,
       o.result,
       (SELECT count(*) FROM upload_pipeline.events e WHERE e.job_id = o.job_id) - o.events_before AS new_events,
       count(*) AS pairs
FROM outcomes o
LEFT JOIN spec_edges s ON s.from_status = o.from_status AND s.to_status = o.to_status
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;

-- The event written for each accepted pair has the spec's vocabulary, the
-- from and to statuses, and the attempt number.
SELECT count(*) AS accepted_edges,
       count(*) FILTER (WHERE e.type = s.type AND e.severity = s.severity AND e.code = s.code
                          AND e.from_status = s.from_status AND e.to_status = s.to_status
                          AND e.in_previous_state IS NOT NULL
                          AND e.correlation_id = j.correlation_id
                          AND e.attempt = j.attempts) AS events_matching_spec
FROM outcomes o
JOIN spec_edges s ON s.from_status = o.from_status AND s.to_status = o.to_status
JOIN upload_pipeline.upload_jobs j ON j.job_id = o.job_id
JOIN LATERAL (SELECT * FROM upload_pipeline.events e WHERE e.job_id = o.job_id
              ORDER BY e.seq DESC LIMIT 1) e ON true;

-- A job is created only in the initial status.
INSERT INTO upload_pipeline.upload_jobs (document_id, status)
  SELECT document_id, 'parsed' FROM upload_pipeline.documents LIMIT 1;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO upload_pipeline.upload_jobs (document_id, status)
  SELECT document_id, 'done' FROM upload_pipeline.documents LIMIT 1;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO upload_pipeline.upload_jobs (document_id, status)
  SELECT document_id, NULL FROM upload_pipeline.documents LIMIT 1;
\echo :LAST_ERROR_SQLSTATE

-- The messages name from, to and what is allowed.
SELECT tvdb.upload('msg.txt', 'x') AS job \gset
UPDATE upload_pipeline.upload_jobs SET status = 'complete' WHERE job_id = :'job';
\echo :LAST_ERROR_SQLSTATE
UPDATE upload_pipeline.upload_jobs SET status = 'finished' WHERE job_id = :'job';
\echo :LAST_ERROR_SQLSTATE
UPDATE upload_pipeline.upload_jobs SET status = NULL WHERE job_id = :'job';
\echo :LAST_ERROR_SQLSTATE
SELECT j.job_id AS done_job FROM outcomes o JOIN upload_pipeline.upload_jobs j USING (job_id)
  WHERE j.status = 'complete' LIMIT 1 \gset
UPDATE upload_pipeline.upload_jobs SET status = 'uploaded' WHERE job_id = :'done_job';
\echo :LAST_ERROR_SQLSTATE

-- A bulk UPDATE is checked row by row, and one bad row rejects the statement.
SELECT count(*) AS uploaded_before FROM upload_pipeline.upload_jobs WHERE status = 'uploaded' \gset
UPDATE upload_pipeline.upload_jobs SET status = 'parse_queued';
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) = :uploaded_before AS nothing_changed FROM upload_pipeline.upload_jobs WHERE status = 'uploaded';
SELECT count(*) AS events_before FROM upload_pipeline.events \gset
UPDATE upload_pipeline.upload_jobs SET status = 'parse_queued' WHERE status = 'uploaded';
SELECT count(*) - :events_before AS new_events, :uploaded_before AS moved FROM upload_pipeline.events;

-- A later user trigger that changes the status cannot slip past the check:
-- the AFTER trigger looks the edge up again.
CREATE FUNCTION pg_temp.sneak() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.status := 'complete'; RETURN NEW; END $$;
CREATE TRIGGER zz_sneak BEFORE UPDATE ON upload_pipeline.upload_jobs
  FOR EACH ROW WHEN (NEW.status = 'parsed') EXECUTE FUNCTION pg_temp.sneak();
SELECT tvdb.upload('sneak.txt', 'x') AS sneak \gset
SELECT tvdb.transition(:'sneak', 'parse_queued');
UPDATE upload_pipeline.upload_jobs SET status = 'parsed' WHERE job_id = :'sneak';
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER zz_sneak ON upload_pipeline.upload_jobs;
SELECT status FROM upload_pipeline.upload_jobs WHERE job_id = :'sneak';

-- Misuse of the trigger functions.
CREATE TEMP TABLE not_jobs (id int, status text);
CREATE TRIGGER t BEFORE INSERT ON not_jobs FOR EACH ROW EXECUTE FUNCTION tvdb.guard_status();
INSERT INTO not_jobs VALUES (1, 'uploaded');
\echo :LAST_ERROR_SQLSTATE
CREATE TRIGGER t2 AFTER DELETE ON not_jobs FOR EACH ROW EXECUTE FUNCTION tvdb.record_event();
DROP TRIGGER t ON not_jobs;
INSERT INTO not_jobs VALUES (1, 'uploaded');
DELETE FROM not_jobs;
\echo :LAST_ERROR_SQLSTATE

-- A job that failed, was retried and completed shows no error any more
-- (its failure stays in its events).
SELECT tvdb.upload('lasterr.md', convert_to('x', 'UTF8')) AS le \gset
SELECT tvdb.transition(:'le', s, CASE s WHEN 'failed_embedding' THEN '{"error": "HTTP 500: boom"}' ELSE '{}' END::jsonb)
FROM unnest(ARRAY['parse_queued', 'parsed', 'chunking', 'chunks_stored', 'embedding_queued', 'failed_embedding']) s;
SELECT status, last_error FROM upload_pipeline.upload_jobs WHERE job_id = :'le';
SELECT tvdb.transition(:'le', s) FROM unnest(ARRAY['embedding_queued', 'embedding_in_progress', 'embeddings_stored', 'complete']) s;
SELECT status, last_error, (SELECT count(*) FROM upload_pipeline.events e WHERE e.job_id = :'le' AND e.payload ->> 'error' = 'HTTP 500: boom') AS in_events
FROM upload_pipeline.upload_jobs WHERE job_id = :'le';
