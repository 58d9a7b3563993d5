-- (b) tvdb: a plain UPDATE; the C triggers validate the edge, stamp
-- status_changed_at/updated_at (and attempts on the retry edge), write the
-- event row and NOTIFY tvdb_jobs.
\set n random(1, :jobs)
UPDATE upload_pipeline.upload_jobs
SET status = CASE status WHEN 'parse_queued' THEN 'failed_parse' ELSE 'parse_queued' END
WHERE job_id = md5('job' || (:n)::text)::uuid;
