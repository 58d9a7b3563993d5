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
