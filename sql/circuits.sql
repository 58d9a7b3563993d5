-- Circuits: per service, in shared memory (the library is preloaded in the
-- test cluster).  The worker's moves are tested against the fakes
-- (test/worker); here, what the view shows and the reset.
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT service, state, failures, requests_available > 0 AS requests_left,
       tokens_available IS NOT NULL AS has_token_bucket
FROM tvdb.circuits ORDER BY service;
SELECT tvdb.reset_circuit('openai') AS was_open;
SELECT tvdb.reset_circuit('pinecone');
-- Only the superuser (or a role granted them) may read or reset circuits.
CREATE ROLE tvdb_regress_app;
GRANT USAGE ON SCHEMA tvdb TO tvdb_regress_app;
SET ROLE tvdb_regress_app;
SELECT tvdb.reset_circuit('openai');
SELECT * FROM tvdb.circuits;
RESET ROLE;
REVOKE USAGE ON SCHEMA tvdb FROM tvdb_regress_app;
DROP ROLE tvdb_regress_app;
