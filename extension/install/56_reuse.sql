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
      AND EXISTS (SELECT 1 FROM upload_pipeline.blobs b WHERE b.document_id = s.document_id AND b.path = s.parsed_path)
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
    JOIN upload_pipeline.blobs b ON b.document_id = s.document_id AND b.path = s.parsed_path
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
