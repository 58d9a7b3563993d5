-- Least privilege. Applications act through functions, never by writing the
-- tables: no role but the extension's owner has any privilege on
-- upload_pipeline. The functions an application calls run SECURITY DEFINER
-- with a pinned search_path, and each checks whose document it touches
-- (tvdb._may_see). Nothing is executable by PUBLIC; the three roles are
-- granted what their work needs.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA tvdb FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tvdb.hmac_sha256(bytea, bytea) TO PUBLIC;   -- arithmetic, no data

ALTER FUNCTION tvdb.upload(text, bytea, text, uuid) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION tvdb.job(uuid) SECURITY DEFINER;
ALTER FUNCTION tvdb.job_history(uuid) SECURITY DEFINER;
ALTER FUNCTION tvdb.embeddings_of(text) SECURITY DEFINER;
ALTER FUNCTION tvdb.embed(text, text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION tvdb.search(real[], integer, uuid[], uuid, text, text, text, boolean) SECURITY DEFINER;
ALTER FUNCTION tvdb.search(text, integer, uuid[], uuid, text, text, text, boolean) SECURITY DEFINER;
-- called by views that tvdb_monitor reads: a view's function runs as its reader
ALTER FUNCTION tvdb._budget_used(text, text) SECURITY DEFINER;

-- tvdb_app: upload, read its jobs, their history and their chunks' vectors, search them.
GRANT EXECUTE ON FUNCTION tvdb.upload(text, bytea, text, uuid), tvdb.job(uuid), tvdb.job_history(uuid),
                          tvdb.embeddings_of(text), tvdb.embed(text, text),
                          tvdb.search(real[], integer, uuid[], uuid, text, text, text, boolean),
                          tvdb.search(text, integer, uuid[], uuid, text, text, text, boolean), tvdb.version(), tvdb.parse_route(text, text, bigint),
                          tvdb.status_table(), tvdb.transition_table(), tvdb._may_see(name)
    TO tvdb_app;
GRANT SELECT ON tvdb.jobs, tvdb.embeddings, tvdb.statuses, tvdb.allowed_transitions TO tvdb_app;

-- tvdb_monitor: the views operators watch.
GRANT EXECUTE ON FUNCTION tvdb.version(), tvdb.status_table(), tvdb.transition_table(), tvdb._may_see(name),
                          tvdb._budget_used(text, text), tvdb._period_start(text, timestamptz)
    TO tvdb_monitor;
GRANT SELECT ON tvdb.jobs, tvdb.statuses, tvdb.allowed_transitions, tvdb.usage_summary, tvdb.budgets,
                tvdb.job_costs, tvdb.document_costs, tvdb.cost_summary, tvdb.alerts, tvdb.dead_letters,
                tvdb.webhook_refusals
    TO tvdb_monitor;

-- tvdb_webhook: hand a callback to the handler, nothing else.
GRANT EXECUTE ON FUNCTION tvdb.handle_llamaparse_webhook(bytea, jsonb, jsonb) TO tvdb_webhook;

-- The operator's window (66_dashboard): monitors read it in SQL, and
-- tvdb-webhookd serves it to a monitor's bearer token.
GRANT EXECUTE ON FUNCTION tvdb.dashboard(integer), tvdb.find_documents(text, integer),
                          tvdb.document_timeline(uuid)
    TO tvdb_monitor;
GRANT EXECUTE ON FUNCTION tvdb.monitor_with_token(text, text, text), tvdb._job_correlation(text) TO tvdb_webhook;
