-- The queue: one row per open job (a working or a failure status), kept by
-- the status triggers in the statement that changes the job (src/backend/
-- job_queue.c), and dropped when the job finishes (complete, cancelled) or
-- is deleted.  The worker claims from it and asks it when work is next due;
-- monitoring counts open jobs from it.  It holds the backlog, never the
-- history, so none of that costs more as finished jobs pile up: a million
-- finished jobs leave it as small as it was.  Its rows churn (a job passes
-- through some ten versions), so it is vacuumed as soon as a few hundred
-- are dead, and its pages keep room for updates on the same page.
-- Not dumped: a restore fills it from the jobs it loads.
CREATE TABLE upload_pipeline.job_queue (
    document_id       uuid NOT NULL,
    job_id            uuid NOT NULL,
    status            text NOT NULL,
    due_at            timestamptz NOT NULL,
    status_changed_at timestamptz NOT NULL,
    lease_expires_at  timestamptz,
    PRIMARY KEY (document_id, job_id),
    FOREIGN KEY (document_id, job_id) REFERENCES upload_pipeline.upload_jobs ON DELETE CASCADE
) WITH (fillfactor = 50, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 500,
        autovacuum_vacuum_cost_delay = 0, autovacuum_analyze_scale_factor = 0,
        autovacuum_analyze_threshold = 2000);
COMMENT ON TABLE upload_pipeline.job_queue IS
    'the open jobs (working or failed) and when each is next due: what the worker claims from; kept by the status triggers';
COMMENT ON COLUMN upload_pipeline.job_queue.due_at IS
    'when the job can next be claimed: the latest of its status change, its next poll and its lease''s end';
-- Claims take a status's due jobs in due order; the due time of a status is
-- its first entry.
CREATE INDEX job_queue_due_idx ON upload_pipeline.job_queue (status, due_at);

-- How many jobs finished in each terminal status (complete, cancelled),
-- kept by the same triggers, a row per status and per slot (a backend
-- writes its own slot, so workers finishing jobs at once do not queue on
-- one row): monitoring counts the history from here, and no index of
-- upload_jobs needs the status, so a status change rewrites no index entry
-- (a HOT update) when its page has room, which the fill factor leaves.
CREATE TABLE upload_pipeline.finished_counts (
    status text NOT NULL,
    slot   integer NOT NULL,
    jobs   bigint NOT NULL,
    PRIMARY KEY (status, slot)
);
COMMENT ON TABLE upload_pipeline.finished_counts IS
    'jobs in each terminal status: the sum over slots; kept by the status triggers';
ALTER TABLE upload_pipeline.upload_jobs SET (fillfactor = 75);
