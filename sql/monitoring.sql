-- Monitoring views, tvdb.metrics() and the upload tokens of tvdb-webhookd.
-- Earlier files leave jobs behind: counts are compared with a snapshot.
-- Events with chosen durations are written inside a transaction that is
-- rolled back, and read with a window that holds only that transaction's
-- own (now() is the transaction's start).
\set VERBOSITY default
\set SHOW_CONTEXT never

-- Every status is listed, in order, also those with no job.
SELECT array_agg(status) = (SELECT array_agg(status ORDER BY ordinal) FROM tvdb.statuses) AS every_status_in_order
FROM tvdb.pipeline_status;
CREATE TEMP TABLE before AS SELECT status, jobs, leased FROM tvdb.pipeline_status;

-- Three jobs: one uploaded, one parse_queued with a lease, one failed_parse.
SELECT tvdb.upload('mon-1.txt', 'one') AS j1 \gset
SELECT tvdb.upload('mon-2.txt', 'two') AS j2 \gset
SELECT tvdb.upload('mon-3.txt', 'three') AS j3 \gset
SELECT tvdb.transition(:'j2', 'parse_queued'), tvdb.transition(:'j3', 'failed_parse', '{"error": "unreadable"}');
UPDATE upload_pipeline.upload_jobs SET lease_owner = 'regress', lease_expires_at = now() + interval '5 min'
WHERE job_id = :'j2';
SELECT p.status, p.jobs - b.jobs AS new_jobs, p.leased - b.leased AS new_leased
FROM tvdb.pipeline_status p JOIN before b USING (status)
WHERE p.jobs <> b.jobs OR p.leased <> b.leased ORDER BY p.status;
SELECT oldest <= (SELECT status_changed_at FROM upload_pipeline.upload_jobs WHERE job_id = :'j2') AS oldest_is_oldest,
       oldest_age >= interval '0' AS age_not_negative
FROM tvdb.pipeline_status WHERE status = 'parse_queued';

-- Stage latency: 100 jobs left chunking after 1, 2, ..., 100 seconds.
BEGIN;
INSERT INTO upload_pipeline.events (document_id, type, severity, code, from_status, to_status, in_previous_state)
SELECT gen_random_uuid(), 'stage_done', 'info', 'chunking_completed', 'chunking', 'chunks_stored', make_interval(secs => i)
FROM generate_series(1, 100) i;
SELECT stage, count, p50_seconds, p95_seconds, p99_seconds, max_seconds
FROM tvdb.stage_latency(interval '1 microsecond') WHERE count > 0 OR stage IN ('uploaded', 'chunking');
SELECT count(*) AS stages, bool_and(stage <> 'complete') AS no_terminal_stage FROM tvdb.stage_latency(interval '1 microsecond');

-- The same window in Prometheus text: a cumulative histogram per stage.
SELECT line FROM regexp_split_to_table(tvdb.metrics(interval '1 microsecond'), E'\n') AS line
WHERE line ~ '^(# (HELP|TYPE) tvdb_stage_duration_seconds |tvdb_stage_duration_seconds_[a-z]+\{stage="chunking")';
ROLLBACK;

-- Throughput: 3 completed and 2 failed 45 minutes ago (a minute no other test uses).
BEGIN;
INSERT INTO upload_pipeline.events (document_id, type, severity, code, from_status, to_status, ts)
SELECT gen_random_uuid(), 'stage_done', 'info', 'x', 'embeddings_stored', 'complete', date_trunc('minute', now()) - interval '45 min' + interval '10 s'
FROM generate_series(1, 3)
UNION ALL
SELECT gen_random_uuid(), 'stage_error', 'error', 'x', 'parse_queued', 'failed_parse', date_trunc('minute', now()) - interval '45 min' + interval '50 s'
FROM generate_series(1, 2);
SELECT count(*) AS minutes, max(minute) = date_trunc('minute', now()) AS current_minute_last,
       min(minute) = date_trunc('minute', now()) - interval '59 min' AS an_hour
FROM tvdb.throughput;
SELECT completed, failed FROM tvdb.throughput WHERE minute = date_trunc('minute', now()) - interval '45 min';
ROLLBACK;

-- Health, in a database no worker serves (the workers serve tvdb_worker here).
SELECT status, reason, workers, workers_expected, circuits IS NOT NULL AS has_circuits,
       jsonb_typeof(budgets) AS budgets
FROM tvdb.health;
SELECT backlog >= 2 AS counts_the_unfinished, oldest_unfinished <= now() AS oldest_seen FROM tvdb.health;
-- The verdict, for each kind of trouble.
SELECT v.* FROM (VALUES
    (2, 2, NULL::text, 0::bigint, 0::bigint, '[{"service": "openai", "state": "closed"}]'::jsonb, '[]'::jsonb),
    (1, 2, NULL, 3, 0, '[]', '[]'),
    (2, 2, NULL, 0, 4, '[{"service": "llamaparse", "state": "blocked", "last_error": "HTTP 401"}]',
     '[{"service": "openai", "period": "day", "limit_usd": 1, "spent_usd": 0.75, "reserved_usd": 0.25, "remaining_usd": 0}]'),
    (0, 1, 'no tvdb worker: tvdb.workers is 0', 5, 0, '[]', '[]')
) AS t(w, e, why, overdue, stuck, c, b), LATERAL tvdb._health_verdict(w, e, why, overdue, stuck, c, b) v;

-- Metrics: well-formed lines, each family's HELP then TYPE first.
SELECT tvdb.metrics() AS m \gset
SELECT count(*) FILTER (WHERE line !~ '^(# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+|[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*")*\})? (-?[0-9]+(\.[0-9]+)?(e[+-]?[0-9]+)?|\+Inf|-Inf|NaN))$') AS bad_lines,
       count(*) FILTER (WHERE line LIKE '# TYPE %') AS families,
       right(:'m', 1) = E'\n' AS ends_in_newline
FROM regexp_split_to_table(rtrim(:'m', E'\n'), E'\n') AS line;
WITH l AS (SELECT line, n FROM regexp_split_to_table(rtrim(:'m', E'\n'), E'\n') WITH ORDINALITY AS x(line, n)),
     t AS (SELECT split_part(line, ' ', 3) AS family, n FROM l WHERE line LIKE '# TYPE %')
SELECT count(*) AS families_out_of_order FROM t
WHERE NOT EXISTS (SELECT FROM l WHERE l.n = t.n - 1 AND l.line LIKE '# HELP ' || t.family || ' %')
   OR EXISTS (SELECT FROM l WHERE l.n < t.n AND l.line ~ ('^' || t.family || '(_bucket|_sum|_count)?[{ ]'));
SELECT line FROM regexp_split_to_table(:'m', E'\n') AS line
WHERE line ~ '^# TYPE ' ORDER BY line;
SELECT split_part(line, ' ', 2)::bigint = (SELECT jobs FROM tvdb.pipeline_status WHERE status = 'parse_queued') AS jobs_match,
       split_part(line, ' ', 1)
FROM regexp_split_to_table(:'m', E'\n') AS line WHERE line LIKE 'tvdb_jobs{status="parse_queued"} %';
SELECT line FROM regexp_split_to_table(:'m', E'\n') AS line
WHERE line ~ '^tvdb_(health|workers|circuit_state\{service="openai")';
-- Label values escape backslash, double quote and newline.
SELECT tvdb._prom_sample('m', '1', 'path', E'C:\\tmp\\"x"\nnext', 'empty', NULL) AS sample;

-- Upload tokens: shown once, kept as sha256.
SELECT tvdb.create_api_token('regress-app') AS token \gset
SELECT :'token' ~ '^tvdb_[0-9a-f]{64}$' AS token_shape,
       (SELECT token_sha256 = sha256(convert_to(:'token', 'UTF8')) FROM upload_pipeline.api_tokens) AS only_its_hash;
SELECT tvdb.create_api_token('regress-app');
SELECT tvdb.create_api_token('bad name');
SELECT tvdb.create_api_token('no-owner', 'tvdb_regress_nobody');
SELECT name, created_at <= now() AS created FROM tvdb.api_tokens;
SELECT tvdb.upload_with_token(:'token', 'mon-4.md', convert_to('# Four', 'UTF8'), 'text/markdown') AS r \gset
SELECT (:'r'::jsonb) ->> 'http_status' AS http_status, (:'r'::jsonb) ->> 'result' AS result,
       j.status, j.correlation_id::text = (:'r'::jsonb) ->> 'correlation_id' AS correlation_matches, d.filename, d.mime_type,
       d.owner
FROM upload_pipeline.upload_jobs j JOIN upload_pipeline.documents d USING (document_id)
WHERE j.job_id = ((:'r'::jsonb) ->> 'job_id')::uuid;
SELECT ((:'r'::jsonb) ->> 'job_id') AS j4 \gset
SELECT tvdb.upload_with_token(:'token' || 'x', 'mon-5.md', 'x');
SELECT tvdb.upload_with_token(NULL, 'mon-5.md', 'x');
SELECT tvdb.upload_with_token(:'token', E'a\r\nb.md', 'x');
SELECT tvdb.upload_with_token(:'token', 'mon-5.md', 'x', E'text/plain\r\nX-Injected: 1');
SELECT tvdb.upload_with_token(:'token', 'mon-5.md', '');
SELECT tvdb.api_token_valid(:'token') AS valid, tvdb.api_token_valid('tvdb_nope') AS invalid;

-- The daemon's roles: tvdb_webhook uploads with a token and cannot make
-- one; tvdb_monitor reads the views and metrics, not the tables.
SET ROLE tvdb_webhook;
SELECT (tvdb.upload_with_token(:'token', 'mon-6.md', 'six') ->> 'http_status') AS as_webhook;
SELECT tvdb.create_api_token('sneaky');
SELECT count(*) FROM upload_pipeline.api_tokens;
SELECT count(*) FROM tvdb.pipeline_status;
RESET ROLE;
SET ROLE tvdb_monitor;
SELECT count(*) > 0 AS statuses, (SELECT count(*) FROM tvdb.stage_latency) > 0 AS stages,
       (SELECT count(*) FROM tvdb.throughput) AS minutes, (SELECT status FROM tvdb.health) AS health,
       tvdb.metrics() LIKE '# HELP tvdb_jobs %' AS metrics
FROM tvdb.pipeline_status;
SELECT count(*) FROM upload_pipeline.upload_jobs;
SELECT tvdb.upload_with_token(:'token', 'mon-7.md', 'seven');
RESET ROLE;

SELECT tvdb.revoke_api_token('regress-app') AS revoked, tvdb.revoke_api_token('regress-app') AS again;
SELECT tvdb.upload_with_token(:'token', 'mon-8.md', 'eight') ->> 'http_status' AS after_revoke;

-- Leave nothing behind.
DELETE FROM upload_pipeline.alerts WHERE job_id = :'j3';
CREATE TEMP TABLE mine AS
SELECT j.job_id, j.document_id, d.storage_path FROM upload_pipeline.upload_jobs j JOIN upload_pipeline.documents d USING (document_id)
WHERE d.filename LIKE 'mon-%';
DELETE FROM upload_pipeline.events WHERE job_id IN (SELECT job_id FROM mine);
DELETE FROM upload_pipeline.documents WHERE document_id IN (SELECT document_id FROM mine);
DELETE FROM upload_pipeline.blobs WHERE path IN (SELECT storage_path FROM mine);
SELECT count(*) AS jobs_left FROM mine m JOIN upload_pipeline.upload_jobs j USING (job_id);
