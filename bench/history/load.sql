-- bench/history/load.sql — a history of finished jobs, loaded in bulk: each
-- job complete, with its document, its two blobs (the upload and the parsed
-- markdown), the nine events of its way through the pipeline, its ledger row
-- (one mock parse each, one mock embeddings request per 32 jobs) and,
-- optionally, its chunks.  It looks like what the worker in mock mode leaves
-- behind, spread over the 30 days before the load, in time order (as real
-- events and ledger rows arrive).  No job is unfinished: none has a lease, a
-- next_poll_at or a retry due, so nothing here belongs in any structure of
-- active jobs (session_replication_role = replica skips the triggers that
-- would maintain one, and the foreign keys; the rows are written so that the
-- keys hold).  Superuser only.  Never run it on a database you care about.
--   psql -v jobs=1000000 -v chunks=0 -v dims=8 -f bench/history/load.sql
-- chunks: chunks per job (0: none; the worker's own have 1536-dimension
-- vectors, 6 kB each, which would make a million jobs' chunks some 12 GB:
-- these have dims-dimension ones).
\set ON_ERROR_STOP 1
\if :{?jobs}
\else
\set jobs 1000000
\endif
\if :{?chunks}
\else
\set chunks 0
\endif
\if :{?dims}
\else
\set dims 8
\endif
SET session_replication_role = replica;
SET synchronous_commit = off;
SET work_mem = '256MB';
SET maintenance_work_mem = '512MB';

-- Each job: random ids (as gen_random_uuid makes them), created at an even
-- pace over the 30 days up to an hour ago, and the times of its nine statuses
-- (the mock parses and embeds in milliseconds; the worker's passes add some).
CREATE TEMP TABLE hist_jobs AS
SELECT i, gen_random_uuid() AS document_id, gen_random_uuid() AS job_id, gen_random_uuid() AS correlation_id,
       convert_to(format('<h1>History document %s</h1><p>Loaded by bench/history.</p>', i), 'UTF8') AS upload,
       convert_to(format(E'# History document %s\n\nLoaded by bench/history.\n', i), 'UTF8') AS parsed,
       ARRAY[c, c + d[1], c + d[1] + d[2], c + d[1] + d[2] + d[3], c + d[1] + d[2] + d[3] + d[4],
             c + d[1] + d[2] + d[3] + d[4] + d[5], c + d[1] + d[2] + d[3] + d[4] + d[5] + d[6],
             c + d[1] + d[2] + d[3] + d[4] + d[5] + d[6] + d[7],
             c + d[1] + d[2] + d[3] + d[4] + d[5] + d[6] + d[7] + d[8]] AS ts
FROM (SELECT i, now() - interval '1 hour' - interval '30 days' * (1 - (i - 1)::float8 / :jobs) AS c,
             ARRAY[random() * interval '300 ms', random() * interval '100 ms', random() * interval '300 ms',
                   random() * interval '100 ms', random() * interval '300 ms', random() * interval '300 ms',
                   random() * interval '100 ms', random() * interval '100 ms'] AS d
      FROM generate_series(1, :jobs) AS i) g;

INSERT INTO upload_pipeline.blobs (document_id, path, content, content_type, sha256, size_bytes, created_at)
SELECT document_id, p.path, p.content, p.content_type, encode(sha256(p.content), 'hex'), octet_length(p.content), p.ts
FROM hist_jobs j,
     LATERAL (VALUES (format('storage://uploads/%s/history-%s.html', j.document_id, j.i), j.upload, 'text/html', j.ts[1]),
                     (format('storage://parsed/%s/%s.md', j.document_id, j.job_id), j.parsed, 'text/markdown', j.ts[3]))
             AS p(path, content, content_type, ts)
ORDER BY j.i, p.ts;

INSERT INTO upload_pipeline.documents (document_id, filename, mime_type, size_bytes, sha256, storage_path,
                                       created_at, owner)
SELECT document_id, format('history-%s.html', i), 'text/html', octet_length(upload), encode(sha256(upload), 'hex'),
       format('storage://uploads/%s/history-%s.html', document_id, i), ts[1], current_user
FROM hist_jobs ORDER BY i;

INSERT INTO upload_pipeline.upload_jobs (job_id, document_id, status, correlation_id, attempts, tries,
                                         parse_job_id, parsed_path, parsed_sha256, status_changed_at,
                                         created_at, updated_at)
SELECT job_id, document_id, 'complete', correlation_id, 1, 0, 'mock-' || job_id,
       format('storage://parsed/%s/%s.md', document_id, job_id), encode(sha256(parsed), 'hex'), ts[9], ts[1], ts[9]
FROM hist_jobs ORDER BY i;

-- The nine events, as the status triggers write them.
INSERT INTO upload_pipeline.events (job_id, document_id, type, severity, code, payload, correlation_id, ts,
                                    from_status, to_status, in_previous_state, attempt)
SELECT j.job_id, j.document_id, s.type, 'info', s.code,
       CASE s.k WHEN 2 THEN jsonb_build_object('parse_job_id', 'mock-' || j.job_id)
                WHEN 3 THEN jsonb_build_object('via', 'mock', 'content_length', octet_length(j.parsed))
                WHEN 5 THEN jsonb_build_object('chunks', greatest(:chunks, 1))
                WHEN 8 THEN jsonb_build_object('chunks', greatest(:chunks, 1))
                ELSE '{}' END,
       j.correlation_id, j.ts[s.k], s.from_status, s.to_status,
       CASE WHEN s.k > 1 THEN j.ts[s.k] - j.ts[s.k - 1] END, 1
FROM hist_jobs j,
     (VALUES (1, 'stage_done', 'upload_received', NULL, 'uploaded'),
             (2, 'stage_started', 'parse_queued', 'uploaded', 'parse_queued'),
             (3, 'stage_done', 'parse_completed', 'parse_queued', 'parsed'),
             (4, 'stage_started', 'chunking_started', 'parsed', 'chunking'),
             (5, 'stage_done', 'chunking_completed', 'chunking', 'chunks_stored'),
             (6, 'stage_started', 'embedding_queued', 'chunks_stored', 'embedding_queued'),
             (7, 'stage_started', 'embedding_started', 'embedding_queued', 'embedding_in_progress'),
             (8, 'stage_done', 'embedding_completed', 'embedding_in_progress', 'embeddings_stored'),
             (9, 'stage_done', 'pipeline_completed', 'embeddings_stored', 'complete'))
     AS s(k, type, code, from_status, to_status)
ORDER BY j.i, s.k;

-- The ledger: one mock parse per job, one mock embeddings request per 32 jobs.
INSERT INTO upload_pipeline.usage (ts, service, operation, job_id, job_ids, http_status, latency_ms, pages,
                                   inputs, cost_usd, model, state, reserved_usd)
SELECT ts, service, operation, job_id, job_ids, 200, 0, pages, inputs, 0, 'mock', 'answered', 0
FROM (SELECT j.ts[3] AS ts, 'mock' AS service, 'parse' AS operation, j.job_id, '{}'::uuid[] AS job_ids,
             1 AS pages, NULL::integer AS inputs
      FROM hist_jobs j
      UNION ALL
      SELECT max(j.ts[8]), 'mock', 'embeddings', NULL, array_agg(j.job_id ORDER BY j.i), NULL,
             greatest(:chunks, 1) * count(*)
      FROM hist_jobs j GROUP BY (j.i - 1) / 32) u
ORDER BY ts;

SELECT :chunks > 0 AS with_chunks \gset
\if :with_chunks
INSERT INTO upload_pipeline.document_chunks (document_id, job_id, chunk_index, content, token_estimate, sha256,
                                             heading_path, embedding, model, created_at)
SELECT j.document_id, j.job_id, c.k, t.content, octet_length(t.content) / 4, encode(sha256(convert_to(t.content, 'UTF8')), 'hex'),
       ARRAY[format('History document %s', j.i)],
       (SELECT array_agg(((j.i * 31 + c.k * 7 + d) % 1000) / 1000.0)::real[] FROM generate_series(1, :dims) d),
       'mock', j.ts[5]
FROM hist_jobs j, generate_series(0, :chunks - 1) AS c(k),
     LATERAL (SELECT format('History document %s, chunk %s. Loaded by bench/history.', j.i, c.k) AS content) t
ORDER BY j.i, c.k;
\endif

RESET session_replication_role;
DROP TABLE hist_jobs;
-- An old database that is looked after: vacuumed (visibility map set, so
-- index-only scans work) and analyzed.
VACUUM ANALYZE upload_pipeline.blobs, upload_pipeline.documents, upload_pipeline.upload_jobs,
               upload_pipeline.events, upload_pipeline.usage, upload_pipeline.document_chunks;
CHECKPOINT;
