-- Say so at once when no background worker will process documents here;
-- otherwise they would wait in 'uploaded' with only the server log to tell.
-- A WARNING, as CREATE EXTENSION hides the NOTICEs of its script.
DO $$
BEGIN
    IF current_setting('shared_preload_libraries') !~ '(^|[ ,])"?tvdb"?($|[ ,])' THEN
        RAISE WARNING 'tvdb is not in shared_preload_libraries: no background worker will process documents'
            USING HINT = 'Add tvdb to shared_preload_libraries and restart PostgreSQL.';
    ELSIF current_setting('tvdb.workers')::integer = 0 THEN
        RAISE WARNING 'tvdb.workers is 0: no background worker will process documents'
            USING HINT = 'Set tvdb.workers (1 or more) and restart PostgreSQL.';
    ELSIF current_setting('tvdb.database') <> current_database() THEN
        RAISE WARNING 'tvdb''s workers serve database "%", not "%": documents uploaded here will wait',
                     current_setting('tvdb.database'), current_database()
            USING HINT = format('Set tvdb.database = %L and restart PostgreSQL, or use tvdb in database %I.',
                                current_database(), current_setting('tvdb.database'));
    END IF;
END
$$;
