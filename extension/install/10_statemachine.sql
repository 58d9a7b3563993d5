-- The state machine: C triggers on upload_jobs, and the edge table they use.

CREATE FUNCTION tvdb.version() RETURNS text
    AS 'MODULE_PATHNAME', 'tvdb_version' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION tvdb.version() IS 'version of the loaded tvdb library';

CREATE FUNCTION tvdb.transition_table(
        OUT from_status text, OUT to_status text, OUT event_type text,
        OUT severity text, OUT code text, OUT is_retry boolean)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'tvdb_transition_table' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION tvdb.transition_table() IS 'the C edge table the status triggers enforce';

CREATE FUNCTION tvdb.status_table(
        OUT status text, OUT ordinal integer, OUT is_initial boolean,
        OUT is_terminal boolean, OUT is_failure boolean)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'tvdb_status_table' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION tvdb.status_table() IS 'the job statuses known to the C state machine';

CREATE VIEW tvdb.allowed_transitions AS
    SELECT from_status, to_status, event_type, severity, code, is_retry
    FROM tvdb.transition_table();
COMMENT ON VIEW tvdb.allowed_transitions IS 'every allowed status change and the event it records (from_status NULL: job creation)';

CREATE VIEW tvdb.statuses AS
    SELECT status, ordinal, is_initial, is_terminal, is_failure FROM tvdb.status_table();
COMMENT ON VIEW tvdb.statuses IS 'the job statuses, in pipeline order';

CREATE FUNCTION tvdb.guard_status() RETURNS trigger
    AS 'MODULE_PATHNAME', 'tvdb_guard_status' LANGUAGE C;
COMMENT ON FUNCTION tvdb.guard_status() IS 'BEFORE trigger: rejects illegal status changes';

CREATE FUNCTION tvdb.record_event() RETURNS trigger
    AS 'MODULE_PATHNAME', 'tvdb_record_event' LANGUAGE C;
COMMENT ON FUNCTION tvdb.record_event() IS
    'AFTER statement trigger: an event row and a NOTIFY per edge a job takes, and the queue of open jobs kept';

CREATE TRIGGER tvdb_guard_insert BEFORE INSERT ON upload_pipeline.upload_jobs
    FOR EACH ROW EXECUTE FUNCTION tvdb.guard_status();
CREATE TRIGGER tvdb_guard_update BEFORE UPDATE ON upload_pipeline.upload_jobs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION tvdb.guard_status();
-- Once per statement, over all the rows it changed: a batch's events are
-- one INSERT, its queue rows one upsert (11_queue.sql).
CREATE TRIGGER tvdb_record_insert AFTER INSERT ON upload_pipeline.upload_jobs
    REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION tvdb.record_event();
CREATE TRIGGER tvdb_record_update AFTER UPDATE ON upload_pipeline.upload_jobs
    REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION tvdb.record_event();
-- A deleted finished job leaves the counts of finished jobs (11_queue.sql).
CREATE TRIGGER tvdb_record_delete AFTER DELETE ON upload_pipeline.upload_jobs
    REFERENCING OLD TABLE AS old_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION tvdb.record_event();
CREATE TRIGGER tvdb_record_truncate AFTER TRUNCATE ON upload_pipeline.upload_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION tvdb.record_event();

-- The status lists SQL needs come from the C table, never by hand.
CREATE FUNCTION tvdb._status_list(working boolean, failure boolean) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT string_agg(quote_literal(s.status), ', ' ORDER BY s.ordinal)
    FROM tvdb.statuses s
    WHERE (working AND NOT s.is_terminal AND NOT s.is_failure) OR (failure AND s.is_failure)
$$;
COMMENT ON FUNCTION tvdb._status_list(boolean, boolean) IS
    'internal (install): the working or failure statuses as a SQL list, from the C table';
