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
-- The callback URL must be one LlamaParse accepts (https, a domain name,
-- under 200 characters with the ?job=&token= tvdb appends); 'local' rules
-- allow a loopback receiver for test setups, and cannot be tightened under it.
ALTER SYSTEM SET tvdb.parse_webhook_url = 'http://hooks.example.com/llamaparse';
ALTER SYSTEM SET tvdb.parse_webhook_url = 'https://10.1.2.3/llamaparse';
ALTER SYSTEM SET tvdb.parse_webhook_url = 'https://[::1]:8443/llamaparse';
SELECT format('ALTER SYSTEM SET tvdb.parse_webhook_url = %L', 'https://hooks.example.com/' || repeat('x', 83)) \gexec
SELECT format('ALTER SYSTEM SET tvdb.parse_webhook_url = %L', 'https://hooks.example.com/' || repeat('x', 82)) \gexec
ALTER SYSTEM SET tvdb.parse_webhook_url = 'https://hooks.example.com/llamaparse#frag';
ALTER SYSTEM SET tvdb.callback_url_rules = 'local';
ALTER SYSTEM SET tvdb.parse_webhook_url = 'http://127.0.0.1:8080/llamaparse';
ALTER SYSTEM SET tvdb.callback_url_rules = 'llamaparse';
ALTER SYSTEM RESET tvdb.parse_webhook_url;
ALTER SYSTEM RESET tvdb.callback_url_rules;
-- Parse options: a JSON object of LlamaParse's documented options for the
-- API in use; what tvdb sends itself cannot be set.
ALTER SYSTEM SET tvdb.llamaparse_options = '{"parse_mode": "parse_page_with_llm", "language": ["en", "fr"]}';
ALTER SYSTEM SET tvdb.llamaparse_options = '{"job_id": "x"}';
ALTER SYSTEM SET tvdb.llamaparse_options = '{"webhook_url": "https://elsewhere.example.com/"}';
ALTER SYSTEM SET tvdb.llamaparse_options = '["parse_mode"]';
ALTER SYSTEM SET tvdb.llamaparse_options = '{"parse_mode": ';
ALTER SYSTEM SET tvdb.llamaparse_api = 'v2';
ALTER SYSTEM SET tvdb.llamaparse_options = '{"tier": "agentic", "version": "latest", "processing_options": {"ocr_parameters": {"languages": ["en"]}}}';
-- The built-in parser reads text only.
ALTER SYSTEM SET tvdb.parse_locally = 'text/plain, application/pdf';
ALTER SYSTEM SET tvdb.llamaparse_max_file_size = '1GB';
-- Switching API: options reset first, then the API, then its options.
ALTER SYSTEM RESET tvdb.llamaparse_options;
ALTER SYSTEM SET tvdb.llamaparse_api = 'v2';
ALTER SYSTEM SET tvdb.llamaparse_options = '{"tier": "agentic", "version": "latest", "processing_options": {"ocr_parameters": {"languages": ["en"]}}}';
SELECT regexp_replace(pg_read_file('postgresql.auto.conf'), '^#[^\n]*\n#[^\n]*\n', '') AS pending;
ALTER SYSTEM RESET tvdb.llamaparse_options;
ALTER SYSTEM RESET tvdb.llamaparse_api;
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
