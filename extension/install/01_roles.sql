-- The three roles tvdb's privileges are granted to (users are granted the
-- roles): tvdb_app uploads and reads its documents, tvdb_webhook only hands
-- callbacks to the handler, tvdb_monitor reads the monitoring views. Roles
-- belong to the cluster, so a second database's CREATE EXTENSION (or one
-- after DROP EXTENSION, which leaves them) finds them already there.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['tvdb_app', 'tvdb_webhook', 'tvdb_monitor'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$$;
COMMENT ON ROLE tvdb_app IS 'tvdb: upload, cancel, retry, read jobs and chunks, through functions only';
COMMENT ON ROLE tvdb_webhook IS 'tvdb: hand callbacks to tvdb.handle_llamaparse_webhook and uploads to tvdb.upload_with_token';
COMMENT ON ROLE tvdb_monitor IS 'tvdb: read the monitoring views and metrics';
GRANT USAGE ON SCHEMA tvdb TO tvdb_app, tvdb_webhook, tvdb_monitor;
