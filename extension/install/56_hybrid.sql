-- Hybrid mode and reprocessing.  In tvdb.service_mode = 'hybrid' a stage
-- whose service cannot be used (no key, circuit blocked, or open and cooling
-- down) is done by the built-in mock, and what it makes says so (parse_job_id
-- mock-…, chunks' model 'mock').  A document can be sent through again from
-- a stage; hybrid mode does that by itself for mock results once the real
-- service can be used.  Vectors are served one model at a time.

CREATE INDEX document_chunks_mock_idx ON upload_pipeline.document_chunks (job_id) WHERE model = 'mock';
-- (Not on the status: no index of upload_jobs is, so that a status change
-- can be a HOT update.)
CREATE INDEX upload_jobs_mock_parsed_idx ON upload_pipeline.upload_jobs (job_id)
    WHERE parse_job_id LIKE 'mock-%';

-- Can requests go to the service now or soon (src/stages/answers.c)?
CREATE FUNCTION tvdb._service_usable(service text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'tvdb_service_usable_sql' LANGUAGE C VOLATILE STRICT;

-- Send a document whose latest job is complete, failed or cancelled through
-- the pipeline again from a stage: a new job (the old one keeps its
-- history), from parse (a new parse, never a reused one), or from chunk or
-- embed (the last parse's markdown, re-chunked the same way, then embedded
-- with the model in use).  Returns the new job.
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
    IF last.status NOT IN ('complete', 'failed_parse', 'failed_chunking', 'failed_embedding', 'cancelled') THEN
        RAISE EXCEPTION 'the document is still being processed'
            USING ERRCODE = 'object_in_use',
                  DETAIL = format('Document %s: its job %s is %s.', document, last.job_id, last.status),
                  HINT = 'Wait until the job is complete or failed, or cancel it with tvdb.cancel().';
    END IF;
    IF from_stage <> 'parse' THEN
        SELECT b.content INTO md FROM upload_pipeline.blobs b
        WHERE b.document_id = last.document_id AND b.path = last.parsed_path;
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
    JOIN upload_pipeline.documents d USING (document_id)
    WHERE c.embedding IS NOT NULL AND c.model = embeddings_of.model AND tvdb._may_see(d.owner)
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
