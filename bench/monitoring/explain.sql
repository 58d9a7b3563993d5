-- bench/monitoring/explain.sql — the plans and timings of the monitoring
-- views, on the database load.sql filled.  Each view reads a SECURITY
-- DEFINER function, whose queries are shown here as they run inside it.
\set ON_ERROR_STOP 1
\pset pager off
VACUUM ANALYZE upload_pipeline.upload_jobs, upload_pipeline.events, upload_pipeline.usage, upload_pipeline.job_queue;
SELECT (SELECT count(*) FROM upload_pipeline.upload_jobs) AS jobs,
       (SELECT count(*) FROM upload_pipeline.events) AS events,
       (SELECT count(*) FROM upload_pipeline.events WHERE ts > now() - interval '1 hour') AS events_last_hour,
       (SELECT count(*) FROM upload_pipeline.usage) AS usage_rows;
\echo == tvdb.pipeline_status
SELECT 'EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) ' || prosrc AS q FROM pg_proc WHERE proname = '_pipeline_status' \gset
:q;
\echo == tvdb.stage_latency (the last hour)
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT e.from_status, count(*), percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM e.in_previous_state))
FROM upload_pipeline.events e
WHERE e.ts > now() - interval '1 hour' AND e.from_status IS NOT NULL AND e.in_previous_state IS NOT NULL
GROUP BY e.from_status;
\echo == tvdb.throughput
SELECT format($q$EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
    SELECT date_trunc('minute', e.ts), count(*) FILTER (WHERE e.to_status = 'complete'),
           count(*) FILTER (WHERE e.to_status <> 'complete')
    FROM upload_pipeline.events e
    WHERE e.ts >= date_trunc('minute', now() - interval '59 minutes') AND e.from_status IS NOT NULL
      AND e.to_status IN (%s)
    GROUP BY 1$q$, tvdb._finished_list()) AS q \gset
:q;
\echo == tvdb.health (its backlog query)
SELECT format($q$EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
    SELECT count(*), min(q.status_changed_at),
           count(*) FILTER (WHERE q.due_at < now() - interval '1 minute'),
           count(*) FILTER (WHERE q.status_changed_at < now() - interval '1 hour')
    FROM upload_pipeline.job_queue q WHERE q.status IN (%s)$q$, tvdb._status_list(true, false)) AS q \gset
:q;
\echo == timings: each view five times (the median is the one to quote)
\timing on
SELECT count(*) FROM tvdb.pipeline_status;
SELECT count(*) FROM tvdb.pipeline_status;
SELECT count(*) FROM tvdb.pipeline_status;
SELECT count(*) FROM tvdb.pipeline_status;
SELECT count(*) FROM tvdb.pipeline_status;
SELECT count(*) FROM tvdb.stage_latency;
SELECT count(*) FROM tvdb.stage_latency;
SELECT count(*) FROM tvdb.stage_latency;
SELECT count(*) FROM tvdb.stage_latency;
SELECT count(*) FROM tvdb.stage_latency;
SELECT count(*) FROM tvdb.stage_latency(interval '5 minutes');
SELECT count(*) FROM tvdb.stage_latency(interval '5 minutes');
SELECT count(*) FROM tvdb.stage_latency(interval '5 minutes');
SELECT count(*) FROM tvdb.stage_latency(interval '5 minutes');
SELECT count(*) FROM tvdb.stage_latency(interval '5 minutes');
SELECT count(*) FROM tvdb.throughput;
SELECT count(*) FROM tvdb.throughput;
SELECT count(*) FROM tvdb.throughput;
SELECT count(*) FROM tvdb.throughput;
SELECT count(*) FROM tvdb.throughput;
SELECT count(*) FROM tvdb.health;
SELECT count(*) FROM tvdb.health;
SELECT count(*) FROM tvdb.health;
SELECT count(*) FROM tvdb.health;
SELECT count(*) FROM tvdb.health;
SELECT length(tvdb.metrics());
SELECT length(tvdb.metrics());
SELECT length(tvdb.metrics());
SELECT length(tvdb.metrics());
SELECT length(tvdb.metrics());
