-- The invariant the status triggers keep, for the tests that check it
-- (sql/queue.sql, test/worker, test/restore): every open job is in the
-- queue with its status, times and due time, and nothing else is; the
-- counts of finished jobs are the jobs in each terminal status.  Each
-- function is the number of rows that disagree (0: none).
CREATE FUNCTION pg_temp.queue_mismatches() RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM
    (SELECT j.document_id, j.job_id, j.status, greatest(j.status_changed_at, j.next_poll_at, j.lease_expires_at) AS due,
            j.status_changed_at, j.lease_expires_at
     FROM upload_pipeline.upload_jobs j JOIN tvdb.statuses s USING (status) WHERE NOT s.is_terminal) a
  FULL JOIN upload_pipeline.job_queue q USING (document_id, job_id)
  WHERE a.job_id IS NULL OR q.job_id IS NULL
     OR (a.status, a.due, a.status_changed_at, a.lease_expires_at)
        IS DISTINCT FROM (q.status, q.due_at, q.status_changed_at, q.lease_expires_at)
$$;
CREATE FUNCTION pg_temp.count_mismatches() RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM
    (SELECT j.status, count(*) AS n FROM upload_pipeline.upload_jobs j JOIN tvdb.statuses s USING (status)
     WHERE s.is_terminal GROUP BY j.status) a
  FULL JOIN (SELECT f.status, sum(f.jobs) AS n FROM upload_pipeline.finished_counts f
             GROUP BY f.status HAVING sum(f.jobs) <> 0) b USING (status)
  WHERE a.n IS DISTINCT FROM b.n
$$;
