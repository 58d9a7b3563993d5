/*
 * wakeup.c — workers sleep on their latch and use no CPU when idle.  A
 * transaction that creates work (any status change) wakes them when it
 * commits, not before: a worker woken earlier would not see the rows yet.
 * Only the workers serving the committing database are woken.
 */
#include "tvdb.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/memutils.h"

/*
 * One entry per worker slot (tvdb.workers for each database in
 * tvdb.database): the worker's database, latch and pid, while it runs.
 */
typedef struct WorkerSlot
{
	Oid			database;
	Latch	   *latch;
	pid_t		pid;
} WorkerSlot;

typedef struct TvdbShared
{
	slock_t		mutex;
	int			nslots;
	WorkerSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} TvdbShared;

static TvdbShared *shared = NULL;
static bool wake_pending = false;
static bool callback_registered = false;
/* Its share of shared memory (module.c requests and attaches it). */
Size
tvdb_wakeup_shmem_size(void)
{
	return MAXALIGN(add_size(offsetof(TvdbShared, slots),
							 mul_size(sizeof(WorkerSlot), tvdb_worker_slots())));
}

/* Called with AddinShmemInitLock held, in every process at start. */
void
tvdb_wakeup_shmem_attach(void)
{
	bool		found;

	shared = ShmemInitStruct("tvdb", tvdb_wakeup_shmem_size(), &found);
	if (!found)
	{
		SpinLockInit(&shared->mutex);
		shared->nslots = tvdb_worker_slots();
		memset(shared->slots, 0, sizeof(WorkerSlot) * shared->nslots);
	}
}

static void
unregister(int code, Datum slot)
{
	SpinLockAcquire(&shared->mutex);
	memset(&shared->slots[DatumGetInt32(slot)], 0, sizeof(WorkerSlot));
	SpinLockRelease(&shared->mutex);
}

/*
 * A worker takes its slot, or exits when another worker still holds it (a
 * launcher restarted alone may start a slot whose worker outlived the
 * previous launcher): two workers must never share an owner name.
 */
void
tvdb_wakeup_register(int slot)
{
	pid_t		holder;

	SpinLockAcquire(&shared->mutex);
	holder = shared->slots[slot].pid;
	if (holder == 0)
	{
		shared->slots[slot].database = MyDatabaseId;
		shared->slots[slot].latch = MyLatch;
		shared->slots[slot].pid = MyProcPid;
	}
	SpinLockRelease(&shared->mutex);
	if (holder != 0)
	{
		ereport(LOG, (errmsg("tvdb worker %d is already running (pid %d): this one exits", slot, (int) holder)));
		proc_exit(0);
	}
	on_shmem_exit(unregister, Int32GetDatum(slot));
}

/* Is a worker running in this slot? */
bool
tvdb_wakeup_slot_taken(int slot)
{
	bool		taken;

	SpinLockAcquire(&shared->mutex);
	taken = shared->slots[slot].pid != 0;
	SpinLockRelease(&shared->mutex);
	return taken;
}

static void
xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
	{
		if (wake_pending && shared != NULL)
		{
			static Latch **latches = NULL;
			int			n = 0;

			if (latches == NULL)
				latches = MemoryContextAlloc(TopMemoryContext, sizeof(Latch *) * Max(shared->nslots, 1));

			/*
			 * Only the workers of this database: the work is in its tables.
			 * No system calls under a spinlock: copy, then set.
			 */
			SpinLockAcquire(&shared->mutex);
			for (int i = 0; i < shared->nslots; i++)
				if (shared->slots[i].latch != NULL && shared->slots[i].database == MyDatabaseId &&
					shared->slots[i].latch != MyLatch)
					latches[n++] = shared->slots[i].latch;
			SpinLockRelease(&shared->mutex);
			for (int i = 0; i < n; i++)
				SetLatch(latches[i]);
		}
		wake_pending = false;
	}
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		wake_pending = false;
}

/* A status changed in this transaction: wake the workers if it commits. */
void
tvdb_wakeup_on_commit(void)
{
	if (shared == NULL)
		return;
	if (!callback_registered)
	{
		RegisterXactCallback(xact_callback, NULL);
		callback_registered = true;
	}
	wake_pending = true;
}

PG_FUNCTION_INFO_V1(tvdb_wake_workers);

/* tvdb._wake_workers(): wake the workers when this transaction commits. */
Datum
tvdb_wake_workers(PG_FUNCTION_ARGS)
{
	tvdb_wakeup_on_commit();
	PG_RETURN_VOID();
}
