/*
 * llamaparse.c — the LlamaParse stages: upload (multipart), poll, and fetch
 * the markdown once a poll finds the parse finished.  Each answer is
 * recorded by a SQL function of 55_stages.sql; the commonest (an upload
 * accepted, a parse still running, a result with its markdown) are recorded
 * for all the answers of a batch at once.
 */
#include "stages/stages.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/memutils.h"
#include "utils/uuid.h"

PG_FUNCTION_INFO_V1(tvdb_llamaparse_running);

/* Which API the requests speak (tvdb.llamaparse_api): paths and shapes differ. */
#define V2 (tvdb_llamaparse_api == TVDB_LLAMAPARSE_V2)

/* The job statuses LlamaParse answers while a parse is still under way. */
static const char *const running_words[] = {"PENDING", "RUNNING", "IN_PROGRESS"};

static bool
is_running(const char *state)
{
	for (int i = 0; i < (int) lengthof(running_words); i++)
		if (pg_strcasecmp(state, running_words[i]) == 0)
			return true;
	return false;
}

/* A finished parse whose result is there to fetch (v2's COMPLETED is v1's SUCCESS). */
static bool
is_done(const char *state)
{
	return pg_strcasecmp(state, tvdb_llamaparse_api == TVDB_LLAMAPARSE_V2 ? "COMPLETED" : "SUCCESS") == 0;
}

/* tvdb._llamaparse_running(status text) RETURNS boolean: the same rule, for SQL. */
Datum
tvdb_llamaparse_running(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(is_running(text_to_cstring(PG_GETARG_TEXT_PP(0))));
}

/* A request to LlamaParse in the work's memory, with the key and Accept set. */
static TvdbHttp *
new_request(TvdbWork *w, const char *path)
{
	MemoryContext old = MemoryContextSwitchTo(w->cxt);
	TvdbHttp   *req = tvdb_http_new(tvdb_service_url(tvdb_llamaparse_base_url, path), w);

	tvdb_http_bearer(req, tvdb_llamaparse_api_key);
	tvdb_http_header(req, "Accept: application/json");
	MemoryContextSwitchTo(old);
	return req;
}

/* The top-level string field of a 200 answer's JSON object, or NULL. */
static char *
answer_field(TvdbWork *w, const char *key)
{
	const char *failure = NULL;
	char	   *body = w->req->status == 200 ? tvdb_http_text(w->req, &failure) : NULL;
	char	   *value = NULL;
	const char *const keys[1] = {key};

	if (body == NULL || !tvdb_json_fields(body, w->req->body_len, keys, &value, 1))
		return NULL;
	return value;
}

/*
 * Record one answer: SELECT fn(job, owner, <answer args>, extras..., kind),
 * kind being what the after-answer hook found; its text result.
 */
static char *
record_one(TvdbWork *w, const char *sql, int nextra, const Oid *extra_types, const Datum *extra)
{
	Oid			types[2 + TVDB_ANSWER_ARGS + 3] = {UUIDOID, TEXTOID};
	Datum		values[2 + TVDB_ANSWER_ARGS + 3];
	char		nulls[2 + TVDB_ANSWER_ARGS + 3];
	int			last = 2 + TVDB_ANSWER_ARGS + nextra;

	values[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(w->jobs[0]));
	values[1] = CStringGetTextDatum(w->owner);
	nulls[0] = nulls[1] = ' ';
	tvdb_answer_args(w->req, types + 2, values + 2, nulls + 2);
	for (int i = 0; i < nextra; i++)
	{
		types[2 + TVDB_ANSWER_ARGS + i] = extra_types[i];
		values[2 + TVDB_ANSWER_ARGS + i] = extra[i];
		nulls[2 + TVDB_ANSWER_ARGS + i] = ' ';
	}
	types[last] = TEXTOID;
	values[last] = w->answer_kind ? CStringGetTextDatum(w->answer_kind) : (Datum) 0;
	nulls[last] = w->answer_kind ? ' ' : 'n';
	if (tvdb_spi_run(sql, last + 1, types, values, nulls, SPI_OK_SELECT) != 1)
		return NULL;
	return tvdb_spi_text(0, 1);
}

/* What every batch-recording function takes first: owner, jobs[], then latencies[] last. */
static void
batch_args(List *works, Datum *owner, Datum *jobs, Datum *latencies)
{
	int			n = list_length(works);
	char	  **ids = palloc(sizeof(char *) * Max(n, 1));
	Datum	   *lat = palloc(sizeof(Datum) * Max(n, 1));
	ListCell   *lc;

	foreach(lc, works)
	{
		TvdbWork   *w = lfirst(lc);

		ids[foreach_current_index(lc)] = w->jobs[0];
		lat[foreach_current_index(lc)] = Float8GetDatum(w->req->latency_ms);
		*owner = CStringGetTextDatum(w->owner);
	}
	*jobs = tvdb_uuid_array(ids, n);
	*latencies = PointerGetDatum(construct_array(lat, n, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* The works' own data (ids, bodies) as a text[]. */
static Datum
texts_of(List *works)
{
	Datum	   *t = palloc(sizeof(Datum) * Max(list_length(works), 1));
	ListCell   *lc;

	foreach(lc, works)
		t[foreach_current_index(lc)] = CStringGetTextDatum(((TvdbWork *) lfirst(lc))->data);
	return PointerGetDatum(construct_array(t, list_length(works), TEXTOID, -1, false, TYPALIGN_INT));
}

/* ---- upload: uploaded -> parse_queued ---- */

/* A JSON scalar as a form field's text: strings as they are, the rest as written. */
static char *
scalar_text(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		default:
			return NULL;
	}
}

/*
 * tvdb.llamaparse_options as v1 form fields: a scalar is one field, an
 * array of scalars repeats its field once per element (as the official
 * client sends language), an object or nested array goes as JSON text.
 */
static void
add_v1_options(TvdbHttp *req, Jsonb *options)
{
	JsonbIterator *it = JsonbIteratorInit(&options->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE && v.type != jbvBinary)
		{
			char	   *text = scalar_text(&v);

			if (text != NULL)
				tvdb_http_form_field(req, key, text);
		}
		else if (tok == WJB_VALUE)
		{
			Jsonb	   *inner = JsonbValueToJsonb(&v);
			JsonbIterator *eit = JsonbIteratorInit(&inner->root);
			JsonbValue	e;
			bool		scalars = JB_ROOT_IS_ARRAY(inner);

			while (scalars && (tok = JsonbIteratorNext(&eit, &e, true)) != WJB_DONE)
				scalars = tok != WJB_ELEM || e.type != jbvBinary;
			if (!scalars)
				tvdb_http_form_field(req, key, JsonbToCString(NULL, &inner->root, VARSIZE(inner)));
			else
			{
				eit = JsonbIteratorInit(&inner->root);
				while ((tok = JsonbIteratorNext(&eit, &e, true)) != WJB_DONE)
				{
					char	   *text = tok == WJB_ELEM ? scalar_text(&e) : NULL;

					if (text != NULL)
						tvdb_http_form_field(req, key, text);
				}
			}
		}
	}
}

/* A document no parser reads fails parse at once, permanently, with the reason. */
static void
refuse(const char *job, const char *owner, const char *reason)
{
	static const Oid types[3] = {UUIDOID, TEXTOID, TEXTOID};
	Datum		values[3] = {DirectFunctionCall1(uuid_in, CStringGetDatum(job)), CStringGetTextDatum(owner),
	CStringGetTextDatum(reason)};

	tvdb_spi_run("SELECT tvdb._advance($1, $2, 'uploaded', 'failed_parse', "
				 "jsonb_build_object('error', $3::text, 'class', 'permanent'))",
				 3, types, values, NULL, SPI_OK_SELECT);
}

/* The v2 configuration without a callback: the options over tvdb's defaults (tier and version are required). */
static char *
v2_base_configuration(void)
{
	if (tvdb_spi_run("SELECT (jsonb_build_object('tier', 'cost_effective', 'version', 'latest') "
					 "        || coalesce(nullif(current_setting('tvdb.llamaparse_options'), ''), '{}')::jsonb)::text",
					 0, NULL, NULL, NULL, SPI_OK_SELECT) != 1)
		elog(ERROR, "could not build the LlamaParse v2 configuration");
	return tvdb_spi_text(0, 1);
}

/*
 * A job's v2 configuration: the base, and when callbacks are on, LlamaCloud
 * events for the finished parse to its callback URL (v2 sends events, not
 * the v1 push; pending and running would only be noise).
 */
static char *
v2_configuration(const char *base, const char *callback)
{
	StringInfoData buf;

	if (callback == NULL)
		return pstrdup(base);
	initStringInfo(&buf);
	/* base is a jsonb object's text: "{}" or "{...}" */
	appendBinaryStringInfo(&buf, base, strlen(base) - 1);
	if (strcmp(base, "{}") != 0)
		appendStringInfoString(&buf, ", ");
	appendStringInfoString(&buf, "\"webhook_configurations\": [{\"webhook_url\": ");
	escape_json(&buf, callback);
	appendStringInfoString(&buf, ", \"webhook_events\": [\"parse.success\", \"parse.partial_success\", "
						   "\"parse.error\", \"parse.cancelled\"]}]}");
	return buf.data;
}

/* Parse a job with the markdown of an earlier parse of the same bytes. */
static void
reuse(const char *job, const char *owner, const char *source)
{
	static const Oid types[3] = {UUIDOID, TEXTOID, UUIDOID};
	Datum		values[3] = {DirectFunctionCall1(uuid_in, CStringGetDatum(job)), CStringGetTextDatum(owner),
	DirectFunctionCall1(uuid_in, CStringGetDatum(source))};

	tvdb_spi_run("SELECT tvdb._parse_reused($1, $2, $3)", 3, types, values, NULL, SPI_OK_SELECT);
}

/*
 * Each claimed document goes where tvdb_parse_route says: the built-in
 * parser, LlamaParse, or nowhere (failed at once).
 *
 * LlamaParse takes the file and its documented options only (unknown fields
 * are refused), so the link between its job and ours is kept in the
 * database, and the callback URL names our job with a token (callback.c).
 */
static List *
upload_claim(const char *owner, int n, MemoryContext cxt)
{
	static const Oid types[3] = {TEXTOID, INT4OID, INT4OID};
	Datum		values[3] = {CStringGetTextDatum(owner), Int32GetDatum(n),
	Int32GetDatum(tvdb_lease_effective())};
	List	   *works = NIL;
	Jsonb	   *options = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
															 CStringGetDatum(tvdb_llamaparse_options)));
	bool		callbacks = tvdb_callback_url_problem(tvdb_parse_webhook_url, tvdb_callback_url_rules) == NULL;
	char	   *v2_base = V2 ? v2_base_configuration() : NULL;
	List	   *local = NIL;
	List	   *refused = NIL;
	List	   *reused = NIL;
	ListCell   *lc;
	uint64		rows;

	rows = tvdb_spi_run("SELECT j.job_id::text, d.filename, d.mime_type, b.content, d.size_bytes, "
						"tvdb._parse_source(j.job_id)::text "
						"FROM tvdb._claim('uploaded', $1, $2, $3) AS c(id) "
						"JOIN upload_pipeline.upload_jobs j ON j.job_id = c.id "
						"JOIN upload_pipeline.documents d ON d.document_id = j.document_id "
						"JOIN upload_pipeline.blobs b ON b.document_id = d.document_id AND b.path = d.storage_path",
						3, types, values, NULL, SPI_OK_SELECT);
	for (uint64 i = 0; i < rows; i++)
	{
		TvdbWork   *w;
		bool		isnull;
		bytea	   *content;
		char	   *callback;
		char	   *reason;
		char	   *source;
		MemoryContext old;

		switch (tvdb_parse_route(tvdb_spi_text(i, 2), tvdb_spi_text(i, 3),
								 DatumGetInt64(tvdb_spi_datum(i, 5, &isnull)), &reason))
		{
			case TVDB_ROUTE_LOCAL:
				local = lappend(local, tvdb_spi_text(i, 1));
				continue;
			case TVDB_ROUTE_REFUSED:
				refused = lappend(refused, list_make2(tvdb_spi_text(i, 1), reason));
				continue;
			case TVDB_ROUTE_LLAMAPARSE:
				break;
		}
		/* rows from before tvdb.upload checked them: never into a request */
		if ((reason = (char *) tvdb_media_type_problem(tvdb_spi_text(i, 3))) != NULL ||
			(reason = (char *) tvdb_filename_problem(tvdb_spi_text(i, 2))) != NULL)
		{
			refused = lappend(refused, list_make2(tvdb_spi_text(i, 1),
												  psprintf("its type or name cannot go into an upload: %s", reason)));
			continue;
		}
		source = tvdb_spi_text(i, 6);
		if (source != NULL)
		{
			/* the same bytes were parsed before, in this mode: no upload */
			reused = lappend(reused, list_make2(tvdb_spi_text(i, 1), source));
			continue;
		}
		w = tvdb_work_new(&tvdb_stage_upload, owner, 1, cxt);
		content = DatumGetByteaPP(tvdb_spi_datum(i, 4, &isnull));
		w->jobs[0] = MemoryContextStrdup(w->cxt, tvdb_spi_text(i, 1));
		w->est_pages = tvdb_estimate_pages(VARDATA_ANY(content), VARSIZE_ANY_EXHDR(content));
		w->req = new_request(w, V2 ? "/api/v2/parse/upload" : "/api/v1/parsing/upload");
		old = MemoryContextSwitchTo(w->cxt);
		tvdb_http_form_file(w->req, "file", tvdb_spi_text(i, 2), tvdb_spi_text(i, 3),
							VARDATA_ANY(content), VARSIZE_ANY_EXHDR(content));
		callback = callbacks ? tvdb_callback_url(w->jobs[0]) : NULL;
		if (V2)
			tvdb_http_form_field(w->req, "configuration", v2_configuration(v2_base, callback));
		else
		{
			add_v1_options(w->req, options);
			if (callback != NULL)
				tvdb_http_form_field(w->req, "webhook_url", callback);
		}
		MemoryContextSwitchTo(old);
		works = tvdb_work_append(works, w, cxt);
	}

	/*
	 * After the claim's rows are read (these run statements of their own):
	 * the built-in parser's work is small, so it is done here, in the
	 * claim's transaction.
	 */
	foreach(lc, local)
		tvdb_parse_builtin(lfirst(lc), owner, "local");
	foreach(lc, refused)
		refuse(linitial(lfirst(lc)), owner, lsecond(lfirst(lc)));
	foreach(lc, reused)
		reuse(linitial(lfirst(lc)), owner, lsecond(lfirst(lc)));
	return works;
}

/* Uploads wait while the parse options do not suit the API in use (the worker says so). */
static bool
upload_runs(void)
{
	return tvdb_real_runs(TVDB_SERVICE_LLAMAPARSE) &&
		tvdb_llamaparse_options_problem(tvdb_llamaparse_options, tvdb_llamaparse_api) == NULL;
}

/* An upload accepted with an id waits for upload_record_all. */
static bool
upload_deferrable(TvdbWork *w)
{
	char	   *id = answer_field(w, "id");

	if (id == NULL || id[0] == '\0')
		return false;
	w->data = MemoryContextStrdup(w->cxt, id);
	return true;
}

static void
upload_record_all(List *works)
{
	static const Oid types[5] = {TEXTOID, UUIDARRAYOID, TEXTARRAYOID, FLOAT8ARRAYOID, INT4OID};
	Datum		values[5];

	batch_args(works, &values[0], &values[1], &values[3]);
	values[2] = texts_of(works);
	values[4] = Int32GetDatum(tvdb_poll_min_ms);
	tvdb_spi_run("SELECT tvdb._parse_submitted_all($1, $2, $3, $4, $5)", 5, types, values, NULL,
				 SPI_OK_SELECT);
}

static void
upload_record(TvdbWork *w)
{
	static const Oid extra_types[1] = {INT4OID};
	Datum		extra[1] = {Int32GetDatum(tvdb_poll_min_ms)};

	record_one(w, "SELECT tvdb._parse_submitted($1, $2, $3, $4, $5, $6, $7, $8, $9)", 1, extra_types, extra);
}

const TvdbStage tvdb_stage_upload = {
	.name = "upload",
	.claims = TVDB_UPLOADED,
	.batch = 1024,
	.service = TVDB_SERVICE_LLAMAPARSE,
	.fails_to = TVDB_FAILED_PARSE,
	.operation = "upload",
	/*
	 * Uploads and polls share the free request slots, each sure of half: an
	 * upload starts a parse's long wait, and most polls find the parse still
	 * running, so polls must not crowd uploads out (nor the reverse).
	 */
	.share = 2,
	.rate_limited = true,		/* LlamaParse's documented limit is on parse uploads */
	.runs = upload_runs,
	.claim = upload_claim,
	.record = upload_record,
	.deferrable = upload_deferrable,
	.record_all = upload_record_all,
};

/* ---- poll: parse_queued, is it finished? ---- */

static List *
poll_claim(const char *owner, int n, MemoryContext cxt)
{
	static const Oid types[3] = {TEXTOID, INT4OID, INT4OID};
	Datum		values[3] = {CStringGetTextDatum(owner), Int32GetDatum(n),
	Int32GetDatum(tvdb_lease_effective())};
	List	   *works = NIL;
	uint64		rows;

	rows = tvdb_spi_run("SELECT j.job_id::text, j.parse_job_id "
						"FROM tvdb._claim('parse_queued', $1, $2, $3) AS c(id) "
						"JOIN upload_pipeline.upload_jobs j ON j.job_id = c.id",
						3, types, values, NULL, SPI_OK_SELECT);
	for (uint64 i = 0; i < rows; i++)
	{
		TvdbWork   *w = tvdb_work_new(&tvdb_stage_poll, owner, 1, cxt);
		char	   *pid = tvdb_spi_text(i, 2);

		w->jobs[0] = MemoryContextStrdup(w->cxt, tvdb_spi_text(i, 1));
		w->parse_job_id = pid ? MemoryContextStrdup(w->cxt, pid) : NULL;
		/* the id comes from the service: escaped, it cannot leave its path segment */
		w->req = new_request(w, psprintf(V2 ? "/api/v2/parse/%s" : "/api/v1/parsing/job/%s",
										 tvdb_http_escape(pid ? pid : "")));
		works = tvdb_work_append(works, w, cxt);
	}
	return works;
}

/* A parse still running, or finished, waits for poll_record_all. */
static bool
poll_deferrable(TvdbWork *w)
{
	char	   *state = answer_field(w, V2 ? "job.status" : "status");

	return state != NULL && (is_running(state) || is_done(state));
}

/*
 * The commonest answers, many at once: parses still running are polled
 * again later; finished ones are in the ledger and ask for their results
 * (fetched after the commit).
 */
static void
poll_record_all(List *works)
{
	static const Oid types[5] = {TEXTOID, UUIDARRAYOID, FLOAT8ARRAYOID, INT4OID, INT4OID};
	Datum		values[5];
	List	   *running = NIL;
	List	   *done = NIL;
	ListCell   *lc;

	foreach(lc, works)
	{
		TvdbWork   *w = lfirst(lc);
		char	   *state = answer_field(w, V2 ? "job.status" : "status");

		if (state != NULL && is_done(state))
			done = lappend(done, w);
		else
			running = lappend(running, w);
	}
	if (running != NIL)
	{
		batch_args(running, &values[0], &values[1], &values[2]);
		values[3] = Int32GetDatum(tvdb_poll_min_ms);
		values[4] = Int32GetDatum(tvdb_poll_max_effective());
		tvdb_spi_run("SELECT tvdb._parse_polled_all($1, $2, $3, $4, $5)", 5, types, values, NULL,
					 SPI_OK_SELECT);
	}
	if (done != NIL)
	{
		batch_args(done, &values[0], &values[1], &values[2]);
		tvdb_spi_run("SELECT tvdb._parse_done_all($2, $3)", 3, types, values, NULL, SPI_OK_SELECT);
		foreach(lc, done)
			((TvdbWork *) lfirst(lc))->follow = true;
	}
}

/* Anything else; a finished parse asks for the result (started after the commit). */
static void
poll_record(TvdbWork *w)
{
	static const Oid extra_types[2] = {INT4OID, INT4OID};
	Datum		extra[2] = {Int32GetDatum(tvdb_poll_min_ms), Int32GetDatum(tvdb_poll_max_effective())};
	char	   *outcome = record_one(w, "SELECT tvdb._parse_polled($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
									 2, extra_types, extra);

	w->follow = outcome != NULL && strcmp(outcome, "fetch") == 0;
}

const TvdbStage tvdb_stage_poll = {
	.name = "poll",
	.claims = TVDB_PARSE_QUEUED,
	.batch = 1024,
	.service = TVDB_SERVICE_LLAMAPARSE,
	.fails_to = TVDB_FAILED_PARSE,
	.operation = "job_status",
	.runs = tvdb_remote_mode,
	.claim = poll_claim,
	.record = poll_record,
	.deferrable = poll_deferrable,
	.record_all = poll_record_all,
	.next = &tvdb_stage_fetch,
};

/* ---- fetch: parse_queued -> parsed, the markdown of a finished parse ---- */

static void
fetch_request(TvdbWork *w)
{
	/* v2: the pages' markdown and the job's metadata, asked for as the official client does */
	w->req = new_request(w, psprintf(V2 ? "/api/v2/parse/%s?expand=markdown&expand=job_metadata"
									 : "/api/v1/parsing/job/%s/result/markdown",
									  tvdb_http_escape(w->parse_job_id)));
}

/* A result with its markdown waits for fetch_record_all (the body is the answer). */
static bool
fetch_deferrable(TvdbWork *w)
{
	/* v2 results are put together page by page in SQL, one at a time */
	if (V2 || answer_field(w, "markdown") == NULL)
		return false;
	w->data = w->req->body;
	return true;
}

static void
fetch_record_all(List *works)
{
	static const Oid types[4] = {TEXTOID, UUIDARRAYOID, TEXTARRAYOID, FLOAT8ARRAYOID};
	Datum		values[4];

	batch_args(works, &values[0], &values[1], &values[3]);
	values[2] = texts_of(works);
	tvdb_spi_run("SELECT tvdb._parse_fetched_all($1, $2, $3::jsonb[], $4)", 4, types, values, NULL,
				 SPI_OK_SELECT);
}

static void
fetch_record(TvdbWork *w)
{
	static const Oid extra_types[1] = {INT4OID};
	Datum		extra[1] = {Int32GetDatum(tvdb_poll_min_ms)};

	record_one(w, "SELECT tvdb._parse_fetched($1, $2, $3, $4, $5, $6, $7, $8, $9)", 1, extra_types, extra);
}

const TvdbStage tvdb_stage_fetch = {
	.name = "fetch",
	.claims = TVDB_NO_STATUS,	/* only ever a poll's follow-up */
	.batch = 1,
	.service = TVDB_SERVICE_LLAMAPARSE,
	.fails_to = TVDB_FAILED_PARSE,
	.operation = "result",
	.runs = tvdb_remote_mode,
	.request = fetch_request,
	.record = fetch_record,
	.deferrable = fetch_deferrable,
	.record_all = fetch_record_all,
};
