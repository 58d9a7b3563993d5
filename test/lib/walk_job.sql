-- Included by test/dashboard and bench/dashboard (psql \i from the
-- repository's root).  pg_temp.job(name, path): a markdown document
-- uploaded, then moved through each status of path by tvdb.transition, as
-- the worker would move it (every edge checked, every event written); its
-- job id.
CREATE FUNCTION pg_temp.job(name text, path text[]) RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE j uuid := tvdb.upload(name, convert_to('# ' || name, 'UTF8'), 'text/markdown'); s text;
BEGIN
    FOREACH s IN ARRAY path LOOP PERFORM tvdb.transition(j, s); END LOOP;
    RETURN j;
END $$;
