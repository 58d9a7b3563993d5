-- (c) plpgsql: the same UPDATE on a copy whose PL/pgSQL triggers do what
-- tvdb's C triggers do (see setup.sql).
\set n random(1, :jobs)
UPDATE bench.jobs_plpgsql
SET status = CASE status WHEN 'parse_queued' THEN 'failed_parse' ELSE 'parse_queued' END
WHERE job_id = md5('job' || (:n)::text)::uuid;
