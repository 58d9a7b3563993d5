/*
 * statemachine.c — the job state machine: the statuses, the one table of
 * allowed edges (with the event each edge writes), and the BEFORE trigger on
 * upload_pipeline.upload_jobs that rejects every other status change.
 *
 * The SQL view tvdb.allowed_transitions reads the same table through
 * tvdb.transition_table(), so the documentation cannot drift from the code.
 */
#include "tvdb.h"

#include "access/htup_details.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(tvdb_guard_status);
PG_FUNCTION_INFO_V1(tvdb_transition_table);
PG_FUNCTION_INFO_V1(tvdb_status_table);

static const char *const status_names[TVDB_NUM_STATUSES] = {
	[TVDB_UPLOADED] = "uploaded",
	[TVDB_PARSE_QUEUED] = "parse_queued",
	[TVDB_PARSED] = "parsed",
	[TVDB_CHUNKING] = "chunking",
	[TVDB_CHUNKS_STORED] = "chunks_stored",
	[TVDB_EMBEDDING_QUEUED] = "embedding_queued",
	[TVDB_EMBEDDING_IN_PROGRESS] = "embedding_in_progress",
	[TVDB_EMBEDDINGS_STORED] = "embeddings_stored",
	[TVDB_COMPLETE] = "complete",
	[TVDB_FAILED_PARSE] = "failed_parse",
	[TVDB_FAILED_CHUNKING] = "failed_chunking",
	[TVDB_FAILED_EMBEDDING] = "failed_embedding",
	[TVDB_CANCELLED] = "cancelled",
};

#define S_START "stage_started"
#define S_DONE	"stage_done"
#define S_ERROR "stage_error"

/* Every allowed edge, and the only place edges are defined. */
static const TvdbEdge edges[] = {
	{TVDB_NO_STATUS, TVDB_UPLOADED, S_DONE, "info", "upload_received", false},

	{TVDB_UPLOADED, TVDB_PARSE_QUEUED, S_START, "info", "parse_queued", false},
	{TVDB_PARSE_QUEUED, TVDB_PARSED, S_DONE, "info", "parse_completed", false},
	{TVDB_PARSED, TVDB_CHUNKING, S_START, "info", "chunking_started", false},
	{TVDB_CHUNKING, TVDB_CHUNKS_STORED, S_DONE, "info", "chunking_completed", false},
	{TVDB_CHUNKS_STORED, TVDB_EMBEDDING_QUEUED, S_START, "info", "embedding_queued", false},
	{TVDB_EMBEDDING_QUEUED, TVDB_EMBEDDING_IN_PROGRESS, S_START, "info", "embedding_started", false},
	{TVDB_EMBEDDING_IN_PROGRESS, TVDB_EMBEDDINGS_STORED, S_DONE, "info", "embedding_completed", false},
	{TVDB_EMBEDDINGS_STORED, TVDB_COMPLETE, S_DONE, "info", "pipeline_completed", false},

	{TVDB_UPLOADED, TVDB_FAILED_PARSE, S_ERROR, "error", "parse_failed", false},
	{TVDB_PARSE_QUEUED, TVDB_FAILED_PARSE, S_ERROR, "error", "parse_failed", false},
	{TVDB_PARSED, TVDB_FAILED_CHUNKING, S_ERROR, "error", "chunking_failed", false},
	{TVDB_CHUNKING, TVDB_FAILED_CHUNKING, S_ERROR, "error", "chunking_failed", false},
	{TVDB_CHUNKS_STORED, TVDB_FAILED_EMBEDDING, S_ERROR, "error", "embedding_failed", false},
	{TVDB_EMBEDDING_QUEUED, TVDB_FAILED_EMBEDDING, S_ERROR, "error", "embedding_failed", false},
	{TVDB_EMBEDDING_IN_PROGRESS, TVDB_FAILED_EMBEDDING, S_ERROR, "error", "embedding_failed", false},

	{TVDB_FAILED_PARSE, TVDB_UPLOADED, S_START, "warn", "parse_retried", true},
	{TVDB_FAILED_PARSE, TVDB_PARSE_QUEUED, S_START, "warn", "parse_retried", true},
	{TVDB_FAILED_CHUNKING, TVDB_PARSED, S_START, "warn", "chunking_retried", true},
	{TVDB_FAILED_EMBEDDING, TVDB_EMBEDDING_QUEUED, S_START, "warn", "embedding_retried", true},

	/* tvdb.cancel(): from every status but complete, and terminal */
	{TVDB_UPLOADED, TVDB_CANCELLED, S_ERROR, "warn", "pipeline_cancelled", false},
	{TVDB_PARSE_QUEUED, TVDB_CANCELLED, S_ERROR, "warn", "pipeline_cancelled", false},
	{TVDB_PARSED, TVDB_CANCELLED, S_ERROR, "warn", "pipeline_cancelled", false},
	{TVDB_CHUNKING, TVDB_CANCELLED, S_ERROR, "warn", "pipeline_cancelled", false},
	{TVDB_CHUNKS_STORED, TVDB_CANCELLED, S_ERROR, "warn", "pipeline_cancelled", false},
	{TVDB_EMBEDDING_QUEUED, TVDB_CANCELLED, S_ERROR, "warn", "pipeline_cancelled", false},
	{TVDB_EMBEDDING_IN_PROGRESS, TVDB_CANCELLED, S_ERROR, "warn", "pipeline_cancelled", false},
	{TVDB_EMBEDDINGS_STORED, TVDB_CANCELLED, S_ERROR, "warn", "pipeline_cancelled", false},
	{TVDB_FAILED_PARSE, TVDB_CANCELLED, S_ERROR, "warn", "pipeline_cancelled", false},
	{TVDB_FAILED_CHUNKING, TVDB_CANCELLED, S_ERROR, "warn", "pipeline_cancelled", false},
	{TVDB_FAILED_EMBEDDING, TVDB_CANCELLED, S_ERROR, "warn", "pipeline_cancelled", false},
};

#define NUM_EDGES lengthof(edges)

const char *
tvdb_status_name(TvdbStatus s)
{
	Assert(s >= 0 && s < TVDB_NUM_STATUSES);
	return status_names[s];
}

bool
tvdb_status_is_failure(TvdbStatus s)
{
	return s >= TVDB_FAILED_PARSE && s <= TVDB_FAILED_EMBEDDING;
}

/* Open: the status has a way out (a working or a failure status). */
bool
tvdb_status_is_open(TvdbStatus s)
{
	for (int i = 0; i < (int) NUM_EDGES; i++)
		if (edges[i].from == s)
			return true;
	return false;
}

TvdbStatus
tvdb_status_lookup(const char *name)
{
	for (int i = 0; i < TVDB_NUM_STATUSES; i++)
		if (strcmp(status_names[i], name) == 0)
			return (TvdbStatus) i;
	return TVDB_NO_STATUS;
}

static char *
known_statuses(void)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < TVDB_NUM_STATUSES; i++)
		appendStringInfo(&buf, "%s%s", i ? ", " : "", status_names[i]);
	return buf.data;
}

TvdbStatus
tvdb_status_parse(const char *name)
{
	TvdbStatus	s = tvdb_status_lookup(name);

	if (s == TVDB_NO_STATUS)
		ereport(ERROR,
				(errcode(ERRCODE_TVDB_UNKNOWN_STATUS),
				 errmsg("unknown job status \"%s\"", name),
				 errdetail("Known statuses: %s.", known_statuses())));
	return s;
}

const TvdbEdge *
tvdb_edge_lookup(TvdbStatus from, TvdbStatus to)
{
	for (int i = 0; i < (int) NUM_EDGES; i++)
		if (edges[i].from == from && edges[i].to == to)
			return &edges[i];
	return NULL;
}

void
tvdb_report_invalid_transition(TvdbStatus from, TvdbStatus to)
{
	StringInfoData allowed;

	if (from == TVDB_NO_STATUS)
		ereport(ERROR,
				(errcode(ERRCODE_TVDB_INVALID_TRANSITION),
				 errmsg("invalid initial job status \"%s\"", tvdb_status_name(to)),
				 errdetail("A new job must start in status \"%s\".",
						   tvdb_status_name(TVDB_INITIAL_STATUS)),
				 errhint("Create jobs with tvdb.upload(), or insert them without a status.")));

	initStringInfo(&allowed);
	for (int i = 0; i < (int) NUM_EDGES; i++)
		if (edges[i].from == from)
			appendStringInfo(&allowed, "%s%s", allowed.len ? ", " : "",
							 tvdb_status_name(edges[i].to));

	if (allowed.len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_TVDB_INVALID_TRANSITION),
				 errmsg("invalid job status transition from \"%s\" to \"%s\"",
						tvdb_status_name(from), tvdb_status_name(to)),
				 errdetail("Status \"%s\" is terminal: no change is allowed.",
						   tvdb_status_name(from))));
	ereport(ERROR,
			(errcode(ERRCODE_TVDB_INVALID_TRANSITION),
			 errmsg("invalid job status transition from \"%s\" to \"%s\"",
					tvdb_status_name(from), tvdb_status_name(to)),
			 errdetail("Allowed next statuses from \"%s\": %s.",
					   tvdb_status_name(from), allowed.data)));
}

/*
 * The edges of from -> via[0] -> ... -> to (nvia + 1 of them) into edges;
 * errors at the first hop the table does not allow.  Their number.
 */
int
tvdb_path_edges(TvdbStatus from, TvdbStatus to, const TvdbStatus *via, int nvia,
				const TvdbEdge **edges)
{
	TvdbStatus	at = from;

	for (int i = 0; i <= nvia; i++)
	{
		TvdbStatus	next = i < nvia ? via[i] : to;

		edges[i] = tvdb_edge_lookup(at, next);
		if (edges[i] == NULL)
			tvdb_report_invalid_transition(at, next);
		at = next;
	}
	return nvia + 1;
}

/* The status a status column holds; errors when NULL or unknown (events.c too). */
TvdbStatus
tvdb_status_value(Datum d, bool isnull)
{
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("job status must not be null"),
				 errdetail("Every job is in exactly one status.")));
	return tvdb_status_parse(TextDatumGetCString(d));
}

/* The status held in a column of a trigger tuple. */
static TvdbStatus
tuple_status(HeapTuple tuple, TupleDesc desc, int attnum)
{
	bool		isnull;
	Datum		d = heap_getattr(tuple, attnum, desc, &isnull);

	return tvdb_status_value(d, isnull);
}

/* The attribute number of a column the status triggers need (events.c too). */
int
tvdb_trigger_column(TriggerData *trigdata, const char *name)
{
	int			attnum = SPI_fnumber(trigdata->tg_relation->rd_att, name);

	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("table \"%s\" has no column \"%s\"",
						RelationGetRelationName(trigdata->tg_relation), name),
				 errdetail("tvdb's status triggers belong on upload_pipeline.upload_jobs.")));
	return attnum;
}

/* The value of a column of a trigger tuple (events.c and restore.c too). */
Datum
tvdb_trigger_value(TriggerData *trigdata, HeapTuple tuple, const char *name, bool *isnull)
{
	return heap_getattr(tuple, tvdb_trigger_column(trigdata, name), trigdata->tg_relation->rd_att, isnull);
}

/*
 * A field of the detail the mover gave (tvdb.transition(), the worker), as
 * ->> reads it: after a move into a failure status, "error" is the job's
 * last error and "class" its failure class.  False when the mover gave none.
 */
static bool
detail_field(TriggerData *td, HeapTuple tuple, const char *key, Datum *value, bool *isnull)
{
	bool		null_id;
	Datum		job = tvdb_trigger_value(td, tuple, "job_id", &null_id);
	Datum		detail = null_id ? (Datum) 0 : tvdb_pending_detail(job);
	Jsonb	   *jb;
	JsonbValue	v;

	if (detail == (Datum) 0)
		return false;
	jb = DatumGetJsonbP(detail);
	if (!JB_ROOT_IS_OBJECT(jb) || !getKeyJsonValueFromContainer(&jb->root, key, strlen(key), &v))
		return false;
	*isnull = v.type == jbvNull;
	if (v.type == jbvString)
		*value = PointerGetDatum(cstring_to_text_with_len(v.val.string.val, v.val.string.len));
	else if (!*isnull)
		*value = CStringGetTextDatum(JsonbToCString(NULL, &JsonbValueToJsonb(&v)->root, 0));
	return true;
}

/*
 * BEFORE INSERT OR UPDATE ... FOR EACH ROW.  Rejects an illegal status
 * change (every edge of it, when the mover named statuses it passes
 * through); on a legal one stamps status_changed_at and updated_at, counts a
 * new attempt on a retry edge, starts the new stage visit with no failed
 * tries and no retry due, on a failure keeps the mover's error as
 * last_error and its class as failure_class, on complete clears
 * last_error, and on cancelled drops the lease and any poll due (a worker
 * with a request in flight then finds the job no longer its own, whatever
 * moved it).  Unchanged status passes untouched.
 */
Datum
tvdb_guard_status(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	newtuple;
	int			status_att;
	TvdbStatus	from = TVDB_NO_STATUS;
	TvdbStatus	to;
	const TvdbEdge *path[TVDB_MAX_VIA + 1];
	const TvdbStatus *via = NULL;
	int			nvia = 0;
	int			retries = 0;
	int			cols[10];
	Datum		values[10];
	bool		nulls[10] = {false};
	int			ncols = 0;
	Datum		now = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("tvdb_guard_status() must be fired BEFORE INSERT OR UPDATE FOR EACH ROW")));

	desc = trigdata->tg_relation->rd_att;
	status_att = tvdb_trigger_column(trigdata, "status");

	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		newtuple = trigdata->tg_newtuple;
		from = tuple_status(trigdata->tg_trigtuple, desc, status_att);
		to = tuple_status(newtuple, desc, status_att);
		if (from == to)
			return PointerGetDatum(newtuple);
	}
	else
	{
		newtuple = trigdata->tg_trigtuple;
		to = tuple_status(newtuple, desc, status_att);
		if (tvdb_restoring())
			return PointerGetDatum(tvdb_restored_job(trigdata, newtuple, to));
	}

	if (from != TVDB_NO_STATUS)
	{
		bool		isnull;
		Datum		job = tvdb_trigger_value(trigdata, newtuple, "job_id", &isnull);

		if (!isnull)
			nvia = tvdb_pending_via(job, &via);
	}
	for (int i = 0, n = tvdb_path_edges(from, to, via, nvia, path); i < n; i++)
		retries += path[i]->is_retry;

	cols[ncols] = tvdb_trigger_column(trigdata, "status_changed_at");
	values[ncols++] = now;
	if (from != TVDB_NO_STATUS)
	{
		cols[ncols] = tvdb_trigger_column(trigdata, "updated_at");
		values[ncols++] = now;
	}
	if (retries > 0)
	{
		int			att = tvdb_trigger_column(trigdata, "attempts");
		bool		isnull;
		Datum		old = heap_getattr(trigdata->tg_trigtuple, att, desc, &isnull);

		cols[ncols] = att;
		values[ncols++] = Int32GetDatum(isnull ? 1 : DatumGetInt32(old) + retries);
	}
	if (from != TVDB_NO_STATUS)
	{
		cols[ncols] = tvdb_trigger_column(trigdata, "tries");
		values[ncols++] = Int32GetDatum(0);
		cols[ncols] = tvdb_trigger_column(trigdata, "next_retry_at");
		nulls[ncols++] = true;
		cols[ncols] = tvdb_trigger_column(trigdata, "failure_class");
		nulls[ncols] = true;
		if (tvdb_status_is_failure(to))
			(void) detail_field(trigdata, newtuple, "class", &values[ncols], &nulls[ncols]);
		ncols++;
	}
	if (tvdb_status_is_failure(to) && detail_field(trigdata, newtuple, "error", &values[ncols], &nulls[ncols]))
		cols[ncols++] = tvdb_trigger_column(trigdata, "last_error");
	else if (to == TVDB_COMPLETE)
	{
		/* the errors met on the way were overcome: a complete job shows none */
		cols[ncols] = tvdb_trigger_column(trigdata, "last_error");
		nulls[ncols++] = true;
	}
	if (to == TVDB_CANCELLED)
	{
		cols[ncols] = tvdb_trigger_column(trigdata, "lease_owner");
		nulls[ncols++] = true;
		cols[ncols] = tvdb_trigger_column(trigdata, "lease_expires_at");
		nulls[ncols++] = true;
		cols[ncols] = tvdb_trigger_column(trigdata, "next_poll_at");
		nulls[ncols++] = true;
	}

	return PointerGetDatum(heap_modify_tuple_by_cols(newtuple, desc, ncols,
													  cols, values, nulls));
}

/* tvdb.transition_table(): every edge with the event it writes. */
Datum
tvdb_transition_table(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < (int) NUM_EDGES; i++)
	{
		const TvdbEdge *e = &edges[i];
		Datum		values[6];
		bool		nulls[6] = {false, false, false, false, false, false};

		if (e->from == TVDB_NO_STATUS)
			nulls[0] = true;
		else
			values[0] = CStringGetTextDatum(tvdb_status_name(e->from));
		values[1] = CStringGetTextDatum(tvdb_status_name(e->to));
		values[2] = CStringGetTextDatum(e->type);
		values[3] = CStringGetTextDatum(e->severity);
		values[4] = CStringGetTextDatum(e->code);
		values[5] = BoolGetDatum(e->is_retry);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* tvdb.status_table(): every status, its position, and what kind it is. */
Datum
tvdb_status_table(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < TVDB_NUM_STATUSES; i++)
	{
		bool		has_exit = false;
		Datum		values[5];
		bool		nulls[5] = {false, false, false, false, false};

		for (int j = 0; j < (int) NUM_EDGES; j++)
			has_exit |= (edges[j].from == (TvdbStatus) i);
		values[0] = CStringGetTextDatum(status_names[i]);
		values[1] = Int32GetDatum(i + 1);
		values[2] = BoolGetDatum(i == TVDB_INITIAL_STATUS);
		values[3] = BoolGetDatum(!has_exit);
		values[4] = BoolGetDatum(tvdb_status_is_failure((TvdbStatus) i));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
