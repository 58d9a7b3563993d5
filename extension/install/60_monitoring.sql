-- Monitoring: what an operator (role tvdb_monitor) polls, and what
-- tvdb-webhookd's GET /metrics and GET /health serve.  Each view reads a
-- SECURITY DEFINER function, so tvdb_monitor needs no privilege on the
-- tables, and sees the workers' rows of pg_stat_activity (a non-superuser
-- sees only their pid).  Every query here is an index range scan over what
-- is open or recent, save the count of finished jobs (below): the plans on
-- a million jobs are in the README ("Monitoring").

-- Jobs by status.  Jobs still open (in a working or a failure status) are
-- counted from the queue of open jobs (11_queue.sql), which holds nothing
-- else: counts, oldest and leases cost what the backlog is, whatever the
-- history.  The finished (terminal) statuses are counted as they finish,
-- in upload_pipeline.finished_counts: no view reads the history.
-- complete and the failure statuses, as a SQL list: the statuses that
-- finish a job's run (tvdb.throughput counts them).
CREATE FUNCTION tvdb._finished_list() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(quote_literal(s.status), ', ' ORDER BY s.ordinal)
    FROM tvdb.statuses s WHERE s.status = 'complete' OR s.is_failure
$$;
COMMENT ON FUNCTION tvdb._finished_list() IS
    'internal: complete and the failure statuses as a SQL list, from the C table';
REVOKE ALL ON FUNCTION tvdb._finished_list() FROM PUBLIC;

CREATE FUNCTION tvdb._pipeline_status(OUT status text, OUT ordinal integer, OUT is_terminal boolean,
                                      OUT is_failure boolean, OUT jobs bigint, OUT oldest timestamptz,
                                      OUT leased bigint)
    RETURNS SETOF record LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.status, s.ordinal, s.is_terminal, s.is_failure, coalesce(o.jobs, t.jobs, 0), o.oldest,
           CASE WHEN NOT s.is_terminal THEN coalesce(o.leased, 0) END
    FROM tvdb.statuses s
    LEFT JOIN (SELECT q.status, count(*) AS jobs, min(q.status_changed_at) AS oldest,
                      count(*) FILTER (WHERE q.lease_expires_at > now()) AS leased
               FROM upload_pipeline.job_queue q GROUP BY q.status) o USING (status)
    LEFT JOIN (SELECT f.status, sum(f.jobs)::bigint AS jobs
               FROM upload_pipeline.finished_counts f GROUP BY f.status) t USING (status)
    ORDER BY s.ordinal
$$;
-- The recent events: stage latency reads a window of time; throughput only
-- the few events that finish a job (complete or a failure status).
CREATE INDEX events_ts_idx ON upload_pipeline.events (ts);
DO $$
BEGIN
    EXECUTE format('CREATE INDEX events_finished_ts_idx ON upload_pipeline.events (ts) WHERE to_status IN (%s)',
                   tvdb._finished_list());
END
$$;

CREATE VIEW tvdb.pipeline_status AS
    SELECT status, jobs, oldest, now() - oldest AS oldest_age, leased, is_terminal, is_failure
    FROM tvdb._pipeline_status();
COMMENT ON VIEW tvdb.pipeline_status IS
    'every status in pipeline order (none left out): how many jobs are in it, since when the oldest, and how many are leased by a worker now (oldest and leased: open statuses only)';

-- Time spent in each status, from the status changes of a recent window:
-- each event's in_previous_state is how long its job stayed in from_status.
CREATE FUNCTION tvdb.stage_latency(since interval)
    RETURNS TABLE (stage text, count bigint, p50_seconds double precision, p95_seconds double precision,
                   p99_seconds double precision, max_seconds double precision)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- EXECUTE plans with the window's value, so the events' time index is used
    RETURN QUERY EXECUTE $q$
        SELECT s.status, coalesce(l.n, 0), l.q[1], l.q[2], l.q[3], l.max
        FROM tvdb.statuses s
        LEFT JOIN (SELECT e.from_status, count(*) AS n,
                          percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM e.in_previous_state)) AS q,
                          max(extract(epoch FROM e.in_previous_state))::double precision AS max
                   FROM upload_pipeline.events e
                   WHERE e.ts > now() - $1 AND e.from_status IS NOT NULL AND e.in_previous_state IS NOT NULL
                   GROUP BY e.from_status) l ON l.from_status = s.status
        WHERE NOT s.is_terminal
        ORDER BY s.ordinal$q$ USING since;
END
$$;
COMMENT ON FUNCTION tvdb.stage_latency(interval) IS
    'per status a job can leave: how many left it within the window and the 50th, 95th and 99th percentile and longest time they spent in it, in seconds';
CREATE VIEW tvdb.stage_latency AS SELECT * FROM tvdb.stage_latency(interval '1 hour');
COMMENT ON VIEW tvdb.stage_latency IS 'tvdb.stage_latency(interval) over the last hour';

-- Jobs that reached complete or a failure status, per minute, the last
-- hour (the current minute last, still counting); minutes with none show 0.
CREATE FUNCTION tvdb._throughput(since interval, OUT minute timestamptz, OUT completed bigint, OUT failed bigint)
    RETURNS SETOF record LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- planned with the window's value and the statuses spelled out, so that
    -- the partial index of finishing events is used
    RETURN QUERY EXECUTE format($q$
        SELECT m.minute, coalesce(f.completed, 0), coalesce(f.failed, 0)
        FROM generate_series(date_trunc('minute', now() - $1 + interval '1 minute'), date_trunc('minute', now()),
                             interval '1 minute') AS m(minute)
        LEFT JOIN (SELECT date_trunc('minute', e.ts) AS minute,
                          count(*) FILTER (WHERE e.to_status = 'complete') AS completed,
                          count(*) FILTER (WHERE e.to_status <> 'complete') AS failed
                   FROM upload_pipeline.events e
                   WHERE e.ts >= date_trunc('minute', now() - $1 + interval '1 minute') AND e.from_status IS NOT NULL
                     AND e.to_status IN (%s)
                   GROUP BY 1) f USING (minute)
        ORDER BY m.minute$q$, tvdb._finished_list()) USING since;
END
$$;
CREATE VIEW tvdb.throughput AS SELECT * FROM tvdb._throughput(interval '1 hour');
COMMENT ON VIEW tvdb.throughput IS
    'jobs (documents) that completed and that failed, per minute over the last hour; the current minute is the last row';

-- ok, degraded or down, and why, from what health measured: down when no
-- worker runs for this database (nothing would move); degraded for
-- anything that holds documents back.  A function of its inputs only, so
-- that a test can try every case.
CREATE FUNCTION tvdb._health_verdict(workers integer, workers_expected integer, why_no_worker text,
                                     overdue bigint, stuck bigint, circuits jsonb, budgets jsonb,
                                     OUT status text, OUT reasons text[])
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH r AS (
        SELECT array_remove(ARRAY[
            CASE WHEN workers = 0 THEN coalesce(why_no_worker, 'no tvdb worker is running for this database') END,
            CASE WHEN workers > 0 AND workers < workers_expected
                 THEN format('%s of %s tvdb workers are running', workers, workers_expected) END,
            CASE WHEN overdue > 0 AND workers > 0
                 THEN format('%s jobs have been due for more than a minute and no worker took them', overdue) END,
            CASE WHEN stuck > 0
                 THEN format('%s jobs have been in one working status for longer than tvdb.stuck_after', stuck) END]
          || ARRAY(SELECT format('circuit %s is %s%s', c ->> 'service', c ->> 'state',
                                 coalesce(': ' || (c ->> 'last_error'), ''))
                   FROM jsonb_array_elements(coalesce(circuits, '[]')) c
                   WHERE c ->> 'state' <> 'closed' ORDER BY c ->> 'service')
          || ARRAY(SELECT format('the %s budget for %s is used up (%s of %s USD spent or reserved)',
                                 b ->> 'period', b ->> 'service',
                                 (b ->> 'spent_usd')::numeric + (b ->> 'reserved_usd')::numeric, b ->> 'limit_usd')
                   FROM jsonb_array_elements(coalesce(budgets, '[]')) b
                   WHERE (b ->> 'remaining_usd')::numeric <= 0 ORDER BY b ->> 'service', b ->> 'period'),
          NULL) AS reasons)
    SELECT CASE WHEN workers = 0 THEN 'down' WHEN cardinality(r.reasons) > 0 THEN 'degraded' ELSE 'ok' END,
           r.reasons
    FROM r
$$;
COMMENT ON FUNCTION tvdb._health_verdict(integer, integer, text, bigint, bigint, jsonb, jsonb) IS
    'internal: ok, degraded or down, and the reasons, from what tvdb.health measured';

-- Why no worker serves this database, if none could (NULL: one should).
CREATE FUNCTION tvdb._why_no_worker() RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN current_setting('shared_preload_libraries') !~ '(^|[ ,])"?tvdb"?($|[ ,])'
            THEN 'no tvdb worker: tvdb is not in shared_preload_libraries'
        WHEN current_setting('tvdb.workers', true)::integer = 0
            THEN 'no tvdb worker: tvdb.workers is 0'
        WHEN NOT current_database() = ANY (string_to_array(replace(current_setting('tvdb.database', true), ' ', ''), ','))
            THEN format('no tvdb worker: tvdb.database is %s, not this database (%s)',
                        current_setting('tvdb.database', true), current_database())
        END
$$;
COMMENT ON FUNCTION tvdb._why_no_worker() IS 'internal: why no worker would serve this database, or NULL';

CREATE FUNCTION tvdb._health(
        OUT status text, OUT reason text, OUT reasons text[],
        OUT workers integer, OUT workers_expected integer, OUT last_pass timestamptz,
        OUT backlog bigint, OUT oldest_unfinished timestamptz, OUT overdue bigint, OUT stuck bigint,
        OUT circuits jsonb, OUT budgets jsonb, OUT checked_at timestamptz)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    why text := tvdb._why_no_worker();
    v record;
BEGIN
    checked_at := now();
    workers_expected := CASE WHEN why IS NULL THEN current_setting('tvdb.workers', true)::integer ELSE 0 END;
    -- a worker runs a transaction per pass: its last state change is its last pass
    SELECT count(*), max(a.state_change) INTO workers, last_pass
    FROM pg_catalog.pg_stat_activity a
    WHERE a.backend_type = 'tvdb worker' AND a.datname = current_database();
    -- the unfinished jobs, from the queue of open jobs; overdue: due (no
    -- lease, no poll to wait for) for more than a minute
    EXECUTE format($q$
        SELECT count(*), min(q.status_changed_at),
               count(*) FILTER (WHERE q.due_at < now() - interval '1 minute'),
               count(*) FILTER (WHERE q.status_changed_at < now() - current_setting('tvdb.stuck_after', true)::interval)
        FROM upload_pipeline.job_queue q WHERE q.status IN (%s)$q$, tvdb._status_list(true, false))
    INTO backlog, oldest_unfinished, overdue, stuck;
    SELECT coalesce(jsonb_agg(jsonb_build_object('service', c.service, 'state', c.state, 'since', c.since,
                                                 'failures', c.failures, 'last_error', c.last_error)
                              ORDER BY c.service), '[]')
    INTO circuits FROM tvdb._circuits() c;
    SELECT coalesce(jsonb_agg(jsonb_build_object('service', b.service, 'period', b.period, 'limit_usd', b.limit_usd,
                                                 'spent_usd', b.spent_usd, 'reserved_usd', b.reserved_usd,
                                                 'remaining_usd', b.remaining_usd)
                              ORDER BY b.service, b.period), '[]')
    INTO budgets FROM tvdb.budgets b;
    v := tvdb._health_verdict(workers, workers_expected, why, overdue, stuck, circuits, budgets);
    status := v.status;
    reasons := v.reasons;
    reason := coalesce(array_to_string(v.reasons, '; '), '');
    IF reason = '' THEN
        reason := format('%s of %s workers running, %s jobs unfinished, none overdue', workers, workers_expected, backlog);
    END IF;
    RETURN;
END
$$;
CREATE VIEW tvdb.health AS SELECT * FROM tvdb._health();
COMMENT ON VIEW tvdb.health IS
    'one row: ok, degraded or down and why; the workers running for this database and their last pass, unfinished jobs (oldest, overdue, stuck), circuits and budgets';

COMMENT ON FUNCTION tvdb._pipeline_status() IS 'internal: tvdb.pipeline_status, as the extension''s owner';
COMMENT ON FUNCTION tvdb._throughput(interval) IS 'internal: tvdb.throughput, as the extension''s owner';
COMMENT ON FUNCTION tvdb._health() IS 'internal: tvdb.health, as the extension''s owner (it reads the workers in pg_stat_activity)';

REVOKE ALL ON FUNCTION tvdb._pipeline_status() FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb.stage_latency(interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._throughput(interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._health_verdict(integer, integer, text, bigint, bigint, jsonb, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._why_no_worker() FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._health() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tvdb._pipeline_status(), tvdb.stage_latency(interval), tvdb._throughput(interval),
                          tvdb._health() TO tvdb_monitor;
GRANT SELECT ON tvdb.pipeline_status, tvdb.stage_latency, tvdb.throughput, tvdb.health TO tvdb_monitor;
