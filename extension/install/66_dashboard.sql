-- An operator's window (tvdb-webhookd's GET /, /documents/{id} and their
-- JSON): the pipeline at a glance, and one document end to end.  Every
-- read here is bounded by an index or by the monitoring views' own plans,
-- so a million finished jobs cost no more than a hundred.

-- The newest documents, a document by name (case-insensitive prefix), and
-- a batch request by any job it served.
CREATE INDEX upload_jobs_created_idx ON upload_pipeline.upload_jobs (created_at);
CREATE INDEX documents_filename_idx ON upload_pipeline.documents (lower(filename) text_pattern_ops);
CREATE INDEX usage_job_ids_idx ON upload_pipeline.usage USING gin (job_ids);
CREATE INDEX alerts_last_idx ON upload_pipeline.alerts (last_at);

-- The pipeline now, as one JSON object (GET /api/v1/status).
CREATE FUNCTION tvdb.dashboard(recent integer DEFAULT 20) RETURNS jsonb
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h record;
    today timestamp := date_trunc('day', now() AT TIME ZONE 'UTC');
    month timestamp := date_trunc('month', now() AT TIME ZONE 'UTC');
    services text[] := '{llamaparse,openai,mock,local}';
BEGIN
    IF recent IS NULL OR recent NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'recent must be between 1 and 200'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('recent is %s.', coalesce(recent::text, 'NULL')),
                  HINT = 'The dashboard lists the newest documents; 20 is the default.';
    END IF;
    SELECT * INTO h FROM tvdb._health();
    RETURN jsonb_build_object(
        'checked_at', h.checked_at,
        'health', jsonb_build_object('status', h.status, 'reason', h.reason, 'workers', h.workers,
                                     'workers_expected', h.workers_expected, 'last_pass', h.last_pass),
        'backlog', jsonb_build_object('jobs', h.backlog, 'oldest', h.oldest_unfinished,
                                      'oldest_age_seconds', extract(epoch FROM now() - h.oldest_unfinished),
                                      'overdue', h.overdue, 'stuck', h.stuck),
        'statuses', (SELECT jsonb_agg(jsonb_build_object('status', s.status, 'jobs', s.jobs, 'oldest', s.oldest,
                                                         'leased', s.leased, 'terminal', s.is_terminal,
                                                         'failure', s.is_failure) ORDER BY s.ordinal)
                     FROM tvdb._pipeline_status() s),
        'throughput', (SELECT jsonb_agg(jsonb_build_object('minute', t.minute, 'completed', t.completed,
                                                           'failed', t.failed) ORDER BY t.minute)
                       FROM tvdb._throughput(interval '1 hour') t),
        'latency', (SELECT jsonb_agg(jsonb_build_object('stage', l.stage, 'count', l.count,
                                                        'p50_seconds', l.p50_seconds, 'p95_seconds', l.p95_seconds))
                    FROM tvdb.stage_latency(interval '1 hour') l),
        'costs', jsonb_build_object(
            'today_usd', tvdb._spent_since(services, today::date),
            'month_usd', tvdb._spent_since(services, month::date),
            'budgets', h.budgets),
        'circuits', h.circuits,
        'alerts', (SELECT coalesce(jsonb_agg(jsonb_build_object('kind', a.kind, 'severity', a.severity,
                                                                'service', a.service, 'count', a.count,
                                                                'message', a.message, 'last_at', a.last_at,
                                                                'job_id', a.job_id) ORDER BY a.last_at DESC), '[]')
                   FROM (SELECT * FROM upload_pipeline.alerts ORDER BY last_at DESC LIMIT 10) a),
        'recent', (SELECT coalesce(jsonb_agg(jsonb_build_object('document_id', r.document_id, 'job_id', r.job_id,
                                                                'filename', r.filename, 'status', r.status,
                                                                'correlation_id', r.correlation_id,
                                                                'created_at', r.created_at,
                                                                'status_changed_at', r.status_changed_at,
                                                                'last_error', r.last_error)
                                            ORDER BY r.created_at DESC), '[]')
                   FROM (SELECT j.*, d.filename FROM upload_pipeline.upload_jobs j
                         JOIN upload_pipeline.documents d USING (document_id)
                         ORDER BY j.created_at DESC LIMIT recent) r));
END
$$;
COMMENT ON FUNCTION tvdb.dashboard(integer) IS
    'the pipeline now as JSON: health, backlog, jobs per status, throughput and stage latency over the last hour, cost today and this month with each budget, circuits, the latest alerts and the newest documents';

-- Documents by id (a document's or a job's) or correlation id, newest
-- first; or by the start of a filename (case-insensitive), in name order.
CREATE FUNCTION tvdb.find_documents(term text, max integer DEFAULT 20)
    RETURNS TABLE (document_id uuid, job_id uuid, filename text, status text, correlation_id uuid,
                   created_at timestamptz)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET plan_cache_mode = force_custom_plan   -- the filename's prefix must reach the plan for its index
AS $$
DECLARE
    id uuid;
BEGIN
    term := btrim(coalesce(term, ''));
    IF term = '' OR length(term) > 255 THEN
        RAISE EXCEPTION 'a search term is 1 to 255 characters'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('It has %s.', length(term)),
                  HINT = 'Search by a document id, a job id, a correlation id or the start of a filename.';
    END IF;
    IF max IS NULL OR max NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'max must be between 1 and 200'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('max is %s.', coalesce(max::text, 'NULL')),
                  HINT = 'Ask for fewer documents and refine the term.';
    END IF;
    IF term ~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$' THEN
        id := term::uuid;
    END IF;
    IF id IS NOT NULL THEN
        RETURN QUERY
        SELECT j.document_id, j.job_id, d.filename, j.status, j.correlation_id, j.created_at
        FROM upload_pipeline.upload_jobs j JOIN upload_pipeline.documents d USING (document_id)
        WHERE j.document_id = id OR j.job_id = id OR j.correlation_id = id
        ORDER BY j.created_at DESC
        LIMIT max;
        RETURN;
    END IF;
    -- the first names in order, read from the index: a prefix a million
    -- names share costs no more than one that a single name has
    RETURN QUERY
    SELECT d.document_id, j.job_id, d.filename, j.status, j.correlation_id, j.created_at
    FROM (SELECT x.document_id, x.filename FROM upload_pipeline.documents x
          WHERE lower(x.filename) LIKE replace(replace(replace(lower(term), '\', '\\'), '%', '\%'), '_', '\_') || '%'
          ORDER BY lower(x.filename) USING ~<~, x.document_id   -- the index's order (text_pattern_ops)
          LIMIT max) d
    LEFT JOIN LATERAL (SELECT y.* FROM upload_pipeline.upload_jobs y WHERE y.document_id = d.document_id
                       ORDER BY y.created_at DESC LIMIT 1) j ON true
    ORDER BY lower(d.filename) USING ~<~, d.document_id;
END
$$;
COMMENT ON FUNCTION tvdb.find_documents(text, integer) IS
    'documents by document, job or correlation id (newest first), or by the start of their filename (case-insensitive, in name order); each with its latest job';

-- One document end to end, oldest first: each status with the time spent
-- in it, other events (retries, failures, refusals), every request made for
-- it with its status, latency and cost, its alerts, then its chunks.
CREATE FUNCTION tvdb.document_timeline(document_id uuid)
    RETURNS TABLE (at timestamptz, kind text, what text, seconds double precision, http_status integer,
                   latency_ms double precision, cost_usd numeric, detail text, seq bigint)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM upload_pipeline.documents d WHERE d.document_id = document_timeline.document_id) THEN
        RAISE EXCEPTION 'document % does not exist', document_id
            USING ERRCODE = 'TV004', DETAIL = 'No document has this id (a job id is not a document id).',
                  HINT = 'tvdb.find_documents() finds a document by job id, correlation id or filename.';
    END IF;
    RETURN QUERY
    WITH jobs AS (SELECT j.job_id FROM upload_pipeline.upload_jobs j
                  WHERE j.document_id = document_timeline.document_id),
    statuses AS (
        -- the time in each status: until the next, or until now for an open one
        SELECT e.ts, e.to_status, e.seq,
               CASE WHEN lead(e.ts) OVER w IS NOT NULL THEN extract(epoch FROM lead(e.ts) OVER w - e.ts)
                    WHEN NOT (SELECT st.is_terminal FROM tvdb.statuses st WHERE st.status = e.to_status)
                    THEN extract(epoch FROM now() - e.ts) END::double precision AS spent,
               e.attempt, e.payload
        FROM upload_pipeline.events e
        WHERE e.document_id = document_timeline.document_id AND e.to_status IS NOT NULL
        WINDOW w AS (ORDER BY e.seq))
    SELECT * FROM (
        SELECT s.ts, 'status'::text, s.to_status, s.spent, NULL::integer, NULL::double precision, NULL::numeric,
               concat_ws('; ', 'attempt ' || s.attempt, s.payload->>'error', s.payload->>'reason'), s.seq
        FROM statuses s
        UNION ALL
        SELECT e.ts, 'event', e.type || ' ' || e.code, NULL, NULL, NULL, NULL,
               concat_ws('; ', e.severity, nullif(e.payload::text, '{}')), e.seq
        FROM upload_pipeline.events e
        WHERE e.document_id = document_timeline.document_id AND e.to_status IS NULL
        UNION ALL
        SELECT u.ts, 'request', u.service || ' ' || u.operation, NULL, u.http_status, u.latency_ms,
               round(u.cost_usd, 10), concat_ws('; ', u.state, u.error, 'pages ' || u.pages, 'tokens ' || u.prompt_tokens),
               u.usage_id
        FROM upload_pipeline.usage u
        WHERE u.job_id IN (SELECT job_id FROM jobs)
        UNION ALL
        -- a batch (no job_id, its jobs in job_ids: the GIN index): its cost
        -- shared by its jobs' tokens in it, as tvdb.job_costs shares it
        SELECT u.ts, 'request', u.service || ' ' || u.operation, NULL, u.http_status, u.latency_ms,
               round(u.cost_usd * coalesce(
                         u.job_tokens[array_position(u.job_ids, b.job_id)]::numeric
                             / nullif((SELECT sum(t) FROM unnest(u.job_tokens) t), 0),
                         1.0 / cardinality(u.job_ids)), 10),
               concat_ws('; ', u.state, u.error, 'tokens ' || u.prompt_tokens,
                         format('batch of %s jobs costing %s USD', cardinality(u.job_ids), u.cost_usd)),
               u.usage_id
        FROM upload_pipeline.usage u
        CROSS JOIN LATERAL (SELECT x.job_id FROM jobs x WHERE x.job_id = ANY (u.job_ids) LIMIT 1) b
        WHERE u.job_id IS NULL AND u.job_ids && ARRAY(SELECT job_id FROM jobs)
        UNION ALL
        SELECT a.last_at, 'alert', a.kind, NULL, NULL, NULL, NULL,
               concat_ws('; ', a.severity, a.message, CASE WHEN a.count > 1 THEN a.count || ' times' END), a.alert_id
        -- a coalesced alert keeps its first job; its message names the latest
        FROM upload_pipeline.alerts a
        WHERE a.job_id IN (SELECT job_id FROM jobs)
           OR EXISTS (SELECT FROM jobs x WHERE strpos(a.message, x.job_id::text) > 0)
    ) t (at, kind, what, seconds, http_status, latency_ms, cost_usd, detail, seq)
    -- a transaction's events share its time: their sequence orders them
    ORDER BY t.at, CASE t.kind WHEN 'request' THEN 1 WHEN 'alert' THEN 2 ELSE 0 END, t.seq;
    RETURN QUERY
    SELECT c.created_at, 'chunk'::text, c.chunk_index::text, NULL::double precision, NULL::integer,
           NULL::double precision, NULL::numeric,
           concat_ws('; ', nullif(array_to_string(c.heading_path, ' > '), ''), c.token_estimate || ' tokens',
                     CASE WHEN c.embedding IS NULL THEN 'not embedded' ELSE c.model END), c.chunk_index::bigint
    FROM upload_pipeline.document_chunks c
    WHERE c.document_id = document_timeline.document_id
    ORDER BY c.chunk_index;
END
$$;
COMMENT ON FUNCTION tvdb.document_timeline(uuid) IS
    'one document end to end: each status and the seconds spent in it, other events, every request for it (status, latency, its share of the cost), its alerts, then its chunks; seq is the event''s, request''s or alert''s id, or the chunk''s index';

-- tvdb-webhookd's monitor endpoints: a bearer token whose owner is a member
-- of tvdb_monitor (tvdb.create_api_token(name, 'tvdb_monitor')) reads them;
-- an upload token does not.  The answer has the receiver's shape.
CREATE FUNCTION tvdb.monitor_with_token(token text, what text, arg text DEFAULT NULL) RETURNS jsonb
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    owner name;
    doc uuid;
BEGIN
    SELECT t.owner INTO owner FROM upload_pipeline.api_tokens t
    WHERE t.token_sha256 = sha256(convert_to(coalesce(token, ''), 'UTF8'));
    IF owner IS NULL THEN
        RETURN jsonb_build_object('http_status', 401, 'result', 'unauthorized',
                                  'detail', 'missing or unknown bearer token');
    END IF;
    IF to_regrole(quote_ident(owner)) IS NULL OR NOT pg_has_role(owner, 'tvdb_monitor', 'MEMBER') THEN
        RETURN jsonb_build_object('http_status', 403, 'result', 'forbidden',
                                  'detail', 'this token may upload but not read the dashboard: create one with tvdb.create_api_token(name, ''tvdb_monitor'')');
    END IF;
    IF what = 'status' THEN
        RETURN jsonb_build_object('http_status', 200) || tvdb.dashboard();
    ELSIF what = 'search' THEN
        BEGIN
            RETURN jsonb_build_object('http_status', 200, 'documents',
                   (SELECT coalesce(jsonb_agg(to_jsonb(f)), '[]') FROM tvdb.find_documents(arg) f));
        EXCEPTION WHEN invalid_parameter_value THEN
            RETURN jsonb_build_object('http_status', 400, 'result', 'bad_request', 'detail', SQLERRM);
        END;
    ELSIF what = 'document' THEN
        IF arg IS NULL OR arg !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
            RETURN jsonb_build_object('http_status', 400, 'result', 'bad_request',
                                      'detail', 'a document id is a UUID, such as 0b7c3e5e-8f1a-4c55-9e2d-6f0a1b2c3d4e');
        END IF;
        doc := arg::uuid;
        IF NOT EXISTS (SELECT FROM upload_pipeline.documents d WHERE d.document_id = doc) THEN
            RETURN jsonb_build_object('http_status', 404, 'result', 'not_found', 'detail', 'no document has this id');
        END IF;
        RETURN jsonb_build_object('http_status', 200,
            'document', (SELECT to_jsonb(x) FROM (
                            SELECT d.document_id, d.filename, d.mime_type, d.size_bytes, d.owner,
                                   j.job_id, j.status, j.correlation_id, j.attempts, j.last_error,
                                   j.failure_class, j.created_at, j.status_changed_at,
                                   (SELECT coalesce(sum(t.cost_usd), 0) FROM tvdb.document_timeline(doc) t
                                    WHERE t.kind = 'request') AS cost_usd
                            FROM upload_pipeline.documents d
                            LEFT JOIN upload_pipeline.upload_jobs j USING (document_id)
                            WHERE d.document_id = doc ORDER BY j.created_at DESC LIMIT 1) x),
            'timeline', (SELECT coalesce(jsonb_agg(to_jsonb(t)), '[]') FROM tvdb.document_timeline(doc) t));
    END IF;
    RETURN jsonb_build_object('http_status', 404, 'result', 'not_found', 'detail', 'no such endpoint');
END
$$;
COMMENT ON FUNCTION tvdb.monitor_with_token(text, text, text) IS
    'tvdb-webhookd''s GET /api/v1/status, /api/v1/documents?q= and /api/v1/documents/{id}, for a token owned by a member of tvdb_monitor; {"http_status", ...}';
