/*
 * events.c — the AFTER trigger on upload_pipeline.upload_jobs that writes
 * exactly one row to upload_pipeline.events for every accepted status change
 * (and for a job's creation), and queues a NOTIFY on channel tvdb_jobs that
 * PostgreSQL delivers only if the transaction commits.
 *
 * It looks the edge up again rather than trusting the BEFORE trigger: a
 * user trigger firing after ours could have changed the status.
 */
#include "tvdb.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

PG_FUNCTION_INFO_V1(tvdb_record_event);

#define NOTIFY_CHANNEL "tvdb_jobs"

#define INSERT_NARGS 11

static const Oid insert_types[INSERT_NARGS] = {UUIDOID, UUIDOID, TEXTOID, TEXTOID, TEXTOID,
	JSONBOID, UUIDOID, TEXTOID, TEXTOID, INTERVALOID, INT4OID};

static TvdbStatus
column_status(TriggerData *td, HeapTuple tuple)
{
	bool		isnull;
	Datum		d = tvdb_trigger_value(td, tuple, "status", &isnull);

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("job status must not be null"),
				 errdetail("Every job is in exactly one status.")));
	return tvdb_status_parse(TextDatumGetCString(d));
}

/*
 * AFTER INSERT OR UPDATE ... FOR EACH ROW (the UPDATE trigger is declared
 * WHEN (OLD.status IS DISTINCT FROM NEW.status), so it is not even queued
 * for other updates).
 */
Datum
tvdb_record_event(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	HeapTuple	newtuple;
	TvdbStatus	from = TVDB_NO_STATUS;
	TvdbStatus	to;
	const TvdbEdge *edge;
	Datum		args[INSERT_NARGS];
	char		nulls[INSERT_NARGS];
	bool		isnull;
	Datum		job_id;
	char	   *notify_payload;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) ||
		TRIGGER_FIRED_BY_DELETE(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("tvdb_record_event() must be fired AFTER INSERT OR UPDATE FOR EACH ROW")));

	if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		newtuple = td->tg_newtuple;
		from = column_status(td, td->tg_trigtuple);
	}
	else if (tvdb_restoring())
		return PointerGetDatum(NULL);	/* its events are restored with it */
	else
		newtuple = td->tg_trigtuple;
	to = column_status(td, newtuple);
	if (from == to)
		return PointerGetDatum(NULL);

	edge = tvdb_edge_lookup(from, to);
	if (edge == NULL)
		tvdb_report_invalid_transition(from, to);

	memset(nulls, ' ', sizeof(nulls));
	job_id = tvdb_trigger_value(td, newtuple, "job_id", &isnull);
	args[0] = job_id;
	nulls[0] = isnull ? 'n' : ' ';
	args[1] = tvdb_trigger_value(td, newtuple, "document_id", &isnull);
	nulls[1] = isnull ? 'n' : ' ';
	args[2] = CStringGetTextDatum(edge->type);
	args[3] = CStringGetTextDatum(edge->severity);
	args[4] = CStringGetTextDatum(edge->code);
	args[5] = isnull ? (Datum) 0 : tvdb_pending_detail(job_id);
	if (args[5] == (Datum) 0)
		args[5] = DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
	args[6] = tvdb_trigger_value(td, newtuple, "correlation_id", &isnull);
	nulls[6] = isnull ? 'n' : ' ';
	if (from == TVDB_NO_STATUS)
	{
		nulls[7] = 'n';
		nulls[9] = 'n';
	}
	else
	{
		bool		since_null;
		Datum		since = tvdb_trigger_value(td, td->tg_trigtuple, "status_changed_at", &since_null);
		Datum		until = tvdb_trigger_value(td, newtuple, "status_changed_at", &isnull);

		args[7] = CStringGetTextDatum(tvdb_status_name(from));
		if (since_null || isnull)
			nulls[9] = 'n';
		else
			args[9] = DirectFunctionCall2(timestamp_mi, until, since);
	}
	args[8] = CStringGetTextDatum(tvdb_status_name(to));
	args[10] = tvdb_trigger_value(td, newtuple, "attempts", &isnull);
	nulls[10] = isnull ? 'n' : ' ';

	tvdb_spi_connect();
	tvdb_spi_run("INSERT INTO upload_pipeline.events "
				 "(job_id, document_id, type, severity, code, payload, "
				 " correlation_id, ts, from_status, to_status, in_previous_state, attempt) "
				 "VALUES ($1, $2, $3, $4, $5, $6, $7, now(), $8, $9, $10, $11)",
				 INSERT_NARGS, insert_types, args, nulls, SPI_OK_INSERT);
	tvdb_spi_finish();

	notify_payload = psprintf("{\"job_id\": \"%s\", \"status\": \"%s\"}",
							  DatumGetCString(DirectFunctionCall1(uuid_out, job_id)),
							  tvdb_status_name(to));
	Async_Notify(NOTIFY_CHANNEL, notify_payload);
	tvdb_wakeup_on_commit();

	return PointerGetDatum(NULL);
}
