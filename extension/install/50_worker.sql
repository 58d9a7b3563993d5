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
-- keeps workers off each other's rows.  The due jobs are read from the
-- queue of open jobs (11_queue.sql) in due order, so the scan stops after
-- n of them however long the history.  In C (src/backend/advance.c), under
-- the calling statement's snapshot: joined with other tables, it returns
-- every job it leases.
-- ROWS: a claim returns a batch, not the default thousand, so that the
-- jobs, documents and blobs joined to it are read by key.
CREATE FUNCTION tvdb._claim(status text, owner text, n integer, lease_seconds integer)
    RETURNS SETOF uuid AS 'MODULE_PATHNAME', 'tvdb_claim' LANGUAGE C VOLATILE ROWS 16;

-- The statements run for every job that moves (src/backend/hot.c), each
-- prepared once with its generic plan forced: listed so that a test can
-- EXPLAIN the very text the C code runs.
CREATE FUNCTION tvdb._hot_statements(OUT name text, OUT sql text, OUT argtypes regtype[])
    RETURNS SETOF record AS 'MODULE_PATHNAME', 'tvdb_hot_statements' LANGUAGE C IMMUTABLE;
REVOKE ALL ON FUNCTION tvdb._hot_statements() FROM PUBLIC;
COMMENT ON FUNCTION tvdb._hot_statements() IS 'internal: the statements every moving job costs, planned once';

-- Milliseconds until the worker has something to do (0: now; NULL: nothing):
-- the first entry of each working status in the queue's due index.
CREATE FUNCTION tvdb._next_due_ms() RETURNS double precision
    LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    -- NULL when nothing is queued: greatest() skips a NULL, so it is not asked
    RETURN (SELECT CASE WHEN min(d.due) IS NOT NULL
                        THEN greatest(0, extract(epoch FROM min(d.due) - clock_timestamp()) * 1000) END
            FROM tvdb.statuses s,
                 LATERAL (SELECT q.due_at AS due FROM upload_pipeline.job_queue q
                          WHERE q.status = s.status ORDER BY q.due_at LIMIT 1) d
            WHERE NOT s.is_terminal AND NOT s.is_failure);
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

-- Move leased jobs along a path, path[1] -> path[2] -> ... in one UPDATE
-- (the triggers check each edge and write each event): the hops that wait
-- for nothing.  details[i] goes in jobs[i]'s first event; the lease is
-- dropped.  The ids of the jobs that moved.
CREATE FUNCTION tvdb._advance_path(jobs uuid[], owner text, path text[], details jsonb[] DEFAULT NULL)
    RETURNS uuid[] AS 'MODULE_PATHNAME', 'tvdb_advance_path' LANGUAGE C;

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

-- parse_queued -> parsed for the jobs still leased to owner, with their
-- stored markdown's path and hash in the same UPDATE (src/backend/advance.c).
CREATE FUNCTION tvdb._advance_parsed(jobs uuid[], owner text, paths text[], sha256s text[],
                                     details jsonb[] DEFAULT NULL)
    RETURNS uuid[] AS 'MODULE_PATHNAME', 'tvdb_advance_parsed' LANGUAGE C;

-- Store parsed markdown and move parse_queued -> parsed, for the jobs of a
-- batch still leased to owner in parse_queued (a webhook may have parsed
-- the others meanwhile): markdowns[i] and details[i] go with jobs[i].  The
-- ids of the jobs moved.
CREATE FUNCTION tvdb._store_parsed_all(jobs uuid[], owner text, markdowns text[], details jsonb[])
    RETURNS uuid[] LANGUAGE plpgsql
AS $$
DECLARE
    ours uuid[];
    docs uuid[];
    paths text[];
    mds bytea[];
    shas text[];
    ds jsonb[];
BEGIN
    SELECT array_agg(v.job ORDER BY v.i), array_agg(u.document_id ORDER BY v.i),
           array_agg(tvdb._parsed_path(u.document_id, v.job) ORDER BY v.i),
           array_agg(v.md ORDER BY v.i), array_agg(encode(sha256(v.md), 'hex') ORDER BY v.i),
           array_agg(v.detail || jsonb_build_object('content_length', octet_length(v.md)) ORDER BY v.i)
    INTO ours, docs, paths, mds, shas, ds
    FROM (SELECT w.job, w.i, w.detail, convert_to(w.markdown, 'UTF8') AS md
          FROM unnest(jobs, markdowns, details) WITH ORDINALITY AS w(job, markdown, detail, i)) v
    JOIN (SELECT u.job_id, u.document_id FROM upload_pipeline.upload_jobs u
          WHERE u.job_id = ANY(jobs) AND u.lease_owner = owner AND u.status = 'parse_queued'
          FOR UPDATE) u ON u.job_id = v.job;
    IF ours IS NULL THEN
        RETURN '{}';
    END IF;
    INSERT INTO upload_pipeline.blobs (document_id, path, content, content_type, sha256, size_bytes)
    SELECT v.doc, v.path, v.md, 'text/markdown', v.sha, octet_length(v.md)
    FROM unnest(docs, paths, mds, shas) AS v(doc, path, md, sha)
    ON CONFLICT (document_id, path) DO UPDATE
        SET content = EXCLUDED.content, sha256 = EXCLUDED.sha256,
            size_bytes = EXCLUDED.size_bytes, created_at = now();
    RETURN tvdb._advance_parsed(ours, owner, paths, shas, ds);
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
-- embedding_in_progress -> embeddings_stored -> complete, the whole batch
-- in one statement.  The number of jobs completed.
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
    RETURN cardinality(tvdb._advance_path(ready, owner,
                                          ARRAY['embedding_in_progress', 'embeddings_stored', 'complete'], details));
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
REVOKE ALL ON FUNCTION tvdb._advance_path(uuid[], text, text[], jsonb[]) FROM PUBLIC;
COMMENT ON FUNCTION tvdb._advance_path(uuid[], text, text[], jsonb[]) IS
    'internal (worker): move leased jobs along a path of statuses in one UPDATE, an event per edge';
REVOKE ALL ON FUNCTION tvdb._advance_parsed(uuid[], text, text[], text[], jsonb[]) FROM PUBLIC;
COMMENT ON FUNCTION tvdb._advance_parsed(uuid[], text, text[], text[], jsonb[]) IS
    'internal (worker): move leased jobs from parse_queued to parsed with their markdown''s path and hash, in one UPDATE';
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
