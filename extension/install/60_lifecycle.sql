-- A document's lifecycle as an application drives it: cancel a job, retry a
-- failed one, delete a document and all it left behind.  Each is one
-- transaction that either does everything or nothing, and each status
-- change goes through the C triggers like any other (checked, one event).
--
-- A worker may have a request in flight for a job that is cancelled or
-- deleted: the cancel drops the job's lease (the status trigger does, for
-- any path into cancelled), so the SQL that records the answer finds the
-- job no longer its own and only writes the request's ledger row.  Money
-- spent stays spent: usage rows are never deleted.

-- Blobs are deleted by path; a document's upload references its blob.
CREATE INDEX documents_storage_path_idx ON upload_pipeline.documents (storage_path);
CREATE INDEX upload_jobs_parsed_path_idx ON upload_pipeline.upload_jobs (parsed_path)
    WHERE parsed_path IS NOT NULL;

-- The statuses a job can be cancelled from: every one with an edge to
-- cancelled in the C table.
CREATE FUNCTION tvdb._cancellable(status text) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM tvdb.allowed_transitions t
                   WHERE t.from_status = _cancellable.status AND t.to_status = 'cancelled')
$$;
COMMENT ON FUNCTION tvdb._cancellable(text) IS 'internal: may a job in this status be cancelled (from the C edge table)';
REVOKE ALL ON FUNCTION tvdb._cancellable(text) FROM PUBLIC;

-- The job's row, locked (waiting for a worker's transaction that holds it),
-- or error TV004: also for a job of a document the caller may not see
-- (tvdb.isolate_documents).
CREATE FUNCTION tvdb._job_for_update(job uuid) RETURNS upload_pipeline.upload_jobs
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j upload_pipeline.upload_jobs;
BEGIN
    IF job IS NULL THEN
        RAISE EXCEPTION 'job must not be null'
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Pass a job_id returned by tvdb.upload().';
    END IF;
    SELECT u.* INTO j FROM upload_pipeline.upload_jobs u JOIN upload_pipeline.documents d USING (document_id)
    WHERE u.job_id = _job_for_update.job AND tvdb._may_see(d.owner)
    FOR UPDATE OF u;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % does not exist', job
            USING ERRCODE = 'TV004', HINT = 'Job ids are returned by tvdb.upload().';
    END IF;
    RETURN j;
END
$$;
COMMENT ON FUNCTION tvdb._job_for_update(uuid) IS 'internal: lock a job by id, error TV004 if there is none';
REVOKE ALL ON FUNCTION tvdb._job_for_update(uuid) FROM PUBLIC;

-- Cancel a job that has not completed: true, or false if it already was
-- cancelled.  A complete job cannot be cancelled (TV001).  The event's
-- payload says why, who, and what was under way.
CREATE FUNCTION tvdb.cancel(job uuid, reason text DEFAULT NULL) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j upload_pipeline.upload_jobs := tvdb._job_for_update(job);
BEGIN
    IF j.status = 'cancelled' THEN
        RETURN false;
    END IF;
    IF NOT tvdb._cancellable(j.status) THEN
        RAISE EXCEPTION 'job % is % and cannot be cancelled', job, j.status
            USING ERRCODE = 'TV001',
                  DETAIL = 'Only a job that has not completed can be cancelled.',
                  HINT = 'To remove the document with its chunks and blobs, use tvdb.delete_document().';
    END IF;
    PERFORM tvdb.transition(job, 'cancelled',
        jsonb_strip_nulls(jsonb_build_object(
            'reason', reason, 'by', tvdb._caller()::text, 'via', 'tvdb.cancel()',
            'lease_owner', j.lease_owner,
            'requests_in_flight', nullif((SELECT count(*) FROM upload_pipeline.usage u
                                          WHERE u.state = 'sent' AND (u.job_id = job OR job = ANY(u.job_ids))), 0))),
        j.status);
    RETURN true;
END
$$;
COMMENT ON FUNCTION tvdb.cancel(uuid, text) IS
    'cancel a job that has not completed (terminal status cancelled; answers still in flight are ignored, their cost recorded); false if it already was cancelled';

-- Send a failed job back through its stage's retry edge (the one
-- tvdb.retry_failed() takes), whatever its failure class and however often
-- it was retried: a new attempt, no failed tries, due at once.  Returns the
-- status it moved to.
CREATE FUNCTION tvdb.retry(job uuid) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j upload_pipeline.upload_jobs := tvdb._job_for_update(job);
    target text := tvdb._retry_target(j.status);
BEGIN
    IF target IS NULL THEN
        RAISE EXCEPTION 'job % is % and cannot be retried', job, j.status
            USING ERRCODE = 'TV001',
                  DETAIL = 'Only a job in failed_parse, failed_chunking or failed_embedding can be retried.',
                  HINT = CASE WHEN j.status IN ('complete', 'cancelled')
                              THEN 'Send its document through again with tvdb.reprocess().'
                              ELSE 'The job is still being processed.' END;
    END IF;
    PERFORM tvdb.transition(job, target,
                            jsonb_build_object('by', tvdb._caller()::text, 'via', 'tvdb.retry()'), j.status);
    UPDATE upload_pipeline.upload_jobs u SET next_poll_at = NULL, lease_owner = NULL, lease_expires_at = NULL
    WHERE u.job_id = job;
    PERFORM tvdb._wake_workers();
    RETURN target;
END
$$;
COMMENT ON FUNCTION tvdb.retry(uuid) IS
    'send a failed job back through its retry edge now (a new attempt); returns the status it moved to';

-- Delete a document the caller may see: its jobs (those still under way are cancelled first,
-- so that a worker's late answer is ignored), chunks, events (unless
-- keep_events, which then also records document_deleted) and blobs (its
-- upload and its parsed markdown, unless another document's row still
-- names the same path).  The usage ledger keeps its rows: the money was
-- spent.  What was deleted, counted.
CREATE FUNCTION tvdb.delete_document(document uuid, keep_events boolean DEFAULT false,
                                     OUT jobs integer, OUT cancelled integer, OUT chunks bigint,
                                     OUT blobs integer, OUT events bigint)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    doc upload_pipeline.documents;
    ids uuid[];
    paths text[];
    j record;
BEGIN
    IF document IS NULL THEN
        RAISE EXCEPTION 'document must not be null'
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Pass a document_id from tvdb.jobs.';
    END IF;
    SELECT * INTO doc FROM upload_pipeline.documents d
    WHERE d.document_id = document AND tvdb._may_see(d.owner) FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'document % does not exist', document
            USING ERRCODE = 'no_data_found', HINT = 'Pass a document_id from tvdb.jobs.';
    END IF;
    cancelled := 0;
    FOR j IN SELECT u.job_id, u.status FROM upload_pipeline.upload_jobs u
             WHERE u.document_id = document ORDER BY u.job_id FOR UPDATE
    LOOP
        ids := ids || j.job_id;
        IF j.status <> 'cancelled' AND tvdb._cancellable(j.status)
           AND NOT EXISTS (SELECT 1 FROM tvdb.statuses s WHERE s.status = j.status AND s.is_failure) THEN
            PERFORM tvdb.transition(j.job_id, 'cancelled',
                jsonb_build_object('reason', 'document deleted', 'by', tvdb._caller()::text,
                                   'via', 'tvdb.delete_document()'), j.status);
            cancelled := cancelled + 1;
        END IF;
    END LOOP;
    jobs := coalesce(cardinality(ids), 0);
    ids := coalesce(ids, '{}');
    paths := ARRAY(SELECT doc.storage_path
                   UNION SELECT u.parsed_path FROM upload_pipeline.upload_jobs u
                         WHERE u.job_id = ANY(ids) AND u.parsed_path IS NOT NULL);

    DELETE FROM upload_pipeline.document_chunks c WHERE c.document_id = document;
    GET DIAGNOSTICS chunks = ROW_COUNT;
    IF keep_events THEN
        INSERT INTO upload_pipeline.events (job_id, document_id, type, severity, code, payload, correlation_id)
        SELECT u.job_id, u.document_id, 'stage_done', 'info', 'document_deleted',
               jsonb_build_object('by', tvdb._caller()::text, 'via', 'tvdb.delete_document()',
                                  'filename', doc.filename, 'status', u.status),
               u.correlation_id
        FROM upload_pipeline.upload_jobs u WHERE u.job_id = ANY(ids);
        events := 0;
    ELSE
        DELETE FROM upload_pipeline.events e WHERE e.job_id = ANY(ids);
        GET DIAGNOSTICS events = ROW_COUNT;
    END IF;
    DELETE FROM upload_pipeline.upload_jobs u WHERE u.document_id = document;
    DELETE FROM upload_pipeline.documents d WHERE d.document_id = document;
    DELETE FROM upload_pipeline.blobs b
    WHERE b.document_id = document AND b.path = ANY(paths)
      AND NOT EXISTS (SELECT 1 FROM upload_pipeline.documents d WHERE d.storage_path = b.path)
      AND NOT EXISTS (SELECT 1 FROM upload_pipeline.upload_jobs u WHERE u.parsed_path = b.path);
    GET DIAGNOSTICS blobs = ROW_COUNT;
END
$$;
COMMENT ON FUNCTION tvdb.delete_document(uuid, boolean) IS
    'delete a document with its jobs (cancelled first if under way), chunks, blobs and events (or keep the events); usage rows stay; what was deleted';

REVOKE ALL ON FUNCTION tvdb.cancel(uuid, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb.retry(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb.delete_document(uuid, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tvdb.cancel(uuid, text) TO tvdb_app;
GRANT EXECUTE ON FUNCTION tvdb.retry(uuid) TO tvdb_app;
GRANT EXECUTE ON FUNCTION tvdb.delete_document(uuid, boolean) TO tvdb_app;
