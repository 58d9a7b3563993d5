-- The operator's window in SQL (test/dashboard drives the page): what
-- tvdb.dashboard(), tvdb.find_documents() and tvdb.document_timeline()
-- return, who may call them, and how tvdb.monitor_with_token() answers
-- tvdb-webhookd for each kind of token.  Other files leave documents
-- behind: only this file's own are looked at.
\set VERBOSITY default
\set SHOW_CONTEXT never

SELECT tvdb.upload('dash-Quarterly.md', convert_to('# Q', 'UTF8'), 'text/markdown') AS j1 \gset
SELECT tvdb.upload('dash-%_odd.md', convert_to('# odd', 'UTF8'), 'text/markdown') AS j2 \gset
SELECT document_id AS d1, correlation_id AS c1 FROM upload_pipeline.upload_jobs WHERE job_id = :'j1' \gset
SELECT tvdb.transition(:'j1', s) FROM unnest('{parse_queued,parsed,chunking,chunks_stored}'::text[]) s;
SELECT tvdb.transition(:'j2', 'parse_queued'), tvdb.transition(:'j2', 'failed_parse', '{"error": "corrupt"}');
INSERT INTO upload_pipeline.usage (service, operation, job_id, http_status, latency_ms, pages, cost_usd)
VALUES ('llamaparse', 'upload', :'j1', 200, 99.5, 3, 0.009);
INSERT INTO upload_pipeline.usage (service, operation, job_ids, job_tokens, http_status, cost_usd)
VALUES ('openai', 'embeddings', ARRAY[:'j1', :'j2']::uuid[], '{30,10}', 200, 0.0004);
INSERT INTO upload_pipeline.document_chunks (document_id, job_id, chunk_index, content, token_estimate, sha256, heading_path)
VALUES (:'d1', :'j1', 0, 'q', 7, repeat('0', 64), '{Q,Revenue}');

-- The dashboard's parts, each from its view.
SELECT array(SELECT jsonb_object_keys(tvdb.dashboard()) ORDER BY 1) AS parts;
SELECT (SELECT array_agg(x->>'status' || '=' || (x->>'jobs')) FROM jsonb_array_elements(tvdb.dashboard()->'statuses') x)
     = (SELECT array_agg(status || '=' || jobs ORDER BY ordinal) FROM tvdb._pipeline_status()) AS statuses_as_view,
       jsonb_array_length(tvdb.dashboard()->'throughput') AS minutes,
       (tvdb.dashboard()->'backlog'->>'jobs')::bigint = (SELECT backlog FROM tvdb.health) AS backlog_as_health;
SELECT x->>'filename' AS newest, x->>'status' AS status
FROM jsonb_array_elements(tvdb.dashboard(2)->'recent') x;
SELECT tvdb.dashboard(0);

-- Finding documents: by any id, or a filename's start in any case; % and _
-- are characters.
SELECT filename FROM tvdb.find_documents(:'j1');
SELECT filename FROM tvdb.find_documents(:'c1');
SELECT filename FROM tvdb.find_documents(upper(:'d1'));
SELECT filename FROM tvdb.find_documents('DASH-') ORDER BY 1;
SELECT filename FROM tvdb.find_documents('dash-%');
SELECT count(*) AS wildcards FROM tvdb.find_documents('%');
SELECT tvdb.find_documents('   ');
SELECT tvdb.find_documents('dash', 0);

-- One document end to end: statuses in order with the time spent in each
-- (in the one it is in: so far), the requests (its share of the batch:
-- 30 of 40 tokens), then the chunk; a failed one's alert.
SELECT kind, what, seconds IS NOT NULL AS timed, http_status, cost_usd, detail
FROM tvdb.document_timeline(:'d1');
SELECT kind, what, regexp_replace(regexp_replace(detail, '[0-9a-f-]{36}', '<job>'), '; [0-9]+ times', '') AS detail FROM tvdb.document_timeline((SELECT document_id FROM upload_pipeline.upload_jobs WHERE job_id = :'j2'))
WHERE kind <> 'status';
SELECT * FROM tvdb.document_timeline('00000000-0000-0000-0000-000000000000');

-- tvdb-webhookd's answers: no token, an upload token, a monitor's.
SELECT tvdb.create_api_token('dash-monitor', 'tvdb_monitor') AS mon \gset
SELECT tvdb.create_api_token('dash-upload') AS up \gset
SELECT tvdb.monitor_with_token(NULL, 'status') ->> 'http_status' AS no_token,
       tvdb.monitor_with_token('tvdb_nope', 'status') ->> 'http_status' AS unknown,
       tvdb.monitor_with_token(:'up', 'status') ->> 'http_status' AS upload_token,
       tvdb.monitor_with_token(:'mon', 'status') ->> 'http_status' AS monitor_token;
SELECT tvdb.monitor_with_token(:'mon', 'search', 'dash-q') #>> '{documents,0,filename}' AS found,
       tvdb.monitor_with_token(:'mon', 'search', '') - 'http_status' AS empty_term,
       tvdb.monitor_with_token(:'mon', 'document', 'x') - 'detail' AS bad_id,
       tvdb.monitor_with_token(:'mon', 'document', :'j1') - 'detail' AS a_job_id,
       tvdb.monitor_with_token(:'mon', 'nothing') ->> 'http_status' AS unknown_what;
SELECT d #>> '{document,filename}' AS filename, d #>> '{document,cost_usd}' AS cost_usd,
       jsonb_array_length(d -> 'timeline') AS timeline_rows
FROM tvdb.monitor_with_token(:'mon', 'document', :'d1') d;
SELECT tvdb.revoke_api_token('dash-monitor'), tvdb.revoke_api_token('dash-upload');

-- Who may call what: monitors read the window; the daemon only asks with a token.
SELECT r.rolname, p.oid::regprocedure AS function
FROM pg_proc p, pg_roles r
WHERE p.proname IN ('dashboard', 'find_documents', 'document_timeline', 'monitor_with_token')
  AND p.pronamespace = 'tvdb'::regnamespace
  AND r.rolname IN ('tvdb_app', 'tvdb_webhook', 'tvdb_monitor')
  AND has_function_privilege(r.oid, p.oid, 'EXECUTE')
ORDER BY 1, 2;

-- Cost today and this month, and every budget's spend, come from daily
-- totals the ledger's triggers keep: after every insert, update and delete
-- of the files before this one, and these, they equal the ledger's sums.
CREATE TEMP VIEW days_disagree AS
WITH kept AS (SELECT day, service, sum(cost_usd) AS cost FROM upload_pipeline.usage_days
              GROUP BY 1, 2 HAVING sum(cost_usd) <> 0),
     ledger AS (SELECT (ts AT TIME ZONE 'UTC')::date AS day, service, sum(cost_usd) AS cost FROM upload_pipeline.usage
                GROUP BY 1, 2 HAVING sum(cost_usd) <> 0)
SELECT (SELECT count(*) FROM (TABLE kept EXCEPT TABLE ledger) a) + (SELECT count(*) FROM (TABLE ledger EXCEPT TABLE kept) b)
       AS days_disagree, (SELECT count(*) FROM ledger) > 1 AS several_days;
SELECT * FROM days_disagree;
UPDATE upload_pipeline.usage SET cost_usd = cost_usd * 2 WHERE job_id = :'j1';
INSERT INTO upload_pipeline.usage (ts, service, operation, cost_usd) VALUES (now() - interval '40 days', 'openai', 'embeddings', 1.5);
DELETE FROM upload_pipeline.usage WHERE job_ids @> ARRAY[:'j2']::uuid[];
SELECT * FROM days_disagree;
SELECT (tvdb.dashboard()->'costs'->>'today_usd')::numeric
     = (SELECT sum(cost_usd) FROM upload_pipeline.usage WHERE ts >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
       AS today_as_ledger;
