/*
 * webhook.c — tvdb.handle_llamaparse_webhook(body, headers, params): the
 * whole callback in one call.  The C part bounds the body before it is read,
 * authenticates the sender and records forgeries; an authenticated payload
 * is handed to tvdb._apply_llamaparse_webhook() (SQL), which validates and
 * applies it in the caller's transaction, so it happens entirely or not at all.
 *
 * LlamaParse signs nothing, so a callback is authenticated, in this order, by
 * the job and token of the callback URL tvdb handed out (callback.c), by the
 * header named in tvdb.webhook_secret_header holding an active secret, or by
 * a signature header (hmac.c) from other senders.
 *
 * Every outcome is a reply object {"http_status", "result", "detail"?, ...}
 * for the receiving endpoint to relay; only internal faults raise errors.
 */
#include "tvdb.h"

#include "access/detoast.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"

PG_FUNCTION_INFO_V1(tvdb_handle_llamaparse_webhook);
PG_FUNCTION_INFO_V1(tvdb_handle_llamaparse_webhook_0_2);

static Datum
reply(int http_status, const char *result, const char *detail)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"http_status\": %d, \"result\": ", http_status);
	escape_json(&buf, result);
	if (detail != NULL)
	{
		appendStringInfoString(&buf, ", \"detail\": ");
		escape_json(&buf, detail);
	}
	appendStringInfoChar(&buf, '}');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

/*
 * A refused delivery is counted in its minute's row (webhook_refusals): a
 * flood of forged deliveries writes one row a minute, not one each.  The
 * row names the signature headers seen but echoes nothing of the body or
 * their values.
 */
#define SIGNATURE_HEADERS \
	"('x-webhook-signature', 'lc-signature', 'x-hub-signature-256', " \
	" 'webhook-signature', 'webhook-id', 'webhook-timestamp')"

static void
record_forgery(Size body_bytes, Jsonb *headers, bool per_minute)
{
	static const Oid types[2] = {INT8OID, JSONBOID};
	Datum		values[2] = {Int64GetDatum((int64) body_bytes), JsonbPGetDatum(headers)};

	tvdb_spi_connect();
	if (!per_minute)			/* a database still at 0.1.0: an event each */
		tvdb_spi_run("INSERT INTO upload_pipeline.events (type, severity, code, payload) "
					 "SELECT 'security', 'warn', 'webhook_signature_invalid', "
					 "       jsonb_build_object('endpoint', 'llamaparse', 'body_bytes', $1, "
					 "           'signature_headers', coalesce((SELECT jsonb_agg(lower(k) ORDER BY lower(k)) "
					 "               FROM jsonb_object_keys($2) AS k WHERE lower(k) IN " SIGNATURE_HEADERS ")"
					 "           , '[]'))",
					 2, types, values, NULL, SPI_OK_INSERT);
	else
		tvdb_spi_run(
					 "INSERT INTO upload_pipeline.webhook_refusals AS r "
					 "  (minute, endpoint, refused, body_bytes, signature_headers, last_at) "
					 "SELECT date_trunc('minute', now()), 'llamaparse', 1, $1, "
					 "       ARRAY(SELECT DISTINCT lower(k) FROM jsonb_object_keys($2) AS k WHERE lower(k) IN "
					 SIGNATURE_HEADERS " ORDER BY 1), now() "
					 "ON CONFLICT (minute, endpoint) DO UPDATE "
					 "SET refused = r.refused + 1, body_bytes = r.body_bytes + excluded.body_bytes, last_at = excluded.last_at, "
					 "    signature_headers = ARRAY(SELECT DISTINCT h FROM unnest(r.signature_headers || "
					 "                                  excluded.signature_headers) h ORDER BY 1)",
					 2, types, values, NULL, SPI_OK_INSERT);
	tvdb_spi_finish();
}

/* The payload of an authenticated callback; job: the one its URL names, or NULL. */
static Datum
apply_payload(Datum body, Datum headers, const char *job)
{
	static const Oid types[3] = {BYTEAOID, JSONBOID, TEXTOID};
	Datum		values[3] = {body, headers, job ? CStringGetTextDatum(job) : (Datum) 0};
	const char	nulls[3] = {' ', ' ', job ? ' ' : 'n'};
	bool		isnull;
	Datum		result;

	tvdb_spi_connect();
	if (tvdb_spi_run("SELECT tvdb._apply_llamaparse_webhook($1, $2, $3::uuid)",
					 3, types, values, nulls, SPI_OK_SELECT) != 1)
		elog(ERROR, "tvdb._apply_llamaparse_webhook returned no row");
	result = tvdb_spi_datum(0, 1, &isnull);
	if (isnull)
		elog(ERROR, "tvdb._apply_llamaparse_webhook returned NULL");
	result = SPI_datumTransfer(result, false, -1);
	tvdb_spi_finish();
	return result;
}

/* The string value of key in a jsonb object (case-insensitive key), or NULL. */
static char *
object_text(Jsonb *obj, const char *key)
{
	JsonbIterator *it = JsonbIteratorInit(&obj->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *found = NULL;
	bool		match = false;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			match = found == NULL && v.type == jbvString && (int) strlen(key) == v.val.string.len &&
				pg_strncasecmp(v.val.string.val, key, v.val.string.len) == 0;
		else if (tok == WJB_VALUE && match && v.type == jbvString)
			found = pnstrdup(v.val.string.val, v.val.string.len);
	}
	return found;
}

/* The header named by tvdb.webhook_secret_header holds one of the secrets (constant time). */
static bool
secret_header_matches(Jsonb *headers, List *secrets)
{
	char	   *given;
	bool		ok = false;
	ListCell   *lc;

	if (tvdb_webhook_secret_header[0] == '\0' ||
		(given = object_text(headers, tvdb_webhook_secret_header)) == NULL)
		return false;
	foreach(lc, secrets)
	{
		const char *s = lfirst(lc);

		ok |= strlen(s) == strlen(given) && timingsafe_bcmp(s, given, strlen(s)) == 0;
	}
	explicit_bzero(given, strlen(given));
	return ok;
}

/*
 * tvdb.handle_llamaparse_webhook(body bytea, headers jsonb, params jsonb) RETURNS jsonb
 * tvdb_handle_llamaparse_webhook is the entry point of 0.1.0's SQL, which
 * records a refused delivery as an event; since 0.2.0 they are counted per
 * minute (webhook_refusals).
 */
static Datum handle_webhook(FunctionCallInfo fcinfo, bool refusals_per_minute);

Datum
tvdb_handle_llamaparse_webhook(PG_FUNCTION_ARGS)
{
	return handle_webhook(fcinfo, false);
}

Datum
tvdb_handle_llamaparse_webhook_0_2(PG_FUNCTION_ARGS)
{
	return handle_webhook(fcinfo, true);
}

static Datum
handle_webhook(FunctionCallInfo fcinfo, bool refusals_per_minute)
{
	Size		body_bytes;
	Jsonb	   *headers;
	Jsonb	   *params = PG_NARGS() > 2 && !PG_ARGISNULL(2) ? PG_GETARG_JSONB_P(2) : NULL;
	List	   *secrets;
	char	   *job = NULL;
	char	   *token = NULL;

	if (PG_ARGISNULL(0))
		PG_RETURN_DATUM(reply(400, "bad_request", "the request has no body"));

	/* The declared size, read before the body is detoasted or parsed. */
	body_bytes = toast_raw_datum_size(PG_GETARG_DATUM(0)) - VARHDRSZ;
	if (body_bytes > (Size) tvdb_webhook_max_bytes)
		PG_RETURN_DATUM(reply(413, "payload_too_large",
							  psprintf("the body is %zu bytes; tvdb.webhook_max_bytes allows %d",
									   body_bytes, tvdb_webhook_max_bytes)));

	headers = PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1);
	if (headers == NULL)
		headers = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
	else if (!JB_ROOT_IS_OBJECT(headers) || JB_ROOT_IS_SCALAR(headers))
		PG_RETURN_DATUM(reply(400, "bad_request", "headers must be a JSON object of name: value"));

	secrets = tvdb_configured_webhook_secrets();
	if (secrets == NIL)
	{
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("webhook refused: no webhook secrets are configured"),
				 errhint("Set tvdb.webhook_secrets in postgresql.conf and reload.")));
		PG_RETURN_DATUM(reply(503, "not_configured",
							  "the receiver has no webhook secrets configured"));
	}

	if (params != NULL && (!JB_ROOT_IS_OBJECT(params) || JB_ROOT_IS_SCALAR(params)))
		PG_RETURN_DATUM(reply(400, "bad_request", "params must be a JSON object of name: value"));
	if (params != NULL)
	{
		job = object_text(params, "job");
		token = object_text(params, "token");
	}

	if (job != NULL || token != NULL)
	{
		/* a URL that names a job must carry its token: nothing else stands in */
		if (!tvdb_callback_token_valid(job, token, secrets))
		{
			record_forgery(body_bytes, headers, refusals_per_minute);
			PG_RETURN_DATUM(reply(401, "unauthorized",
								  "the callback URL's token is missing, invalid, or not for this job"));
		}
	}
	else if (!secret_header_matches(headers, secrets) &&
			 !tvdb_verify_signature(PG_GETARG_BYTEA_PP(0), headers, secrets))
	{
		record_forgery(body_bytes, headers, refusals_per_minute);
		PG_RETURN_DATUM(reply(401, "unauthorized",
							  "no valid callback token, secret header or signature "
							  "(or the signature is outside the time tolerance)"));
	}

	PG_RETURN_DATUM(apply_payload(PG_GETARG_DATUM(0), JsonbPGetDatum(headers), job));
}
