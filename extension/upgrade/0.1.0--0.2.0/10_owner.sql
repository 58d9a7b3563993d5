-- Documents record the role that uploaded them; those uploaded before 0.2.0
-- belong to the role that runs the update.
CREATE FUNCTION tvdb._caller() RETURNS name
    AS 'MODULE_PATHNAME', 'tvdb_caller' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION tvdb._may_see(owner name) RETURNS boolean
    AS 'MODULE_PATHNAME', 'tvdb_may_see' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION tvdb._caller() IS 'internal: the role the session acts as (a document''s owner)';
COMMENT ON FUNCTION tvdb._may_see(name) IS 'internal: may the caller see a document of this owner (tvdb.isolate_documents)';
ALTER TABLE upload_pipeline.documents ADD COLUMN owner name NOT NULL DEFAULT tvdb._caller();
COMMENT ON COLUMN upload_pipeline.documents.owner IS 'the role that uploaded it (tvdb.isolate_documents)';

-- What an application reads is filtered by whose document it is.
CREATE OR REPLACE VIEW tvdb.jobs AS
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
    JOIN upload_pipeline.documents d USING (document_id)
    WHERE tvdb._may_see(d.owner);
CREATE OR REPLACE FUNCTION tvdb.job_history(job_id uuid)
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
      AND EXISTS (SELECT FROM upload_pipeline.upload_jobs j JOIN upload_pipeline.documents d USING (document_id)
                  WHERE j.job_id = job_history.job_id AND tvdb._may_see(d.owner))
    ORDER BY e.seq
$$;
CREATE OR REPLACE FUNCTION tvdb.embeddings_of(model text)
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
