/*
 * restore.c — how the status triggers recognise a restore.
 *
 * pg_dump and pg_restore load the extension's tables with COPY (or INSERT)
 * after CREATE EXTENSION has made them empty.  Jobs arrive in whatever status
 * they had, with their events following, so the triggers must neither refuse
 * a status that is not initial nor stamp times and write events of their own.
 * A restore is recognised by the session pg_dump's scripts set up — a
 * superuser, row_security off, an empty search_path — which no tvdb function
 * runs with (each pins its search_path) and no application role can reach
 * (they cannot write the tables at all).  Restored rows are still checked.
 */
#include "tvdb.h"

#include "access/htup_details.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/rls.h"
#include "utils/timestamp.h"

bool
tvdb_restoring(void)
{
	const char *path;

	if (row_security || !superuser())
		return false;
	path = GetConfigOption("search_path", true, false);
	return path != NULL && path[0] == '\0';
}

/*
 * A restored job: its status must be one the state machine knows and its
 * times in order; it keeps them, its attempts and its tries.  Its lease is
 * dropped: it named a process of the cluster that was dumped.
 */
HeapTuple
tvdb_restored_job(TriggerData *td, HeapTuple tuple, TvdbStatus status)
{
	bool		created_null,
				changed_null,
				isnull;
	Datum		created = tvdb_trigger_value(td, tuple, "created_at", &created_null);
	Datum		changed = tvdb_trigger_value(td, tuple, "status_changed_at", &changed_null);
	Datum		job = tvdb_trigger_value(td, tuple, "job_id", &isnull);
	int			cols[2];
	Datum		values[2] = {0, 0};
	bool		nulls[2] = {true, true};

	if (!created_null && !changed_null &&
		DatumGetTimestampTz(changed) < DatumGetTimestampTz(created))
		ereport(ERROR,
				(errcode(ERRCODE_TVDB_INVALID_TRANSITION),
				 errmsg("restored job %s entered status \"%s\" before it was created",
						isnull ? "?" : DatumGetCString(DirectFunctionCall1(uuid_out, job)),
						tvdb_status_name(status)),
				 errdetail("status_changed_at %s, created_at %s.",
						   timestamptz_to_str(DatumGetTimestampTz(changed)),
						   timestamptz_to_str(DatumGetTimestampTz(created))),
				 errhint("Restore from an unmodified dump of upload_pipeline.upload_jobs.")));
	cols[0] = tvdb_trigger_column(td, "lease_owner");
	cols[1] = tvdb_trigger_column(td, "lease_expires_at");
	return heap_modify_tuple_by_cols(tuple, td->tg_relation->rd_att, 2, cols, values, nulls);
}
