/*
 * query_ledger.c — a query's request is in the usage ledger before it is
 * sent, committed on its own, as the worker's requests are: a short-lived
 * background worker checks the budgets (under their lock, as the workers
 * do) and writes the row in state 'sent' at its estimate, in a transaction
 * of its own; the caller then sends the request and settles the row in its
 * own transaction.  A caller that rolls back, is cancelled or dies leaves
 * the row 'sent', held at its estimate, until tvdb._requests_lost() finds
 * its session gone and marks it 'unknown': what a question may have cost is
 * never lost with the caller's transaction.
 *
 * Without a free background worker slot the row is written in the caller's
 * transaction instead, the budgets read without their lock (an
 * application's transaction may stay open long after its question, and
 * must not hold up the workers).
 */
#include "tvdb.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"

PGDLLEXPORT void tvdb_query_ledger_main(Datum arg);

typedef struct LedgerTask
{
	Oid			database;
	double		estimate;
	char		model[256];
	char		owner[256];
	int64		usage_id;		/* out: the row, 0 if refused */
	char		refusal[1024];	/* out: why a budget has no room */
	bool		done;			/* out: the worker committed */
} LedgerTask;

/* Reserve in the caller's transaction; usage_id 0 and *refusal set when refused. */
static int64
reserve_here(double estimate, const char *model, const char *owner, char **refusal)
{
	static const Oid types[4] = {FLOAT8OID, TEXTOID, TEXTOID, BOOLOID};
	Datum		values[4] = {Float8GetDatum(estimate), CStringGetTextDatum(model),
	CStringGetTextDatum(owner), BoolGetDatum(false)};
	bool		isnull;
	Datum		id;

	tvdb_spi_run("SELECT usage_id, refusal FROM tvdb._query_reserve($1::numeric, $2, $3, $4)",
				 4, types, values, NULL, SPI_OK_SELECT);
	*refusal = tvdb_spi_text(0, 2);
	id = tvdb_spi_datum(0, 1, &isnull);
	return isnull ? 0 : DatumGetInt64(id);
}

/*
 * The query's ledger row, committed before its request goes (see above);
 * 0 with *refusal set when a budget has no room.
 */
int64
tvdb_query_reserve(double estimate, const char *model, const char *owner, char **refusal)
{
	dsm_segment *seg;
	LedgerTask *t;
	BackgroundWorker w = {0};
	BackgroundWorkerHandle *handle;
	int64		id;

	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("a standby cannot record what a query's embedding costs"),
				 errhint("Embed the question on the primary and search here with the vector: tvdb.search(vector, ...).")));
	seg = dsm_create(sizeof(LedgerTask), 0);
	t = dsm_segment_address(seg);
	memset(t, 0, sizeof(LedgerTask));
	t->database = MyDatabaseId;
	t->estimate = estimate;
	strlcpy(t->model, model, sizeof(t->model));
	strlcpy(t->owner, owner, sizeof(t->owner));

	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(w.bgw_library_name, BGW_MAXLEN, "tvdb");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "tvdb_query_ledger_main");
	snprintf(w.bgw_name, BGW_MAXLEN, "tvdb ledger for pid %d", MyProcPid);
	snprintf(w.bgw_type, BGW_MAXLEN, "tvdb ledger");
	w.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	w.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&w, &handle))
	{
		dsm_detach(seg);
		ereport(DEBUG1,
				(errmsg("no background worker slot for the query's ledger row: it is written in this transaction")));
		return reserve_here(estimate, model, owner, refusal);
	}
	if (WaitForBackgroundWorkerShutdown(handle) != BGWH_STOPPED)
		ereport(ERROR,
				(errcode(ERRCODE_ADMIN_SHUTDOWN),
				 errmsg("the server is shutting down: the query was not embedded")));
	if (!t->done)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("the query's request could not be written to the usage ledger"),
				 errhint("The server log says why; nothing was sent.")));
	id = t->usage_id;
	*refusal = t->refusal[0] ? pstrdup(t->refusal) : NULL;
	dsm_detach(seg);
	return id;
}

/* The worker: reserve and write the row, commit, say so. */
void
tvdb_query_ledger_main(Datum arg)
{
	dsm_segment *seg;
	LedgerTask *t;
	static const Oid types[4] = {FLOAT8OID, TEXTOID, TEXTOID, BOOLOID};
	Datum		values[4];
	bool		isnull;
	Datum		id;
	char	   *refusal;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	seg = dsm_attach(DatumGetUInt32(arg));
	if (seg == NULL)
		proc_exit(0);			/* the caller is gone: nothing to write */
	t = dsm_segment_address(seg);
	BackgroundWorkerInitializeConnectionByOid(t->database, InvalidOid, 0);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "tvdb: a query's ledger row");
	tvdb_spi_connect();
	values[0] = Float8GetDatum(t->estimate);
	values[1] = CStringGetTextDatum(t->model);
	values[2] = CStringGetTextDatum(t->owner);
	values[3] = BoolGetDatum(true);
	tvdb_spi_run("SELECT usage_id, refusal FROM tvdb._query_reserve($1::numeric, $2, $3, $4)",
				 4, types, values, NULL, SPI_OK_SELECT);
	id = tvdb_spi_datum(0, 1, &isnull);
	t->usage_id = isnull ? 0 : DatumGetInt64(id);
	refusal = tvdb_spi_text(0, 2);
	if (refusal != NULL)
		strlcpy(t->refusal, refusal, sizeof(t->refusal));
	tvdb_spi_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	t->done = true;
	dsm_detach(seg);
	proc_exit(0);
}
