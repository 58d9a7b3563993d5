-- tvdb install script: assembled from sql/install/*.sql by the Makefile.
\echo Use "CREATE EXTENSION tvdb CASCADE" to load this file. \quit

-- The job data keeps the names the replaced system's SQL uses.
CREATE SCHEMA upload_pipeline;
COMMENT ON SCHEMA upload_pipeline IS 'tvdb job data: documents, jobs, events, blobs and chunks';
CREATE SCHEMA tvdb;
COMMENT ON SCHEMA tvdb IS 'tvdb functions and views';

-- Whose document it is: the role the session acts as, even inside the SQL
-- API's SECURITY DEFINER functions (backend/owner.c).
CREATE FUNCTION tvdb._caller() RETURNS name
    AS 'MODULE_PATHNAME', 'tvdb_caller' LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION tvdb._may_see(owner name) RETURNS boolean
    AS 'MODULE_PATHNAME', 'tvdb_may_see' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION tvdb._caller() IS 'internal: the role the session acts as (a document''s owner)';
COMMENT ON FUNCTION tvdb._may_see(name) IS 'internal: may the caller see a document of this owner (tvdb.isolate_documents)';

-- The storage:// namespace: raw uploads and parsed markdown.
CREATE TABLE upload_pipeline.blobs (
    path         text NOT NULL CHECK (path LIKE 'storage://%'),
    content      bytea NOT NULL,
    content_type text NOT NULL,
    sha256       text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes   bigint NOT NULL CHECK (size_bytes = octet_length(content)),
    created_at   timestamptz NOT NULL DEFAULT now(),
    document_id  uuid NOT NULL,
    PRIMARY KEY (document_id, path)
);
COMMENT ON TABLE upload_pipeline.blobs IS 'content addressed by storage:// path (uploads and parsed markdown)';

CREATE TABLE upload_pipeline.documents (
    document_id  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    filename     text NOT NULL CHECK (filename <> ''),
    mime_type    text NOT NULL,
    size_bytes   bigint NOT NULL CHECK (size_bytes > 0),
    sha256       text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    storage_path text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    owner        name NOT NULL DEFAULT tvdb._caller(),
    FOREIGN KEY (document_id, storage_path) REFERENCES upload_pipeline.blobs (document_id, path)
);
COMMENT ON TABLE upload_pipeline.documents IS 'one row per uploaded document';
COMMENT ON COLUMN upload_pipeline.documents.owner IS 'the role that uploaded it (tvdb.isolate_documents)';

CREATE TABLE upload_pipeline.upload_jobs (
    job_id            uuid NOT NULL DEFAULT gen_random_uuid(),
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
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (document_id, job_id)
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
CREATE INDEX upload_jobs_job_idx ON upload_pipeline.upload_jobs (job_id);
CREATE INDEX upload_jobs_correlation_idx ON upload_pipeline.upload_jobs (correlation_id);

CREATE TABLE upload_pipeline.events (
    event_id          uuid NOT NULL DEFAULT gen_random_uuid(),
    seq               bigint GENERATED ALWAYS AS IDENTITY,
    job_id            uuid,
    document_id       uuid NOT NULL,
    type              text NOT NULL CHECK (type <> ''),
    severity          text NOT NULL CHECK (severity IN ('debug', 'info', 'warn', 'error')),
    code              text NOT NULL CHECK (code <> ''),
    payload           jsonb NOT NULL DEFAULT '{}',
    correlation_id    uuid,
    ts                timestamptz NOT NULL DEFAULT now(),
    from_status       text,
    to_status         text,
    in_previous_state interval,
    attempt           integer,
    PRIMARY KEY (document_id, event_id),
    UNIQUE (document_id, seq)
);
COMMENT ON TABLE upload_pipeline.events IS 'append-only job history: one row per status change (written by trigger) plus application events';
COMMENT ON COLUMN upload_pipeline.events.seq IS 'commit-independent order of events, also within one transaction';
COMMENT ON COLUMN upload_pipeline.events.in_previous_state IS 'how long the job stayed in from_status';
CREATE INDEX events_job_idx ON upload_pipeline.events (job_id, seq);
CREATE INDEX events_correlation_idx ON upload_pipeline.events (correlation_id);

CREATE TABLE upload_pipeline.document_chunks (
    document_id    uuid NOT NULL REFERENCES upload_pipeline.documents ON DELETE CASCADE,
    job_id         uuid NOT NULL,
    chunk_index    integer NOT NULL CHECK (chunk_index >= 0),
    content        text NOT NULL,
    token_estimate integer NOT NULL CHECK (token_estimate >= 0),
    sha256         text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    heading_path   text[] NOT NULL DEFAULT '{}',
    embedding      real[],
    model          text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (document_id, chunk_index),
    FOREIGN KEY (document_id, job_id) REFERENCES upload_pipeline.upload_jobs (document_id, job_id) ON DELETE CASCADE
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
