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

-- LlamaCloud's own event callbacks (parse.success, parse.error, ...): a hint
-- that the job's result can be fetched now.
CREATE FUNCTION tvdb._apply_llamacloud_event(payload jsonb, delivery_key text)
    RETURNS jsonb LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    event_name text := coalesce(payload ->> 'event_type', payload ->> 'event');
    parse_job text := coalesce(payload ->> 'job_id', payload -> 'data' ->> 'job_id',
                               payload -> 'data' ->> 'id', payload ->> 'id');
    job upload_pipeline.upload_jobs;
BEGIN
    IF event_name NOT LIKE 'parse.%' THEN
        RETURN tvdb._webhook_reply(200, 'ignored',
            jsonb_build_object('detail', format('event "%s" is not a parse event', event_name)));
    END IF;
    IF parse_job IS NULL THEN
        RETURN tvdb._webhook_reply(400, 'bad_request',
            jsonb_build_object('detail', 'event carries no job id (job_id, data.job_id or data.id)'));
    END IF;
    SELECT * INTO job FROM upload_pipeline.upload_jobs j WHERE j.parse_job_id = parse_job FOR UPDATE;
    IF NOT FOUND THEN
        RETURN tvdb._webhook_reply(404, 'not_found',
            jsonb_build_object('detail', format('no job has parse job id "%s"', parse_job)));
    END IF;
    IF delivery_key IS NOT NULL AND
       EXISTS (SELECT 1 FROM upload_pipeline.webhook_deliveries d WHERE d.delivery_key = _apply_llamacloud_event.delivery_key) THEN
        RETURN tvdb._webhook_reply(200, 'duplicate', jsonb_build_object('duplicate', true, 'job_id', job.job_id));
    END IF;

    INSERT INTO upload_pipeline.events (job_id, document_id, type, severity, code, payload, correlation_id)
    VALUES (job.job_id, job.document_id, 'webhook', 'info', 'parse_hint_received',
            jsonb_build_object('event_type', event_name, 'parse_job_id', parse_job,
                               'job_status', job.status),
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
COMMENT ON FUNCTION tvdb._apply_llamacloud_event(jsonb, text) IS 'internal: record a LlamaCloud parse event and make the result due';

-- The payload of a verified callback: validate, then apply exactly once.
CREATE FUNCTION tvdb._apply_llamaparse_webhook(body bytea, headers jsonb)
    RETURNS jsonb LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    payload jsonb;
    problem text;
    cb_status text;
    artifact jsonb;
    markdown bytea;
    md_sha text;
    job upload_pipeline.upload_jobs;
    delivery text;
    webhook_id text;
    md_path text;
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

    SELECT h.value INTO webhook_id FROM jsonb_each_text(headers) h WHERE lower(h.key) = 'webhook-id' LIMIT 1;
    IF payload ? 'event_type' OR (payload ? 'event' AND NOT payload ? 'status') THEN
        RETURN tvdb._apply_llamacloud_event(payload, 'webhook-id:' || webhook_id);
    END IF;
    -- A redelivery carries the same webhook-id, or failing that the same body.
    delivery := coalesce('webhook-id:' || webhook_id, 'sha256:' || encode(sha256(body), 'hex'));

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
            md_sha := encode(sha256(markdown), 'hex');
            IF octet_length(markdown) <> (artifact ->> 'bytes')::bigint THEN
                problem := format('markdown artifact declares %s bytes but its content has %s',
                                  artifact ->> 'bytes', octet_length(markdown));
            ELSIF md_sha <> lower(artifact ->> 'sha256') THEN
                problem := 'markdown artifact sha256 does not match its content';
            END IF;
        END IF;
    END IF;
    IF problem IS NOT NULL THEN
        RETURN tvdb._webhook_reply(400, 'bad_request', jsonb_build_object('detail', problem));
    END IF;

    -- One delivery at a time per job: concurrent copies queue here.
    SELECT * INTO job FROM upload_pipeline.upload_jobs j
    WHERE j.job_id = (payload ->> 'job_id')::uuid FOR UPDATE;
    IF NOT FOUND THEN
        RETURN tvdb._webhook_reply(404, 'not_found',
            jsonb_build_object('detail', format('job %s does not exist', payload ->> 'job_id')));
    END IF;
    IF job.document_id <> (payload ->> 'document_id')::uuid THEN
        RETURN tvdb._webhook_reply(400, 'bad_request',
            jsonb_build_object('detail', format('job %s belongs to another document', job.job_id)));
    END IF;
    IF payload ? 'correlation_id' AND job.correlation_id <> (payload ->> 'correlation_id')::uuid THEN
        RETURN tvdb._webhook_reply(400, 'bad_request',
            jsonb_build_object('detail', format('job %s has another correlation_id', job.job_id)));
    END IF;
    IF EXISTS (SELECT 1 FROM upload_pipeline.webhook_deliveries d WHERE d.delivery_key = delivery) THEN
        RETURN tvdb._webhook_reply(200, 'duplicate', jsonb_build_object('duplicate', true, 'job_id', job.job_id));
    END IF;

    IF cb_status = 'parsed' THEN
        IF job.status NOT IN ('uploaded', 'parse_queued', 'failed_parse') AND job.parsed_sha256 = md_sha THEN
            RETURN tvdb._webhook_reply(200, 'duplicate', jsonb_build_object('duplicate', true, 'job_id', job.job_id));
        ELSIF job.status <> 'parse_queued' THEN
            RETURN tvdb._webhook_conflict(job,
                CASE WHEN job.status IN ('uploaded', 'failed_parse')
                     THEN format('job is in status %s, not waiting for a parse result', job.status)
                     WHEN job.status = 'parsed' THEN 'job was already parsed with other content'
                     ELSE 'job is already past parsing' END, cb_status);
        END IF;
        md_path := tvdb._parsed_path(job.document_id, job.job_id);
        INSERT INTO upload_pipeline.blobs (path, content, content_type, sha256, size_bytes)
        VALUES (md_path, markdown, 'text/markdown', md_sha, octet_length(markdown))
        ON CONFLICT (path) DO UPDATE
            SET content = EXCLUDED.content, sha256 = EXCLUDED.sha256,
                size_bytes = EXCLUDED.size_bytes, created_at = now();
        UPDATE upload_pipeline.upload_jobs j
        SET parsed_path = md_path, parsed_sha256 = md_sha, next_poll_at = NULL,
            parse_job_id = coalesce(payload ->> 'parse_job_id', j.parse_job_id)
        WHERE j.job_id = job.job_id;
        PERFORM tvdb.transition(job.job_id, 'parsed',
            jsonb_strip_nulls(jsonb_build_object(
                'via', 'webhook',
                'parser_name', payload -> 'meta' ->> 'parser_name',
                'parser_version', payload -> 'meta' ->> 'parser_version',
                'content_length', octet_length(markdown),
                'parse_job_id', payload ->> 'parse_job_id')),
            'parse_queued');
    ELSE
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
    END IF;

    INSERT INTO upload_pipeline.webhook_deliveries (delivery_key, job_id, http_status, result)
    VALUES (delivery, job.job_id, 200, 'applied')
    ON CONFLICT (delivery_key) DO NOTHING;
    RETURN tvdb._webhook_reply(200, 'applied',
        jsonb_build_object('job_id', job.job_id, 'status', CASE cb_status WHEN 'parsed' THEN 'parsed' ELSE 'failed_parse' END));
END
$$;
COMMENT ON FUNCTION tvdb._apply_llamaparse_webhook(bytea, jsonb) IS 'internal: validate and apply a verified LlamaParse callback';

CREATE FUNCTION tvdb.handle_llamaparse_webhook(body bytea, headers jsonb)
    RETURNS jsonb
    AS 'MODULE_PATHNAME', 'tvdb_handle_llamaparse_webhook' LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION tvdb.handle_llamaparse_webhook(bytea, jsonb) IS
    'verify and apply one LlamaParse webhook delivery; returns {"http_status", "result", ...} for the receiver to relay';

-- Only the receiver's role should call these: grant it EXECUTE on the handler.
REVOKE ALL ON FUNCTION tvdb.handle_llamaparse_webhook(bytea, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._apply_llamaparse_webhook(bytea, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._apply_llamacloud_event(jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._webhook_conflict(upload_pipeline.upload_jobs, text, text) FROM PUBLIC;
