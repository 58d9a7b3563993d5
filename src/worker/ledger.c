/*
 * ledger.c — every request has its row in the usage ledger before it is
 * sent: written in the transaction that decided it (a claim, or the
 * recording that asked for a follow-up), with what it is expected to cost,
 * and committed before the request goes.  A crash then leaves a row in
 * state 'sent' that the next worker marks 'unknown', counted at its
 * estimate, instead of a request nobody knows was made.
 *
 * The SQL that records answers writes ledger rows as it always has; a
 * trigger (tvdb._usage_answered, here) makes such a row complete the
 * request's own pre-send row instead.  It finds that row among the works
 * whose answers are being recorded now: the one being recorded (when the
 * dispatcher records one at a time), else by service, operation and job.
 * Both writes are in C because every request makes them, polls included.
 */
#include "worker/ledger.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/rel.h"
#include "utils/uuid.h"

PG_FUNCTION_INFO_V1(tvdb_sent_requests);
PG_FUNCTION_INFO_V1(tvdb_usage_answered);

static List *recording = NIL;	/* works whose answers are being recorded */
static TvdbWork *current = NULL;	/* the one being recorded alone, if so */

const char *
tvdb_service_name(TvdbService s)
{
	switch (s)
	{
		case TVDB_SERVICE_LLAMAPARSE:
			return "llamaparse";
		case TVDB_SERVICE_OPENAI:
			return "openai";
		default:
			return "mock";
	}
}

/* tvdb._request_sent prices only LlamaParse uploads and OpenAI requests; the rest cost 0. */
static bool
is_free(TvdbWork *w)
{
	if (w->stage->service == TVDB_SERVICE_OPENAI)
		return false;
	return !(w->stage->service == TVDB_SERVICE_LLAMAPARSE && strcmp(w->stage->operation, "upload") == 0);
}

/*
 * Write w's ledger row (in the caller's transaction) before it is sent,
 * reserving its estimate against the budgets; false when a budget has no
 * room: w must not be sent, and its jobs already wait (tvdb._budget_wait).
 */
bool
tvdb_ledger_sent(TvdbWork *w)
{
	static const Oid types[8] = {TEXTOID, TEXTOID, UUIDOID, UUIDARRAYOID, TEXTOID, INT4OID, INT8OID, INT8ARRAYOID};
	Datum		values[8];
	char		nulls[8] = "        ";
	bool		isnull;

	values[0] = CStringGetTextDatum(tvdb_service_name(w->stage->service));
	values[1] = CStringGetTextDatum(w->stage->operation);
	if (w->njobs == 1 && w->stage->service != TVDB_SERVICE_OPENAI)	/* batches name job_ids */
	{
		values[2] = DirectFunctionCall1(uuid_in, CStringGetDatum(w->jobs[0]));
		nulls[3] = 'n';
	}
	else
	{
		nulls[2] = 'n';
		values[3] = tvdb_job_ids(w);
	}
	values[4] = CStringGetTextDatum(w->owner);
	values[5] = Int32GetDatum(w->est_pages);
	values[6] = Int64GetDatum(w->cost_tokens);
	if (w->job_tokens != NULL)
	{
		Datum	   *t = palloc(sizeof(Datum) * Max(w->njobs, 1));

		for (int i = 0; i < w->njobs; i++)
			t[i] = Int64GetDatum(w->job_tokens[i]);
		values[7] = PointerGetDatum(construct_array(t, w->njobs, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	}
	else
		nulls[7] = 'n';
	w->usage_id = 0;
	if (is_free(w))
	{
		/* what tvdb._request_sent writes for a request priced at 0, which no budget refuses */
		tvdb_spi_run("INSERT INTO upload_pipeline.usage (service, operation, job_id, job_ids, state,"
					 " estimated_usd, reserved_usd, owner, job_tokens) "
					 "VALUES ($1, $2, $3, coalesce($4, '{}'), 'sent', 0, 0, $5, $8) RETURNING usage_id",
					 8, types, values, nulls, SPI_OK_INSERT_RETURNING);
		w->usage_id = DatumGetInt64(tvdb_spi_datum(0, 1, &isnull));
	}
	else if (tvdb_spi_run("SELECT tvdb._request_sent($1, $2, $3, $4, $5, $6, $7, $8)",
						  8, types, values, nulls, SPI_OK_SELECT) == 1)
	{
		Datum		id = tvdb_spi_datum(0, 1, &isnull);

		if (!isnull)
			w->usage_id = DatumGetInt64(id);
	}
	return w->usage_id != 0;
}

/* w was not sent after all: its row goes (in the caller's transaction). */
void
tvdb_ledger_unsent(TvdbWork *w)
{
	static const Oid types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(w->usage_id)};

	if (w->usage_id == 0)
		return;
	tvdb_spi_run("DELETE FROM upload_pipeline.usage WHERE usage_id = $1 AND state = 'sent'",
				 1, types, values, NULL, SPI_OK_DELETE);
	w->usage_id = 0;
}

/* The answers of works are about to be recorded (NIL: done). */
void
tvdb_ledger_recording(List *works)
{
	recording = works;
	current = NULL;
}

/* w's answer is recorded alone now (NULL: many at once). */
void
tvdb_ledger_current(TvdbWork *w)
{
	current = w;
}

static bool
serves(TvdbWork *w, const char *job)
{
	for (int i = 0; i < w->njobs; i++)
		if (strcmp(w->jobs[i], job) == 0)
			return true;
	return false;
}

/* Does w's request answer to this ledger row's service, operation and jobs? */
static bool
matches(TvdbWork *w, const char *service, const char *operation, const char *job,
		char **job_ids, int njob_ids)
{
	if (w->usage_id == 0 || strcmp(tvdb_service_name(w->stage->service), service) != 0 ||
		strcmp(w->stage->operation, operation) != 0)
		return false;
	if (job != NULL)
		return serves(w, job);
	for (int i = 0; i < njob_ids; i++)
		if (serves(w, job_ids[i]))
			return true;
	return njob_ids == 0;
}

/*
 * The pre-send rows a ledger row for (service, operation, job or job_ids)
 * may complete, the likeliest first, into ids (room for every work being
 * recorded, plus one); how many.  None outside the worker's recording.
 */
static int
candidates(const char *service, const char *operation, Datum job, bool job_null,
		   Datum job_ids, bool job_ids_null, Datum *ids)
{
	char	   *job_text = job_null ? NULL : DatumGetCString(DirectFunctionCall1(uuid_out, job));
	char	  **texts = NULL;
	int			ntexts = 0;
	int			n = 0;
	ListCell   *lc;

	if (recording == NIL && current == NULL)
		return 0;
	if (!job_ids_null)
	{
		Datum	   *uuids;

		deconstruct_array(DatumGetArrayTypeP(job_ids), UUIDOID, UUID_LEN, false, TYPALIGN_CHAR,
						  &uuids, NULL, &ntexts);
		texts = palloc(sizeof(char *) * Max(ntexts, 1));
		for (int i = 0; i < ntexts; i++)
			texts[i] = DatumGetCString(DirectFunctionCall1(uuid_out, uuids[i]));
	}
	if (current != NULL && matches(current, service, operation, job_text, texts, ntexts))
		ids[n++] = Int64GetDatum(current->usage_id);
	foreach(lc, recording)
	{
		TvdbWork   *w = lfirst(lc);

		if (w != current && matches(w, service, operation, job_text, texts, ntexts))
			ids[n++] = Int64GetDatum(w->usage_id);
	}
	return n;
}

/*
 * tvdb._sent_requests(service text, operation text, job uuid, job_ids uuid[])
 * RETURNS bigint[]: candidates() for SQL (tests call it to see what the
 * trigger would complete).
 */
Datum
tvdb_sent_requests(PG_FUNCTION_ARGS)
{
	Datum	   *ids = palloc(sizeof(Datum) * (list_length(recording) + 1));
	int			n = candidates(text_to_cstring(PG_GETARG_TEXT_PP(0)), text_to_cstring(PG_GETARG_TEXT_PP(1)),
							   PG_GETARG_DATUM(2), PG_ARGISNULL(2), PG_GETARG_DATUM(3), PG_ARGISNULL(3), ids);

	PG_RETURN_ARRAYTYPE_P(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* The answer's columns an UPDATE of its pre-send row takes ($2 ... $12; $1 is the row's id). */
static const char *const answer_columns[] = {"http_status", "latency_ms", "pages", "cache_hit", "inputs",
"prompt_tokens", "cost_usd", "error", "model", "credits", "job_ids"};
#define NANSWER lengthof(answer_columns)

/*
 * No answer (HTTP 0: a timeout, a reset) leaves the outcome unknown, held
 * at the estimate; an accepted LlamaParse upload keeps its reservation until
 * its parse is settled (tvdb._parse_settled), unless its job was cancelled
 * or deleted meanwhile: that parse is never settled.
 */
#define COMPLETE_SENT \
	"UPDATE upload_pipeline.usage u " \
	"SET http_status = $2, latency_ms = $3, pages = $4, cache_hit = $5, inputs = $6," \
	" prompt_tokens = $7, cost_usd = $8, error = $9, model = coalesce($10, u.model), credits = $11," \
	" job_ids = CASE WHEN cardinality(u.job_ids) > 0 THEN u.job_ids ELSE $12 END," \
	" state = CASE WHEN $2 = 0 THEN 'unknown' ELSE 'answered' END," \
	" reserved_usd = CASE WHEN $2 = 0 THEN u.estimated_usd" \
	"                     WHEN u.service = 'llamaparse' AND u.operation = 'upload'" \
	"                          AND $2 BETWEEN 200 AND 299" \
	"                          AND EXISTS (SELECT 1 FROM upload_pipeline.upload_jobs j" \
	"                                      WHERE j.job_id = u.job_id" \
	"                                        AND j.status IN ('uploaded', 'parse_queued')) THEN u.estimated_usd" \
	"                     ELSE 0 END " \
	"WHERE u.usage_id = $1 AND u.state = 'sent'"

/*
 * tvdb._usage_answered(): BEFORE INSERT ... FOR EACH ROW on the ledger.  A
 * row written for an answer completes its request's pre-send row (and is not
 * inserted); any other row is inserted as it is.  The update runs as the
 * ledger's owner, as the SQL that wrote the row may not update the ledger.
 */
Datum
tvdb_usage_answered(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	HeapTuple	row;
	TupleDesc	desc;
	Datum	   *ids;
	int			n;
	Oid			types[NANSWER + 1];
	Datum		values[NANSWER + 1];
	char		nulls[NANSWER + 1];
	bool		isnull;
	volatile bool done = false;
	Oid			save_user;
	int			save_sec;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(td->tg_event) || !TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("tvdb._usage_answered() must be fired BEFORE INSERT FOR EACH ROW on upload_pipeline.usage"),
				 errhint("It is created with the extension; do not call it.")));
	row = td->tg_trigtuple;
	desc = RelationGetDescr(td->tg_relation);
	if (recording == NIL && current == NULL)
		return PointerGetDatum(row);	/* not the worker's recording: nothing to complete */
	{
		Datum		state = tvdb_trigger_value(td, row, "state", &isnull);

		if (isnull || strcmp(TextDatumGetCString(state), "answered") != 0)
			return PointerGetDatum(row);
	}
	{
		bool		job_null,
					job_ids_null;
		Datum		service = tvdb_trigger_value(td, row, "service", &isnull);
		Datum		operation = tvdb_trigger_value(td, row, "operation", &isnull);
		Datum		job = tvdb_trigger_value(td, row, "job_id", &job_null);
		Datum		job_ids = tvdb_trigger_value(td, row, "job_ids", &job_ids_null);

		ids = palloc(sizeof(Datum) * (list_length(recording) + 1));
		n = candidates(TextDatumGetCString(service), TextDatumGetCString(operation),
					   job, job_null, job_ids, job_ids_null, ids);
	}
	if (n == 0)
		return PointerGetDatum(row);

	types[0] = INT8OID;
	memset(nulls, ' ', sizeof(nulls));
	for (int i = 0; i < (int) NANSWER; i++)
	{
		int			att = tvdb_trigger_column(td, answer_columns[i]);

		types[i + 1] = TupleDescAttr(desc, att - 1)->atttypid;
		values[i + 1] = heap_getattr(row, att, desc, &isnull);
		if (isnull)
			nulls[i + 1] = 'n';
	}
	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(td->tg_relation->rd_rel->relowner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		tvdb_spi_connect();
		for (int i = 0; i < n && !done; i++)
		{
			values[0] = ids[i];
			done = tvdb_spi_run(COMPLETE_SENT, NANSWER + 1, types, values, nulls, SPI_OK_UPDATE) == 1;
		}
		tvdb_spi_finish();
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_user, save_sec);
	}
	PG_END_TRY();
	return done ? PointerGetDatum(NULL) : PointerGetDatum(row);
}
