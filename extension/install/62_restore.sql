-- Backup and restore. Every table's rows are in pg_dump's output (each
-- table is registered with pg_extension_config_dump where it is created);
-- so are the identity sequences, whose values would otherwise start again
-- at 1 and collide with the restored rows.
SELECT pg_catalog.pg_extension_config_dump('upload_pipeline.usage_usage_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('upload_pipeline.alerts_alert_id_seq', '');

-- pg_dump leaves out an index a user created on one of tvdb's tables (the
-- table belongs to the extension, so its definition is not dumped). Such
-- indexes are recorded here, a table that is dumped, and created again when
-- a restore loads it.
CREATE TABLE upload_pipeline.user_indexes (
    index_name  text PRIMARY KEY,
    table_name  text NOT NULL,
    definition  text NOT NULL CHECK (definition ~ '^CREATE (UNIQUE )?INDEX '),
    recorded_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE upload_pipeline.user_indexes IS
    'indexes users created on tvdb''s tables: recorded so that a restore recreates them';
SELECT pg_catalog.pg_extension_config_dump('upload_pipeline.user_indexes', '');

-- tvdb's tables that are not its own indexes' concern: every index on them
-- that is not part of the extension is the user's.
CREATE FUNCTION tvdb._user_indexes(only_oid oid DEFAULT NULL)
    RETURNS TABLE (index_name text, table_name text, definition text)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('%I.%I', n.nspname, ic.relname), t.oid::regclass::text, pg_get_indexdef(i.indexrelid)
    FROM pg_index i
    JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_namespace n ON n.oid = ic.relnamespace
    JOIN pg_class t ON t.oid = i.indrelid
    JOIN pg_depend td ON td.classid = 'pg_class'::regclass AND td.objid = t.oid AND td.deptype = 'e'
    JOIN pg_extension e ON e.oid = td.refobjid AND e.extname = 'tvdb'
    WHERE (only_oid IS NULL OR i.indexrelid = only_oid)
      AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = i.indexrelid AND d.deptype IN ('e', 'i'))
      AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = i.indexrelid)
$$;

CREATE FUNCTION tvdb._record_user_indexes() RETURNS event_trigger LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cmd record;
BEGIN
    FOR cmd IN SELECT * FROM pg_event_trigger_ddl_commands()
               WHERE classid = 'pg_class'::regclass AND NOT in_extension LOOP
        INSERT INTO upload_pipeline.user_indexes AS u (index_name, table_name, definition)
        SELECT * FROM tvdb._user_indexes(cmd.objid)
        ON CONFLICT (index_name) DO UPDATE
            SET table_name = excluded.table_name, definition = excluded.definition, recorded_at = now()
            WHERE (u.table_name, u.definition) IS DISTINCT FROM (excluded.table_name, excluded.definition);
    END LOOP;
    IF tg_tag = 'ALTER INDEX' THEN      -- a rename leaves the old name behind
        DELETE FROM upload_pipeline.user_indexes u
        WHERE NOT EXISTS (SELECT FROM tvdb._user_indexes() x WHERE x.index_name = u.index_name);
    END IF;
END
$$;

CREATE FUNCTION tvdb._forget_user_indexes() RETURNS event_trigger LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM upload_pipeline.user_indexes u
    USING pg_event_trigger_dropped_objects() d
    WHERE d.object_type = 'index' AND u.index_name = format('%I.%I', d.schema_name, d.object_name);
END
$$;

CREATE EVENT TRIGGER tvdb_user_indexes ON ddl_command_end
    WHEN TAG IN ('CREATE INDEX', 'ALTER INDEX') EXECUTE FUNCTION tvdb._record_user_indexes();
CREATE EVENT TRIGGER tvdb_user_indexes_dropped ON sql_drop
    WHEN TAG IN ('DROP INDEX', 'DROP TABLE') EXECUTE FUNCTION tvdb._forget_user_indexes();

-- A restore loads the recorded rows: each index is created again (by the
-- restoring superuser; only superusers can write this table).
CREATE FUNCTION tvdb._restore_user_index() RETURNS trigger LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF to_regclass(NEW.index_name) IS NULL THEN
        IF to_regclass(NEW.table_name) IS NULL THEN
            RAISE EXCEPTION 'cannot recreate index %: table % does not exist', NEW.index_name, NEW.table_name
                USING ERRCODE = 'undefined_table',
                      HINT = 'Restore into a database with the same version of tvdb.';
        END IF;
        EXECUTE NEW.definition;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER restore_user_index AFTER INSERT ON upload_pipeline.user_indexes
    FOR EACH ROW EXECUTE FUNCTION tvdb._restore_user_index();

COMMENT ON FUNCTION tvdb._user_indexes(oid) IS 'internal: indexes on tvdb''s tables that users created';
COMMENT ON FUNCTION tvdb._record_user_indexes() IS 'internal (event trigger): records users'' indexes for the dump';
COMMENT ON FUNCTION tvdb._forget_user_indexes() IS 'internal (event trigger): forgets dropped users'' indexes';
COMMENT ON FUNCTION tvdb._restore_user_index() IS 'internal (trigger): a restored row recreates its index';
REVOKE ALL ON FUNCTION tvdb._user_indexes(oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._record_user_indexes() FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._forget_user_indexes() FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._restore_user_index() FROM PUBLIC;
