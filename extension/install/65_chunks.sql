-- What an application reads of its documents' chunks: the text, the
-- headings above it and whether it is embedded (tvdb.embeddings has the
-- vectors), filtered by tvdb._may_see like every other read.
CREATE VIEW tvdb.chunks AS
    SELECT c.document_id, c.job_id, c.chunk_index, c.heading_path, c.content, c.token_estimate,
           c.model, c.embedding IS NOT NULL AS embedded, c.created_at
    FROM upload_pipeline.document_chunks c
    JOIN upload_pipeline.documents d USING (document_id)
    WHERE tvdb._may_see(d.owner);
COMMENT ON VIEW tvdb.chunks IS
    'the chunks of the documents the caller may see: text, heading path, token estimate, and whether it is embedded';
GRANT SELECT ON tvdb.chunks TO tvdb_app, tvdb_monitor;
