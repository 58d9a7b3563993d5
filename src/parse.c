/*
 * parse.c — the LlamaParse stages: upload (multipart), poll, fetch the
 * markdown, each answer recorded by a SQL function of 55_stages.sql; and the
 * mock parser's stage.
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

/* An answer, and the arguments its SQL function takes after the common ones. */
typedef struct Answer
{
	TvdbHttp   *req;
	const char *sql;			/* SELECT tvdb._parse_...($1 .. $7, extras) */
	int			nextra;
	Oid			extra_types[2];
	Datum		extra[2];
	bool		fetch;			/* the job's result is ready to fetch */
} Answer;

static void
record_answer(void *arg)
{
	Answer	   *a = arg;
	Task	   *t = a->req->arg;
	Oid			types[TVDB_ANSWER_ARGS + 4] = {UUIDOID, TEXTOID};
	Datum		values[TVDB_ANSWER_ARGS + 4];
	char		nulls[TVDB_ANSWER_ARGS + 4];
	int			nargs = 2 + TVDB_ANSWER_ARGS + a->nextra;
	char	   *outcome;

	values[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(t->job));
	values[1] = CStringGetTextDatum(t->owner);
	nulls[0] = nulls[1] = ' ';
	tvdb_answer_args(a->req, types + 2, values + 2, nulls + 2);
	for (int i = 0; i < a->nextra; i++)
	{
		types[2 + TVDB_ANSWER_ARGS + i] = a->extra_types[i];
		values[2 + TVDB_ANSWER_ARGS + i] = a->extra[i];
		nulls[2 + TVDB_ANSWER_ARGS + i] = ' ';
	}
	tvdb_exec(a->sql, nargs, types, values, nulls);
	outcome = tvdb_scalar_text();
	a->fetch = outcome != NULL && strcmp(outcome, "fetch") == 0;
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

/*
 * Record an answer; false if that failed (the job is then released with a
 * backoff).  a->fetch says whether to go on and fetch the result.
 */
static bool
record(Answer *a, const char *what)
{
	if (!tvdb_in_xact(what, record_answer, a))
	{
		tvdb_in_xact("tvdb: releasing a job", tvdb_release_after_error, a->req->arg);
		return false;
	}
	return true;
}

/*
 * The commonest answers, an upload accepted and a poll that finds the parse
 * still running, are kept until the batch of answers ends and recorded for
 * all jobs at once (tvdb_flush_answers); anything else goes through the SQL
 * function for its kind, one subtransaction each.
 */
typedef struct Deferred
{
	int			n;
	int			cap;
	char	  **jobs;
	char	  **ids;			/* parse job ids (uploads) */
	double	   *latency;
	const char *owner;			/* the worker's: the same for all its tasks */
} Deferred;

static Deferred accepted;		/* uploads answered with an id */
static Deferred running;		/* polls answered PENDING / RUNNING */
static Deferred fetched;		/* results with their markdown (ids: the bodies) */

static void
defer(Deferred *d, Task *t, const char *id, double latency_ms)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	d->owner = t->owner;
	if (d->n == d->cap)
	{
		d->cap = Max(64, d->cap * 2);
		d->jobs = d->jobs ? repalloc(d->jobs, sizeof(char *) * d->cap) : palloc(sizeof(char *) * d->cap);
		d->ids = d->ids ? repalloc(d->ids, sizeof(char *) * d->cap) : palloc(sizeof(char *) * d->cap);
		d->latency = d->latency ? repalloc(d->latency, sizeof(double) * d->cap) : palloc(sizeof(double) * d->cap);
	}
	d->jobs[d->n] = pstrdup(t->job);
	d->ids[d->n] = id ? pstrdup(id) : NULL;
	d->latency[d->n] = latency_ms;
	d->n++;
	MemoryContextSwitchTo(old);
}

static void
forget(Deferred *d)
{
	for (int i = 0; i < d->n; i++)
	{
		pfree(d->jobs[i]);
		if (d->ids[i])
			pfree(d->ids[i]);
	}
	d->n = 0;
}

static Datum
latencies(Deferred *d)
{
	Datum	   *v = palloc(sizeof(Datum) * Max(d->n, 1));

	for (int i = 0; i < d->n; i++)
		v[i] = Float8GetDatum(d->latency[i]);
	return PointerGetDatum(construct_array(v, d->n, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* How one kind of deferred answers is recorded: owner, jobs, [texts], latencies, extras. */
typedef struct Flush
{
	Deferred   *d;
	const char *sql;
	bool		texts;			/* d->ids go in as a text[] after the jobs */
	int			nextra;
	Oid			extra_types[2];
	Datum		extra[2];
} Flush;

static void
flush_batch(void *arg)
{
	Flush	   *f = arg;
	Deferred   *d = f->d;
	Oid			types[6];
	Datum		values[6];
	int			n = 0;

	types[n] = TEXTOID;
	values[n++] = CStringGetTextDatum(d->owner);
	types[n] = UUIDARRAYOID;
	values[n++] = tvdb_uuid_array(d->jobs, d->n);
	if (f->texts)
	{
		Datum	   *texts = palloc(sizeof(Datum) * Max(d->n, 1));

		for (int i = 0; i < d->n; i++)
			texts[i] = CStringGetTextDatum(d->ids[i]);
		types[n] = TEXTARRAYOID;
		values[n++] = PointerGetDatum(construct_array(texts, d->n, TEXTOID, -1, false, TYPALIGN_INT));
	}
	types[n] = FLOAT8ARRAYOID;
	values[n++] = latencies(d);
	for (int i = 0; i < f->nextra; i++)
	{
		types[n] = f->extra_types[i];
		values[n++] = f->extra[i];
	}
	tvdb_exec(f->sql, n, types, values, NULL);
}

static void
flush(Flush *f, const char *what)
{
	Deferred   *d = f->d;

	if (d->n == 0)
		return;
	if (!tvdb_in_xact(what, flush_batch, f))
	{
		/* their leases are given back with a backoff, as for any answer that could not be recorded */
		for (int i = 0; i < d->n; i++)
		{
			Task		t;

			strlcpy(t.job, d->jobs[i], sizeof(t.job));
			t.owner = d->owner;
			tvdb_in_xact("tvdb: releasing a job", tvdb_release_after_error, &t);
		}
	}
	forget(d);
}

/* At the end of a batch of answers, inside its transaction. */
void
tvdb_flush_answers(void)
{
	Flush		uploads = {&accepted, "SELECT tvdb._parse_submitted_all($1, $2, $3, $4, $5)", true,
	1, {INT4OID}, {Int32GetDatum(tvdb_poll_min_ms)}};
	Flush		polls = {&running, "SELECT tvdb._parse_polled_all($1, $2, $3, $4, $5)", false,
	2, {INT4OID, INT4OID}, {Int32GetDatum(tvdb_poll_min_ms), Int32GetDatum(tvdb_poll_max_ms)}};
	Flush		results = {&fetched, "SELECT tvdb._parse_fetched_all($1, $2, $3::jsonb[], $4, $5)", true,
	1, {FLOAT8OID}, {Float8GetDatum(tvdb_llamaparse_usd_per_page)}};

	flush(&uploads, "tvdb: recording LlamaParse uploads");
	flush(&polls, "tvdb: recording LlamaParse polls");
	flush(&results, "tvdb: storing LlamaParse results");
}

/* The top-level string fields of a 200 answer's JSON object (NULLs if it is not one). */
static void
answer_fields(TvdbHttp *req, const char *const *keys, char **values, int n)
{
	const char *failure = NULL;
	char	   *body = req->status == 200 ? tvdb_body_text(req, &failure) : NULL;

	if (body == NULL || !tvdb_json_top_strings(body, req->body_len, keys, values, n))
		for (int i = 0; i < n; i++)
			values[i] = NULL;
}

static void
upload_done(TvdbHttp *req)
{
	Answer		a = {req, "SELECT tvdb._parse_submitted($1, $2, $3, $4, $5, $6, $7, $8)",
	1, {INT4OID}, {Int32GetDatum(tvdb_poll_min_ms)}};
	Task	   *t = req->arg;
	static const char *const keys[1] = {"id"};
	char	   *id;

	answer_fields(req, keys, &id, 1);
	if (id != NULL && id[0] != '\0')
		defer(&accepted, t, id, req->latency_ms);
	else
		record(&a, "tvdb: recording a LlamaParse upload");
	tvdb_free_task(t);
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
	Answer		a = {req, "SELECT tvdb._parse_polled($1, $2, $3, $4, $5, $6, $7, $8, $9)",
	2, {INT4OID, INT4OID}, {Int32GetDatum(tvdb_poll_min_ms), Int32GetDatum(tvdb_poll_max_ms)}};

	Task	   *t = req->arg;
	static const char *const keys[1] = {"status"};
	char	   *state;

	answer_fields(req, keys, &state, 1);
	if (state != NULL &&
		(pg_strcasecmp(state, "PENDING") == 0 || pg_strcasecmp(state, "RUNNING") == 0 ||
		 pg_strcasecmp(state, "IN_PROGRESS") == 0))
	{
		defer(&running, t, NULL, req->latency_ms);
		tvdb_free_task(t);
	}
	else if (record(&a, "tvdb: recording a LlamaParse poll") && a.fetch)
		start_fetch(t);			/* the lease is still ours */
	else
		tvdb_free_task(t);
}

static void
fetch_done(TvdbHttp *req)
{
	Answer		a = {req, "SELECT tvdb._parse_fetched($1, $2, $3, $4, $5, $6, $7, $8, $9)",
	2, {FLOAT8OID, INT4OID}, {Float8GetDatum(tvdb_llamaparse_usd_per_page), Int32GetDatum(tvdb_poll_min_ms)}};

	static const char *const keys[1] = {"markdown"};
	char	   *md;

	answer_fields(req, keys, &md, 1);
	if (md != NULL)
		defer(&fetched, req->arg, req->body, req->latency_ms);
	else
		record(&a, "tvdb: storing a LlamaParse result");
	tvdb_free_task(req->arg);
}

void
tvdb_upload_row(int row, void *arg)
{
	Pending    *p = arg;
	Task	   *t = tvdb_new_task(p->owner);
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

void
tvdb_poll_row(int row, void *arg)
{
	Pending    *p = arg;
	Task	   *t = tvdb_new_task(p->owner);
	char	   *url;

	strlcpy(t->job, SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 1), sizeof(t->job));
	t->parse_job_id = tvdb_col_text(row, 2);
	url = llamaparse_url("/api/v1/parsing/job/%s", t->parse_job_id);
	p->reqs[p->n] = tvdb_http_new(url, poll_done, t);
	tvdb_http_bearer(p->reqs[p->n], tvdb_llamaparse_api_key);
	tvdb_http_header(p->reqs[p->n], "Accept: application/json");
	p->n++;
	pfree(url);
}

/* Mock: uploaded -> parse_queued -> parsed with the built-in parser. */
void
tvdb_mock_parse_job(void *arg)
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

	tvdb_exec("UPDATE upload_pipeline.upload_jobs SET parse_job_id = 'mock-' || job_id "
		 "WHERE job_id = $1 AND lease_owner = $2 AND status = 'uploaded'", 2, types, values, NULL);
	tvdb_exec("SELECT tvdb._advance($1, $2, 'uploaded', 'parse_queued', "
		 "jsonb_build_object('parse_job_id', 'mock-' || $1::text), true)", 2, types, values, NULL);
	tvdb_exec("SELECT b.content, d.filename, d.mime_type FROM upload_pipeline.upload_jobs j "
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
		tvdb_exec("SELECT tvdb._record_usage('mock', 'parse', $1, NULL, 415, 0, error => $3::text)",
			 3, types, values, NULL);
		tvdb_exec("SELECT tvdb._advance($1, $2, 'parse_queued', 'failed_parse', jsonb_build_object('error', $3::text))",
			 3, types, values, NULL);
		l->outcome = "failed";
		return;
	}
	values[2] = CStringGetTextDatum(md);
	tvdb_exec("SELECT tvdb._record_usage('mock', 'parse', $1, NULL, 200, 0, pages => 1)", 1, types, values, NULL);
	tvdb_exec("SELECT tvdb._store_parsed($1, $2, $3, '{\"via\": \"mock\"}')", 3, types, values, NULL);
	l->outcome = "done";
}
