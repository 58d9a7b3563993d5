-- The ledger is written before each request (src/worker/ledger.c): a row in
-- state 'sent' with the request's estimated cost, committed before the
-- request goes; the SQL that records the answer completes it.

-- The pages LlamaParse is expected to bill for a file (src/stages/page_estimate.c).
CREATE FUNCTION tvdb._estimate_pages(content bytea) RETURNS integer
    AS 'MODULE_PATHNAME', 'tvdb_estimate_pages_sql' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- The pre-send rows a ledger row being written may complete (the worker's
-- requests whose answers it is recording now; none elsewhere).
CREATE FUNCTION tvdb._sent_requests(service text, operation text, job uuid, job_ids uuid[])
    RETURNS bigint[] AS 'MODULE_PATHNAME', 'tvdb_sent_requests' LANGUAGE C VOLATILE;

-- A request about to be sent: its row, with what it should cost (LlamaParse:
-- the estimated pages at the mode's price; OpenAI: the estimated input
-- tokens at the model's price; polls and result fetches are free), reserved
-- against the budgets that cover it.  NULL when a budget has no room: the
-- request is not sent, and its jobs wait (54_budgets).
CREATE FUNCTION tvdb._request_sent(service text, operation text, job_id uuid, job_ids uuid[],
                                   owner text, pages integer, tokens bigint, job_tokens bigint[] DEFAULT NULL)
    RETURNS bigint LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    estimate numeric := 0;
    refusal text;
    id bigint;
BEGIN
    IF service = 'llamaparse' AND operation = 'upload' THEN
        estimate := tvdb._llamaparse_cost(pages, false, NULL, tvdb._parse_mode());
    ELSIF service = 'openai' THEN
        estimate := tvdb._openai_cost(least(tokens, 2147483647)::integer, current_setting('tvdb.embedding_model'));
    END IF;
    estimate := coalesce(estimate, 0);
    refusal := tvdb._budget_refusal(service, estimate);
    IF refusal IS NOT NULL THEN
        PERFORM tvdb._budget_wait(j, owner, refusal)
        FROM unnest(CASE WHEN job_id IS NULL THEN job_ids ELSE ARRAY[job_id] END) AS j;
        RETURN NULL;
    END IF;
    INSERT INTO upload_pipeline.usage (service, operation, job_id, job_ids, state, estimated_usd,
                                       reserved_usd, owner, job_tokens)
    VALUES (service, operation, job_id, coalesce(job_ids, '{}'), 'sent', estimate, estimate, owner, job_tokens)
    RETURNING usage_id INTO id;
    RETURN id;
END
$$;

-- A ledger row written for an answer completes the request's pre-send row
-- (and is not inserted): src/worker/ledger.c, in C as every request,
-- polls included, writes one.  No answer (HTTP 0: a timeout, a reset)
-- leaves the outcome unknown, held at the estimate; an accepted LlamaParse
-- upload keeps its reservation until its parse is settled (below), unless
-- its job was cancelled or deleted meanwhile: that parse is never settled.
CREATE FUNCTION tvdb._usage_answered() RETURNS trigger
    AS 'MODULE_PATHNAME', 'tvdb_usage_answered' LANGUAGE C;
CREATE TRIGGER usage_answered BEFORE INSERT ON upload_pipeline.usage
    FOR EACH ROW EXECUTE FUNCTION tvdb._usage_answered();

-- A job leaves parse_queued: its parse is settled (the result's cost is in
-- the ledger, or it failed), and its uploads hold nothing back any more.
CREATE FUNCTION tvdb._parse_settled() RETURNS trigger LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- planned each time: a plan cached while the ledger was small scans it all
    EXECUTE 'UPDATE upload_pipeline.usage u SET reserved_usd = 0
             WHERE u.job_id = $1 AND u.reserved_usd > 0 AND u.service = ''llamaparse''
               AND u.operation = ''upload'' AND u.state = ''answered'''
    USING NEW.job_id;
    RETURN NULL;
END
$$;
CREATE INDEX usage_reserved_idx ON upload_pipeline.usage (job_id) WHERE reserved_usd > 0;
CREATE TRIGGER parse_settled AFTER UPDATE OF status ON upload_pipeline.upload_jobs
    FOR EACH ROW WHEN (OLD.status = 'parse_queued' AND NEW.status IS DISTINCT FROM 'parse_queued')
    EXECUTE FUNCTION tvdb._parse_settled();

-- Requests sent by workers, or for queries by sessions, that no longer
-- exist will never be answered: their outcome is unknown, and they count at
-- their estimate.
CREATE FUNCTION tvdb._requests_lost() RETURNS integer LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    UPDATE upload_pipeline.usage u SET state = 'unknown',
           error = coalesce(u.error, 'no answer recorded: the worker or session that sent it stopped')
    WHERE u.state = 'sent'
      AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                      WHERE (a.backend_type = 'tvdb worker' OR u.owner LIKE 'query by %')
                        AND u.owner LIKE '% pid ' || a.pid);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

COMMENT ON FUNCTION tvdb._estimate_pages(bytea) IS 'internal (worker): the pages LlamaParse is expected to bill for a file';
COMMENT ON FUNCTION tvdb._sent_requests(text, text, uuid, uuid[]) IS 'internal (trigger): the worker''s pre-send rows an answer''s row may complete';
COMMENT ON FUNCTION tvdb._request_sent(text, text, uuid, uuid[], text, integer, bigint, bigint[]) IS 'internal (worker): a request''s ledger row, before it is sent';
COMMENT ON FUNCTION tvdb._usage_answered() IS 'internal (trigger): an answer completes its request''s pre-send ledger row';
COMMENT ON FUNCTION tvdb._parse_settled() IS 'internal (trigger): a settled parse releases its upload''s reservation';
COMMENT ON FUNCTION tvdb._requests_lost() IS 'internal: requests of stopped workers are of unknown outcome';
REVOKE ALL ON FUNCTION tvdb._sent_requests(text, text, uuid, uuid[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._request_sent(text, text, uuid, uuid[], text, integer, bigint, bigint[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._usage_answered() FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._parse_settled() FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._requests_lost() FROM PUBLIC;
