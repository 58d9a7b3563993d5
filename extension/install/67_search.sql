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
-- read without locking (the fallback of src/backend/query_ledger.c).
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

-- A query's request about to be sent: its ledger row in state 'sent' at its
-- estimate, or why a budget has no room.  lock: check the budgets as the
-- workers do, holding them until this transaction (a ledger worker's, of
-- its own) commits.
CREATE FUNCTION tvdb._query_reserve(estimate numeric, model text, owner text, lock boolean,
                                    OUT usage_id bigint, OUT refusal text)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    refusal := CASE WHEN lock THEN tvdb._budget_refusal('openai', estimate) ELSE tvdb._query_refusal(estimate) END;
    IF refusal IS NULL THEN
        INSERT INTO upload_pipeline.usage (service, operation, inputs, model, state, estimated_usd, reserved_usd, owner)
        VALUES ('openai', 'query_embedding', 1, _query_reserve.model, 'sent', estimate, estimate, _query_reserve.owner)
        RETURNING usage.usage_id INTO usage_id;
    END IF;
END
$$;

-- A query's answer on its ledger row.  No answer (HTTP 0) leaves the
-- outcome unknown, held at the estimate, as for the worker's.
CREATE FUNCTION tvdb._query_embedded(usage_id bigint, http_status integer, latency_ms double precision,
                                     prompt_tokens integer, model text, error text)
    RETURNS void LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE upload_pipeline.usage u
    SET http_status = _query_embedded.http_status, latency_ms = _query_embedded.latency_ms,
        prompt_tokens = _query_embedded.prompt_tokens, error = _query_embedded.error,
        cost_usd = CASE WHEN _query_embedded.error IS NULL
                        THEN coalesce(tvdb._openai_cost(_query_embedded.prompt_tokens, _query_embedded.model), 0)
                        ELSE 0 END,
        state = CASE WHEN _query_embedded.http_status = 0 THEN 'unknown' ELSE 'answered' END,
        reserved_usd = CASE WHEN _query_embedded.http_status = 0 THEN u.estimated_usd ELSE 0 END
    WHERE u.usage_id = _query_embedded.usage_id
$$;

-- The k nearest chunks' keys and distances, kept in a bounded heap while
-- the vectors are scanned; parallel workers each keep one, merged at the end.
CREATE TYPE tvdb.search_hit AS (document_id uuid, chunk_index integer, distance double precision);
COMMENT ON TYPE tvdb.search_hit IS 'internal: a chunk tvdb._nearest kept, and its distance';

-- COST 400 (x cpu_operator_cost = 1.0, a page read): a dot product over a
-- whole vector per row costs about what reading its page does, and the
-- planner must see what splitting the scan across workers saves.
CREATE FUNCTION tvdb._nearest_step(internal, uuid, integer, real[], real[], integer, text) RETURNS internal
    AS 'MODULE_PATHNAME', 'tvdb_nearest_step' LANGUAGE C PARALLEL SAFE COST 400;
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

-- pgvector (when installed): the one model whose vectors tvdb.use_pgvector()
-- keeps a vector(n) copy of, in upload_pipeline.chunk_vectors with an HNSW
-- index.  That table and its trigger are made at run time: the type they
-- need exists only where pgvector is installed.
CREATE TABLE upload_pipeline.pgvector_copy (
    only_one boolean PRIMARY KEY DEFAULT true CHECK (only_one),
    model    text NOT NULL,
    dims     integer NOT NULL CHECK (dims BETWEEN 1 AND 2000),
    vschema  name NOT NULL
);
COMMENT ON TABLE upload_pipeline.pgvector_copy IS
    'the model whose vectors are copied to upload_pipeline.chunk_vectors for pgvector''s HNSW index (tvdb.use_pgvector)';

-- The search itself, over the vectors of one model the caller may see:
-- exact (every vector, in C), or through the HNSW index of the copy, its
-- filters written as per-row subqueries so that the index's order is kept.
-- PL/pgSQL's RETURN QUERY may run in parallel.
CREATE FUNCTION tvdb._search(query real[], model text, k integer, document_ids uuid[],
                             correlation_id uuid, mime_type text, metric text, exact boolean)
    RETURNS TABLE (document_id uuid, chunk_index integer, heading_path text[], content text,
                   distance double precision)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    -- a generic plan keeps every optional filter and lost the parallel scan:
    -- from the sixth call on, 2x slower; planning is < 1 ms of a scan's 100
    SET plan_cache_mode = force_custom_plan
AS $$
#variable_conflict use_column
DECLARE
    copy upload_pipeline.pgvector_copy;
    qnorm double precision;
BEGIN
    PERFORM tvdb._search_args(_search.query, _search.k, _search.metric);
    SELECT * INTO copy FROM upload_pipeline.pgvector_copy p
    WHERE NOT _search.exact AND p.model = _search.model AND p.dims = cardinality(_search.query);
    IF FOUND THEN
        qnorm := sqrt((SELECT sum(x::float8 * x) FROM unnest(_search.query) x));
        -- <#> is the negative inner product; the vectors are unit length
        RETURN QUERY EXECUTE format(
            'SELECT c.document_id, c.chunk_index, c.heading_path, c.content,
                    CASE $7 WHEN ''inner_product'' THEN n.ip
                            WHEN ''l2'' THEN sqrt(greatest($8 * $8 + 1 + 2 * n.ip, 0))
                            ELSE 1 + n.ip / $8 END
             FROM (SELECT v.document_id, v.chunk_index, v.embedding OPERATOR(%1$I.<#>) $1::%1$I.vector AS ip
                   FROM upload_pipeline.chunk_vectors v
                   WHERE (SELECT tvdb._may_see(d.owner) AND ($5 IS NULL OR d.mime_type = $5)
                          FROM upload_pipeline.documents d WHERE d.document_id = v.document_id)
                     AND ($3 IS NULL OR v.document_id = ANY ($3))
                     AND ($4 IS NULL OR (SELECT bool_or(j.correlation_id = $4) FROM upload_pipeline.upload_jobs j
                                         WHERE j.document_id = v.document_id))
                   ORDER BY v.embedding OPERATOR(%1$I.<#>) $1::%1$I.vector
                   LIMIT $2) n
             JOIN upload_pipeline.document_chunks c ON c.document_id = n.document_id AND c.chunk_index = n.chunk_index
             ORDER BY n.ip', copy.vschema)
        USING _search.query, _search.k, _search.document_ids, _search.correlation_id, _search.mime_type,
              _search.model, _search.metric, qnorm;
        RETURN;
    END IF;
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

-- Keep the copy in step with the chunks (a row trigger, made by use_pgvector).
CREATE FUNCTION tvdb._chunk_vectors_sync() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    copy upload_pipeline.pgvector_copy;
BEGIN
    SELECT * INTO copy FROM upload_pipeline.pgvector_copy;
    IF NEW.embedding IS NULL OR NEW.model IS DISTINCT FROM copy.model
       OR cardinality(NEW.embedding) <> copy.dims THEN
        DELETE FROM upload_pipeline.chunk_vectors v
        WHERE v.document_id = NEW.document_id AND v.chunk_index = NEW.chunk_index;
    ELSE
        EXECUTE format('INSERT INTO upload_pipeline.chunk_vectors (document_id, chunk_index, embedding)
                        VALUES ($1, $2, $3::%I.vector)
                        ON CONFLICT (document_id, chunk_index) DO UPDATE SET embedding = EXCLUDED.embedding',
                       copy.vschema)
        USING NEW.document_id, NEW.chunk_index, NEW.embedding;
    END IF;
    RETURN NULL;
END
$$;

-- Stop keeping a copy: exact search only.
CREATE FUNCTION tvdb.drop_pgvector() RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    SET client_min_messages = warning   -- no notice that there was nothing to drop
AS $$
BEGIN
    DROP TRIGGER IF EXISTS chunk_vectors_sync ON upload_pipeline.document_chunks;
    DROP TABLE IF EXISTS upload_pipeline.chunk_vectors;
    DELETE FROM upload_pipeline.pgvector_copy;
END
$$;

-- Keep a vector(n) copy of one model's vectors with an HNSW index, for
-- tvdb.search: the model and dimensions in use unless named.  Replaces a
-- copy kept before.  What it copied, as a sentence.
CREATE FUNCTION tvdb.use_pgvector(model text DEFAULT NULL, dims integer DEFAULT NULL) RETURNS text
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    vschema name;
    m text := coalesce(use_pgvector.model, tvdb._model_in_use());
    n integer;
    copied bigint;
BEGIN
    SELECT s.nspname INTO vschema FROM pg_extension e JOIN pg_namespace s ON s.oid = e.extnamespace
    WHERE e.extname = 'vector';
    IF vschema IS NULL THEN
        RAISE EXCEPTION 'pgvector is not installed in this database'
            USING ERRCODE = 'undefined_object',
                  DETAIL = 'tvdb.search reads every vector without it.',
                  HINT = 'Build pgvector from source (README, "With pgvector"), then CREATE EXTENSION vector.';
    END IF;
    n := coalesce(use_pgvector.dims,
                  nullif(current_setting('tvdb.embedding_dimensions')::integer, 0),
                  CASE WHEN m = 'text-embedding-3-large' THEN 3072 ELSE 1536 END);
    IF n NOT BETWEEN 1 AND 2000 THEN
        RAISE EXCEPTION 'pgvector''s HNSW index takes vectors of up to 2000 dimensions, not %', n
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Embed with tvdb.embedding_dimensions at most 2000 (text-embedding-3 models shorten their vectors), or search without pgvector.';
    END IF;
    PERFORM tvdb.drop_pgvector();
    INSERT INTO upload_pipeline.pgvector_copy (model, dims, vschema) VALUES (m, n, vschema);
    EXECUTE format('CREATE TABLE upload_pipeline.chunk_vectors (
                        document_id uuid NOT NULL, chunk_index integer NOT NULL,
                        embedding %I.vector(%s) NOT NULL,
                        PRIMARY KEY (document_id, chunk_index),
                        FOREIGN KEY (document_id, chunk_index)
                            REFERENCES upload_pipeline.document_chunks ON DELETE CASCADE)', vschema, n);
    EXECUTE format('INSERT INTO upload_pipeline.chunk_vectors
                    SELECT c.document_id, c.chunk_index, c.embedding::%I.vector
                    FROM upload_pipeline.document_chunks c
                    WHERE c.model = $1 AND cardinality(c.embedding) = $2', vschema) USING m, n;
    GET DIAGNOSTICS copied = ROW_COUNT;
    EXECUTE format('CREATE INDEX chunk_vectors_hnsw ON upload_pipeline.chunk_vectors
                    USING hnsw (embedding %I.vector_ip_ops)', vschema);
    CREATE TRIGGER chunk_vectors_sync AFTER INSERT OR UPDATE OF embedding, model ON upload_pipeline.document_chunks
        FOR EACH ROW EXECUTE FUNCTION tvdb._chunk_vectors_sync();
    RETURN format('%s vectors of model %s (%s dimensions) copied and indexed with HNSW', copied, m, n);
END
$$;

-- What pgvector holds for tvdb.search, if anything.
CREATE FUNCTION tvdb.pgvector(OUT pgvector_version text, OUT model text, OUT dims integer,
                              OUT vectors bigint, OUT index_size text)
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    SELECT e.extversion INTO pgvector_version FROM pg_extension e WHERE e.extname = 'vector';
    SELECT p.model, p.dims INTO model, dims FROM upload_pipeline.pgvector_copy p;
    IF model IS NOT NULL THEN
        EXECUTE 'SELECT count(*) FROM upload_pipeline.chunk_vectors' INTO vectors;
        index_size := pg_size_pretty(pg_relation_size('upload_pipeline.chunk_vectors_hnsw'));
    END IF;
END
$$;

CREATE FUNCTION tvdb.search(query real[], k integer DEFAULT 10, document_ids uuid[] DEFAULT NULL,
                            correlation_id uuid DEFAULT NULL, mime_type text DEFAULT NULL,
                            metric text DEFAULT 'cosine', model text DEFAULT NULL, exact boolean DEFAULT false)
    RETURNS TABLE (document_id uuid, chunk_index integer, heading_path text[], content text,
                   distance double precision)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM tvdb._search(query, coalesce(model, tvdb._model_in_use()), k, document_ids,
                               correlation_id, mime_type, metric, exact)
$$;

CREATE FUNCTION tvdb.search(query text, k integer DEFAULT 10, document_ids uuid[] DEFAULT NULL,
                            correlation_id uuid DEFAULT NULL, mime_type text DEFAULT NULL,
                            metric text DEFAULT 'cosine', model text DEFAULT NULL, exact boolean DEFAULT false)
    RETURNS TABLE (document_id uuid, chunk_index integer, heading_path text[], content text,
                   distance double precision)
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.* FROM tvdb._embed_query(query, model) AS q,
                    LATERAL tvdb._search(q.embedding, q.model, k, document_ids, correlation_id, mime_type, metric,
                                         exact) AS s
$$;

COMMENT ON FUNCTION tvdb._model_in_use() IS 'internal: the model documents are embedded with now';
COMMENT ON FUNCTION tvdb.embed(text, text) IS
    'the query''s vector from what embeds the documents now (OpenAI, or the mock), at unit length; recorded in the usage ledger and counted against budgets';
COMMENT ON FUNCTION tvdb._embed_query(text, text) IS 'internal: tvdb.embed with the model that made the vector';
COMMENT ON FUNCTION tvdb._query_refusal(numeric) IS 'internal: why a budget has no room for a query''s embedding, or NULL';
COMMENT ON FUNCTION tvdb._query_reserve(numeric, text, text, boolean) IS
    'internal: a query''s embedding request in the usage ledger before it is sent, or why a budget refuses it';
COMMENT ON FUNCTION tvdb._query_embedded(bigint, integer, double precision, integer, text, text) IS
    'internal: a query''s embedding answer on its ledger row';
COMMENT ON FUNCTION tvdb._nearest_step(internal, uuid, integer, real[], real[], integer, text) IS 'internal: tvdb._nearest';
COMMENT ON FUNCTION tvdb._nearest_combine(internal, internal) IS 'internal: tvdb._nearest';
COMMENT ON FUNCTION tvdb._nearest_serial(internal) IS 'internal: tvdb._nearest';
COMMENT ON FUNCTION tvdb._nearest_deserial(bytea, internal) IS 'internal: tvdb._nearest';
COMMENT ON FUNCTION tvdb._nearest_final(internal) IS 'internal: tvdb._nearest';
COMMENT ON FUNCTION tvdb._search_args(real[], integer, text) IS 'internal: tvdb.search''s query, k and metric checked before anything is read';
COMMENT ON AGGREGATE tvdb._nearest(uuid, integer, real[], real[], integer, text) IS
    'internal: the k nearest chunks (document, chunk, distance), nearest first';
COMMENT ON FUNCTION tvdb._search(real[], text, integer, uuid[], uuid, text, text, boolean) IS 'internal: tvdb.search over one model';
COMMENT ON FUNCTION tvdb._chunk_vectors_sync() IS 'internal (trigger): the pgvector copy follows the chunks';
COMMENT ON FUNCTION tvdb.drop_pgvector() IS 'stop keeping a pgvector copy of the vectors: tvdb.search reads every vector';
COMMENT ON FUNCTION tvdb.use_pgvector(text, integer) IS
    'keep a pgvector vector(n) copy of one model''s vectors with an HNSW index, which tvdb.search then uses (exact => false)';
COMMENT ON FUNCTION tvdb.pgvector() IS 'pgvector''s version and the copy tvdb.search uses, if any';
COMMENT ON FUNCTION tvdb.search(real[], integer, uuid[], uuid, text, text, text, boolean) IS
    'the k chunks nearest to a vector (cosine, inner_product or l2), nearest first, among the documents the caller may see';
COMMENT ON FUNCTION tvdb.search(text, integer, uuid[], uuid, text, text, text, boolean) IS
    'the k chunks nearest to a question, embedded with tvdb.embed';
SELECT pg_catalog.pg_extension_config_dump('upload_pipeline.pgvector_copy', '');
