/*
 * openai.c — the embedding stage: take jobs into embedding_in_progress, cut
 * their chunks into requests within OpenAI's limits, store the vectors (read
 * in C, read_embeddings.c) and finish the jobs.  In mock mode the built-in
 * embedder answers instead, in the claim's own transaction.
 */
#include "stages/stages.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/uuid.h"

/* The inputs of one request: input i is chunk[i] of document docs[i], job jobs[i]. */
typedef struct Batch
{
	int			n;
	int			cap;
	char	  **jobs;
	char	  **docs;
	int		   *chunk;
	int		   *lens;			/* each input's UTF-8 bytes */
	char	   *model;			/* the model it was sent to */
	char	  **texts;			/* mock mode only: the texts themselves */
	StringInfoData input;		/* JSON array of the texts */
	size_t		bytes;
} Batch;

/*
 * Jobs to embed alone, one job per request: each was in a request that
 * OpenAI refused for good, but which of its documents was at fault is not
 * known.  Kept per worker; a job leaves when its own request is answered.
 */
#define MAX_ALONE 1024
static char alone[MAX_ALONE][UUID_TEXT_LEN + 1];
static int	n_alone = 0;

static int
alone_index(const char *job)
{
	for (int i = 0; i < n_alone; i++)
		if (strcmp(alone[i], job) == 0)
			return i;
	return -1;
}

static void
set_alone(const char *job, bool on)
{
	int			i = alone_index(job);

	if (on && i < 0)
	{
		if (n_alone == MAX_ALONE)	/* forget the oldest */
			memmove(alone[0], alone[1], sizeof(alone[0]) * --n_alone);
		strlcpy(alone[n_alone++], job, sizeof(alone[0]));
	}
	else if (!on && i >= 0)
		memmove(alone[i], alone[i + 1], sizeof(alone[0]) * (--n_alone - i));
}

/* A new work holding an empty batch, in its own memory. */
static TvdbWork *
new_batch_work(const TvdbStage *s, const char *owner, MemoryContext cxt)
{
	TvdbWork   *w = tvdb_work_new(s, owner, 0, cxt);
	MemoryContext old = MemoryContextSwitchTo(w->cxt);
	Batch	   *b = palloc0(sizeof(Batch));

	b->cap = 64;
	b->jobs = palloc(sizeof(char *) * b->cap);
	b->docs = palloc(sizeof(char *) * b->cap);
	b->chunk = palloc(sizeof(int) * b->cap);
	b->lens = palloc(sizeof(int) * b->cap);
	if (s->service == TVDB_SERVICE_MOCK)
		b->texts = palloc(sizeof(char *) * b->cap);
	initStringInfo(&b->input);
	appendStringInfoChar(&b->input, '[');
	w->data = b;
	MemoryContextSwitchTo(old);
	return w;
}

/*
 * The batch is complete: close its input and list the jobs it serves, with
 * each one's estimated tokens (its share of the request's cost).
 */
static List *
close_batch(List *works, TvdbWork *w, MemoryContext cxt)
{
	Batch	   *b = w->data;
	MemoryContext old = MemoryContextSwitchTo(w->cxt);

	appendStringInfoChar(&b->input, ']');
	w->jobs = palloc(sizeof(char *) * Max(b->n, 1));
	w->job_tokens = palloc0(sizeof(int64) * Max(b->n, 1));
	for (int i = 0; i < b->n; i++)
	{
		if (i == 0 || strcmp(b->jobs[i], b->jobs[i - 1]) != 0)
			w->jobs[w->njobs++] = b->jobs[i];	/* the chunks come ordered by job */
		w->job_tokens[w->njobs - 1] += b->lens[i] / Max(tvdb_chunk_bytes_per_token, 1) + 1;
	}
	MemoryContextSwitchTo(old);
	return tvdb_work_append(works, w, cxt);
}

static void
add_input(TvdbWork *w, uint64 row, const char *content, size_t len)
{
	Batch	   *b = w->data;
	MemoryContext old = MemoryContextSwitchTo(w->cxt);
	bool		isnull;

	if (b->n == b->cap)
	{
		b->cap *= 2;
		b->jobs = repalloc(b->jobs, sizeof(char *) * b->cap);
		b->docs = repalloc(b->docs, sizeof(char *) * b->cap);
		b->chunk = repalloc(b->chunk, sizeof(int) * b->cap);
		b->lens = repalloc(b->lens, sizeof(int) * b->cap);
		if (b->texts)
			b->texts = repalloc(b->texts, sizeof(char *) * b->cap);
	}
	if (b->texts)
		b->texts[b->n] = pstrdup(content);
	b->jobs[b->n] = pstrdup(tvdb_spi_text(row, 1));
	b->docs[b->n] = pstrdup(tvdb_spi_text(row, 2));
	b->chunk[b->n] = DatumGetInt32(tvdb_spi_datum(row, 3, &isnull));
	b->lens[b->n] = (int) len;
	if (b->n > 0)
		appendStringInfoChar(&b->input, ',');
	escape_json(&b->input, content);
	b->bytes += len;
	b->n++;
	MemoryContextSwitchTo(old);
}

/*
 * The unembedded chunks of the jobs (a uuid[]) cut into batches within
 * OpenAI's limits: inputs per request, and tokens per request bounded by
 * UTF-8 bytes (a token is at least one byte).  One work per batch.
 */
static List *
batches(const TvdbStage *s, const char *owner, Datum jobs, MemoryContext cxt)
{
	static const Oid idtype[1] = {UUIDARRAYOID};
	TvdbWork   *w = NULL;
	List	   *works = NIL;
	uint64		rows;

	rows = tvdb_spi_run("SELECT c.job_id::text, c.document_id::text, c.chunk_index, c.content "
						"FROM upload_pipeline.document_chunks c "
						"WHERE c.job_id = ANY($1) AND c.embedding IS NULL ORDER BY c.job_id, c.chunk_index",
						1, idtype, &jobs, NULL, SPI_OK_SELECT);
	for (uint64 i = 0; i < rows; i++)
	{
		char	   *content = tvdb_spi_text(i, 4);
		size_t		len = strlen(content);
		Batch	   *b = w ? w->data : NULL;
		bool		new_job = b != NULL && strcmp(b->jobs[b->n - 1], tvdb_spi_text(i, 1)) != 0;

		if (b != NULL && (b->n >= tvdb_embedding_batch_inputs ||
						  b->bytes + len > (size_t) tvdb_embedding_batch_tokens ||
						  (new_job && (alone_index(b->jobs[b->n - 1]) >= 0 ||
									   alone_index(tvdb_spi_text(i, 1)) >= 0))))
		{
			works = close_batch(works, w, cxt);
			w = NULL;
		}
		if (w == NULL)
			w = new_batch_work(s, owner, cxt);
		add_input(w, i, content, len);
	}
	if (w != NULL)
		works = close_batch(works, w, cxt);
	return works;
}

/* The ids (uuid) of the last result's first column, appended to ids. */
static Datum *
collect_ids(uint64 rows, Datum *ids, int *n)
{
	Datum	   *out = palloc(sizeof(Datum) * (*n + rows + 1));

	if (*n > 0)
		memcpy(out, ids, sizeof(Datum) * *n);
	for (uint64 i = 0; i < rows; i++)
	{
		bool		isnull;
		Datum		d = tvdb_spi_datum(i, 1, &isnull);

		if (!isnull)
			out[(*n)++] = tvdb_uuid_copy(d);
	}
	return out;
}

/*
 * Take up to n jobs into embedding_in_progress, with the ones of ours whose
 * lease lapsed there: a uuid[] of only these (others of ours may have
 * requests in flight).
 */
static Datum
take_jobs(const char *owner, int n)
{
	static const Oid types[4] = {TEXTOID, TEXTOID, INT4OID, INT4OID};
	Datum		values[4] = {CStringGetTextDatum("embedding_queued"), CStringGetTextDatum(owner),
	Int32GetDatum(n), Int32GetDatum(tvdb_lease_effective())};
	Datum	   *ids = NULL;
	int			nids = 0;
	uint64		rows;

	rows = tvdb_spi_run("SELECT unnest(tvdb._take($1, 'embedding_in_progress', $2, $3, $4))",
						4, types, values, NULL, SPI_OK_SELECT);
	ids = collect_ids(rows, ids, &nids);
	values[0] = CStringGetTextDatum("embedding_in_progress");
	rows = tvdb_spi_run("SELECT c.id FROM tvdb._claim($1, $2, $3, $4) AS c(id)",
						4, types, values, NULL, SPI_OK_SELECT);
	ids = collect_ids(rows, ids, &nids);
	return PointerGetDatum(construct_array(ids, nids, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
}

/* Chunks whose text was embedded before, with this model and these dimensions, are not sent. */
static void
from_cache(Datum jobs)
{
	static const Oid types[3] = {UUIDARRAYOID, TEXTOID, INT4OID};
	Datum		values[3] = {jobs, CStringGetTextDatum(tvdb_embedding_model), Int32GetDatum(tvdb_model_dimensions())};

	tvdb_spi_run("SELECT tvdb._embeddings_from_cache($1, $2, $3)", 3, types, values, NULL, SPI_OK_SELECT);
}

/* Jobs with no chunk left to embed (empty documents, or a crash after the last batch). */
static void
finish_empty(const char *owner)
{
	static const Oid types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(owner)};

	/* the jobs in progress are found in the queue of open jobs, not the history */
	tvdb_spi_run("SELECT tvdb._finish_embeddings(ARRAY(SELECT j.job_id FROM upload_pipeline.upload_jobs j "
				 "WHERE j.job_id = ANY (ARRAY(SELECT q.job_id FROM upload_pipeline.job_queue q "
				 "                            WHERE q.status = 'embedding_in_progress'))"
				 " AND j.lease_owner = $1 AND j.status = 'embedding_in_progress'), $1)",
				 1, types, values, NULL, SPI_OK_SELECT);
}

/*
 * Store one vector per input of the batch, record the request in the ledger
 * and finish the jobs whose chunks all have theirs.
 */
static void
store_vectors(TvdbWork *w, float **vectors, int dims, const char *service, int http_status,
			  double latency_ms, long prompt_tokens, const char *model)
{
	static const Oid types[6] = {FLOAT4ARRAYOID, UUIDARRAYOID, INT4ARRAYOID, UUIDARRAYOID, INT4OID, TEXTOID};
	static const Oid utypes[7] = {UUIDARRAYOID, INT4OID, FLOAT8OID, INT4OID, INT4OID, TEXTOID, TEXTOID};
	static const Oid ftypes[2] = {UUIDARRAYOID, TEXTOID};
	Batch	   *b = w->data;
	Datum		values[6];
	Datum	   *elems = palloc_extended(sizeof(Datum) * (Size) b->n * dims, MCXT_ALLOC_HUGE);
	Datum	   *idx = palloc(sizeof(Datum) * Max(b->n, 1));
	Datum		uvalues[7];
	char		unulls[7] = "       ";

	/* all vectors in one flat real[], input i at [i * dims + 1 : (i + 1) * dims], at unit length */
	for (int i = 0; i < b->n; i++)
	{
		tvdb_normalise(vectors[i], dims);
		for (int d = 0; d < dims; d++)
			elems[(Size) i * dims + d] = Float4GetDatum(vectors[i][d]);
		idx[i] = Int32GetDatum(b->chunk[i]);
	}
	values[0] = PointerGetDatum(construct_array(elems, b->n * dims, FLOAT4OID, 4, true, TYPALIGN_INT));
	values[1] = tvdb_uuid_array(b->docs, b->n);
	values[2] = PointerGetDatum(construct_array(idx, b->n, INT4OID, 4, true, TYPALIGN_INT));
	values[3] = tvdb_uuid_array(b->jobs, b->n);
	values[4] = Int32GetDatum(dims);
	values[5] = CStringGetTextDatum(model);
	/*
	 * Stored whether or not the job is still ours (an answer that comes after
	 * its lease lapsed is not paid for twice), into the chunks that still
	 * need a vector of the model in use; never for a job cancelled meanwhile
	 * (its cost is recorded below all the same).
	 */
	if (strcmp(service, "openai") != 0 || strcmp(model, tvdb_embedding_model) == 0)
		tvdb_spi_run("UPDATE upload_pipeline.document_chunks c SET embedding = $1[(v.i - 1) * $5 + 1 : v.i * $5], "
					 "model = $6 "
					 "FROM unnest($2, $3, $4) WITH ORDINALITY AS v(doc, idx, job, i) "
					 "WHERE c.document_id = v.doc AND c.chunk_index = v.idx AND c.job_id = v.job "
					 "AND c.embedding IS NULL AND NOT EXISTS (SELECT 1 FROM upload_pipeline.upload_jobs j "
					 "WHERE j.job_id = c.job_id AND j.status = 'cancelled')",
					 6, types, values, NULL, SPI_OK_UPDATE);
	pfree(DatumGetPointer(values[0]));
	pfree(elems);
	uvalues[0] = tvdb_job_ids(w);
	uvalues[1] = Int32GetDatum(http_status);
	uvalues[2] = Float8GetDatum(latency_ms);
	uvalues[3] = Int32GetDatum(b->n);
	uvalues[4] = Int32GetDatum((int32) prompt_tokens);
	unulls[4] = prompt_tokens >= 0 ? ' ' : 'n';
	uvalues[5] = CStringGetTextDatum(model);
	uvalues[6] = CStringGetTextDatum(service);
	tvdb_spi_run("SELECT tvdb._record_usage($7, 'embeddings', NULL, $1, $2, $3, "
				 "inputs => $4, prompt_tokens => $5, cost_usd => tvdb._openai_cost($5, $6), model => $6)",
				 7, utypes, uvalues, unulls, SPI_OK_SELECT);
	uvalues[1] = CStringGetTextDatum(w->owner);
	tvdb_spi_run("SELECT tvdb._embeddings_stored($1, $2)", 2, ftypes, uvalues, NULL, SPI_OK_SELECT);
}

/* ---- embed: OpenAI ---- */

/*
 * A request for the embeddings of input (a JSON array of strings) with the
 * model, encoding and dimensions in use; the query embedder (embed.c) sends
 * the same.
 */
TvdbHttp *
tvdb_openai_embeddings_request(const char *input, void *owner)
{
	StringInfoData body;
	TvdbHttp   *req;

	initStringInfo(&body);
	appendStringInfoString(&body, "{\"model\": ");
	escape_json(&body, tvdb_embedding_model);
	appendStringInfo(&body, ", \"encoding_format\": \"%s\"",
					 tvdb_embedding_encoding == TVDB_ENCODING_FLOAT ? "float" : "base64");
	if (tvdb_embedding_dimensions > 0)
		appendStringInfo(&body, ", \"dimensions\": %d", tvdb_embedding_dimensions);
	appendStringInfo(&body, ", \"input\": %s}", input);
	req = tvdb_http_new(tvdb_service_url(tvdb_openai_base_url, "/embeddings"), owner);
	tvdb_http_json(req, body.data);
	tvdb_http_bearer(req, tvdb_openai_api_key);
	pfree(body.data);
	return req;
}

static void
start_request(TvdbWork *w)
{
	Batch	   *b = w->data;
	MemoryContext old = MemoryContextSwitchTo(w->cxt);

	b->model = pstrdup(tvdb_embedding_model);
	w->req = tvdb_openai_embeddings_request(b->input.data, w);
	w->cost_tokens = (int64) b->bytes / Max(tvdb_chunk_bytes_per_token, 1) + 1;
	pfree(b->input.data);		/* the request holds its own copy */
	b->input.data = NULL;
	MemoryContextSwitchTo(old);
}

/*
 * Is the model in use priced?  Nothing is spent on one whose cost the ledger
 * cannot know: its jobs wait in embedding_queued, and the log says why (at
 * most once a minute).
 */
static bool
model_priced(void)
{
	static TimestampTz warned = 0;
	static const Oid types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(tvdb_embedding_model)};

	if (tvdb_spi_run("SELECT 1 FROM upload_pipeline.embedding_prices WHERE model = $1",
					 1, types, values, NULL, SPI_OK_SELECT) == 1)
		return true;
	if (TimestampDifferenceExceeds(warned, GetCurrentTimestamp(), 60 * 1000))
	{
		warned = GetCurrentTimestamp();
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("tvdb embeds nothing: embedding model \"%s\" has no price", tvdb_embedding_model),
				 errhint("INSERT INTO upload_pipeline.embedding_prices (model, usd_per_million_tokens) VALUES ('%s', <price>);",
						 tvdb_embedding_model)));
	}
	return false;
}

static List *
embed_claim(const char *owner, int n, MemoryContext cxt)
{
	Datum		jobs;
	List	   *works = NIL;
	ListCell   *lc;

	if (!model_priced())
		return NIL;
	jobs = take_jobs(owner, n);
	from_cache(jobs);

	if (ArrayGetNItems(ARR_NDIM(DatumGetArrayTypeP(jobs)), ARR_DIMS(DatumGetArrayTypeP(jobs))) > 0)
		works = batches(&tvdb_stage_embed, owner, jobs, cxt);
	foreach(lc, works)
		start_request(lfirst(lc));
	finish_empty(owner);
	return works;
}

/* Anything but a complete, well-formed answer: the SQL function says what is wrong. */
static void
record_error(TvdbWork *w)
{
	Oid			types[7 + TVDB_ANSWER_ARGS] = {TEXTOID, UUIDARRAYOID, UUIDARRAYOID, INT4ARRAYOID};
	Datum		values[7 + TVDB_ANSWER_ARGS];
	char		nulls[7 + TVDB_ANSWER_ARGS];
	Batch	   *b = w->data;
	Datum	   *idx = palloc(sizeof(Datum) * Max(b->n, 1));

	memset(nulls, ' ', sizeof(nulls));
	for (int i = 0; i < b->n; i++)
		idx[i] = Int32GetDatum(b->chunk[i]);
	values[0] = CStringGetTextDatum(w->owner);
	values[1] = tvdb_uuid_array(b->jobs, b->n);
	values[2] = tvdb_uuid_array(b->docs, b->n);
	values[3] = PointerGetDatum(construct_array(idx, b->n, INT4OID, 4, true, TYPALIGN_INT));
	tvdb_answer_args(w->req, types + 4, values + 4, nulls + 4);
	types[9] = INT4OID;
	values[9] = Int32GetDatum(tvdb_model_dimensions());
	types[10] = TEXTOID;
	values[10] = CStringGetTextDatum(tvdb_embedding_model);
	types[11] = TEXTOID;
	values[11] = w->answer_kind ? CStringGetTextDatum(w->answer_kind) : (Datum) 0;
	nulls[11] = w->answer_kind ? ' ' : 'n';
	tvdb_spi_run("SELECT tvdb._embeddings_received($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
				 12, types, values, nulls, SPI_OK_SELECT);
}

/*
 * OpenAI refused a request of several documents for good: none of them is
 * failed for it.  Each is given back to be embedded alone, so that only the
 * one at fault fails.
 */
static void
record_split(TvdbWork *w)
{
	Oid			types[3 + TVDB_ANSWER_ARGS] = {TEXTOID, UUIDARRAYOID, INT4OID};
	Datum		values[3 + TVDB_ANSWER_ARGS];
	char		nulls[3 + TVDB_ANSWER_ARGS];

	memset(nulls, ' ', sizeof(nulls));
	values[0] = CStringGetTextDatum(w->owner);
	values[1] = tvdb_job_ids(w);
	values[2] = Int32GetDatum(((Batch *) w->data)->n);
	tvdb_answer_args(w->req, types + 3, values + 3, nulls + 3);
	tvdb_spi_run("SELECT tvdb._embeddings_split($1, $2, $3, $4, $5, $6, $7, $8)",
				 3 + TVDB_ANSWER_ARGS, types, values, nulls, SPI_OK_SELECT);
	for (int i = 0; i < w->njobs; i++)
		set_alone(w->jobs[i], true);
}

/* A complete, well-formed answer is stored; anything else goes through record_error. */
static void
embed_record(TvdbWork *w)
{
	const char *failure = NULL;
	char	   *body = tvdb_http_text(w->req, &failure);
	TvdbEmbeddings e = {((Batch *) w->data)->n, tvdb_model_dimensions(), CurrentMemoryContext};

	if (w->answer == TVDB_ANSWER_PERMANENT && w->njobs > 1)
	{
		record_split(w);
		return;
	}
	if (w->njobs == 1)
		set_alone(w->jobs[0], false);

	if (w->req->status == 200 && body != NULL)
	{
		tvdb_read_embeddings(body, strlen(body), &e);
		if (e.error == NULL)
		{
			store_vectors(w, e.vectors, e.dims, "openai", (int) w->req->status, w->req->latency_ms,
						  e.prompt_tokens, ((Batch *) w->data)->model);
			return;
		}
	}
	record_error(w);
}

static bool
embed_runs(void)
{
	return tvdb_real_runs(TVDB_SERVICE_OPENAI);
}

const TvdbStage tvdb_stage_embed = {
	.name = "embed",
	.claims = TVDB_EMBEDDING_QUEUED,
	.batch = 64,
	.service = TVDB_SERVICE_OPENAI,
	.fails_to = TVDB_FAILED_EMBEDDING,
	.operation = "embeddings",
	.by_job = true,				/* many jobs' chunks share a request */
	.rate_limited = true,
	.runs = embed_runs,
	.claim = embed_claim,
	.record = embed_record,
};

/* ---- mock_embed: the built-in embedder, as a perfect service would answer ---- */

static List *
mock_embed_claim(const char *owner, int n, MemoryContext cxt)
{
	Datum		jobs = take_jobs(owner, n);
	ArrayType  *a = DatumGetArrayTypeP(jobs);
	Datum	   *ids;
	int			nids;
	List	   *works = NIL;

	deconstruct_array(a, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR, &ids, NULL, &nids);
	for (int i = 0; i < nids; i++)
	{
		TvdbWork   *w = tvdb_work_new(&tvdb_stage_mock_embed, owner, 1, cxt);

		w->jobs[0] = MemoryContextStrdup(w->cxt, DatumGetCString(DirectFunctionCall1(uuid_out, ids[i])));
		works = tvdb_work_append(works, w, cxt);
	}
	return works;
}

static void
mock_embed_run(List *works)
{
	static const Oid at[2] = {UUIDOID, TEXTOID};
	int			dims = tvdb_model_dimensions();
	char	  **ids = palloc(sizeof(char *) * Max(list_length(works), 1));
	const char *owner = ((TvdbWork *) linitial(works))->owner;
	List	   *bs;
	ListCell   *lc;

	foreach(lc, works)
	{
		TvdbWork   *w = lfirst(lc);

		ids[foreach_current_index(lc)] = w->jobs[0];
		if (w->leased_only)
		{
			Datum		av[2] = {DirectFunctionCall1(uuid_in, CStringGetDatum(w->jobs[0])),
			CStringGetTextDatum(w->owner)};

			tvdb_spi_run("SELECT tvdb._advance($1, $2, 'embedding_queued', 'embedding_in_progress', '{}', true)",
						 2, at, av, NULL, SPI_OK_SELECT);
		}
	}
	bs = batches(&tvdb_stage_mock_embed, owner, tvdb_uuid_array(ids, list_length(works)),
				 CurrentMemoryContext);
	foreach(lc, bs)
	{
		TvdbWork   *b = lfirst(lc);
		Batch	   *batch = b->data;
		float	  **vectors = palloc(sizeof(float *) * Max(batch->n, 1));

		for (int i = 0; i < batch->n; i++)
		{
			vectors[i] = palloc(sizeof(float) * dims);
			tvdb_mock_embed(batch->texts[i], strlen(batch->texts[i]), vectors[i], dims);
		}
		store_vectors(b, vectors, dims, "mock", 200, 0, -1, "mock");
		MemoryContextDelete(b->cxt);
	}
	finish_empty(owner);
}

static bool
mock_embed_runs(void)
{
	return tvdb_mock_runs(TVDB_SERVICE_OPENAI);
}

const TvdbStage tvdb_stage_mock_embed = {
	.name = "mock_embed",
	.claims = TVDB_EMBEDDING_QUEUED,
	.batch = 64,
	.service = TVDB_SERVICE_MOCK,
	.fails_to = TVDB_FAILED_EMBEDDING,
	.operation = "embeddings",
	.runs = mock_embed_runs,
	.claim = mock_embed_claim,
	.run = mock_embed_run,
};
