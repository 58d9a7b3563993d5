/*
 * tvdb.c — the extension's entry point: module magic, _PG_init and the GUCs.
 * The library works both when preloaded (shared_preload_libraries, which the
 * background worker will need) and when loaded on first use.
 */
#include "tvdb.h"

#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(tvdb_version);

int			tvdb_max_upload_bytes = 64 * 1024 * 1024;

void		_PG_init(void);

void
_PG_init(void)
{
	DefineCustomIntVariable("tvdb.max_upload_bytes",
							"Largest document tvdb.upload() accepts.",
							"Larger uploads are rejected before anything is written.",
							&tvdb_max_upload_bytes,
							64 * 1024 * 1024, 1, MaxAllocSize - VARHDRSZ,
							PGC_SUSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("tvdb");
}

/* tvdb.version(): the library's version, to compare with the SQL's. */
Datum
tvdb_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(TVDB_VERSION));
}
