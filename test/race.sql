-- Racing sessions, for real: several backends released at the same moment
-- all try the same transition.  Exactly one wins and writes one event; every
-- loser gets TV003 (compare-and-set form) or learns the job is already there.
\set QUIET 1
SET client_min_messages = warning;
\set ON_ERROR_STOP 1
\ir lib/at_once.sql
CREATE OR REPLACE FUNCTION tvdb_test.racer(job uuid, target text, expected text)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  PERFORM tvdb_test.gate();
  RETURN tvdb.transition(job, target, '{}', expected)::text;
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE;
END $$;

CREATE OR REPLACE FUNCTION tvdb_test.race(job uuid, target text, expected text, racers int)
RETURNS SETOF text LANGUAGE sql AS $$
  SELECT tvdb_test.at_once(format('SELECT tvdb_test.racer(%L, %L, %L)', job, target, expected), racers)
$$;
\unset QUIET

SELECT plan(8);

CREATE TEMP TABLE round1 AS
  SELECT tvdb.upload('race-1.txt', 'x') AS job;
CREATE TEMP TABLE result1 AS
  SELECT tvdb_test.race(job, 'parse_queued', 'uploaded', 8) AS r FROM round1;

SELECT is((SELECT count(*) FROM result1 WHERE r = 'true'), 1::bigint,
          'compare-and-set race: exactly one of 8 racers wins');
SELECT is((SELECT count(*) FROM result1 WHERE r = 'TV003'), 7::bigint,
          'compare-and-set race: the 7 losers get TV003');
SELECT is((SELECT count(*) FROM upload_pipeline.events e, round1
           WHERE e.job_id = round1.job AND e.to_status = 'parse_queued'), 1::bigint,
          'compare-and-set race: one event written');
SELECT is((SELECT status FROM upload_pipeline.upload_jobs j, round1 WHERE j.job_id = round1.job),
          'parse_queued', 'compare-and-set race: the job moved once');

-- Without an expected status a loser either fails (it read the old status)
-- or is told the job is already there (it read the new one).
CREATE TEMP TABLE round2 AS
  SELECT tvdb.upload('race-2.txt', 'x') AS job;
CREATE TEMP TABLE result2 AS
  SELECT tvdb_test.race(job, 'failed_parse', NULL, 8) AS r FROM round2;

SELECT is((SELECT count(*) FROM result2 WHERE r = 'true'), 1::bigint,
          'plain race: exactly one of 8 racers changes the status');
SELECT is((SELECT count(*) FROM result2 WHERE r IN ('false', 'TV003')), 7::bigint,
          'plain race: every other racer gets false or TV003');
SELECT is((SELECT count(*) FROM upload_pipeline.events e, round2
           WHERE e.job_id = round2.job AND e.from_status IS NOT NULL), 1::bigint,
          'plain race: one event written');
SELECT is((SELECT attempts FROM upload_pipeline.upload_jobs j, round2 WHERE j.job_id = round2.job),
          1, 'plain race: no attempt counted twice');

SELECT * FROM finish();

\set QUIET 1
SET client_min_messages = warning;
DELETE FROM upload_pipeline.documents WHERE document_id IN
  (SELECT document_id FROM upload_pipeline.upload_jobs WHERE job_id IN
     (SELECT job FROM round1 UNION ALL SELECT job FROM round2));
DROP SCHEMA tvdb_test CASCADE;
