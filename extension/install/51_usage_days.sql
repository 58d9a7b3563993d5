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

-- In C (src/backend/usage_days.c): the worker writes the ledger twice per request.
CREATE FUNCTION tvdb._usage_days_kept() RETURNS trigger
    AS 'MODULE_PATHNAME', 'tvdb_usage_days_kept' LANGUAGE C;
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

COMMENT ON FUNCTION tvdb._usage_days_kept() IS 'internal (trigger): usage_days follows the ledger';
COMMENT ON FUNCTION tvdb._spent_since(text[], date) IS 'internal: the ledger''s cost of these services since a UTC day';
REVOKE ALL ON FUNCTION tvdb._usage_days_kept() FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._spent_since(text[], date) FROM PUBLIC;
