/*
 * xact.c — the worker's short transactions: one per unit of work, or one per
 * batch of answers with a subtransaction each.  Each reports its activity,
 * and after each commit the worker's table statistics go to the cumulative
 * statistics system, so autovacuum hears of what the worker changed.
 */
#include "worker/xact.h"

#include "access/xact.h"
#include "pgstat.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"

static bool in_batch = false;

static void
begin(const char *what)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, what);
}

static void
committed(void)
{
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

bool
tvdb_in_xact(const char *what, void (*fn) (void *), void *arg, ErrorData **err)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	bool		sub = in_batch;
	volatile bool ok = true;

	if (sub)
		BeginInternalSubTransaction(NULL);
	else
		begin(what);
	PG_TRY();
	{
		tvdb_spi_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		fn(arg);
		tvdb_spi_finish();
		PopActiveSnapshot();
		if (sub)
			ReleaseCurrentSubTransaction();
		else
		{
			CommitTransactionCommand();
			committed();
		}
	}
	PG_CATCH();
	{
		ErrorData  *e;

		MemoryContextSwitchTo(oldcxt);
		e = CopyErrorData();
		EmitErrorReport();
		FlushErrorState();
		if (sub)
			RollbackAndReleaseCurrentSubTransaction();
		else
		{
			AbortCurrentTransaction();
			pgstat_report_activity(STATE_IDLE, NULL);
		}
		if (err)
			*err = e;
		else
			FreeErrorData(e);
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
	return ok;
}

/*
 * The answers that arrive together are recorded in one transaction (one
 * subtransaction each): a commit per answer was most of the worker's time.
 */
void
tvdb_batch_begin(const char *what)
{
	Assert(!in_batch);
	begin(what);
	in_batch = true;
}

bool
tvdb_batch_end(void)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	volatile bool ok = true;

	in_batch = false;
	PG_TRY();
	{
		CommitTransactionCommand();
		committed();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		pgstat_report_activity(STATE_IDLE, NULL);
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	return ok;
}
