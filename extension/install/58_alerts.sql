-- Alerts: what an operator must hear about, in a table and on NOTIFY
-- tvdb_alerts.  Alerts of one kind for one service coalesce: while the last
-- one is younger than tvdb.alert_window, a new one adds to its count
-- instead of writing a row, so a storm of failing documents writes a
-- handful of rows, not one per document.

CREATE TABLE upload_pipeline.alerts (
    alert_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    first_at  timestamptz NOT NULL DEFAULT now(),
    last_at   timestamptz NOT NULL DEFAULT now(),
    kind      text NOT NULL CHECK (kind <> ''),
    severity  text NOT NULL CHECK (severity IN ('info', 'warn', 'error', 'critical')),
    service   text,
    job_id    uuid,
    message   text NOT NULL,
    details   jsonb NOT NULL DEFAULT '{}',
    count     integer NOT NULL DEFAULT 1 CHECK (count >= 1)
);
CREATE INDEX alerts_kind_idx ON upload_pipeline.alerts (kind, service, last_at DESC);
COMMENT ON TABLE upload_pipeline.alerts IS
    'alerts for operators (also sent on NOTIFY tvdb_alerts); repeats of a kind for a service within tvdb.alert_window add to count';
COMMENT ON COLUMN upload_pipeline.alerts.job_id IS 'the first job the alert was about, if any';
COMMENT ON COLUMN upload_pipeline.alerts.message IS 'the latest occurrence''s message';
SELECT pg_catalog.pg_extension_config_dump('upload_pipeline.alerts', '');

-- Raise an alert: coalesced into the last one of its kind and service
-- while that is recent, else a new row.  NOTIFY tvdb_alerts (on commit)
-- carries the row as JSON when it is new, and again when its count reaches
-- 10, 100, 1000, ... .  The alert's id.
CREATE FUNCTION tvdb._alert(kind text, severity text, service text, job uuid, message text,
                            details jsonb DEFAULT '{}')
    RETURNS bigint LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a upload_pipeline.alerts;
BEGIN
    -- one writer per kind and service at a time, so concurrent alerts coalesce too
    PERFORM pg_advisory_xact_lock(hashtext('tvdb alert'), hashtext(kind || '/' || coalesce(service, '')));
    UPDATE upload_pipeline.alerts x
    SET count = x.count + 1, last_at = clock_timestamp(), message = _alert.message,
        details = _alert.details, severity = _alert.severity
    WHERE x.alert_id = (SELECT y.alert_id FROM upload_pipeline.alerts y
                        WHERE y.kind = _alert.kind AND y.service IS NOT DISTINCT FROM _alert.service
                          AND y.last_at > clock_timestamp() - current_setting('tvdb.alert_window')::interval
                        ORDER BY y.last_at DESC LIMIT 1)
    RETURNING * INTO a;
    IF NOT FOUND THEN
        INSERT INTO upload_pipeline.alerts (first_at, last_at, kind, severity, service, job_id, message, details)
        VALUES (clock_timestamp(), clock_timestamp(), kind, severity, service, job, message, coalesce(details, '{}'))
        RETURNING * INTO a;
    END IF;
    IF a.count::text ~ '^10*$' THEN
        PERFORM pg_notify('tvdb_alerts', jsonb_build_object(
            'alert_id', a.alert_id, 'kind', a.kind, 'severity', a.severity, 'service', a.service,
            'job_id', a.job_id, 'message', a.message, 'count', a.count, 'details', a.details)::text);
    END IF;
    RETURN a.alert_id;
END
$$;
COMMENT ON FUNCTION tvdb._alert(text, text, text, uuid, text, jsonb) IS 'internal: raise (or coalesce) an alert and notify tvdb_alerts';
REVOKE ALL ON FUNCTION tvdb._alert(text, text, text, uuid, text, jsonb) FROM PUBLIC;

-- A job that failed, by any path: an alert (retries_exhausted when it gave
-- up after its tries, else job_failed), naming the service of its stage.
-- SECURITY DEFINER: an application moving a job by hand writes no alert row itself.
CREATE FUNCTION tvdb._alert_job_failed() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM tvdb._alert(
        CASE WHEN NEW.failure_class = 'retries_exhausted' THEN 'retries_exhausted' ELSE 'job_failed' END,
        'error',
        CASE NEW.status WHEN 'failed_embedding' THEN 'openai'
                        WHEN 'failed_parse' THEN 'llamaparse' END,
        NEW.job_id,
        format('job %s %s: %s', NEW.job_id, NEW.status, coalesce(NEW.last_error, 'no reason given')),
        jsonb_strip_nulls(jsonb_build_object('status', NEW.status, 'class', NEW.failure_class,
                                             'attempts', NEW.attempts)));
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION tvdb._alert_job_failed() IS 'internal (trigger): alert on a job that failed';
REVOKE ALL ON FUNCTION tvdb._alert_job_failed() FROM PUBLIC;

DO $$
BEGIN
    EXECUTE format('CREATE TRIGGER upload_jobs_alert_failed AFTER UPDATE OF status ON upload_pipeline.upload_jobs '
                   'FOR EACH ROW WHEN (NEW.status IN (%s) AND OLD.status IS DISTINCT FROM NEW.status) '
                   'EXECUTE FUNCTION tvdb._alert_job_failed()', tvdb._status_list(false, true));
END
$$;

CREATE VIEW tvdb.alerts AS
    SELECT alert_id, kind, severity, service, count, message, first_at, last_at, job_id, details
    FROM upload_pipeline.alerts ORDER BY last_at DESC;
COMMENT ON VIEW tvdb.alerts IS 'alerts, newest first';
