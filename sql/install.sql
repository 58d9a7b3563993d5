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

-- The queue index covers only jobs with work left.
SELECT indexrelid::regclass AS index, pg_get_expr(indpred, indrelid) IS NOT NULL AS partial
FROM pg_index WHERE indrelid = 'upload_pipeline.upload_jobs'::regclass ORDER BY 1;

-- The status lists in SQL come from the C table: the claimable index covers
-- exactly the statuses with work left, the retry index the failures, and the
-- worker's due-time query looks at the claimable ones.
SELECT (SELECT string_agg(quote_literal(status), ', ' ORDER BY ordinal) FROM tvdb.statuses
        WHERE NOT is_terminal AND NOT is_failure) AS working,
       (SELECT string_agg(quote_literal(status), ', ' ORDER BY ordinal) FROM tvdb.statuses
        WHERE is_failure) AS failing;
SELECT indexrelid::regclass AS index, pg_get_expr(indpred, indrelid) AS predicate
FROM pg_index WHERE indrelid = 'upload_pipeline.upload_jobs'::regclass
  AND indexrelid::regclass::text ~ '(claimable|retry_due)' ORDER BY 1;
SELECT position(tvdb._status_list(true, false) IN prosrc) > 0 AS due_time_uses_the_working_list
FROM pg_proc WHERE oid = 'tvdb._next_due_ms()'::regprocedure;

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
