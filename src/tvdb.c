/*
 * tvdb.c — the extension's entry point: module magic, _PG_init and the GUCs.
 * The library works both when preloaded (shared_preload_libraries, which the
 * background worker will need) and when loaded on first use.
 */
#include "tvdb.h"
#include "worker.h"

#include "miscadmin.h"

#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(tvdb_version);

int			tvdb_max_upload_bytes = 64 * 1024 * 1024;
char	   *tvdb_webhook_secrets = NULL;
int			tvdb_webhook_tolerance = 300;
int			tvdb_webhook_max_bytes = 10 * 1024 * 1024;

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

	/*
	 * Superuser-only to set and to read: an application role sees neither
	 * SHOW nor pg_settings values.  Reloadable from postgresql.conf.
	 */
	DefineCustomStringVariable("tvdb.webhook_secrets",
							   "Comma-separated secrets that webhook signatures are checked against.",
							   "Several may be active at once (rotation); \"whsec_\" secrets are base64-decoded.",
							   &tvdb_webhook_secrets,
							   "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("tvdb.webhook_tolerance",
							"How far a Standard Webhooks timestamp may be from now.",
							"In either direction; 0 disables the check.",
							&tvdb_webhook_tolerance,
							300, 0, 7 * 24 * 3600,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("tvdb.webhook_max_bytes",
							"Largest webhook body tvdb.handle_llamaparse_webhook() reads.",
							"Larger bodies are answered 413 before any parsing.",
							&tvdb_webhook_max_bytes,
							10 * 1024 * 1024, 1, MaxAllocSize - VARHDRSZ,
							PGC_SUSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	tvdb_define_worker_settings();
	MarkGUCPrefixReserved("tvdb");

	/* The workers and their wake-up need shared memory: only when preloaded. */
	if (process_shared_preload_libraries_in_progress)
	{
		tvdb_wakeup_init();
		tvdb_register_workers();
	}
}

/* tvdb.version(): the library's version, to compare with the SQL's. */
Datum
tvdb_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(TVDB_VERSION));
}
