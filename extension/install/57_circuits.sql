-- Circuit breakers and rate-limit buckets, per service, in shared memory
-- (src/circuit.c): what the workers see before every request.
CREATE FUNCTION tvdb._circuits(OUT service text, OUT state text, OUT since timestamptz, OUT failures integer,
                               OUT last_error text, OUT next_probe timestamptz, OUT paused_until timestamptz,
                               OUT requests_available double precision, OUT tokens_available double precision)
    RETURNS SETOF record AS 'MODULE_PATHNAME', 'tvdb_circuits_sql' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tvdb._circuits() IS 'internal: the circuits in shared memory';

CREATE VIEW tvdb.circuits AS SELECT * FROM tvdb._circuits();
COMMENT ON VIEW tvdb.circuits IS
    'each service''s circuit: closed, open (until next_probe), half_open (a probe is out) or blocked (a refused key or quota: until a reload or tvdb.reset_circuit), and its rate-limit buckets';

CREATE FUNCTION tvdb.reset_circuit(service text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'tvdb_reset_circuit_sql' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION tvdb.reset_circuit(text) IS
    'close a service''s circuit now (llamaparse or openai), e.g. after fixing a key; true if it was not closed';
REVOKE ALL ON FUNCTION tvdb.reset_circuit(text) FROM PUBLIC;
-- Operators read it; grant EXECUTE on tvdb._circuits() to a monitoring role.
REVOKE ALL ON FUNCTION tvdb._circuits() FROM PUBLIC;
