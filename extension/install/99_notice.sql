-- Say so at once when no background worker will process documents here;
-- otherwise they would wait in 'uploaded' with only the server log to tell.
-- A WARNING, as CREATE EXTENSION hides the NOTICEs of its script.  Whether
-- this database is listed is read as the launcher reads tvdb.database (C).
DO $$
BEGIN
    IF current_setting('shared_preload_libraries') !~ '(^|[ ,])"?tvdb"?($|[ ,])' THEN
        RAISE WARNING 'tvdb is not in shared_preload_libraries: no background worker will process documents'
            USING HINT = 'Add tvdb to shared_preload_libraries and restart PostgreSQL.';
    ELSIF current_setting('tvdb.workers')::integer = 0 THEN
        RAISE WARNING 'tvdb.workers is 0: no background worker will process documents'
            USING HINT = 'Set tvdb.workers (1 or more) and restart PostgreSQL.';
    ELSIF NOT tvdb._database_served() THEN
        RAISE WARNING 'tvdb''s workers serve % (tvdb.database), not "%": documents uploaded here will wait',
                     coalesce((SELECT string_agg(format('"%s"', d), ', ') FROM unnest(tvdb._served_databases()) d),
                              'no database'),
                     current_database()
            USING HINT = format('Add %s to tvdb.database (a comma-separated list) and restart PostgreSQL.',
                                quote_ident(current_database()));
    END IF;
END
$$;
