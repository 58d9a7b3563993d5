-- bench/monitoring/load.sql — a million jobs and their ~9M events, loaded in
-- bulk into a scratch database, to EXPLAIN the monitoring views on.
-- Superuser only: session_replication_role = replica skips the triggers
-- (the state machine admits a new job only in 'uploaded') and the foreign
-- keys.  Never run it on a database whose data you care about.
--   psql -v jobs=1000000 -f bench/monitoring/load.sql
\set ON_ERROR_STOP 1
\if :{?jobs}
\else
\set jobs 1000000
\endif
SET session_replication_role = replica;
SET synchronous_commit = off;

-- Each job: created somewhere in the last 30 days (the unfinished ones in the
-- last two hours) and the path of statuses it has been through.
CREATE TEMP TABLE bench_jobs AS
SELECT i, gen_random_uuid() AS document_id, gen_random_uuid() AS job_id, gen_random_uuid() AS correlation_id,
       CASE WHEN i % 50 < 2 THEN now() - random() * interval '2 hours'
            ELSE now() - random() * interval '30 days' END AS created,
       CASE WHEN i % 50 < 2                               -- 4 %: unfinished, in any working status
            THEN (ARRAY['uploaded', 'parse_queued', 'parsed', 'chunking', 'chunks_stored', 'embedding_queued',
                        'embedding_in_progress', 'embeddings_stored'])[1:1 + i % 8]
            WHEN i % 100 = 2 THEN ARRAY['uploaded', 'parse_queued', 'failed_parse']
            WHEN i % 100 = 3 THEN ARRAY['uploaded', 'parse_queued', 'parsed', 'chunking', 'failed_chunking']
            WHEN i % 100 = 4 THEN ARRAY['uploaded', 'parse_queued', 'parsed', 'chunking', 'chunks_stored',
                                        'embedding_queued', 'embedding_in_progress', 'failed_embedding']
            ELSE ARRAY['uploaded', 'parse_queued', 'parsed', 'chunking', 'chunks_stored', 'embedding_queued',
                       'embedding_in_progress', 'embeddings_stored', 'complete'] END AS path
FROM generate_series(1, :jobs) AS i;

-- Each step's time: parsing takes seconds to minutes, the rest seconds.
CREATE TEMP TABLE bench_steps AS
SELECT j.job_id, j.document_id, j.correlation_id, p.k, p.status,
       j.created + sum(CASE WHEN p.k = 1 THEN interval '0'
                            WHEN p.path_prev = 'parse_queued' THEN random() * interval '90 s'
                            WHEN p.path_prev = 'embedding_in_progress' THEN random() * interval '5 s'
                            ELSE random() * interval '500 ms' END)
                   OVER (PARTITION BY j.job_id ORDER BY p.k) AS ts
FROM bench_jobs j,
     LATERAL (SELECT k, s AS status, j.path[k - 1] AS path_prev
              FROM unnest(j.path) WITH ORDINALITY AS u(s, k)) p;

INSERT INTO upload_pipeline.blobs (document_id, path, content, content_type, sha256, size_bytes, created_at)
SELECT document_id, 'storage://uploads/' || document_id, '\x78'::bytea, 'application/pdf',
       '2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881', 1, created
FROM bench_jobs;
INSERT INTO upload_pipeline.documents (document_id, filename, mime_type, size_bytes, sha256, storage_path, created_at)
SELECT document_id, 'doc' || i || '.pdf', 'application/pdf', 1,
       '2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881', 'storage://uploads/' || document_id, created
FROM bench_jobs;
INSERT INTO upload_pipeline.upload_jobs (job_id, document_id, status, correlation_id, status_changed_at, created_at,
                                         updated_at, lease_owner, lease_expires_at, next_poll_at, parse_job_id)
SELECT j.job_id, j.document_id, j.path[cardinality(j.path)], j.correlation_id, s.ts, j.created, s.ts,
       CASE WHEN j.path[cardinality(j.path)] IN ('chunking', 'embedding_in_progress') THEN 'tvdb worker 1 pid 1' END,
       CASE WHEN j.path[cardinality(j.path)] IN ('chunking', 'embedding_in_progress') THEN now() + interval '5 min' END,
       CASE WHEN j.path[cardinality(j.path)] = 'parse_queued' THEN now() + interval '10 s' END,
       CASE WHEN cardinality(j.path) > 1 THEN 'pj-' || j.i END
FROM bench_jobs j JOIN bench_steps s ON s.job_id = j.job_id AND s.k = cardinality(j.path);
INSERT INTO upload_pipeline.events (job_id, document_id, type, severity, code, correlation_id, ts,
                                    from_status, to_status, in_previous_state, attempt)
SELECT job_id, document_id,
       CASE WHEN status LIKE 'failed%' THEN 'stage_error' WHEN status IN ('parsed', 'chunks_stored', 'embeddings_stored', 'complete') THEN 'stage_done' ELSE 'stage_started' END,
       CASE WHEN status LIKE 'failed%' THEN 'error' ELSE 'info' END,
       status, correlation_id, ts, lag(status) OVER w, status, ts - lag(ts) OVER w, 1
FROM bench_steps WINDOW w AS (PARTITION BY job_id ORDER BY k);
-- The ledger: an upload to LlamaParse and an embeddings request per job that got that far.
INSERT INTO upload_pipeline.usage (ts, service, operation, job_id, http_status, latency_ms, pages, cost_usd, model, state)
SELECT s.ts, 'llamaparse', 'upload', s.job_id, 200, 300, 2, 0.00625, 'fast', 'answered'
FROM bench_steps s WHERE s.status = 'parse_queued';
INSERT INTO upload_pipeline.usage (ts, service, operation, job_id, http_status, latency_ms, prompt_tokens, cost_usd, model, state)
SELECT s.ts, 'openai', 'embeddings', s.job_id, 200, 800, 1200, 0.000024, 'text-embedding-3-small', 'answered'
FROM bench_steps s WHERE s.status = 'embeddings_stored';
-- What the status triggers keep beside the jobs (skipped above): the queue
-- of open jobs and the counts of finished ones.
INSERT INTO upload_pipeline.job_queue (document_id, job_id, status, due_at, status_changed_at, lease_expires_at)
SELECT j.document_id, j.job_id, j.status, greatest(j.status_changed_at, j.next_poll_at, j.lease_expires_at),
       j.status_changed_at, j.lease_expires_at
FROM upload_pipeline.upload_jobs j JOIN tvdb.statuses s USING (status) WHERE NOT s.is_terminal
ON CONFLICT DO NOTHING;
INSERT INTO upload_pipeline.finished_counts (status, slot, jobs)
SELECT j.status, 0, count(*) FROM upload_pipeline.upload_jobs j JOIN tvdb.statuses s USING (status)
WHERE s.is_terminal GROUP BY j.status
ON CONFLICT (status, slot) DO UPDATE SET jobs = finished_counts.jobs + EXCLUDED.jobs;
RESET session_replication_role;
-- Real events and ledger rows arrive in time order, so a window of time is a
-- run of neighbouring pages; these were written job by job.
CLUSTER upload_pipeline.events USING events_ts_idx;
CLUSTER upload_pipeline.usage USING usage_ts_idx;
VACUUM ANALYZE upload_pipeline.blobs, upload_pipeline.documents, upload_pipeline.upload_jobs,
               upload_pipeline.events, upload_pipeline.usage, upload_pipeline.job_queue;
SELECT (SELECT count(*) FROM upload_pipeline.upload_jobs) AS jobs, (SELECT count(*) FROM upload_pipeline.events) AS events,
       (SELECT count(*) FROM upload_pipeline.usage) AS usage_rows;
