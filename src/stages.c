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
#include "worker.h"

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

/* How many jobs one pass claims for local work (chunking, mock stages). */
#define LOCAL_BATCH 16
/* How many jobs one embedding claim takes. */
#define EMBED_JOBS 64
#define UUID_TEXT_LEN 36

typedef struct Task
{
	char		job[UUID_TEXT_LEN + 1];	/* text form of the job id */
	char	   *parse_job_id;
	const char *owner;
} Task;

static void
begin_xact(const char *what)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, what);
}

static void
commit_xact(void)
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

static bool
in_xact(const char *what, void (*fn) (void *), void *arg)
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
			begin_xact(what);
			fn(arg);
			commit_xact();
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

static int
exec(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls)
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

static char *
col_text(int row, int col)
{
	char	   *v = SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);

	return v ? MemoryContextStrdup(TopMemoryContext, v) : NULL;
}

/* A text answer of the first row, first column. */
static char *
scalar_text(void)
{
	if (SPI_processed < 1)
		return NULL;
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/* ---------- recording an HTTP answer ---------- */

typedef struct Answer
{
	TvdbHttp   *req;
	Task	   *task;
	const char *fn;				/* the SQL function deciding */
	char	   *outcome;
} Answer;

/* The body as text, or NULL (with a failure) when it is not valid UTF-8. */
static char *
body_text(TvdbHttp *req, const char **failure)
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

static void
record_answer(void *arg)
{
	Answer	   *a = arg;
	TvdbHttp   *req = a->req;
	const char *failure = tvdb_http_failure(req);
	char	   *body = body_text(req, &failure);
	Oid			types[9] = {UUIDOID, TEXTOID, INT4OID, TEXTOID, FLOAT8OID, TEXTOID, INT8OID, INT4OID, INT4OID};
	Datum		values[9];
	char		nulls[9] = "         ";
	char	   *sql;
	int			nargs = 7;

	values[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(a->task->job));
	values[1] = CStringGetTextDatum(a->task->owner);
	values[2] = Int32GetDatum((int32) req->status);
	values[3] = body ? CStringGetTextDatum(body) : (Datum) 0;
	nulls[3] = body ? ' ' : 'n';
	values[4] = Float8GetDatum(req->latency_ms);
	values[5] = failure ? CStringGetTextDatum(failure) : (Datum) 0;
	nulls[5] = failure ? ' ' : 'n';
	values[6] = Int64GetDatum(req->retry_after_ms);
	nulls[6] = req->retry_after_ms >= 0 ? ' ' : 'n';

	if (strcmp(a->fn, "_parse_submitted") == 0)
	{
		values[7] = Int32GetDatum(tvdb_poll_min_ms);
		nargs = 8;
	}
	else if (strcmp(a->fn, "_parse_polled") == 0)
	{
		values[7] = Int32GetDatum(tvdb_poll_min_ms);
		values[8] = Int32GetDatum(tvdb_poll_max_ms);
		nargs = 9;
	}
	else
	{
		types[7] = FLOAT8OID;
		values[7] = Float8GetDatum(tvdb_llamaparse_usd_per_page);
		values[8] = Int32GetDatum(tvdb_poll_min_ms);
		nargs = 9;
	}
	sql = psprintf("SELECT tvdb.%s($1, $2, $3, $4, $5, $6, $7, $8%s)", a->fn,
				   nargs == 9 ? ", $9" : "");
	exec(sql, nargs, types, values, nulls);
	a->outcome = MemoryContextStrdup(TopMemoryContext, scalar_text());
}

/* The lease is given back with a backoff when recording itself failed. */
static void
release_after_error(void *arg)
{
	Task	   *t = arg;
	Oid			types[2] = {UUIDOID, TEXTOID};
	Datum		values[2] = {DirectFunctionCall1(uuid_in, CStringGetDatum(t->job)),
	CStringGetTextDatum(t->owner)};

	exec("SELECT tvdb._release($1, $2, interval '30 seconds', "
		 "'the worker could not record an answer (see the server log)', 'worker')",
		 2, types, values, NULL);
}

static void
free_task(Task *t)
{
	if (t->parse_job_id)
		pfree(t->parse_job_id);
	pfree(t);
}

static char *
llamaparse_url(const char *path_fmt, const char *id)
{
	const char *base = tvdb_llamaparse_base_url;
	size_t		len = strlen(base);
	char	   *path = id ? psprintf(path_fmt, id) : pstrdup(path_fmt);
	char	   *url;

	while (len > 0 && base[len - 1] == '/')
		len--;
	url = psprintf("%.*s%s", (int) len, base, path);
	pfree(path);				/* outside a transaction this is TopMemoryContext */
	return url;
}

static void fetch_done(TvdbHttp *req);

static bool
record(TvdbHttp *req, const char *fn, const char *what, char **outcome)
{
	Answer		a = {req, req->arg, fn, NULL};

	if (!in_xact(what, record_answer, &a))
	{
		in_xact("tvdb: releasing a job", release_after_error, req->arg);
		return false;
	}
	*outcome = a.outcome;
	return true;
}

static void
upload_done(TvdbHttp *req)
{
	char	   *outcome;

	if (record(req, "_parse_submitted", "tvdb: recording a LlamaParse upload", &outcome))
		pfree(outcome);
	free_task(req->arg);
}

static void
start_fetch(Task *t)
{
	char	   *url = llamaparse_url("/api/v1/parsing/job/%s/result/markdown", t->parse_job_id);
	TvdbHttp   *req = tvdb_http_new(url, fetch_done, t);

	tvdb_http_bearer(req, tvdb_llamaparse_api_key);
	tvdb_http_header(req, "Accept: application/json");
	tvdb_http_start(req);
	pfree(url);
}

static void
poll_done(TvdbHttp *req)
{
	Task	   *t = req->arg;
	char	   *outcome;

	if (record(req, "_parse_polled", "tvdb: recording a LlamaParse poll", &outcome))
	{
		bool		fetch = strcmp(outcome, "fetch") == 0;

		pfree(outcome);
		if (fetch)
		{
			start_fetch(t);		/* the lease is still ours */
			return;
		}
	}
	free_task(t);
}

static void
fetch_done(TvdbHttp *req)
{
	char	   *outcome;

	if (record(req, "_parse_fetched", "tvdb: storing a LlamaParse result", &outcome))
		pfree(outcome);
	free_task(req->arg);
}

/* ---------- claiming ---------- */

typedef struct Claim
{
	const char *status;
	const char *owner;
	int			n;
	const char *select;			/* columns, from j (job), d (document), b (blob) */
	void		(*row) (int row, void *arg);
	void	   *arg;
	int			claimed;
} Claim;

static void
claim(void *arg)
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

	exec(sql, 4, types, values, NULL);
	c->claimed = SPI_processed;
	for (uint64 i = 0; i < SPI_processed; i++)
		c->row((int) i, c->arg);
}

static Task *
new_task(const char *owner)
{
	Task	   *t = MemoryContextAllocZero(TopMemoryContext, sizeof(Task));

	t->owner = owner;
	return t;
}

/* Rows of an upload claim become requests, started after the commit. */
typedef struct Pending
{
	TvdbHttp   *reqs[1024];
	int			n;
	Task	   *tasks[1024];
	int			ntasks;
	const char *owner;
} Pending;

static void
upload_row(int row, void *arg)
{
	Pending    *p = arg;
	Task	   *t = new_task(p->owner);
	char	   *job = SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 1);
	char	   *filename = SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 2);
	char	   *mime_type = SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 3);
	bool		isnull;
	bytea	   *content = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[row],
														SPI_tuptable->tupdesc, 4, &isnull));
	char	   *url = llamaparse_url("/api/v1/parsing/upload", NULL);
	TvdbHttp   *req;
	curl_mimepart *part;
	static const char *const fields[] = {"job_id", "document_id", "correlation_id"};

	strlcpy(t->job, job, sizeof(t->job));
	req = tvdb_http_new(url, upload_done, t);
	req->mime = curl_mime_init(req->easy);
	part = curl_mime_addpart(req->mime);
	curl_mime_name(part, "file");
	curl_mime_filename(part, filename);
	curl_mime_type(part, mime_type);
	curl_mime_data(part, VARDATA_ANY(content), VARSIZE_ANY_EXHDR(content));	/* copies */
	/* ids for the webhook callback to carry back */
	for (int i = 0; i < (int) lengthof(fields); i++)
	{
		part = curl_mime_addpart(req->mime);
		curl_mime_name(part, fields[i]);
		curl_mime_data(part, SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 5 + i),
					   CURL_ZERO_TERMINATED);
	}
	if (tvdb_parse_webhook_url[0] != '\0')
	{
		part = curl_mime_addpart(req->mime);
		curl_mime_name(part, "webhook_url");
		curl_mime_data(part, tvdb_parse_webhook_url, CURL_ZERO_TERMINATED);
	}
	curl_easy_setopt(req->easy, CURLOPT_MIMEPOST, req->mime);
	tvdb_http_bearer(req, tvdb_llamaparse_api_key);
	tvdb_http_header(req, "Accept: application/json");
	p->reqs[p->n++] = req;
	pfree(url);
}

static void
poll_row(int row, void *arg)
{
	Pending    *p = arg;
	Task	   *t = new_task(p->owner);
	char	   *url;

	strlcpy(t->job, SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 1), sizeof(t->job));
	t->parse_job_id = col_text(row, 2);
	url = llamaparse_url("/api/v1/parsing/job/%s", t->parse_job_id);
	p->reqs[p->n] = tvdb_http_new(url, poll_done, t);
	tvdb_http_bearer(p->reqs[p->n], tvdb_llamaparse_api_key);
	tvdb_http_header(p->reqs[p->n], "Accept: application/json");
	p->n++;
	pfree(url);
}

static void
job_row(int row, void *arg)
{
	Pending    *p = arg;
	Task	   *t = new_task(p->owner);

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
	if (!in_xact("tvdb: claiming jobs", claim, &c))
	{
		for (int i = 0; i < p->n; i++)
		{
			free_task(p->reqs[i]->arg);
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

/* ---------- local stages: chunking, mock parsing ---------- */

typedef struct Local
{
	Task	   *task;
	const char *step;
	char	   *outcome;
} Local;

static void
chunk_job(void *arg)
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
	exec("SELECT tvdb._advance($1, $2, 'parsed', 'chunking', '{}', true)", 2, types, values, NULL);
	exec("SELECT b.content FROM upload_pipeline.upload_jobs j "
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

		exec("SELECT tvdb._advance($1, $2, 'chunking', 'failed_chunking', jsonb_build_object('error', $3::text))",
			 3, t3, v3, NULL);
		l->outcome = "failed";
		return;
	}
	PG_TRY();
	{
		Oid			it[5] = {UUIDOID, INT4OID, TEXTOID, INT4OID, TEXTARRAYOID};

		exec("SELECT tvdb._clear_chunks($1)", 1, types, values, NULL);
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
			exec("INSERT INTO upload_pipeline.document_chunks "
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

		exec("SELECT tvdb._advance($1, $2, 'chunking', 'chunks_stored', $3::jsonb, true)",
			 3, t3, v3, NULL);
	}
	exec("SELECT tvdb._advance($1, $2, 'chunks_stored', 'embedding_queued')", 2, types, values, NULL);
	l->outcome = "done";
}

/* Mock: uploaded -> parse_queued -> parsed with the built-in parser. */
static void
mock_parse_job(void *arg)
{
	Local	   *l = arg;
	Oid			types[3] = {UUIDOID, TEXTOID, TEXTOID};
	Datum		values[3] = {DirectFunctionCall1(uuid_in, CStringGetDatum(l->task->job)),
	CStringGetTextDatum(l->task->owner), (Datum) 0};
	bool		isnull;
	bytea	   *content;
	char	   *filename;
	char	   *mime_type;
	char	   *md;

	exec("UPDATE upload_pipeline.upload_jobs SET parse_job_id = 'mock-' || job_id "
		 "WHERE job_id = $1 AND lease_owner = $2 AND status = 'uploaded'", 2, types, values, NULL);
	exec("SELECT tvdb._advance($1, $2, 'uploaded', 'parse_queued', "
		 "jsonb_build_object('parse_job_id', 'mock-' || $1::text), true)", 2, types, values, NULL);
	exec("SELECT b.content, d.filename, d.mime_type FROM upload_pipeline.upload_jobs j "
		 "JOIN upload_pipeline.documents d ON d.document_id = j.document_id "
		 "JOIN upload_pipeline.blobs b ON b.path = d.storage_path "
		 "WHERE j.job_id = $1 AND j.lease_owner = $2 AND j.status = 'parse_queued'",
		 2, types, values, NULL);
	if (SPI_processed != 1)
	{
		l->outcome = "lost";
		return;
	}
	content = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	filename = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	mime_type = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	md = tvdb_mock_markdown(filename, mime_type, VARDATA_ANY(content), VARSIZE_ANY_EXHDR(content));
	if (md == NULL)
	{
		values[2] = CStringGetTextDatum(psprintf("the mock parser reads text, markdown and HTML, not %s",
												 mime_type));
		exec("SELECT tvdb._record_usage('mock', 'parse', $1, NULL, 415, 0, error => $3::text)",
			 3, types, values, NULL);
		exec("SELECT tvdb._advance($1, $2, 'parse_queued', 'failed_parse', jsonb_build_object('error', $3::text))",
			 3, types, values, NULL);
		l->outcome = "failed";
		return;
	}
	values[2] = CStringGetTextDatum(md);
	exec("SELECT tvdb._record_usage('mock', 'parse', $1, NULL, 200, 0, pages => 1)", 1, types, values, NULL);
	exec("SELECT tvdb._store_parsed($1, $2, $3, '{\"via\": \"mock\"}')", 3, types, values, NULL);
	l->outcome = "done";
}

static int
run_local(const char *status, const char *owner, void (*fn) (void *), const char *what)
{
	Pending    *p = palloc0(sizeof(Pending));
	Claim		c = {status, owner, LOCAL_BATCH, "j.job_id", job_row, p, 0};
	int			n;

	p->owner = owner;
	in_xact("tvdb: claiming jobs", claim, &c);
	for (int i = 0; i < p->ntasks; i++)
	{
		Local		l = {p->tasks[i], status, NULL};

		if (!in_xact(what, fn, &l))
			in_xact("tvdb: releasing a job", release_after_error, p->tasks[i]);
		free_task(p->tasks[i]);
	}
	n = p->ntasks;
	pfree(p);
	return n;
}

/* ---------- embeddings ---------- */

typedef struct Batch
{
	const char *owner;
	int			n;
	int			cap;
	char	  **jobs;
	char	  **docs;
	int		   *chunk;
	StringInfoData input;		/* JSON array of the texts */
	size_t		bytes;
} Batch;

typedef struct EmbedClaim
{
	const char *owner;
	List	   *batches;
} EmbedClaim;

static Batch *
new_batch(const char *owner)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	Batch	   *b = palloc0(sizeof(Batch));

	b->owner = owner;
	b->cap = 64;
	b->jobs = palloc(sizeof(char *) * b->cap);
	b->docs = palloc(sizeof(char *) * b->cap);
	b->chunk = palloc(sizeof(int) * b->cap);
	initStringInfo(&b->input);
	MemoryContextSwitchTo(old);
	return b;
}

static void
free_batch(Batch *b)
{
	for (int i = 0; i < b->n; i++)
	{
		pfree(b->jobs[i]);
		pfree(b->docs[i]);
	}
	pfree(b->jobs);
	pfree(b->docs);
	pfree(b->chunk);
	pfree(b->input.data);
	pfree(b);
}

/* Append the uuids of the last result's first column to ids (n counts them). */
static Datum *
collect_ids(int *n, Datum *ids, int have)
{
	Datum	   *out = palloc(sizeof(Datum) * (have + SPI_processed + 1));

	if (have > 0)
		memcpy(out, ids, sizeof(Datum) * have);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			out[have++] = datumCopy(d, false, UUID_LEN);
	}
	*n = have;
	return out;
}

/*
 * Claim embedding jobs and cut their unembedded chunks into requests within
 * OpenAI's limits: inputs per request, and tokens per request bounded by
 * UTF-8 bytes (a token is at least one byte).
 */
static void
embed_claim(void *arg)
{
	EmbedClaim *e = arg;
	Oid			types[4] = {TEXTOID, TEXTOID, INT4OID, INT4OID};
	Datum		values[4] = {(Datum) 0, CStringGetTextDatum(e->owner),
	Int32GetDatum(EMBED_JOBS), Int32GetDatum(tvdb_lease_effective())};
	Batch	   *b = NULL;
	MemoryContext old;
	Datum	   *claimed = NULL;
	int			nclaimed = 0;
	Oid			idtype = UUIDARRAYOID;
	Datum		ids;

	/* Only the jobs claimed now: others of ours may have requests in flight. */
	values[0] = CStringGetTextDatum("embedding_queued");
	exec("SELECT c.id FROM tvdb._claim($1, $2, $3, $4) AS c(id) "
		 "WHERE tvdb._advance(c.id, $2, 'embedding_queued', 'embedding_in_progress', '{}', true)",
		 4, types, values, NULL);
	claimed = collect_ids(&nclaimed, NULL, 0);
	values[0] = CStringGetTextDatum("embedding_in_progress");
	exec("SELECT c.id FROM tvdb._claim($1, $2, $3, $4) AS c(id)", 4, types, values, NULL);
	claimed = collect_ids(&nclaimed, claimed, nclaimed);
	if (nclaimed == 0)
		return;
	ids = PointerGetDatum(construct_array(claimed, nclaimed, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
	exec("SELECT c.job_id::text, c.document_id::text, c.chunk_index, c.content "
		 "FROM upload_pipeline.document_chunks c "
		 "WHERE c.job_id = ANY($1) AND c.embedding IS NULL ORDER BY c.job_id, c.chunk_index",
		 1, &idtype, &ids, NULL);

	/* SPI values stay in the transaction; only what a batch keeps goes to TopMemoryContext */
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		char	   *content = SPI_getvalue(tup, SPI_tuptable->tupdesc, 4);
		size_t		len = strlen(content);
		bool		isnull;

		if (b != NULL && (b->n >= tvdb_embedding_batch_inputs ||
						  b->bytes + len > (size_t) tvdb_embedding_batch_tokens))
		{
			appendStringInfoChar(&b->input, ']');
			old = MemoryContextSwitchTo(TopMemoryContext);
			e->batches = lappend(e->batches, b);
			MemoryContextSwitchTo(old);
			b = NULL;
		}
		if (b == NULL)
		{
			b = new_batch(e->owner);
			appendStringInfoChar(&b->input, '[');
		}
		if (b->n == b->cap)
		{
			b->cap *= 2;
			b->jobs = repalloc(b->jobs, sizeof(char *) * b->cap);
			b->docs = repalloc(b->docs, sizeof(char *) * b->cap);
			b->chunk = repalloc(b->chunk, sizeof(int) * b->cap);
		}
		b->jobs[b->n] = col_text((int) i, 1);
		b->docs[b->n] = col_text((int) i, 2);
		b->chunk[b->n] = DatumGetInt32(SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull));
		if (b->n > 0)
			appendStringInfoChar(&b->input, ',');
		escape_json(&b->input, content);
		b->bytes += len;
		b->n++;
	}
	if (b != NULL)
	{
		appendStringInfoChar(&b->input, ']');
		old = MemoryContextSwitchTo(TopMemoryContext);
		e->batches = lappend(e->batches, b);
		MemoryContextSwitchTo(old);
	}
}

/* Jobs with no chunk left to embed (empty documents, or a crash after the last batch). */
static void
finish_claimed(void *arg)
{
	const char *owner = arg;
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(owner)};

	exec("SELECT tvdb._finish_embedding(j.job_id, $1) FROM upload_pipeline.upload_jobs j "
		 "WHERE j.lease_owner = $1 AND j.status = 'embedding_in_progress' "
		 "AND NOT EXISTS (SELECT 1 FROM upload_pipeline.document_chunks c "
		 "                WHERE c.job_id = j.job_id AND c.embedding IS NULL)",
		 1, types, values, NULL);
}

static void record_embedding_error(Batch *b, TvdbHttp *req, char *body, const char *failure);

typedef struct EmbedAnswer
{
	TvdbHttp   *req;
	Batch	   *batch;
	float	   *vectors;		/* mock mode: n * dims */
} EmbedAnswer;

static Datum
text_array(char **items, int n, Oid elemtype)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = elemtype == UUIDOID ? DirectFunctionCall1(uuid_in, CStringGetDatum(items[i]))
			: CStringGetTextDatum(items[i]);
	return PointerGetDatum(construct_array(d, n, elemtype, elemtype == UUIDOID ? UUID_LEN : -1,
										   false, elemtype == UUIDOID ? TYPALIGN_CHAR : TYPALIGN_INT));
}

/*
 * A complete, well-formed answer: store the vectors, record the request and
 * finish the jobs whose chunks all have theirs.  False (nothing written) when
 * the answer needs the SQL path, which explains what is wrong with it.
 */
static bool
store_embeddings(Batch *b, TvdbHttp *req, const char *body)
{
	TvdbEmbeddings e = {b->n, tvdb_model_dimensions(), CurrentMemoryContext};
	Oid			types[4] = {FLOAT4ARRAYOID, UUIDOID, INT4OID, UUIDOID};
	Datum		values[4];
	Datum	   *elems;
	Oid			utypes[6] = {UUIDARRAYOID, INT4OID, FLOAT8OID, INT4OID, INT4OID, FLOAT8OID};
	Datum		uvalues[6];
	char		unulls[6] = "      ";

	tvdb_read_embeddings(body, strlen(body), &e);
	if (e.error != NULL)
		return false;
	elems = palloc(sizeof(Datum) * e.dims);
	for (int i = 0; i < b->n; i++)
	{
		for (int d = 0; d < e.dims; d++)
			elems[d] = Float4GetDatum(e.vectors[i][d]);
		values[0] = PointerGetDatum(construct_array(elems, e.dims, FLOAT4OID, 4, true, TYPALIGN_INT));
		values[1] = DirectFunctionCall1(uuid_in, CStringGetDatum(b->docs[i]));
		values[2] = Int32GetDatum(b->chunk[i]);
		values[3] = DirectFunctionCall1(uuid_in, CStringGetDatum(b->jobs[i]));
		exec("UPDATE upload_pipeline.document_chunks SET embedding = $1 "
			 "WHERE document_id = $2 AND chunk_index = $3 AND job_id = $4", 4, types, values, NULL);
		pfree(DatumGetPointer(values[0]));
	}
	uvalues[0] = text_array(b->jobs, b->n, UUIDOID);
	uvalues[1] = Int32GetDatum((int32) req->status);
	uvalues[2] = Float8GetDatum(req->latency_ms);
	uvalues[3] = Int32GetDatum(b->n);
	uvalues[4] = Int32GetDatum((int32) e.prompt_tokens);
	unulls[4] = e.prompt_tokens >= 0 ? ' ' : 'n';
	uvalues[5] = Float8GetDatum(tvdb_openai_usd_per_mtok);
	exec("SELECT tvdb._record_usage('openai', 'embeddings', NULL, ARRAY(SELECT DISTINCT unnest($1)), $2, $3, "
		 "inputs => $4, prompt_tokens => $5, cost_usd => (coalesce($5, 0) * $6 / 1e6)::numeric)",
		 6, utypes, uvalues, unulls);
	uvalues[1] = CStringGetTextDatum(b->owner);
	utypes[1] = TEXTOID;
	exec("SELECT tvdb._finish_embedding(s.j, $2) FROM (SELECT DISTINCT unnest($1) AS j) s",
		 2, utypes, uvalues, NULL);
	return true;
}

static void
record_embeddings(void *arg)
{
	EmbedAnswer *a = arg;
	Batch	   *b = a->batch;
	TvdbHttp   *req = a->req;
	const char *failure = tvdb_http_failure(req);
	char	   *body = body_text(req, &failure);

	if (req->status == 200 && body != NULL && store_embeddings(b, req, body))
		return;
	record_embedding_error(b, req, body, failure);
}

static void
record_embedding_error(Batch *b, TvdbHttp *req, char *body, const char *failure)
{
	Oid			types[11] = {TEXTOID, UUIDARRAYOID, UUIDARRAYOID, INT4ARRAYOID, INT4OID, TEXTOID,
	FLOAT8OID, TEXTOID, INT8OID, INT4OID, FLOAT8OID};
	Datum		values[11];
	char		nulls[11] = "           ";
	Datum	   *idx = palloc(sizeof(Datum) * b->n);

	for (int i = 0; i < b->n; i++)
		idx[i] = Int32GetDatum(b->chunk[i]);
	values[0] = CStringGetTextDatum(b->owner);
	values[1] = text_array(b->jobs, b->n, UUIDOID);
	values[2] = text_array(b->docs, b->n, UUIDOID);
	values[3] = PointerGetDatum(construct_array(idx, b->n, INT4OID, 4, true, TYPALIGN_INT));
	values[4] = Int32GetDatum((int32) req->status);
	values[5] = body ? CStringGetTextDatum(body) : (Datum) 0;
	nulls[5] = body ? ' ' : 'n';
	values[6] = Float8GetDatum(req->latency_ms);
	values[7] = failure ? CStringGetTextDatum(failure) : (Datum) 0;
	nulls[7] = failure ? ' ' : 'n';
	values[8] = Int64GetDatum(req->retry_after_ms);
	nulls[8] = req->retry_after_ms >= 0 ? ' ' : 'n';
	values[9] = Int32GetDatum(tvdb_model_dimensions());
	values[10] = Float8GetDatum(tvdb_openai_usd_per_mtok);
	exec("SELECT tvdb._embeddings_received($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
		 11, types, values, nulls);
}

static void
release_batch(void *arg)
{
	Batch	   *b = arg;

	for (int i = 0; i < b->n; i++)
	{
		Task		t;

		strlcpy(t.job, b->jobs[i], sizeof(t.job));
		t.owner = b->owner;
		release_after_error(&t);
	}
}

static void
embed_done(TvdbHttp *req)
{
	EmbedAnswer a = {req, req->arg, NULL};

	if (!in_xact("tvdb: storing embeddings", record_embeddings, &a))
		in_xact("tvdb: releasing jobs", release_batch, a.batch);
	free_batch(a.batch);
}

static void
start_embedding(Batch *b)
{
	const char *base = tvdb_openai_base_url;
	size_t		len = strlen(base);
	char	   *url;
	TvdbHttp   *req;
	StringInfoData body;

	while (len > 0 && base[len - 1] == '/')
		len--;
	url = psprintf("%.*s/embeddings", (int) len, base);
	initStringInfo(&body);
	appendStringInfoString(&body, "{\"model\": ");
	escape_json(&body, tvdb_embedding_model);
	appendStringInfo(&body, ", \"encoding_format\": \"float\"");
	if (tvdb_embedding_dimensions > 0)
		appendStringInfo(&body, ", \"dimensions\": %d", tvdb_embedding_dimensions);
	appendStringInfo(&body, ", \"input\": %s}", b->input.data);

	req = tvdb_http_new(url, embed_done, b);
	req->post = MemoryContextStrdup(TopMemoryContext, body.data);
	curl_easy_setopt(req->easy, CURLOPT_POSTFIELDS, req->post);
	curl_easy_setopt(req->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) strlen(req->post));
	tvdb_http_bearer(req, tvdb_openai_api_key);
	tvdb_http_header(req, "Content-Type: application/json");
	tvdb_http_start(req);
	pfree(body.data);
	pfree(url);
}

/* Mock: embed in process and record as an answer from a perfect service. */
static void
mock_embed(void *arg)
{
	Batch	   *b = arg;
	int			dims = tvdb_model_dimensions();
	float	   *v = palloc(sizeof(float) * dims);
	Oid			types[5] = {UUIDOID, INT4OID, FLOAT4ARRAYOID, TEXTOID, UUIDARRAYOID};
	Datum		values[5];

	for (int i = 0; i < b->n; i++)
	{
		Datum	   *elems = palloc(sizeof(Datum) * dims);

		values[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(b->docs[i]));
		values[1] = Int32GetDatum(b->chunk[i]);
		exec("SELECT content FROM upload_pipeline.document_chunks WHERE document_id = $1 AND chunk_index = $2",
			 2, types, values, NULL);
		if (SPI_processed != 1)
			continue;
		{
			char	   *content = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

			tvdb_mock_embed(content, strlen(content), v, dims);
		}
		for (int d = 0; d < dims; d++)
			elems[d] = Float4GetDatum(v[d]);
		values[2] = PointerGetDatum(construct_array(elems, dims, FLOAT4OID, 4, true, TYPALIGN_INT));
		exec("UPDATE upload_pipeline.document_chunks SET embedding = $3 "
			 "WHERE document_id = $1 AND chunk_index = $2", 3, types, values, NULL);
		pfree(elems);
	}
	values[3] = CStringGetTextDatum(b->owner);
	values[4] = text_array(b->jobs, b->n, UUIDOID);
	exec("SELECT tvdb._record_usage('mock', 'embeddings', NULL, ARRAY(SELECT DISTINCT unnest($1)), 200, 0, "
		 "inputs => cardinality($1))", 1, &types[4], &values[4], NULL);
	exec("SELECT tvdb._finish_embedding(s.j, $1) FROM (SELECT DISTINCT unnest($2) AS j) s",
		 2, &types[3], &values[3], NULL);
}

static int
dispatch_embeddings(const char *owner, bool mock, int capacity)
{
	EmbedClaim e = {owner, NIL};
	ListCell   *lc;
	int			started = 0;

	if (!in_xact("tvdb: claiming embedding jobs", embed_claim, &e))
		return 0;
	foreach(lc, e.batches)
	{
		Batch	   *b = lfirst(lc);

		if (mock)
		{
			if (!in_xact("tvdb: mock embeddings", mock_embed, b))
				in_xact("tvdb: releasing jobs", release_batch, b);
			free_batch(b);
		}
		else
			start_embedding(b);
		started++;
	}
	list_free(e.batches);
	in_xact("tvdb: finishing embedding jobs", finish_claimed, (void *) owner);
	return started;
}

/* ---------- one pass ---------- */

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
	n = run_local("parsed", owner, chunk_job, "tvdb: chunking");
	more |= n == LOCAL_BATCH;
	/* only a crash leaves jobs in chunking: look for them now and then, not every pass */
	if (TimestampDifferenceExceeds(last_chunking_check, GetCurrentTimestamp(), 5000))
	{
		n = run_local("chunking", owner, chunk_job, "tvdb: chunking");
		more |= n == LOCAL_BATCH;
		if (n < LOCAL_BATCH)
			last_chunking_check = GetCurrentTimestamp();
	}
	if (mock || (can_call && room > 0))
	{
		n = dispatch_embeddings(owner, mock, room);
		room -= mock ? 0 : n;
		more |= n > 0 && mock;
	}
	if (mock)
	{
		n = run_local("uploaded", owner, mock_parse_job, "tvdb: mock parsing");
		more |= n == LOCAL_BATCH;
	}
	else if (can_call && room > 0)
	{
		n = claim_requests("parse_queued", owner, room, "j.job_id, j.parse_job_id", poll_row);
		room -= n;
		if (room > 0)
		{
			n = claim_requests("uploaded", owner, room,
							   "j.job_id, d.filename, d.mime_type, b.content, j.job_id, j.document_id, j.correlation_id",
							   upload_row);
			room -= n;
		}
		/* out of room: the next finished request brings us back */
	}
	return more;
}
