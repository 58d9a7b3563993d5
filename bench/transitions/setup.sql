-- bench/transitions/setup.sql — run by run.sh with psql -v jobs=N.
--
-- Three copies of the same jobs and events, one per variant:
--   tvdb     upload_pipeline.upload_jobs / upload_pipeline.events, the tvdb C triggers
--   bare     bench.jobs_bare / bench.events_bare, no triggers (the pgbench script
--            writes the event row itself)
--   plpgsql  bench.jobs_plpgsql / bench.events_plpgsql, PL/pgSQL triggers doing what
--            the C ones do (the baseline; it lives only here, in bench/)
-- The copies are CREATE TABLE ... (LIKE ... INCLUDING ALL) (same columns, defaults,
-- CHECKs, identity, primary keys and every index, partial ones included) plus the
-- same foreign keys, so every variant updates the same indexes and checks the same
-- constraints.  Job n has job_id md5('job' || n)::uuid in every copy.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS tvdb CASCADE;
CREATE SCHEMA bench;

-- N jobs, created by direct inserts through the C triggers (each writes its
-- creation event), then moved uploaded -> parse_queued (one more event each).
INSERT INTO upload_pipeline.blobs (document_id, path, content, content_type, sha256, size_bytes)
SELECT md5('doc' || n)::uuid, 'storage://uploads/' || md5('doc' || n)::uuid || '/bench-' || n || '.txt',
       convert_to('document ' || n, 'UTF8'), 'text/plain',
       encode(sha256(convert_to('document ' || n, 'UTF8')), 'hex'),
       octet_length(convert_to('document ' || n, 'UTF8'))
FROM generate_series(1, :jobs) n;
INSERT INTO upload_pipeline.documents (document_id, filename, mime_type, size_bytes, sha256, storage_path)
SELECT md5('doc' || n)::uuid, 'bench-' || n || '.txt', 'text/plain', b.size_bytes, b.sha256, b.path
FROM generate_series(1, :jobs) n
JOIN upload_pipeline.blobs b ON b.path = 'storage://uploads/' || md5('doc' || n)::uuid || '/bench-' || n || '.txt';
INSERT INTO upload_pipeline.upload_jobs (job_id, document_id, correlation_id)
SELECT md5('job' || n)::uuid, md5('doc' || n)::uuid, md5('corr' || n)::uuid
FROM generate_series(1, :jobs) n;
UPDATE upload_pipeline.upload_jobs SET status = 'parse_queued';

-- The copies, holding the same rows.
CREATE TABLE bench.jobs_bare (LIKE upload_pipeline.upload_jobs INCLUDING ALL,
    FOREIGN KEY (document_id) REFERENCES upload_pipeline.documents ON DELETE CASCADE);
CREATE TABLE bench.jobs_plpgsql (LIKE upload_pipeline.upload_jobs INCLUDING ALL,
    FOREIGN KEY (document_id) REFERENCES upload_pipeline.documents ON DELETE CASCADE);
CREATE TABLE bench.events_bare (LIKE upload_pipeline.events INCLUDING ALL);
CREATE TABLE bench.events_plpgsql (LIKE upload_pipeline.events INCLUDING ALL);
-- upload_jobs is referenced by document_chunks; so are the copies.
CREATE TABLE bench.chunks_bare (LIKE upload_pipeline.document_chunks INCLUDING ALL,
    FOREIGN KEY (document_id) REFERENCES upload_pipeline.documents ON DELETE CASCADE,
    FOREIGN KEY (job_id) REFERENCES bench.jobs_bare ON DELETE CASCADE);
CREATE TABLE bench.chunks_plpgsql (LIKE upload_pipeline.document_chunks INCLUDING ALL,
    FOREIGN KEY (document_id) REFERENCES upload_pipeline.documents ON DELETE CASCADE,
    FOREIGN KEY (job_id) REFERENCES bench.jobs_plpgsql ON DELETE CASCADE);

INSERT INTO bench.jobs_bare SELECT * FROM upload_pipeline.upload_jobs;
INSERT INTO bench.jobs_plpgsql SELECT * FROM upload_pipeline.upload_jobs;
INSERT INTO bench.events_bare (event_id, job_id, document_id, type, severity, code, payload,
                               correlation_id, ts, from_status, to_status, in_previous_state, attempt)
SELECT event_id, job_id, document_id, type, severity, code, payload,
       correlation_id, ts, from_status, to_status, in_previous_state, attempt
FROM upload_pipeline.events ORDER BY seq;
INSERT INTO bench.events_plpgsql (event_id, job_id, document_id, type, severity, code, payload,
                                  correlation_id, ts, from_status, to_status, in_previous_state, attempt)
SELECT event_id, job_id, document_id, type, severity, code, payload,
       correlation_id, ts, from_status, to_status, in_previous_state, attempt
FROM upload_pipeline.events ORDER BY seq;

-- The PL/pgSQL baseline: the edge table copied from tvdb.allowed_transitions,
-- a BEFORE trigger that validates and stamps, an AFTER trigger that looks the
-- edge up again (as events.c does), writes the event and notifies.
CREATE TABLE bench.plpgsql_edges AS SELECT * FROM tvdb.allowed_transitions;
CREATE UNIQUE INDEX ON bench.plpgsql_edges (from_status, to_status);

CREATE FUNCTION bench.plpgsql_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    e bench.plpgsql_edges;
BEGIN
    IF NEW.status IS NULL THEN
        RAISE EXCEPTION 'job status must not be null' USING ERRCODE = 'not_null_violation';
    END IF;
    SELECT * INTO e FROM bench.plpgsql_edges
    WHERE from_status = OLD.status AND to_status = NEW.status;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invalid job status transition from "%" to "%"', OLD.status, NEW.status
            USING ERRCODE = 'TV001';
    END IF;
    NEW.status_changed_at := now();
    NEW.updated_at := now();
    IF e.is_retry THEN
        NEW.attempts := OLD.attempts + 1;
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION bench.plpgsql_record() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    e bench.plpgsql_edges;
BEGIN
    SELECT * INTO e FROM bench.plpgsql_edges
    WHERE from_status = OLD.status AND to_status = NEW.status;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invalid job status transition from "%" to "%"', OLD.status, NEW.status
            USING ERRCODE = 'TV001';
    END IF;
    INSERT INTO bench.events_plpgsql (job_id, document_id, type, severity, code, payload,
                                      correlation_id, ts, from_status, to_status,
                                      in_previous_state, attempt)
    VALUES (NEW.job_id, NEW.document_id, e.event_type, e.severity, e.code, '{}',
            NEW.correlation_id, now(), OLD.status, NEW.status,
            NEW.status_changed_at - OLD.status_changed_at, NEW.attempts);
    PERFORM pg_notify('tvdb_jobs',
                      format('{"job_id": "%s", "status": "%s"}', NEW.job_id, NEW.status));
    RETURN NULL;
END
$$;

CREATE TRIGGER plpgsql_guard BEFORE UPDATE ON bench.jobs_plpgsql
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION bench.plpgsql_guard();
CREATE TRIGGER plpgsql_record AFTER UPDATE ON bench.jobs_plpgsql
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION bench.plpgsql_record();

VACUUM ANALYZE;
