/*
 * loop.c — the tvdb background workers: started by the launcher
 * (launcher.c), each serves one database of tvdb.database.
 * A worker's loop: claim and start what is due (dispatch.c), then wait on
 * its latch, its HTTP sockets and its timers together (http_driver.c), and
 * record the answers that came back.  Idle means asleep on the latch until
 * a commit makes work, a lease runs out or a poll falls due.  Everything a
 * pass allocates goes when the pass ends.
 */
#include "worker/dispatch.h"
#include "worker/http_driver.h"
#include "worker/launcher.h"
#include "worker/stage.h"
#include "worker/xact.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PGDLLEXPORT void tvdb_worker_main(Datum arg);

#define NOT_INSTALLED_RECHECK_MS 10000
#define MAX_SLEEP_MS 60000
#define MIN_PASS_MS 25			/* between passes that left nothing claimable */

static TimestampTz quiet_until = 0;
static bool announced = false;
static TvdbWorkerTarget target;	/* the database this worker serves */

static Oid	ready_extension = InvalidOid;	/* tvdb's oid once its version matched */
static char *waiting_version = NULL;	/* the installed version we wait to see updated */

/*
 * Is tvdb installed here at the version this library was built for?  Its SQL
 * and this library change together, so a database still at an older version
 * waits for ALTER EXTENSION tvdb UPDATE rather than being served by functions
 * it does not have.  The version is read again only when the oid changes.
 */
static bool
extension_ready(void)
{
	Oid			ext = get_extension_oid("tvdb", true);
	bool		isnull;
	char	   *version;

	if (ext == ready_extension)
		return OidIsValid(ext);
	ready_extension = InvalidOid;
	if (!OidIsValid(ext) ||
		tvdb_spi_run("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'tvdb'",
					 0, NULL, NULL, NULL, SPI_OK_SELECT) != 1)
		return false;
	version = TextDatumGetCString(tvdb_spi_datum(0, 1, &isnull));
	if (strcmp(version, TVDB_VERSION) == 0)
	{
		ready_extension = ext;
		if (waiting_version != NULL)
			pfree(waiting_version);
		waiting_version = NULL;
		return true;
	}
	if (waiting_version == NULL || strcmp(waiting_version, version) != 0)
	{
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("tvdb worker waits: database \"%s\" has tvdb %s, this library is %s",
						target.name, version, TVDB_VERSION),
				 errhint("Run ALTER EXTENSION tvdb UPDATE in that database.")));
		if (waiting_version != NULL)
			pfree(waiting_version);
		waiting_version = MemoryContextStrdup(TopMemoryContext, version);
	}
	return false;
}

/*
 * Milliseconds until the next job falls due (a poll, a backoff, an expired
 * lease), -1 when there is none, or -2 when the extension is not installed
 * (or not at this library's version).
 */
static void
next_due_fn(void *arg)
{
	long	   *ms = arg;
	bool		isnull;
	Datum		d;

	*ms = -1;
	if (!extension_ready())
	{
		*ms = -2;
		return;
	}
	if (tvdb_spi_run("SELECT ceil(tvdb._next_due_ms())::bigint", 0, NULL, NULL, NULL, SPI_OK_SELECT) != 1)
		return;
	d = tvdb_spi_datum(0, 1, &isnull);
	if (!isnull)
		*ms = Max(0, Min(DatumGetInt64(d), MAX_SLEEP_MS));
}

static long
next_due_ms(void)
{
	long		ms = -1;

	if (!tvdb_in_xact("tvdb: looking for due work", next_due_fn, &ms, NULL))
		return 1000;
	return ms;
}

/*
 * After a crash every worker is new: leases held by workers that no longer
 * exist are given back at once instead of waiting for them to expire, and
 * the requests they sent are of unknown outcome.
 */
static bool leases_released = false;

static void
release_dead_leases_fn(void *arg)
{
	if (!extension_ready())
		return;
	leases_released = true;
	tvdb_spi_run("UPDATE upload_pipeline.upload_jobs j SET lease_owner = NULL, lease_expires_at = NULL "
					 "WHERE j.lease_owner ~ '^tvdb worker [0-9]+ pid [0-9]+$' AND NOT EXISTS "
					 "(SELECT 1 FROM pg_catalog.pg_stat_activity a WHERE a.backend_type = 'tvdb worker' "
					 " AND j.lease_owner LIKE '% pid ' || a.pid)",
					 0, NULL, NULL, NULL, SPI_OK_UPDATE);
	tvdb_spi_run("SELECT tvdb._requests_lost()", 0, NULL, NULL, NULL, SPI_OK_SELECT);
}

/* Settings that disagree are named at start and after each reload. */
static void
check_settings(void)
{
	char	   *problem = tvdb_settings_disagree();

	if (problem != NULL)
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tvdb settings disagree"),
				 errdetail("%s", problem),
				 errhint("Change the settings so they agree and reload.")));
}

/* How often hybrid mode looks for mock results the real services can now redo. */
#define HYBRID_LOOK_MS 5000

static void
reprocess_mock_fn(void *arg)
{
	tvdb_spi_run("SELECT tvdb._reprocess_mock(100)", 0, NULL, NULL, NULL, SPI_OK_SELECT);
}

/*
 * Hybrid mode: documents the mock parsed or embedded while a service could
 * not be used go through again once it can (tvdb._reprocess_mock).
 */
static void
hybrid_look(void)
{
	static TimestampTz last = 0;
	TimestampTz now = GetCurrentTimestamp();

	if (tvdb_service_mode != TVDB_MODE_HYBRID || !TimestampDifferenceExceeds(last, now, HYBRID_LOOK_MS))
		return;
	last = now;
	tvdb_in_xact("tvdb: reprocessing mock results", reprocess_mock_fn, NULL, NULL);
}

/* One pass: look for due work, claim and start it; the wait's timeout. */
static long
pass(const char *owner)
{
	long		timeout = next_due_ms();

	if (timeout == -2)
	{
		if (!announced && waiting_version == NULL)
			ereport(LOG,
					(errmsg("tvdb worker waits for CREATE EXTENSION tvdb in database \"%s\"",
							target.name)));
		announced = true;
		return NOT_INSTALLED_RECHECK_MS;
	}
	announced = false;
	if (!leases_released)
		tvdb_in_xact("tvdb: releasing dead workers' leases", release_dead_leases_fn, NULL, NULL);
	hybrid_look();
	if (tvdb_service_mode == TVDB_MODE_HYBRID && (timeout < 0 || timeout > HYBRID_LOOK_MS))
		timeout = HYBRID_LOOK_MS;
	if (timeout != 0)
		return timeout;
	if (tvdb_dispatch(owner))
		return 0;
	timeout = next_due_ms();
	/* due but not claimable now (no room, no keys): wait for progress */
	if (timeout == 0)
		timeout = tvdb_http_inflight() > 0 ? -1 : 1000;
	return timeout;
}

void
tvdb_worker_main(Datum arg)
{
	int			slot = DatumGetInt32(arg);
	char	   *owner;
	MemoryContext pass_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	memcpy(&target, MyBgworkerEntry->bgw_extra, sizeof(target));
	BackgroundWorkerInitializeConnectionByOid(target.database, InvalidOid, 0);
	pgstat_report_appname("tvdb worker");
	tvdb_wakeup_register(slot);
	tvdb_http_init();
	tvdb_dispatch_init();
	/* the worker's SQL functions rely on this instead of SET clauses of their own */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	owner = MemoryContextStrdup(TopMemoryContext, psprintf("tvdb worker %d pid %d", slot, MyProcPid));
	check_settings();
	pass_cxt = AllocSetContextCreate(TopMemoryContext, "tvdb worker pass", ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		long		timeout;
		long		secs;
		int			usecs;
		List	   *finished;
		bool		latch = true;

		MemoryContextSwitchTo(pass_cxt);
		MemoryContextReset(pass_cxt);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			check_settings();
			tvdb_config_reloaded();
			tvdb_dispatch_alerts();
		}

		/*
		 * Every commit that changes a status sets our latch.  Under a stream
		 * of them, look for work at most every MIN_PASS_MS, and do not even
		 * wake for them in between (SIGTERM waits that long too); answers to
		 * requests in flight are still handled at once inside the wait.
		 */
		TimestampDifference(GetCurrentTimestamp(), quiet_until, &secs, &usecs);
		if (secs > 0 || usecs > 0)
		{
			timeout = secs * 1000 + (usecs + 999) / 1000;
			latch = false;
		}
		else
		{
			timeout = pass(owner);
			if (timeout == 0)
				continue;
			quiet_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), MIN_PASS_MS);
		}
		finished = tvdb_http_wait(timeout, latch);
		if (finished != NIL)
			tvdb_record_answers(finished);
	}
}
