-- bench/claims/setup.sql — run by run.sh with psql -v jobs=N.
--
-- Two queues holding N ready items each:
--   tvdb  N jobs in upload_pipeline.upload_jobs sitting in 'parsed' (due, nobody
--         holds them), the status the chunking stage claims from
--   bare  a minimal SKIP LOCKED queue, bench.q, with N visible messages, and its
--         archive bench.a: the tables pgmq creates for a queue (pgmq.q_<name> and
--         pgmq.a_<name>: identity msg_id, read_ct, enqueued_at, vt, message
--         jsonb; an index on vt; the archive keyed by msg_id, indexed by
--         archived_at), written here so the benchmark depends on no extension
-- The jobs are created through the tvdb triggers (an INSERT, then one UPDATE
-- per status, uploaded -> parse_queued -> parsed), so every event and anything
-- the triggers maintain beside the jobs is what tvdb itself writes.
\set ON_ERROR_STOP 1
SET client_min_messages = error;        -- not the warning that tvdb.workers is 0
CREATE EXTENSION IF NOT EXISTS tvdb CASCADE;
SET client_min_messages = warning;
CREATE SCHEMA bench;

INSERT INTO upload_pipeline.blobs (document_id, path, content, content_type, sha256, size_bytes)
SELECT md5('doc' || n)::uuid, 'storage://uploads/' || md5('doc' || n)::uuid || '/bench-' || n || '.txt',
       convert_to('document ' || n, 'UTF8'), 'text/plain',
       encode(sha256(convert_to('document ' || n, 'UTF8')), 'hex'),
       octet_length(convert_to('document ' || n, 'UTF8'))
FROM generate_series(1, :jobs) n;
INSERT INTO upload_pipeline.documents (document_id, filename, mime_type, size_bytes, sha256, storage_path)
SELECT md5('doc' || n)::uuid, 'bench-' || n || '.txt', 'text/plain',
       octet_length(convert_to('document ' || n, 'UTF8')),
       encode(sha256(convert_to('document ' || n, 'UTF8')), 'hex'),
       'storage://uploads/' || md5('doc' || n)::uuid || '/bench-' || n || '.txt'
FROM generate_series(1, :jobs) n;
INSERT INTO upload_pipeline.upload_jobs (job_id, document_id, correlation_id)
SELECT md5('job' || n)::uuid, md5('doc' || n)::uuid, md5('corr' || n)::uuid
FROM generate_series(1, :jobs) n;
UPDATE upload_pipeline.upload_jobs SET status = 'parse_queued';
UPDATE upload_pipeline.upload_jobs SET status = 'parsed';

-- The bare queue, as pgmq.create() makes it, and N messages as pgmq.send()
-- leaves them (vt = now(): visible at once).  Each message names a job.
CREATE TABLE bench.q (
    msg_id      bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
    read_ct     integer NOT NULL DEFAULT 0,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    vt          timestamptz NOT NULL,
    message     jsonb
);
CREATE INDEX q_vt_idx ON bench.q (vt);
CREATE TABLE bench.a (
    msg_id      bigint PRIMARY KEY,
    read_ct     integer NOT NULL DEFAULT 0,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    archived_at timestamptz NOT NULL DEFAULT now(),
    vt          timestamptz NOT NULL,
    message     jsonb
);
CREATE INDEX a_archived_at_idx ON bench.a (archived_at);
INSERT INTO bench.q (vt, message)
SELECT now(), jsonb_build_object('job_id', md5('job' || n)::uuid, 'document_id', md5('doc' || n)::uuid)
FROM generate_series(1, :jobs) n;
