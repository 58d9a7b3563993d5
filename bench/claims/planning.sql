-- bench/claims/planning.sql — informational, run by run.sh after the measured
-- runs: does each claim statement get planned on every call?  Each statement
-- is PREPAREd (tvdb's internal claim with the exact text tvdb.so runs, passed
-- in as :take_sql; the bare ones as pgbench -M prepared sends them), run 10
-- times, then EXPLAIN ANALYZEd 5 times; all in one transaction, rolled back.
-- pg_prepared_statements says how often a custom plan (planned for the call)
-- or the generic plan (planned once) was used.  Plans are chosen the same way
-- for a statement tvdb keeps with SPI_prepare/SPI_keepplan as for PREPARE.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
BEGIN;
CREATE FUNCTION pg_temp.measure(name text, call text, OUT statement text, OUT custom_plans bigint,
                                OUT generic_plans bigint, OUT planning_ms numeric, OUT execution_ms numeric)
    LANGUAGE plpgsql AS $$
DECLARE
    j json;
    p numeric := 0;
    e numeric := 0;
BEGIN
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
\endif

\pset footer off
SELECT m.* FROM (VALUES (1, 'tvdb_take_1', 'EXECUTE tvdb_take_1(''parsed'', ''chunking'', ''bench-plan'', 1, 60)'),
                        (2, 'tvdb_take_10', 'EXECUTE tvdb_take_10(''parsed'', ''chunking'', ''bench-plan'', 10, 60)'),
                        (3, 'bare_read_1', 'EXECUTE bare_read_1'),
                        (4, 'bare_read_10', 'EXECUTE bare_read_10'),
                        (5, 'bare_archive', format('EXECUTE bare_archive(%L)', :'ids'))) AS c(k, name, call),
     LATERAL pg_temp.measure(c.name, c.call) m
WHERE EXISTS (SELECT FROM pg_prepared_statements s WHERE s.name = c.name)
ORDER BY c.k;
ROLLBACK;
