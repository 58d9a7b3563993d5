-- Budgets: a request whose estimate would take a budget past its limit is
-- not sent; its job waits, with one event, and alerts at 80 % and 100 %.
\set VERBOSITY terse

SELECT tvdb.set_budget('stripe', 'day', 1);
SELECT tvdb.set_budget('openai', 'week', 1);
SELECT tvdb.set_budget('openai', 'day', -1);

-- 0.00005 USD a day for OpenAI: 2500 tokens of text-embedding-3-small.
SELECT tvdb.set_budget('openai', 'day', 0.00005);
SELECT service, period, limit_usd, period_start = date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS utc_day,
       spent_usd, reserved_usd, remaining_usd
FROM tvdb.budgets;

SELECT tvdb.upload('b1.md', convert_to('budget one', 'UTF8')) AS b1 \gset
UPDATE upload_pipeline.upload_jobs SET lease_owner = 'tvdb worker 9 pid 1' WHERE job_id = :'b1';
-- 1000 tokens (0.00002): fits; 1100 more (0.000044 in all, past 80 %): fits, one alert.
SELECT tvdb._request_sent('openai', 'embeddings', NULL, ARRAY[:'b1'::uuid], 'tvdb worker 9 pid 1', 0, 1000) IS NOT NULL AS first_goes;
SELECT tvdb._request_sent('openai', 'embeddings', NULL, ARRAY[:'b1'::uuid], 'tvdb worker 9 pid 1', 0, 1200) IS NOT NULL AS second_goes;
SELECT kind, severity, service, count FROM upload_pipeline.alerts WHERE kind LIKE 'budget%' ORDER BY alert_id;
-- 500 more would pass the limit: not sent, the job waits (no try spent), an alert.
SELECT tvdb._request_sent('openai', 'embeddings', NULL, ARRAY[:'b1'::uuid], 'tvdb worker 9 pid 1', 0, 500) AS refused;
SELECT lease_owner IS NULL AS released, next_poll_at > now() AS waits, tries FROM upload_pipeline.upload_jobs WHERE job_id = :'b1';
SELECT code, payload ->> 'error' AS reason FROM upload_pipeline.events WHERE job_id = :'b1' AND code = 'budget_exhausted';
-- refused again: no second event, no second alert in this period
UPDATE upload_pipeline.upload_jobs SET lease_owner = 'tvdb worker 9 pid 1' WHERE job_id = :'b1';
SELECT tvdb._request_sent('openai', 'embeddings', NULL, ARRAY[:'b1'::uuid], 'tvdb worker 9 pid 1', 0, 500) AS refused_again;
SELECT count(*) AS events FROM upload_pipeline.events WHERE job_id = :'b1' AND code = 'budget_exhausted';
SELECT kind, severity, service, count FROM upload_pipeline.alerts WHERE kind LIKE 'budget%' ORDER BY alert_id;
-- a poll costs nothing and is never refused; LlamaParse is not covered
SELECT tvdb._request_sent('llamaparse', 'job_status', :'b1', NULL, 'tvdb worker 9 pid 1', 0, 0) IS NOT NULL AS poll_goes;
SELECT tvdb._request_sent('llamaparse', 'upload', :'b1', NULL, 'tvdb worker 9 pid 1', 2, 0) IS NOT NULL AS upload_goes;
SELECT service, spent_usd, reserved_usd, remaining_usd, forecast_usd > 0 AS forecast FROM tvdb.budgets;

-- Throttling: above tvdb.budget_throttle_at of a budget, at most
-- tvdb.budget_throttle_rpm costed requests a minute (here 1; two went already).
ALTER SYSTEM SET tvdb.budget_throttle_at = 0.1;
ALTER SYSTEM SET tvdb.budget_throttle_rpm = 1;
SELECT pg_reload_conf();
SELECT pg_sleep(0.3);
SELECT tvdb.set_budget('openai', 'day', 1);
UPDATE upload_pipeline.upload_jobs SET lease_owner = 'tvdb worker 9 pid 1' WHERE job_id = :'b1';
SELECT tvdb._request_sent('openai', 'embeddings', NULL, ARRAY[:'b1'::uuid], 'tvdb worker 9 pid 1', 0, 5000000) AS throttled;
SELECT code, payload ->> 'error' AS reason FROM upload_pipeline.events WHERE job_id = :'b1' ORDER BY seq DESC LIMIT 1;
SELECT next_poll_at BETWEEN now() + interval '50 seconds' AND now() + interval '61 seconds' AS waits_a_minute_over_rpm
FROM upload_pipeline.upload_jobs WHERE job_id = :'b1';
ALTER SYSTEM RESET tvdb.budget_throttle_at;
ALTER SYSTEM RESET tvdb.budget_throttle_rpm;
SELECT pg_reload_conf();
SELECT pg_sleep(0.3);
SELECT tvdb.set_budget('openai', 'day', 0.00005);

-- Raising the limit makes the waiting job due at once.
SELECT tvdb.set_budget('openai', 'day', 1);
SELECT next_poll_at IS NULL AS due_now FROM upload_pipeline.upload_jobs WHERE job_id = :'b1';
-- An "all" budget covers both services.
SELECT tvdb.set_budget('all', 'month', 0.00001);
SELECT tvdb._request_sent('llamaparse', 'upload', :'b1', NULL, 'tvdb worker 9 pid 1', 2, 0) AS refused_by_all;
SELECT tvdb.set_budget('all', 'month', NULL);
SELECT tvdb.set_budget('openai', 'day', NULL);
SELECT count(*) AS budgets_left FROM tvdb.budgets;

DELETE FROM upload_pipeline.usage WHERE job_id = :'b1' OR :'b1' = ANY(job_ids);
DELETE FROM upload_pipeline.alerts WHERE kind LIKE 'budget%';
