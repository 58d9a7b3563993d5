-- Included by the pgTAP files that need sessions acting at the same moment
-- (pg_prove runs only test/*.sql, not this).  tvdb_test.at_once(q, n) opens n
-- sessions through dblink, sends each the query q, and releases them
-- together: q must start by passing tvdb_test.gate().  Returns each
-- session's one text result.
CREATE SCHEMA IF NOT EXISTS tvdb_test;

CREATE OR REPLACE FUNCTION tvdb_test.gate() RETURNS void LANGUAGE sql AS $$
  SELECT pg_advisory_xact_lock_shared(4242)
$$;

CREATE OR REPLACE FUNCTION tvdb_test.at_once(q text, sessions int)
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
  conninfo text := format('dbname=%s host=%s port=%s', current_database(),
                          split_part(current_setting('unix_socket_directories'), ',', 1),
                          current_setting('port'));
  i int;
BEGIN
  PERFORM pg_advisory_lock(4242);
  FOR i IN 1..sessions LOOP
    PERFORM dblink_connect('session' || i, conninfo);
    PERFORM dblink_send_query('session' || i, q);
  END LOOP;
  PERFORM pg_sleep(0.3);              -- let every session reach the gate
  PERFORM pg_advisory_unlock(4242);
  FOR i IN 1..sessions LOOP
    RETURN QUERY SELECT r FROM dblink_get_result('session' || i) AS t(r text);
    PERFORM dblink_get_result('session' || i);  -- drain the end of the result
    PERFORM dblink_disconnect('session' || i);
  END LOOP;
END $$;
