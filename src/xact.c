/*
 * xact.c — the worker's short transactions: one per unit of work, or one
 * per batch of answers with a subtransaction each; statements prepared once.
 */
#include "stages.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "chunker.h"

void
tvdb_begin_xact(const char *what)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, what);
}

void
tvdb_commit_xact(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Run fn(arg) in its own transaction, or, while a batch of answers is being
 * recorded (tvdb_answers_begin), in its own subtransaction of the batch's.
 * An error is logged and rolled back and false returned: one bad answer
 * must not stop the worker or undo the others.
 */
static bool in_batch = false;

bool
tvdb_in_xact(const char *what, void (*fn) (void *), void *arg)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	bool		sub = in_batch;
	volatile bool ok = true;

	if (sub)
		BeginInternalSubTransaction(NULL);
	PG_TRY();
	{
		if (sub)
		{
			if (SPI_connect() != SPI_OK_CONNECT)
				elog(ERROR, "SPI_connect failed");
			PushActiveSnapshot(GetTransactionSnapshot());
			fn(arg);
			SPI_finish();
			PopActiveSnapshot();
			ReleaseCurrentSubTransaction();
		}
		else
		{
			tvdb_begin_xact(what);
			fn(arg);
			tvdb_commit_xact();
		}
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		EmitErrorReport();
		FlushErrorState();
		if (sub)
			RollbackAndReleaseCurrentSubTransaction();
		else
		{
			AbortCurrentTransaction();
			pgstat_report_activity(STATE_IDLE, NULL);
		}
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
tvdb_answers_begin(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, "tvdb: recording answers");
	in_batch = true;
}

void
tvdb_answers_end(void)
{
	MemoryContext oldcxt = CurrentMemoryContext;

	tvdb_flush_answers();
	in_batch = false;
	PG_TRY();
	{
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		/* the jobs keep their leases and are taken up again when they lapse */
		MemoryContextSwitchTo(oldcxt);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Run a statement of the worker's.  Each distinct statement is prepared once
 * and kept: the worker runs the same few thousands of times.
 */
typedef struct Prepared
{
	char	   *sql;
	SPIPlanPtr	plan;
} Prepared;

static Prepared prepared[64];
static int	n_prepared = 0;

int
tvdb_exec(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls)
{
	SPIPlanPtr	plan = NULL;
	int			rc;

	for (int i = 0; i < n_prepared && plan == NULL; i++)
		if (strcmp(prepared[i].sql, sql) == 0)
			plan = prepared[i].plan;
	if (plan == NULL)
	{
		plan = SPI_prepare(sql, nargs, types);
		if (plan == NULL)
			elog(ERROR, "tvdb worker could not prepare (%s): %s",
				 SPI_result_code_string(SPI_result), sql);
		if (n_prepared < (int) lengthof(prepared))
		{
			SPI_keepplan(plan);
			prepared[n_prepared].sql = MemoryContextStrdup(TopMemoryContext, sql);
			prepared[n_prepared].plan = plan;
			n_prepared++;
		}
	}
	rc = SPI_execute_plan(plan, values, nulls, false, 0);
	if (rc < 0)
		elog(ERROR, "tvdb worker query failed (%s): %s", SPI_result_code_string(rc), sql);
	return rc;
}

char *
tvdb_col_text(int row, int col)
{
	char	   *v = SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);

	return v ? MemoryContextStrdup(TopMemoryContext, v) : NULL;
}

/* A text answer of the first row, first column. */
char *
tvdb_scalar_text(void)
{
	if (SPI_processed < 1)
		return NULL;
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/* The body as text, or NULL (with a failure) when it is not valid UTF-8. */
char *
tvdb_body_text(TvdbHttp *req, const char **failure)
{
	if (req->body == NULL)
		return NULL;
	if (strlen(req->body) != req->body_len ||
		!pg_verifymbstr(req->body, req->body_len, true))
	{
		*failure = "response body is not valid UTF-8 text";
		return NULL;
	}
	return req->body;
}

/*
 * The arguments every answer-recording SQL function takes, in this order:
 * http_status, body (NULL if not UTF-8 text), latency_ms, failure (why no
 * usable answer came), retry_after_ms.
 */
void
tvdb_answer_args(TvdbHttp *req, Oid *types, Datum *values, char *nulls)
{
	const char *failure = tvdb_http_failure(req);
	char	   *body = tvdb_body_text(req, &failure);

	types[0] = INT4OID;
	values[0] = Int32GetDatum((int32) req->status);
	types[1] = TEXTOID;
	values[1] = body ? CStringGetTextDatum(body) : (Datum) 0;
	types[2] = FLOAT8OID;
	values[2] = Float8GetDatum(req->latency_ms);
	types[3] = TEXTOID;
	values[3] = failure ? CStringGetTextDatum(failure) : (Datum) 0;
	types[4] = INT8OID;
	values[4] = Int64GetDatum(req->retry_after_ms);
	nulls[0] = nulls[2] = ' ';
	nulls[1] = body ? ' ' : 'n';
	nulls[3] = failure ? ' ' : 'n';
	nulls[4] = req->retry_after_ms >= 0 ? ' ' : 'n';
}

/* A uuid[] from the text form of the ids. */
Datum
tvdb_uuid_array(char **items, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = DirectFunctionCall1(uuid_in, CStringGetDatum(items[i]));
	return PointerGetDatum(construct_array(d, n, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
}
