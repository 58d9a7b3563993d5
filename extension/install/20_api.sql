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

CREATE FUNCTION tvdb.parse_route(filename text, mime_type text, size_bytes bigint,
                                 OUT route text, OUT reason text)
    AS 'MODULE_PATHNAME', 'tvdb_parse_route_sql' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION tvdb.parse_route(text, text, bigint) IS
    'which parser would read such a document now: llamaparse (by extension), local (tvdb.parse_locally), or refused, with the reason';

-- Why unfinished jobs are not moving when the reason is outside them, as
-- the workers decide it (in C, shared with them): no worker serves this
-- database, the workers wait for ALTER EXTENSION tvdb UPDATE, a service's
-- requests wait for an API key, its circuit, or a budget.  Worked out once
-- per query of tvdb.jobs, for every job alike; the view picks by status.
CREATE FUNCTION tvdb._database_served() RETURNS boolean
    AS 'MODULE_PATHNAME', 'tvdb_database_served' LANGUAGE C STABLE;
COMMENT ON FUNCTION tvdb._database_served() IS
    'internal: will a worker serve this database (tvdb preloaded, tvdb.workers > 0, listed in tvdb.database)';
CREATE FUNCTION tvdb._served_databases() RETURNS text[]
    AS 'MODULE_PATHNAME', 'tvdb_served_databases' LANGUAGE C STABLE;
COMMENT ON FUNCTION tvdb._served_databases() IS
    'internal: the databases tvdb.database lists, read as the launcher reads them';
CREATE FUNCTION tvdb._keys_missing(service text) RETURNS text
    AS 'MODULE_PATHNAME', 'tvdb_keys_missing_sql' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION tvdb._keys_missing(text) IS
    'internal: the API keys a service''s requests wait for, when its real stage runs';

CREATE FUNCTION tvdb._waiting_for(OUT working text[], OUT every_job text, OUT parse text, OUT parse_budget text,
                                  OUT embed text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mode text := current_setting('tvdb.service_mode');
BEGIN
    working := ARRAY(SELECT s.status FROM tvdb.statuses s WHERE NOT s.is_terminal AND NOT s.is_failure);
    IF NOT tvdb._database_served() THEN
        every_job := 'worker: database not served';
    ELSIF (SELECT e.extversion FROM pg_catalog.pg_extension e WHERE e.extname = 'tvdb') <> tvdb.version() THEN
        every_job := 'extension update';
    END IF;
    SELECT coalesce('api key: ' || tvdb._keys_missing(s.service),
                    (SELECT 'circuit: ' || c.service || ' ' || c.state FROM tvdb._circuits() c
                     WHERE c.service = s.service AND c.state IN ('open', 'blocked') AND mode = 'real')),
           (SELECT 'budget: ' || b.service || ' ' || b.period
            FROM upload_pipeline.budgets b, LATERAL tvdb._budget_used(b.service, b.period) u
            WHERE b.service IN (s.service, 'all') AND u.spent + u.reserved >= b.limit_usd AND mode <> 'mock'
            ORDER BY b.service DESC, b.period LIMIT 1)
    INTO parse, parse_budget
    FROM (VALUES ('llamaparse')) s(service);
    SELECT coalesce('api key: ' || tvdb._keys_missing(s.service),
                    (SELECT 'circuit: ' || c.service || ' ' || c.state FROM tvdb._circuits() c
                     WHERE c.service = s.service AND c.state IN ('open', 'blocked') AND mode = 'real'),
                    (SELECT 'budget: ' || b.service || ' ' || b.period
                     FROM upload_pipeline.budgets b, LATERAL tvdb._budget_used(b.service, b.period) u
                     WHERE b.service IN (s.service, 'all') AND u.spent + u.reserved >= b.limit_usd AND mode <> 'mock'
                     ORDER BY b.service DESC, b.period LIMIT 1))
    INTO embed
    FROM (VALUES ('openai')) s(service);
END
$$;
COMMENT ON FUNCTION tvdb._waiting_for() IS
    'internal: the statuses a worker moves on, and what holds them outside the job: every job, LlamaParse requests (keys, circuit; budget), OpenAI requests';
REVOKE ALL ON FUNCTION tvdb._database_served() FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._served_databases() FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._keys_missing(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._waiting_for() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tvdb._waiting_for() TO tvdb_app, tvdb_monitor;

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
                    '{}') AS stage_seconds,
           CASE WHEN j.status = ANY (w.working)
                THEN coalesce(w.every_job,
                              CASE j.status
                                  WHEN 'uploaded' THEN
                                      coalesce(w.parse,
                                               CASE WHEN w.parse_budget IS NOT NULL
                                                     AND (tvdb.parse_route(d.filename, d.mime_type, d.size_bytes)).route = 'llamaparse'
                                                    THEN w.parse_budget END)
                                  WHEN 'parse_queued' THEN w.parse
                                  WHEN 'embedding_queued' THEN w.embed
                                  WHEN 'embedding_in_progress' THEN w.embed
                              END)
           END AS waiting_for
    FROM upload_pipeline.upload_jobs j
    JOIN upload_pipeline.documents d USING (document_id)
    CROSS JOIN tvdb._waiting_for() w
    WHERE tvdb._may_see(d.owner);
COMMENT ON VIEW tvdb.jobs IS
    'a job as an application sees it: status, attempts, failed tries in this stage, last error and its class, when a retry is due, seconds spent in each past status, and what outside the job it waits for';
COMMENT ON COLUMN tvdb.jobs.waiting_for IS
    'why an unfinished job is not moving, when the reason is outside it: worker: database not served, extension update, api key: <service>, circuit: <service> <state>, budget: <service> <period>; NULL otherwise';

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
