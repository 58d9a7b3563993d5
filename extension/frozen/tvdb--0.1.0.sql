-- tvdb install script: assembled from sql/install/*.sql by the Makefile.
\echo Use "CREATE EXTENSION tvdb CASCADE" to load this file. \quit

-- The job data keeps the names the replaced system's SQL uses.
CREATE SCHEMA upload_pipeline;
COMMENT ON SCHEMA upload_pipeline IS 'tvdb job data: documents, jobs, events, blobs and chunks';
CREATE SCHEMA tvdb;
COMMENT ON SCHEMA tvdb IS 'tvdb functions and views';

-- The storage:// namespace: raw uploads and parsed markdown.
CREATE TABLE upload_pipeline.blobs (
    path         text PRIMARY KEY CHECK (path LIKE 'storage://%'),
    content      bytea NOT NULL,
    content_type text NOT NULL,
    sha256       text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes   bigint NOT NULL CHECK (size_bytes = octet_length(content)),
    created_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE upload_pipeline.blobs IS 'content addressed by storage:// path (uploads and parsed markdown)';

CREATE TABLE upload_pipeline.documents (
    document_id  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    filename     text NOT NULL CHECK (filename <> ''),
    mime_type    text NOT NULL,
    size_bytes   bigint NOT NULL CHECK (size_bytes > 0),
    sha256       text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    storage_path text NOT NULL REFERENCES upload_pipeline.blobs (path),
    created_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE upload_pipeline.documents IS 'one row per uploaded document';

CREATE TABLE upload_pipeline.upload_jobs (
    job_id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    document_id       uuid NOT NULL REFERENCES upload_pipeline.documents ON DELETE CASCADE,
    -- guarded by the C triggers below; the valid names are in tvdb.statuses
    status            text NOT NULL DEFAULT 'uploaded',
    correlation_id    uuid NOT NULL DEFAULT gen_random_uuid(),
    attempts          integer NOT NULL DEFAULT 1 CHECK (attempts >= 1),
    tries             integer NOT NULL DEFAULT 0 CHECK (tries >= 0),
    next_retry_at     timestamptz,
    last_error        text,
    failure_class     text,
    parse_job_id      text,
    parsed_path       text,
    parsed_sha256     text CHECK (parsed_sha256 ~ '^[0-9a-f]{64}$'),
    next_poll_at      timestamptz,
    lease_owner       text,
    lease_expires_at  timestamptz,
    status_changed_at timestamptz NOT NULL DEFAULT now(),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE upload_pipeline.upload_jobs IS 'one pipeline job per document; status changes are checked by C triggers';
COMMENT ON COLUMN upload_pipeline.upload_jobs.attempts IS 'the current attempt: 1, plus one for every retry edge taken';
COMMENT ON COLUMN upload_pipeline.upload_jobs.tries IS 'transient failures in the current stage visit since its last success (tvdb.max_attempts ends it)';
COMMENT ON COLUMN upload_pipeline.upload_jobs.next_retry_at IS 'when a job waiting after a failed try is due again';
COMMENT ON COLUMN upload_pipeline.upload_jobs.failure_class IS 'why a failed job failed: retries_exhausted, permanent, or what its mover said';
COMMENT ON COLUMN upload_pipeline.upload_jobs.next_poll_at IS 'when the parse result is next due to be fetched (a webhook hint makes it due now)';
COMMENT ON COLUMN upload_pipeline.upload_jobs.lease_expires_at IS 'a worker''s claim on the job lapses at this time';

-- The queue's indexes (claimable jobs, failed jobs due for a retry) are made
-- in 10_statemachine.sql from the C status table.
CREATE INDEX upload_jobs_parse_job_idx ON upload_pipeline.upload_jobs (parse_job_id)
    WHERE parse_job_id IS NOT NULL;
CREATE INDEX upload_jobs_document_idx ON upload_pipeline.upload_jobs (document_id);
CREATE INDEX upload_jobs_correlation_idx ON upload_pipeline.upload_jobs (correlation_id);

CREATE TABLE upload_pipeline.events (
    event_id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq               bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    job_id            uuid,
    document_id       uuid,
    type              text NOT NULL CHECK (type <> ''),
    severity          text NOT NULL CHECK (severity IN ('debug', 'info', 'warn', 'error')),
    code              text NOT NULL CHECK (code <> ''),
    payload           jsonb NOT NULL DEFAULT '{}',
    correlation_id    uuid,
    ts                timestamptz NOT NULL DEFAULT now(),
    from_status       text,
    to_status         text,
    in_previous_state interval,
    attempt           integer
);
COMMENT ON TABLE upload_pipeline.events IS 'append-only job history: one row per status change (written by trigger) plus application events';
COMMENT ON COLUMN upload_pipeline.events.seq IS 'commit-independent order of events, also within one transaction';
COMMENT ON COLUMN upload_pipeline.events.in_previous_state IS 'how long the job stayed in from_status';
CREATE INDEX events_job_idx ON upload_pipeline.events (job_id, seq);
CREATE INDEX events_correlation_idx ON upload_pipeline.events (correlation_id);

CREATE TABLE upload_pipeline.document_chunks (
    document_id    uuid NOT NULL REFERENCES upload_pipeline.documents ON DELETE CASCADE,
    job_id         uuid NOT NULL REFERENCES upload_pipeline.upload_jobs ON DELETE CASCADE,
    chunk_index    integer NOT NULL CHECK (chunk_index >= 0),
    content        text NOT NULL,
    token_estimate integer NOT NULL CHECK (token_estimate >= 0),
    sha256         text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    heading_path   text[] NOT NULL DEFAULT '{}',
    embedding      real[],
    model          text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (document_id, chunk_index)
);
COMMENT ON TABLE upload_pipeline.document_chunks IS 'chunks of parsed markdown and their embeddings';
CREATE INDEX document_chunks_job_idx ON upload_pipeline.document_chunks (job_id);
-- The chunks still waiting for a vector: few at any time, however many are done.
CREATE INDEX document_chunks_unembedded_idx ON upload_pipeline.document_chunks (job_id)
    WHERE embedding IS NULL;
-- Vectors do not compress; do not spend CPU trying.
ALTER TABLE upload_pipeline.document_chunks ALTER COLUMN embedding SET STORAGE EXTERNAL;

-- pg_dump keeps the user data of an extension only when told to.
SELECT pg_catalog.pg_extension_config_dump('upload_pipeline.blobs', '');
SELECT pg_catalog.pg_extension_config_dump('upload_pipeline.documents', '');
SELECT pg_catalog.pg_extension_config_dump('upload_pipeline.upload_jobs', '');
SELECT pg_catalog.pg_extension_config_dump('upload_pipeline.events', '');
SELECT pg_catalog.pg_extension_config_dump('upload_pipeline.events_seq_seq', '');
SELECT pg_catalog.pg_extension_config_dump('upload_pipeline.document_chunks', '');
-- The state machine: C triggers on upload_jobs, and the edge table they use.

CREATE FUNCTION tvdb.version() RETURNS text
    AS 'MODULE_PATHNAME', 'tvdb_version' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION tvdb.version() IS 'version of the loaded tvdb library';

CREATE FUNCTION tvdb.transition_table(
        OUT from_status text, OUT to_status text, OUT event_type text,
        OUT severity text, OUT code text, OUT is_retry boolean)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'tvdb_transition_table' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION tvdb.transition_table() IS 'the C edge table the status triggers enforce';

CREATE FUNCTION tvdb.status_table(
        OUT status text, OUT ordinal integer, OUT is_initial boolean,
        OUT is_terminal boolean, OUT is_failure boolean)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'tvdb_status_table' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION tvdb.status_table() IS 'the job statuses known to the C state machine';

CREATE VIEW tvdb.allowed_transitions AS
    SELECT from_status, to_status, event_type, severity, code, is_retry
    FROM tvdb.transition_table();
COMMENT ON VIEW tvdb.allowed_transitions IS 'every allowed status change and the event it records (from_status NULL: job creation)';

CREATE VIEW tvdb.statuses AS
    SELECT status, ordinal, is_initial, is_terminal, is_failure FROM tvdb.status_table();
COMMENT ON VIEW tvdb.statuses IS 'the job statuses, in pipeline order';

CREATE FUNCTION tvdb.guard_status() RETURNS trigger
    AS 'MODULE_PATHNAME', 'tvdb_guard_status' LANGUAGE C;
COMMENT ON FUNCTION tvdb.guard_status() IS 'BEFORE trigger: rejects illegal status changes';

CREATE FUNCTION tvdb.record_event() RETURNS trigger
    AS 'MODULE_PATHNAME', 'tvdb_record_event' LANGUAGE C;
COMMENT ON FUNCTION tvdb.record_event() IS 'AFTER trigger: one event row and a NOTIFY per status change';

CREATE TRIGGER tvdb_guard_insert BEFORE INSERT ON upload_pipeline.upload_jobs
    FOR EACH ROW EXECUTE FUNCTION tvdb.guard_status();
CREATE TRIGGER tvdb_guard_update BEFORE UPDATE ON upload_pipeline.upload_jobs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION tvdb.guard_status();
CREATE TRIGGER tvdb_record_insert AFTER INSERT ON upload_pipeline.upload_jobs
    FOR EACH ROW EXECUTE FUNCTION tvdb.record_event();
CREATE TRIGGER tvdb_record_update AFTER UPDATE ON upload_pipeline.upload_jobs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION tvdb.record_event();

-- The status lists SQL needs come from the C table, never by hand.  The
-- queue: only jobs that still have work are indexed, so finished jobs never
-- slow down claiming.
CREATE FUNCTION tvdb._status_list(working boolean, failure boolean) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT string_agg(quote_literal(s.status), ', ' ORDER BY s.ordinal)
    FROM tvdb.statuses s
    WHERE (working AND NOT s.is_terminal AND NOT s.is_failure) OR (failure AND s.is_failure)
$$;
COMMENT ON FUNCTION tvdb._status_list(boolean, boolean) IS
    'internal (install): the working or failure statuses as a SQL list, from the C table';

DO $$
BEGIN
    EXECUTE format('CREATE INDEX upload_jobs_claimable_idx ON upload_pipeline.upload_jobs '
                   '(status, next_poll_at NULLS FIRST) WHERE status IN (%s)', tvdb._status_list(true, false));
    EXECUTE format('CREATE INDEX upload_jobs_retry_due_idx ON upload_pipeline.upload_jobs (next_retry_at) '
                   'WHERE status IN (%s) AND next_retry_at IS NOT NULL', tvdb._status_list(false, true));
END
$$;
-- The SQL API for applications.

CREATE FUNCTION tvdb.upload(filename text, content bytea,
                            mime_type text DEFAULT NULL, correlation_id uuid DEFAULT NULL)
    RETURNS uuid
    AS 'MODULE_PATHNAME', 'tvdb_upload' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tvdb.upload(text, bytea, text, uuid) IS
    'store a document and create its job in status uploaded; returns the job_id';

CREATE FUNCTION tvdb.transition(job_id uuid, to_status text,
                                detail jsonb DEFAULT '{}', from_status text DEFAULT NULL)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'tvdb_transition' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tvdb.transition(uuid, text, jsonb, text) IS
    'compare-and-set status change; detail goes into the event payload (its "error" key into last_error on failure); true if changed, false if already there';

CREATE VIEW tvdb.jobs AS
    SELECT j.job_id, j.document_id, d.filename, d.mime_type, d.size_bytes,
           j.status, j.correlation_id, j.attempts, j.tries, j.last_error, j.failure_class, j.next_retry_at,
           j.parse_job_id, j.parsed_path,
           j.created_at, j.updated_at, j.status_changed_at,
           now() - j.status_changed_at AS in_status_for,
           coalesce((SELECT jsonb_object_agg(t.from_status, t.seconds ORDER BY t.first_seq)
                     FROM (SELECT e.from_status, min(e.seq) AS first_seq,
                                  round(extract(epoch FROM sum(e.in_previous_state)), 6) AS seconds
                           FROM upload_pipeline.events e
                           WHERE e.job_id = j.job_id AND e.from_status IS NOT NULL
                           GROUP BY e.from_status) t),
                    '{}') AS stage_seconds
    FROM upload_pipeline.upload_jobs j
    JOIN upload_pipeline.documents d USING (document_id);
COMMENT ON VIEW tvdb.jobs IS
    'a job as an application sees it: status, attempts, failed tries in this stage, last error and its class, when a retry is due, and seconds spent in each past status';

CREATE FUNCTION tvdb.job(job_id uuid) RETURNS tvdb.jobs
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r tvdb.jobs;
BEGIN
    SELECT * INTO r FROM tvdb.jobs j WHERE j.job_id = job.job_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % does not exist', job_id
            USING ERRCODE = 'TV004', HINT = 'Job ids are returned by tvdb.upload().';
    END IF;
    RETURN r;
END
$$;
COMMENT ON FUNCTION tvdb.job(uuid) IS 'one job from tvdb.jobs; error TV004 if there is none';

CREATE FUNCTION tvdb.job_history(job_id uuid)
    RETURNS TABLE (seq bigint, ts timestamptz, from_status text, to_status text,
                   type text, severity text, code text, attempt integer,
                   in_previous_state interval, payload jsonb)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.seq, e.ts, e.from_status, e.to_status, e.type, e.severity, e.code,
           e.attempt, e.in_previous_state, e.payload
    FROM upload_pipeline.events e
    WHERE e.job_id = job_history.job_id
    ORDER BY e.seq
$$;
COMMENT ON FUNCTION tvdb.job_history(uuid) IS 'every event of one job, oldest first';

CREATE FUNCTION tvdb.parse_route(filename text, mime_type text, size_bytes bigint,
                                 OUT route text, OUT reason text)
    AS 'MODULE_PATHNAME', 'tvdb_parse_route_sql' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION tvdb.parse_route(text, text, bigint) IS
    'which parser would read such a document now: llamaparse (by extension), local (tvdb.parse_locally), or refused, with the reason';
-- Webhook signatures, in C (src/hmac.c).

CREATE FUNCTION tvdb.hmac_sha256(key bytea, message bytea)
    RETURNS bytea
    AS 'MODULE_PATHNAME', 'tvdb_hmac_sha256'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION tvdb.hmac_sha256(bytea, bytea) IS 'HMAC-SHA256 of message under key';

CREATE FUNCTION tvdb.verify_webhook_signature(body bytea, headers jsonb, secrets text[] DEFAULT NULL)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'tvdb_verify_webhook_signature'
    LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION tvdb.verify_webhook_signature(bytea, jsonb, text[]) IS
    'true when any secret (NULL: tvdb.webhook_secrets) signs the body: sha256=<hex> headers or Standard Webhooks';

-- With NULL secrets it checks against the configured ones: not for everyone.
REVOKE ALL ON FUNCTION tvdb.verify_webhook_signature(bytea, jsonb, text[]) FROM PUBLIC;
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
-- not waiting for a parse result gets a conflict event.
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
COMMENT ON FUNCTION tvdb._webhook_parsed(upload_pipeline.upload_jobs, bytea, jsonb, text, text) IS 'internal: apply the markdown a callback brought';

-- LlamaParse's v1 webhook_url push ({txt, md, json: [pages], images}): no id,
-- no signature, so it is only taken at the callback URL tvdb handed out,
-- which names the job.  Its markdown is applied without a fetch; the pages
-- (one element of "json" each) go in the ledger.  A push without markdown is
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
    IF reply ->> 'result' = 'applied' THEN
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
    AS 'MODULE_PATHNAME', 'tvdb_handle_llamaparse_webhook' LANGUAGE C VOLATILE
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
-- The background worker's side of the database: the usage ledger, and the
-- short transactions it runs to claim work and to record what came back.
-- The worker (src/worker.c) calls these; no transaction spans a request.
-- They are revoked from PUBLIC and run in the worker's session, whose
-- search_path is pg_catalog, pg_temp: no SET clause, which costs on every call.

CREATE TABLE upload_pipeline.usage (
    usage_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts            timestamptz NOT NULL DEFAULT now(),
    service       text NOT NULL CHECK (service IN ('llamaparse', 'openai', 'mock', 'local')),
    operation     text NOT NULL,
    job_id        uuid,
    job_ids       uuid[] NOT NULL DEFAULT '{}',
    http_status   integer,
    latency_ms    double precision,
    pages         integer,
    cache_hit     boolean,
    inputs        integer,
    prompt_tokens integer,
    cost_usd      numeric NOT NULL DEFAULT 0,
    error         text,
    model         text,
    credits       numeric,
    state         text NOT NULL DEFAULT 'answered' CHECK (state IN ('sent', 'answered', 'unknown')),
    estimated_usd numeric,
    reserved_usd  numeric NOT NULL DEFAULT 0 CHECK (reserved_usd >= 0),
    owner         text,
    job_tokens    bigint[],
    saved_usd     numeric NOT NULL DEFAULT 0
);
COMMENT ON TABLE upload_pipeline.usage IS
    'the usage ledger: one row per external request (or mock step), with its cost in USD';
COMMENT ON COLUMN upload_pipeline.usage.model IS 'the embedding model, LlamaParse mode or tier, or builtin / mock';
COMMENT ON COLUMN upload_pipeline.usage.credits IS 'the LlamaParse credits the service reported for the job, when it did';
COMMENT ON COLUMN upload_pipeline.usage.job_ids IS 'every job a batched request served (embeddings)';
COMMENT ON COLUMN upload_pipeline.usage.http_status IS '0 when no HTTP response arrived (timeout, connection refused)';
COMMENT ON COLUMN upload_pipeline.usage.state IS
    'sent: written before the request went, no answer yet; answered; unknown: no answer will come (timeout, crash)';
COMMENT ON COLUMN upload_pipeline.usage.estimated_usd IS 'what the request was expected to cost when it was sent';
COMMENT ON COLUMN upload_pipeline.usage.reserved_usd IS
    'what is held against budgets beyond cost_usd: the estimate while the outcome is unknown, or a LlamaParse upload''s until its parse is settled';
COMMENT ON COLUMN upload_pipeline.usage.owner IS 'the worker that sent the request';
COMMENT ON COLUMN upload_pipeline.usage.saved_usd IS 'what a reused parse or cached vectors would have cost (operations parse_reused, embeddings_cached)';
COMMENT ON COLUMN upload_pipeline.usage.job_tokens IS 'a batch''s estimated input tokens per job of job_ids: each job''s share of its cost';
CREATE INDEX usage_sent_idx ON upload_pipeline.usage (owner) WHERE state = 'sent';
CREATE INDEX usage_ts_idx ON upload_pipeline.usage (ts);
CREATE INDEX usage_job_idx ON upload_pipeline.usage (job_id);
SELECT pg_catalog.pg_extension_config_dump('upload_pipeline.usage', '');

CREATE VIEW tvdb.usage_summary AS
    SELECT service, operation, count(*) AS requests,
           count(*) FILTER (WHERE http_status BETWEEN 200 AND 299) AS succeeded,
           count(*) FILTER (WHERE state = 'sent') AS in_flight,
           count(*) FILTER (WHERE state = 'unknown') AS unknown,
           sum(pages) AS pages, sum(prompt_tokens) AS prompt_tokens,
           sum(cost_usd) AS cost_usd, sum(reserved_usd) AS reserved_usd,
           round(avg(latency_ms)::numeric, 1) AS avg_latency_ms
    FROM upload_pipeline.usage GROUP BY service, operation;
COMMENT ON VIEW tvdb.usage_summary IS
    'requests (in flight, of unknown outcome), pages, tokens, cost and what is still reserved, by service and operation';

-- Claim up to n due jobs in one status: the lease is the claim, SKIP LOCKED
-- keeps workers off each other's rows.  Due jobs come first in the
-- claimable index (NULL = due now), so the scan stops after n of them.  In
-- C (src/backend/advance.c), under the calling statement's snapshot: joined
-- with other tables, it returns every job it leases.
CREATE FUNCTION tvdb._claim(status text, owner text, n integer, lease_seconds integer)
    RETURNS SETOF uuid AS 'MODULE_PATHNAME', 'tvdb_claim' LANGUAGE C VOLATILE;

-- Milliseconds until the worker has something to do (0: now; NULL: nothing).
-- Its status list is the claimable index's, from the C table.
DO $$
BEGIN
    EXECUTE format($f$
CREATE FUNCTION tvdb._next_due_ms() RETURNS double precision
    LANGUAGE plpgsql VOLATILE
AS $b$
BEGIN
    RETURN (SELECT greatest(0, extract(epoch FROM due - clock_timestamp()) * 1000)  -- NULL: nothing at all
            FROM (SELECT min(greatest(coalesce(lease_expires_at, clock_timestamp()),
                                      coalesce(next_poll_at, clock_timestamp()))) AS due
                  FROM upload_pipeline.upload_jobs
                  WHERE status IN (%s)) s
            WHERE due IS NOT NULL);
END
$b$ $f$, tvdb._status_list(true, false));
END
$$;

-- Where a job's parsed markdown is stored (the worker and webhooks alike).
CREATE FUNCTION tvdb._parsed_path(document_id uuid, job_id uuid) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT format('storage://parsed/%s/%s.md', document_id, job_id) $$;

-- Give a job back: after a transient failure it is retried no sooner than
-- retry_in, and a warning event says why.
CREATE FUNCTION tvdb._release(job uuid, owner text, retry_in interval DEFAULT NULL,
                              error text DEFAULT NULL, stage text DEFAULT NULL)
    RETURNS void LANGUAGE plpgsql
AS $$
DECLARE
    j upload_pipeline.upload_jobs;
BEGIN
    UPDATE upload_pipeline.upload_jobs u
    SET lease_owner = NULL, lease_expires_at = NULL,
        next_poll_at = CASE WHEN retry_in IS NOT NULL THEN clock_timestamp() + retry_in ELSE u.next_poll_at END
    WHERE u.job_id = job AND u.lease_owner = owner
    RETURNING * INTO j;
    IF FOUND AND error IS NOT NULL THEN
        INSERT INTO upload_pipeline.events (job_id, document_id, type, severity, code, payload, correlation_id)
        VALUES (j.job_id, j.document_id, 'stage_error', 'warn', coalesce(stage, 'job') || '_retry_scheduled',
                jsonb_build_object('error', error, 'retry_in_seconds', extract(epoch FROM retry_in)),
                j.correlation_id);
    END IF;
END
$$;

-- Work the worker could not record (an answer, or a batch of local work
-- that failed) holds back only its own job: given back with a backoff and a
-- warning event, or, the max_holds-th time in its status or for bad data that
-- no retry can fix, moved to its stage's failure status with the error.
CREATE FUNCTION tvdb._hold_back(job uuid, owner text, failed_status text, error text,
                                permanent boolean, max_holds integer)
    RETURNS text LANGUAGE plpgsql
AS $$
DECLARE
    j upload_pipeline.upload_jobs;
    holds bigint;
BEGIN
    SELECT * INTO j FROM upload_pipeline.upload_jobs u
    WHERE u.job_id = job AND u.lease_owner = owner FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'lost';
    END IF;
    SELECT count(*) INTO holds FROM upload_pipeline.events e
    WHERE e.job_id = job AND e.code = 'worker_retry_scheduled' AND e.ts >= j.status_changed_at;
    IF (permanent OR holds + 1 >= max_holds)
       AND EXISTS (SELECT 1 FROM tvdb.allowed_transitions t
                   WHERE t.from_status = j.status AND t.to_status = failed_status)
       AND tvdb._advance(job, owner, j.status, failed_status,
                         jsonb_build_object('error', 'the worker could not record its work: ' || error,
                                            'held_back', holds,
                                            'class', CASE WHEN permanent THEN 'permanent' ELSE 'retries_exhausted' END)) THEN
        RETURN 'failed';
    END IF;
    PERFORM tvdb._release(job, owner, interval '30 seconds',
                          'the worker could not record its work: ' || error, 'worker');
    RETURN 'retry';
END
$$;

-- Move a leased job; false (and nothing written) if the lease was lost or
-- the job moved meanwhile (a webhook got there first).  In C (src/advance.c):
-- one UPDATE, whose triggers check the edge and write the event.
CREATE FUNCTION tvdb._advance(job uuid, owner text, from_status text, to_status text,
                              detail jsonb DEFAULT '{}', keep_lease boolean DEFAULT false)
    RETURNS boolean AS 'MODULE_PATHNAME', 'tvdb_advance' LANGUAGE C;

-- The same for a batch of jobs in one UPDATE, details[i] for jobs[i]: the
-- ids of the jobs that moved.
CREATE FUNCTION tvdb._advance_all(jobs uuid[], owner text, from_status text, to_status text,
                                  details jsonb[] DEFAULT NULL, keep_lease boolean DEFAULT false)
    RETURNS uuid[] AS 'MODULE_PATHNAME', 'tvdb_advance_all' LANGUAGE C;

-- Claim up to n due, unleased jobs in from_status (SKIP LOCKED) and move
-- them to to_status under a new lease, in one UPDATE: the ids taken.
CREATE FUNCTION tvdb._take(from_status text, to_status text, owner text, n integer, lease_seconds integer)
    RETURNS uuid[] AS 'MODULE_PATHNAME', 'tvdb_take' LANGUAGE C;

CREATE FUNCTION tvdb._record_usage(service text, operation text, job_id uuid, job_ids uuid[],
                                   http_status integer, latency_ms double precision,
                                   pages integer DEFAULT NULL, cache_hit boolean DEFAULT NULL,
                                   inputs integer DEFAULT NULL, prompt_tokens integer DEFAULT NULL,
                                   cost_usd numeric DEFAULT 0, error text DEFAULT NULL,
                                   model text DEFAULT NULL)
    RETURNS void LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO upload_pipeline.usage (service, operation, job_id, job_ids, http_status, latency_ms,
                                       pages, cache_hit, inputs, prompt_tokens, cost_usd, error, model)
    VALUES (service, operation, job_id, coalesce(job_ids, '{}'), http_status, latency_ms,
            pages, cache_hit, inputs, prompt_tokens, coalesce(cost_usd, 0), error, model);
END
$$;

-- Store parsed markdown and move parse_queued -> parsed, for the jobs of a
-- batch still leased to owner in parse_queued (a webhook may have parsed
-- the others meanwhile): markdowns[i] and details[i] go with jobs[i].  The
-- ids of the jobs moved.
CREATE FUNCTION tvdb._store_parsed_all(jobs uuid[], owner text, markdowns text[], details jsonb[])
    RETURNS uuid[] LANGUAGE plpgsql
AS $$
DECLARE
    ours uuid[];
    paths text[];
    mds bytea[];
    ds jsonb[];
BEGIN
    SELECT array_agg(v.job ORDER BY v.i),
           array_agg(tvdb._parsed_path(u.document_id, v.job) ORDER BY v.i),
           array_agg(v.md ORDER BY v.i),
           array_agg(v.detail || jsonb_build_object('content_length', octet_length(v.md)) ORDER BY v.i)
    INTO ours, paths, mds, ds
    FROM (SELECT w.job, w.i, w.detail, convert_to(w.markdown, 'UTF8') AS md
          FROM unnest(jobs, markdowns, details) WITH ORDINALITY AS w(job, markdown, detail, i)) v
    JOIN (SELECT u.job_id, u.document_id FROM upload_pipeline.upload_jobs u
          WHERE u.job_id = ANY(jobs) AND u.lease_owner = owner AND u.status = 'parse_queued'
          FOR UPDATE) u ON u.job_id = v.job;
    IF ours IS NULL THEN
        RETURN '{}';
    END IF;
    INSERT INTO upload_pipeline.blobs (path, content, content_type, sha256, size_bytes)
    SELECT v.path, v.md, 'text/markdown', encode(sha256(v.md), 'hex'), octet_length(v.md)
    FROM unnest(paths, mds) AS v(path, md)
    ON CONFLICT (path) DO UPDATE
        SET content = EXCLUDED.content, sha256 = EXCLUDED.sha256,
            size_bytes = EXCLUDED.size_bytes, created_at = now();
    UPDATE upload_pipeline.upload_jobs u
    SET parsed_path = v.path, parsed_sha256 = encode(sha256(v.md), 'hex'), next_poll_at = NULL
    FROM unnest(ours, paths, mds) AS v(job, path, md)
    WHERE u.job_id = v.job;
    RETURN tvdb._advance_all(ours, owner, 'parse_queued', 'parsed', ds);
END
$$;

-- The same for one job (the mock parser): false if it was not ours to move.
CREATE FUNCTION tvdb._store_parsed(job uuid, owner text, markdown text, detail jsonb)
    RETURNS boolean LANGUAGE plpgsql
AS $$
BEGIN
    RETURN cardinality(tvdb._store_parsed_all(ARRAY[job], owner, ARRAY[markdown], ARRAY[detail])) = 1;
END
$$;

-- Finish the jobs of a batch whose chunks all have their vectors:
-- embedding_in_progress -> embeddings_stored -> complete, each step for the
-- whole batch in one statement.  The number of jobs completed.
CREATE FUNCTION tvdb._finish_embeddings(jobs uuid[], owner text) RETURNS integer
    LANGUAGE plpgsql
AS $$
DECLARE
    ready uuid[];
    details jsonb[];
BEGIN
    SELECT array_agg(u.j), array_agg(jsonb_build_object('chunks',
               (SELECT count(*) FROM upload_pipeline.document_chunks c WHERE c.job_id = u.j)))
    INTO ready, details
    FROM (SELECT DISTINCT unnest(jobs) AS j) u
    WHERE NOT EXISTS (SELECT 1 FROM upload_pipeline.document_chunks c
                      WHERE c.job_id = u.j AND c.embedding IS NULL);
    IF ready IS NULL THEN
        RETURN 0;
    END IF;
    ready := tvdb._advance_all(ready, owner, 'embedding_in_progress', 'embeddings_stored', details, true);
    RETURN cardinality(tvdb._advance_all(ready, owner, 'embeddings_stored', 'complete'));
END
$$;

-- A batch of embeddings stored: a success, so its jobs' failed tries start
-- over; those with every chunk embedded move on.
CREATE FUNCTION tvdb._embeddings_stored(jobs uuid[], owner text) RETURNS integer
    LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE upload_pipeline.upload_jobs u SET tries = 0, next_retry_at = NULL
    WHERE u.job_id = ANY(jobs) AND u.lease_owner = owner AND u.tries > 0;
    RETURN tvdb._finish_embeddings(jobs, owner);
END
$$;

REVOKE ALL ON FUNCTION tvdb._claim(text, text, integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._release(uuid, text, interval, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._advance(uuid, text, text, text, jsonb, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._advance_all(uuid[], text, text, text, jsonb[], boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._take(text, text, text, integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._record_usage(text, text, uuid, uuid[], integer, double precision,
                                          integer, boolean, integer, integer, numeric, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._store_parsed(uuid, text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._store_parsed_all(uuid[], text, text[], jsonb[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._finish_embeddings(uuid[], text) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._embeddings_stored(uuid[], text) FROM PUBLIC;
COMMENT ON FUNCTION tvdb._embeddings_stored(uuid[], text) IS 'internal (worker): a batch''s vectors stored: its jobs'' tries start over, finished ones move on';
REVOKE ALL ON FUNCTION tvdb._next_due_ms() FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._hold_back(uuid, text, text, text, boolean, integer) FROM PUBLIC;
COMMENT ON FUNCTION tvdb._hold_back(uuid, text, text, text, boolean, integer) IS 'internal (worker): give back, or after repeated failures fail, a job whose work could not be recorded';
COMMENT ON FUNCTION tvdb._parsed_path(uuid, uuid) IS 'internal: where a job''s parsed markdown is stored';
-- Prices, in tables the operator updates (UPDATE / INSERT as the extension's
-- owner): what each request in the ledger cost.
--
-- OpenAI bills embeddings per token, per model.  LlamaParse bills credits: the
-- result reports the job's (job_metadata.job_credits_usage); when it does not,
-- pages x the credits per page of the mode or tier in use.  A credit's price
-- is tvdb.llamaparse_usd_per_1000_credits.  Rows the operator adds or changes
-- are kept by pg_dump; the defaults come with the extension.

CREATE TABLE upload_pipeline.embedding_prices (
    model                  text PRIMARY KEY CHECK (model <> ''),
    usd_per_million_tokens numeric NOT NULL CHECK (usd_per_million_tokens >= 0),
    is_default             boolean NOT NULL DEFAULT false,
    updated_at             timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE upload_pipeline.embedding_prices IS
    'OpenAI embedding prices per model, USD per million input tokens; the worker embeds only with a priced model';

CREATE TABLE upload_pipeline.parse_prices (
    mode             text PRIMARY KEY CHECK (mode <> ''),
    credits_per_page numeric NOT NULL CHECK (credits_per_page >= 0),
    is_default       boolean NOT NULL DEFAULT false,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE upload_pipeline.parse_prices IS
    'LlamaParse credits per page by v2 tier or v1 parse_mode, used when a result reports no credits';

-- A changed default is the operator's row from then on (and so is dumped).
CREATE FUNCTION tvdb._price_changed() RETURNS trigger LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.is_default := false;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER price_changed BEFORE UPDATE ON upload_pipeline.embedding_prices
    FOR EACH ROW EXECUTE FUNCTION tvdb._price_changed();
CREATE TRIGGER price_changed BEFORE UPDATE ON upload_pipeline.parse_prices
    FOR EACH ROW EXECUTE FUNCTION tvdb._price_changed();

-- OpenAI's published prices (openai.com/api/pricing).
INSERT INTO upload_pipeline.embedding_prices (model, usd_per_million_tokens, is_default) VALUES
    ('text-embedding-3-small', 0.02, true),
    ('text-embedding-3-large', 0.13, true),
    ('text-embedding-ada-002', 0.10, true);
-- LlamaParse's credits per page: agentic 10 and agentic_plus 45 from its
-- glossary (developers.llamaindex.ai/llamaparse/general/glossary); fast 1 and
-- cost_effective 3 as commonly published; v1 modes as the tier they match.
-- "default": a v1 upload that names no mode.
INSERT INTO upload_pipeline.parse_prices (mode, credits_per_page, is_default) VALUES
    ('fast', 1, true), ('cost_effective', 3, true), ('agentic', 10, true), ('agentic_plus', 45, true),
    ('parse_page_without_llm', 1, true), ('parse_page_with_llm', 3, true),
    ('parse_page_with_agent', 10, true), ('parse_page_with_layout_agent', 10, true),
    ('parse_page_with_lvm', 10, true), ('parse_document_with_llm', 3, true),
    ('parse_document_with_lvm', 10, true), ('parse_document_with_agent', 10, true),
    ('default', 3, true);
SELECT pg_catalog.pg_extension_config_dump('upload_pipeline.embedding_prices', 'WHERE NOT is_default');
SELECT pg_catalog.pg_extension_config_dump('upload_pipeline.parse_prices', 'WHERE NOT is_default');

-- The LlamaParse mode in force: v2's tier, else v1's parse_mode (fast_mode
-- is the fast one), else "default".
CREATE FUNCTION tvdb._parse_mode() RETURNS text LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN current_setting('tvdb.llamaparse_api') = 'v2' THEN coalesce(o ->> 'tier', 'default')
                WHEN o ->> 'parse_mode' IS NOT NULL THEN o ->> 'parse_mode'
                WHEN o ->> 'fast_mode' = 'true' THEN 'fast'
                ELSE 'default' END
    FROM (SELECT coalesce(nullif(current_setting('tvdb.llamaparse_options'), ''), '{}')::jsonb AS o) s
$$;

-- What a LlamaParse result cost: nothing for a cache hit; the credits it
-- reported; else its pages at the mode's credits per page.
CREATE FUNCTION tvdb._llamaparse_cost(pages integer, cache_hit boolean, credits numeric, mode text)
    RETURNS numeric LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN cache_hit THEN 0
                ELSE round(coalesce(credits, pages * (SELECT p.credits_per_page FROM upload_pipeline.parse_prices p
                                                      WHERE p.mode = _llamaparse_cost.mode), 0)
                           * current_setting('tvdb.llamaparse_usd_per_1000_credits')::numeric / 1000, 10) END
$$;

-- What an embeddings request cost; NULL for a model with no price.  Costs
-- are kept to 1e-10 USD (one token of the cheapest model is 2e-8).
CREATE FUNCTION tvdb._openai_cost(prompt_tokens integer, model text) RETURNS numeric LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT round(coalesce(prompt_tokens, 0) * p.usd_per_million_tokens / 1e6, 10)
    FROM upload_pipeline.embedding_prices p WHERE p.model = _openai_cost.model
$$;

-- Every ledger row names what it used: its model, mode or parser.
CREATE FUNCTION tvdb._usage_model() RETURNS trigger LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.model := coalesce(NEW.model, CASE NEW.service
        WHEN 'llamaparse' THEN tvdb._parse_mode()
        WHEN 'openai' THEN current_setting('tvdb.embedding_model')
        WHEN 'local' THEN 'builtin'
        ELSE NEW.service END);
    RETURN NEW;
END
$$;
CREATE TRIGGER usage_model BEFORE INSERT ON upload_pipeline.usage
    FOR EACH ROW EXECUTE FUNCTION tvdb._usage_model();

COMMENT ON FUNCTION tvdb._parse_mode() IS 'internal: the LlamaParse mode or tier the settings ask for';
COMMENT ON FUNCTION tvdb._llamaparse_cost(integer, boolean, numeric, text) IS 'internal (worker): the cost of a LlamaParse result';
COMMENT ON FUNCTION tvdb._openai_cost(integer, text) IS 'internal (worker): the cost of an OpenAI embeddings request';
COMMENT ON FUNCTION tvdb._price_changed() IS 'internal (trigger): a changed default price becomes the operator''s row';
COMMENT ON FUNCTION tvdb._usage_model() IS 'internal (trigger): every ledger row names its model, mode or parser';
REVOKE ALL ON FUNCTION tvdb._price_changed() FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._usage_model() FROM PUBLIC;
-- The ledger is written before each request (src/worker/ledger.c): a row in
-- state 'sent' with the request's estimated cost, committed before the
-- request goes; the SQL that records the answer completes it.

-- The pages LlamaParse is expected to bill for a file (src/stages/page_estimate.c).
CREATE FUNCTION tvdb._estimate_pages(content bytea) RETURNS integer
    AS 'MODULE_PATHNAME', 'tvdb_estimate_pages_sql' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- The pre-send rows a ledger row being written may complete (the worker's
-- requests whose answers it is recording now; none elsewhere).
CREATE FUNCTION tvdb._sent_requests(service text, operation text, job uuid, job_ids uuid[])
    RETURNS bigint[] AS 'MODULE_PATHNAME', 'tvdb_sent_requests' LANGUAGE C VOLATILE;

-- A request about to be sent: its row, with what it should cost (LlamaParse:
-- the estimated pages at the mode's price; OpenAI: the estimated input
-- tokens at the model's price; polls and result fetches are free), reserved
-- against the budgets that cover it.  NULL when a budget has no room: the
-- request is not sent, and its jobs wait (54_budgets).
CREATE FUNCTION tvdb._request_sent(service text, operation text, job_id uuid, job_ids uuid[],
                                   owner text, pages integer, tokens bigint, job_tokens bigint[] DEFAULT NULL)
    RETURNS bigint LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    estimate numeric := 0;
    refusal text;
    id bigint;
BEGIN
    IF service = 'llamaparse' AND operation = 'upload' THEN
        estimate := tvdb._llamaparse_cost(pages, false, NULL, tvdb._parse_mode());
    ELSIF service = 'openai' THEN
        estimate := tvdb._openai_cost(least(tokens, 2147483647)::integer, current_setting('tvdb.embedding_model'));
    END IF;
    estimate := coalesce(estimate, 0);
    refusal := tvdb._budget_refusal(service, estimate);
    IF refusal IS NOT NULL THEN
        PERFORM tvdb._budget_wait(j, owner, refusal)
        FROM unnest(CASE WHEN job_id IS NULL THEN job_ids ELSE ARRAY[job_id] END) AS j;
        RETURN NULL;
    END IF;
    INSERT INTO upload_pipeline.usage (service, operation, job_id, job_ids, state, estimated_usd,
                                       reserved_usd, owner, job_tokens)
    VALUES (service, operation, job_id, coalesce(job_ids, '{}'), 'sent', estimate, estimate, owner, job_tokens)
    RETURNING usage_id INTO id;
    RETURN id;
END
$$;

-- A ledger row written for an answer completes the request's pre-send row
-- (and is not inserted).  No answer (HTTP 0: a timeout, a reset) leaves the
-- outcome unknown, held at the estimate; an accepted LlamaParse upload
-- keeps its reservation until its parse is settled (below).
CREATE FUNCTION tvdb._usage_answered() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
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
                                     AND NEW.http_status BETWEEN 200 AND 299 THEN u.estimated_usd
                                ELSE 0 END
        WHERE u.usage_id = id AND u.state = 'sent';
        IF FOUND THEN
            RETURN NULL;
        END IF;
    END LOOP;
    RETURN NEW;
END
$$;
CREATE TRIGGER usage_answered BEFORE INSERT ON upload_pipeline.usage
    FOR EACH ROW EXECUTE FUNCTION tvdb._usage_answered();

-- A job leaves parse_queued: its parse is settled (the result's cost is in
-- the ledger, or it failed), and its uploads hold nothing back any more.
CREATE FUNCTION tvdb._parse_settled() RETURNS trigger LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- planned each time: a plan cached while the ledger was small scans it all
    EXECUTE 'UPDATE upload_pipeline.usage u SET reserved_usd = 0
             WHERE u.job_id = $1 AND u.reserved_usd > 0 AND u.service = ''llamaparse''
               AND u.operation = ''upload'' AND u.state = ''answered'''
    USING NEW.job_id;
    RETURN NULL;
END
$$;
CREATE INDEX usage_reserved_idx ON upload_pipeline.usage (job_id) WHERE reserved_usd > 0;
CREATE TRIGGER parse_settled AFTER UPDATE OF status ON upload_pipeline.upload_jobs
    FOR EACH ROW WHEN (OLD.status = 'parse_queued' AND NEW.status IS DISTINCT FROM 'parse_queued')
    EXECUTE FUNCTION tvdb._parse_settled();

-- Requests sent by workers that no longer exist will never be answered:
-- their outcome is unknown, and they count at their estimate.
CREATE FUNCTION tvdb._requests_lost() RETURNS integer LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    UPDATE upload_pipeline.usage u SET state = 'unknown',
           error = coalesce(u.error, 'no answer recorded: the worker that sent it stopped')
    WHERE u.state = 'sent'
      AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                      WHERE a.backend_type = 'tvdb worker' AND u.owner LIKE '% pid ' || a.pid);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

COMMENT ON FUNCTION tvdb._estimate_pages(bytea) IS 'internal (worker): the pages LlamaParse is expected to bill for a file';
COMMENT ON FUNCTION tvdb._sent_requests(text, text, uuid, uuid[]) IS 'internal (trigger): the worker''s pre-send rows an answer''s row may complete';
COMMENT ON FUNCTION tvdb._request_sent(text, text, uuid, uuid[], text, integer, bigint, bigint[]) IS 'internal (worker): a request''s ledger row, before it is sent';
COMMENT ON FUNCTION tvdb._usage_answered() IS 'internal (trigger): an answer completes its request''s pre-send ledger row';
COMMENT ON FUNCTION tvdb._parse_settled() IS 'internal (trigger): a settled parse releases its upload''s reservation';
COMMENT ON FUNCTION tvdb._requests_lost() IS 'internal: requests of stopped workers are of unknown outcome';
REVOKE ALL ON FUNCTION tvdb._sent_requests(text, text, uuid, uuid[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._request_sent(text, text, uuid, uuid[], text, integer, bigint, bigint[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._usage_answered() FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._parse_settled() FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._requests_lost() FROM PUBLIC;
-- Budgets: a limit in USD per service (or all) and period (day or month,
-- in UTC).  Each request's estimate is reserved against every budget that
-- covers it when its ledger row is written, before it is sent (53_ledger);
-- a request that would take a budget past its limit is not sent.

CREATE TABLE upload_pipeline.budgets (
    service    text NOT NULL CHECK (service IN ('llamaparse', 'openai', 'all')),
    period     text NOT NULL CHECK (period IN ('day', 'month')),
    limit_usd  numeric NOT NULL CHECK (limit_usd >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    alerted_80  timestamptz,   -- the period whose 80 % alert was raised
    alerted_100 timestamptz,   -- the period whose 100 % alert was raised
    PRIMARY KEY (service, period)
);
COMMENT ON TABLE upload_pipeline.budgets IS 'spending limits in USD by service (or all) and period (UTC day or month); set with tvdb.set_budget()';
SELECT pg_catalog.pg_extension_config_dump('upload_pipeline.budgets', '');
CREATE INDEX usage_service_ts_idx ON upload_pipeline.usage (service, ts);

-- Where a period that holds at begins (UTC).
CREATE FUNCTION tvdb._period_start(period text, at timestamptz) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT date_trunc(period, at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' $$;

CREATE FUNCTION tvdb.set_budget(service text, period text, limit_usd numeric) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF service IS NULL OR service NOT IN ('llamaparse', 'openai', 'all') THEN
        RAISE EXCEPTION 'unknown budget service "%"', service
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use llamaparse, openai or all.';
    END IF;
    IF period IS NULL OR period NOT IN ('day', 'month') THEN
        RAISE EXCEPTION 'unknown budget period "%"', period
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use day or month (UTC).';
    END IF;
    IF limit_usd < 0 THEN
        RAISE EXCEPTION 'a budget cannot be negative'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('limit_usd was %s.', limit_usd),
                  HINT = 'Use 0 to stop all spending, or NULL to remove the budget.';
    END IF;
    IF limit_usd IS NULL THEN
        DELETE FROM upload_pipeline.budgets b WHERE b.service = set_budget.service AND b.period = set_budget.period;
    ELSE
        INSERT INTO upload_pipeline.budgets AS b (service, period, limit_usd)
        VALUES (set_budget.service, set_budget.period, set_budget.limit_usd)
        ON CONFLICT ON CONSTRAINT budgets_pkey
        DO UPDATE SET limit_usd = EXCLUDED.limit_usd, updated_at = now();
    END IF;
    -- jobs waiting for room look again now
    UPDATE upload_pipeline.upload_jobs u SET next_poll_at = NULL, next_retry_at = NULL
    WHERE u.lease_owner IS NULL AND u.next_poll_at > now()
      AND (SELECT e.code FROM upload_pipeline.events e WHERE e.job_id = u.job_id ORDER BY e.seq DESC LIMIT 1)
          IN ('budget_exhausted', 'budget_throttled');
    PERFORM tvdb._wake_workers();
END
$$;
COMMENT ON FUNCTION tvdb.set_budget(text, text, numeric) IS
    'set (or with NULL remove) the USD limit for llamaparse, openai or all in a UTC day or month';

-- What a budget has spent and holds reserved in its current period.
CREATE FUNCTION tvdb._budget_used(service text, period text, OUT spent numeric, OUT reserved numeric)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(sum(u.cost_usd), 0), coalesce(sum(u.reserved_usd), 0)
    FROM upload_pipeline.usage u
    WHERE u.ts >= tvdb._period_start(period, now())
      AND (_budget_used.service = 'all' OR u.service = _budget_used.service)
      AND u.service IN ('llamaparse', 'openai')
$$;

CREATE VIEW tvdb.budgets AS
    SELECT b.service, b.period, b.limit_usd, p.start AS period_start, p.start + ('1 ' || b.period)::interval AS period_end,
           x.spent AS spent_usd, x.reserved AS reserved_usd, b.limit_usd - x.spent - x.reserved AS remaining_usd,
           round((x.spent + x.reserved) * extract(epoch FROM ('1 ' || b.period)::interval)
                 / greatest(extract(epoch FROM now() - p.start), 60), 6) AS forecast_usd
    FROM upload_pipeline.budgets b,
         LATERAL (SELECT tvdb._period_start(b.period, now()) AS start) p,
         LATERAL tvdb._budget_used(b.service, b.period) x;
COMMENT ON VIEW tvdb.budgets IS
    'each budget in its current period: spent, reserved (requests not yet settled), remaining, and the spend forecast for the whole period at the rate so far';

-- May a request of this estimate go?  NULL if so, else why not.  Budget rows
-- are locked (in one order) until the caller commits, so that workers
-- racing for the last dollars reserve one after the other.  A budget that
-- reaches 80 % and 100 % raises an alert, once each per period.
CREATE FUNCTION tvdb._budget_refusal(service text, estimate numeric) RETURNS text
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b record;
    used record;
    start timestamptz;
    why text;
BEGIN
    IF coalesce(estimate, 0) <= 0 THEN
        RETURN NULL;
    END IF;
    FOR b IN SELECT x.service, x.period, x.limit_usd, x.alerted_80, x.alerted_100 FROM upload_pipeline.budgets x
             WHERE x.service IN (_budget_refusal.service, 'all')
             ORDER BY x.service, x.period FOR UPDATE
    LOOP
        used := tvdb._budget_used(b.service, b.period);
        start := tvdb._period_start(b.period, now());
        IF used.spent + used.reserved + estimate > b.limit_usd THEN
            why := format('the %s budget for %s (%s USD) has %s USD spent and %s USD reserved; this request needs %s USD',
                          b.period, b.service, b.limit_usd, used.spent, used.reserved, round(estimate, 6));
            IF b.alerted_100 IS DISTINCT FROM start THEN
                UPDATE upload_pipeline.budgets x SET alerted_100 = start
                WHERE x.service = b.service AND x.period = b.period;
                PERFORM tvdb._alert('budget_exhausted', 'critical', nullif(b.service, 'all'), NULL,
                                    why || ': requests wait until the period rolls over or the limit is raised',
                                    jsonb_build_object('budget', b.service, 'period', b.period, 'limit_usd', b.limit_usd,
                                                       'spent_usd', used.spent, 'reserved_usd', used.reserved));
            END IF;
            RETURN why;
        END IF;
        -- above tvdb.budget_throttle_at, at most tvdb.budget_throttle_rpm requests a minute
        IF current_setting('tvdb.budget_throttle_at')::numeric > 0
           AND used.spent + used.reserved + estimate > current_setting('tvdb.budget_throttle_at')::numeric * b.limit_usd
           AND (SELECT count(*) FROM upload_pipeline.usage u
                WHERE u.ts > clock_timestamp() - interval '1 minute'
                  AND (b.service = 'all' OR u.service = b.service) AND u.estimated_usd > 0)
               >= current_setting('tvdb.budget_throttle_rpm')::integer THEN
            RETURN format('throttled: the %s budget for %s would pass tvdb.budget_throttle_at (%s of %s USD used or reserved); at most %s requests a minute',
                          b.period, b.service, round(used.spent + used.reserved, 6), b.limit_usd,
                          current_setting('tvdb.budget_throttle_rpm'));
        END IF;
        IF used.spent + used.reserved + estimate >= 0.8 * b.limit_usd AND b.alerted_80 IS DISTINCT FROM start THEN
            UPDATE upload_pipeline.budgets x SET alerted_80 = start
            WHERE x.service = b.service AND x.period = b.period;
            PERFORM tvdb._alert('budget_80', 'warn', nullif(b.service, 'all'), NULL,
                                format('the %s budget for %s is 80 %% used: %s of %s USD spent or reserved',
                                       b.period, b.service, round(used.spent + used.reserved + estimate, 6), b.limit_usd),
                                jsonb_build_object('budget', b.service, 'period', b.period, 'limit_usd', b.limit_usd,
                                                   'spent_usd', used.spent, 'reserved_usd', used.reserved + estimate));
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

-- A request the budget refused: its job waits in its status (no try
-- spent), due again in a minute or when a budget changes; one warning
-- event while it waits, not one a minute.
CREATE FUNCTION tvdb._budget_wait(job uuid, owner text, reason text) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    wait interval := CASE WHEN reason LIKE 'throttled:%'
                          THEN make_interval(secs => 60.0 / current_setting('tvdb.budget_throttle_rpm')::integer)
                          ELSE interval '1 minute' END;
BEGIN
    UPDATE upload_pipeline.upload_jobs u
    SET lease_owner = NULL, lease_expires_at = NULL,
        next_poll_at = clock_timestamp() + wait, next_retry_at = clock_timestamp() + wait
    WHERE u.job_id = job AND u.lease_owner = owner;
    INSERT INTO upload_pipeline.events (job_id, document_id, type, severity, code, payload, correlation_id)
    SELECT u.job_id, u.document_id, 'stage_error', 'warn',
           CASE WHEN reason LIKE 'throttled:%' THEN 'budget_throttled' ELSE 'budget_exhausted' END,
           jsonb_build_object('error', reason), u.correlation_id
    FROM upload_pipeline.upload_jobs u
    WHERE u.job_id = job
      AND coalesce((SELECT e.code FROM upload_pipeline.events e WHERE e.job_id = job ORDER BY e.seq DESC LIMIT 1), '')
          <> CASE WHEN reason LIKE 'throttled:%' THEN 'budget_throttled' ELSE 'budget_exhausted' END;
END
$$;

COMMENT ON FUNCTION tvdb._period_start(text, timestamptz) IS 'internal: where a budget period (UTC day or month) begins';
COMMENT ON FUNCTION tvdb._budget_used(text, text) IS 'internal: a budget''s spent and reserved USD in its current period';
COMMENT ON FUNCTION tvdb._budget_refusal(text, numeric) IS 'internal (worker): why a request of this estimate may not go, or NULL';
COMMENT ON FUNCTION tvdb._budget_wait(uuid, text, text) IS 'internal (worker): a job whose request the budget refused waits';
REVOKE ALL ON FUNCTION tvdb.set_budget(text, text, numeric) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._budget_refusal(text, numeric) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._budget_wait(uuid, text, text) FROM PUBLIC;
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
        FROM upload_pipeline.upload_jobs u WHERE u.job_id = job;
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
              AND c.job_id = jobs[ix.i];
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
-- What each document and job cost, by service and operation.  A batched
-- embeddings request is shared by its jobs in proportion to their
-- estimated tokens in it (usage.job_tokens; evenly when not known).

CREATE VIEW tvdb.job_costs AS
    WITH shares AS (
        SELECT u.job_id, u.service, u.operation, u.model, u.cost_usd, u.reserved_usd, 1.0 AS share
        FROM upload_pipeline.usage u
        WHERE u.job_id IS NOT NULL
        UNION ALL
        SELECT x.job_id, u.service, u.operation, u.model, u.cost_usd, u.reserved_usd,
               coalesce(x.tokens::numeric / nullif(sum(x.tokens) OVER (PARTITION BY u.usage_id), 0),
                        1.0 / cardinality(u.job_ids))
        FROM upload_pipeline.usage u,
             LATERAL unnest(u.job_ids, u.job_tokens) AS x(job_id, tokens)
        WHERE u.job_id IS NULL AND x.job_id IS NOT NULL
    )
    SELECT j.document_id, d.filename, s.job_id, s.service, s.operation, s.model,
           count(*) AS requests,
           round(sum(s.cost_usd * s.share), 10) AS cost_usd,
           round(sum(s.reserved_usd * s.share), 10) AS reserved_usd
    FROM shares s
    JOIN upload_pipeline.upload_jobs j ON j.job_id = s.job_id
    JOIN upload_pipeline.documents d ON d.document_id = j.document_id
    GROUP BY j.document_id, d.filename, s.job_id, s.service, s.operation, s.model;
COMMENT ON VIEW tvdb.job_costs IS
    'each job''s cost by service, operation and model; a batched request shared by its jobs'' tokens in it';

CREATE VIEW tvdb.document_costs AS
    SELECT c.document_id, c.filename,
           (SELECT count(*) FROM upload_pipeline.upload_jobs j WHERE j.document_id = c.document_id) AS jobs,
           coalesce(sum(c.cost_usd) FILTER (WHERE c.service = 'llamaparse'), 0) AS llamaparse_usd,
           coalesce(sum(c.cost_usd) FILTER (WHERE c.service = 'openai'), 0) AS openai_usd,
           sum(c.cost_usd) AS cost_usd, sum(c.reserved_usd) AS reserved_usd,
           jsonb_object_agg(c.service || '/' || c.operation, c.cost_usd) AS by_operation
    FROM (SELECT document_id, filename, service, operation, sum(cost_usd) AS cost_usd,
                 sum(reserved_usd) AS reserved_usd
          FROM tvdb.job_costs GROUP BY 1, 2, 3, 4) c
    GROUP BY c.document_id, c.filename;
COMMENT ON VIEW tvdb.document_costs IS
    'each document''s cost over all its jobs: by service, in all, still reserved, and by service/operation';

CREATE VIEW tvdb.cost_summary AS
    SELECT (date_trunc('day', u.ts AT TIME ZONE 'UTC'))::date AS day, u.service, u.operation, u.model,
           count(*) AS requests, sum(u.cost_usd) AS cost_usd, sum(u.reserved_usd) AS reserved_usd,
           sum(u.pages) AS pages, sum(u.prompt_tokens) AS prompt_tokens
    FROM upload_pipeline.usage u
    GROUP BY 1, 2, 3, 4;
COMMENT ON VIEW tvdb.cost_summary IS 'cost by UTC day, service, operation and model';
-- Hybrid mode and reprocessing.  In tvdb.service_mode = 'hybrid' a stage
-- whose service cannot be used (no key, circuit blocked, or open and cooling
-- down) is done by the built-in mock, and what it makes says so (parse_job_id
-- mock-…, chunks' model 'mock').  A document can be sent through again from
-- a stage; hybrid mode does that by itself for mock results once the real
-- service can be used.  Vectors are served one model at a time.

CREATE INDEX document_chunks_mock_idx ON upload_pipeline.document_chunks (job_id) WHERE model = 'mock';
CREATE INDEX upload_jobs_mock_parsed_idx ON upload_pipeline.upload_jobs (job_id)
    WHERE parse_job_id LIKE 'mock-%' AND status = 'complete';

-- Can requests go to the service now or soon (src/stages/answers.c)?
CREATE FUNCTION tvdb._service_usable(service text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'tvdb_service_usable_sql' LANGUAGE C VOLATILE STRICT;

-- Send a document through the pipeline again from a stage: a new job (the
-- old one keeps its history), from parse (a new parse, never a reused one),
-- or from chunk or embed (the last parse's markdown, re-chunked the same way,
-- then embedded with the model in use).  Returns the new job.
CREATE FUNCTION tvdb.reprocess(document uuid, from_stage text DEFAULT 'embed') RETURNS uuid
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
    IF last.status NOT IN ('complete', 'failed_parse', 'failed_chunking', 'failed_embedding') THEN
        RAISE EXCEPTION 'the document is still being processed'
            USING ERRCODE = 'object_in_use',
                  DETAIL = format('Document %s: its job %s is %s.', document, last.job_id, last.status),
                  HINT = 'Wait until the job is complete or failed.';
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
COMMENT ON FUNCTION tvdb.reprocess(uuid, text) IS
    'send a finished document through the pipeline again, from parse, chunk or embed, in a new job; returns it';

-- Hybrid mode: the latest jobs the mock parsed or embedded, once the real
-- service can be used, go through again (from parse, or from embed).
CREATE FUNCTION tvdb._reprocess_mock(max integer) RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d record;
    n integer := 0;
    parse_ok boolean;
    embed_ok boolean;
BEGIN
    IF current_setting('tvdb.service_mode') <> 'hybrid' THEN
        RETURN 0;
    END IF;
    parse_ok := tvdb._service_usable('llamaparse');
    embed_ok := tvdb._service_usable('openai');
    FOR d IN
        SELECT j.document_id,
               CASE WHEN parse_ok AND j.parse_job_id LIKE 'mock-%' THEN 'parse' ELSE 'embed' END AS from_stage
        FROM upload_pipeline.upload_jobs j
        WHERE j.status = 'complete'
          AND ((parse_ok AND j.parse_job_id LIKE 'mock-%')
               OR (embed_ok AND j.job_id IN (SELECT c.job_id FROM upload_pipeline.document_chunks c WHERE c.model = 'mock')))
          AND NOT EXISTS (SELECT 1 FROM upload_pipeline.upload_jobs k
                          WHERE k.document_id = j.document_id AND k.created_at > j.created_at)
        LIMIT max
        FOR UPDATE OF j SKIP LOCKED
    LOOP
        PERFORM tvdb.reprocess(d.document_id, d.from_stage);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- Vectors of one model at a time: the model in use (mock in mock mode).
-- Searching across models would compare vectors of different spaces.
CREATE FUNCTION tvdb.embeddings_of(model text)
    RETURNS TABLE (document_id uuid, job_id uuid, chunk_index integer, content text,
                   heading_path text[], embedding real[], model text)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.document_id, c.job_id, c.chunk_index, c.content, c.heading_path, c.embedding, c.model
    FROM upload_pipeline.document_chunks c
    WHERE c.embedding IS NOT NULL AND c.model = embeddings_of.model
$$;
COMMENT ON FUNCTION tvdb.embeddings_of(text) IS 'the stored vectors of one model, and only those';

CREATE VIEW tvdb.embeddings AS
    SELECT * FROM tvdb.embeddings_of(CASE WHEN current_setting('tvdb.service_mode') = 'mock' THEN 'mock'
                                          ELSE current_setting('tvdb.embedding_model') END);
COMMENT ON VIEW tvdb.embeddings IS
    'the vectors of the model in use (mock in mock mode): never two models'' vectors side by side';

COMMENT ON FUNCTION tvdb._service_usable(text) IS 'internal: can requests go to the service now or soon (key, circuit)';
COMMENT ON FUNCTION tvdb._reprocess_mock(integer) IS 'internal (worker): hybrid mode redoes what the mock did once the service can be used';
REVOKE ALL ON FUNCTION tvdb._service_usable(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._reprocess_mock(integer) FROM PUBLIC;
-- Never paying twice: the same bytes are not parsed again, and the same
-- text is not embedded again with the same model and dimensions.  Each
-- reuse is a ledger row at no cost, with what it saved.

CREATE INDEX documents_sha256_idx ON upload_pipeline.documents (sha256);
CREATE INDEX document_chunks_sha256_idx ON upload_pipeline.document_chunks (sha256)
    WHERE embedding IS NOT NULL;

-- A finished LlamaParse parse of the same bytes, in the mode or tier asked
-- for now, whose markdown is still stored: the job to reuse, or NULL.  It
-- runs for every claimed upload, so the usual answer (no other document has
-- these bytes) is found first and cheaply.
CREATE FUNCTION tvdb._parse_source(job uuid) RETURNS uuid
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    others uuid[];
    mode text;
    source uuid;
BEGIN
    IF NOT current_setting('tvdb.reuse_parses')::boolean THEN
        RETURN NULL;
    END IF;
    SELECT array_agg(sd.document_id) INTO others
    FROM upload_pipeline.upload_jobs j
    JOIN upload_pipeline.documents d ON d.document_id = j.document_id
    JOIN upload_pipeline.documents sd ON sd.sha256 = d.sha256 AND sd.document_id <> d.document_id
    WHERE j.job_id = _parse_source.job;
    IF others IS NULL THEN
        RETURN NULL;
    END IF;
    mode := tvdb._parse_mode();
    SELECT s.job_id INTO source
    FROM upload_pipeline.upload_jobs s
    JOIN upload_pipeline.usage x ON x.job_id = s.job_id
    WHERE s.document_id = ANY(others)
      AND x.service = 'llamaparse' AND x.operation IN ('result', 'webhook_push') AND x.error IS NULL
      AND coalesce(x.http_status, 200) = 200 AND x.model = mode
      AND EXISTS (SELECT 1 FROM upload_pipeline.blobs b WHERE b.path = s.parsed_path)
    ORDER BY x.ts DESC
    LIMIT 1;
    RETURN source;
END
$$;

-- Parse a claimed job by reusing source's markdown: uploaded -> parse_queued
-- -> parsed, as the built-in parser does, with a parse_reused ledger row.
CREATE FUNCTION tvdb._parse_reused(job uuid, owner text, source uuid) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    src record;
BEGIN
    SELECT convert_from(b.content, 'UTF8') AS md, x.pages, x.cost_usd, x.model INTO src
    FROM upload_pipeline.upload_jobs s
    JOIN upload_pipeline.blobs b ON b.path = s.parsed_path
    JOIN upload_pipeline.usage x ON x.job_id = s.job_id AND x.service = 'llamaparse'
         AND x.operation IN ('result', 'webhook_push') AND x.error IS NULL
    WHERE s.job_id = source
    ORDER BY x.ts DESC LIMIT 1;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE upload_pipeline.upload_jobs u SET parse_job_id = 'reuse-' || job
    WHERE u.job_id = job AND u.lease_owner = owner AND u.status = 'uploaded';
    IF NOT tvdb._advance(job, owner, 'uploaded', 'parse_queued',
                         jsonb_build_object('parse_job_id', 'reuse-' || job), true) THEN
        RETURN false;
    END IF;
    INSERT INTO upload_pipeline.usage (service, operation, job_id, pages, cost_usd, saved_usd, model)
    VALUES ('llamaparse', 'parse_reused', job, src.pages, 0, src.cost_usd, src.model);
    PERFORM tvdb._store_parsed(job, owner, src.md,
                               jsonb_build_object('via', 'reuse', 'from_job', source, 'pages', src.pages));
    RETURN true;
END
$$;

-- Vectors for the unembedded chunks of these jobs from chunks of the same
-- text embedded before with this model and dimensions; how many.
CREATE FUNCTION tvdb._embeddings_from_cache(jobs uuid[], model text, dims integer) RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
    tokens bigint;
    served uuid[];
BEGIN
    IF NOT current_setting('tvdb.embedding_cache')::boolean THEN
        RETURN 0;
    END IF;
    WITH wanted AS (
        SELECT DISTINCT c.sha256 FROM upload_pipeline.document_chunks c
        WHERE c.job_id = ANY(jobs) AND c.embedding IS NULL
    ), cached AS (
        SELECT DISTINCT ON (x.sha256) x.sha256, x.embedding
        FROM upload_pipeline.document_chunks x JOIN wanted w ON w.sha256 = x.sha256
        WHERE x.embedding IS NOT NULL AND x.model = _embeddings_from_cache.model
          AND cardinality(x.embedding) = dims
    ), filled AS (
        UPDATE upload_pipeline.document_chunks c
        SET embedding = k.embedding, model = _embeddings_from_cache.model
        FROM cached k
        WHERE c.job_id = ANY(jobs) AND c.embedding IS NULL AND c.sha256 = k.sha256
        RETURNING c.job_id, c.token_estimate
    )
    SELECT count(*), sum(token_estimate), array_agg(DISTINCT job_id) INTO n, tokens, served FROM filled;
    IF n > 0 THEN
        INSERT INTO upload_pipeline.usage (service, operation, job_ids, inputs, cost_usd, saved_usd, model)
        VALUES ('openai', 'embeddings_cached', served, n, 0,
                coalesce(tvdb._openai_cost(least(tokens, 2147483647)::integer, model), 0), model);
    END IF;
    RETURN n;
END
$$;

COMMENT ON FUNCTION tvdb._parse_source(uuid) IS 'internal (worker): a finished parse of the same bytes this job may reuse';
COMMENT ON FUNCTION tvdb._parse_reused(uuid, text, uuid) IS 'internal (worker): parse a job with another''s markdown';
COMMENT ON FUNCTION tvdb._embeddings_from_cache(uuid[], text, integer) IS 'internal (worker): vectors for chunks whose text was embedded before';
REVOKE ALL ON FUNCTION tvdb._parse_source(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._parse_reused(uuid, text, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._embeddings_from_cache(uuid[], text, integer) FROM PUBLIC;
-- Circuit breakers and rate-limit buckets, per service, in shared memory
-- (src/circuit.c): what the workers see before every request.
CREATE FUNCTION tvdb._circuits(OUT service text, OUT state text, OUT since timestamptz, OUT failures integer,
                               OUT last_error text, OUT next_probe timestamptz, OUT paused_until timestamptz,
                               OUT requests_available double precision, OUT tokens_available double precision)
    RETURNS SETOF record AS 'MODULE_PATHNAME', 'tvdb_circuits_sql' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tvdb._circuits() IS 'internal: the circuits in shared memory';

CREATE VIEW tvdb.circuits AS SELECT * FROM tvdb._circuits();
COMMENT ON VIEW tvdb.circuits IS
    'each service''s circuit: closed, open (until next_probe), half_open (a probe is out) or blocked (a refused key or quota: until a reload or tvdb.reset_circuit), and its rate-limit buckets';

CREATE FUNCTION tvdb.reset_circuit(service text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'tvdb_reset_circuit_sql' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION tvdb.reset_circuit(text) IS
    'close a service''s circuit now (llamaparse or openai), e.g. after fixing a key; true if it was not closed';
REVOKE ALL ON FUNCTION tvdb.reset_circuit(text) FROM PUBLIC;
-- Operators read it; grant EXECUTE on tvdb._circuits() to a monitoring role.
REVOKE ALL ON FUNCTION tvdb._circuits() FROM PUBLIC;
-- Alerts: what an operator must hear about, in a table and on NOTIFY
-- tvdb_alerts.  Alerts of one kind for one service coalesce: while the last
-- one is younger than tvdb.alert_window, a new one adds to its count
-- instead of writing a row, so a storm of failing documents writes a
-- handful of rows, not one per document.

CREATE TABLE upload_pipeline.alerts (
    alert_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    first_at  timestamptz NOT NULL DEFAULT now(),
    last_at   timestamptz NOT NULL DEFAULT now(),
    kind      text NOT NULL CHECK (kind <> ''),
    severity  text NOT NULL CHECK (severity IN ('info', 'warn', 'error', 'critical')),
    service   text,
    job_id    uuid,
    message   text NOT NULL,
    details   jsonb NOT NULL DEFAULT '{}',
    count     integer NOT NULL DEFAULT 1 CHECK (count >= 1)
);
CREATE INDEX alerts_kind_idx ON upload_pipeline.alerts (kind, service, last_at DESC);
COMMENT ON TABLE upload_pipeline.alerts IS
    'alerts for operators (also sent on NOTIFY tvdb_alerts); repeats of a kind for a service within tvdb.alert_window add to count';
COMMENT ON COLUMN upload_pipeline.alerts.job_id IS 'the first job the alert was about, if any';
COMMENT ON COLUMN upload_pipeline.alerts.message IS 'the latest occurrence''s message';
SELECT pg_catalog.pg_extension_config_dump('upload_pipeline.alerts', '');

-- Raise an alert: coalesced into the last one of its kind and service
-- while that is recent, else a new row.  NOTIFY tvdb_alerts (on commit)
-- carries the row as JSON when it is new, and again when its count reaches
-- 10, 100, 1000, ... .  The alert's id.
CREATE FUNCTION tvdb._alert(kind text, severity text, service text, job uuid, message text,
                            details jsonb DEFAULT '{}')
    RETURNS bigint LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a upload_pipeline.alerts;
BEGIN
    -- one writer per kind and service at a time, so concurrent alerts coalesce too
    PERFORM pg_advisory_xact_lock(hashtext('tvdb alert'), hashtext(kind || '/' || coalesce(service, '')));
    UPDATE upload_pipeline.alerts x
    SET count = x.count + 1, last_at = clock_timestamp(), message = _alert.message,
        details = _alert.details, severity = _alert.severity
    WHERE x.alert_id = (SELECT y.alert_id FROM upload_pipeline.alerts y
                        WHERE y.kind = _alert.kind AND y.service IS NOT DISTINCT FROM _alert.service
                          AND y.last_at > clock_timestamp() - current_setting('tvdb.alert_window')::interval
                        ORDER BY y.last_at DESC LIMIT 1)
    RETURNING * INTO a;
    IF NOT FOUND THEN
        INSERT INTO upload_pipeline.alerts (first_at, last_at, kind, severity, service, job_id, message, details)
        VALUES (clock_timestamp(), clock_timestamp(), kind, severity, service, job, message, coalesce(details, '{}'))
        RETURNING * INTO a;
    END IF;
    IF a.count::text ~ '^10*$' THEN
        PERFORM pg_notify('tvdb_alerts', jsonb_build_object(
            'alert_id', a.alert_id, 'kind', a.kind, 'severity', a.severity, 'service', a.service,
            'job_id', a.job_id, 'message', a.message, 'count', a.count, 'details', a.details)::text);
    END IF;
    RETURN a.alert_id;
END
$$;
COMMENT ON FUNCTION tvdb._alert(text, text, text, uuid, text, jsonb) IS 'internal: raise (or coalesce) an alert and notify tvdb_alerts';
REVOKE ALL ON FUNCTION tvdb._alert(text, text, text, uuid, text, jsonb) FROM PUBLIC;

-- A job that failed, by any path: an alert (retries_exhausted when it gave
-- up after its tries, else job_failed), naming the service of its stage.
-- SECURITY DEFINER: an application moving a job by hand writes no alert row itself.
CREATE FUNCTION tvdb._alert_job_failed() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM tvdb._alert(
        CASE WHEN NEW.failure_class = 'retries_exhausted' THEN 'retries_exhausted' ELSE 'job_failed' END,
        'error',
        CASE NEW.status WHEN 'failed_embedding' THEN 'openai'
                        WHEN 'failed_parse' THEN 'llamaparse' END,
        NEW.job_id,
        format('job %s %s: %s', NEW.job_id, NEW.status, coalesce(NEW.last_error, 'no reason given')),
        jsonb_strip_nulls(jsonb_build_object('status', NEW.status, 'class', NEW.failure_class,
                                             'attempts', NEW.attempts)));
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION tvdb._alert_job_failed() IS 'internal (trigger): alert on a job that failed';
REVOKE ALL ON FUNCTION tvdb._alert_job_failed() FROM PUBLIC;

DO $$
BEGIN
    EXECUTE format('CREATE TRIGGER upload_jobs_alert_failed AFTER UPDATE OF status ON upload_pipeline.upload_jobs '
                   'FOR EACH ROW WHEN (NEW.status IN (%s) AND OLD.status IS DISTINCT FROM NEW.status) '
                   'EXECUTE FUNCTION tvdb._alert_job_failed()', tvdb._status_list(false, true));
END
$$;

CREATE VIEW tvdb.alerts AS
    SELECT alert_id, kind, severity, service, count, message, first_at, last_at, job_id, details
    FROM upload_pipeline.alerts ORDER BY last_at DESC;
COMMENT ON VIEW tvdb.alerts IS 'alerts, newest first';
-- Scheduled maintenance: plain SQL functions that pg_cron runs every minute
-- (tvdb.schedule_maintenance()) and an operator may call by hand.
--
--  tvdb.retry_failed(): a job that failed with class retries_exhausted
--    (its service kept failing) goes back through its retry edge after a
--    delay that doubles with each retry (tvdb.job_retry_delay), at most
--    tvdb.max_job_retries times; after that it is a dead letter.
--  tvdb.reap_stuck(): gives back leases that lapsed (a worker died) and
--    alerts about jobs in one working status for longer than
--    tvdb.stuck_after.

-- The retry edge out of each failure status.
CREATE FUNCTION tvdb._retry_target(failed_status text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE failed_status WHEN 'failed_parse' THEN 'uploaded'
                              WHEN 'failed_chunking' THEN 'parsed'
                              WHEN 'failed_embedding' THEN 'embedding_queued' END
$$;
COMMENT ON FUNCTION tvdb._retry_target(text) IS 'internal: where tvdb.retry_failed() sends a job that failed';

CREATE FUNCTION tvdb.retry_failed(max_jobs integer DEFAULT 1000) RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j record;
    n integer := 0;
BEGIN
    FOR j IN
        SELECT u.job_id, u.status FROM upload_pipeline.upload_jobs u
        WHERE u.failure_class = 'retries_exhausted'
          AND u.attempts <= current_setting('tvdb.max_job_retries')::integer
          AND u.status_changed_at <= now() - current_setting('tvdb.job_retry_delay')::interval * 2 ^ (u.attempts - 1)
        ORDER BY u.status_changed_at
        LIMIT max_jobs
        FOR UPDATE SKIP LOCKED
    LOOP
        IF tvdb.transition(j.job_id, tvdb._retry_target(j.status),
                           jsonb_build_object('via', 'tvdb.retry_failed()'), j.status) THEN
            n := n + 1;
        END IF;
    END LOOP;
    IF n > 0 THEN
        PERFORM tvdb._wake_workers();
    END IF;
    RETURN n;
END
$$;
COMMENT ON FUNCTION tvdb.retry_failed(integer) IS
    'retry jobs that failed with retries_exhausted, after tvdb.job_retry_delay doubling per retry, at most tvdb.max_job_retries times; how many were retried';

CREATE FUNCTION tvdb.reap_stuck(OUT leases_reaped integer, OUT stuck_jobs integer)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    oldest timestamptz;
BEGIN
    WITH reaped AS (
        UPDATE upload_pipeline.upload_jobs u SET lease_owner = NULL, lease_expires_at = NULL
        WHERE u.lease_expires_at < now()
        RETURNING u.job_id)
    SELECT count(*) INTO leases_reaped FROM reaped;
    PERFORM tvdb._requests_lost();
    IF leases_reaped > 0 THEN
        PERFORM tvdb._alert('lease_reaped', 'warn', NULL, NULL,
                            format('%s lapsed leases given back (a worker stopped while it held them)', leases_reaped),
                            jsonb_build_object('jobs', leases_reaped));
        PERFORM tvdb._wake_workers();
    END IF;
    EXECUTE format($q$
        SELECT count(*), min(status_changed_at) FROM upload_pipeline.upload_jobs
        WHERE status IN (%s) AND status_changed_at < now() - current_setting('tvdb.stuck_after')::interval
        $q$, tvdb._status_list(true, false))
    INTO stuck_jobs, oldest;
    IF stuck_jobs > 0 THEN
        PERFORM tvdb._alert('stuck_jobs', 'warn', NULL, NULL,
                            format('%s jobs have been in one working status for longer than tvdb.stuck_after (%s); the oldest since %s',
                                   stuck_jobs, current_setting('tvdb.stuck_after'), oldest),
                            jsonb_build_object('jobs', stuck_jobs, 'oldest', oldest));
    END IF;
END
$$;
COMMENT ON FUNCTION tvdb.reap_stuck() IS
    'give back lapsed leases and alert about jobs stuck in a working status longer than tvdb.stuck_after';

-- Jobs that gave up: failed for good, or out of retries.
CREATE VIEW tvdb.dead_letters AS
    SELECT j.job_id, j.document_id, d.filename, j.status, j.failure_class, j.attempts, j.last_error,
           j.status_changed_at AS failed_at,
           (SELECT jsonb_agg(jsonb_build_object('at', e.ts, 'status', e.to_status, 'error', e.payload ->> 'error')
                             ORDER BY e.seq)
            FROM upload_pipeline.events e
            WHERE e.job_id = j.job_id AND e.payload ? 'error') AS errors
    FROM upload_pipeline.upload_jobs j JOIN upload_pipeline.documents d USING (document_id)
    WHERE j.status IN ('failed_parse', 'failed_chunking', 'failed_embedding')
      AND (j.failure_class IS DISTINCT FROM 'retries_exhausted'
           OR j.attempts > current_setting('tvdb.max_job_retries')::integer);
COMMENT ON VIEW tvdb.dead_letters IS
    'failed jobs that tvdb.retry_failed() will not retry: failed for good, or out of retries; with every error they met';

-- pg_cron: two jobs, every minute, in this database.  pg_cron lives in one
-- database (cron.database_name); from there it runs jobs in any.
CREATE FUNCTION tvdb.schedule_maintenance() RETURNS SETOF bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    db text := current_database();
    name text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in database "%"', db
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('pg_cron lives in the database named by cron.database_name (%s).',
                                  coalesce(current_setting('cron.database_name', true), 'not set')),
                  HINT = format('In that database run: SELECT cron.schedule_in_database(''tvdb-retry-failed-%1$s'', ''* * * * *'', ''SELECT tvdb.retry_failed()'', %2$L); '
                                'SELECT cron.schedule_in_database(''tvdb-reap-stuck-%1$s'', ''* * * * *'', ''SELECT tvdb.reap_stuck()'', %2$L);',
                                db, db);
    END IF;
    -- pg_cron keeps the host and port a job was scheduled with (cron.host,
    -- port): a job from before a change of either would never connect again.
    FOR name IN EXECUTE
        'SELECT jobname FROM cron.job WHERE jobname IN ($1, $2)
            AND (nodename IS DISTINCT FROM $3 OR nodeport IS DISTINCT FROM $4)'
        USING 'tvdb-retry-failed-' || db, 'tvdb-reap-stuck-' || db,
              current_setting('cron.host', true), current_setting('port')::integer
    LOOP
        EXECUTE 'SELECT cron.unschedule($1)' USING name;
    END LOOP;
    RETURN QUERY EXECUTE
        'SELECT cron.schedule_in_database($1, ''* * * * *'', ''SELECT tvdb.retry_failed()'', $3)
         UNION ALL
         SELECT cron.schedule_in_database($2, ''* * * * *'', ''SELECT tvdb.reap_stuck()'', $3)'
        USING 'tvdb-retry-failed-' || db, 'tvdb-reap-stuck-' || db, db;
END
$$;
COMMENT ON FUNCTION tvdb.schedule_maintenance() IS
    'schedule tvdb.retry_failed() and tvdb.reap_stuck() every minute with pg_cron (idempotent); call it in pg_cron''s database';

CREATE FUNCTION tvdb.unschedule_maintenance() RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer := 0;
    name text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RETURN 0;
    END IF;
    FOR name IN EXECUTE 'SELECT jobname FROM cron.job WHERE jobname IN ($1, $2)'
        USING 'tvdb-retry-failed-' || current_database(), 'tvdb-reap-stuck-' || current_database()
    LOOP
        EXECUTE 'SELECT cron.unschedule($1)' USING name;
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION tvdb.unschedule_maintenance() IS 'remove the pg_cron jobs tvdb.schedule_maintenance() made; how many';

REVOKE ALL ON FUNCTION tvdb.retry_failed(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb.reap_stuck() FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb.schedule_maintenance() FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb.unschedule_maintenance() FROM PUBLIC;
-- Say so at once when no background worker will process documents here;
-- otherwise they would wait in 'uploaded' with only the server log to tell.
-- A WARNING, as CREATE EXTENSION hides the NOTICEs of its script.
DO $$
BEGIN
    IF current_setting('shared_preload_libraries') !~ '(^|[ ,])"?tvdb"?($|[ ,])' THEN
        RAISE WARNING 'tvdb is not in shared_preload_libraries: no background worker will process documents'
            USING HINT = 'Add tvdb to shared_preload_libraries and restart PostgreSQL.';
    ELSIF current_setting('tvdb.workers')::integer = 0 THEN
        RAISE WARNING 'tvdb.workers is 0: no background worker will process documents'
            USING HINT = 'Set tvdb.workers (1 or more) and restart PostgreSQL.';
    ELSIF current_setting('tvdb.database') <> current_database() THEN
        RAISE WARNING 'tvdb''s workers serve database "%", not "%": documents uploaded here will wait',
                     current_setting('tvdb.database'), current_database()
            USING HINT = format('Set tvdb.database = %L and restart PostgreSQL, or use tvdb in database %I.',
                                current_database(), current_setting('tvdb.database'));
    END IF;
END
$$;
