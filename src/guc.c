/*
 * guc.c — every tvdb setting, in one place.  Keys and webhook secrets are
 * superuser-only (to set and to read); the database and the number of
 * workers need a restart; the workers' tuning is reloaded on SIGHUP.
 *
 * Settings that must agree (poll_interval_min <= poll_interval_max, overlap
 * at most half the chunk size) are checked by their check hooks when one is
 * changed with ALTER SYSTEM, against the value the other will have after
 * the next reload (read from the configuration files, since ALTER SYSTEM
 * changes no value until then).  A configuration file itself is applied
 * one line at a time, so there a disagreement cannot be refused: the
 * effective values resolve it (tvdb_poll_max_effective,
 * tvdb_chunk_overlap_effective) and tvdb_settings_disagree names it, which
 * the worker logs at start and on every reload.
 */
#include "tvdb.h"

#include <float.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/memutils.h"

int			tvdb_max_upload_bytes = 64 * 1024 * 1024;
bool		tvdb_isolate_documents = false;
char	   *tvdb_webhook_secrets = NULL;
int			tvdb_webhook_tolerance = 300;
int			tvdb_webhook_max_bytes = 10 * 1024 * 1024;
char	   *tvdb_webhook_secret_header = NULL;
int			tvdb_callback_url_rules = TVDB_CALLBACK_RULES_LLAMAPARSE;
char	   *tvdb_database = NULL;
int			tvdb_workers = 1;
int			tvdb_service_mode = TVDB_MODE_REAL;
char	   *tvdb_llamaparse_base_url = NULL;
char	   *tvdb_llamaparse_api_key = NULL;
char	   *tvdb_openai_base_url = NULL;
char	   *tvdb_openai_api_key = NULL;
char	   *tvdb_embedding_model = NULL;
int			tvdb_embedding_dimensions = 0;
int			tvdb_embedding_encoding = TVDB_ENCODING_BASE64;
int			tvdb_max_inflight = 64;
int			tvdb_chunk_target_tokens = 512;
int			tvdb_chunk_overlap_tokens = 64;
int			tvdb_chunk_bytes_per_token = 4;
int			tvdb_http_timeout_ms = 60000;
int			tvdb_connect_timeout_ms = 10000;
int			tvdb_poll_min_ms = 1000;
int			tvdb_poll_max_ms = 30000;
int			tvdb_lease_seconds = 300;
int			tvdb_retry_base_delay_ms = 500;
int			tvdb_retry_max_delay_ms = 60000;
int			tvdb_max_attempts = 8;
int			tvdb_alert_window_s = 300;
int			tvdb_breaker_failures = 5;
int			tvdb_max_job_retries = 3;
int			tvdb_job_retry_delay_s = 60;
int			tvdb_stuck_after_s = 3600;
int			tvdb_breaker_cooldown_ms = 10000;
int			tvdb_breaker_max_cooldown_ms = 300000;
int			tvdb_llamaparse_rpm = 300;
int			tvdb_openai_rpm = 3000;
int			tvdb_openai_tpm = 1000000;
char	   *tvdb_parse_webhook_url = NULL;
int			tvdb_llamaparse_api = TVDB_LLAMAPARSE_V1;
char	   *tvdb_parse_locally = NULL;
int64		tvdb_llamaparse_max_file_bytes = INT64CONST(512) * 1024 * 1024;
static int	llamaparse_max_file_mb = 512;
char	   *tvdb_llamaparse_options = NULL;
double		tvdb_llamaparse_usd_per_1000_credits = 1.25;
double		tvdb_budget_throttle_at = 0;
bool		tvdb_reuse_parses = true;
bool		tvdb_embedding_cache = true;
bool		tvdb_log_requests = false;
int			tvdb_budget_throttle_rpm = 60;
int			tvdb_embedding_batch_inputs = 2048;
int			tvdb_query_cache_entries = 256;
int			tvdb_embedding_batch_tokens = 300000;

static const struct config_enum_entry encoding_options[] = {
	{"base64", TVDB_ENCODING_BASE64, false},
	{"float", TVDB_ENCODING_FLOAT, false},
	{NULL, 0, false}
};

static const struct config_enum_entry callback_rules_options[] = {
	{"llamaparse", TVDB_CALLBACK_RULES_LLAMAPARSE, false},
	{"local", TVDB_CALLBACK_RULES_LOCAL, false},
	{NULL, 0, false}
};

static const struct config_enum_entry llamaparse_api_options[] = {
	{"v1", TVDB_LLAMAPARSE_V1, false},
	{"v2", TVDB_LLAMAPARSE_V2, false},
	{NULL, 0, false}
};

static const struct config_enum_entry mode_options[] = {
	{"real", TVDB_MODE_REAL, false},
	{"mock", TVDB_MODE_MOCK, false},
	{"hybrid", TVDB_MODE_HYBRID, false},
	{NULL, 0, false}
};

static void
define_int(const char *name, const char *desc, int *var, int def, int min, int max,
		   GucContext ctx, int flags)
{
	DefineCustomIntVariable(name, desc, NULL, var, def, min, max, ctx, flags, NULL, NULL, NULL);
}

static void
define_string(const char *name, const char *desc, char **var, const char *def,
			  GucContext ctx, int flags)
{
	DefineCustomStringVariable(name, desc, NULL, var, def, ctx, flags, NULL, NULL, NULL);
}

/*
 * Secrets read as "********" to everyone but superusers.  GUC_SUPERUSER_ONLY
 * alone still shows them to members of pg_read_all_settings (pg_monitor).
 * The worker reads the variables themselves, never through SHOW.
 */
static const char *
masked(const char *value)
{
	if (superuser() || value == NULL || value[0] == '\0')
		return value ? value : "";
	return "********";
}
static const char *show_webhook_secrets(void) { return masked(tvdb_webhook_secrets); }

/*
 * Secrets never per database or role: ALTER DATABASE/ROLE ... SET stores
 * them in pg_db_role_setting, which every role can read.  PGC_S_TEST is how
 * those commands (and a function's SET clause) validate a value.
 */
static bool
check_webhook_secrets(char **newval, void **extra, GucSource source)
{
	if ((*newval == NULL || (*newval)[0] == '\0') && source != PGC_S_TEST)
		return true;
	if (source == PGC_S_TEST || source == PGC_S_DATABASE || source == PGC_S_USER ||
		source == PGC_S_DATABASE_USER)
	{
		GUC_check_errmsg("tvdb.webhook_secrets cannot be set per database, role or function");
		GUC_check_errdetail("Such settings are kept in pg_db_role_setting or pg_proc, which every role can read.");
		GUC_check_errhint("Set it in postgresql.conf or with ALTER SYSTEM, and reload.");
		return false;
	}
	return true;
}
static const char *show_llamaparse_key(void) { return masked(tvdb_llamaparse_api_key); }
static const char *show_openai_key(void) { return masked(tvdb_openai_api_key); }

/*
 * The text a setting will have after the next reload: the last value the
 * configuration files give it (postgresql.auto.conf, which ALTER SYSTEM
 * writes, is read last), or NULL when they give none.
 */
static char *
pending_text(const char *name)
{
	ConfigVariable *head = NULL;
	ConfigVariable *tail = NULL;
	char	   *value = NULL;

	if (ConfigFileName != NULL)
		(void) ParseConfigFile(ConfigFileName, false, NULL, 0, 0, DEBUG2, &head, &tail);
	if (DataDir != NULL)
		(void) ParseConfigFile(psprintf("%s/%s", DataDir, PG_AUTOCONF_FILENAME), false, NULL, 0, 0,
							   DEBUG2, &head, &tail);
	for (ConfigVariable *v = head; v != NULL; v = v->next)
		if (v->name != NULL && v->value != NULL && pg_strcasecmp(v->name, name) == 0)
			value = v->value;
	value = value ? pstrdup(value) : NULL;
	FreeConfigVariables(head);
	return value;
}

/* The integer a setting will have after the next reload, else its current value. */
static int
pending_int(const char *name, int flags, int current)
{
	char	   *value = pending_text(name);
	int			result = current;

	if (value == NULL || !parse_int(value, &result, flags, NULL))
		result = current;
	return result;
}

/* The same for an enum setting. */
static int
pending_enum(const char *name, const struct config_enum_entry *options, int current)
{
	char	   *value = pending_text(name);

	for (int i = 0; value != NULL && options[i].name != NULL; i++)
		if (pg_strcasecmp(options[i].name, value) == 0)
			return options[i].val;
	return current;
}

/*
 * Outside a transaction a configuration file is being applied, line by
 * line: accept, and let the effective values and the worker's warning deal
 * with a disagreement.  In one, ALTER SYSTEM is asking.
 */
static bool
changed_by_alter_system(void)
{
	return IsTransactionState();
}

static bool
check_poll_min(int *newval, void **extra, GucSource source)
{
	int			max;

	if (!changed_by_alter_system())
		return true;
	max = pending_int("tvdb.poll_interval_max", GUC_UNIT_MS, tvdb_poll_max_ms);
	if (*newval <= max)
		return true;
	GUC_check_errdetail("tvdb.poll_interval_min (%d ms) would exceed tvdb.poll_interval_max (%d ms).",
						*newval, max);
	GUC_check_errhint("Raise tvdb.poll_interval_max first.");
	return false;
}

static bool
check_poll_max(int *newval, void **extra, GucSource source)
{
	int			min;

	if (!changed_by_alter_system())
		return true;
	min = pending_int("tvdb.poll_interval_min", GUC_UNIT_MS, tvdb_poll_min_ms);
	if (*newval >= min)
		return true;
	GUC_check_errdetail("tvdb.poll_interval_max (%d ms) would be below tvdb.poll_interval_min (%d ms).",
						*newval, min);
	GUC_check_errhint("Lower tvdb.poll_interval_min first.");
	return false;
}

static bool
check_overlap(int *newval, void **extra, GucSource source)
{
	int			target;

	if (!changed_by_alter_system())
		return true;
	target = pending_int("tvdb.chunk_target_tokens", 0, tvdb_chunk_target_tokens);
	if (*newval <= target / 2)
		return true;
	GUC_check_errdetail("tvdb.chunk_overlap_tokens (%d) would be more than half of tvdb.chunk_target_tokens (%d).",
						*newval, target);
	GUC_check_errhint("Raise tvdb.chunk_target_tokens first, or choose a smaller overlap.");
	return false;
}

static bool
check_target(int *newval, void **extra, GucSource source)
{
	int			overlap;

	if (!changed_by_alter_system())
		return true;
	overlap = pending_int("tvdb.chunk_overlap_tokens", 0, tvdb_chunk_overlap_tokens);
	if (overlap <= *newval / 2)
		return true;
	GUC_check_errdetail("tvdb.chunk_overlap_tokens (%d) would be more than half of tvdb.chunk_target_tokens (%d).",
						overlap, *newval);
	GUC_check_errhint("Lower tvdb.chunk_overlap_tokens first.");
	return false;
}

/*
 * A URL the worker sends requests to (or hands to LlamaParse): http or
 * https, a host, and no spaces or control characters that could split a
 * request line or a header.
 */
static bool
check_url(const char *url, bool empty_ok)
{
	const char *host;

	if (url == NULL || (url[0] == '\0' && empty_ok))
		return true;
	if (pg_strncasecmp(url, "https://", 8) == 0)
		host = url + 8;
	else if (pg_strncasecmp(url, "http://", 7) == 0)
		host = url + 7;
	else
	{
		GUC_check_errdetail("\"%s\" does not begin with http:// or https://.", url);
		return false;
	}
	if (*host == '\0' || *host == '/')
	{
		GUC_check_errdetail("\"%s\" has no host.", url);
		return false;
	}
	for (const char *p = url; *p; p++)
		if ((unsigned char) *p <= ' ' || *p == 0x7f)
		{
			GUC_check_errdetail("The URL contains a space or a control character.");
			return false;
		}
	return true;
}

static bool
check_service_url(char **newval, void **extra, GucSource source)
{
	return check_url(*newval, false);
}

/*
 * The callback URL must also be one LlamaParse accepts, under the rules
 * that will be in force (for ALTER SYSTEM: after the next reload).
 */
static bool
check_webhook_url(char **newval, void **extra, GucSource source)
{
	char	   *problem;
	int			rules = tvdb_callback_url_rules;

	if (!check_url(*newval, true))
		return false;
	if (changed_by_alter_system())
		rules = pending_enum("tvdb.callback_url_rules", callback_rules_options, rules);
	else if (source == PGC_S_FILE)
		return true;			/* a file is applied line by line: the worker warns */
	problem = tvdb_callback_url_problem(*newval, rules);
	if (problem == NULL)
		return true;
	GUC_check_errdetail("LlamaParse would refuse this callback URL: %s.", problem);
	GUC_check_errhint("Use an https URL on a domain name, short enough for the job and token tvdb appends (%d characters); "
					  "for a local test setup, set tvdb.callback_url_rules = 'local'.", TVDB_CALLBACK_SUFFIX_LEN);
	return false;
}

/* Stricter rules must not strand the callback URL that will be in force. */
static bool
check_callback_rules(int *newval, void **extra, GucSource source)
{
	char	   *url;
	char	   *problem;

	if (!changed_by_alter_system())
		return true;
	url = pending_text("tvdb.parse_webhook_url");
	problem = tvdb_callback_url_problem(url ? url : tvdb_parse_webhook_url, *newval);
	if (problem == NULL)
		return true;
	GUC_check_errdetail("LlamaParse would refuse tvdb.parse_webhook_url under these rules: %s.", problem);
	GUC_check_errhint("Change tvdb.parse_webhook_url first.");
	return false;
}

/* The parse options must be ones the API version in force takes. */
static bool
check_options_for(const char *options, int api)
{
	char	   *problem = tvdb_llamaparse_options_problem(options, api);

	if (problem == NULL)
		return true;
	GUC_check_errdetail("tvdb.llamaparse_options: %s.", problem);
	GUC_check_errhint("Give a JSON object of LlamaParse %s parse options, such as %s.",
					  api == TVDB_LLAMAPARSE_V2 ? "v2" : "v1",
					  api == TVDB_LLAMAPARSE_V2 ? "{\"tier\": \"cost_effective\", \"version\": \"latest\"}"
					  : "{\"parse_mode\": \"parse_page_with_llm\", \"language\": [\"en\"]}");
	return false;
}

static bool
check_llamaparse_options(char **newval, void **extra, GucSource source)
{
	int			api = tvdb_llamaparse_api;

	if (changed_by_alter_system())
		api = pending_enum("tvdb.llamaparse_api", llamaparse_api_options, api);
	else if (source == PGC_S_FILE)
		return true;			/* applied line by line: the worker warns */
	return check_options_for(*newval, api);
}

static bool
check_llamaparse_api(int *newval, void **extra, GucSource source)
{
	char	   *options;

	if (!changed_by_alter_system())
		return true;
	options = pending_text("tvdb.llamaparse_options");
	if (check_options_for(options ? options : tvdb_llamaparse_options, *newval))
		return true;
	GUC_check_errhint("The parse options are for the other API: reset tvdb.llamaparse_options first, "
					  "then set the API, then its options.");
	return false;
}

static bool
check_parse_locally(char **newval, void **extra, GucSource source)
{
	char	   *problem = tvdb_parse_locally_problem(*newval);

	if (problem == NULL)
		return true;
	GUC_check_errdetail("%s.", problem);
	GUC_check_errhint("Name content types such as text/plain, text/markdown, text/html, comma-separated.");
	return false;
}

static void
assign_max_file_mb(int newval, void *extra)
{
	tvdb_llamaparse_max_file_bytes = (int64) newval * 1024 * 1024;
}

static bool
check_database(char **newval, void **extra, GucSource source)
{
	char	   *problem = tvdb_database_list_problem(*newval, NULL);

	if (problem == NULL)
		return true;
	GUC_check_errdetail("tvdb.database: %s.", problem);
	GUC_check_errhint("List database names separated by commas, such as: app, \"sales db\".");
	return false;
}

/* An HTTP header name: a token (RFC 9110), so it cannot split a header. */
static bool
check_header_name(char **newval, void **extra, GucSource source)
{
	for (const char *p = *newval; p && *p; p++)
		if (!isalnum((unsigned char) *p) && strchr("!#$%&'*+-.^_`|~", *p) == NULL)
		{
			GUC_check_errdetail("\"%s\" is not an HTTP header name.", *newval);
			return false;
		}
	return true;
}

void
tvdb_define_settings(void)
{
	DefineCustomIntVariable("tvdb.max_upload_bytes",
							"Largest document tvdb.upload() accepts.",
							"Larger uploads are rejected before anything is written.",
							&tvdb_max_upload_bytes,
							64 * 1024 * 1024, 1, MaxAllocSize - VARHDRSZ,
							PGC_SUSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("tvdb.isolate_documents",
							 "Each role sees only the documents of roles it has the privileges of.",
							 "Superusers and members of tvdb_monitor see every document. Set it in postgresql.conf "
							 "or with ALTER DATABASE ... SET (superusers only).",
							 &tvdb_isolate_documents, false, PGC_SUSET, 0, NULL, NULL, NULL);
	/* superuser-only to set and to read; reloadable from postgresql.conf */
	DefineCustomStringVariable("tvdb.webhook_secrets",
							   "Comma-separated secrets that webhook signatures are checked against.",
							   "Several may be active at once (rotation); \"whsec_\" secrets are base64-decoded.",
							   &tvdb_webhook_secrets,
							   "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   check_webhook_secrets, NULL, show_webhook_secrets);
	DefineCustomIntVariable("tvdb.webhook_tolerance",
							"How far a Standard Webhooks timestamp may be from now.",
							"In either direction; 0 disables the check.",
							&tvdb_webhook_tolerance,
							300, 0, 7 * 24 * 3600,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomStringVariable("tvdb.webhook_secret_header",
							   "A header whose value, one of tvdb.webhook_secrets, authenticates a callback (empty: none).",
							   "For senders that can add a configured header but sign nothing, as LlamaCloud's webhook_headers.",
							   &tvdb_webhook_secret_header, "", PGC_SUSET, 0,
							   check_header_name, NULL, NULL);
	DefineCustomIntVariable("tvdb.webhook_max_bytes",
							"Largest webhook body tvdb.handle_llamaparse_webhook() reads.",
							"Larger bodies are answered 413 before any parsing.",
							&tvdb_webhook_max_bytes,
							10 * 1024 * 1024, 1, MaxAllocSize - VARHDRSZ,
							PGC_SUSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomStringVariable("tvdb.database", "Databases the tvdb background workers serve (comma-separated).",
							   "tvdb.workers workers serve each listed database that has the extension; "
							   "quote a name with a comma or a space in double quotes.",
							   &tvdb_database, "postgres", PGC_POSTMASTER, 0,
							   check_database, NULL, NULL);
	define_int("tvdb.workers", "Number of tvdb background worker processes (0: none).",
			   &tvdb_workers, 1, 0, TVDB_MAX_WORKERS, PGC_POSTMASTER, 0);
	DefineCustomEnumVariable("tvdb.service_mode",
							 "real: call LlamaParse and OpenAI; mock: built-in offline parser and embedder.",
							 NULL, &tvdb_service_mode, TVDB_MODE_REAL, mode_options,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("tvdb.llamaparse_base_url", "LlamaParse API base URL.", NULL,
							   &tvdb_llamaparse_base_url, "https://api.cloud.llamaindex.ai", PGC_SIGHUP, 0,
							   check_service_url, NULL, NULL);
	DefineCustomStringVariable("tvdb.llamaparse_api_key", "LlamaParse API key.", NULL,
							   &tvdb_llamaparse_api_key, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   NULL, NULL, show_llamaparse_key);
	DefineCustomStringVariable("tvdb.openai_base_url", "OpenAI API base URL, including /v1.", NULL,
							   &tvdb_openai_base_url, "https://api.openai.com/v1", PGC_SIGHUP, 0,
							   check_service_url, NULL, NULL);
	DefineCustomStringVariable("tvdb.openai_api_key", "OpenAI API key.", NULL,
							   &tvdb_openai_api_key, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   NULL, NULL, show_openai_key);
	define_string("tvdb.embedding_model", "OpenAI embedding model.",
				  &tvdb_embedding_model, "text-embedding-3-small", PGC_SIGHUP, 0);
	DefineCustomEnumVariable("tvdb.embedding_encoding",
							 "How OpenAI sends vectors: base64 (float32, about 4 times smaller; what the official client asks for) or float (JSON numbers).",
							 NULL, &tvdb_embedding_encoding, TVDB_ENCODING_BASE64, encoding_options,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	define_int("tvdb.embedding_dimensions", "Embedding dimensions to request (0: the model's own).",
			   &tvdb_embedding_dimensions, 0, 0, 16000, PGC_SIGHUP, 0);
	define_int("tvdb.max_inflight", "Most HTTP requests a worker has in flight at once.",
			   &tvdb_max_inflight, 64, 1, 10000, PGC_SIGHUP, 0);
	DefineCustomIntVariable("tvdb.chunk_target_tokens", "Target chunk size in estimated tokens.", NULL,
							&tvdb_chunk_target_tokens, 512, 16, 8192, PGC_SIGHUP, 0,
							check_target, NULL, NULL);
	DefineCustomIntVariable("tvdb.chunk_overlap_tokens", "Estimated tokens a chunk repeats from the one before.", NULL,
							&tvdb_chunk_overlap_tokens, 64, 0, 4096, PGC_SIGHUP, 0,
							check_overlap, NULL, NULL);
	define_int("tvdb.chunk_bytes_per_token", "Bytes per token when estimating tokens from text.",
			   &tvdb_chunk_bytes_per_token, 4, 1, 16, PGC_SIGHUP, 0);
	define_int("tvdb.http_timeout", "Whole-request timeout for HTTP calls.",
			   &tvdb_http_timeout_ms, 60000, 100, 3600 * 1000, PGC_SIGHUP, GUC_UNIT_MS);
	define_int("tvdb.connect_timeout", "Connection timeout for HTTP calls.",
			   &tvdb_connect_timeout_ms, 10000, 100, 600 * 1000, PGC_SIGHUP, GUC_UNIT_MS);
	DefineCustomIntVariable("tvdb.poll_interval_min", "First wait before polling a LlamaParse job.", NULL,
							&tvdb_poll_min_ms, 1000, 10, 3600 * 1000, PGC_SIGHUP, GUC_UNIT_MS,
							check_poll_min, NULL, NULL);
	DefineCustomIntVariable("tvdb.poll_interval_max", "Longest wait between polls of a LlamaParse job.", NULL,
							&tvdb_poll_max_ms, 30000, 10, 3600 * 1000, PGC_SIGHUP, GUC_UNIT_MS,
							check_poll_max, NULL, NULL);
	define_int("tvdb.lease_seconds", "How long a worker's claim on a job lasts before another may take it.",
			   &tvdb_lease_seconds, 300, 1, 86400, PGC_SIGHUP, GUC_UNIT_S);
	DefineCustomIntVariable("tvdb.retry_base_delay", "First cap of the random delay before retrying a transient failure.",
							"The cap doubles with each failed try, up to tvdb.retry_max_delay; the delay is drawn between 0 and the cap.",
							&tvdb_retry_base_delay_ms, 500, 1, 3600 * 1000, PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("tvdb.retry_max_delay", "Largest delay before retrying a transient failure (a service's Retry-After may ask for more).",
							NULL, &tvdb_retry_max_delay_ms, 60000, 1, 24 * 3600 * 1000, PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	define_int("tvdb.max_attempts", "Tries of one stage before a job fails with class retries_exhausted.",
			   &tvdb_max_attempts, 8, 1, 1000, PGC_SIGHUP, 0);
	define_int("tvdb.alert_window", "How long alerts of one kind for one service add to one row's count.",
			   &tvdb_alert_window_s, 300, 1, 7 * 86400, PGC_SIGHUP, GUC_UNIT_S);
	define_int("tvdb.max_job_retries", "How many times tvdb.retry_failed() retries a job that ran out of tries; then it is a dead letter.",
			   &tvdb_max_job_retries, 3, 0, 1000, PGC_SIGHUP, 0);
	define_int("tvdb.job_retry_delay", "How long tvdb.retry_failed() waits before a job's first retry (doubling for each one after).",
			   &tvdb_job_retry_delay_s, 60, 0, 7 * 86400, PGC_SIGHUP, GUC_UNIT_S);
	define_int("tvdb.stuck_after", "How long a job may stay in one working status before tvdb.reap_stuck() raises an alert.",
			   &tvdb_stuck_after_s, 3600, 1, 30 * 86400, PGC_SIGHUP, GUC_UNIT_S);
	define_int("tvdb.breaker_failures", "Transient failures in a row that open a service's circuit.",
			   &tvdb_breaker_failures, 5, 1, 10000, PGC_SIGHUP, 0);
	define_int("tvdb.breaker_cooldown", "How long an opened circuit waits before its probe (doubling with each reopening).",
			   &tvdb_breaker_cooldown_ms, 10000, 1, 3600 * 1000, PGC_SIGHUP, GUC_UNIT_MS);
	define_int("tvdb.breaker_max_cooldown", "Longest cool-down of an open circuit.",
			   &tvdb_breaker_max_cooldown_ms, 300000, 1, 24 * 3600 * 1000, PGC_SIGHUP, GUC_UNIT_MS);
	define_int("tvdb.llamaparse_requests_per_minute",
			   "LlamaParse uploads per minute, all workers together (0: no limit).",
			   &tvdb_llamaparse_rpm, 300, 0, 1000000, PGC_SIGHUP, 0);
	define_int("tvdb.openai_requests_per_minute", "OpenAI embeddings requests per minute, all workers together (0: no limit).",
			   &tvdb_openai_rpm, 3000, 0, 10000000, PGC_SIGHUP, 0);
	define_int("tvdb.openai_tokens_per_minute", "OpenAI embedding input tokens per minute, all workers together (0: no limit).",
			   &tvdb_openai_tpm, 1000000, 0, 1000000000, PGC_SIGHUP, 0);
	DefineCustomStringVariable("tvdb.parse_webhook_url",
							   "Where LlamaParse posts its callbacks (empty: none, the worker polls).",
							   "tvdb appends ?job=<job id>&token=<HMAC under the first of tvdb.webhook_secrets>.",
							   &tvdb_parse_webhook_url, "", PGC_SIGHUP, 0,
							   check_webhook_url, NULL, NULL);
	DefineCustomEnumVariable("tvdb.llamaparse_api",
							 "Which LlamaParse API the worker speaks: v1 (/api/v1/parsing) or v2 (/api/v2/parse).",
							 NULL, &tvdb_llamaparse_api, TVDB_LLAMAPARSE_V1, llamaparse_api_options,
							 PGC_SIGHUP, 0, check_llamaparse_api, NULL, NULL);
	DefineCustomStringVariable("tvdb.llamaparse_options",
							   "Parse options sent with every LlamaParse upload, as a JSON object.",
							   "v1: each field a form field (an array repeats it); v2: merged into the job's configuration. "
							   "Only LlamaParse's documented option names are accepted.",
							   &tvdb_llamaparse_options, "{}", PGC_SIGHUP, 0,
							   check_llamaparse_options, NULL, NULL);
	DefineCustomStringVariable("tvdb.parse_locally",
							   "Content types tvdb's built-in parser reads instead of LlamaParse (comma-separated).",
							   "Other documents go to LlamaParse when their extension is one it reads, else fail parse at once.",
							   &tvdb_parse_locally, "text/plain, text/markdown", PGC_SIGHUP, 0,
							   check_parse_locally, NULL, NULL);
	DefineCustomIntVariable("tvdb.llamaparse_max_file_size",
							"Largest file sent to LlamaParse; larger ones fail parse before any upload.",
							"LlamaParse's documented limit is 512 MB; a plan or service may set a lower one.",
							&llamaparse_max_file_mb, 512, 1, 512, PGC_SIGHUP, GUC_UNIT_MB,
							NULL, assign_max_file_mb, NULL);
	DefineCustomEnumVariable("tvdb.callback_url_rules",
							 "Which callback URLs tvdb.parse_webhook_url may hold.",
							 "llamaparse: what LlamaParse accepts (https, a domain name, under 200 characters); "
							 "local: also http and IP hosts, for test setups against a local fake.",
							 &tvdb_callback_url_rules, TVDB_CALLBACK_RULES_LLAMAPARSE, callback_rules_options,
							 PGC_SIGHUP, 0, check_callback_rules, NULL, NULL);
	DefineCustomRealVariable("tvdb.llamaparse_usd_per_1000_credits", "LlamaParse's price of 1,000 credits, USD.",
							 "Embedding prices per model and credits per page per mode are in upload_pipeline.embedding_prices and parse_prices.",
							 &tvdb_llamaparse_usd_per_1000_credits, 1.25, 0, 1e6,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("tvdb.reuse_parses", "Reuse the parse of identical bytes (same sha256) instead of parsing again.",
							 "Only a LlamaParse result of the same mode or tier is reused; the ledger shows what it saved.",
							 &tvdb_reuse_parses, true, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("tvdb.embedding_cache", "Reuse the vector of a chunk whose text was embedded before.",
							 "Keyed by the text's sha256, the model and the dimensions; the ledger shows what it saved.",
							 &tvdb_embedding_cache, true, PGC_SIGHUP, 0, NULL, NULL, NULL);
	/* read by the ledger's trigger (68_logs.sql): a line per answered request */
	DefineCustomBoolVariable("tvdb.log_requests", "Write a server-log line for every external request when its answer is recorded.",
							 "Service, operation, HTTP status, latency, cost, and each job with its correlation id; never a key or a document's content.",
							 &tvdb_log_requests, false, PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomRealVariable("tvdb.budget_throttle_at", "Share of a budget above which its service is slowed down (0: never).",
							 "Above it, a service covered by the budget sends at most tvdb.budget_throttle_rpm requests a minute.",
							 &tvdb_budget_throttle_at, 0, 0, 1, PGC_SIGHUP, 0, NULL, NULL, NULL);
	define_int("tvdb.budget_throttle_rpm", "Requests a minute to a service whose budget is above tvdb.budget_throttle_at.",
			   &tvdb_budget_throttle_rpm, 60, 1, 1000000, PGC_SIGHUP, 0);
	define_int("tvdb.embedding_batch_inputs", "Most inputs in one embeddings request.",
			   &tvdb_embedding_batch_inputs, 2048, 1, 2048, PGC_SIGHUP, 0);
	define_int("tvdb.embedding_batch_tokens", "Most tokens (bounded by UTF-8 bytes) in one embeddings request.",
			   &tvdb_embedding_batch_tokens, 300000, 8192, 300000, PGC_SIGHUP, 0);
	define_int("tvdb.query_cache_entries", "Query vectors each session keeps, to embed a repeated question once (0: none).",
			   &tvdb_query_cache_entries, 256, 0, 65536, PGC_USERSET, 0);
}

/* The vector length to expect: the setting, or the model's default. */
int
tvdb_model_dimensions(void)
{
	if (tvdb_embedding_dimensions > 0)
		return tvdb_embedding_dimensions;
	if (strcmp(tvdb_embedding_model, "text-embedding-3-large") == 0)
		return 3072;
	return 1536;
}

/* The longest wait between polls: never below the first one. */
int
tvdb_poll_max_effective(void)
{
	return Max(tvdb_poll_max_ms, tvdb_poll_min_ms);
}

/*
 * What disagrees among the settings, as a sentence, or NULL: the effective
 * values are used meanwhile.
 */
char *
tvdb_settings_disagree(void)
{
	if (tvdb_poll_min_ms > tvdb_poll_max_ms)
		return psprintf("tvdb.poll_interval_min (%d ms) exceeds tvdb.poll_interval_max (%d ms); "
						"polls are %d ms apart.", tvdb_poll_min_ms, tvdb_poll_max_ms, tvdb_poll_min_ms);
	if (tvdb_llamaparse_options_problem(tvdb_llamaparse_options, tvdb_llamaparse_api) != NULL)
		return psprintf("tvdb.llamaparse_options does not suit tvdb.llamaparse_api: %s; uploads wait until it does.",
						tvdb_llamaparse_options_problem(tvdb_llamaparse_options, tvdb_llamaparse_api));
	if (tvdb_parse_webhook_url[0] != '\0' && tvdb_configured_webhook_secrets() == NIL)
		return pstrdup("tvdb.parse_webhook_url is set but tvdb.webhook_secrets is empty, so no callback token "
					   "can be made; uploads are sent without a callback URL.");
	if (tvdb_callback_url_problem(tvdb_parse_webhook_url, tvdb_callback_url_rules) != NULL)
		return psprintf("tvdb.parse_webhook_url would be refused by LlamaParse (%s); uploads are sent without it.",
						tvdb_callback_url_problem(tvdb_parse_webhook_url, tvdb_callback_url_rules));
	if (tvdb_chunk_overlap_tokens > tvdb_chunk_target_tokens / 2)
		return psprintf("tvdb.chunk_overlap_tokens (%d) is more than half of tvdb.chunk_target_tokens (%d); "
						"chunks overlap by %d tokens.", tvdb_chunk_overlap_tokens, tvdb_chunk_target_tokens,
						tvdb_chunk_overlap_effective());
	return NULL;
}

/*
 * The API keys a request to either service waits for, as "llamaparse",
 * "openai" or "llamaparse, openai", or NULL when both are set: the worker
 * sends nothing to either service until both are (hooks.c), and
 * tvdb.jobs' waiting_for says so.
 */
const char *
tvdb_keys_missing(void)
{
	bool		lp = tvdb_llamaparse_api_key[0] == '\0';
	bool		oa = tvdb_openai_api_key[0] == '\0';

	if (lp && oa)
		return "llamaparse, openai";
	if (lp)
		return "llamaparse";
	if (oa)
		return "openai";
	return NULL;
}

/* The overlap the chunker uses: never more than half a chunk. */
int
tvdb_chunk_overlap_effective(void)
{
	return Min(tvdb_chunk_overlap_tokens, tvdb_chunk_target_tokens / 2);
}

/* A lease outlives any one request, so a slow answer never lets a second worker in. */
int
tvdb_lease_effective(void)
{
	return Max(tvdb_lease_seconds, (tvdb_http_timeout_ms + tvdb_connect_timeout_ms) / 1000 + 5);
}
