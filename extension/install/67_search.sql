-- Query embeddings and nearest-chunk search (src/backend/embed.c, search.c).

-- Vectors stay in the row when they fit in a page (up to about 1,900
-- dimensions), so a search reads them where they lie instead of fetching
-- each one from TOAST; larger ones still go out of line.  Rows stored
-- before this keep their place until they are written again.
ALTER TABLE upload_pipeline.document_chunks ALTER COLUMN embedding SET STORAGE MAIN;

-- The model documents are embedded with now: the mock's in mock mode (and
-- in hybrid mode while OpenAI cannot be used), else tvdb.embedding_model.
CREATE FUNCTION tvdb._model_in_use() RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN current_setting('tvdb.service_mode') = 'mock'
                  OR (current_setting('tvdb.service_mode') = 'hybrid' AND NOT tvdb._service_usable('openai'))
                THEN 'mock' ELSE current_setting('tvdb.embedding_model') END
$$;

CREATE FUNCTION tvdb.embed(query text, model text DEFAULT NULL) RETURNS real[]
    AS 'MODULE_PATHNAME', 'tvdb_embed' LANGUAGE C VOLATILE;
CREATE FUNCTION tvdb._embed_query(query text, model text, OUT model text, OUT embedding real[])
    AS 'MODULE_PATHNAME', 'tvdb_embed_query' LANGUAGE C VOLATILE;

-- A budget that has no room for a query's estimate, said as a sentence;
-- read without locking (embed.c says why).
CREATE FUNCTION tvdb._query_refusal(estimate numeric) RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('the %s budget for %s (%s USD) has %s USD spent and %s USD reserved; the query needs %s USD',
                  b.period, b.service, b.limit_usd, u.spent, u.reserved, round(estimate, 10))
    FROM upload_pipeline.budgets b, LATERAL tvdb._budget_used(b.service, b.period) u
    WHERE b.service IN ('openai', 'all') AND u.spent + u.reserved + estimate > b.limit_usd
    ORDER BY b.service, b.period
    LIMIT 1
$$;

-- A query's request, answered or not: its ledger row.  No answer (HTTP 0)
-- leaves the outcome unknown, held at the estimate, as for the worker's.
CREATE FUNCTION tvdb._query_embedded(http_status integer, latency_ms double precision, prompt_tokens integer,
                                     model text, error text, estimate numeric)
    RETURNS void LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO upload_pipeline.usage (service, operation, http_status, latency_ms, inputs, prompt_tokens,
                                       cost_usd, error, model, state, estimated_usd, reserved_usd, owner)
    VALUES ('openai', 'query_embedding', http_status, latency_ms, 1, prompt_tokens,
            CASE WHEN error IS NULL THEN coalesce(tvdb._openai_cost(prompt_tokens, model), 0) ELSE 0 END,
            error, model, CASE WHEN http_status = 0 THEN 'unknown' ELSE 'answered' END, estimate,
            CASE WHEN http_status = 0 THEN estimate ELSE 0 END, 'query by ' || session_user)
$$;

-- The k nearest chunks' keys and distances, kept in a bounded heap while
-- the vectors are scanned; parallel workers each keep one, merged at the end.
CREATE TYPE tvdb.search_hit AS (document_id uuid, chunk_index integer, distance double precision);
COMMENT ON TYPE tvdb.search_hit IS 'internal: a chunk tvdb._nearest kept, and its distance';

CREATE FUNCTION tvdb._nearest_step(internal, uuid, integer, real[], real[], integer, text) RETURNS internal
    AS 'MODULE_PATHNAME', 'tvdb_nearest_step' LANGUAGE C PARALLEL SAFE;
CREATE FUNCTION tvdb._nearest_combine(internal, internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'tvdb_nearest_combine' LANGUAGE C PARALLEL SAFE;
CREATE FUNCTION tvdb._nearest_serial(internal) RETURNS bytea
    AS 'MODULE_PATHNAME', 'tvdb_nearest_serial' LANGUAGE C STRICT PARALLEL SAFE;
CREATE FUNCTION tvdb._nearest_deserial(bytea, internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'tvdb_nearest_deserial' LANGUAGE C STRICT PARALLEL SAFE;
CREATE FUNCTION tvdb._nearest_final(internal) RETURNS tvdb.search_hit[]
    AS 'MODULE_PATHNAME', 'tvdb_nearest_final' LANGUAGE C PARALLEL SAFE;
CREATE FUNCTION tvdb._search_args(query real[], k integer, metric text) RETURNS void
    AS 'MODULE_PATHNAME', 'tvdb_search_args' LANGUAGE C STABLE PARALLEL SAFE;
CREATE AGGREGATE tvdb._nearest(uuid, integer, real[], real[], integer, text) (
    SFUNC = tvdb._nearest_step,
    STYPE = internal,
    COMBINEFUNC = tvdb._nearest_combine,
    SERIALFUNC = tvdb._nearest_serial,
    DESERIALFUNC = tvdb._nearest_deserial,
    FINALFUNC = tvdb._nearest_final,
    PARALLEL = SAFE
);

-- The search itself, over the vectors of one model the caller may see.
-- PL/pgSQL's RETURN QUERY may run in parallel.
CREATE FUNCTION tvdb._search(query real[], model text, k integer, document_ids uuid[],
                             correlation_id uuid, mime_type text, metric text)
    RETURNS TABLE (document_id uuid, chunk_index integer, heading_path text[], content text,
                   distance double precision)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM tvdb._search_args(_search.query, _search.k, _search.metric);
    RETURN QUERY
    SELECT c.document_id, c.chunk_index, c.heading_path, c.content, h.distance
    FROM unnest((SELECT tvdb._nearest(x.document_id, x.chunk_index, x.embedding, _search.query,
                                      _search.k, _search.metric)
                 FROM upload_pipeline.document_chunks x
                 JOIN upload_pipeline.documents d ON d.document_id = x.document_id
                 WHERE x.model = _search.model AND x.embedding IS NOT NULL AND tvdb._may_see(d.owner)
                   AND (_search.document_ids IS NULL OR x.document_id = ANY (_search.document_ids))
                   AND (_search.correlation_id IS NULL OR x.document_id IN (
                            SELECT j.document_id FROM upload_pipeline.upload_jobs j
                            WHERE j.correlation_id = _search.correlation_id))
                   AND (_search.mime_type IS NULL OR d.mime_type = _search.mime_type)))
         WITH ORDINALITY AS h (document_id, chunk_index, distance, n)
    JOIN upload_pipeline.document_chunks c ON c.document_id = h.document_id AND c.chunk_index = h.chunk_index
    ORDER BY h.n;
END
$$;

CREATE FUNCTION tvdb.search(query real[], k integer DEFAULT 10, document_ids uuid[] DEFAULT NULL,
                            correlation_id uuid DEFAULT NULL, mime_type text DEFAULT NULL,
                            metric text DEFAULT 'cosine', model text DEFAULT NULL)
    RETURNS TABLE (document_id uuid, chunk_index integer, heading_path text[], content text,
                   distance double precision)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM tvdb._search(query, coalesce(model, tvdb._model_in_use()), k, document_ids,
                               correlation_id, mime_type, metric)
$$;

CREATE FUNCTION tvdb.search(query text, k integer DEFAULT 10, document_ids uuid[] DEFAULT NULL,
                            correlation_id uuid DEFAULT NULL, mime_type text DEFAULT NULL,
                            metric text DEFAULT 'cosine', model text DEFAULT NULL)
    RETURNS TABLE (document_id uuid, chunk_index integer, heading_path text[], content text,
                   distance double precision)
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.* FROM tvdb._embed_query(query, model) AS q,
                    LATERAL tvdb._search(q.embedding, q.model, k, document_ids, correlation_id, mime_type, metric) AS s
$$;

COMMENT ON FUNCTION tvdb._model_in_use() IS 'internal: the model documents are embedded with now';
COMMENT ON FUNCTION tvdb.embed(text, text) IS
    'the query''s vector from what embeds the documents now (OpenAI, or the mock), at unit length; recorded in the usage ledger and counted against budgets';
COMMENT ON FUNCTION tvdb._embed_query(text, text) IS 'internal: tvdb.embed with the model that made the vector';
COMMENT ON FUNCTION tvdb._query_refusal(numeric) IS 'internal: why a budget has no room for a query''s embedding, or NULL';
COMMENT ON FUNCTION tvdb._query_embedded(integer, double precision, integer, text, text, numeric) IS
    'internal: a query''s embedding request in the usage ledger';
COMMENT ON FUNCTION tvdb._nearest_step(internal, uuid, integer, real[], real[], integer, text) IS 'internal: tvdb._nearest';
COMMENT ON FUNCTION tvdb._nearest_combine(internal, internal) IS 'internal: tvdb._nearest';
COMMENT ON FUNCTION tvdb._nearest_serial(internal) IS 'internal: tvdb._nearest';
COMMENT ON FUNCTION tvdb._nearest_deserial(bytea, internal) IS 'internal: tvdb._nearest';
COMMENT ON FUNCTION tvdb._nearest_final(internal) IS 'internal: tvdb._nearest';
COMMENT ON FUNCTION tvdb._search_args(real[], integer, text) IS 'internal: tvdb.search''s query, k and metric checked before anything is read';
COMMENT ON AGGREGATE tvdb._nearest(uuid, integer, real[], real[], integer, text) IS
    'internal: the k nearest chunks (document, chunk, distance), nearest first';
COMMENT ON FUNCTION tvdb._search(real[], text, integer, uuid[], uuid, text, text) IS 'internal: tvdb.search over one model';
COMMENT ON FUNCTION tvdb.search(real[], integer, uuid[], uuid, text, text, text) IS
    'the k chunks nearest to a vector (cosine, inner_product or l2), nearest first, among the documents the caller may see';
COMMENT ON FUNCTION tvdb.search(text, integer, uuid[], uuid, text, text, text) IS
    'the k chunks nearest to a question, embedded with tvdb.embed';
