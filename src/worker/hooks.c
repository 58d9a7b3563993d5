/*
 * hooks.c — the two places every stage's requests go through: before a
 * request is sent (may it go now, later, or never?) and after its answer
 * (what kind of answer is it?).  Rate limits, circuit breakers and budgets
 * belong here, and nowhere else.
 *
 * Today: a remote stage waits while real mode lacks its keys; answers are
 * classified by tvdb_answer_kind, which the SQL that records them also asks
 * (tvdb._answer_class) when the worker gives no kind.  Local stages (chunking, the
 * mock) send nothing: they pass the before-send hook, which the dispatcher
 * asks for every stage before claiming, and have no answer to classify;
 * work that fails to be recorded is held back by the dispatcher, by its
 * SQLSTATE, not counted against a service.
 */
#include "worker/stage.h"

#include "fmgr.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(tvdb_answer_class);

static bool warned_keys = false;

/*
 * w is NULL when the dispatcher asks before claiming anything: may this
 * stage send at all now?  Local and mock stages always may.
 */
TvdbVerdict
tvdb_before_send(const TvdbStage *s, TvdbWork *w)
{
	if (s->service != TVDB_SERVICE_LLAMAPARSE && s->service != TVDB_SERVICE_OPENAI)
		return TVDB_SEND_NOW;
	if (tvdb_llamaparse_api_key[0] == '\0' || tvdb_openai_api_key[0] == '\0')
	{
		if (!warned_keys)
			ereport(WARNING,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("tvdb worker is waiting: tvdb.llamaparse_api_key and tvdb.openai_api_key must be set in real mode"),
					 errhint("Set the keys, or tvdb.service_mode = 'mock' for the offline pipeline, and reload.")));
		warned_keys = true;
		return TVDB_SEND_LATER;
	}
	warned_keys = false;
	return TVDB_SEND_NOW;
}

/* Whether an error body's error.code (else error.type) is code, as OpenAI sends them. */
static bool
error_code_is(const char *body, size_t len, const char *code)
{
	static const char *const keys[2] = {"error.code", "error.type"};
	char	   *values[2];

	if (body == NULL || !tvdb_json_fields(body, len, keys, values, 2))
		return false;
	return strcmp(values[0] ? values[0] : values[1] ? values[1] : "", code) == 0;
}

/*
 * What kind of answer this is, for both services, as the official clients
 * read them: success; rate_limited (429, 503 overloaded); quota (OpenAI's
 * 429 insufficient_quota, LlamaParse's 402); auth (401, 403); invalid (any
 * other 4xx); server_error (5xx, 408, 409); no_answer (timeout, reset).
 * x-should-retry, when the service sends it, decides between retrying and
 * not, as the official OpenAI client obeys it.
 */
const char *
tvdb_answer_kind(long http_status, const char *body, size_t len, int should_retry)
{
	const char *kind;

	if (http_status >= 200 && http_status < 300)
		return "success";
	if (http_status == 402 ||
		(http_status == 429 && error_code_is(body, len, "insufficient_quota")))
		return "quota";
	if (http_status == 401 || http_status == 403)
		return "auth";
	if (http_status == 0)
		kind = "no_answer";
	else if (http_status == 429 || http_status == 503)
		kind = "rate_limited";
	else if (http_status >= 500 || http_status == 408 || http_status == 409)
		kind = "server_error";
	else
		kind = "invalid";
	if (should_retry == 1 && strcmp(kind, "invalid") == 0)
		return "server_error";
	if (should_retry == 0 && strcmp(kind, "invalid") != 0)
		return "invalid";
	return kind;
}

TvdbAnswer
tvdb_after_answer(TvdbWork *w)
{
	const char *kind = tvdb_answer_kind(w->req->status, w->req->body, w->req->body_len,
										w->req->should_retry);

	w->answer_kind = kind;
	if (strcmp(kind, "success") == 0)
		w->answer = TVDB_ANSWER_SUCCESS;
	else if (strcmp(kind, "quota") == 0 || strcmp(kind, "auth") == 0)
		w->answer = TVDB_ANSWER_CONFIGURATION;
	else if (strcmp(kind, "invalid") == 0)
		w->answer = TVDB_ANSWER_PERMANENT;
	else
		w->answer = TVDB_ANSWER_TRANSIENT;
	return w->answer;
}

/*
 * tvdb._answer_class(http_status integer, body text, should_retry boolean)
 * RETURNS text: the same classification, for the SQL that records answers
 * given without one (the regression tests call those directly).
 */
Datum
tvdb_answer_class(PG_FUNCTION_ARGS)
{
	text	   *body = PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1);
	int			should_retry = PG_ARGISNULL(2) ? -1 : (PG_GETARG_BOOL(2) ? 1 : 0);

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(tvdb_answer_kind(PG_GETARG_INT32(0),
													  body ? text_to_cstring(body) : NULL,
													  body ? VARSIZE_ANY_EXHDR(body) : 0,
													  should_retry)));
}
