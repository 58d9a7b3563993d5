-- Documents record the role that uploaded them; those uploaded before 0.2.0
-- belong to the role that runs the update.
ALTER TABLE upload_pipeline.documents ADD COLUMN owner name NOT NULL DEFAULT tvdb._caller();
COMMENT ON COLUMN upload_pipeline.documents.owner IS 'the role that uploaded it (tvdb.isolate_documents)';
