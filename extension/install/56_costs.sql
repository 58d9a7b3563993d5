-- What each document and job cost, by service and operation.  A batched
-- embeddings request is shared by its jobs in proportion to their
-- estimated tokens in it (usage.job_tokens; evenly when not known).

CREATE VIEW tvdb.job_costs AS
    WITH shares AS (
        SELECT u.job_id, u.service, u.operation, u.model, u.cost_usd, u.reserved_usd, 1.0 AS share
        FROM upload_pipeline.usage u
        WHERE u.job_id IS NOT NULL
        UNION ALL
        SELECT x.job_id, u.service, u.operation, u.model, u.cost_usd, u.reserved_usd,
               coalesce(x.tokens::numeric / nullif(sum(x.tokens) OVER (PARTITION BY u.usage_id), 0),
                        1.0 / cardinality(u.job_ids))
        FROM upload_pipeline.usage u,
             LATERAL unnest(u.job_ids, u.job_tokens) AS x(job_id, tokens)
        WHERE u.job_id IS NULL AND x.job_id IS NOT NULL
    )
    SELECT j.document_id, d.filename, s.job_id, s.service, s.operation, s.model,
           count(*) AS requests,
           round(sum(s.cost_usd * s.share), 10) AS cost_usd,
           round(sum(s.reserved_usd * s.share), 10) AS reserved_usd
    FROM shares s
    JOIN upload_pipeline.upload_jobs j ON j.job_id = s.job_id
    JOIN upload_pipeline.documents d ON d.document_id = j.document_id
    GROUP BY j.document_id, d.filename, s.job_id, s.service, s.operation, s.model;
COMMENT ON VIEW tvdb.job_costs IS
    'each job''s cost by service, operation and model; a batched request shared by its jobs'' tokens in it';

CREATE VIEW tvdb.document_costs AS
    SELECT c.document_id, c.filename,
           (SELECT count(*) FROM upload_pipeline.upload_jobs j WHERE j.document_id = c.document_id) AS jobs,
           coalesce(sum(c.cost_usd) FILTER (WHERE c.service = 'llamaparse'), 0) AS llamaparse_usd,
           coalesce(sum(c.cost_usd) FILTER (WHERE c.service = 'openai'), 0) AS openai_usd,
           sum(c.cost_usd) AS cost_usd, sum(c.reserved_usd) AS reserved_usd,
           jsonb_object_agg(c.service || '/' || c.operation, c.cost_usd) AS by_operation
    FROM (SELECT document_id, filename, service, operation, sum(cost_usd) AS cost_usd,
                 sum(reserved_usd) AS reserved_usd
          FROM tvdb.job_costs GROUP BY 1, 2, 3, 4) c
    GROUP BY c.document_id, c.filename;
COMMENT ON VIEW tvdb.document_costs IS
    'each document''s cost over all its jobs: by service, in all, still reserved, and by service/operation';

CREATE VIEW tvdb.cost_summary AS
    SELECT (date_trunc('day', u.ts AT TIME ZONE 'UTC'))::date AS day, u.service, u.operation, u.model,
           count(*) AS requests, sum(u.cost_usd) AS cost_usd, sum(u.reserved_usd) AS reserved_usd,
           sum(u.pages) AS pages, sum(u.prompt_tokens) AS prompt_tokens
    FROM upload_pipeline.usage u
    GROUP BY 1, 2, 3, 4;
COMMENT ON VIEW tvdb.cost_summary IS 'cost by UTC day, service, operation and model';
