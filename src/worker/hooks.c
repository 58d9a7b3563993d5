/*
 * hooks.c — the two places every stage's requests go through: before a
 * request is sent (may it go now, later, or never?) and after its answer
 * (what kind of answer is it?).  Rate limits, circuit breakers and budgets
 * belong here, and nowhere else.
 *
 * Today: a remote stage waits while real mode lacks its keys; answers are
 * classified by HTTP status, the same rule the SQL that records them uses
 * (tvdb._is_transient calls tvdb_classify).  Local stages (chunking, the
 * mock) send nothing: they pass the before-send hook, which the dispatcher
 * asks for every stage before claiming, and have no answer to classify;
 * work that fails to be recorded is held back by the dispatcher, by its
 * SQLSTATE, not counted against a service.
 */
#include "worker/stage.h"

#include "fmgr.h"

PG_FUNCTION_INFO_V1(tvdb_is_transient);

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

/* An HTTP status (0: no answer came) by what the worker should do about it. */
TvdbAnswer
tvdb_classify(long http_status)
{
	if (http_status >= 200 && http_status < 300)
		return TVDB_ANSWER_SUCCESS;
	if (http_status == 0 || http_status == 408 || http_status == 409 ||
		http_status == 429 || http_status >= 500)
		return TVDB_ANSWER_TRANSIENT;
	if (http_status == 401 || http_status == 402 || http_status == 403)
		return TVDB_ANSWER_CONFIGURATION;
	return TVDB_ANSWER_PERMANENT;
}

TvdbAnswer
tvdb_after_answer(TvdbWork *w)
{
	w->answer = tvdb_classify(w->req->status);
	return w->answer;
}

/* tvdb._is_transient(http_status integer) RETURNS boolean */
Datum
tvdb_is_transient(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(tvdb_classify(PG_GETARG_INT32(0)) == TVDB_ANSWER_TRANSIENT);
}
