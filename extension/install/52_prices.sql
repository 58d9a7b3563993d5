-- Prices, in tables the operator updates (UPDATE / INSERT as the extension's
-- owner): what each request in the ledger cost.
--
-- OpenAI bills embeddings per token, per model.  LlamaParse bills credits: the
-- result reports the job's (job_metadata.job_credits_usage); when it does not,
-- pages x the credits per page of the mode or tier in use.  A credit's price
-- is tvdb.llamaparse_usd_per_1000_credits.  Rows the operator adds or changes
-- are kept by pg_dump; the defaults come with the extension.

CREATE TABLE upload_pipeline.embedding_prices (
    model                  text PRIMARY KEY CHECK (model <> ''),
    usd_per_million_tokens numeric NOT NULL CHECK (usd_per_million_tokens >= 0),
    is_default             boolean NOT NULL DEFAULT false,
    updated_at             timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE upload_pipeline.embedding_prices IS
    'OpenAI embedding prices per model, USD per million input tokens; the worker embeds only with a priced model';

CREATE TABLE upload_pipeline.parse_prices (
    mode             text PRIMARY KEY CHECK (mode <> ''),
    credits_per_page numeric NOT NULL CHECK (credits_per_page >= 0),
    is_default       boolean NOT NULL DEFAULT false,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE upload_pipeline.parse_prices IS
    'LlamaParse credits per page by v2 tier or v1 parse_mode, used when a result reports no credits';

-- A changed default is the operator's row from then on (and so is dumped).
CREATE FUNCTION tvdb._price_changed() RETURNS trigger LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.is_default := false;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER price_changed BEFORE UPDATE ON upload_pipeline.embedding_prices
    FOR EACH ROW EXECUTE FUNCTION tvdb._price_changed();
CREATE TRIGGER price_changed BEFORE UPDATE ON upload_pipeline.parse_prices
    FOR EACH ROW EXECUTE FUNCTION tvdb._price_changed();

-- OpenAI's published prices (openai.com/api/pricing).
INSERT INTO upload_pipeline.embedding_prices (model, usd_per_million_tokens, is_default) VALUES
    ('text-embedding-3-small', 0.02, true),
    ('text-embedding-3-large', 0.13, true),
    ('text-embedding-ada-002', 0.10, true);
-- LlamaParse's credits per page: agentic 10 and agentic_plus 45 from its
-- glossary (developers.llamaindex.ai/llamaparse/general/glossary); fast 1 and
-- cost_effective 3 as commonly published; v1 modes as the tier they match.
-- "default": a v1 upload that names no mode.
INSERT INTO upload_pipeline.parse_prices (mode, credits_per_page, is_default) VALUES
    ('fast', 1, true), ('cost_effective', 3, true), ('agentic', 10, true), ('agentic_plus', 45, true),
    ('parse_page_without_llm', 1, true), ('parse_page_with_llm', 3, true),
    ('parse_page_with_agent', 10, true), ('parse_page_with_layout_agent', 10, true),
    ('parse_page_with_lvm', 10, true), ('parse_document_with_llm', 3, true),
    ('parse_document_with_lvm', 10, true), ('parse_document_with_agent', 10, true),
    ('default', 3, true);
SELECT pg_catalog.pg_extension_config_dump('upload_pipeline.embedding_prices', 'WHERE NOT is_default');
SELECT pg_catalog.pg_extension_config_dump('upload_pipeline.parse_prices', 'WHERE NOT is_default');

-- The LlamaParse mode in force: v2's tier, else v1's parse_mode (fast_mode
-- is the fast one), else "default".
-- This and the two cost functions below are PL/pgSQL, with no SET clause:
-- the worker calls them for every request, and a SQL function (or one with
-- a SET clause) is planned again at each call where PL/pgSQL keeps its plan.
CREATE FUNCTION tvdb._parse_mode() RETURNS text LANGUAGE plpgsql STABLE
AS $$
DECLARE
    o jsonb := coalesce(nullif(current_setting('tvdb.llamaparse_options'), ''), '{}')::jsonb;
BEGIN
    RETURN CASE WHEN current_setting('tvdb.llamaparse_api') = 'v2' THEN coalesce(o ->> 'tier', 'default')
                WHEN o ->> 'parse_mode' IS NOT NULL THEN o ->> 'parse_mode'
                WHEN o ->> 'fast_mode' = 'true' THEN 'fast'
                ELSE 'default' END;
END
$$;

-- What a LlamaParse result cost: nothing for a cache hit; the credits it
-- reported; else its pages at the mode's credits per page.
CREATE FUNCTION tvdb._llamaparse_cost(pages integer, cache_hit boolean, credits numeric, mode text)
    RETURNS numeric LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF cache_hit THEN
        RETURN 0;
    END IF;
    RETURN round(coalesce(credits, pages * (SELECT p.credits_per_page FROM upload_pipeline.parse_prices p
                                            WHERE p.mode = _llamaparse_cost.mode), 0)
                 * current_setting('tvdb.llamaparse_usd_per_1000_credits')::numeric / 1000, 10);
END
$$;

-- What an embeddings request cost; NULL for a model with no price.  Costs
-- are kept to 1e-10 USD (one token of the cheapest model is 2e-8).
CREATE FUNCTION tvdb._openai_cost(prompt_tokens integer, model text) RETURNS numeric
    LANGUAGE plpgsql STABLE
AS $$
DECLARE
    price numeric;
BEGIN
    SELECT p.usd_per_million_tokens INTO price FROM upload_pipeline.embedding_prices p
    WHERE p.model = _openai_cost.model;
    RETURN round(coalesce(prompt_tokens, 0) * price / 1e6, 10);  -- NULL: no price
END
$$;

-- Every ledger row names what it used: its model, mode or parser.
CREATE FUNCTION tvdb._usage_model() RETURNS trigger LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.model := coalesce(NEW.model, CASE NEW.service
        WHEN 'llamaparse' THEN tvdb._parse_mode()
        WHEN 'openai' THEN current_setting('tvdb.embedding_model')
        WHEN 'local' THEN 'builtin'
        ELSE NEW.service END);
    RETURN NEW;
END
$$;
CREATE TRIGGER usage_model BEFORE INSERT ON upload_pipeline.usage
    FOR EACH ROW EXECUTE FUNCTION tvdb._usage_model();

COMMENT ON FUNCTION tvdb._parse_mode() IS 'internal: the LlamaParse mode or tier the settings ask for';
COMMENT ON FUNCTION tvdb._llamaparse_cost(integer, boolean, numeric, text) IS 'internal (worker): the cost of a LlamaParse result';
COMMENT ON FUNCTION tvdb._openai_cost(integer, text) IS 'internal (worker): the cost of an OpenAI embeddings request';
COMMENT ON FUNCTION tvdb._price_changed() IS 'internal (trigger): a changed default price becomes the operator''s row';
COMMENT ON FUNCTION tvdb._usage_model() IS 'internal (trigger): every ledger row names its model, mode or parser';
REVOKE ALL ON FUNCTION tvdb._price_changed() FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._usage_model() FROM PUBLIC;
