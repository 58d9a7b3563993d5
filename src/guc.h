/*
 * guc.h — every tvdb setting, defined in guc.c.  Plain C values: nothing
 * here pulls in libcurl, so application-backend code may include it.
 */
#ifndef TVDB_GUC_H
#define TVDB_GUC_H

#define TVDB_MAX_WORKERS 32

typedef enum
{
	TVDB_MODE_REAL,
	TVDB_MODE_MOCK,
	TVDB_MODE_HYBRID			/* real where the service can be used, else the mock */
} TvdbServiceMode;

typedef enum
{
	TVDB_ENCODING_BASE64,
	TVDB_ENCODING_FLOAT
} TvdbEmbeddingEncoding;

typedef enum
{
	TVDB_CALLBACK_RULES_LLAMAPARSE,
	TVDB_CALLBACK_RULES_LOCAL
} TvdbCallbackRules;

typedef enum
{
	TVDB_LLAMAPARSE_V1,
	TVDB_LLAMAPARSE_V2
} TvdbLlamaParseApi;

/* uploads and webhooks (application backends) */
extern int	tvdb_max_upload_bytes;
extern bool tvdb_isolate_documents;
extern char *tvdb_webhook_secrets;
extern int	tvdb_webhook_tolerance;
extern int	tvdb_webhook_max_bytes;
extern char *tvdb_webhook_secret_header;
extern int	tvdb_callback_url_rules;

/* the workers */
extern char *tvdb_database;
extern int	tvdb_workers;
extern int	tvdb_service_mode;
extern char *tvdb_llamaparse_base_url;
extern char *tvdb_llamaparse_api_key;
extern char *tvdb_openai_base_url;
extern char *tvdb_openai_api_key;
extern char *tvdb_embedding_model;
extern int	tvdb_embedding_dimensions;
extern int	tvdb_embedding_encoding;
extern int	tvdb_max_inflight;
extern int	tvdb_chunk_target_tokens;
extern int	tvdb_chunk_overlap_tokens;
extern int	tvdb_chunk_bytes_per_token;
extern int	tvdb_http_timeout_ms;
extern int	tvdb_connect_timeout_ms;
extern int	tvdb_poll_min_ms;
extern int	tvdb_poll_max_ms;
extern int	tvdb_lease_seconds;
extern int	tvdb_retry_base_delay_ms;
extern int	tvdb_retry_max_delay_ms;
extern int	tvdb_max_attempts;
extern int	tvdb_alert_window_s;
extern int	tvdb_breaker_failures;
extern int	tvdb_max_job_retries;
extern int	tvdb_job_retry_delay_s;
extern int	tvdb_stuck_after_s;
extern int	tvdb_breaker_cooldown_ms;
extern int	tvdb_breaker_max_cooldown_ms;
extern int	tvdb_llamaparse_rpm;
extern int	tvdb_openai_rpm;
extern int	tvdb_openai_tpm;
extern char *tvdb_parse_webhook_url;
extern int	tvdb_llamaparse_api;
extern char *tvdb_parse_locally;
extern int64 tvdb_llamaparse_max_file_bytes;
extern char *tvdb_llamaparse_options;
extern double tvdb_llamaparse_usd_per_1000_credits;
extern double tvdb_budget_throttle_at;
extern bool tvdb_reuse_parses;
extern bool tvdb_embedding_cache;
extern bool tvdb_log_requests;
extern int	tvdb_budget_throttle_rpm;
extern int	tvdb_embedding_batch_inputs;
extern int	tvdb_query_cache_entries;
extern int	tvdb_embedding_batch_tokens;

extern void tvdb_define_settings(void);
extern int	tvdb_model_dimensions(void);
extern int	tvdb_lease_effective(void);
extern int	tvdb_chunk_overlap_effective(void);
extern int	tvdb_poll_max_effective(void);
extern char *tvdb_settings_disagree(void);
extern const char *tvdb_keys_missing(void);

#endif							/* TVDB_GUC_H */
