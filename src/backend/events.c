/*
 * events.c — the AFTER trigger on upload_pipeline.upload_jobs that writes
 * exactly one row to upload_pipeline.events for every edge a job takes (and
 * for its creation), keeps the queue of open jobs (job_queue.c), and queues
 * a NOTIFY on channel tvdb_jobs that PostgreSQL delivers only if the
 * transaction commits.
 *
 * It is a statement trigger with transition tables: a statement that moves
 * a batch of jobs writes all their events with one INSERT and their queue
 * rows with one upsert.  A move that passes through statuses on its way
 * (tvdb._advance_path) writes an event per edge, in order, the later ones
 * with no time spent in the status passed through.  Databases still on
 * 0.1.0 declare it FOR EACH ROW, and get one event per row as before.
 *
 * It looks the edges up again rather than trusting the BEFORE trigger: a
 * user trigger firing after ours could have changed the status.
 */
#include "tvdb.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

PG_FUNCTION_INFO_V1(tvdb_record_event);

#define NOTIFY_CHANNEL "tvdb_jobs"

#define INSERT_NARGS 11

static const Oid insert_types[INSERT_NARGS] = {UUIDOID, UUIDOID, TEXTOID, TEXTOID, TEXTOID,
	JSONBOID, UUIDOID, TEXTOID, TEXTOID, INTERVALOID, INT4OID};

static void
notify(Datum job_id, TvdbStatus to)
{
	Async_Notify(NOTIFY_CHANNEL,
				 psprintf("{\"job_id\": \"%s\", \"status\": \"%s\"}",
						  DatumGetCString(DirectFunctionCall1(uuid_out, job_id)),
						  tvdb_status_name(to)));
}

/* The columns the statement trigger reads, by attribute number. */
typedef struct Columns
{
	int			job,
				doc,
				status,
				corr,
				since,
				attempts,
				poll,
				lease;
} Columns;

/* The events of a statement, gathered as columns for one INSERT. */
typedef struct Events
{
	int			n,
				cap;
	Datum	   *v[INSERT_NARGS];
	bool	   *null[INSERT_NARGS];
	Datum		no_detail;		/* '{}', made once */
	Datum		no_time;		/* interval '0', made once */
} Events;

static void
events_grow(Events *e)
{
	int			cap = Max(e->cap * 2, 16);

	if (e->cap == 0)
	{
		e->no_detail = DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
		e->no_time = DirectFunctionCall3(interval_in, CStringGetDatum("0"),
										 ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	}
	for (int c = 0; c < INSERT_NARGS; c++)
	{
		e->v[c] = e->cap ? repalloc(e->v[c], sizeof(Datum) * cap) : palloc(sizeof(Datum) * cap);
		e->null[c] = e->cap ? repalloc(e->null[c], sizeof(bool) * cap) : palloc(sizeof(bool) * cap);
	}
	e->cap = cap;
}

/* A copy of a uuid column (the slot is reused for the next row). */
static Datum
slot_uuid(TupleTableSlot *slot, int att, bool *isnull)
{
	Datum		d = slot_getattr(slot, att, isnull);

	return *isnull ? (Datum) 0 : tvdb_uuid_copy(d);
}

static TvdbStatus
slot_status(TupleTableSlot *slot, int att)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, att, &isnull);

	return tvdb_status_value(d, isnull);
}

/* One event per edge of the job's way from `from` (none: created) to its status now. */
static void
add_events(Events *e, TupleTableSlot *old, TupleTableSlot *new, const Columns *c,
		   TvdbStatus from, TvdbStatus to)
{
	const TvdbEdge *path[TVDB_MAX_VIA + 1];
	const TvdbStatus *via = NULL;
	int			nvia = 0;
	int			nedges;
	bool		job_null,
				isnull;
	Datum		job = slot_uuid(new, c->job, &job_null);
	Datum		doc = slot_uuid(new, c->doc, &isnull);
	Datum		corr = slot_uuid(new, c->corr, &isnull);
	bool		corr_null = isnull;
	Datum		detail = job_null ? (Datum) 0 : tvdb_pending_detail(job);
	Datum		attempts = slot_getattr(new, c->attempts, &isnull);
	bool		attempts_null = isnull;
	Datum		prev = (Datum) 0;
	bool		prev_null = true;

	if (from != TVDB_NO_STATUS && !job_null)
		nvia = tvdb_pending_via(job, &via);
	if (from == TVDB_NO_STATUS)
	{
		path[0] = tvdb_edge_lookup(from, to);
		if (path[0] == NULL)
			tvdb_report_invalid_transition(from, to);
		nedges = 1;
	}
	else
	{
		bool		since_null;
		Datum		since = slot_getattr(old, c->since, &since_null);
		Datum		until = slot_getattr(new, c->since, &isnull);

		nedges = tvdb_path_edges(from, to, via, nvia, path);
		if (!since_null && !isnull)
		{
			prev = DirectFunctionCall2(timestamp_mi, until, since);
			prev_null = false;
		}
	}
	for (int k = 0; k < nedges; k++)
	{
		const TvdbEdge *edge = path[k];
		int			i;

		if (e->n == e->cap)
			events_grow(e);
		i = e->n++;
		for (int col = 0; col < INSERT_NARGS; col++)
			e->null[col][i] = false;
		e->v[0][i] = job;
		e->null[0][i] = job_null;
		e->v[1][i] = doc;
		e->v[2][i] = CStringGetTextDatum(edge->type);
		e->v[3][i] = CStringGetTextDatum(edge->severity);
		e->v[4][i] = CStringGetTextDatum(edge->code);
		e->v[5][i] = (k == 0 && detail != (Datum) 0) ? detail : e->no_detail;
		e->v[6][i] = corr;
		e->null[6][i] = corr_null;
		if (edge->from == TVDB_NO_STATUS)
			e->null[7][i] = true;
		else
			e->v[7][i] = CStringGetTextDatum(tvdb_status_name(edge->from));
		e->v[8][i] = CStringGetTextDatum(tvdb_status_name(edge->to));
		/* the statuses passed through on the way were left at once */
		if (k == 0)
		{
			e->v[9][i] = prev;
			e->null[9][i] = prev_null || edge->from == TVDB_NO_STATUS;
		}
		else
			e->v[9][i] = e->no_time;
		e->v[10][i] = attempts;
		e->null[10][i] = attempts_null;
	}
	if (!job_null)
		notify(job, to);
}

static void
insert_events(Events *e)
{
	const TvdbHotStatement *st = &tvdb_hot[TVDB_HOT_EVENTS];
	Datum		args[INSERT_NARGS];

	for (int c = 0; c < INSERT_NARGS; c++)
		args[c] = tvdb_array(e->v[c], e->null[c], e->n, insert_types[c]);
	tvdb_spi_run(st->sql, st->nargs, st->types, args, NULL, SPI_OK_INSERT);
}

static bool
same_value(TupleTableSlot *a, TupleTableSlot *b, int att)
{
	bool		anull,
				bnull;
	Datum		x = slot_getattr(a, att, &anull);
	Datum		y = slot_getattr(b, att, &bnull);

	if (anull || bnull)
		return anull == bnull;
	return DatumGetTimestampTz(x) == DatumGetTimestampTz(y);
}

static void
put_queue(TvdbQueueChanges *q, TupleTableSlot *new, const Columns *c, TvdbStatus status)
{
	bool		doc_null,
				job_null,
				since_null,
				poll_null,
				lease_null;
	Datum		doc = slot_getattr(new, c->doc, &doc_null);
	Datum		job = slot_getattr(new, c->job, &job_null);
	Datum		since = slot_getattr(new, c->since, &since_null);
	Datum		poll = slot_getattr(new, c->poll, &poll_null);
	Datum		lease = slot_getattr(new, c->lease, &lease_null);

	if (doc_null || job_null)
		return;					/* refused by the table's constraints anyway */
	tvdb_queue_put(q, doc, job, status,
				   since_null ? GetCurrentTransactionStartTimestamp() : DatumGetTimestampTz(since),
				   poll, poll_null, lease, lease_null);
}

static void
columns(TriggerData *td, Columns *c)
{
	c->job = tvdb_trigger_column(td, "job_id");
	c->doc = tvdb_trigger_column(td, "document_id");
	c->status = tvdb_trigger_column(td, "status");
	c->corr = tvdb_trigger_column(td, "correlation_id");
	c->since = tvdb_trigger_column(td, "status_changed_at");
	c->attempts = tvdb_trigger_column(td, "attempts");
	c->poll = tvdb_trigger_column(td, "next_poll_at");
	c->lease = tvdb_trigger_column(td, "lease_expires_at");
}

/* Write the events gathered (one INSERT), then wake the workers at commit. */
static void
write_events(Events *e)
{
	if (e->n == 0)
		return;
	insert_events(e);
	tvdb_wakeup_on_commit();
}

/*
 * 0.1.0's AFTER INSERT OR UPDATE ... FOR EACH ROW (the UPDATE trigger is
 * declared WHEN (OLD.status IS DISTINCT FROM NEW.status), so it is not even
 * queued for other updates): the same events as a statement's, for one row,
 * and no queue (0.1.0 has none).
 */
static Datum
record_row(TriggerData *td)
{
	bool		update = TRIGGER_FIRED_BY_UPDATE(td->tg_event);
	TupleDesc	desc = RelationGetDescr(td->tg_relation);
	TupleTableSlot *new;
	TupleTableSlot *old = NULL;
	TvdbStatus	from = TVDB_NO_STATUS;
	TvdbStatus	to;
	Columns		c;
	Events		e = {0};

	if (!update && tvdb_restoring())
		return PointerGetDatum(NULL);	/* its events are restored with it */
	columns(td, &c);
	new = MakeSingleTupleTableSlot(desc, &TTSOpsHeapTuple);
	ExecStoreHeapTuple(update ? td->tg_newtuple : td->tg_trigtuple, new, false);
	if (update)
	{
		old = MakeSingleTupleTableSlot(desc, &TTSOpsHeapTuple);
		ExecStoreHeapTuple(td->tg_trigtuple, old, false);
		from = slot_status(old, c.status);
	}
	to = slot_status(new, c.status);
	if (from != to)
		add_events(&e, old, new, &c, from, to);
	tvdb_spi_connect();
	write_events(&e);
	tvdb_spi_finish();
	ExecDropSingleTupleTableSlot(new);
	if (old)
		ExecDropSingleTupleTableSlot(old);
	return PointerGetDatum(NULL);
}

/* Deleted jobs: a finished one is counted out (an open one's queue row goes by cascade). */
static void
record_deletes(TriggerData *td, Tuplestorestate *olds, TvdbQueueChanges *q)
{
	TupleTableSlot *old = MakeSingleTupleTableSlot(RelationGetDescr(td->tg_relation), &TTSOpsMinimalTuple);
	int			status_att = tvdb_trigger_column(td, "status");

	tuplestore_rescan(olds);
	while (tuplestore_gettupleslot(olds, true, false, old))
	{
		TvdbStatus	s = slot_status(old, status_att);

		if (!tvdb_status_is_open(s))
			tvdb_queue_count(q, s, -1);
	}
	ExecDropSingleTupleTableSlot(old);
}

/*
 * AFTER INSERT ... REFERENCING NEW TABLE, AFTER UPDATE ... REFERENCING OLD
 * TABLE NEW TABLE, AFTER DELETE ... REFERENCING OLD TABLE and AFTER
 * TRUNCATE, FOR EACH STATEMENT.  PostgreSQL fills the two transition tables
 * of an UPDATE side by side, the i-th old row being the i-th new row's
 * former self.
 */
static Datum
record_statement(TriggerData *td)
{
	bool		update = TRIGGER_FIRED_BY_UPDATE(td->tg_event);
	TupleDesc	desc = RelationGetDescr(td->tg_relation);
	Tuplestorestate *news = td->tg_newtable;
	Tuplestorestate *olds = td->tg_oldtable;
	TupleTableSlot *new,
			   *old = NULL;
	Columns		c;
	Events		e = {0};
	TvdbQueueChanges *q;
	bool		restoring = TRIGGER_FIRED_BY_INSERT(td->tg_event) && tvdb_restoring();

	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
	{
		/* the queue went with the jobs (TRUNCATE ... CASCADE), so go the counts */
		tvdb_spi_connect();
		tvdb_spi_run("DELETE FROM upload_pipeline.finished_counts", 0, NULL, NULL, NULL, SPI_OK_DELETE);
		tvdb_spi_finish();
		return PointerGetDatum(NULL);
	}
	if ((TRIGGER_FIRED_BY_DELETE(td->tg_event) ? olds : news) == NULL || (update && olds == NULL))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("tvdb_record_event() needs the statement's transition tables"),
				 errhint("Declare it REFERENCING NEW TABLE (OLD TABLE for DELETE, both for UPDATE).")));
	if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
	{
		if (tuplestore_tuple_count(olds) == 0)
			return PointerGetDatum(NULL);
		q = tvdb_queue_changes(0);
		record_deletes(td, olds, q);
		tvdb_spi_connect();
		tvdb_queue_flush(q);
		tvdb_spi_finish();
		return PointerGetDatum(NULL);
	}
	if (tuplestore_tuple_count(news) == 0)
		return PointerGetDatum(NULL);
	columns(td, &c);

	q = tvdb_queue_changes((int) tuplestore_tuple_count(news));
	new = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	tuplestore_rescan(news);
	if (update)
	{
		old = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
		tuplestore_rescan(olds);
	}
	while (tuplestore_gettupleslot(news, true, false, new))
	{
		TvdbStatus	from = TVDB_NO_STATUS;
		TvdbStatus	to = slot_status(new, c.status);

		if (update)
		{
			if (!tuplestore_gettupleslot(olds, true, false, old))
				elog(ERROR, "tvdb: transition tables of unequal length");
			from = slot_status(old, c.status);
		}
		if (from == to)
		{
			if (tvdb_status_is_open(to) &&
				(!same_value(old, new, c.poll) || !same_value(old, new, c.lease) ||
				 !same_value(old, new, c.since)))
				put_queue(q, new, &c, to);
			continue;
		}
		if (!restoring)
			add_events(&e, old, new, &c, from, to);
		if (from != TVDB_NO_STATUS && !tvdb_status_is_open(from))
			tvdb_queue_count(q, from, -1);
		if (tvdb_status_is_open(to))
			put_queue(q, new, &c, to);
		else
		{
			tvdb_queue_count(q, to, 1);
			if (from != TVDB_NO_STATUS && tvdb_status_is_open(from))
			{
				bool		isnull;

				tvdb_queue_drop(q, slot_getattr(new, c.doc, &isnull), slot_getattr(new, c.job, &isnull));
			}
		}
	}
	ExecDropSingleTupleTableSlot(new);
	if (old)
		ExecDropSingleTupleTableSlot(old);

	tvdb_spi_connect();
	write_events(&e);
	tvdb_queue_flush(q);
	tvdb_spi_finish();
	return PointerGetDatum(NULL);
}

Datum
tvdb_record_event(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("tvdb_record_event() must be fired AFTER a change")));
	if (TRIGGER_FIRED_FOR_STATEMENT(td->tg_event))
		return record_statement(td);
	if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("tvdb_record_event() must be fired AFTER INSERT OR UPDATE FOR EACH ROW, or FOR EACH STATEMENT")));
	return record_row(td);
}
