/*
 * answers.c — what the stages share when they build requests and record
 * answers: the service URLs, the service modes, and the arguments every
 * answer-recording SQL function takes.
 */
#include "stages/stages.h"

#include "catalog/pg_type.h"
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
