/*
 * wakeup.c — workers sleep on their latch and use no CPU when idle.  A
 * transaction that creates work (any status change) wakes them when it
 * commits, not before: a worker woken earlier would not see the rows yet.
 */
#include "tvdb.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/shmem.h"
#include "storage/spin.h"

typedef struct TvdbShared
{
	slock_t		mutex;
	Latch	   *latches[TVDB_MAX_WORKERS];
} TvdbShared;

static TvdbShared *shared = NULL;
static bool wake_pending = false;
static bool callback_registered = false;
/* Its share of shared memory (module.c requests and attaches it). */
Size
tvdb_wakeup_shmem_size(void)
{
	return MAXALIGN(sizeof(TvdbShared));
}

/* Called with AddinShmemInitLock held, in every process at start. */
void
tvdb_wakeup_shmem_attach(void)
{
	bool		found;

	shared = ShmemInitStruct("tvdb", sizeof(TvdbShared), &found);
	if (!found)
	{
		SpinLockInit(&shared->mutex);
		memset(shared->latches, 0, sizeof(shared->latches));
	}
}

static void
unregister(int code, Datum slot)
{
	SpinLockAcquire(&shared->mutex);
	shared->latches[DatumGetInt32(slot)] = NULL;
	SpinLockRelease(&shared->mutex);
}

void
tvdb_wakeup_register(int slot)
{
	SpinLockAcquire(&shared->mutex);
	shared->latches[slot] = MyLatch;
	SpinLockRelease(&shared->mutex);
	on_shmem_exit(unregister, Int32GetDatum(slot));
}

static void
xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
	{
		if (wake_pending && shared != NULL)
		{
			Latch	   *latches[TVDB_MAX_WORKERS];

			/* No system calls under a spinlock: copy, then set. */
			SpinLockAcquire(&shared->mutex);
			memcpy(latches, shared->latches, sizeof(latches));
			SpinLockRelease(&shared->mutex);
			for (int i = 0; i < TVDB_MAX_WORKERS; i++)
				if (latches[i] != NULL && latches[i] != MyLatch)
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
