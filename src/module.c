/*
 * module.c — the extension's entry point: module magic and _PG_init.  The
 * library works both when preloaded (shared_preload_libraries, which the
 * background workers need) and when loaded on first use.
 */
#include "tvdb.h"

#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(tvdb_version);

void		_PG_init(void);

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
		tvdb_wakeup_init();
		tvdb_circuit_init();
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
