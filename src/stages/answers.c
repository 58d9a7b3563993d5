/*
 * answers.c — what the stages share when they build requests and record
 * answers: the service URLs, the service modes, and the arguments every
 * answer-recording SQL function takes.
 */
#include "stages/stages.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/builtins.h"

bool
tvdb_real_mode(void)
{
	return tvdb_service_mode == TVDB_MODE_REAL;
}

bool
tvdb_mock_mode(void)
{
	return tvdb_service_mode == TVDB_MODE_MOCK;
}

/* Real or hybrid: requests may go to the services. */
bool
tvdb_remote_mode(void)
{
	return tvdb_service_mode != TVDB_MODE_MOCK;
}

/*
 * Hybrid mode's choice for a service: its key is set, and its circuit is
 * neither blocked nor open and cooling down.  When not, the mock does that
 * service's stage, and says so in what it makes (model or parser "mock").
 */
bool
tvdb_service_usable(TvdbService service)
{
	const char *key = service == TVDB_SERVICE_LLAMAPARSE ? tvdb_llamaparse_api_key : tvdb_openai_api_key;

	return key[0] != '\0' &&
		tvdb_circuit_usable(service == TVDB_SERVICE_LLAMAPARSE ? TVDB_CIRCUIT_LLAMAPARSE : TVDB_CIRCUIT_OPENAI);
}

PG_FUNCTION_INFO_V1(tvdb_service_usable_sql);

/* tvdb._service_usable(service text) RETURNS boolean: llamaparse or openai */
Datum
tvdb_service_usable_sql(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));

	PG_RETURN_BOOL(tvdb_service_usable(strcmp(name, "llamaparse") == 0 ? TVDB_SERVICE_LLAMAPARSE
									   : TVDB_SERVICE_OPENAI));
}

PG_FUNCTION_INFO_V1(tvdb_keys_missing_sql);

/*
 * tvdb._keys_missing(service text) RETURNS text: the keys this service's
 * requests wait for (tvdb_keys_missing), when its real stage runs; NULL
 * when it does not (mock, or hybrid with the mock standing in) or every
 * key is set.
 */
Datum
tvdb_keys_missing_sql(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	const char *missing = tvdb_keys_missing();

	if (missing == NULL || !tvdb_real_runs(strcmp(name, "llamaparse") == 0 ? TVDB_SERVICE_LLAMAPARSE
											: TVDB_SERVICE_OPENAI))
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(missing));
}

/* Does the real stage of this service run: real mode, or hybrid with the service usable? */
bool
tvdb_real_runs(TvdbService service)
{
	return tvdb_service_mode == TVDB_MODE_REAL ||
		(tvdb_service_mode == TVDB_MODE_HYBRID && tvdb_service_usable(service));
}

/* Does the mock stage standing in for this service run? */
bool
tvdb_mock_runs(TvdbService service)
{
	return tvdb_service_mode == TVDB_MODE_MOCK ||
		(tvdb_service_mode == TVDB_MODE_HYBRID && !tvdb_service_usable(service));
}

bool
tvdb_any_mode(void)
{
	return true;
}

/* base (trailing slashes dropped) followed by path. */
char *
tvdb_service_url(const char *base, const char *path)
{
	size_t		len = strlen(base);

	while (len > 0 && base[len - 1] == '/')
		len--;
	return psprintf("%.*s%s", (int) len, base, path);
}

/*
 * The arguments every answer-recording SQL function takes, in this order:
 * http_status, body (NULL if not UTF-8 text), latency_ms, failure (why no
 * usable answer came), retry_after_ms.
 */
void
tvdb_answer_args(TvdbHttp *req, Oid *types, Datum *values, char *nulls)
{
	const char *failure = tvdb_http_failure(req);
	char	   *body = tvdb_http_text(req, &failure);

	types[0] = INT4OID;
	values[0] = Int32GetDatum((int32) req->status);
	types[1] = TEXTOID;
	values[1] = body ? CStringGetTextDatum(body) : (Datum) 0;
	types[2] = FLOAT8OID;
	values[2] = Float8GetDatum(req->latency_ms);
	types[3] = TEXTOID;
	values[3] = failure ? CStringGetTextDatum(failure) : (Datum) 0;
	types[4] = INT8OID;
	values[4] = Int64GetDatum(req->retry_after_ms);
	nulls[0] = nulls[2] = ' ';
	nulls[1] = body ? ' ' : 'n';
	nulls[3] = failure ? ' ' : 'n';
	nulls[4] = req->retry_after_ms >= 0 ? ' ' : 'n';
}
