/*
 * dispatch.c — walks the stage table (stages/table.c): claims and starts
 * what is due, and records what came back.  It owns the order of the
 * worker's transactions:
 *
 *  - a claim commits before any of its requests is sent, with each
 *    request's ledger row (ledger.c);
 *  - the answers that arrive together are recorded in one transaction, a
 *    subtransaction each (or one for all of a stage's commonest answers);
 *  - a follow-up request (the result fetch after a finished poll) starts
 *    only after the transaction that decided it, and wrote its ledger row,
 *    has committed.
 *
 * An answer or a unit of local work that cannot be recorded holds back only
 * its own job, and never forever (tvdb._hold_back); the request's ledger
 * row is written even then.
 */
#include "worker/dispatch.h"
#include "worker/ledger.h"
#include "worker/stage.h"
#include "worker/xact.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* How many times a job's unrecordable work is held back before its stage fails. */
#define MAX_HOLD_BACKS 3

static MemoryContext inflight_cxt = NULL;	/* works whose requests are in flight */
static TimestampTz last_look[32];	/* per table entry: when it was last looked at */

void
tvdb_dispatch_init(void)
{
	inflight_cxt = AllocSetContextCreate(TopMemoryContext, "tvdb requests in flight",
										 ALLOCSET_DEFAULT_SIZES);
}

/* The request's row in the usage ledger, when its outcome could not be recorded. */
static void
record_usage(TvdbWork *w, const char *error)
{
	static const Oid types[7] = {TEXTOID, TEXTOID, UUIDOID, UUIDARRAYOID, INT4OID, FLOAT8OID, TEXTOID};
	Datum		values[7];
	char		nulls[7] = "       ";

	values[0] = CStringGetTextDatum(tvdb_service_name(w->stage->service));
	values[1] = CStringGetTextDatum(w->stage->operation);
	if (w->njobs == 1)
	{
		values[2] = DirectFunctionCall1(uuid_in, CStringGetDatum(w->jobs[0]));
		nulls[3] = 'n';
	}
	else
	{
		nulls[2] = 'n';
		values[3] = tvdb_job_ids(w);
	}
	values[4] = Int32GetDatum((int32) w->req->status);
	values[5] = Float8GetDatum(w->req->latency_ms);
	values[6] = CStringGetTextDatum(error);
	tvdb_spi_run("SELECT tvdb._record_usage($1, $2, $3, $4, $5, $6, error => $7)",
				 7, types, values, nulls, SPI_OK_SELECT);
}

typedef struct HoldBack
{
	TvdbWork   *w;
	ErrorData  *err;
} HoldBack;

/*
 * Work that failed with an error: each of its jobs is given back with a
 * backoff, or, after MAX_HOLD_BACKS or for bad data that no retry can fix,
 * fails its stage with the error as the reason.
 */
static void
hold_back_fn(void *arg)
{
	HoldBack   *h = arg;
	TvdbWork   *w = h->w;
	static const Oid types[6] = {UUIDOID, TEXTOID, TEXTOID, TEXTOID, BOOLOID, INT4OID};
	Datum		values[6];
	const char *message = h->err && h->err->message ? h->err->message : "unknown error";
	bool		permanent = h->err && ERRCODE_TO_CATEGORY(h->err->sqlerrcode) == ERRCODE_DATA_EXCEPTION;

	if (w->req != NULL)
	{
		tvdb_ledger_current(w);
		record_usage(w, psprintf("answer not recorded: %s", message));
	}
	values[1] = CStringGetTextDatum(w->owner);
	values[2] = CStringGetTextDatum(tvdb_status_name(w->stage->fails_to));
	values[3] = CStringGetTextDatum(message);
	values[4] = BoolGetDatum(permanent);
	values[5] = Int32GetDatum(MAX_HOLD_BACKS);
	for (int i = 0; i < w->njobs; i++)
	{
		values[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(w->jobs[i]));
		tvdb_spi_run("SELECT tvdb._hold_back($1, $2, $3, $4, $5, $6)", 6, types, values, NULL,
					 SPI_OK_SELECT);
	}
}

static void
hold_back(TvdbWork *w, ErrorData *err)
{
	HoldBack	h = {w, err};

	tvdb_in_xact("tvdb: holding back a job", hold_back_fn, &h, NULL);
}

/* Leases of works that may not be sent now go back, due again at once. */
static void
release_fn(void *arg)
{
	static const Oid types[2] = {UUIDOID, TEXTOID};
	TvdbWork   *w = arg;
	Datum		values[2] = {0, CStringGetTextDatum(w->owner)};

	tvdb_ledger_unsent(w);
	for (int i = 0; i < w->njobs; i++)
	{
		values[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(w->jobs[i]));
		tvdb_spi_run("SELECT tvdb._release($1, $2)", 2, types, values, NULL, SPI_OK_SELECT);
	}
}

/* Send w if the before-send hook agrees, else give its jobs back. */
static bool
send_work(TvdbWork *w)
{
	if (tvdb_before_send(w->stage, w) != TVDB_SEND_NOW)
	{
		tvdb_in_xact("tvdb: releasing jobs", release_fn, w, NULL);
		MemoryContextDelete(w->cxt);
		return false;
	}
	MemoryContextSetParent(w->cxt, inflight_cxt);
	tvdb_http_start(w->req);
	return true;
}

typedef struct Claim
{
	const TvdbStage *s;
	const char *owner;
	int			n;
	MemoryContext cxt;
	List	   *works;
} Claim;

static void
claim_fn(void *arg)
{
	Claim	   *c = arg;

	List	   *going = NIL;
	ListCell   *lc;
	MemoryContext old;

	c->works = c->s->claim(c->owner, c->n, c->cxt);
	if (c->s->run && c->works != NIL)
		c->s->run(c->works);
	/* each request's ledger row, and its budgets' room: a refused one stays */
	foreach(lc, c->works)
	{
		TvdbWork   *w = lfirst(lc);

		if (w->req != NULL && !tvdb_ledger_sent(w))
			continue;
		old = MemoryContextSwitchTo(c->cxt);
		going = lappend(going, w);
		MemoryContextSwitchTo(old);
	}
	c->works = going;
}

static void
lease_fn(void *arg)
{
	Claim	   *c = arg;

	c->works = tvdb_lease(c->s, c->owner, c->n, c->cxt);
}

static void
run_one_fn(void *arg)
{
	TvdbWork   *w = arg;

	w->stage->run(list_make1(w));
}

static char *
activity(const TvdbStage *s, const char *what)
{
	return psprintf("tvdb: %s (%s)", what, s->name);
}

/*
 * Claim up to n units of a remote stage, as many as the before-send hook
 * allows now, and send their requests; how many went.
 */
static int
claim_requests(const TvdbStage *s, const char *owner, int n)
{
	long		due_ms;
	Claim		c = {s, owner, tvdb_send_allowance(s, n, &due_ms), NULL, NIL};
	ListCell   *lc;
	int			sent = 0;

	if (c.n <= 0)
		return 0;
	c.cxt = AllocSetContextCreate(CurrentMemoryContext, "tvdb claim", ALLOCSET_DEFAULT_SIZES);
	if (tvdb_in_xact(activity(s, "claiming"), claim_fn, &c, NULL))
		foreach(lc, c.works)
			sent += send_work(lfirst(lc));
	MemoryContextDelete(c.cxt);	/* a failed claim's requests are freed with it */
	if (sent == 0)
		tvdb_allowance_unused(s);
	return sent;
}

/*
 * Claim and do a batch of a local stage in one transaction; if that fails,
 * one job per transaction, so that only the job at fault is held back.
 */
static int
run_local(const TvdbStage *s, const char *owner)
{
	Claim		c = {s, owner, s->batch, AllocSetContextCreate(CurrentMemoryContext, "tvdb claim",
															   ALLOCSET_DEFAULT_SIZES), NIL};
	ListCell   *lc;
	int			n;

	if (tvdb_in_xact(activity(s, "working"), claim_fn, &c, NULL))
	{
		n = list_length(c.works);
		MemoryContextDelete(c.cxt);
		return n;
	}
	MemoryContextReset(c.cxt);
	c.works = NIL;
	tvdb_in_xact(activity(s, "claiming one by one"), lease_fn, &c, NULL);
	foreach(lc, c.works)
	{
		TvdbWork   *w = lfirst(lc);
		ErrorData  *err = NULL;

		if (!tvdb_in_xact(activity(s, "working"), run_one_fn, w, &err))
			hold_back(w, err);
	}
	n = list_length(c.works);
	MemoryContextDelete(c.cxt);
	return n;
}

/*
 * Claim and start what is due, within tvdb.max_inflight.  Returns true when
 * it may have left due work behind (the caller comes back at once).
 */
bool
tvdb_dispatch(const char *owner)
{
	int			room = tvdb_max_inflight - tvdb_http_inflight();
	bool		more = false;

	for (int i = 0; tvdb_stage_table[i] != NULL && i < (int) lengthof(last_look); i++)
	{
		const TvdbStage *s = tvdb_stage_table[i];
		TimestampTz now = GetCurrentTimestamp();
		int			n;

		if (s->claims == TVDB_NO_STATUS || !s->runs())
			continue;
		if (s->every_ms > 0 && !TimestampDifferenceExceeds(last_look[i], now, s->every_ms))
			continue;
		if (tvdb_before_send(s, NULL) != TVDB_SEND_NOW)
			continue;
		if (s->run != NULL)
		{
			n = run_local(s, owner);
			more |= n >= s->batch;
			if (n < s->batch)
				last_look[i] = now;
			continue;
		}
		if (room <= 0)
			continue;			/* the next finished request brings us back */
		n = s->by_job ? s->batch : Min(s->batch, s->share > 0 ? (room + s->share - 1) / s->share : room);
		room -= claim_requests(s, owner, n);
	}
	/* what the first round's shares left over */
	for (int i = 0; tvdb_stage_table[i] != NULL && room > 0; i++)
	{
		const TvdbStage *s = tvdb_stage_table[i];

		if (s->share > 0 && s->claims != TVDB_NO_STATUS && s->runs() &&
			tvdb_before_send(s, NULL) == TVDB_SEND_NOW)
			room -= claim_requests(s, owner, Min(s->batch, room));
	}
	return more;
}

static void
write_alerts_fn(void *arg)
{
	tvdb_write_alerts();
}

/* Alerts the hooks raised outside a transaction (a reload), written now. */
void
tvdb_dispatch_alerts(void)
{
	if (tvdb_alerts_pending())
		tvdb_in_xact("tvdb: writing alerts", write_alerts_fn, NULL, NULL);
}

static void
record_fn(void *arg)
{
	TvdbWork   *w = arg;

	tvdb_ledger_current(w);
	w->stage->record(w);
}

static void
record_one(TvdbWork *w)
{
	ErrorData  *err = NULL;

	if (!tvdb_in_xact(activity(w->stage, "recording an answer"), record_fn, w, &err))
	{
		w->follow = false;
		hold_back(w, err);
	}
}

typedef struct Deferred
{
	const TvdbStage *s;
	List	   *works;
} Deferred;

static void
record_all_fn(void *arg)
{
	Deferred   *d = arg;

	tvdb_ledger_current(NULL);
	d->s->record_all(d->works);
}

static void
usage_only_fn(void *arg)
{
	ListCell   *lc;

	tvdb_ledger_current(NULL);
	foreach(lc, (List *) arg)
		record_usage(lfirst(lc), "outcome not recorded: the worker's transaction failed");
}

/* The follow-up of a recorded answer: built now, sent once its transaction commits. */
static TvdbWork *
follow_up(TvdbWork *w)
{
	const TvdbStage *next = w->stage->next;
	TvdbWork   *f = tvdb_work_new(next, w->owner, w->njobs, inflight_cxt);

	for (int i = 0; i < w->njobs; i++)
		f->jobs[i] = MemoryContextStrdup(f->cxt, w->jobs[i]);
	if (w->parse_job_id)
		f->parse_job_id = MemoryContextStrdup(f->cxt, w->parse_job_id);
	next->request(f);
	return f;
}

typedef struct FollowUps
{
	List	   *works;			/* the recorded works */
	List	   *follows;		/* their follow-ups, each with its ledger row */
	MemoryContext cxt;			/* where the list lives */
} FollowUps;

static void
follow_ups_fn(void *arg)
{
	FollowUps  *fu = arg;
	ListCell   *lc;

	foreach(lc, fu->works)
	{
		TvdbWork   *w = lfirst(lc);
		TvdbWork   *f;
		MemoryContext old;

		if (!w->follow)
			continue;
		f = follow_up(w);
		if (!tvdb_ledger_sent(f))
		{
			MemoryContextDelete(f->cxt);	/* its job waits for the budget */
			continue;
		}
		old = MemoryContextSwitchTo(fu->cxt);
		fu->follows = lappend(fu->follows, f);
		MemoryContextSwitchTo(old);
	}
}

/*
 * Record the answers of requests that finished together, in one transaction;
 * then start the follow-ups it decided on, and free the works.
 */
void
tvdb_record_answers(List *finished)
{
	Deferred	deferred[8];
	int			nd = 0;
	List	   *works = NIL;
	FollowUps	fu = {NIL, NIL, NULL};
	ListCell   *lc;

	foreach(lc, finished)
	{
		TvdbWork   *w = ((TvdbHttp *) lfirst(lc))->owner;

		tvdb_after_answer(w);
		works = lappend(works, w);
	}
	fu.works = works;
	fu.cxt = CurrentMemoryContext;
	tvdb_ledger_recording(works);

	tvdb_batch_begin("tvdb: recording answers");
	foreach(lc, works)
	{
		TvdbWork   *w = lfirst(lc);
		const TvdbStage *s = w->stage;
		int			d;

		if (s->deferrable == NULL || !s->deferrable(w))
		{
			record_one(w);
			continue;
		}
		for (d = 0; d < nd && deferred[d].s != s; d++)
			;
		if (d == nd)
		{
			Assert(nd < (int) lengthof(deferred));
			deferred[nd].s = s;
			deferred[nd++].works = NIL;
		}
		deferred[d].works = lappend(deferred[d].works, w);
	}
	for (int d = 0; d < nd; d++)
	{
		if (tvdb_in_xact(activity(deferred[d].s, "recording answers"), record_all_fn, &deferred[d], NULL))
			continue;
		/* one by one: only an answer that cannot be recorded is held back */
		foreach(lc, deferred[d].works)
			record_one(lfirst(lc));
	}
	if (tvdb_alerts_pending())
		tvdb_in_xact("tvdb: writing alerts", write_alerts_fn, NULL, NULL);
	if (!tvdb_in_xact("tvdb: writing follow-ups' ledger rows", follow_ups_fn, &fu, NULL))
	{
		foreach(lc, fu.follows)
			MemoryContextDelete(((TvdbWork *) lfirst(lc))->cxt);
		fu.follows = NIL;
	}
	if (tvdb_batch_end())
	{
		foreach(lc, fu.follows)
			send_work(lfirst(lc));
	}
	else
	{
		foreach(lc, fu.follows)
			MemoryContextDelete(((TvdbWork *) lfirst(lc))->cxt);
		tvdb_in_xact("tvdb: recording usage", usage_only_fn, works, NULL);
	}
	tvdb_ledger_recording(NIL);
	foreach(lc, works)
		MemoryContextDelete(((TvdbWork *) lfirst(lc))->cxt);
	list_free(fu.follows);
}
