/*
 * launcher.c — the launcher starts the workers and starts them again.  A
 * background worker connects to one database for good, so each database
 * named in tvdb.database gets tvdb.workers workers of its own: slots
 * d * tvdb.workers + k, for the d-th database.  The launcher connects to no
 * database and reads only pg_database: a listed database that does not
 * exist (or takes no connections) is logged once and looked for again every
 * few seconds, and the others are served meanwhile; a database without the
 * extension gets its workers, which wait for CREATE EXTENSION (loop.c).
 *
 * The workers are dynamic and never restarted by the postmaster: the
 * launcher starts a worker that exited again, at most every
 * WORKER_RESTART_MS; after a crash the postmaster forgets them and restarts
 * the launcher, which starts them all, so a worker never runs twice.
 */
#include "tvdb.h"
#include "worker/launcher.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PGDLLEXPORT void tvdb_launcher_main(Datum arg);

#define WORKER_RESTART_MS 5000	/* least time between two starts of a slot */
#define LOOK_AGAIN_MS 5000 		/* for a database that is not there yet */

typedef struct Slot
{
	BackgroundWorkerHandle *handle; /* NULL: not started by this launcher */
	TimestampTz start_after;
} Slot;

/* tvdb.workers for each listed database (wakeup.c sizes its registry by it). */
int
tvdb_worker_slots(void)
{
	return list_length(tvdb_database_list()) * tvdb_workers;
}

static void
fill_worker(BackgroundWorker *w, const char *function)
{
	memset(w, 0, sizeof(*w));
	w->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w->bgw_start_time = BgWorkerStart_RecoveryFinished;
	snprintf(w->bgw_library_name, BGW_MAXLEN, "tvdb");
	snprintf(w->bgw_function_name, BGW_MAXLEN, "%s", function);
}

/* From _PG_init when preloaded: the launcher, if any worker is wanted. */
void
tvdb_register_workers(void)
{
	BackgroundWorker w;

	if (tvdb_worker_slots() == 0)
		return;
	fill_worker(&w, "tvdb_launcher_main");
	w.bgw_restart_time = 5;
	snprintf(w.bgw_name, BGW_MAXLEN, "tvdb launcher");
	snprintf(w.bgw_type, BGW_MAXLEN, "tvdb launcher");
	RegisterBackgroundWorker(&w);
}

/*
 * The database's oid, or InvalidOid when it does not exist or takes no
 * connections; said once until it is found.
 */
static Oid
find_database(const char *name, bool *said)
{
	Oid			db;
	bool		allowed = false;

	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	/* a scan, as the autovacuum launcher does: without a database no index can be read */
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	db = InvalidOid;
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database f = (Form_pg_database) GETSTRUCT(tup);

		if (strcmp(NameStr(f->datname), name) == 0)
		{
			db = f->oid;
			allowed = f->datallowconn;
			break;
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	if (OidIsValid(db) && allowed)
	{
		*said = false;
		return db;
	}
	if (!*said)
	{
		if (OidIsValid(db))
			ereport(LOG,
					(errmsg("tvdb: database \"%s\" in tvdb.database does not accept connections: its workers wait", name)));
		else
			ereport(LOG,
					(errmsg("tvdb: database \"%s\" in tvdb.database does not exist: its workers start when it is created", name)));
	}
	*said = true;
	return InvalidOid;
}

/* Start the worker of one slot; false when no background worker slot is free. */
static bool
start_worker(int slot, Oid db, const char *name, Slot *s)
{
	BackgroundWorker w;
	TvdbWorkerTarget target;
	MemoryContext old;
	bool		started;

	fill_worker(&w, "tvdb_worker_main");
	w.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(w.bgw_name, BGW_MAXLEN, "tvdb worker %d (%s)", slot, name);
	snprintf(w.bgw_type, BGW_MAXLEN, "tvdb worker");
	w.bgw_main_arg = Int32GetDatum(slot);
	w.bgw_notify_pid = MyProcPid;	/* its exit sets our latch */
	memset(&target, 0, sizeof(target));
	target.database = db;
	strlcpy(target.name, name, NAMEDATALEN);
	memcpy(w.bgw_extra, &target, sizeof(target));
	old = MemoryContextSwitchTo(TopMemoryContext);
	started = RegisterDynamicBackgroundWorker(&w, &s->handle);
	MemoryContextSwitchTo(old);
	if (!started)
		s->handle = NULL;
	return started;
}

void
tvdb_launcher_main(Datum arg)
{
	List	   *names;
	int			ndb;
	Slot	   *slots;
	bool	   *said;
	bool		said_full = false;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("tvdb launcher");
	MemoryContextSwitchTo(TopMemoryContext);
	names = tvdb_database_list();
	ndb = list_length(names);
	slots = palloc0(sizeof(Slot) * tvdb_worker_slots());
	said = palloc0(sizeof(bool) * ndb);

	for (;;)
	{
		long		timeout = LOOK_AGAIN_MS;
		TimestampTz now = GetCurrentTimestamp();
		bool		full = false;

		CHECK_FOR_INTERRUPTS();
		for (int d = 0; d < ndb; d++)
		{
			const char *name = strVal(list_nth(names, d));
			Oid			db = InvalidOid;
			bool		looked = false;

			for (int k = 0; k < tvdb_workers; k++)
			{
				int			i = d * tvdb_workers + k;
				Slot	   *s = &slots[i];
				pid_t		pid;
				long		secs;
				int			usecs;

				if (s->handle != NULL)
				{
					if (GetBackgroundWorkerPid(s->handle, &pid) != BGWH_STOPPED)
						continue;
					pfree(s->handle);
					s->handle = NULL;
				}
				/* a worker that outlived an earlier launcher still serves it */
				if (tvdb_wakeup_slot_taken(i))
					continue;
				if (now < s->start_after)
				{
					TimestampDifference(now, s->start_after, &secs, &usecs);
					timeout = Min(timeout, secs * 1000 + usecs / 1000 + 1);
					continue;
				}
				if (!looked)
					db = find_database(name, &said[d]);
				looked = true;
				if (!OidIsValid(db) || full)
					continue;
				if (!start_worker(i, db, name, s))
				{
					full = true;
					if (!said_full)
						ereport(WARNING,
								(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
								 errmsg("tvdb cannot start worker %d for database \"%s\": no background worker slot is free", i, name),
								 errhint("Raise max_worker_processes: tvdb needs one for its launcher and tvdb.workers (%d) for each database in tvdb.database (%d).",
										 tvdb_workers, ndb)));
					said_full = true;
					continue;
				}
				s->start_after = TimestampTzPlusMilliseconds(now, WORKER_RESTART_MS);
				said_full = false;
			}
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
