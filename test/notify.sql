-- NOTIFY on channel tvdb_jobs after commit: a listener in another session
-- sees each committed status change, and nothing from a rolled-back one.
\set QUIET 1
SET client_min_messages = warning;
\set ON_ERROR_STOP 1
CREATE SCHEMA IF NOT EXISTS tvdb_test;
-- Wait up to two seconds for the listener to have n notifications.
CREATE OR REPLACE FUNCTION tvdb_test.collect(n int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE i int := 0;
BEGIN
  LOOP
    INSERT INTO heard SELECT notify_name, extra::jsonb FROM dblink_get_notify('listener');
    EXIT WHEN (SELECT count(*) FROM heard) >= n OR i >= 40;
    PERFORM pg_sleep(0.05);
    i := i + 1;
  END LOOP;
END $$;
CREATE TEMP TABLE heard (channel text, payload jsonb);
SELECT dblink_connect('listener', format('dbname=%s host=%s port=%s', current_database(),
                      split_part(current_setting('unix_socket_directories'), ',', 1),
                      current_setting('port'))) \gset
SELECT dblink_exec('listener', 'LISTEN tvdb_jobs') \gset
\unset QUIET

SELECT plan(8);

SELECT tvdb.upload('notify.txt', 'x') AS job \gset
SELECT tvdb.transition(:'job', 'parse_queued') \gset
SELECT tvdb_test.collect(2);
SELECT is((SELECT count(*) FROM heard), 2::bigint, 'two committed changes, two notifications');
SELECT is((SELECT array_agg(payload->>'status' ORDER BY payload->>'status') FROM heard),
          ARRAY['parse_queued', 'uploaded'], 'notifications carry the new status');
SELECT ok((SELECT bool_and(payload->>'job_id' = :'job' AND channel = 'tvdb_jobs') FROM heard),
          'notifications carry the job id on channel tvdb_jobs');

DELETE FROM heard;
BEGIN;
SELECT tvdb.transition(:'job', 'failed_parse', '{"error": "x"}') \gset
ROLLBACK;
SELECT tvdb_test.collect(1);
SELECT is((SELECT count(*) FROM heard), 0::bigint, 'a rolled-back change sends no notification');

-- Two changes in one transaction arrive together at commit, in order.
BEGIN;
SELECT tvdb.transition(:'job', 'parsed') \gset
SELECT tvdb.transition(:'job', 'chunking') \gset
SELECT tvdb_test.collect(1);
SELECT is((SELECT count(*) FROM heard), 0::bigint, 'nothing is sent before commit');
COMMIT;
SELECT tvdb_test.collect(2);
SELECT is((SELECT array_agg(payload->>'status') FROM heard), ARRAY['parsed', 'chunking'],
          'both changes arrive after commit');

-- Alerts on tvdb_alerts: a new one is sent at commit, a repeat only adds to its count.
SELECT dblink_exec('listener', 'LISTEN tvdb_alerts') \gset
DELETE FROM heard;
SELECT tvdb.upload('notify-fail.pdf', 'x') AS failing \gset
SELECT tvdb.transition(:'failing', 'failed_parse', '{"error": "cannot read it"}') \gset
SELECT tvdb_test.collect(3);
SELECT is((SELECT count(*) FROM heard WHERE channel = 'tvdb_alerts'), 1::bigint,
          'a failed job sends one alert on tvdb_alerts');
SELECT ok((SELECT bool_and(payload->>'kind' = 'job_failed' AND payload->>'severity' = 'error'
                           AND payload->>'job_id' = :'failing' AND payload->>'message' LIKE '%cannot read it')
           FROM heard WHERE channel = 'tvdb_alerts'), 'the alert names its kind, job and reason');

SELECT * FROM finish();

\set QUIET 1
SET client_min_messages = warning;
SELECT dblink_disconnect('listener') \gset
DELETE FROM upload_pipeline.documents WHERE document_id IN
  (SELECT document_id FROM upload_pipeline.upload_jobs WHERE job_id IN (:'job', :'failing'));
DROP SCHEMA tvdb_test CASCADE;
