-- Keys that include the document id (the column a distributed PostgreSQL
-- would shard the growing tables by): blobs get a document_id, and the
-- primary keys and unique constraints of blobs, jobs and events, and the
-- foreign keys between them, include it.
ALTER TABLE upload_pipeline.blobs ADD COLUMN document_id uuid;
UPDATE upload_pipeline.blobs SET document_id = substring(path FROM '^storage://[^/]+/([0-9a-fA-F-]{36})/')::uuid;
DO $$
BEGIN
    IF EXISTS (SELECT FROM upload_pipeline.blobs WHERE document_id IS NULL) THEN
        RAISE EXCEPTION 'tvdb 0.2.0 needs every blob under storage://<kind>/<document id>/'
            USING ERRCODE = 'check_violation',
                  DETAIL = (SELECT format('%s blob(s) do not name a document, e.g. %s', count(*), min(path))
                            FROM upload_pipeline.blobs WHERE document_id IS NULL),
                  HINT = 'Delete or move those blobs, then run ALTER EXTENSION tvdb UPDATE again.';
    END IF;
END
$$;
ALTER TABLE upload_pipeline.blobs ALTER COLUMN document_id SET NOT NULL;
ALTER TABLE upload_pipeline.documents DROP CONSTRAINT documents_storage_path_fkey;
ALTER TABLE upload_pipeline.blobs DROP CONSTRAINT blobs_pkey, ADD PRIMARY KEY (document_id, path);
ALTER TABLE upload_pipeline.documents
    ADD FOREIGN KEY (document_id, storage_path) REFERENCES upload_pipeline.blobs (document_id, path);

ALTER TABLE upload_pipeline.document_chunks DROP CONSTRAINT document_chunks_job_id_fkey;
ALTER TABLE upload_pipeline.upload_jobs DROP CONSTRAINT upload_jobs_pkey, ADD PRIMARY KEY (document_id, job_id);
CREATE INDEX upload_jobs_job_idx ON upload_pipeline.upload_jobs (job_id);
DROP INDEX upload_pipeline.upload_jobs_document_idx;
ALTER TABLE upload_pipeline.document_chunks
    ADD FOREIGN KEY (document_id, job_id) REFERENCES upload_pipeline.upload_jobs (document_id, job_id) ON DELETE CASCADE;

-- 0.1.0 wrote an event without a document for every refused webhook
-- delivery; 0.2.0 counts them per minute (webhook_refusals) instead.
WITH old AS (
    SELECT date_trunc('minute', e.ts) AS minute, coalesce(e.payload ->> 'endpoint', 'llamaparse') AS endpoint,
           e.ts, coalesce((e.payload ->> 'body_bytes')::bigint, 0) AS bytes, e.payload -> 'signature_headers' AS headers
    FROM upload_pipeline.events e
    WHERE e.document_id IS NULL AND e.code = 'webhook_signature_invalid')
INSERT INTO upload_pipeline.webhook_refusals AS r (minute, endpoint, refused, body_bytes, signature_headers, last_at)
SELECT o.minute, o.endpoint, count(*), sum(o.bytes),
       ARRAY(SELECT DISTINCT h FROM old o2, jsonb_array_elements_text(coalesce(o2.headers, '[]')) h
             WHERE o2.minute = o.minute AND o2.endpoint = o.endpoint ORDER BY 1),
       max(o.ts)
FROM old o
GROUP BY o.minute, o.endpoint
ON CONFLICT (minute, endpoint) DO UPDATE SET refused = r.refused + excluded.refused;
DELETE FROM upload_pipeline.events WHERE document_id IS NULL AND code = 'webhook_signature_invalid';
ALTER TABLE upload_pipeline.events ALTER COLUMN document_id SET NOT NULL;
ALTER TABLE upload_pipeline.events DROP CONSTRAINT events_pkey, ADD PRIMARY KEY (document_id, event_id);
ALTER TABLE upload_pipeline.events DROP CONSTRAINT events_seq_key, ADD UNIQUE (document_id, seq);

-- The two functions that store blobs name their document.
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

CREATE OR REPLACE FUNCTION tvdb._store_parsed_all(jobs uuid[], owner text, markdowns text[], details jsonb[])
    RETURNS uuid[] LANGUAGE plpgsql
AS $$
DECLARE
    ours uuid[];
    docs uuid[];
    paths text[];
    mds bytea[];
    ds jsonb[];
BEGIN
    SELECT array_agg(v.job ORDER BY v.i), array_agg(u.document_id ORDER BY v.i),
           array_agg(tvdb._parsed_path(u.document_id, v.job) ORDER BY v.i),
           array_agg(v.md ORDER BY v.i),
           array_agg(v.detail || jsonb_build_object('content_length', octet_length(v.md)) ORDER BY v.i)
    INTO ours, docs, paths, mds, ds
    FROM (SELECT w.job, w.i, w.detail, convert_to(w.markdown, 'UTF8') AS md
          FROM unnest(jobs, markdowns, details) WITH ORDINALITY AS w(job, markdown, detail, i)) v
    JOIN (SELECT u.job_id, u.document_id FROM upload_pipeline.upload_jobs u
          WHERE u.job_id = ANY(jobs) AND u.lease_owner = owner AND u.status = 'parse_queued'
          FOR UPDATE) u ON u.job_id = v.job;
    IF ours IS NULL THEN
        RETURN '{}';
    END IF;
    INSERT INTO upload_pipeline.blobs (document_id, path, content, content_type, sha256, size_bytes)
    SELECT v.doc, v.path, v.md, 'text/markdown', encode(sha256(v.md), 'hex'), octet_length(v.md)
    FROM unnest(docs, paths, mds) AS v(doc, path, md)
    ON CONFLICT (document_id, path) DO UPDATE
        SET content = EXCLUDED.content, sha256 = EXCLUDED.sha256,
            size_bytes = EXCLUDED.size_bytes, created_at = now();
    UPDATE upload_pipeline.upload_jobs u
    SET parsed_path = v.path, parsed_sha256 = encode(sha256(v.md), 'hex'), next_poll_at = NULL
    FROM unnest(ours, paths, mds) AS v(job, path, md)
    WHERE u.job_id = v.job;
    RETURN tvdb._advance_all(ours, owner, 'parse_queued', 'parsed', ds);
END
$$;

-- The two C entry points whose SQL changed with these tables (the library
-- keeps 0.1.0's for databases not updated yet).
CREATE OR REPLACE FUNCTION tvdb.upload(filename text, content bytea,
                            mime_type text DEFAULT NULL, correlation_id uuid DEFAULT NULL)
    RETURNS uuid
    AS 'MODULE_PATHNAME', 'tvdb_upload_0_2' LANGUAGE C VOLATILE;
CREATE OR REPLACE FUNCTION tvdb.handle_llamaparse_webhook(body bytea, headers jsonb, params jsonb DEFAULT NULL)
    RETURNS jsonb
    AS 'MODULE_PATHNAME', 'tvdb_handle_llamaparse_webhook_0_2' LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
