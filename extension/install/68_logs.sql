-- Logs that follow a document: what the server log says about a job names
-- the job and its correlation id, so one grep finds a document's story
-- across the worker, applications' sessions and tvdb-webhookd.

-- The correlation id of a job named as text (NULL when it is not one):
-- tvdb-webhookd puts it on its log line for a callback's job.
CREATE FUNCTION tvdb._job_correlation(job text) RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT j.correlation_id FROM upload_pipeline.upload_jobs j
    WHERE job ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
      AND j.job_id = CASE WHEN job ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                          THEN job::uuid END
$$;
COMMENT ON FUNCTION tvdb._job_correlation(text) IS 'internal (tvdb-webhookd''s log): the correlation id of a job given as text';

-- With tvdb.log_requests on, one line per request once its answer (or its
-- loss) is recorded: service, operation, HTTP status, latency, cost, and
-- each job it served with its correlation id.  Never a key or content.
CREATE FUNCTION tvdb._log_request() RETURNS trigger LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    jobs text;
BEGIN
    SELECT string_agg(format('job=%s correlation=%s', j.job_id, j.correlation_id), ' ' ORDER BY x.n)
    INTO jobs
    FROM unnest(CASE WHEN NEW.job_id IS NOT NULL THEN ARRAY[NEW.job_id] ELSE NEW.job_ids END)
         WITH ORDINALITY x(job, n)
    JOIN upload_pipeline.upload_jobs j ON j.job_id = x.job;
    RAISE LOG 'tvdb request: service=% operation=% status=% latency_ms=% state=% cost_usd=% usage_id=% %',
        NEW.service, NEW.operation, coalesce(NEW.http_status::text, '-'),
        coalesce(round(NEW.latency_ms::numeric, 1)::text, '-'), NEW.state, NEW.cost_usd, NEW.usage_id,
        coalesce(jobs, coalesce('owner=' || NEW.owner, 'no job'));
    RETURN NULL;
END
$$;
CREATE TRIGGER usage_log_written AFTER INSERT ON upload_pipeline.usage
    FOR EACH ROW WHEN (NEW.state <> 'sent' AND current_setting('tvdb.log_requests', true) = 'on')
    EXECUTE FUNCTION tvdb._log_request();
CREATE TRIGGER usage_log_answered AFTER UPDATE OF state ON upload_pipeline.usage
    FOR EACH ROW WHEN (OLD.state = 'sent' AND NEW.state <> 'sent' AND current_setting('tvdb.log_requests', true) = 'on')
    EXECUTE FUNCTION tvdb._log_request();
COMMENT ON FUNCTION tvdb._log_request() IS 'internal (trigger): a server-log line per answered request, with tvdb.log_requests';

-- A job that fails, by any path, is named in the server log with its
-- correlation id and the reason.
CREATE FUNCTION tvdb._log_job_failed() RETURNS trigger LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE LOG 'tvdb job failed: job=% correlation=% status=% attempt=% error=%',
        NEW.job_id, NEW.correlation_id, NEW.status, NEW.attempts, coalesce(NEW.last_error, '-');
    RETURN NULL;
END
$$;
CREATE TRIGGER job_failed_log AFTER UPDATE OF status ON upload_pipeline.upload_jobs
    FOR EACH ROW WHEN (NEW.status LIKE 'failed\_%' AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION tvdb._log_job_failed();
COMMENT ON FUNCTION tvdb._log_job_failed() IS 'internal (trigger): a failed job''s server-log line, with its correlation id';

REVOKE ALL ON FUNCTION tvdb._job_correlation(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._log_request() FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._log_job_failed() FROM PUBLIC;
