-- Installation: CREATE EXTENSION tvdb CASCADE pulls in pgcrypto, the library
-- and the SQL agree on the version, and pg_dump will keep the user data.
DROP EXTENSION tvdb;
DROP EXTENSION pgcrypto;
CREATE EXTENSION tvdb CASCADE;

SELECT e.extversion = tvdb.version() AS versions_agree,
       (SELECT array_agg(r.extname ORDER BY r.extname) FROM pg_extension r
        WHERE r.oid = ANY (SELECT refobjid FROM pg_depend
                           WHERE objid = e.oid AND deptype = 'n')) AS requires
FROM pg_extension e WHERE e.extname = 'tvdb';

-- The library is preloaded in the test cluster and works there.
SELECT 'tvdb' = ANY (string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ','))
       AS preloaded;

SELECT c.relname FROM pg_class c
JOIN pg_extension e ON c.oid = ANY (e.extconfig)
WHERE e.extname = 'tvdb' ORDER BY 1;

SELECT n.nspname, c.relname, c.relkind FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ('upload_pipeline', 'tvdb') AND c.relkind IN ('r', 'v')
ORDER BY 1, 2;

-- The history's indexes: none of them is what claims read.
SELECT indexrelid::regclass AS index, pg_get_expr(indpred, indrelid) IS NOT NULL AS partial
FROM pg_index WHERE indrelid = 'upload_pipeline.upload_jobs'::regclass ORDER BY 1;

-- No index of the history holds the status, a lease or a poll time (nor
-- has them in its predicate): changing them is a HOT update when the page
-- has room, which its fill factor leaves.
SELECT indexrelid::regclass AS hot_blocking FROM pg_index
WHERE indrelid = 'upload_pipeline.upload_jobs'::regclass
  AND pg_get_indexdef(indexrelid) ~ '\m(status|lease_owner|lease_expires_at|next_poll_at|tries|attempts)\M';
SELECT reloptions FROM pg_class WHERE oid = 'upload_pipeline.upload_jobs'::regclass;

-- The queue of open jobs: claims read its due index, the worker's due time
-- too; it is vacuumed early and not dumped (a restore refills it).
SELECT indexrelid::regclass AS index, pg_get_indexdef(indexrelid) ~ '\(status, due_at\)' AS status_then_due
FROM pg_index WHERE indrelid = 'upload_pipeline.job_queue'::regclass ORDER BY 1;
SELECT reloptions FROM pg_class WHERE oid = 'upload_pipeline.job_queue'::regclass;
SELECT prosrc ~ 'upload_pipeline.job_queue' AS due_time_reads_the_queue,
       prosrc !~ 'upload_jobs' AS due_time_reads_no_history
FROM pg_proc WHERE oid = 'tvdb._next_due_ms()'::regprocedure;
SELECT 'upload_pipeline.job_queue'::regclass = ANY (extconfig) AS queue_dumped
FROM pg_extension WHERE extname = 'tvdb';

-- Nothing that reads the clock is declared STABLE or IMMUTABLE.
SELECT p.oid::regprocedure AS misdeclared FROM pg_proc p
WHERE p.pronamespace = 'tvdb'::regnamespace AND p.provolatile <> 'v'
  AND p.prosrc ~ '(clock_timestamp|timeofday)';

-- Internal functions that touch jobs or wake the workers are not for PUBLIC.
SELECT p.oid::regprocedure AS public_internal FROM pg_proc p
WHERE p.pronamespace = 'tvdb'::regnamespace AND p.proname LIKE '\_%'
  AND p.provolatile = 'v' AND has_function_privilege('public', p.oid, 'EXECUTE')
ORDER BY 1;

-- Triggers on the job table.
SELECT tgname, tgenabled FROM pg_trigger
WHERE tgrelid = 'upload_pipeline.upload_jobs'::regclass AND NOT tgisinternal ORDER BY 1;

-- Every tvdb function and view is documented.
SELECT p.oid::regprocedure::text AS undocumented FROM pg_proc p
WHERE p.pronamespace = 'tvdb'::regnamespace AND obj_description(p.oid, 'pg_proc') IS NULL
UNION ALL
SELECT c.oid::regclass::text FROM pg_class c
WHERE c.relnamespace IN ('tvdb'::regnamespace, 'upload_pipeline'::regnamespace)
  AND c.relkind IN ('r', 'v') AND obj_description(c.oid, 'pg_class') IS NULL;

-- No GUC outside the reserved prefix can be invented.
SET tvdb.no_such_setting = 1;
