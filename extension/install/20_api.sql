-- The SQL API for applications.

CREATE FUNCTION tvdb.upload(filename text, content bytea,
                            mime_type text DEFAULT NULL, correlation_id uuid DEFAULT NULL)
    RETURNS uuid
    AS 'MODULE_PATHNAME', 'tvdb_upload_0_2' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tvdb.upload(text, bytea, text, uuid) IS
    'store a document and create its job in status uploaded; returns the job_id';

CREATE FUNCTION tvdb.transition(job_id uuid, to_status text,
                                detail jsonb DEFAULT '{}', from_status text DEFAULT NULL)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'tvdb_transition' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tvdb.transition(uuid, text, jsonb, text) IS
    'compare-and-set status change; detail goes into the event payload (its "error" key into last_error on failure); true if changed, false if already there';

CREATE VIEW tvdb.jobs AS
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
COMMENT ON VIEW tvdb.jobs IS
    'a job as an application sees it: status, attempts, failed tries in this stage, last error and its class, when a retry is due, and seconds spent in each past status';

-- VOLATILE, not STABLE: a STABLE function reads with its calling
-- statement's snapshot, which cannot see the job that tvdb.upload() created
-- in that same statement, as in SELECT * FROM tvdb.job(tvdb.upload(...)).
CREATE FUNCTION tvdb.job(job_id uuid) RETURNS tvdb.jobs
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r tvdb.jobs;
BEGIN
    SELECT * INTO r FROM tvdb.jobs j WHERE j.job_id = job.job_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % does not exist', job_id
            USING ERRCODE = 'TV004', HINT = 'Job ids are returned by tvdb.upload().';
    END IF;
    RETURN r;
END
$$;
COMMENT ON FUNCTION tvdb.job(uuid) IS 'one job from tvdb.jobs; error TV004 if there is none';

CREATE FUNCTION tvdb.job_history(job_id uuid)
    RETURNS TABLE (seq bigint, ts timestamptz, from_status text, to_status text,
                   type text, severity text, code text, attempt integer,
                   in_previous_state interval, payload jsonb)
    LANGUAGE sql VOLATILE  -- as tvdb.job(): sees a job made in the same statement
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
COMMENT ON FUNCTION tvdb.job_history(uuid) IS 'every event of one job, oldest first';

CREATE FUNCTION tvdb.parse_route(filename text, mime_type text, size_bytes bigint,
                                 OUT route text, OUT reason text)
    AS 'MODULE_PATHNAME', 'tvdb_parse_route_sql' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION tvdb.parse_route(text, text, bigint) IS
    'which parser would read such a document now: llamaparse (by extension), local (tvdb.parse_locally), or refused, with the reason';
