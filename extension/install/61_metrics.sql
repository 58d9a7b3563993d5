-- Prometheus metrics: tvdb.metrics() returns the whole exposition (text
-- format 0.0.4) in one round trip, for tvdb-webhookd's GET /metrics.

-- A label value as the format wants it: backslash, double quote and
-- newline escaped.
CREATE FUNCTION tvdb._prom_escape(value text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT replace(replace(replace(value, '\', '\\'), '"', '\"'), E'\n', '\n') $$;

-- One sample line: name{label="value",...} value.  labels alternate names
-- and values; a NULL value is an empty string.
CREATE FUNCTION tvdb._prom_sample(name text, value text, VARIADIC labels text[] DEFAULT '{}')
    RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT name
           || coalesce('{' || (SELECT string_agg(format('%s="%s"', labels[i], coalesce(tvdb._prom_escape(labels[i + 1]), '')),
                                                 ',' ORDER BY i)
                               FROM generate_series(1, cardinality(labels) - 1, 2) AS i) || '}', '')
           || ' ' || value
$$;

-- A metric family: its # HELP and # TYPE lines, then its samples (lines
-- already joined), each line ending in a newline.
CREATE FUNCTION tvdb._prom_family(name text, type text, help text, samples text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format(E'# HELP %s %s\n# TYPE %s %s\n', name, replace(replace(help, '\', '\\'), E'\n', '\n'), name, type)
           || coalesce(samples || E'\n', '')
$$;

-- The buckets of the stage latency histogram, in seconds.
CREATE FUNCTION tvdb._latency_buckets() RETURNS double precision[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT ARRAY[0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600]::double precision[] $$;

CREATE FUNCTION tvdb.metrics(latency_window interval DEFAULT interval '5 minutes') RETURNS text
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h record;
    jobs text;
    latency text;
    services text;
    circuits text;
    budgets text;
    alerts text;
    health text;
    rate text;
    states constant text[] := ARRAY['closed', 'open', 'half_open', 'blocked'];
BEGIN
    -- jobs by status: one index range per status
    SELECT tvdb._prom_family('tvdb_jobs', 'gauge', 'Jobs in each status.',
               string_agg(tvdb._prom_sample('tvdb_jobs', p.jobs::text, 'status', p.status), E'\n' ORDER BY p.ordinal))
        || tvdb._prom_family('tvdb_jobs_leased', 'gauge', 'Jobs in each status that a worker holds a lease on now.',
               string_agg(tvdb._prom_sample('tvdb_jobs_leased', p.leased::text, 'status', p.status), E'\n' ORDER BY p.ordinal))
        || tvdb._prom_family('tvdb_jobs_oldest_age_seconds', 'gauge',
               'Seconds since the oldest job in each unfinished status entered it (statuses with jobs only).',
               string_agg(tvdb._prom_sample('tvdb_jobs_oldest_age_seconds',
                                            round(extract(epoch FROM now() - p.oldest), 3)::text, 'status', p.status),
                          E'\n' ORDER BY p.ordinal) FILTER (WHERE p.jobs > 0 AND NOT p.is_terminal AND NOT p.is_failure))
    INTO jobs
    FROM tvdb._pipeline_status() p;

    -- time spent in each status, for the status changes of the window
    -- (EXECUTE plans with the window's value: the events' time index)
    EXECUTE $q$
    WITH d AS (
        SELECT e.from_status AS stage, extract(epoch FROM e.in_previous_state)::double precision AS s
        FROM upload_pipeline.events e
        WHERE e.ts > now() - $1 AND e.from_status IS NOT NULL AND e.in_previous_state IS NOT NULL
    ), per_stage AS (
        SELECT st.status AS stage, st.ordinal, count(d.s) AS n, coalesce(sum(d.s), 0) AS total,
               coalesce(array_agg(d.s) FILTER (WHERE d.s IS NOT NULL), '{}') AS seconds
        FROM tvdb.statuses st LEFT JOIN d ON d.stage = st.status
        WHERE NOT st.is_terminal
        GROUP BY st.status, st.ordinal
    )
    SELECT tvdb._prom_family('tvdb_stage_duration_seconds', 'histogram',
               'Seconds jobs spent in each status, over the status changes of the last '
               || extract(epoch FROM $1)::double precision::text || ' s (a sliding window: use it without rate()).',
               string_agg(lines, E'\n' ORDER BY ordinal))
    FROM (SELECT ps.ordinal,
                 (SELECT string_agg(tvdb._prom_sample('tvdb_stage_duration_seconds_bucket',
                                                      (SELECT count(*) FROM unnest(ps.seconds) x WHERE x <= b.le)::text,
                                                      'stage', ps.stage, 'le', b.le::text), E'\n' ORDER BY b.i)
                  FROM unnest(tvdb._latency_buckets()) WITH ORDINALITY AS b(le, i))
                 || E'\n' || tvdb._prom_sample('tvdb_stage_duration_seconds_bucket', ps.n::text, 'stage', ps.stage, 'le', '+Inf')
                 || E'\n' || tvdb._prom_sample('tvdb_stage_duration_seconds_sum', ps.total::text, 'stage', ps.stage)
                 || E'\n' || tvdb._prom_sample('tvdb_stage_duration_seconds_count', ps.n::text, 'stage', ps.stage) AS lines
          FROM per_stage ps) x$q$
    INTO latency USING latency_window;

    -- jobs finished in the last full minute
    SELECT tvdb._prom_family('tvdb_throughput_per_minute', 'gauge',
               'Jobs that reached complete, and a failure status, in the last full minute.',
               tvdb._prom_sample('tvdb_throughput_per_minute', t.completed::text, 'outcome', 'completed') || E'\n' ||
               tvdb._prom_sample('tvdb_throughput_per_minute', t.failed::text, 'outcome', 'failed'))
    INTO rate
    FROM tvdb._throughput(interval '2 minutes') t ORDER BY t.minute LIMIT 1;

    -- the ledger since 00:00 UTC: one index range of today's rows
    WITH today AS (
        SELECT u.service, count(*) AS requests,
               count(*) FILTER (WHERE u.state = 'unknown' OR u.http_status NOT BETWEEN 200 AND 299) AS errors,
               sum(u.cost_usd) AS cost
        FROM upload_pipeline.usage u
        WHERE u.ts >= tvdb._period_start('day', now())
        GROUP BY u.service
    ), s AS (
        SELECT coalesce(t.service, k.service) AS service, coalesce(t.requests, 0) AS requests,
               coalesce(t.errors, 0) AS errors, coalesce(t.cost, 0) AS cost
        FROM today t FULL JOIN (VALUES ('llamaparse'), ('openai')) AS k(service) USING (service)
    )
    SELECT tvdb._prom_family('tvdb_service_requests_total', 'counter',
               'Requests to each service since 00:00 UTC (the ledger; resets daily).',
               string_agg(tvdb._prom_sample('tvdb_service_requests_total', s.requests::text, 'service', s.service), E'\n' ORDER BY s.service))
        || tvdb._prom_family('tvdb_service_request_errors_total', 'counter',
               'Requests to each service since 00:00 UTC answered with a non-2xx status or not answered at all (resets daily).',
               string_agg(tvdb._prom_sample('tvdb_service_request_errors_total', s.errors::text, 'service', s.service), E'\n' ORDER BY s.service))
        || tvdb._prom_family('tvdb_service_cost_usd_total', 'counter',
               'What the requests to each service cost since 00:00 UTC, in USD (resets daily).',
               string_agg(tvdb._prom_sample('tvdb_service_cost_usd_total', s.cost::text, 'service', s.service), E'\n' ORDER BY s.service))
    INTO services FROM s;

    SELECT tvdb._prom_family('tvdb_circuit_state', 'gauge',
               'Each service''s circuit breaker: 1 for the state it is in, 0 for the others.',
               string_agg(tvdb._prom_sample('tvdb_circuit_state', (c.state = st)::int::text, 'service', c.service, 'state', st),
                          E'\n' ORDER BY c.service, i))
    INTO circuits
    FROM tvdb._circuits() c, unnest(states) WITH ORDINALITY AS x(st, i);
    SELECT circuits || tvdb._prom_family('tvdb_circuit_failures', 'gauge', 'Failures in a row of each service''s requests.',
               string_agg(tvdb._prom_sample('tvdb_circuit_failures', c.failures::text, 'service', c.service), E'\n' ORDER BY c.service))
    INTO circuits FROM tvdb._circuits() c;

    SELECT tvdb._prom_family('tvdb_budget_limit_usd', 'gauge', 'Each budget''s limit for its period, in USD.',
               string_agg(tvdb._prom_sample('tvdb_budget_limit_usd', b.limit_usd::text, 'service', b.service, 'period', b.period), E'\n' ORDER BY b.service, b.period))
        || tvdb._prom_family('tvdb_budget_spent_usd', 'gauge', 'What each budget has spent in its current period, in USD.',
               string_agg(tvdb._prom_sample('tvdb_budget_spent_usd', b.spent_usd::text, 'service', b.service, 'period', b.period), E'\n' ORDER BY b.service, b.period))
        || tvdb._prom_family('tvdb_budget_reserved_usd', 'gauge', 'What each budget holds for requests not yet settled, in USD.',
               string_agg(tvdb._prom_sample('tvdb_budget_reserved_usd', b.reserved_usd::text, 'service', b.service, 'period', b.period), E'\n' ORDER BY b.service, b.period))
        || tvdb._prom_family('tvdb_budget_remaining_usd', 'gauge', 'What each budget has left in its current period, in USD.',
               string_agg(tvdb._prom_sample('tvdb_budget_remaining_usd', b.remaining_usd::text, 'service', b.service, 'period', b.period), E'\n' ORDER BY b.service, b.period))
    INTO budgets FROM tvdb.budgets b;

    SELECT tvdb._prom_family('tvdb_alerts_total', 'counter', 'Alerts raised, by kind (repeats a row coalesced included).',
               string_agg(tvdb._prom_sample('tvdb_alerts_total', a.n::text, 'kind', a.kind), E'\n' ORDER BY a.kind))
    INTO alerts
    FROM (SELECT x.kind, sum(x.count) AS n FROM upload_pipeline.alerts x GROUP BY x.kind) a;
    SELECT alerts || tvdb._prom_family('tvdb_alerts_firing', 'gauge',
               'Alerts raised again within tvdb.alert_window, by kind and severity.',
               string_agg(tvdb._prom_sample('tvdb_alerts_firing', a.n::text, 'kind', a.kind, 'severity', a.severity), E'\n' ORDER BY a.kind, a.severity))
    INTO alerts
    FROM (SELECT x.kind, x.severity, count(*) AS n FROM upload_pipeline.alerts x
          WHERE x.last_at > now() - current_setting('tvdb.alert_window', true)::interval
          GROUP BY x.kind, x.severity) a;

    h := tvdb._health();
    health := tvdb._prom_family('tvdb_health', 'gauge', 'tvdb.health''s verdict: 1 for ok, degraded or down as it is, 0 for the others.',
                  (SELECT string_agg(tvdb._prom_sample('tvdb_health', (h.status = v)::int::text, 'status', v), E'\n' ORDER BY i)
                   FROM unnest(ARRAY['ok', 'degraded', 'down']) WITH ORDINALITY AS x(v, i)))
        || tvdb._prom_family('tvdb_workers', 'gauge', 'tvdb background workers running for this database.',
                  tvdb._prom_sample('tvdb_workers', h.workers::text))
        || tvdb._prom_family('tvdb_workers_expected', 'gauge', 'tvdb background workers that should run for this database (tvdb.workers, or 0 when it is not served).',
                  tvdb._prom_sample('tvdb_workers_expected', h.workers_expected::text))
        || tvdb._prom_family('tvdb_worker_last_pass_age_seconds', 'gauge', 'Seconds since a worker last looked for work (a worker with nothing to do sleeps).',
                  tvdb._prom_sample('tvdb_worker_last_pass_age_seconds', round(extract(epoch FROM now() - h.last_pass), 3)::text))
        || tvdb._prom_family('tvdb_backlog_jobs', 'gauge', 'Unfinished jobs (in a working status).',
                  tvdb._prom_sample('tvdb_backlog_jobs', h.backlog::text))
        || tvdb._prom_family('tvdb_backlog_oldest_age_seconds', 'gauge', 'Seconds since the oldest unfinished job entered its status.',
                  tvdb._prom_sample('tvdb_backlog_oldest_age_seconds', round(extract(epoch FROM now() - h.oldest_unfinished), 3)::text))
        || tvdb._prom_family('tvdb_jobs_overdue', 'gauge', 'Unfinished jobs due for more than a minute that no worker took.',
                  tvdb._prom_sample('tvdb_jobs_overdue', h.overdue::text))
        || tvdb._prom_family('tvdb_jobs_stuck', 'gauge', 'Unfinished jobs in one working status longer than tvdb.stuck_after.',
                  tvdb._prom_sample('tvdb_jobs_stuck', h.stuck::text));

    RETURN jobs || latency || rate || services || circuits || coalesce(budgets, '') || coalesce(alerts, '') || health;
END
$$;
COMMENT ON FUNCTION tvdb.metrics(interval) IS
    'every tvdb metric in Prometheus text format 0.0.4: jobs, stage latency histograms (over latency_window), throughput, requests and cost by service, circuits, budgets, alerts, health';

COMMENT ON FUNCTION tvdb._prom_escape(text) IS 'internal: a Prometheus label value, escaped';
COMMENT ON FUNCTION tvdb._prom_sample(text, text, text[]) IS 'internal: one Prometheus sample line';
COMMENT ON FUNCTION tvdb._prom_family(text, text, text, text) IS 'internal: a Prometheus metric family: HELP, TYPE and its samples';
COMMENT ON FUNCTION tvdb._latency_buckets() IS 'internal: the stage latency histogram''s bucket bounds, in seconds';
REVOKE ALL ON FUNCTION tvdb.metrics(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tvdb.metrics(interval) TO tvdb_monitor;
