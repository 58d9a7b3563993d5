-- LlamaParse webhook callbacks.  tvdb.handle_llamaparse_webhook() (C) bounds
-- the body, verifies the signature and records forgeries; the function below
-- then validates the payload and applies it, in the caller's transaction.

CREATE FUNCTION tvdb._wake_workers() RETURNS void
    AS 'MODULE_PATHNAME', 'tvdb_wake_workers' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tvdb._wake_workers() IS 'internal: wake the background workers when this transaction commits';
REVOKE ALL ON FUNCTION tvdb._wake_workers() FROM PUBLIC;

-- Deliveries already applied, so that a redelivery is answered, not re-applied.
CREATE TABLE upload_pipeline.webhook_deliveries (
    delivery_key text PRIMARY KEY,
    job_id       uuid,
    http_status  integer NOT NULL,
    result       text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE upload_pipeline.webhook_deliveries IS
    'applied webhook deliveries, keyed by webhook-id (or body sha256 when there is none)';
SELECT pg_catalog.pg_extension_config_dump('upload_pipeline.webhook_deliveries', '');

CREATE FUNCTION tvdb._webhook_reply(http_status integer, result text, extra jsonb DEFAULT '{}')
    RETURNS jsonb LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT jsonb_build_object('http_status', http_status, 'result', result) || extra $$;
COMMENT ON FUNCTION tvdb._webhook_reply(integer, text, jsonb) IS 'internal: the reply object a webhook receiver relays';

-- NULL when payload->field has the expected kind, else what is wrong with it.
CREATE FUNCTION tvdb._webhook_field_problem(payload jsonb, field text, kind text, required boolean)
    RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN NOT payload ? field OR jsonb_typeof(payload -> field) = 'null' THEN
            CASE WHEN required THEN format('missing field "%s"', field) END
        WHEN kind IN ('string', 'uuid', 'hex64') AND jsonb_typeof(payload -> field) <> 'string' THEN
            format('field "%s" must be a string', field)
        WHEN kind = 'uuid' AND (payload ->> field) !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
            format('field "%s" must be a UUID', field)
        WHEN kind = 'hex64' AND (payload ->> field) !~* '^[0-9a-f]{64}$' THEN
            format('field "%s" must be 64 hexadecimal digits', field)
        WHEN kind = 'count' AND (jsonb_typeof(payload -> field) <> 'number'
                                 OR (payload ->> field) !~ '^[0-9]{1,15}$') THEN
            format('field "%s" must be a non-negative integer', field)
        WHEN kind IN ('object', 'array') AND jsonb_typeof(payload -> field) <> kind THEN
            format('field "%s" must be an %s', field, kind)
    END
$$;
COMMENT ON FUNCTION tvdb._webhook_field_problem(jsonb, text, text, boolean) IS 'internal: payload field validation';

-- A warning event about a callback that was refused for a job.
CREATE FUNCTION tvdb._webhook_conflict(job upload_pipeline.upload_jobs, reason text, callback_status text)
    RETURNS jsonb LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO upload_pipeline.events (job_id, document_id, type, severity, code, payload, correlation_id)
    VALUES (job.job_id, job.document_id, 'stage_error', 'warn', 'parse_webhook_conflict',
            jsonb_build_object('reason', reason, 'job_status', job.status,
                               'callback_status', callback_status),
            job.correlation_id);
    RETURN tvdb._webhook_reply(409, 'conflict',
        jsonb_build_object('detail', reason, 'job_id', job.job_id, 'job_status', job.status));
END
$$;
COMMENT ON FUNCTION tvdb._webhook_conflict(upload_pipeline.upload_jobs, text, text) IS 'internal: record and answer a refused callback';

-- A header's value, whatever the case of its name.
CREATE FUNCTION tvdb._header(headers jsonb, name text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT h.value FROM jsonb_each_text(headers) h WHERE lower(h.key) = lower(name) LIMIT 1 $$;
COMMENT ON FUNCTION tvdb._header(jsonb, text) IS 'internal: a request header, case-insensitively';

-- The job a callback is about, locked (one delivery at a time per job): the
-- one its URL names, else the one with LlamaParse's job id.  NULL job_id:
-- none; the reply says why.
CREATE FUNCTION tvdb._webhook_job(url_job uuid, parse_job text, OUT job upload_pipeline.upload_jobs, OUT refusal jsonb)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF url_job IS NOT NULL THEN
        SELECT * INTO job FROM upload_pipeline.upload_jobs j WHERE j.job_id = url_job FOR UPDATE;
        IF NOT FOUND THEN
            refusal := tvdb._webhook_reply(404, 'not_found', jsonb_build_object('detail', format('job %s does not exist', url_job)));
        ELSIF parse_job IS NOT NULL AND job.parse_job_id IS NOT NULL AND job.parse_job_id <> parse_job THEN
            refusal := tvdb._webhook_reply(400, 'bad_request', jsonb_build_object('detail',
                format('the callback URL is for job %s, whose LlamaParse job is not "%s"', url_job, parse_job)));
        END IF;
    ELSIF parse_job IS NULL THEN
        refusal := tvdb._webhook_reply(400, 'bad_request',
            '{"detail": "the callback names no job: neither its URL (job=) nor its body (job_id, data.job_id or data.id)"}');
    ELSE
        SELECT * INTO job FROM upload_pipeline.upload_jobs j WHERE j.parse_job_id = parse_job FOR UPDATE;
        IF NOT FOUND THEN
            refusal := tvdb._webhook_reply(404, 'not_found',
                jsonb_build_object('detail', format('no job has LlamaParse job id "%s"', parse_job)));
        END IF;
    END IF;
END
$$;
COMMENT ON FUNCTION tvdb._webhook_job(uuid, text) IS 'internal: find and lock the job a callback is about';

CREATE FUNCTION tvdb._webhook_seen(delivery_key text) RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT EXISTS (SELECT 1 FROM upload_pipeline.webhook_deliveries d WHERE d.delivery_key = _webhook_seen.delivery_key) $$;
COMMENT ON FUNCTION tvdb._webhook_seen(text) IS 'internal: has this delivery been applied already?';

-- LlamaCloud's event callbacks ({event_id, event_type, timestamp, data: {id,
-- job_id}}): a hint that the job's result can be fetched now.  parse.pending
-- and parse.running say nothing new; a redelivery (same event id) is
-- answered as a duplicate.
CREATE FUNCTION tvdb._apply_llamacloud_event(payload jsonb, delivery_key text, url_job uuid DEFAULT NULL)
    RETURNS jsonb LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    event_name text := coalesce(payload ->> 'event_type', payload ->> 'event');
    parse_job text := coalesce(payload ->> 'job_id', payload -> 'data' ->> 'job_id',
                               payload -> 'data' ->> 'id', payload ->> 'id');
    found_job record;
    job upload_pipeline.upload_jobs;
BEGIN
    IF event_name NOT LIKE 'parse.%' THEN
        RETURN tvdb._webhook_reply(200, 'ignored',
            jsonb_build_object('detail', format('event "%s" is not a parse event', event_name)));
    END IF;
    IF event_name IN ('parse.pending', 'parse.running') THEN
        RETURN tvdb._webhook_reply(200, 'ignored',
            jsonb_build_object('detail', format('event "%s": the parse has not finished', event_name)));
    END IF;
    SELECT * INTO found_job FROM tvdb._webhook_job(url_job, parse_job);
    IF found_job.refusal IS NOT NULL THEN
        RETURN found_job.refusal;
    END IF;
    job := found_job.job;
    IF delivery_key IS NOT NULL AND tvdb._webhook_seen(delivery_key) THEN
        RETURN tvdb._webhook_reply(200, 'duplicate', jsonb_build_object('duplicate', true, 'job_id', job.job_id));
    END IF;

    INSERT INTO upload_pipeline.events (job_id, document_id, type, severity, code, payload, correlation_id)
    VALUES (job.job_id, job.document_id, 'webhook', 'info', 'parse_hint_received',
            jsonb_strip_nulls(jsonb_build_object('event_type', event_name, 'parse_job_id', parse_job,
                                                 'event_id', payload ->> 'event_id', 'job_status', job.status)),
            job.correlation_id);
    IF job.status = 'parse_queued' THEN
        UPDATE upload_pipeline.upload_jobs SET next_poll_at = now() WHERE job_id = job.job_id;
        PERFORM tvdb._wake_workers();
    END IF;
    IF delivery_key IS NOT NULL THEN
        INSERT INTO upload_pipeline.webhook_deliveries (delivery_key, job_id, http_status, result)
        VALUES (delivery_key, job.job_id, 202, 'hint_recorded');
    END IF;
    RETURN tvdb._webhook_reply(202, 'hint_recorded',
        jsonb_build_object('job_id', job.job_id, 'due_now', job.status = 'parse_queued'));
END
$$;
COMMENT ON FUNCTION tvdb._apply_llamacloud_event(jsonb, text, uuid) IS 'internal: record a LlamaCloud parse event and make the result due';

-- Markdown a callback brought: stored and the job moved parse_queued ->
-- parsed, exactly once.  A copy of what was applied is a duplicate; a job
-- not waiting for a parse result gets a conflict event.  A cancelled job's
-- delivery is remembered too, so that its cost is recorded once.
CREATE FUNCTION tvdb._webhook_parsed(job upload_pipeline.upload_jobs, markdown bytea, details jsonb,
                                     delivery text, parse_job text)
    RETURNS jsonb LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    md_sha text := encode(sha256(markdown), 'hex');
    md_path text;
BEGIN
    IF tvdb._webhook_seen(delivery) OR
       (job.status NOT IN ('uploaded', 'parse_queued', 'failed_parse') AND job.parsed_sha256 = md_sha) THEN
        RETURN tvdb._webhook_reply(200, 'duplicate', jsonb_build_object('duplicate', true, 'job_id', job.job_id));
    ELSIF job.status = 'cancelled' THEN
        INSERT INTO upload_pipeline.webhook_deliveries (delivery_key, job_id, http_status, result)
        VALUES (delivery, job.job_id, 409, 'cancelled')
        ON CONFLICT (delivery_key) DO NOTHING;
        RETURN tvdb._webhook_conflict(job, 'job was cancelled: its parse result is not used', 'parsed');
    ELSIF job.status <> 'parse_queued' THEN
        RETURN tvdb._webhook_conflict(job,
            CASE WHEN job.status IN ('uploaded', 'failed_parse')
                 THEN format('job is in status %s, not waiting for a parse result', job.status)
                 WHEN job.status = 'parsed' THEN 'job was already parsed with other content'
                 ELSE 'job is already past parsing' END, 'parsed');
    END IF;
    md_path := tvdb._parsed_path(job.document_id, job.job_id);
    INSERT INTO upload_pipeline.blobs (document_id, path, content, content_type, sha256, size_bytes)
    VALUES (job.document_id, md_path, markdown, 'text/markdown', md_sha, octet_length(markdown))
    ON CONFLICT (document_id, path) DO UPDATE
        SET content = EXCLUDED.content, sha256 = EXCLUDED.sha256,
            size_bytes = EXCLUDED.size_bytes, created_at = now();
    UPDATE upload_pipeline.upload_jobs j
    SET parsed_path = md_path, parsed_sha256 = md_sha, next_poll_at = NULL,
        parse_job_id = coalesce(parse_job, j.parse_job_id)
    WHERE j.job_id = job.job_id;
    PERFORM tvdb.transition(job.job_id, 'parsed',
        jsonb_strip_nulls(details || jsonb_build_object('via', 'webhook',
                                                        'content_length', octet_length(markdown),
                                                        'parse_job_id', parse_job)),
        'parse_queued');
    INSERT INTO upload_pipeline.webhook_deliveries (delivery_key, job_id, http_status, result)
    VALUES (delivery, job.job_id, 200, 'applied')
    ON CONFLICT (delivery_key) DO NOTHING;
    RETURN tvdb._webhook_reply(200, 'applied', jsonb_build_object('job_id', job.job_id, 'status', 'parsed'));
END
$$;
COMMENT ON FUNCTION tvdb._webhook_parsed(upload_pipeline.upload_jobs, bytea, jsonb, text, text) IS 'internal: apply the markdown a callback brought';

-- LlamaParse's v1 webhook_url push ({txt, md, json: [pages], images}): no id,
-- no signature, so it is only taken at the callback URL tvdb handed out,
-- which names the job.  Its markdown is applied without a fetch; the pages
-- (one element of "json" each) go in the ledger, also when the job was
-- cancelled (LlamaParse parsed it all the same).  A push without markdown is
-- a hint: the worker fetches the result at once.
CREATE FUNCTION tvdb._apply_llamaparse_push(payload jsonb, body bytea, url_job uuid)
    RETURNS jsonb LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found_job record;
    job upload_pipeline.upload_jobs;
    problem text;
    pages integer;
    reply jsonb;
BEGIN
    IF url_job IS NULL THEN
        RETURN tvdb._webhook_reply(400, 'bad_request', '{"detail": "a LlamaParse push carries no job id: it is taken only at the callback URL tvdb hands out (with job= and token=)"}');
    END IF;
    problem := coalesce(tvdb._webhook_field_problem(payload, 'md', 'string', false),
                        tvdb._webhook_field_problem(payload, 'txt', 'string', false),
                        tvdb._webhook_field_problem(payload, 'json', 'array', false),
                        tvdb._webhook_field_problem(payload, 'images', 'array', false));
    IF problem IS NOT NULL THEN
        RETURN tvdb._webhook_reply(400, 'bad_request', jsonb_build_object('detail', problem));
    END IF;
    SELECT * INTO found_job FROM tvdb._webhook_job(url_job, NULL);
    IF found_job.refusal IS NOT NULL THEN
        RETURN found_job.refusal;
    END IF;
    job := found_job.job;
    IF jsonb_typeof(payload -> 'md') <> 'string' THEN
        RETURN tvdb._apply_llamacloud_event(jsonb_build_object('event_type', 'parse.push_without_markdown'),
                                            'sha256:' || encode(sha256(body), 'hex'), url_job);
    END IF;
    pages := CASE WHEN jsonb_typeof(payload -> 'json') = 'array' THEN jsonb_array_length(payload -> 'json') END;
    reply := tvdb._webhook_parsed(job, convert_to(payload ->> 'md', 'UTF8'),
                                  jsonb_build_object('pages', pages),
                                  'sha256:' || encode(sha256(body), 'hex'), NULL);
    IF reply ->> 'result' = 'applied' OR (reply ->> 'result' = 'conflict' AND job.status = 'cancelled') THEN
        PERFORM tvdb._record_usage('llamaparse', 'webhook_push', job.job_id, NULL, NULL, NULL, pages => pages,
                                   cost_usd => tvdb._llamaparse_cost(pages, false, NULL, tvdb._parse_mode()));
    END IF;
    RETURN reply;
END
$$;
COMMENT ON FUNCTION tvdb._apply_llamaparse_push(jsonb, bytea, uuid) IS 'internal: apply LlamaParse''s v1 webhook_url push for the job its URL names';

-- An authenticated callback: which kind it is, then validate and apply it
-- exactly once.  url_job: the job its callback URL named (token checked).
CREATE FUNCTION tvdb._apply_llamaparse_webhook(body bytea, headers jsonb, url_job uuid DEFAULT NULL)
    RETURNS jsonb LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    payload jsonb;
    problem text;
    cb_status text;
    artifact jsonb;
    markdown bytea;
    found_job record;
    job upload_pipeline.upload_jobs;
    delivery text;
    parser_error text;
BEGIN
    BEGIN
        payload := convert_from(body, 'UTF8')::jsonb;
    EXCEPTION WHEN OTHERS THEN
        RETURN tvdb._webhook_reply(400, 'bad_request',
            jsonb_build_object('detail', 'body is not valid UTF-8 JSON: ' || SQLERRM));
    END;
    IF jsonb_typeof(payload) <> 'object' THEN
        RETURN tvdb._webhook_reply(400, 'bad_request', '{"detail": "body must be a JSON object"}');
    END IF;

    IF payload ? 'event_type' OR (payload ? 'event' AND NOT payload ? 'status') THEN
        -- the same event delivered again carries the same event id
        RETURN tvdb._apply_llamacloud_event(payload,
            coalesce('event-id:' || coalesce(tvdb._header(headers, 'X-Webhook-Event-ID'), payload ->> 'event_id'),
                     'webhook-id:' || tvdb._header(headers, 'webhook-id')),
            url_job);
    END IF;
    IF NOT payload ? 'status' AND payload ?| ARRAY['md', 'txt', 'json', 'images'] THEN
        RETURN tvdb._apply_llamaparse_push(payload, body, url_job);
    END IF;

    -- tvdb's own signed format, for other senders.  A redelivery carries the
    -- same webhook-id, or failing that the same body.
    delivery := coalesce('webhook-id:' || tvdb._header(headers, 'webhook-id'), 'sha256:' || encode(sha256(body), 'hex'));
    problem := coalesce(
        tvdb._webhook_field_problem(payload, 'job_id', 'uuid', true),
        tvdb._webhook_field_problem(payload, 'document_id', 'uuid', true),
        tvdb._webhook_field_problem(payload, 'status', 'string', true),
        tvdb._webhook_field_problem(payload, 'parse_job_id', 'string', false),
        tvdb._webhook_field_problem(payload, 'correlation_id', 'uuid', false),
        tvdb._webhook_field_problem(payload, 'meta', 'object', false),
        tvdb._webhook_field_problem(payload->'meta', 'parser_name', 'string', false),
        tvdb._webhook_field_problem(payload->'meta', 'parser_version', 'string', false),
        tvdb._webhook_field_problem(payload->'meta', 'error', 'string', false));
    cb_status := payload ->> 'status';
    IF problem IS NULL AND cb_status NOT IN ('parsed', 'failed') THEN
        problem := format('field "status" must be "parsed" or "failed", not "%s"', cb_status);
    END IF;
    IF problem IS NULL AND url_job IS NOT NULL AND (payload ->> 'job_id')::uuid <> url_job THEN
        problem := format('the callback URL is for job %s, the body for job %s', url_job, payload ->> 'job_id');
    END IF;
    IF problem IS NULL AND cb_status = 'parsed' THEN
        problem := tvdb._webhook_field_problem(payload, 'artifacts', 'array', true);
        IF problem IS NULL THEN
            SELECT a INTO artifact FROM jsonb_array_elements(payload -> 'artifacts') a
            WHERE jsonb_typeof(a) = 'object' AND a ->> 'type' = 'markdown' LIMIT 1;
            problem := CASE WHEN artifact IS NULL THEN 'no artifact of type "markdown"' END;
        END IF;
        problem := coalesce(problem,
            tvdb._webhook_field_problem(artifact, 'content', 'string', true),
            tvdb._webhook_field_problem(artifact, 'sha256', 'hex64', true),
            tvdb._webhook_field_problem(artifact, 'bytes', 'count', true));
        IF problem IS NULL THEN
            markdown := convert_to(artifact ->> 'content', 'UTF8');
            IF octet_length(markdown) <> (artifact ->> 'bytes')::bigint THEN
                problem := format('markdown artifact declares %s bytes but its content has %s',
                                  artifact ->> 'bytes', octet_length(markdown));
            ELSIF encode(sha256(markdown), 'hex') <> lower(artifact ->> 'sha256') THEN
                problem := 'markdown artifact sha256 does not match its content';
            END IF;
        END IF;
    END IF;
    IF problem IS NOT NULL THEN
        RETURN tvdb._webhook_reply(400, 'bad_request', jsonb_build_object('detail', problem));
    END IF;

    SELECT * INTO found_job FROM tvdb._webhook_job((payload ->> 'job_id')::uuid, NULL);
    IF found_job.refusal IS NOT NULL THEN
        RETURN found_job.refusal;
    END IF;
    job := found_job.job;
    IF job.document_id <> (payload ->> 'document_id')::uuid THEN
        RETURN tvdb._webhook_reply(400, 'bad_request',
            jsonb_build_object('detail', format('job %s belongs to another document', job.job_id)));
    END IF;
    IF payload ? 'correlation_id' AND job.correlation_id <> (payload ->> 'correlation_id')::uuid THEN
        RETURN tvdb._webhook_reply(400, 'bad_request',
            jsonb_build_object('detail', format('job %s has another correlation_id', job.job_id)));
    END IF;

    IF cb_status = 'parsed' THEN
        RETURN tvdb._webhook_parsed(job, markdown,
            jsonb_build_object('parser_name', payload -> 'meta' ->> 'parser_name',
                               'parser_version', payload -> 'meta' ->> 'parser_version'),
            delivery, payload ->> 'parse_job_id');
    END IF;
    IF tvdb._webhook_seen(delivery) THEN
        RETURN tvdb._webhook_reply(200, 'duplicate', jsonb_build_object('duplicate', true, 'job_id', job.job_id));
    END IF;
    parser_error := coalesce(payload -> 'meta' ->> 'error', 'parse failed (no error given)');
    IF job.status = 'failed_parse' AND job.last_error IS NOT DISTINCT FROM parser_error THEN
        RETURN tvdb._webhook_reply(200, 'duplicate', jsonb_build_object('duplicate', true, 'job_id', job.job_id));
    ELSIF job.status <> 'parse_queued' THEN
        RETURN tvdb._webhook_conflict(job,
            CASE WHEN job.status IN ('uploaded', 'failed_parse')
                 THEN format('job is in status %s, not waiting for a parse result', job.status)
                 ELSE 'a failure arrived for a job already parsed' END, cb_status);
    END IF;
    UPDATE upload_pipeline.upload_jobs j
    SET parse_job_id = coalesce(payload ->> 'parse_job_id', j.parse_job_id), next_poll_at = NULL
    WHERE j.job_id = job.job_id;
    PERFORM tvdb.transition(job.job_id, 'failed_parse',
        jsonb_strip_nulls(jsonb_build_object(
            'via', 'webhook', 'error', parser_error,
            'parser_name', payload -> 'meta' ->> 'parser_name',
            'parse_job_id', payload ->> 'parse_job_id')),
        'parse_queued');
    INSERT INTO upload_pipeline.webhook_deliveries (delivery_key, job_id, http_status, result)
    VALUES (delivery, job.job_id, 200, 'applied')
    ON CONFLICT (delivery_key) DO NOTHING;
    RETURN tvdb._webhook_reply(200, 'applied', jsonb_build_object('job_id', job.job_id, 'status', 'failed_parse'));
END
$$;
COMMENT ON FUNCTION tvdb._apply_llamaparse_webhook(bytea, jsonb, uuid) IS 'internal: validate and apply an authenticated LlamaParse callback';

CREATE FUNCTION tvdb.handle_llamaparse_webhook(body bytea, headers jsonb, params jsonb DEFAULT NULL)
    RETURNS jsonb
    AS 'MODULE_PATHNAME', 'tvdb_handle_llamaparse_webhook_0_2' LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION tvdb.handle_llamaparse_webhook(bytea, jsonb, jsonb) IS
    'authenticate and apply one LlamaParse callback (params: the query of the URL it came to); returns {"http_status", "result", ...} for the receiver to relay';

CREATE FUNCTION tvdb.callback_url(job uuid) RETURNS text
    AS 'MODULE_PATHNAME', 'tvdb_callback_url_sql' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION tvdb.callback_url(uuid) IS
    'the callback URL the worker hands LlamaParse for a job (NULL when tvdb.parse_webhook_url is empty); it holds a valid token: superusers only';

-- Only the receiver's role should call these: grant it EXECUTE on the handler.
REVOKE ALL ON FUNCTION tvdb.handle_llamaparse_webhook(bytea, jsonb, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb.callback_url(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._apply_llamaparse_webhook(bytea, jsonb, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._apply_llamaparse_push(jsonb, bytea, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._apply_llamacloud_event(jsonb, text, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._webhook_parsed(upload_pipeline.upload_jobs, bytea, jsonb, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._webhook_job(uuid, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._webhook_conflict(upload_pipeline.upload_jobs, text, text) FROM PUBLIC;
