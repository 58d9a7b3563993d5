-- What the worker does with an answer from LlamaParse or OpenAI.  Each runs
-- in its own subtransaction after the request finished; each records the
-- request in the usage ledger and moves or releases the job.  The answer is
-- one of: 'done', 'wait' (released, due again later), 'retry' (transient
-- failure, released with a backoff), 'failed' (the stage failed), 'lost' (the
-- lease was lost or the job moved on meanwhile: nothing written but usage).

-- LlamaParse job statuses that mean "still parsing" (src/stages/llamaparse.c).
CREATE FUNCTION tvdb._llamaparse_running(status text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'tvdb_llamaparse_running' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- What is wrong with an OpenAI embeddings answer, NULL if nothing
-- (src/stages/read_embeddings.c, which the worker reads answers with).
CREATE FUNCTION tvdb._embeddings_problem(body text, inputs integer, dims integer) RETURNS text
    AS 'MODULE_PATHNAME', 'tvdb_embeddings_problem' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- The retry policy (src/retry.c): the delay before the next try, drawn
-- with full jitter under a cap that doubles with each failed try, never
-- below the service's Retry-After; and how many tries a stage visit gets.
CREATE FUNCTION tvdb._retry_delay(tries integer, retry_after_ms bigint) RETURNS interval
    AS 'MODULE_PATHNAME', 'tvdb_retry_delay_sql' LANGUAGE C VOLATILE;
CREATE FUNCTION tvdb._max_attempts() RETURNS integer
    AS 'MODULE_PATHNAME', 'tvdb_max_attempts_sql' LANGUAGE C STABLE;

-- The message of an error body: LlamaParse {"detail": ...}, OpenAI {"error": {"message": ...}}.
CREATE FUNCTION tvdb._error_message(http_status integer, body text, failure text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
    j jsonb;
BEGIN
    IF failure IS NOT NULL THEN
        RETURN failure;
    END IF;
    BEGIN
        j := body::jsonb;
    EXCEPTION WHEN OTHERS THEN
        RETURN format('HTTP %s: %s', http_status, left(coalesce(body, ''), 300));
    END;
    RETURN format('HTTP %s: %s', http_status,
                  coalesce(j -> 'error' ->> 'message', j ->> 'detail', j::text));
END
$$;

CREATE FUNCTION tvdb._json_or_null(body text) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'tvdb_json_or_null' LANGUAGE C IMMUTABLE STRICT;

-- What kind of answer it was (src/worker/hooks.c, the worker's after-answer
-- hook): success, rate_limited, quota, auth, invalid, server_error or
-- no_answer.  The worker passes the kind it found (x-should-retry included);
-- without one it is worked out from the status and the body.
CREATE FUNCTION tvdb._answer_class(http_status integer, body text DEFAULT NULL,
                                   should_retry boolean DEFAULT NULL) RETURNS text
    AS 'MODULE_PATHNAME', 'tvdb_answer_class' LANGUAGE C IMMUTABLE PARALLEL SAFE;

-- A failed attempt.  A transient one (rate limited, server error, no
-- answer) is tried again after tvdb._retry_delay, the tvdb.max_attempts-th
-- fails the stage with class retries_exhausted; a refused key, or quota or
-- credits run out, are not the document's fault: the job waits (at least a
-- minute, or the service's Retry-After) with a warning event, spending no
-- try; any other refusal fails the stage at once with class permanent.
CREATE FUNCTION tvdb._attempt_failed(job uuid, owner text, stage text, from_status text,
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

-- A LlamaParse answer that cannot be used: recorded in the ledger with the
-- reason (the service's error, or what is wrong with a 200), then retried or
-- failed.  A 200 that makes no sense counts as a 502 from the service.
CREATE FUNCTION tvdb._parse_refused(job uuid, owner text, operation text, from_status text,
                                    http_status integer, body text, failure text,
                                    latency_ms double precision, retry_after_ms bigint,
                                    malformed text, answer_class text DEFAULT NULL)
    RETURNS text LANGUAGE plpgsql
AS $$
DECLARE
    msg text := CASE WHEN http_status = 200 THEN malformed
                     ELSE tvdb._error_message(http_status, body, failure) END;
BEGIN
    PERFORM tvdb._record_usage('llamaparse', operation, job, NULL, http_status, latency_ms, error => msg);
    RETURN tvdb._attempt_failed(job, owner, 'parse', from_status, 'failed_parse',
                                CASE WHEN http_status = 200 THEN 502 ELSE http_status END,
                                msg, retry_after_ms,
                                CASE WHEN http_status = 200 THEN 'server_error'
                                     ELSE coalesce(answer_class, tvdb._answer_class(http_status, body)) END);
END
$$;

-- POST /api/v1/parsing/upload answered.
CREATE FUNCTION tvdb._parse_submitted(job uuid, owner text, http_status integer, body text,
                                      latency_ms double precision, failure text,
                                      retry_after_ms bigint, poll_after_ms integer,
                                      answer_class text DEFAULT NULL)
    RETURNS text LANGUAGE plpgsql
AS $$
DECLARE
    j jsonb := tvdb._json_or_null(body);
BEGIN
    IF http_status = 200 AND j ->> 'id' IS NOT NULL THEN
        RETURN CASE WHEN tvdb._parse_submitted_all(owner, ARRAY[job], ARRAY[j ->> 'id'],
                                                   ARRAY[latency_ms], poll_after_ms) = 1
                    THEN 'done' ELSE 'lost' END;
    END IF;
    RETURN tvdb._parse_refused(job, owner, 'upload', 'uploaded', http_status, body, failure,
                               latency_ms, retry_after_ms,
                               'LlamaParse upload answer has no job id: ' || left(body, 200), answer_class);
END
$$;

-- GET /api/v1/parsing/job/{id} answered: 'fetch' when the result is ready.
-- LlamaParse v2 answers in the v1 shape the functions below read.  A job
-- ({"job": {id, status, error_message}, ...}): its fields, COMPLETED read as
-- SUCCESS (FAILED and CANCELLED fail as v1's ERROR does).  A result (expand=markdown,job_metadata):
-- the successful pages' markdown joined in page order, their count as
-- job_pages, and the failed pages (a partial parse) under failed_pages.
CREATE FUNCTION tvdb._llamaparse_v1_shape(j jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN jsonb_typeof(j -> 'job') IS DISTINCT FROM 'object' THEN j
        WHEN jsonb_typeof(j -> 'markdown' -> 'pages') = 'array' THEN
            jsonb_strip_nulls(jsonb_build_object(
                'markdown', (SELECT coalesce(string_agg(p ->> 'markdown', E'\n\n' ORDER BY (p ->> 'page_number')::numeric), '')
                             FROM jsonb_array_elements(j -> 'markdown' -> 'pages') p
                             WHERE (p ->> 'success')::boolean IS NOT false AND jsonb_typeof(p -> 'markdown') = 'string'),
                'job_metadata', CASE WHEN jsonb_typeof(j -> 'job_metadata') = 'object' THEN j -> 'job_metadata' ELSE '{}' END
                                || jsonb_build_object('job_pages', jsonb_array_length(j -> 'markdown' -> 'pages')),
                'failed_pages', (SELECT jsonb_agg(jsonb_build_object('page_number', p -> 'page_number', 'error', p -> 'error')
                                                  ORDER BY (p ->> 'page_number')::numeric)
                                 FROM jsonb_array_elements(j -> 'markdown' -> 'pages') p
                                 WHERE (p ->> 'success')::boolean IS false)))
        ELSE (j -> 'job') || jsonb_build_object('status',
                 CASE upper(j -> 'job' ->> 'status') WHEN 'COMPLETED' THEN 'SUCCESS' ELSE j -> 'job' ->> 'status' END)
    END
$$;
COMMENT ON FUNCTION tvdb._llamaparse_v1_shape(jsonb) IS 'internal (worker): a LlamaParse v2 answer in the v1 shape';

CREATE FUNCTION tvdb._parse_polled(job uuid, owner text, http_status integer, body text,
                                   latency_ms double precision, failure text,
                                   retry_after_ms bigint, poll_min_ms integer, poll_max_ms integer,
                                   answer_class text DEFAULT NULL)
    RETURNS text LANGUAGE plpgsql
AS $$
DECLARE
    j jsonb := tvdb._llamaparse_v1_shape(tvdb._json_or_null(body));
    state text := upper(j ->> 'status');
    msg text;
BEGIN
    IF http_status <> 200 OR state IS NULL THEN
        RETURN tvdb._parse_refused(job, owner, 'job_status', 'parse_queued', http_status, body, failure,
                                   latency_ms, retry_after_ms,
                                   'LlamaParse job answer has no status: ' || left(body, 200), answer_class);
    END IF;
    IF tvdb._llamaparse_running(state) THEN
        PERFORM tvdb._parse_polled_all(owner, ARRAY[job], ARRAY[latency_ms], poll_min_ms, poll_max_ms);
        RETURN 'wait';
    END IF;
    PERFORM tvdb._record_usage('llamaparse', 'job_status', job, NULL, http_status, latency_ms);
    IF state = 'SUCCESS' THEN
        RETURN 'fetch';
    END IF;
    IF state = 'PARTIAL_SUCCESS' THEN
        -- A finished parse, as the official client reads it: its result is
        -- used, and what the service said about the missing part is kept.
        INSERT INTO upload_pipeline.events (job_id, document_id, type, severity, code, payload, correlation_id)
        SELECT u.job_id, u.document_id, 'stage_error', 'warn', 'parse_partial_success',
               jsonb_strip_nulls(jsonb_build_object(
                   'error', format('LlamaParse job PARTIAL_SUCCESS%s%s',
                                   coalesce(': ' || coalesce(j ->> 'error_code', j ->> 'errorCode'), ''),
                                   coalesce(': ' || coalesce(j ->> 'error_message', j ->> 'errorMessage',
                                                             j ->> 'error'), '')),
                   'error_code', coalesce(j ->> 'error_code', j ->> 'errorCode'))),
               u.correlation_id
        FROM upload_pipeline.upload_jobs u
        WHERE u.job_id = job AND u.lease_owner = owner AND u.status = 'parse_queued';
        RETURN 'fetch';
    END IF;
    -- ERROR, CANCELLED / CANCELED, or a status we do not know.
    msg := format('LlamaParse job %s%s%s', state,
                  coalesce(': ' || coalesce(j ->> 'error_code', j ->> 'errorCode'), ''),
                  coalesce(': ' || coalesce(j ->> 'error_message', j ->> 'errorMessage', j ->> 'error'), ''));
    RETURN CASE WHEN tvdb._advance(job, owner, 'parse_queued', 'failed_parse',
                                   jsonb_strip_nulls(jsonb_build_object('error', msg,
                                       'parse_status', state,
                                       'error_code', coalesce(j ->> 'error_code', j ->> 'errorCode'))))
                THEN 'failed' ELSE 'lost' END;
END
$$;

-- Uploads accepted, many at once (the worker read each id in C): what
-- _parse_submitted does with a 200 and an id, for all of them in three
-- statements.  The number of jobs moved to parse_queued.
CREATE FUNCTION tvdb._parse_submitted_all(owner text, jobs uuid[], parse_job_ids text[],
                                          latencies double precision[], poll_after_ms integer)
    RETURNS integer LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO upload_pipeline.usage (service, operation, job_id, http_status, latency_ms)
    SELECT 'llamaparse', 'upload', v.job, 200, v.latency FROM unnest(jobs, latencies) AS v(job, latency);
    UPDATE upload_pipeline.upload_jobs u
    SET parse_job_id = v.pid,
        next_poll_at = clock_timestamp() + make_interval(secs => poll_after_ms / 1000.0)
    FROM unnest(jobs, parse_job_ids) AS v(job, pid)
    WHERE u.job_id = v.job AND u.lease_owner = owner AND u.status = 'uploaded';
    RETURN cardinality(tvdb._advance_all(jobs, owner, 'uploaded', 'parse_queued',
        ARRAY(SELECT jsonb_build_object('parse_job_id', p.pid)
              FROM unnest(parse_job_ids) WITH ORDINALITY AS p(pid, i) ORDER BY p.i)));
END
$$;

-- Polls answered "still working", many at once: what _parse_polled does
-- with PENDING / RUNNING, for all of them in two statements.
CREATE FUNCTION tvdb._parse_polled_all(owner text, jobs uuid[], latencies double precision[],
                                       poll_min_ms integer, poll_max_ms integer)
    RETURNS integer LANGUAGE plpgsql
AS $$
DECLARE
    n integer;
BEGIN
    INSERT INTO upload_pipeline.usage (service, operation, job_id, http_status, latency_ms)
    SELECT 'llamaparse', 'job_status', v.job, 200, v.latency FROM unnest(jobs, latencies) AS v(job, latency);
    -- Poll again after a quarter of the time waited so far, within bounds.
    -- An answer is a success: the failed tries start over.
    UPDATE upload_pipeline.upload_jobs u
    SET next_poll_at = clock_timestamp() + make_interval(secs =>
            greatest(poll_min_ms, least(poll_max_ms,
                     extract(epoch FROM clock_timestamp() - u.status_changed_at) * 1000 / 4)) / 1000.0),
        lease_owner = NULL, lease_expires_at = NULL, tries = 0, next_retry_at = NULL
    WHERE u.job_id = ANY(jobs) AND u.lease_owner = owner;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Polls answered "finished", many at once: what _parse_polled does with
-- SUCCESS, for all of them in one statement; their results are fetched next.
CREATE FUNCTION tvdb._parse_done_all(jobs uuid[], latencies double precision[])
    RETURNS integer LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO upload_pipeline.usage (service, operation, job_id, http_status, latency_ms)
    SELECT 'llamaparse', 'job_status', v.job, 200, v.latency FROM unnest(jobs, latencies) AS v(job, latency);
    RETURN cardinality(jobs);
END
$$;
REVOKE ALL ON FUNCTION tvdb._parse_done_all(uuid[], double precision[]) FROM PUBLIC;
COMMENT ON FUNCTION tvdb._parse_done_all(uuid[], double precision[]) IS
    'internal (worker): polls that found their parses finished, recorded together';

-- GET /api/v1/parsing/job/{id}/result/markdown answered.
CREATE FUNCTION tvdb._parse_fetched(job uuid, owner text, http_status integer, body text,
                                    latency_ms double precision, failure text,
                                    retry_after_ms bigint, poll_min_ms integer,
                                    answer_class text DEFAULT NULL)
    RETURNS text LANGUAGE plpgsql
AS $$
DECLARE
    j jsonb := tvdb._llamaparse_v1_shape(tvdb._json_or_null(body));
BEGIN
    IF http_status = 200 AND jsonb_typeof(j -> 'markdown') = 'string' AND j ? 'failed_pages' THEN
        -- v2's partial parse: used, with what the service said of the pages it could not read
        INSERT INTO upload_pipeline.events (job_id, document_id, type, severity, code, payload, correlation_id)
        SELECT u.job_id, u.document_id, 'stage_error', 'warn', 'parse_partial_success',
               jsonb_build_object('error', 'LlamaParse could not parse ' || jsonb_array_length(j -> 'failed_pages')
                                           || ' page(s): ' || (SELECT string_agg(format('page %s: %s', f ->> 'page_number', f ->> 'error'), '; ')
                                                              FROM jsonb_array_elements(j -> 'failed_pages') f),
                                  'failed_pages', j -> 'failed_pages'),
               u.correlation_id
        FROM upload_pipeline.upload_jobs u
        WHERE u.job_id = job AND u.lease_owner = owner AND u.status = 'parse_queued';
    END IF;
    IF http_status = 200 AND jsonb_typeof(j -> 'markdown') = 'string' THEN
        RETURN CASE WHEN tvdb._parse_fetched_all(owner, ARRAY[job], ARRAY[j], ARRAY[latency_ms]) = 1
                    THEN 'done' ELSE 'lost' END;
    END IF;
    IF http_status = 404 THEN
        -- Not ready after all: poll again, but not forever.  After the fifth
        -- 404 in this status the parse fails with that reason.
        PERFORM tvdb._record_usage('llamaparse', 'result', job, NULL, http_status, latency_ms,
                                   error => tvdb._error_message(http_status, body, failure));
        IF (SELECT count(*) FROM upload_pipeline.usage x JOIN upload_pipeline.upload_jobs u USING (job_id)
            WHERE x.job_id = job AND x.operation = 'result' AND x.http_status = 404
              AND x.ts >= u.status_changed_at) >= 5 THEN
            RETURN CASE WHEN tvdb._advance(job, owner, 'parse_queued', 'failed_parse',
                                           jsonb_build_object('error',
                                               'LlamaParse said the parse finished, but its result was '
                                               'still not available after 5 tries: '
                                               || tvdb._error_message(http_status, body, failure)))
                        THEN 'failed' ELSE 'lost' END;
        END IF;
        UPDATE upload_pipeline.upload_jobs u
        SET next_poll_at = clock_timestamp() + make_interval(secs => poll_min_ms / 1000.0),
            lease_owner = NULL, lease_expires_at = NULL
        WHERE u.job_id = job AND u.lease_owner = owner;
        RETURN 'wait';
    END IF;
    RETURN tvdb._parse_refused(job, owner, 'result', 'parse_queued', http_status, body, failure,
                               latency_ms, retry_after_ms, 'LlamaParse result has no markdown', answer_class);
END
$$;

-- Results fetched, many at once (answers[i] for jobs[i], each a JSON object
-- with a markdown string): every request in the ledger with its pages,
-- cache hit and cost, and the markdown stored for the jobs still ours (a
-- webhook may have parsed the others).  The number of jobs moved to parsed.
CREATE FUNCTION tvdb._parse_fetched_all(owner text, jobs uuid[], answers jsonb[],
                                        latencies double precision[])
    RETURNS integer LANGUAGE plpgsql
AS $$
DECLARE
    markdowns text[];
    details jsonb[];
BEGIN
    WITH m AS (
        SELECT v.job, v.latency, v.i, v.j,
               CASE WHEN jsonb_typeof(v.j -> 'job_metadata' -> 'job_pages') = 'number'
                    THEN (v.j -> 'job_metadata' ->> 'job_pages')::numeric::integer END AS pages,
               CASE WHEN jsonb_typeof(v.j -> 'job_metadata' -> 'job_is_cache_hit') = 'boolean'
                    THEN (v.j -> 'job_metadata' ->> 'job_is_cache_hit')::boolean END AS hit,
               CASE WHEN jsonb_typeof(v.j -> 'job_metadata' -> 'job_credits_usage') = 'number'
                    THEN (v.j -> 'job_metadata' ->> 'job_credits_usage')::numeric END AS credits
        FROM unnest(jobs, answers, latencies) WITH ORDINALITY AS v(job, j, latency, i)
    ), ledger AS (
        INSERT INTO upload_pipeline.usage (service, operation, job_id, http_status, latency_ms,
                                           pages, cache_hit, credits, model, cost_usd)
        SELECT 'llamaparse', 'result', m.job, 200, m.latency, m.pages, m.hit, m.credits, mode,
               tvdb._llamaparse_cost(m.pages, m.hit, m.credits, mode)
        FROM m, tvdb._parse_mode() AS mode
    )
    SELECT array_agg(m.j ->> 'markdown' ORDER BY m.i),
           array_agg(jsonb_strip_nulls(jsonb_build_object('via', 'poll', 'pages', m.pages,
                                                          'cache_hit', m.hit)) ORDER BY m.i)
    INTO markdowns, details
    FROM m;
    RETURN cardinality(tvdb._store_parsed_all(jobs, owner, markdowns, details));
END
$$;

-- POST /embeddings answered for a batch of chunks (input i is chunk i).
CREATE FUNCTION tvdb._embeddings_received(owner text, jobs uuid[], documents uuid[], chunks integer[],
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

-- OpenAI refused a request of several documents for good (a 4xx that is
-- not a rate limit): the request goes into the ledger with the service's
-- message, and each job is given back at once, with a warning event, to be
-- embedded alone; only a document refused on its own fails.
CREATE FUNCTION tvdb._embeddings_split(owner text, jobs uuid[], inputs integer, http_status integer,
                                       body text, latency_ms double precision, failure text,
                                       retry_after_ms bigint)
    RETURNS text LANGUAGE plpgsql
AS $$
DECLARE
    msg text := tvdb._error_message(http_status, body, failure);
    job uuid;
BEGIN
    PERFORM tvdb._record_usage('openai', 'embeddings', NULL, jobs, http_status, latency_ms,
                               inputs => inputs, error => msg);
    FOREACH job IN ARRAY jobs LOOP
        PERFORM tvdb._release(job, owner, interval '0',
                              format('OpenAI refused a request for %s documents; each is retried alone: %s',
                                     cardinality(jobs), msg), 'embedding');
    END LOOP;
    RETURN 'retry';
END
$$;
COMMENT ON FUNCTION tvdb._embeddings_split(text, uuid[], integer, integer, text, double precision, text, bigint) IS 'internal (worker): give back the jobs of an embeddings request refused for good, to be retried one per request';

DO $$
DECLARE f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'tvdb' AND p.proname IN ('_attempt_failed', '_parse_refused', '_parse_submitted', '_parse_polled',
                                                        '_parse_submitted_all', '_parse_polled_all', '_parse_fetched_all',
                                                        '_parse_fetched', '_embeddings_received', '_embeddings_split', '_retry_delay')
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$$;

COMMENT ON FUNCTION tvdb._advance(uuid, text, text, text, jsonb, boolean) IS 'internal (worker): move a leased job; false if the lease was lost or the job moved';
COMMENT ON FUNCTION tvdb._advance_all(uuid[], text, text, text, jsonb[], boolean) IS 'internal (worker): move a batch of leased jobs in one statement; the ids that moved';
COMMENT ON FUNCTION tvdb._take(text, text, text, integer, integer) IS 'internal (worker): claim due jobs and move them under a new lease in one statement';
COMMENT ON FUNCTION tvdb._attempt_failed(uuid, text, text, text, text, integer, text, bigint, text) IS 'internal (worker): retry a transient failure with backoff, wait on a key or quota refusal, else fail the stage';
COMMENT ON FUNCTION tvdb._answer_class(integer, text, boolean) IS 'internal (worker): what kind of answer a service gave (success, rate_limited, quota, auth, invalid, server_error, no_answer)';
COMMENT ON FUNCTION tvdb._retry_delay(integer, bigint) IS 'internal (worker): the delay before the next try (exponential backoff, full jitter, at least Retry-After)';
COMMENT ON FUNCTION tvdb._max_attempts() IS 'internal (worker): tries a stage visit gets (tvdb.max_attempts)';
COMMENT ON FUNCTION tvdb._claim(text, text, integer, integer) IS 'internal (worker): lease up to n due jobs in a status (SKIP LOCKED)';
COMMENT ON FUNCTION tvdb._embeddings_received(text, uuid[], uuid[], integer[], integer, text, double precision, text, bigint, integer, text, text) IS 'internal (worker): record an embeddings answer for a batch of chunks';
COMMENT ON FUNCTION tvdb._error_message(integer, text, text) IS 'internal (worker): the message of a LlamaParse or OpenAI error body';
COMMENT ON FUNCTION tvdb._finish_embeddings(uuid[], text) IS 'internal (worker): complete the jobs whose chunks all have their vectors';
COMMENT ON FUNCTION tvdb._llamaparse_running(text) IS 'internal (worker): LlamaParse statuses of a parse still under way';
COMMENT ON FUNCTION tvdb._embeddings_problem(text, integer, integer) IS 'internal (worker): what is wrong with an embeddings answer, NULL if nothing';
COMMENT ON FUNCTION tvdb._json_or_null(text) IS 'internal (worker): parse JSON, NULL if it is not';
COMMENT ON FUNCTION tvdb._next_due_ms() IS 'internal (worker): milliseconds until some job is due, NULL if none';
COMMENT ON FUNCTION tvdb._parse_fetched(uuid, text, integer, text, double precision, text, bigint, integer, text) IS 'internal (worker): record a LlamaParse result fetch';
COMMENT ON FUNCTION tvdb._parse_refused(uuid, text, text, text, integer, text, text, double precision, bigint, text, text) IS 'internal (worker): record and retry or fail an unusable LlamaParse answer';
COMMENT ON FUNCTION tvdb._parse_polled(uuid, text, integer, text, double precision, text, bigint, integer, integer, text) IS 'internal (worker): record a LlamaParse job poll';
COMMENT ON FUNCTION tvdb._parse_submitted_all(text, uuid[], text[], double precision[], integer) IS 'internal (worker): record many accepted LlamaParse uploads at once';
COMMENT ON FUNCTION tvdb._parse_polled_all(text, uuid[], double precision[], integer, integer) IS 'internal (worker): record many LlamaParse polls that found the job still running';
COMMENT ON FUNCTION tvdb._parse_fetched_all(text, uuid[], jsonb[], double precision[]) IS 'internal (worker): store many fetched LlamaParse results at once';
COMMENT ON FUNCTION tvdb._parse_submitted(uuid, text, integer, text, double precision, text, bigint, integer, text) IS 'internal (worker): record a LlamaParse upload';
COMMENT ON FUNCTION tvdb._record_usage(text, text, uuid, uuid[], integer, double precision, integer, boolean, integer, integer, numeric, text, text) IS 'internal (worker): one usage ledger row';
COMMENT ON FUNCTION tvdb._release(uuid, text, interval, text, text) IS 'internal (worker): give a leased job back, with a retry delay and warning event';
COMMENT ON FUNCTION tvdb._store_parsed(uuid, text, text, jsonb) IS 'internal (worker): store parsed markdown and move parse_queued -> parsed';
COMMENT ON FUNCTION tvdb._store_parsed_all(uuid[], text, text[], jsonb[]) IS 'internal (worker): store the parsed markdown of a batch of jobs and move them to parsed';
