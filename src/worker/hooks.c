/*
 * hooks.c — the two places every stage's requests go through: before a
 * request is sent (may it go now, later, or never?) and after its answer
 * (what kind of answer is it?).  Rate limits, circuit breakers and budgets
 * belong here, and nowhere else.
 *
 * Before: a remote stage waits while real mode lacks its keys, or while its
 * service's circuit (src/circuit.c) is open, blocked or paused; the
 * dispatcher claims no more than the allowance (the circuit's probe, the
 * requests-per-minute bucket), and each request takes its share of the
 * buckets as it is sent.  After: answers are classified by
 * tvdb_answer_kind, which the SQL that records them also asks
 * (tvdb._answer_class) when the worker gives no kind; the kind moves the
 * service's circuit, and what the service says is left of its rate limits
 * lowers the buckets.  A circuit that changes raises an alert, written with
 * the answers.  Local stages (chunking, the mock) send nothing and pass;
 * work that fails to be recorded is held back by the dispatcher, by its
 * SQLSTATE, not counted against a service.
 */
#include "worker/stage.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

PG_FUNCTION_INFO_V1(tvdb_answer_class);

static bool warned_keys = false;

/* Alerts raised outside a transaction, written by tvdb_write_alerts. */
typedef struct PendingAlert
{
	const char *kind;
	const char *severity;
	int			service;
	char	   *message;
} PendingAlert;
static List *pending_alerts = NIL;

static int
circuit_of(const TvdbStage *s)
{
	return s->service == TVDB_SERVICE_LLAMAPARSE ? TVDB_CIRCUIT_LLAMAPARSE : TVDB_CIRCUIT_OPENAI;
}

static bool
remote(const TvdbStage *s)
{
	return s->service == TVDB_SERVICE_LLAMAPARSE || s->service == TVDB_SERVICE_OPENAI;
}

static void
queue_alert(const char *kind, const char *severity, int service, const char *message)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	PendingAlert *a = palloc(sizeof(PendingAlert));

	a->kind = kind;
	a->severity = severity;
	a->service = service;
	a->message = pstrdup(message);
	pending_alerts = lappend(pending_alerts, a);
	MemoryContextSwitchTo(old);
}

bool
tvdb_alerts_pending(void)
{
	return pending_alerts != NIL;
}

/* Write the alerts raised since the last call (in the caller's transaction). */
void
tvdb_write_alerts(void)
{
	static const Oid types[4] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	ListCell   *lc;

	foreach(lc, pending_alerts)
	{
		PendingAlert *a = lfirst(lc);
		Datum		values[4] = {CStringGetTextDatum(a->kind), CStringGetTextDatum(a->severity),
		CStringGetTextDatum(tvdb_circuit_service_name(a->service)), CStringGetTextDatum(a->message)};

		tvdb_spi_run("SELECT tvdb._alert($1, $2, $3, NULL, $4)", 4, types, values, NULL, SPI_OK_SELECT);
	}
	list_free_deep(pending_alerts);
	pending_alerts = NIL;
}

/* How many requests of this stage may go now (claim no more); when to ask again if none. */
int
tvdb_send_allowance(const TvdbStage *s, int wanted, long *due_ms)
{
	bool		probe;
	int			n;

	*due_ms = 0;
	if (!remote(s))
		return wanted;
	n = tvdb_circuit_allowance(circuit_of(s), s->rate_limited, wanted, due_ms, &probe);
	if (probe)
		queue_alert("circuit_half_open", "info", circuit_of(s),
					psprintf("%s: one probe goes after the cool-down", tvdb_circuit_service_name(circuit_of(s))));
	return n;
}

/* The allowance found nothing to send: an open circuit's probe goes back. */
void
tvdb_allowance_unused(const TvdbStage *s)
{
	if (remote(s))
		tvdb_circuit_probe_unused(circuit_of(s));
}

/* A reload may have fixed a key: blocked circuits close. */
void
tvdb_config_reloaded(void)
{
	for (int i = 0; i < TVDB_CIRCUIT_SERVICES; i++)
		if (tvdb_circuit_reset(i, true))
			queue_alert("circuit_closed", "info", i, "the configuration was reloaded: the blocked circuit is closed again");
}

/*
 * w is NULL when the dispatcher asks before claiming anything: may this
 * stage send at all now?  Local and mock stages always may.
 */
TvdbVerdict
tvdb_before_send(const TvdbStage *s, TvdbWork *w)
{
	if (s->service != TVDB_SERVICE_LLAMAPARSE && s->service != TVDB_SERVICE_OPENAI)
		return TVDB_SEND_NOW;
	if (tvdb_keys_missing() != NULL)
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
	/* a request about to go takes its share of the service's buckets */
	if (w != NULL && !tvdb_circuit_take(circuit_of(s), s->rate_limited, w->cost_tokens))
		return TVDB_SEND_LATER;
	return TVDB_SEND_NOW;
}

/*
 * A query's embedding request (backend/embed.c), from an application's
 * backend: 0 when it may go now (it has taken its share of the buckets),
 * else the ms to wait, or -1 when it cannot go soon (a blocked circuit, or
 * an open one whose probe is out).
 */
long
tvdb_query_may_send(int64 tokens)
{
	long		due_ms;
	bool		probe;

	if (tvdb_circuit_allowance(TVDB_CIRCUIT_OPENAI, true, 1, &due_ms, &probe) == 0)
		return due_ms > 0 ? due_ms : -1;
	if (probe)
		queue_alert("circuit_half_open", "info", TVDB_CIRCUIT_OPENAI,
					"openai: a query's request is the probe after the cool-down");
	if (!tvdb_circuit_take(TVDB_CIRCUIT_OPENAI, true, tokens))
		return 100;				/* a worker took the last of the bucket first */
	return 0;
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

	const char *failure = NULL;
	int			service;
	int			changed;

	w->answer_kind = kind;
	if (remote(w->stage))
	{
		TvdbRemaining left = {w->req->remaining_requests, w->req->remaining_tokens,
							  w->req->reset_requests_ms, w->req->reset_tokens_ms};

		service = circuit_of(w->stage);
		tvdb_circuit_remaining(service, &left);
		/* the error text is for failures only: a success builds none */
		if (strcmp(kind, "success") != 0)
		{
			failure = tvdb_http_failure(w->req);
			if (failure == NULL)
				failure = psprintf("HTTP %ld", w->req->status);
		}
		changed = tvdb_circuit_answer(service, kind, w->req->retry_after_ms, failure);
		if (changed == TVDB_CIRCUIT_OPEN)
			queue_alert("circuit_opened", "error", service,
						psprintf("%s failed %d times in a row (last: %s, HTTP %ld): nothing is sent until a probe succeeds",
								 tvdb_circuit_service_name(service), tvdb_breaker_failures, kind, w->req->status));
		else if (changed == TVDB_CIRCUIT_BLOCKED)
			queue_alert("circuit_blocked", "critical", service,
						psprintf("%s refused the %s (HTTP %ld): nothing is sent until the configuration is reloaded or tvdb.reset_circuit('%s')",
								 tvdb_circuit_service_name(service), strcmp(kind, "auth") == 0 ? "key" : "request for quota or credits",
								 w->req->status, tvdb_circuit_service_name(service)));
		else if (changed == TVDB_CIRCUIT_CLOSED)
			queue_alert("circuit_closed", "info", service,
						psprintf("%s answers again: its circuit is closed", tvdb_circuit_service_name(service)));
	}
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
