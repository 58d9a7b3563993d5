-- The queue of open jobs (66_queue.sql) replaces the partial indexes the
-- claims read, and is filled with the open jobs there are, the counts of
-- finished jobs with the finished ones; the status triggers that keep them
-- become statement triggers (68_queue.list).  No index of upload_jobs keeps
-- the status any more.
DROP INDEX upload_pipeline.upload_jobs_claimable_idx;
DROP INDEX upload_pipeline.upload_jobs_retry_due_idx;
DROP INDEX upload_pipeline.upload_jobs_mock_parsed_idx;
DROP TRIGGER tvdb_record_insert ON upload_pipeline.upload_jobs;
DROP TRIGGER tvdb_record_update ON upload_pipeline.upload_jobs;
INSERT INTO upload_pipeline.job_queue (document_id, job_id, status, due_at, status_changed_at, lease_expires_at)
SELECT j.document_id, j.job_id, j.status,
       greatest(j.status_changed_at, j.next_poll_at, j.lease_expires_at), j.status_changed_at, j.lease_expires_at
FROM upload_pipeline.upload_jobs j JOIN tvdb.statuses s USING (status)
WHERE NOT s.is_terminal;
INSERT INTO upload_pipeline.finished_counts (status, slot, jobs)
SELECT j.status, 0, count(*)
FROM upload_pipeline.upload_jobs j JOIN tvdb.statuses s USING (status)
WHERE s.is_terminal GROUP BY j.status;
