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

#include "chunker.h"

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

static void
tvdb_chunk_job(void *arg)
{
	Local	   *l = arg;
	Oid			types[2] = {UUIDOID, TEXTOID};
	Datum		values[2] = {DirectFunctionCall1(uuid_in, CStringGetDatum(l->task->job)),
	CStringGetTextDatum(l->task->owner)};
	TvdbChunkOptions opt = {tvdb_chunk_target_tokens,
		Min(tvdb_chunk_overlap_tokens, tvdb_chunk_target_tokens / 2),
		8192, tvdb_chunk_bytes_per_token};
	TvdbChunkList list = {NULL, 0};
	const char *err = NULL;
	bool		isnull;
	text	   *md;

	/* parsed -> chunking is its own step, so a crash mid-way is visible */
	tvdb_exec("SELECT tvdb._advance($1, $2, 'parsed', 'chunking', '{}', true)", 2, types, values, NULL);
	tvdb_exec("SELECT b.content FROM upload_pipeline.upload_jobs j "
		 "JOIN upload_pipeline.blobs b ON b.path = j.parsed_path "
		 "WHERE j.job_id = $1 AND j.lease_owner = $2 AND j.status = 'chunking'",
		 2, types, values, NULL);
	if (SPI_processed != 1)
	{
		l->outcome = "lost";
		return;
	}
	md = DatumGetTextPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (tvdb_chunk_markdown(VARDATA_ANY(md), VARSIZE_ANY_EXHDR(md), &opt, &list, &err) != 0)
	{
		Datum		v3[3] = {values[0], values[1],
		CStringGetTextDatum(psprintf("chunker: %s", err ? err : "failed"))};
		Oid			t3[3] = {UUIDOID, TEXTOID, TEXTOID};

		tvdb_exec("SELECT tvdb._advance($1, $2, 'chunking', 'failed_chunking', jsonb_build_object('error', $3::text))",
			 3, t3, v3, NULL);
		l->outcome = "failed";
		return;
	}
	PG_TRY();
	{
		Oid			it[5] = {UUIDOID, INT4OID, TEXTOID, INT4OID, TEXTARRAYOID};

		tvdb_exec("SELECT tvdb._clear_chunks($1)", 1, types, values, NULL);
		for (int i = 0; i < list.n; i++)
		{
			TvdbChunk  *ch = &list.chunks[i];
			Datum	   *heads = palloc(sizeof(Datum) * Max(ch->n_headings, 1));
			Datum		iv[5];

			for (int h = 0; h < ch->n_headings; h++)
				heads[h] = CStringGetTextDatum(ch->heading_path[h]);
			iv[0] = values[0];
			iv[1] = Int32GetDatum(i);
			iv[2] = PointerGetDatum(cstring_to_text_with_len(ch->text, ch->len));
			iv[3] = Int32GetDatum(ch->token_estimate);
			iv[4] = PointerGetDatum(construct_array(heads, ch->n_headings, TEXTOID, -1, false, TYPALIGN_INT));
			tvdb_exec("INSERT INTO upload_pipeline.document_chunks "
				 "(document_id, job_id, chunk_index, content, token_estimate, sha256, heading_path) "
				 "SELECT j.document_id, j.job_id, $2, $3, $4, encode(sha256(convert_to($3, 'UTF8')), 'hex'), $5 "
				 "FROM upload_pipeline.upload_jobs j WHERE j.job_id = $1",
				 5, it, iv, NULL);
		}
	}
	PG_FINALLY();
	{
		tvdb_chunk_list_free(&list);
	}
	PG_END_TRY();
	{
		Datum		v3[3] = {values[0], values[1],
		CStringGetTextDatum(psprintf("{\"chunks\": %d}", list.n))};
		Oid			t3[3] = {UUIDOID, TEXTOID, TEXTOID};

		tvdb_exec("SELECT tvdb._advance($1, $2, 'chunking', 'chunks_stored', $3::jsonb, true)",
			 3, t3, v3, NULL);
	}
	tvdb_exec("SELECT tvdb._advance($1, $2, 'chunks_stored', 'embedding_queued')", 2, types, values, NULL);
	l->outcome = "done";
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
	n = run_local("parsed", owner, tvdb_chunk_job, "tvdb: chunking");
	more |= n == LOCAL_BATCH;
	/* only a crash leaves jobs in chunking: look for them now and then, not every pass */
	if (TimestampDifferenceExceeds(last_chunking_check, GetCurrentTimestamp(), 5000))
	{
		n = run_local("chunking", owner, tvdb_chunk_job, "tvdb: chunking");
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
		n = claim_requests("parse_queued", owner, room, "j.job_id, j.parse_job_id", tvdb_poll_row);
		room -= n;
		if (room > 0)
		{
			n = claim_requests("uploaded", owner, room,
							   "j.job_id, d.filename, d.mime_type, b.content, j.job_id, j.document_id, j.correlation_id",
							   tvdb_upload_row);
			room -= n;
		}
		/* out of room: the next finished request brings us back */
	}
	return more;
}
