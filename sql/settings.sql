-- The worker's settings: keys hidden from application roles, validation of
-- values, and which settings need a restart.
\set VERBOSITY default
\set SHOW_CONTEXT never

SELECT name, setting, unit, context FROM pg_settings
WHERE name LIKE 'tvdb.%' AND name NOT LIKE '%api_key' AND name <> 'tvdb.webhook_secrets'
  AND name NOT IN ('tvdb.database', 'tvdb.workers')   -- set by the test cluster
ORDER BY name;
SELECT name, context FROM pg_settings WHERE name IN ('tvdb.database', 'tvdb.workers') ORDER BY name;

-- Bad values are refused, naming what is allowed (and nothing is written).
ALTER SYSTEM SET tvdb.service_mode = 'offline';
ALTER SYSTEM SET tvdb.max_inflight = 0;
ALTER SYSTEM SET tvdb.chunk_bytes_per_token = 17;
-- URLs that requests go to are http(s) with a host, and cannot carry a
-- line break into a request.
ALTER SYSTEM SET tvdb.openai_base_url = 'file:///etc/passwd';
ALTER SYSTEM SET tvdb.llamaparse_base_url = 'https://';
ALTER SYSTEM SET tvdb.parse_webhook_url = E'https://hooks.example/x\r\nX-Injected: 1';
-- Settings that must agree are checked against the value the other one will
-- have after the next reload: raising both works in the right order (the
-- running server still has 30 s as its maximum while the first waits in
-- postgresql.auto.conf), and is refused in the wrong one, naming the fix.
ALTER SYSTEM SET tvdb.poll_interval_min = '40min';
ALTER SYSTEM SET tvdb.chunk_target_tokens = 100;
ALTER SYSTEM SET tvdb.poll_interval_max = '1h';
ALTER SYSTEM SET tvdb.poll_interval_min = '40min';
ALTER SYSTEM SET tvdb.poll_interval_max = '35min';
SELECT regexp_replace(pg_read_file('postgresql.auto.conf'), '^#[^\n]*\n#[^\n]*\n', '') AS pending;
ALTER SYSTEM RESET tvdb.poll_interval_min;
ALTER SYSTEM RESET tvdb.poll_interval_max;
-- Restart-only and reload-only settings cannot be set in a session.
SET tvdb.workers = 4;
SET tvdb.service_mode = 'mock';

-- An application role sees no key and cannot set one.
CREATE ROLE tvdb_regress_app;
SET ROLE tvdb_regress_app;
SHOW tvdb.openai_api_key;
SHOW tvdb.llamaparse_api_key;
SELECT current_setting('tvdb.openai_api_key');
SELECT count(*) AS visible_keys FROM pg_settings WHERE name LIKE 'tvdb.%api_key';
SELECT count(*) > 10 AS other_settings_visible FROM pg_settings WHERE name LIKE 'tvdb.%';
RESET ROLE;
DROP ROLE tvdb_regress_app;
