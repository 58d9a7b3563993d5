/*
 * stages.c — one pass of a worker: claim what is due in short transactions,
 * start the HTTP requests (or do the local work: chunking, mock stages), and
 * when requests finish record their answers in a new short transaction (a
 * subtransaction each).  No transaction is ever open while a request is in
 * flight.
 *
 * The decisions about an answer (retry, fail, move on) are SQL functions in
 * sql/install/55_stages.sql, tested without a network by sql/stages.sql.
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


/* The lease is given back with a backoff when recording itself failed. */
void
tvdb_release_after_error(void *arg)
{
	Task	   *t = arg;
	Oid			types[2] = {UUIDOID, TEXTOID};
	Datum		values[2] = {DirectFunctionCall1(uuid_in, CStringGetDatum(t->job)),
	CStringGetTextDatum(t->owner)};

	tvdb_exec("SELECT tvdb._release($1, $2, interval '30 seconds', "
		 "'the worker could not record an answer (see the server log)', 'worker')",
		 2, types, values, NULL);
}

void
tvdb_free_task(Task *t)
{
	if (t->parse_job_id)
		pfree(t->parse_job_id);
	pfree(t);
}

static void
tvdb_claim_jobs(void *arg)
{
	Claim	   *c = arg;
	Oid			types[4] = {TEXTOID, TEXTOID, INT4OID, INT4OID};
	Datum		values[4] = {CStringGetTextDatum(c->status), CStringGetTextDatum(c->owner),
	Int32GetDatum(c->n), Int32GetDatum(tvdb_lease_effective())};
	/* the document and its blob only when the columns need them (uploads) */
	bool		blob = strstr(c->select, "b.") != NULL || strstr(c->select, "d.") != NULL;
	char	   *sql = psprintf("SELECT %s FROM tvdb._claim($1, $2, $3, $4) AS c(id) "
							   "JOIN upload_pipeline.upload_jobs j ON j.job_id = c.id %s",
							   c->select,
							   blob ? "JOIN upload_pipeline.documents d ON d.document_id = j.document_id "
							   "JOIN upload_pipeline.blobs b ON b.path = d.storage_path" : "");

	tvdb_exec(sql, 4, types, values, NULL);
	c->claimed = SPI_processed;
	for (uint64 i = 0; i < SPI_processed; i++)
		c->row((int) i, c->arg);
}

Task *
tvdb_new_task(const char *owner)
{
	Task	   *t = MemoryContextAllocZero(TopMemoryContext, sizeof(Task));

	t->owner = owner;
	return t;
}

static void
tvdb_job_row(int row, void *arg)
{
	Pending    *p = arg;
	Task	   *t = tvdb_new_task(p->owner);

	strlcpy(t->job, SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 1), sizeof(t->job));
	p->tasks[p->ntasks++] = t;
}

/* Claim and start requests; the requests are created before the commit and started after it. */
static int
claim_requests(const char *status, const char *owner, int n, const char *select,
			   void (*row) (int, void *))
{
	Pending    *p = palloc0(sizeof(Pending));
	Claim		c = {status, owner, Min(n, (int) lengthof(p->reqs)), select, row, p, 0};
	int			started;

	p->owner = owner;
	if (!tvdb_in_xact("tvdb: claiming jobs", tvdb_claim_jobs, &c))
	{
		for (int i = 0; i < p->n; i++)
		{
			tvdb_free_task(p->reqs[i]->arg);
			tvdb_http_free(p->reqs[i]);
		}
		pfree(p);
		return 0;
	}
	for (int i = 0; i < p->n; i++)
		tvdb_http_start(p->reqs[i]);
	started = p->n;
	pfree(p);
	return started;
}

static int
run_local(const char *status, const char *owner, void (*fn) (void *), const char *what)
{
	Pending    *p = palloc0(sizeof(Pending));
	Claim		c = {status, owner, LOCAL_BATCH, "j.job_id", tvdb_job_row, p, 0};
	int			n;

	p->owner = owner;
	tvdb_in_xact("tvdb: claiming jobs", tvdb_claim_jobs, &c);
	for (int i = 0; i < p->ntasks; i++)
	{
		Local		l = {p->tasks[i], status, NULL};

		if (!tvdb_in_xact(what, fn, &l))
			tvdb_in_xact("tvdb: releasing a job", tvdb_release_after_error, p->tasks[i]);
		tvdb_free_task(p->tasks[i]);
	}
	n = p->ntasks;
	pfree(p);
	return n;
}

/*
 * Chunk parsed jobs, a batch in one transaction; if that fails, one job per
 * transaction, so that only the job at fault is held back (with a backoff).
 */
static int
chunk_parsed(const char *owner)
{
	ChunkBatch	c = {owner, (Datum) 0, CHUNK_BATCH, 0};

	if (tvdb_in_xact("tvdb: chunking", tvdb_chunk_batch, &c))
		return c.taken;
	return run_local("parsed", owner, tvdb_chunk_leased, "tvdb: chunking");
}

static int
claim_uploads(const char *owner, int n)
{
	if (n <= 0)
		return 0;
	return claim_requests("uploaded", owner, n,
						  "j.job_id, d.filename, d.mime_type, b.content, j.job_id, j.document_id, j.correlation_id",
						  tvdb_upload_row);
}

static bool warned_keys = false;
static TimestampTz last_chunking_check = 0;

/*
 * Claim and start what is due, within tvdb.max_inflight.  Returns true when
 * it may have left due work behind (the caller comes back at once).
 */
bool
tvdb_stages_dispatch(const char *owner)
{
	bool		mock = tvdb_service_mode == TVDB_MODE_MOCK;
	bool		can_call = mock || (tvdb_llamaparse_api_key[0] && tvdb_openai_api_key[0]);
	int			room = tvdb_max_inflight - tvdb_http_inflight();
	bool		more = false;
	int			n;

	if (!can_call && !warned_keys)
	{
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("tvdb worker is waiting: tvdb.llamaparse_api_key and tvdb.openai_api_key must be set in real mode"),
				 errhint("Set the keys, or tvdb.service_mode = 'mock' for the offline pipeline, and reload.")));
		warned_keys = true;
	}
	if (can_call)
		warned_keys = false;

	/* Downstream first: finishing documents matters more than starting new ones. */
	n = chunk_parsed(owner);
	more |= n == CHUNK_BATCH;
	/* only an older version's crash leaves jobs in chunking: look now and then, not every pass */
	if (TimestampDifferenceExceeds(last_chunking_check, GetCurrentTimestamp(), 5000))
	{
		n = run_local("chunking", owner, tvdb_chunk_leased, "tvdb: chunking");
		more |= n == LOCAL_BATCH;
		if (n < LOCAL_BATCH)
			last_chunking_check = GetCurrentTimestamp();
	}
	if (mock || (can_call && room > 0))
	{
		n = tvdb_dispatch_embeddings(owner, mock);
		room -= mock ? 0 : n;
		more |= n > 0 && mock;
	}
	if (mock)
	{
		n = run_local("uploaded", owner, tvdb_mock_parse_job, "tvdb: mock parsing");
		more |= n == LOCAL_BATCH;
	}
	else if (can_call && room > 0)
	{
		/*
		 * Uploads and polls share what is left, each sure of half: an upload
		 * starts a parse's long wait, and most polls find the parse still
		 * running, so polls must not crowd uploads out (nor the reverse).
		 */
		n = claim_uploads(owner, (room + 1) / 2);
		room -= n;
		n = claim_requests("parse_queued", owner, room, "j.job_id, j.parse_job_id", tvdb_poll_row);
		room -= n;
		if (room > 0)
			room -= claim_uploads(owner, room);
		/* out of room: the next finished request brings us back */
	}
	return more;
}
