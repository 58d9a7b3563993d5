/*
 * module.c — the extension's entry point: module magic and _PG_init.  The
 * library works both when preloaded (shared_preload_libraries, which the
 * background workers need) and when loaded on first use.
 */
#include "tvdb.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(tvdb_version);

void		_PG_init(void);

static shmem_request_hook_type prev_request_hook = NULL;
static shmem_startup_hook_type prev_startup_hook = NULL;

/* One request for every part of tvdb's shared memory... */
static void
shmem_request(void)
{
	if (prev_request_hook)
		prev_request_hook();
	RequestAddinShmemSpace(add_size(tvdb_wakeup_shmem_size(), tvdb_circuit_shmem_size()));
}

/* ...and each part found or made, in every process at start. */
static void
shmem_startup(void)
{
	if (prev_startup_hook)
		prev_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	tvdb_wakeup_shmem_attach();
	tvdb_circuit_shmem_attach();
	LWLockRelease(AddinShmemInitLock);
}

void
_PG_init(void)
{
	tvdb_define_settings();
	MarkGUCPrefixReserved("tvdb");

	/*
	 * The workers and their wake-up need shared memory: only when preloaded.
	 * Under pg_upgrade the server must run nothing of its own.
	 */
	if (process_shared_preload_libraries_in_progress)
	{
		tvdb_preloaded = true;	/* backends inherit it from the postmaster */
		prev_request_hook = shmem_request_hook;
		shmem_request_hook = shmem_request;
		prev_startup_hook = shmem_startup_hook;
		shmem_startup_hook = shmem_startup;
		if (!IsBinaryUpgrade)
			tvdb_register_workers();
	}
}

/* tvdb.version(): the library's version, to compare with the SQL's. */
Datum
tvdb_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(TVDB_VERSION));
}
