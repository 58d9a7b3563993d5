/*
 * embed.c — the embedding stage: claim jobs, cut their chunks into requests
 * within OpenAI's limits, store the vectors (read in C, embedjson.c) and
 * finish the jobs; in mock mode the built-in embedder answers instead.
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
/* How many jobs one embedding claim takes. */
#define EMBED_JOBS 64

typedef struct Batch
{
	const char *owner;
	int			n;
	int			cap;
	char	  **jobs;
	char	  **docs;
	int		   *chunk;
	char	  **texts;			/* mock mode only: the texts themselves */
	StringInfoData input;		/* JSON array of the texts */
	size_t		bytes;
} Batch;

typedef struct EmbedClaim
{
	const char *owner;
	bool		mock;
	List	   *batches;
} EmbedClaim;

static Batch *
new_batch(const char *owner, bool keep_texts)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	Batch	   *b = palloc0(sizeof(Batch));

	b->owner = owner;
	b->cap = 64;
	b->jobs = palloc(sizeof(char *) * b->cap);
	b->docs = palloc(sizeof(char *) * b->cap);
	b->chunk = palloc(sizeof(int) * b->cap);
	if (keep_texts)
		b->texts = palloc(sizeof(char *) * b->cap);
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
		if (b->texts)
			pfree(b->texts[i]);
	}
	if (b->texts)
		pfree(b->texts);
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
	tvdb_exec("SELECT unnest(tvdb._take($1, 'embedding_in_progress', $2, $3, $4))", 4, types, values, NULL);
	claimed = collect_ids(&nclaimed, NULL, 0);
	values[0] = CStringGetTextDatum("embedding_in_progress");
	tvdb_exec("SELECT c.id FROM tvdb._claim($1, $2, $3, $4) AS c(id)", 4, types, values, NULL);
	claimed = collect_ids(&nclaimed, claimed, nclaimed);
	if (nclaimed == 0)
		return;
	ids = PointerGetDatum(construct_array(claimed, nclaimed, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
	tvdb_exec("SELECT c.job_id::text, c.document_id::text, c.chunk_index, c.content "
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
			b = new_batch(e->owner, e->mock);
			appendStringInfoChar(&b->input, '[');
		}
		if (b->n == b->cap)
		{
			b->cap *= 2;
			b->jobs = repalloc(b->jobs, sizeof(char *) * b->cap);
			b->docs = repalloc(b->docs, sizeof(char *) * b->cap);
			b->chunk = repalloc(b->chunk, sizeof(int) * b->cap);
			if (b->texts)
				b->texts = repalloc(b->texts, sizeof(char *) * b->cap);
		}
		if (b->texts)
			b->texts[b->n] = MemoryContextStrdup(TopMemoryContext, content);
		b->jobs[b->n] = tvdb_col_text((int) i, 1);
		b->docs[b->n] = tvdb_col_text((int) i, 2);
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

	tvdb_exec("SELECT tvdb._finish_embeddings(ARRAY(SELECT j.job_id FROM upload_pipeline.upload_jobs j "
			  "WHERE j.lease_owner = $1 AND j.status = 'embedding_in_progress'), $1)",
			  1, types, values, NULL);
}

static void record_embedding_error(Batch *b, TvdbHttp *req);

typedef struct EmbedAnswer
{
	TvdbHttp   *req;
	Batch	   *batch;
} EmbedAnswer;

/*
 * Store one vector per input of the batch, record the request in the ledger
 * and finish the jobs whose chunks all have theirs.
 */
static void
store_vectors(Batch *b, float **vectors, int dims, const char *service, int http_status,
			  double latency_ms, long prompt_tokens, double usd_per_mtok)
{
	Oid			types[5] = {FLOAT4ARRAYOID, UUIDARRAYOID, INT4ARRAYOID, UUIDARRAYOID, INT4OID};
	Datum		values[5];
	Datum	   *elems = palloc_extended(sizeof(Datum) * (Size) b->n * dims, MCXT_ALLOC_HUGE);
	Datum	   *idx = palloc(sizeof(Datum) * Max(b->n, 1));
	Oid			utypes[7] = {UUIDARRAYOID, INT4OID, FLOAT8OID, INT4OID, INT4OID, FLOAT8OID, TEXTOID};
	Datum		uvalues[7];
	char		unulls[7] = "       ";

	/* all vectors in one flat real[], input i at [i * dims + 1 : (i + 1) * dims] */
	for (int i = 0; i < b->n; i++)
	{
		for (int d = 0; d < dims; d++)
			elems[(Size) i * dims + d] = Float4GetDatum(vectors[i][d]);
		idx[i] = Int32GetDatum(b->chunk[i]);
	}
	values[0] = PointerGetDatum(construct_array(elems, b->n * dims, FLOAT4OID, 4, true, TYPALIGN_INT));
	values[1] = tvdb_uuid_array(b->docs, b->n);
	values[2] = PointerGetDatum(construct_array(idx, b->n, INT4OID, 4, true, TYPALIGN_INT));
	values[3] = tvdb_uuid_array(b->jobs, b->n);
	values[4] = Int32GetDatum(dims);
	tvdb_exec("UPDATE upload_pipeline.document_chunks c SET embedding = $1[(v.i - 1) * $5 + 1 : v.i * $5] "
			  "FROM unnest($2, $3, $4) WITH ORDINALITY AS v(doc, idx, job, i) "
			  "WHERE c.document_id = v.doc AND c.chunk_index = v.idx AND c.job_id = v.job",
			  5, types, values, NULL);
	pfree(DatumGetPointer(values[0]));
	pfree(elems);
	uvalues[0] = values[3];
	uvalues[1] = Int32GetDatum(http_status);
	uvalues[2] = Float8GetDatum(latency_ms);
	uvalues[3] = Int32GetDatum(b->n);
	uvalues[4] = Int32GetDatum((int32) prompt_tokens);
	unulls[4] = prompt_tokens >= 0 ? ' ' : 'n';
	uvalues[5] = Float8GetDatum(usd_per_mtok);
	uvalues[6] = CStringGetTextDatum(service);
	tvdb_exec("SELECT tvdb._record_usage($7, 'embeddings', NULL, ARRAY(SELECT DISTINCT unnest($1)), $2, $3, "
			  "inputs => $4, prompt_tokens => $5, cost_usd => (coalesce($5, 0) * $6 / 1e6)::numeric)",
			  7, utypes, uvalues, unulls);
	uvalues[1] = CStringGetTextDatum(b->owner);
	utypes[1] = TEXTOID;
	tvdb_exec("SELECT tvdb._finish_embeddings($1, $2)", 2, utypes, uvalues, NULL);
}

/*
 * A complete, well-formed OpenAI answer is stored; false (nothing written)
 * when it needs the SQL path, which explains what is wrong with it.
 */
static bool
store_embeddings(Batch *b, TvdbHttp *req, const char *body)
{
	TvdbEmbeddings e = {b->n, tvdb_model_dimensions(), CurrentMemoryContext};

	tvdb_read_embeddings(body, strlen(body), &e);
	if (e.error != NULL)
		return false;
	store_vectors(b, e.vectors, e.dims, "openai", (int) req->status, req->latency_ms,
				  e.prompt_tokens, tvdb_openai_usd_per_mtok);
	return true;
}

static void
record_embeddings(void *arg)
{
	EmbedAnswer *a = arg;
	const char *failure = NULL;
	char	   *body = tvdb_body_text(a->req, &failure);

	if (a->req->status == 200 && body != NULL && store_embeddings(a->batch, a->req, body))
		return;
	record_embedding_error(a->batch, a->req);
}

/* Anything but a complete, well-formed answer: the SQL function says what is wrong. */
static void
record_embedding_error(Batch *b, TvdbHttp *req)
{
	Oid			types[6 + TVDB_ANSWER_ARGS] = {TEXTOID, UUIDARRAYOID, UUIDARRAYOID, INT4ARRAYOID};
	Datum		values[6 + TVDB_ANSWER_ARGS];
	char		nulls[6 + TVDB_ANSWER_ARGS];
	Datum	   *idx = palloc(sizeof(Datum) * b->n);

	memset(nulls, ' ', sizeof(nulls));
	for (int i = 0; i < b->n; i++)
		idx[i] = Int32GetDatum(b->chunk[i]);
	values[0] = CStringGetTextDatum(b->owner);
	values[1] = tvdb_uuid_array(b->jobs, b->n);
	values[2] = tvdb_uuid_array(b->docs, b->n);
	values[3] = PointerGetDatum(construct_array(idx, b->n, INT4OID, 4, true, TYPALIGN_INT));
	tvdb_answer_args(req, types + 4, values + 4, nulls + 4);
	types[9] = INT4OID;
	values[9] = Int32GetDatum(tvdb_model_dimensions());
	types[10] = FLOAT8OID;
	values[10] = Float8GetDatum(tvdb_openai_usd_per_mtok);
	tvdb_exec("SELECT tvdb._embeddings_received($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
		tvdb_release_after_error(&t);
	}
}

static void
embed_done(TvdbHttp *req)
{
	EmbedAnswer a = {req, req->arg};

	if (!tvdb_in_xact("tvdb: storing embeddings", record_embeddings, &a))
		tvdb_in_xact("tvdb: releasing jobs", release_batch, a.batch);
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

/* Mock: the built-in embedder answers, as a perfect service would. */
static void
mock_embed(void *arg)
{
	Batch	   *b = arg;
	int			dims = tvdb_model_dimensions();
	float	  **vectors = palloc(sizeof(float *) * Max(b->n, 1));

	for (int i = 0; i < b->n; i++)
	{
		vectors[i] = palloc(sizeof(float) * dims);
		tvdb_mock_embed(b->texts[i], strlen(b->texts[i]), vectors[i], dims);
	}
	store_vectors(b, vectors, dims, "mock", 200, 0, -1, 0);
}

int
tvdb_dispatch_embeddings(const char *owner, bool mock)
{
	EmbedClaim e = {owner, mock, NIL};
	ListCell   *lc;
	int			started = 0;

	if (!tvdb_in_xact("tvdb: claiming embedding jobs", embed_claim, &e))
		return 0;
	foreach(lc, e.batches)
	{
		Batch	   *b = lfirst(lc);

		if (mock)
		{
			if (!tvdb_in_xact("tvdb: mock embeddings", mock_embed, b))
				tvdb_in_xact("tvdb: releasing jobs", release_batch, b);
			free_batch(b);
		}
		else
			start_embedding(b);
		started++;
	}
	list_free(e.batches);
	tvdb_in_xact("tvdb: finishing embedding jobs", finish_claimed, (void *) owner);
	return started;
}
