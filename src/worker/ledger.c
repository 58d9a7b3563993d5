/*
 * ledger.c — every request has its row in the usage ledger before it is
 * sent: written in the transaction that decided it (a claim, or the
 * recording that asked for a follow-up), with what it is expected to cost,
 * and committed before the request goes.  A crash then leaves a row in
 * state 'sent' that the next worker marks 'unknown', counted at its
 * estimate, instead of a request nobody knows was made.
 *
 * The SQL that records answers writes ledger rows as it always has; a
 * trigger (tvdb._usage_answered) makes such a row complete the request's
 * own pre-send row instead.  It finds that row here: among the works whose
 * answers are being recorded now, the one being recorded (when the
 * dispatcher records one at a time), else by service, operation and job.
 */
#include "worker/ledger.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/uuid.h"

PG_FUNCTION_INFO_V1(tvdb_sent_requests);

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
	if (tvdb_spi_run("SELECT tvdb._request_sent($1, $2, $3, $4, $5, $6, $7, $8)",
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
 * tvdb._sent_requests(service text, operation text, job uuid, job_ids uuid[])
 * RETURNS bigint[]: the pre-send rows a ledger row being written may
 * complete, the likeliest first; none outside the worker's recording.
 */
Datum
tvdb_sent_requests(PG_FUNCTION_ARGS)
{
	char	   *service = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *operation = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *job = PG_ARGISNULL(2) ? NULL : DatumGetCString(DirectFunctionCall1(uuid_out, PG_GETARG_DATUM(2)));
	Datum	   *uuids = NULL;
	char	  **job_ids = NULL;
	int			njob_ids = 0;
	Datum	   *ids = palloc(sizeof(Datum) * (list_length(recording) + 1));
	int			n = 0;
	ListCell   *lc;

	if (recording == NIL && current == NULL)
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(INT8OID));
	if (!PG_ARGISNULL(3))
	{
		deconstruct_array(PG_GETARG_ARRAYTYPE_P(3), UUIDOID, UUID_LEN, false, TYPALIGN_CHAR,
						  &uuids, NULL, &njob_ids);
		job_ids = palloc(sizeof(char *) * Max(njob_ids, 1));
		for (int i = 0; i < njob_ids; i++)
			job_ids[i] = DatumGetCString(DirectFunctionCall1(uuid_out, uuids[i]));
	}
	if (current != NULL && matches(current, service, operation, job, job_ids, njob_ids))
		ids[n++] = Int64GetDatum(current->usage_id);
	foreach(lc, recording)
	{
		TvdbWork   *w = lfirst(lc);

		if (w != current && matches(w, service, operation, job, job_ids, njob_ids))
			ids[n++] = Int64GetDatum(w->usage_id);
	}
	PG_RETURN_ARRAYTYPE_P(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}
