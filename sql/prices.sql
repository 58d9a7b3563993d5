-- Prices: per embedding model, and LlamaParse credits per page by mode, in
-- tables the operator updates; every ledger row names its model or mode.
\set VERBOSITY default
\set SHOW_CONTEXT never

SELECT model, usd_per_million_tokens, is_default FROM upload_pipeline.embedding_prices ORDER BY model;
-- A million tokens at each model's price; a model with no price has no cost.
SELECT m, tvdb._openai_cost(1000000, m) AS usd
FROM unnest(ARRAY['text-embedding-3-small', 'text-embedding-3-large', 'text-embedding-ada-002', 'my-own-model']) AS m;

-- LlamaParse: the credits the service reported, else pages x the mode's
-- credits per page, at tvdb.llamaparse_usd_per_1000_credits; a cache hit is free.
SELECT tvdb._parse_mode() AS mode, current_setting('tvdb.llamaparse_usd_per_1000_credits') AS usd_per_1000;
SELECT tvdb._llamaparse_cost(10, false, 42, 'default') AS reported_credits,
       tvdb._llamaparse_cost(10, false, NULL, 'default') AS ten_pages_default,
       tvdb._llamaparse_cost(10, false, NULL, 'agentic_plus') AS ten_pages_agentic_plus,
       tvdb._llamaparse_cost(10, true, 42, 'default') AS cache_hit,
       tvdb._llamaparse_cost(10, false, NULL, 'unknown_mode') AS unknown_mode;

-- The operator changes a price or adds a model: the changed row is theirs
-- (kept by pg_dump), the untouched defaults are not dumped.
UPDATE upload_pipeline.embedding_prices SET usd_per_million_tokens = 0.01 WHERE model = 'text-embedding-3-small';
INSERT INTO upload_pipeline.embedding_prices (model, usd_per_million_tokens) VALUES ('my-own-model', 0.5);
SELECT model, usd_per_million_tokens, is_default FROM upload_pipeline.embedding_prices ORDER BY model;
SELECT c.relname, x.cond FROM pg_extension e,
       unnest(e.extconfig::regclass[], e.extcondition) AS x(rel, cond) JOIN pg_class c ON c.oid = x.rel
WHERE e.extname = 'tvdb' AND c.relname LIKE '%prices' ORDER BY 1;
\set VERBOSITY terse
INSERT INTO upload_pipeline.embedding_prices (model, usd_per_million_tokens) VALUES ('free-lunch', -1);
\set VERBOSITY default

-- Every ledger row names what it used, however it was written.
SELECT tvdb._record_usage(s, 'probe', NULL, NULL, 200, 1) FROM unnest(ARRAY['llamaparse', 'openai', 'local', 'mock']) AS s;
SELECT service, model FROM upload_pipeline.usage WHERE operation = 'probe' ORDER BY service;
SELECT tvdb._record_usage('openai', 'probe2', NULL, NULL, 200, 1, model => 'text-embedding-3-large');
SELECT service, model FROM upload_pipeline.usage WHERE operation = 'probe2';
DELETE FROM upload_pipeline.usage WHERE operation IN ('probe', 'probe2');
UPDATE upload_pipeline.embedding_prices SET usd_per_million_tokens = 0.02 WHERE model = 'text-embedding-3-small';
DELETE FROM upload_pipeline.embedding_prices WHERE model = 'my-own-model';
