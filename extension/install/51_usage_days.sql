-- What the ledger cost per UTC day and service, kept by statement triggers
-- on the ledger in the statement that writes it.  Budgets and the dashboard
-- read a period's spend here, a few rows a day, instead of summing every
-- request of the period (a month of a busy pipeline is millions).  Rows
-- are spread over slots by backend so that concurrent writers rarely wait
-- for each other.  Not dumped: a restore's ledger rows refill it.
CREATE TABLE upload_pipeline.usage_days (
    day      date NOT NULL,
    service  text NOT NULL,
    slot     smallint NOT NULL,
    cost_usd numeric NOT NULL,
    PRIMARY KEY (day, service, slot)
);
COMMENT ON TABLE upload_pipeline.usage_days IS
    'the ledger''s cost per UTC day and service (the sum over slots), kept by its triggers; not dumped';

-- One upsert of a statement's changes, in key order (no deadlock).
CREATE FUNCTION tvdb._usage_days_add(changes jsonb) RETURNS void LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO upload_pipeline.usage_days AS d (day, service, slot, cost_usd)
    SELECT (c->>'day')::date, c->>'service', (pg_backend_pid() % 8)::smallint, (c->>'cost')::numeric
    FROM jsonb_array_elements(changes) c
    ORDER BY 1, 2
    ON CONFLICT (day, service, slot) DO UPDATE SET cost_usd = d.cost_usd + excluded.cost_usd
$$;

CREATE FUNCTION tvdb._usage_days_kept() RETURNS trigger LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    changes jsonb;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM upload_pipeline.usage_days;
        RETURN NULL;
    ELSIF TG_OP = 'INSERT' THEN
        SELECT jsonb_agg(jsonb_build_object('day', day, 'service', service, 'cost', cost)) INTO changes
        FROM (SELECT (n.ts AT TIME ZONE 'UTC')::date AS day, n.service, sum(n.cost_usd) AS cost
              FROM new_rows n GROUP BY 1, 2 HAVING sum(n.cost_usd) <> 0) s;
    ELSIF TG_OP = 'UPDATE' THEN
        SELECT jsonb_agg(jsonb_build_object('day', day, 'service', service, 'cost', cost)) INTO changes
        FROM (SELECT day, service, sum(cost) AS cost
              FROM (SELECT (n.ts AT TIME ZONE 'UTC')::date AS day, n.service, n.cost_usd AS cost FROM new_rows n
                    UNION ALL
                    SELECT (o.ts AT TIME ZONE 'UTC')::date, o.service, -o.cost_usd FROM old_rows o) x
              GROUP BY 1, 2 HAVING sum(cost) <> 0) s;
    ELSE
        SELECT jsonb_agg(jsonb_build_object('day', day, 'service', service, 'cost', -cost)) INTO changes
        FROM (SELECT (o.ts AT TIME ZONE 'UTC')::date AS day, o.service, sum(o.cost_usd) AS cost
              FROM old_rows o GROUP BY 1, 2 HAVING sum(o.cost_usd) <> 0) s;
    END IF;
    IF changes IS NOT NULL THEN
        PERFORM tvdb._usage_days_add(changes);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER usage_days_insert AFTER INSERT ON upload_pipeline.usage
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tvdb._usage_days_kept();
CREATE TRIGGER usage_days_update AFTER UPDATE ON upload_pipeline.usage
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tvdb._usage_days_kept();
CREATE TRIGGER usage_days_delete AFTER DELETE ON upload_pipeline.usage
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tvdb._usage_days_kept();
CREATE TRIGGER usage_days_truncate AFTER TRUNCATE ON upload_pipeline.usage
    FOR EACH STATEMENT EXECUTE FUNCTION tvdb._usage_days_kept();

-- What the ledger held before (an update from 0.1.0); nothing on a new install.
INSERT INTO upload_pipeline.usage_days (day, service, slot, cost_usd)
SELECT (u.ts AT TIME ZONE 'UTC')::date, u.service, 0, sum(u.cost_usd)
FROM upload_pipeline.usage u GROUP BY 1, 2 HAVING sum(u.cost_usd) <> 0;

-- The spend of some services since a UTC day.
CREATE FUNCTION tvdb._spent_since(services text[], since date) RETURNS numeric LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(sum(d.cost_usd), 0) FROM upload_pipeline.usage_days d
    WHERE d.day >= since AND d.service = ANY (services)
$$;
-- What is still reserved is read from the few rows that hold a reservation.
CREATE INDEX usage_reserved_ts_idx ON upload_pipeline.usage (ts) WHERE reserved_usd > 0;

COMMENT ON FUNCTION tvdb._usage_days_add(jsonb) IS 'internal: add a statement''s cost changes to usage_days';
COMMENT ON FUNCTION tvdb._usage_days_kept() IS 'internal (trigger): usage_days follows the ledger';
COMMENT ON FUNCTION tvdb._spent_since(text[], date) IS 'internal: the ledger''s cost of these services since a UTC day';
REVOKE ALL ON FUNCTION tvdb._usage_days_add(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._usage_days_kept() FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._spent_since(text[], date) FROM PUBLIC;
