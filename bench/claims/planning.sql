-- bench/claims/planning.sql — informational, run by run.sh after the measured
-- runs: is each claim statement planned on every call, and what does a plan
-- made once cost instead?  Each statement is PREPAREd (tvdb's internal claim
-- with the exact text tvdb.so runs, passed in as :take_sql; the bare ones as
-- pgbench -M prepared sends them), run 10 times, then EXPLAIN ANALYZEd 5
-- times; all in one transaction, rolled back.  pg_prepared_statements says how
-- often a custom plan (planned for the call) or the generic plan (planned
-- once) was used.  tvdb's statement is measured twice: under plan_cache_mode
-- auto (how a statement kept with SPI_prepare/SPI_keepplan is planned unless
-- its code asks otherwise) and forced generic (what a statement prepared with
-- CURSOR_OPT_GENERIC_PLAN gets); which one tvdb uses depends on how its C code
-- prepares the statement.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
BEGIN;
CREATE FUNCTION pg_temp.measure(name text, call text, generic boolean, OUT statement text,
                                OUT plan_cache_mode text, OUT custom_plans bigint, OUT generic_plans bigint,
                                OUT planning_ms numeric, OUT execution_ms numeric)
    LANGUAGE plpgsql AS $$
DECLARE
    j json;
    p numeric := 0;
    e numeric := 0;
BEGIN
    plan_cache_mode := set_config('plan_cache_mode', CASE WHEN generic THEN 'force_generic_plan' ELSE 'auto' END, true);
    FOR i IN 1 .. 10 LOOP
        EXECUTE call;
    END LOOP;
    SELECT s.custom_plans, s.generic_plans INTO custom_plans, generic_plans
    FROM pg_prepared_statements s WHERE s.name = measure.name;
    FOR i IN 1 .. 5 LOOP
        EXECUTE 'EXPLAIN (ANALYZE, FORMAT JSON) ' || call INTO j;
        p := p + (j -> 0 ->> 'Planning Time')::numeric;
        e := e + (j -> 0 ->> 'Execution Time')::numeric;
    END LOOP;
    statement := name;
    planning_ms := round(p / 5, 3);
    execution_ms := round(e / 5, 3);
END
$$;

PREPARE bare_read_1 AS
UPDATE bench.q SET vt = now() + interval '60 seconds', read_ct = read_ct + 1
WHERE msg_id = (SELECT msg_id FROM bench.q WHERE vt <= now()
                ORDER BY msg_id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING msg_id, read_ct, enqueued_at, vt, message;
PREPARE bare_read_10 AS
WITH r AS (UPDATE bench.q SET vt = now() + interval '60 seconds', read_ct = read_ct + 1
           WHERE msg_id IN (SELECT msg_id FROM bench.q WHERE vt <= now()
                            ORDER BY msg_id LIMIT 10 FOR UPDATE SKIP LOCKED)
           RETURNING msg_id, read_ct, enqueued_at, vt, message)
SELECT array_agg(msg_id) AS ids, array_agg(message) AS messages FROM r;
PREPARE bare_archive(bigint[]) AS
WITH archived AS (DELETE FROM bench.q WHERE msg_id = ANY ($1)
                  RETURNING msg_id, read_ct, enqueued_at, vt, message)
INSERT INTO bench.a (msg_id, read_ct, enqueued_at, vt, message)
SELECT msg_id, read_ct, enqueued_at, vt, message FROM archived;
-- ids for the archive: the last messages, which no claim above reaches
SELECT array_agg(msg_id)::text AS ids FROM (SELECT msg_id FROM bench.q ORDER BY msg_id DESC LIMIT 10) s \gset

\if :{?take_sql}
PREPARE tvdb_take_1(text, text, text, integer, integer) AS :take_sql;
PREPARE tvdb_take_10(text, text, text, integer, integer) AS :take_sql;
PREPARE tvdb_take_1_g(text, text, text, integer, integer) AS :take_sql;
PREPARE tvdb_take_10_g(text, text, text, integer, integer) AS :take_sql;
\endif

\pset footer off
SELECT m.* FROM (VALUES (1, 'tvdb_take_1', 'EXECUTE tvdb_take_1(''parsed'', ''chunking'', ''bench-plan'', 1, 60)', false),
                        (2, 'tvdb_take_10', 'EXECUTE tvdb_take_10(''parsed'', ''chunking'', ''bench-plan'', 10, 60)', false),
                        (3, 'tvdb_take_1_g', 'EXECUTE tvdb_take_1_g(''parsed'', ''chunking'', ''bench-plan'', 1, 60)', true),
                        (4, 'tvdb_take_10_g', 'EXECUTE tvdb_take_10_g(''parsed'', ''chunking'', ''bench-plan'', 10, 60)', true),
                        (5, 'bare_read_1', 'EXECUTE bare_read_1', false),
                        (6, 'bare_read_10', 'EXECUTE bare_read_10', false),
                        (7, 'bare_archive', format('EXECUTE bare_archive(%L)', :'ids'), false)) AS c(k, name, call, generic),
     LATERAL pg_temp.measure(c.name, c.call, c.generic) m
WHERE EXISTS (SELECT FROM pg_prepared_statements s WHERE s.name = c.name)
ORDER BY c.k;
ROLLBACK;
