-- The queue of open jobs (upload_pipeline.job_queue), kept by the status
-- triggers; moves along a path of statuses in one UPDATE; and the plans of
-- the statements every moving job costs.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;

CREATE FUNCTION pg_temp.queued(j uuid) RETURNS text LANGUAGE sql AS $$
  SELECT coalesce((SELECT concat_ws(' | ', q.status, CASE WHEN q.due_at <= now() THEN 'due' ELSE 'later' END,
                                    CASE WHEN q.lease_expires_at IS NULL THEN 'no lease' ELSE 'leased' END)
                   FROM upload_pipeline.job_queue q WHERE q.job_id = j), 'not queued')
$$;
-- pg_temp.queue_mismatches() and pg_temp.count_mismatches(), shared with the shell tests
-- (pg_regress runs from the top of the tree)
\i test/lib/queue_agrees.sql

-- A new job is queued, due at once; a lease or a poll to wait for makes it
-- due later; a failure keeps it (it may be retried); complete and cancelled
-- take it out, and so does deleting its document.
SELECT tvdb.upload('q1.md', convert_to('# q1', 'UTF8')) AS q1,
       tvdb.upload('q2.md', convert_to('# q2', 'UTF8')) AS q2,
       tvdb.upload('q3.md', convert_to('# q3', 'UTF8')) AS q3 \gset
SELECT pg_temp.queued(:'q1') AS new_job;
UPDATE upload_pipeline.upload_jobs SET lease_owner = 'regress', lease_expires_at = now() + interval '1 hour'
WHERE job_id = :'q1';
SELECT pg_temp.queued(:'q1') AS leased;
UPDATE upload_pipeline.upload_jobs SET lease_owner = NULL, lease_expires_at = NULL WHERE job_id = :'q1';
SELECT tvdb.transition(:'q1', 'parse_queued');
UPDATE upload_pipeline.upload_jobs SET next_poll_at = now() + interval '10 minutes' WHERE job_id = :'q1';
SELECT pg_temp.queued(:'q1') AS polls_later;
SELECT tvdb.transition(:'q1', 'failed_parse', '{"error": "broken"}');
SELECT pg_temp.queued(:'q1') AS failed;
SELECT tvdb.transition(:'q1', 'uploaded');
SELECT pg_temp.queued(:'q1') AS retried;
SELECT tvdb.cancel(:'q2') IS NOT NULL AS cancelled, pg_temp.queued(:'q2');
SELECT tvdb.delete_document(document_id) IS NOT NULL AS deleted FROM upload_pipeline.upload_jobs WHERE job_id = :'q3';
SELECT pg_temp.queued(:'q3') AS after_delete;
SELECT pg_temp.queue_mismatches() AS mismatches, pg_temp.count_mismatches() AS count_mismatches;

-- A move along a path: one UPDATE (one row version), an event per edge in
-- order, the detail in the first; the status passed through was left at once.
SELECT tvdb.upload('p1.md', convert_to('# p1', 'UTF8')) AS p1 \gset
UPDATE upload_pipeline.upload_jobs SET status = 'parse_queued' WHERE job_id = :'p1';
UPDATE upload_pipeline.upload_jobs SET status = 'parsed' WHERE job_id = :'p1';
UPDATE upload_pipeline.upload_jobs SET status = 'chunking', lease_owner = 'regress',
       lease_expires_at = now() + interval '1 hour' WHERE job_id = :'p1';
BEGIN;
SELECT n_tup_upd AS updates_before FROM pg_stat_xact_user_tables
WHERE relid = 'upload_pipeline.upload_jobs'::regclass \gset
SELECT tvdb._advance_path(ARRAY[:'p1'::uuid], 'regress', '{chunking,chunks_stored,embedding_queued}',
                          ARRAY['{"chunks": 3}'::jsonb]) = ARRAY[:'p1'::uuid] AS moved;
SELECT n_tup_upd - :updates_before AS row_versions FROM pg_stat_xact_user_tables
WHERE relid = 'upload_pipeline.upload_jobs'::regclass;
COMMIT;
SELECT from_status, to_status, code, payload, in_previous_state = interval '0' AS left_at_once
FROM upload_pipeline.events WHERE job_id = :'p1' AND from_status IN ('chunking', 'chunks_stored') ORDER BY seq;
SELECT status, lease_owner, pg_temp.queued(:'p1') FROM upload_pipeline.upload_jobs WHERE job_id = :'p1';

-- Every edge of a path is checked: none may be skipped, none unknown; a job
-- not leased to the caller does not move.
UPDATE upload_pipeline.upload_jobs SET lease_owner = 'regress', lease_expires_at = now() + interval '1 hour'
WHERE job_id = :'p1';
SELECT tvdb._advance_path(ARRAY[:'p1'::uuid], 'regress', '{embedding_queued,complete}');
SELECT tvdb._advance_path(ARRAY[:'p1'::uuid], 'regress', '{embedding_queued,embedding_in_progress,complete}');
SELECT tvdb._advance_path(ARRAY[:'p1'::uuid], 'regress', '{embedding_queued,embedding_in_progess,embeddings_stored}');
SELECT tvdb._advance_path(ARRAY[:'p1'::uuid], 'regress', '{embedding_queued}');
SELECT tvdb._advance_path(ARRAY[:'p1'::uuid], 'someone else', '{embedding_queued,embedding_in_progress,embeddings_stored}');
SELECT status, (SELECT count(*) FROM upload_pipeline.events WHERE job_id = :'p1') AS events
FROM upload_pipeline.upload_jobs WHERE job_id = :'p1';
SELECT pg_temp.queue_mismatches() AS mismatches, pg_temp.count_mismatches() AS count_mismatches;

-- The statements every moving job costs, prepared from the text the C code
-- runs, with the generic plan it forces: claims read the queue's due index
-- and reach jobs by id, moves reach jobs by id, the trigger's writes reach
-- the queue by key.  None scans the history (3,000 finished jobs here).
SELECT count(tvdb.upload('h' || i || '.md', convert_to('# h' || i, 'UTF8'))) AS history
FROM generate_series(1, 3000) i;
CREATE TEMP TABLE history AS
SELECT j.job_id FROM upload_pipeline.upload_jobs j JOIN upload_pipeline.documents d USING (document_id)
WHERE d.filename ~ '^h[0-9]+\.md$';
DO $$
DECLARE
    s text;
BEGIN
    FOREACH s IN ARRAY ARRAY['parse_queued', 'parsed', 'chunking', 'chunks_stored', 'embedding_queued',
                             'embedding_in_progress', 'embeddings_stored', 'complete'] LOOP
        UPDATE upload_pipeline.upload_jobs SET status = s WHERE job_id IN (SELECT job_id FROM history);
    END LOOP;
END
$$;
SELECT count(*) AS queued_history FROM upload_pipeline.job_queue WHERE job_id IN (SELECT job_id FROM history);
SELECT jobs >= 3000 AS complete_counted FROM tvdb.pipeline_status WHERE status = 'complete';
ANALYZE upload_pipeline.upload_jobs, upload_pipeline.job_queue, upload_pipeline.events;
SET plan_cache_mode = force_generic_plan;
DO $$
DECLARE
    h record;
BEGIN
    FOR h IN SELECT * FROM tvdb._hot_statements() LOOP
        EXECUTE format('PREPARE hot_%s(%s) AS %s', h.name, array_to_string(h.argtypes::text[], ', '), h.sql);
    END LOOP;
END
$$;
SELECT name, argtypes FROM tvdb._hot_statements() ORDER BY name;
EXPLAIN (COSTS OFF) EXECUTE hot_take('parsed', 'chunking', 'w', 64, 60);
EXPLAIN (COSTS OFF) EXECUTE hot_claim('uploaded', 'w', 16, 60);
EXPLAIN (COSTS OFF) EXECUTE hot_move('{}', 'w', 'chunking', 'chunks_stored', true);
EXPLAIN (COSTS OFF) EXECUTE hot_move_parsed('{}', 'w', '{}', '{}');
EXPLAIN (COSTS OFF) EXECUTE hot_queue_put('{}', '{}', '{}', '{}', '{}', '{}');
EXPLAIN (COSTS OFF) EXECUTE hot_queue_drop('{}', '{}');
-- the worker's due time: the first entry of each working status in the due index
EXPLAIN (COSTS OFF)
SELECT greatest(0, extract(epoch FROM min(d.due) - clock_timestamp()) * 1000)
FROM tvdb.statuses s,
     LATERAL (SELECT q.due_at AS due FROM upload_pipeline.job_queue q
              WHERE q.status = s.status ORDER BY q.due_at LIMIT 1) d
WHERE NOT s.is_terminal AND NOT s.is_failure;
RESET plan_cache_mode;
DEALLOCATE ALL;
SELECT pg_temp.queue_mismatches() AS mismatches, pg_temp.count_mismatches() AS count_mismatches;

-- Leave nothing behind for the tests that follow.
SELECT count(tvdb.delete_document(d.document_id)) AS removed
FROM upload_pipeline.documents d
WHERE d.filename ~ '^(h[0-9]+|q[0-9]|p1)\.md$';
SELECT count(*) AS left_queued FROM upload_pipeline.job_queue q JOIN upload_pipeline.documents d USING (document_id)
WHERE d.filename ~ '^(h[0-9]+|q[0-9]|p1)\.md$';
SELECT pg_temp.count_mismatches() AS count_mismatches_after_delete;

-- Nothing queued: the worker's due time is NULL (it sleeps until a commit
-- wakes it), not 0 (which made an idle worker look again every second).
BEGIN;
DELETE FROM upload_pipeline.job_queue;
SELECT tvdb._next_due_ms() IS NULL AS nothing_due;
ROLLBACK;
