-- tvdb.handle_llamaparse_webhook(): every outcome of a LlamaParse callback,
-- through SQL.  Signatures are made with pgcrypto's hmac().
\set VERBOSITY default
\set SHOW_CONTEXT never
SET tvdb.webhook_secrets = 'regress-secret';

CREATE FUNCTION pg_temp.signed(body text, extra jsonb DEFAULT '{}') RETURNS jsonb
LANGUAGE sql AS $$
  SELECT jsonb_build_object('X-Webhook-Signature',
           'sha256=' || encode(hmac(convert_to(body, 'UTF8'), 'regress-secret', 'sha256'), 'hex')) || extra
$$;
-- The replaced system's callback payload for a job.
CREATE FUNCTION pg_temp.payload(job uuid, cb_status text, content text DEFAULT '# Title' || chr(10) || 'Body text.',
                                meta jsonb DEFAULT '{"parser_name": "llamaparse", "parser_version": "0.5.1"}')
RETURNS text LANGUAGE sql AS $$
  SELECT jsonb_build_object('job_id', j.job_id, 'document_id', j.document_id,
           'parse_job_id', 'pj-' || left(j.job_id::text, 8), 'correlation_id', j.correlation_id,
           'status', cb_status, 'meta', meta,
           'artifacts', CASE WHEN cb_status = 'parsed' THEN jsonb_build_array(jsonb_build_object(
              'type', 'markdown', 'content', content,
              'sha256', encode(sha256(convert_to(content, 'UTF8')), 'hex'),
              'bytes', octet_length(convert_to(content, 'UTF8')))) END)::text
  FROM upload_pipeline.upload_jobs j WHERE j.job_id = job
$$;
-- Deliver a body signed correctly, show the reply without ids.
CREATE FUNCTION pg_temp.deliver(body text, extra jsonb DEFAULT '{}') RETURNS text
LANGUAGE sql AS $$
  SELECT regexp_replace(concat_ws(' ', r->>'http_status', r->>'result', r->>'detail',
                                  CASE WHEN r ? 'duplicate' THEN '(duplicate)' END),
                        '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<uuid>', 'g')
  FROM tvdb.handle_llamaparse_webhook(convert_to(body, 'UTF8'), pg_temp.signed(body, extra)) AS r
$$;
-- Rows written since this file started (other tests share the database).
CREATE TEMP VIEW totals AS
  SELECT (SELECT count(*) FROM upload_pipeline.blobs) AS blobs,
         (SELECT count(*) FROM upload_pipeline.events) AS events,
         (SELECT count(*) FROM upload_pipeline.webhook_deliveries) AS deliveries;
CREATE TEMP TABLE start AS SELECT * FROM totals;
CREATE TEMP VIEW counts AS
  SELECT t.blobs - s.blobs AS blobs, t.events - s.events AS events,
         t.deliveries - s.deliveries AS deliveries FROM totals t, start s;

SELECT tvdb.upload('report.pdf', 'pdf bytes') AS job \gset
SELECT tvdb.transition(:'job', 'parse_queued');
SELECT * FROM counts;

-- Bad or missing signature: 401, counted in the minute's row of
-- webhook_refusals (no event, nothing of the payload), no change.
SELECT tvdb.handle_llamaparse_webhook(convert_to(pg_temp.payload(:'job', 'parsed'), 'UTF8'), '{}');
SELECT tvdb.handle_llamaparse_webhook(convert_to(pg_temp.payload(:'job', 'parsed'), 'UTF8'),
         '{"X-Webhook-Signature": "sha256=0000000000000000000000000000000000000000000000000000000000000000"}');
SELECT tvdb.handle_llamaparse_webhook(convert_to(pg_temp.payload(:'job', 'parsed'), 'UTF8'),
         pg_temp.signed(pg_temp.payload(:'job', 'parsed') || ' '));
SELECT tvdb.handle_llamaparse_webhook(convert_to(pg_temp.payload(:'job', 'parsed'), 'UTF8'), NULL)->>'http_status' AS null_headers;
SELECT count(*) <= 2 AS a_row_a_minute, sum(refused) AS refused, sum(body_bytes) > 0 AS bytes_counted,
       (SELECT array_agg(DISTINCT h ORDER BY h) FROM upload_pipeline.webhook_refusals, unnest(signature_headers) h) AS signature_headers, min(minute) = date_trunc('minute', min(last_at)) AS per_minute
FROM upload_pipeline.webhook_refusals;
SELECT count(*) AS security_events FROM upload_pipeline.events WHERE type = 'security';
SELECT status, parsed_path FROM upload_pipeline.upload_jobs WHERE job_id = :'job';
SELECT * FROM counts;

-- Malformed bodies: 400 naming the problem, nothing written.
SELECT pg_temp.deliver(b) FROM unnest(ARRAY[
  '{"job_id": ', 'not json', '[1, 2]', '"a string"', '{}',
  '{"job_id": 42, "document_id": "x", "status": "parsed"}',
  '{"job_id": "not-a-uuid", "document_id": "x", "status": "parsed"}']) AS b;
SELECT pg_temp.deliver(regexp_replace(pg_temp.payload(:'job', 'parsed'), '"status": "parsed"', '"status": "done"'));
SELECT pg_temp.deliver((pg_temp.payload(:'job', 'parsed')::jsonb - 'document_id')::text);
SELECT pg_temp.deliver((pg_temp.payload(:'job', 'parsed')::jsonb - 'artifacts')::text);
SELECT pg_temp.deliver(jsonb_set(pg_temp.payload(:'job', 'parsed')::jsonb, '{artifacts,0,type}', '"text"')::text);
SELECT pg_temp.deliver(jsonb_set(pg_temp.payload(:'job', 'parsed')::jsonb, '{artifacts,0,sha256}',
         to_jsonb(repeat('ab', 32)))::text);
SELECT pg_temp.deliver(jsonb_set(pg_temp.payload(:'job', 'parsed')::jsonb, '{artifacts,0,bytes}', '3')::text);
SELECT pg_temp.deliver(jsonb_set(pg_temp.payload(:'job', 'parsed')::jsonb, '{artifacts,0,bytes}', '"20"')::text);
SELECT pg_temp.deliver(jsonb_set(pg_temp.payload(:'job', 'parsed')::jsonb, '{meta}', '"llamaparse"')::text);
SELECT pg_temp.deliver(jsonb_set(pg_temp.payload(:'job', 'parsed')::jsonb, '{correlation_id}',
         to_jsonb(gen_random_uuid()))::text);
-- Not UTF-8 (signed over the raw bytes).
SELECT r->>'http_status' AS status, r->>'detail' LIKE 'body is not valid UTF-8 JSON%' AS says_why
FROM tvdb.handle_llamaparse_webhook('\xff7b7d'::bytea,
       jsonb_build_object('X-Webhook-Signature', 'sha256=' || encode(hmac('\xff7b7d'::bytea, 'regress-secret', 'sha256'), 'hex'))) AS r;
SELECT tvdb.handle_llamaparse_webhook(NULL, '{}');
SELECT status FROM upload_pipeline.upload_jobs WHERE job_id = :'job';
SELECT * FROM counts;

-- Unknown job: 404.  A job of another document: 400.
SELECT pg_temp.deliver(jsonb_set(pg_temp.payload(:'job', 'parsed')::jsonb, '{job_id}',
         '"00000000-0000-4000-8000-000000000000"')::text);
SELECT pg_temp.deliver(jsonb_set(pg_temp.payload(:'job', 'parsed')::jsonb, '{document_id}',
         to_jsonb(gen_random_uuid()))::text);

-- A body above tvdb.webhook_max_bytes: 413 before parsing or verifying.
SET tvdb.webhook_max_bytes = 64;
SELECT tvdb.handle_llamaparse_webhook(convert_to(repeat('x', 65), 'UTF8'), '{}');
SELECT pg_temp.deliver(repeat(' ', 64) || 'x')  AS just_over;
RESET tvdb.webhook_max_bytes;
SELECT * FROM counts;

-- Atomic: when applying fails midway, nothing of it remains.
CREATE FUNCTION pg_temp.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'event store unavailable'; END $$;
CREATE TRIGGER refuse BEFORE INSERT ON upload_pipeline.events
  FOR EACH ROW WHEN (NEW.code = 'parse_completed') EXECUTE FUNCTION pg_temp.refuse();
SELECT pg_temp.deliver(pg_temp.payload(:'job', 'parsed'));
DROP TRIGGER refuse ON upload_pipeline.events;
SELECT status, parsed_path, parsed_sha256, parse_job_id FROM upload_pipeline.upload_jobs WHERE job_id = :'job';
SELECT * FROM counts;

-- The genuine callback: markdown stored, job parsed, one event with parser details.
SELECT pg_temp.deliver(pg_temp.payload(:'job', 'parsed'));
SELECT j.status, j.parsed_path = 'storage://parsed/' || j.document_id || '/' || j.job_id || '.md' AS path_ok,
       j.parsed_sha256 = b.sha256 AS sha_ok, j.parse_job_id = 'pj-' || left(j.job_id::text, 8) AS parse_job_ok,
       convert_from(b.content, 'UTF8') AS markdown, b.content_type, b.size_bytes
FROM upload_pipeline.upload_jobs j JOIN upload_pipeline.blobs b ON b.path = j.parsed_path
WHERE j.job_id = :'job';
SELECT from_status, to_status, type, code, payload - 'parse_job_id' AS payload
FROM upload_pipeline.events WHERE job_id = :'job' ORDER BY seq DESC LIMIT 1;
SELECT * FROM counts;

-- The same delivery again: 200, duplicate, nothing written.
SELECT pg_temp.deliver(pg_temp.payload(:'job', 'parsed'));
SELECT * FROM counts;

-- Too late: another result, or a failure, after parsing: 409 with an event.
SELECT pg_temp.deliver(pg_temp.payload(:'job', 'parsed', '# Other'));
SELECT pg_temp.deliver(pg_temp.payload(:'job', 'failed', NULL, '{"error": "timeout"}'));
SELECT tvdb.transition(:'job', 'chunking');
SELECT pg_temp.deliver(pg_temp.payload(:'job', 'parsed', '# Other'));
SELECT code, severity, payload FROM upload_pipeline.events
WHERE job_id = :'job' AND code = 'parse_webhook_conflict' ORDER BY seq;
SELECT status FROM upload_pipeline.upload_jobs WHERE job_id = :'job';

-- A failure: failed_parse with last_error and an error event; again: duplicate.
SELECT tvdb.upload('broken.pdf', 'junk') AS job2 \gset
SELECT pg_temp.deliver(pg_temp.payload(:'job2', 'failed', NULL, '{"error": "unsupported file"}'));
SELECT tvdb.transition(:'job2', 'parse_queued');
SELECT pg_temp.deliver(pg_temp.payload(:'job2', 'failed', NULL, '{"error": "unsupported file"}'));
SELECT status, last_error FROM upload_pipeline.upload_jobs WHERE job_id = :'job2';
SELECT to_status, type, severity, code, payload - 'parse_job_id' AS payload
FROM upload_pipeline.events WHERE job_id = :'job2' ORDER BY seq DESC LIMIT 1;
SELECT pg_temp.deliver(pg_temp.payload(:'job2', 'failed', NULL, '{"error": "unsupported file"}'));
SELECT pg_temp.deliver(pg_temp.payload(:'job2', 'failed', NULL, '{"error": "another reason"}'));
-- A replay of that old failure after the job was retried is not applied again.
SELECT tvdb.transition(:'job2', 'parse_queued');
SELECT pg_temp.deliver(pg_temp.payload(:'job2', 'failed', NULL, '{"error": "unsupported file"}'));
SELECT status, attempts FROM upload_pipeline.upload_jobs WHERE job_id = :'job2';

-- Standard Webhooks deliveries are recognised by webhook-id.
SET tvdb.webhook_secrets = 'other-secret, whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
SELECT tvdb.upload('memo.txt', 'memo') AS job3 \gset
SELECT tvdb.transition(:'job3', 'parse_queued');
CREATE FUNCTION pg_temp.sw_deliver(body text, id text) RETURNS text LANGUAGE sql AS $$
  SELECT concat_ws(' ', r->>'http_status', r->>'result', CASE WHEN r ? 'duplicate' THEN '(duplicate)' END)
  FROM (SELECT extract(epoch FROM clock_timestamp())::bigint::text AS ts) t,
       tvdb.handle_llamaparse_webhook(convert_to(body, 'UTF8'), jsonb_build_object(
         'Webhook-Id', id, 'Webhook-Timestamp', t.ts, 'Webhook-Signature',
         'v1,' || encode(hmac(convert_to(id || '.' || t.ts || '.' || body, 'UTF8'),
                              decode('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'base64'), 'sha256'), 'base64'))) AS r
$$;
SELECT pg_temp.sw_deliver(pg_temp.payload(:'job3', 'parsed', '# Memo'), 'msg_job3');
SELECT pg_temp.sw_deliver(pg_temp.payload(:'job3', 'parsed', '# Memo'), 'msg_job3');
SELECT status FROM upload_pipeline.upload_jobs WHERE job_id = :'job3';
SELECT count(*) AS deliveries_for_job3 FROM upload_pipeline.webhook_deliveries
WHERE job_id = :'job3' AND delivery_key = 'webhook-id:msg_job3';

-- LlamaCloud's own events are hints: the result becomes due for fetching.
SET tvdb.webhook_secrets = 'regress-secret';
SELECT tvdb.upload('slides.pdf', 'slides') AS job4 \gset
SELECT tvdb.transition(:'job4', 'parse_queued');
UPDATE upload_pipeline.upload_jobs SET parse_job_id = 'lc-job-4', next_poll_at = now() + interval '1 hour'
WHERE job_id = :'job4';
SELECT pg_temp.deliver('{"event_type": "parse.success", "data": {"job_id": "lc-job-4"}}');
SELECT next_poll_at <= now() AS due_now, status FROM upload_pipeline.upload_jobs WHERE job_id = :'job4';
SELECT type, code, payload FROM upload_pipeline.events WHERE job_id = :'job4' ORDER BY seq DESC LIMIT 1;
SELECT pg_temp.deliver('{"event_type": "parse.error", "job_id": "lc-job-unknown"}');
SELECT pg_temp.deliver('{"event_type": "extract.success", "data": {"job_id": "lc-job-4"}}');
SELECT pg_temp.deliver('{"event_type": "parse.success", "data": {}}');

-- What LlamaParse really sends is unsigned; the callback URL tvdb hands out
-- authenticates it: ?job=<id>&token=<base64url HMAC-SHA256 of
-- "tvdb-callback-v1:<id>" under a webhook secret>, computed here with pgcrypto.
CREATE FUNCTION pg_temp.token(job uuid, secret text) RETURNS text LANGUAGE sql AS $$
  SELECT translate(rtrim(encode(hmac(convert_to('tvdb-callback-v1:' || job, 'UTF8'), convert_to(secret, 'UTF8'), 'sha256'),
                                'base64'), '='), '+/', '-_')
$$;
CREATE FUNCTION pg_temp.at_url(body text, params jsonb, headers jsonb DEFAULT '{}') RETURNS text
LANGUAGE sql AS $$
  SELECT regexp_replace(concat_ws(' ', r->>'http_status', r->>'result', r->>'detail',
                                  CASE WHEN r ? 'duplicate' THEN '(duplicate)' END),
                        '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<uuid>', 'g')
  FROM tvdb.handle_llamaparse_webhook(convert_to(body, 'UTF8'), headers, params) AS r
$$;
-- LlamaParse's v1 push, as documented: {txt, md, json: [pages], images}.
CREATE FUNCTION pg_temp.push(md text, pages integer DEFAULT 2) RETURNS text LANGUAGE sql AS $$
  SELECT jsonb_build_object('txt', md, 'md', md, 'images', '[]'::jsonb,
           'json', (SELECT jsonb_agg(jsonb_build_object('page', p, 'text', md, 'md', md, 'images', '[]'::jsonb))
                    FROM generate_series(1, pages) p))::text
$$;
SET tvdb.webhook_secrets = 'new-secret, regress-secret';
SELECT tvdb.upload('pushed.pdf', 'pushed') AS job5 \gset
SELECT tvdb.transition(:'job5', 'parse_queued');
UPDATE upload_pipeline.upload_jobs SET parse_job_id = 'lp-job-5' WHERE job_id = :'job5';
CREATE TEMP TABLE start5 AS SELECT * FROM totals;
-- A wrong, truncated, or other job's token, or a token without its job: 401, nothing applied.
SELECT pg_temp.at_url(pg_temp.push('# Pushed'), jsonb_build_object('job', :'job5', 'token', pg_temp.token(:'job5', 'wrong-secret'))) AS wrong_secret,
       pg_temp.at_url(pg_temp.push('# Pushed'), jsonb_build_object('job', :'job5', 'token', left(pg_temp.token(:'job5', 'new-secret'), 42))) AS truncated,
       pg_temp.at_url(pg_temp.push('# Pushed'), jsonb_build_object('job', :'job5', 'token', pg_temp.token(:'job4', 'new-secret'))) AS other_job,
       pg_temp.at_url(pg_temp.push('# Pushed'), jsonb_build_object('token', pg_temp.token(:'job5', 'new-secret'))) AS no_job,
       pg_temp.at_url(pg_temp.push('# Pushed'), jsonb_build_object('job', 'not-a-uuid', 'token', pg_temp.token(:'job5', 'new-secret'))) AS bad_job;
-- A valid token does not stand in for a signature on another job's body.
SELECT pg_temp.at_url(pg_temp.payload(:'job4', 'parsed'), jsonb_build_object('job', :'job5', 'token', pg_temp.token(:'job5', 'new-secret')));
-- An unsigned push without the callback URL: refused.
SELECT pg_temp.at_url(pg_temp.push('# Pushed'), '{}');
SELECT status FROM upload_pipeline.upload_jobs WHERE job_id = :'job5';
-- The push at its URL (the older secret still valid: rotation): markdown applied without a fetch.
SELECT pg_temp.at_url(pg_temp.push('# Pushed' || chr(10) || chr(10) || 'By LlamaParse.'),
                      jsonb_build_object('job', upper(:'job5'), 'token', pg_temp.token(:'job5', 'regress-secret')));
SELECT j.status, convert_from(b.content, 'UTF8') AS markdown, j.parse_job_id
FROM upload_pipeline.upload_jobs j JOIN upload_pipeline.blobs b ON b.path = j.parsed_path WHERE j.job_id = :'job5';
SELECT service, operation, pages, http_status FROM upload_pipeline.usage WHERE job_id = :'job5';
SELECT code, payload - 'content_length' AS payload FROM upload_pipeline.events WHERE job_id = :'job5' ORDER BY seq DESC LIMIT 1;
-- LlamaParse retries a push it thinks failed: the same body is a duplicate.
SELECT pg_temp.at_url(pg_temp.push('# Pushed' || chr(10) || chr(10) || 'By LlamaParse.'),
                      jsonb_build_object('job', :'job5', 'token', pg_temp.token(:'job5', 'new-secret')));
SELECT t.blobs - s.blobs AS blobs, t.deliveries - s.deliveries AS deliveries FROM totals t, start5 s;
-- Malformed pushes: 400 naming the field.
SELECT pg_temp.at_url(b, jsonb_build_object('job', :'job5', 'token', pg_temp.token(:'job5', 'new-secret')))
FROM unnest(ARRAY['{"md": 42, "txt": ""}', '{"md": "x", "json": {}}']) AS b;

-- LlamaCloud events at the callback URL (v2's webhook_configurations): a
-- hint; a redelivery has the same X-Webhook-Event-ID; pending/running are not hints.
SELECT tvdb.upload('evented.pdf', 'evented') AS job6 \gset
SELECT tvdb.transition(:'job6', 'parse_queued');
UPDATE upload_pipeline.upload_jobs SET parse_job_id = 'lp-job-6', next_poll_at = now() + interval '1 hour'
WHERE job_id = :'job6';
SELECT pg_temp.at_url(format('{"event_id": "ev-1", "event_type": "%s", "timestamp": 1753985275.11, "data": {"id": "lp-job-6", "job_id": "lp-job-6"}}', e),
                      jsonb_build_object('job', :'job6', 'token', pg_temp.token(:'job6', 'new-secret')),
                      jsonb_build_object('X-Webhook-Event-ID', 'ev-' || e, 'X-Webhook-Event-Type', e)) AS reply
FROM unnest(ARRAY['parse.pending', 'parse.running']) AS e;
SELECT next_poll_at > now() AS still_waiting FROM upload_pipeline.upload_jobs WHERE job_id = :'job6';
SELECT pg_temp.at_url('{"event_id": "ev-2", "event_type": "parse.success", "timestamp": 1753985275.11, "data": {"id": "lp-job-6", "job_id": "lp-job-6"}}',
                      jsonb_build_object('job', :'job6', 'token', pg_temp.token(:'job6', 'new-secret')),
                      '{"X-Webhook-Event-ID": "ev-2", "X-Webhook-Event-Type": "parse.success"}') AS first,
       pg_temp.at_url('{"event_id": "ev-2", "event_type": "parse.success", "timestamp": 1753985275.11, "data": {"id": "lp-job-6", "job_id": "lp-job-6"}}',
                      jsonb_build_object('job', :'job6', 'token', pg_temp.token(:'job6', 'new-secret')),
                      '{"X-Webhook-Event-ID": "ev-2", "X-Webhook-Event-Type": "parse.success"}') AS again;
SELECT next_poll_at <= now() AS due_now FROM upload_pipeline.upload_jobs WHERE job_id = :'job6';
-- An event for another LlamaParse job at this job's URL: refused.
SELECT pg_temp.at_url('{"event_id": "ev-3", "event_type": "parse.success", "data": {"id": "lp-job-5", "job_id": "lp-job-5"}}',
                      jsonb_build_object('job', :'job6', 'token', pg_temp.token(:'job6', 'new-secret')));
-- Events from a project-level webhook, authenticated by a configured header
-- holding a secret (LlamaCloud's webhook_headers); a wrong value is a forgery.
SET tvdb.webhook_secret_header = 'X-Tvdb-Secret';
SELECT pg_temp.at_url('{"event_id": "ev-4", "event_type": "parse.error", "data": {"id": "lp-job-6", "job_id": "lp-job-6"}}', '{}',
                      '{"x-tvdb-secret": "regress-secret", "X-Webhook-Event-ID": "ev-4"}') AS right_value,
       pg_temp.at_url('{"event_id": "ev-5", "event_type": "parse.error", "data": {"id": "lp-job-6", "job_id": "lp-job-6"}}', '{}',
                      '{"X-Tvdb-Secret": "regress-secre", "X-Webhook-Event-ID": "ev-5"}') AS wrong_value;
SET tvdb.webhook_secret_header = 'X-Tvdb Secret';
RESET tvdb.webhook_secret_header;
SELECT sum(refused) AS forgeries_recorded FROM upload_pipeline.webhook_refusals;
RESET tvdb.webhook_secrets;

-- No secrets configured: every delivery is refused, and the log says why.
SET tvdb.webhook_secrets = '';
SELECT tvdb.handle_llamaparse_webhook(convert_to(pg_temp.payload(:'job4', 'parsed'), 'UTF8'),
         pg_temp.signed(pg_temp.payload(:'job4', 'parsed')));
RESET tvdb.webhook_secrets;

-- Only the receiver's role may call the handler.
CREATE ROLE tvdb_regress_app;
GRANT USAGE ON SCHEMA tvdb TO tvdb_regress_app;
SET ROLE tvdb_regress_app;
SELECT tvdb.handle_llamaparse_webhook('{}', '{}');
RESET ROLE;
REVOKE USAGE ON SCHEMA tvdb FROM tvdb_regress_app;
DROP ROLE tvdb_regress_app;
