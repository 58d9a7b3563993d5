-- Document lifecycle (60_lifecycle.sql): what changes in existing objects.
-- Each function is its install text (extension/install), replaced.

-- tvdb.job(tvdb.upload(...)) in one statement: see 20_api.sql.
ALTER FUNCTION tvdb.job(uuid) VOLATILE;
ALTER FUNCTION tvdb.job_history(uuid) VOLATILE;

-- An accepted LlamaParse upload reserves nothing for a job cancelled or
-- deleted while it was in flight.
CREATE OR REPLACE FUNCTION tvdb._usage_answered() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    id bigint;
BEGIN
    IF NEW.state <> 'answered' THEN
        RETURN NEW;
    END IF;
    FOREACH id IN ARRAY tvdb._sent_requests(NEW.service, NEW.operation, NEW.job_id, NEW.job_ids) LOOP
        UPDATE upload_pipeline.usage u
        SET http_status = NEW.http_status, latency_ms = NEW.latency_ms, pages = NEW.pages,
            cache_hit = NEW.cache_hit, inputs = NEW.inputs, prompt_tokens = NEW.prompt_tokens,
            cost_usd = NEW.cost_usd, error = NEW.error, model = coalesce(NEW.model, u.model),
            credits = NEW.credits,
            job_ids = CASE WHEN cardinality(u.job_ids) > 0 THEN u.job_ids ELSE NEW.job_ids END,
            state = CASE WHEN NEW.http_status = 0 THEN 'unknown' ELSE 'answered' END,
            reserved_usd = CASE WHEN NEW.http_status = 0 THEN u.estimated_usd
                                WHEN u.service = 'llamaparse' AND u.operation = 'upload'
                                     AND NEW.http_status BETWEEN 200 AND 299
                                     AND EXISTS (SELECT 1 FROM upload_pipeline.upload_jobs j
                                                 WHERE j.job_id = u.job_id
                                                   AND j.status IN ('uploaded', 'parse_queued')) THEN u.estimated_usd
                                ELSE 0 END
        WHERE u.usage_id = id AND u.state = 'sent';
        IF FOUND THEN
            RETURN NULL;
        END IF;
    END LOOP;
    RETURN NEW;
END
$$;

-- No waiting_for_service event for a job cancelled meanwhile.
CREATE OR REPLACE FUNCTION tvdb._attempt_failed(job uuid, owner text, stage text, from_status text,
                                     failed_status text, http_status integer, message text,
                                     retry_after_ms bigint, answer_class text DEFAULT NULL)
    RETURNS text LANGUAGE plpgsql
AS $$
DECLARE
    kind text := coalesce(answer_class, tvdb._answer_class(http_status));
    -- hybrid mode: the mock takes over the blocked service's jobs at once
    wait interval := CASE WHEN current_setting('tvdb.service_mode') = 'hybrid' THEN interval '0'
                          ELSE greatest(interval '60 seconds', make_interval(secs => coalesce(retry_after_ms, 0) / 1000.0)) END;
    tried integer;
BEGIN
    IF kind IN ('quota', 'auth') THEN
        PERFORM tvdb._release(job, owner, wait);
        UPDATE upload_pipeline.upload_jobs u SET next_retry_at = u.next_poll_at WHERE u.job_id = job;
        PERFORM tvdb._alert('service_' || kind, 'critical',
                            CASE stage WHEN 'parse' THEN 'llamaparse' WHEN 'embedding' THEN 'openai' END, job,
                            format('%s refused the request (%s): %s; its jobs wait',
                                   CASE stage WHEN 'parse' THEN 'LlamaParse' ELSE 'OpenAI' END,
                                   CASE kind WHEN 'auth' THEN 'authentication' ELSE 'quota or credits' END, message),
                            jsonb_build_object('http_status', http_status, 'class', kind));
        INSERT INTO upload_pipeline.events (job_id, document_id, type, severity, code, payload, correlation_id)
        SELECT u.job_id, u.document_id, 'stage_error', 'warn', stage || '_waiting_for_service',
               jsonb_build_object('error', message, 'class', kind, 'http_status', http_status,
                                  'retry_in_seconds', extract(epoch FROM wait)),
               u.correlation_id
        FROM upload_pipeline.upload_jobs u WHERE u.job_id = job AND u.status <> 'cancelled';
        RETURN 'wait';
    END IF;
    IF kind IN ('rate_limited', 'server_error', 'no_answer') THEN
        SELECT u.tries + 1 INTO tried FROM upload_pipeline.upload_jobs u
        WHERE u.job_id = job AND u.lease_owner = owner AND u.status = from_status FOR UPDATE;
        IF NOT FOUND THEN
            RETURN 'lost';
        END IF;
        IF tried >= tvdb._max_attempts() THEN
            RETURN CASE WHEN tvdb._advance(job, owner, from_status, failed_status,
                                           jsonb_build_object('error', format('%s (gave up after %s tries)', message, tried),
                                                              'class', 'retries_exhausted', 'answer', kind,
                                                              'http_status', http_status, 'tries', tried))
                        THEN 'failed' ELSE 'lost' END;
        END IF;
        PERFORM tvdb._release(job, owner, tvdb._retry_delay(tried - 1, retry_after_ms), message, stage);
        UPDATE upload_pipeline.upload_jobs u SET tries = tried, next_retry_at = u.next_poll_at WHERE u.job_id = job;
        RETURN 'retry';
    END IF;
    RETURN CASE WHEN tvdb._advance(job, owner, from_status, failed_status,
                                   jsonb_build_object('error', message, 'class', 'permanent', 'answer', kind,
                                                      'http_status', http_status))
                THEN 'failed' ELSE 'lost' END;
END
$$;

-- Vectors are not stored for a job cancelled while they were in flight.
CREATE OR REPLACE FUNCTION tvdb._embeddings_received(owner text, jobs uuid[], documents uuid[], chunks integer[],
                                          http_status integer, body text, latency_ms double precision,
                                          failure text, retry_after_ms bigint, dims integer,
                                          model text, answer_class text DEFAULT NULL)
    RETURNS text LANGUAGE plpgsql
AS $$
DECLARE
    j jsonb := tvdb._json_or_null(body);
    all_jobs uuid[] := ARRAY(SELECT DISTINCT unnest(jobs));
    msg text;
    tokens integer;
    bad text;
    job uuid;
    outcome text := 'done';
BEGIN
    IF http_status = 200 AND jsonb_typeof(j -> 'data') = 'array' THEN
        tokens := (j -> 'usage' ->> 'prompt_tokens')::integer;
        bad := tvdb._embeddings_problem(body, cardinality(jobs), dims);
        IF bad IS NULL THEN
            PERFORM tvdb._record_usage('openai', 'embeddings', NULL, all_jobs, http_status, latency_ms,
                                       inputs => cardinality(jobs), prompt_tokens => tokens,
                                       cost_usd => tvdb._openai_cost(tokens, model), model => model);
            UPDATE upload_pipeline.document_chunks c
            SET embedding = ARRAY(SELECT x::real FROM jsonb_array_elements_text(d.value -> 'embedding') x),
                model = _embeddings_received.model
            FROM jsonb_array_elements(j -> 'data') d,
                 LATERAL (SELECT (d.value ->> 'index')::integer + 1 AS i) ix
            WHERE c.document_id = documents[ix.i] AND c.chunk_index = chunks[ix.i]
              AND c.job_id = jobs[ix.i]
              AND NOT EXISTS (SELECT 1 FROM upload_pipeline.upload_jobs u
                              WHERE u.job_id = c.job_id AND u.status = 'cancelled');
            PERFORM tvdb._embeddings_stored(all_jobs, owner);
            RETURN 'done';
        END IF;
        msg := 'OpenAI answer does not match the request: ' || bad;
        http_status := 502;
    ELSE
        msg := CASE WHEN http_status = 200 THEN 'OpenAI answer has no data'
                    ELSE tvdb._error_message(http_status, body, failure) END;
        IF http_status = 200 THEN
            http_status := 502;
        END IF;
    END IF;
    PERFORM tvdb._record_usage('openai', 'embeddings', NULL, all_jobs, http_status, latency_ms,
                               inputs => cardinality(jobs), error => msg);
    FOREACH job IN ARRAY all_jobs LOOP
        -- a 200 that makes no sense is a server error, whatever the worker called it
        outcome := tvdb._attempt_failed(job, owner, 'embedding', 'embedding_in_progress',
                                        'failed_embedding', http_status, msg, retry_after_ms,
                                        CASE WHEN answer_class IS NULL OR answer_class = 'success'
                                             THEN tvdb._answer_class(http_status, body)
                                             ELSE answer_class END);
    END LOOP;
    RETURN outcome;
END
$$;

-- A parse result pushed for a cancelled job is refused, and remembered.
CREATE OR REPLACE FUNCTION tvdb._webhook_parsed(job upload_pipeline.upload_jobs, markdown bytea, details jsonb,
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
    INSERT INTO upload_pipeline.blobs (path, content, content_type, sha256, size_bytes)
    VALUES (md_path, markdown, 'text/markdown', md_sha, octet_length(markdown))
    ON CONFLICT (path) DO UPDATE
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

-- ... and its pages are recorded in the ledger.
CREATE OR REPLACE FUNCTION tvdb._apply_llamaparse_push(payload jsonb, body bytea, url_job uuid)
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

-- A cancelled document may be reprocessed.
CREATE OR REPLACE FUNCTION tvdb.reprocess(document uuid, from_stage text DEFAULT 'embed') RETURNS uuid
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    last upload_pipeline.upload_jobs;
    md bytea;
    job uuid;
    owner text := 'tvdb.reprocess';
BEGIN
    IF from_stage IS NULL OR from_stage NOT IN ('parse', 'chunk', 'embed') THEN
        RAISE EXCEPTION 'cannot reprocess from "%"', from_stage
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use parse, chunk or embed.';
    END IF;
    SELECT * INTO last FROM upload_pipeline.upload_jobs u
    WHERE u.document_id = document ORDER BY u.created_at DESC, u.job_id DESC LIMIT 1 FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no such document to reprocess'
            USING ERRCODE = 'no_data_found', DETAIL = format('No job has document_id %s.', document),
                  HINT = 'Pass a document_id from tvdb.jobs.';
    END IF;
    IF last.status NOT IN ('complete', 'failed_parse', 'failed_chunking', 'failed_embedding', 'cancelled') THEN
        RAISE EXCEPTION 'the document is still being processed'
            USING ERRCODE = 'object_in_use',
                  DETAIL = format('Document %s: its job %s is %s.', document, last.job_id, last.status),
                  HINT = 'Wait until the job is complete or failed, or cancel it with tvdb.cancel().';
    END IF;
    IF from_stage <> 'parse' THEN
        SELECT b.content INTO md FROM upload_pipeline.blobs b WHERE b.path = last.parsed_path;
        IF md IS NULL THEN
            RAISE EXCEPTION 'the document has no parse to reprocess from'
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = format('Document %s: its job %s is %s and has no parsed markdown.',
                                      document, last.job_id, last.status),
                      HINT = 'Reprocess it from parse.';
        END IF;
    END IF;
    INSERT INTO upload_pipeline.upload_jobs (document_id, correlation_id)
    VALUES (document, last.correlation_id) RETURNING job_id INTO job;
    INSERT INTO upload_pipeline.events (job_id, document_id, type, severity, code, payload, correlation_id)
    VALUES (job, document, 'stage_started', 'info', 'reprocess_requested',
            jsonb_build_object('from_stage', from_stage, 'previous_job', last.job_id), last.correlation_id);
    IF from_stage <> 'parse' THEN
        UPDATE upload_pipeline.upload_jobs u
        SET lease_owner = owner, lease_expires_at = now() + interval '1 minute', parse_job_id = 'reprocess-' || job
        WHERE u.job_id = job;
        PERFORM tvdb._advance(job, owner, 'uploaded', 'parse_queued',
                              jsonb_build_object('parse_job_id', 'reprocess-' || job), true);
        PERFORM tvdb._store_parsed(job, owner, convert_from(md, 'UTF8'),
                                   jsonb_build_object('via', 'reprocess', 'from_job', last.job_id));
        UPDATE upload_pipeline.upload_jobs u SET lease_owner = NULL, lease_expires_at = NULL WHERE u.job_id = job;
    END IF;
    PERFORM tvdb._wake_workers();
    RETURN job;
END
$$;
