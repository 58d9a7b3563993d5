-- Budgets: a limit in USD per service (or all) and period (day or month,
-- in UTC).  Each request's estimate is reserved against every budget that
-- covers it when its ledger row is written, before it is sent (53_ledger);
-- a request that would take a budget past its limit is not sent.

CREATE TABLE upload_pipeline.budgets (
    service    text NOT NULL CHECK (service IN ('llamaparse', 'openai', 'all')),
    period     text NOT NULL CHECK (period IN ('day', 'month')),
    limit_usd  numeric NOT NULL CHECK (limit_usd >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    alerted_80  timestamptz,   -- the period whose 80 % alert was raised
    alerted_100 timestamptz,   -- the period whose 100 % alert was raised
    PRIMARY KEY (service, period)
);
COMMENT ON TABLE upload_pipeline.budgets IS 'spending limits in USD by service (or all) and period (UTC day or month); set with tvdb.set_budget()';
SELECT pg_catalog.pg_extension_config_dump('upload_pipeline.budgets', '');
CREATE INDEX usage_service_ts_idx ON upload_pipeline.usage (service, ts);

-- Where a period that holds at begins (UTC).
CREATE FUNCTION tvdb._period_start(period text, at timestamptz) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT date_trunc(period, at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' $$;

CREATE FUNCTION tvdb.set_budget(service text, period text, limit_usd numeric) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF service IS NULL OR service NOT IN ('llamaparse', 'openai', 'all') THEN
        RAISE EXCEPTION 'unknown budget service "%"', service
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use llamaparse, openai or all.';
    END IF;
    IF period IS NULL OR period NOT IN ('day', 'month') THEN
        RAISE EXCEPTION 'unknown budget period "%"', period
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use day or month (UTC).';
    END IF;
    IF limit_usd < 0 THEN
        RAISE EXCEPTION 'a budget cannot be negative'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('limit_usd was %s.', limit_usd),
                  HINT = 'Use 0 to stop all spending, or NULL to remove the budget.';
    END IF;
    IF limit_usd IS NULL THEN
        DELETE FROM upload_pipeline.budgets b WHERE b.service = set_budget.service AND b.period = set_budget.period;
    ELSE
        INSERT INTO upload_pipeline.budgets AS b (service, period, limit_usd)
        VALUES (set_budget.service, set_budget.period, set_budget.limit_usd)
        ON CONFLICT ON CONSTRAINT budgets_pkey
        DO UPDATE SET limit_usd = EXCLUDED.limit_usd, updated_at = now();
    END IF;
    -- jobs waiting for room look again now
    UPDATE upload_pipeline.upload_jobs u SET next_poll_at = NULL, next_retry_at = NULL
    WHERE u.lease_owner IS NULL AND u.next_poll_at > now()
      AND (SELECT e.code FROM upload_pipeline.events e WHERE e.job_id = u.job_id ORDER BY e.seq DESC LIMIT 1)
          IN ('budget_exhausted', 'budget_throttled');
    PERFORM tvdb._wake_workers();
END
$$;
COMMENT ON FUNCTION tvdb.set_budget(text, text, numeric) IS
    'set (or with NULL remove) the USD limit for llamaparse, openai or all in a UTC day or month';

-- What a budget has spent and holds reserved in its current period.
CREATE FUNCTION tvdb._budget_used(service text, period text, OUT spent numeric, OUT reserved numeric)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    -- spent from the daily totals (51_usage_days); reserved from the rows that hold some
    SELECT tvdb._spent_since(CASE WHEN _budget_used.service = 'all' THEN '{llamaparse,openai}'
                                  ELSE ARRAY[_budget_used.service] END,
                             (tvdb._period_start(period, now()) AT TIME ZONE 'UTC')::date),
           (SELECT coalesce(sum(u.reserved_usd), 0) FROM upload_pipeline.usage u
            WHERE u.reserved_usd > 0 AND u.ts >= tvdb._period_start(period, now())
              AND (_budget_used.service = 'all' OR u.service = _budget_used.service)
              AND u.service IN ('llamaparse', 'openai'))
$$;

CREATE VIEW tvdb.budgets AS
    SELECT b.service, b.period, b.limit_usd, p.start AS period_start, p.start + ('1 ' || b.period)::interval AS period_end,
           x.spent AS spent_usd, x.reserved AS reserved_usd, b.limit_usd - x.spent - x.reserved AS remaining_usd,
           round((x.spent + x.reserved) * extract(epoch FROM ('1 ' || b.period)::interval)
                 / greatest(extract(epoch FROM now() - p.start), 60), 6) AS forecast_usd
    FROM upload_pipeline.budgets b,
         LATERAL (SELECT tvdb._period_start(b.period, now()) AS start) p,
         LATERAL tvdb._budget_used(b.service, b.period) x;
COMMENT ON VIEW tvdb.budgets IS
    'each budget in its current period: spent, reserved (requests not yet settled), remaining, and the spend forecast for the whole period at the rate so far';

-- May a request of this estimate go?  NULL if so, else why not.  Budget rows
-- are locked (in one order) until the caller commits, so that workers
-- racing for the last dollars reserve one after the other.  A budget that
-- reaches 80 % and 100 % raises an alert, once each per period.
CREATE FUNCTION tvdb._budget_refusal(service text, estimate numeric) RETURNS text
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b record;
    used record;
    start timestamptz;
    why text;
BEGIN
    IF coalesce(estimate, 0) <= 0 THEN
        RETURN NULL;
    END IF;
    FOR b IN SELECT x.service, x.period, x.limit_usd, x.alerted_80, x.alerted_100 FROM upload_pipeline.budgets x
             WHERE x.service IN (_budget_refusal.service, 'all')
             ORDER BY x.service, x.period FOR UPDATE
    LOOP
        used := tvdb._budget_used(b.service, b.period);
        start := tvdb._period_start(b.period, now());
        IF used.spent + used.reserved + estimate > b.limit_usd THEN
            why := format('the %s budget for %s (%s USD) has %s USD spent and %s USD reserved; this request needs %s USD',
                          b.period, b.service, b.limit_usd, used.spent, used.reserved, round(estimate, 6));
            IF b.alerted_100 IS DISTINCT FROM start THEN
                UPDATE upload_pipeline.budgets x SET alerted_100 = start
                WHERE x.service = b.service AND x.period = b.period;
                PERFORM tvdb._alert('budget_exhausted', 'critical', nullif(b.service, 'all'), NULL,
                                    why || ': requests wait until the period rolls over or the limit is raised',
                                    jsonb_build_object('budget', b.service, 'period', b.period, 'limit_usd', b.limit_usd,
                                                       'spent_usd', used.spent, 'reserved_usd', used.reserved));
            END IF;
            RETURN why;
        END IF;
        -- above tvdb.budget_throttle_at, at most tvdb.budget_throttle_rpm requests a minute
        IF current_setting('tvdb.budget_throttle_at')::numeric > 0
           AND used.spent + used.reserved + estimate > current_setting('tvdb.budget_throttle_at')::numeric * b.limit_usd
           AND (SELECT count(*) FROM upload_pipeline.usage u
                WHERE u.ts > clock_timestamp() - interval '1 minute'
                  AND (b.service = 'all' OR u.service = b.service) AND u.estimated_usd > 0)
               >= current_setting('tvdb.budget_throttle_rpm')::integer THEN
            RETURN format('throttled: the %s budget for %s would pass tvdb.budget_throttle_at (%s of %s USD used or reserved); at most %s requests a minute',
                          b.period, b.service, round(used.spent + used.reserved, 6), b.limit_usd,
                          current_setting('tvdb.budget_throttle_rpm'));
        END IF;
        IF used.spent + used.reserved + estimate >= 0.8 * b.limit_usd AND b.alerted_80 IS DISTINCT FROM start THEN
            UPDATE upload_pipeline.budgets x SET alerted_80 = start
            WHERE x.service = b.service AND x.period = b.period;
            PERFORM tvdb._alert('budget_80', 'warn', nullif(b.service, 'all'), NULL,
                                format('the %s budget for %s is 80 %% used: %s of %s USD spent or reserved',
                                       b.period, b.service, round(used.spent + used.reserved + estimate, 6), b.limit_usd),
                                jsonb_build_object('budget', b.service, 'period', b.period, 'limit_usd', b.limit_usd,
                                                   'spent_usd', used.spent, 'reserved_usd', used.reserved + estimate));
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

-- A request the budget refused: its job waits in its status (no try
-- spent), due again in a minute or when a budget changes; one warning
-- event while it waits, not one a minute.
CREATE FUNCTION tvdb._budget_wait(job uuid, owner text, reason text) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    wait interval := CASE WHEN reason LIKE 'throttled:%'
                          THEN make_interval(secs => 60.0 / current_setting('tvdb.budget_throttle_rpm')::integer)
                          ELSE interval '1 minute' END;
BEGIN
    UPDATE upload_pipeline.upload_jobs u
    SET lease_owner = NULL, lease_expires_at = NULL,
        next_poll_at = clock_timestamp() + wait, next_retry_at = clock_timestamp() + wait
    WHERE u.job_id = job AND u.lease_owner = owner;
    INSERT INTO upload_pipeline.events (job_id, document_id, type, severity, code, payload, correlation_id)
    SELECT u.job_id, u.document_id, 'stage_error', 'warn',
           CASE WHEN reason LIKE 'throttled:%' THEN 'budget_throttled' ELSE 'budget_exhausted' END,
           jsonb_build_object('error', reason), u.correlation_id
    FROM upload_pipeline.upload_jobs u
    WHERE u.job_id = job
      AND coalesce((SELECT e.code FROM upload_pipeline.events e WHERE e.job_id = job ORDER BY e.seq DESC LIMIT 1), '')
          <> CASE WHEN reason LIKE 'throttled:%' THEN 'budget_throttled' ELSE 'budget_exhausted' END;
END
$$;

COMMENT ON FUNCTION tvdb._period_start(text, timestamptz) IS 'internal: where a budget period (UTC day or month) begins';
COMMENT ON FUNCTION tvdb._budget_used(text, text) IS 'internal: a budget''s spent and reserved USD in its current period';
COMMENT ON FUNCTION tvdb._budget_refusal(text, numeric) IS 'internal (worker): why a request of this estimate may not go, or NULL';
COMMENT ON FUNCTION tvdb._budget_wait(uuid, text, text) IS 'internal (worker): a job whose request the budget refused waits';
REVOKE ALL ON FUNCTION tvdb.set_budget(text, text, numeric) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._budget_refusal(text, numeric) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._budget_wait(uuid, text, text) FROM PUBLIC;
