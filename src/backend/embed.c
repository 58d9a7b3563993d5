/*
 * embed.c — tvdb.embed(query, model): a question's vector, made in the
 * calling backend by what embeds the documents now — OpenAI with the same
 * model, encoding and dimensions, or the built-in embedder in mock mode (and
 * in hybrid mode while OpenAI cannot be used).
 *
 * A request to OpenAI goes through the worker's own pieces: the circuit and
 * rate buckets (hooks.c), the request builder and answer reader of the
 * embedding stage, the HTTP driver (waiting on the latch, so cancel and
 * statement_timeout stop it at once), and the usage ledger: its row is
 * committed before it goes, in a transaction of its own (query_ledger.c),
 * and settled in the caller's.
 *
 * Recent answers are kept in a small LRU cache in the backend
 * (tvdb.query_cache_entries), keyed by model, dimensions and text.
 */
#include "stages/stages.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

PG_FUNCTION_INFO_V1(tvdb_embed);
PG_FUNCTION_INFO_V1(tvdb_embed_query);

/* Chunks are cut below this, so a query this long is within every model's input limit. */
#define MAX_QUERY_BYTES 8192

typedef struct Cached
{
	uint32		hash;
	uint64		used;			/* 0: empty */
	char	   *model;
	int			dims;
	char	   *text;
	float	   *vector;
} Cached;

static Cached *cache = NULL;
static int	cache_size = 0;
static uint64 cache_tick = 0;

static uint32
cache_hash(const char *model, int dims, const char *text)
{
	uint32		h = hash_bytes((const unsigned char *) text, (int) strlen(text));

	h = hash_combine(h, hash_bytes((const unsigned char *) model, (int) strlen(model)));
	return hash_combine(h, (uint32) dims);
}

static void
cache_clear(void)
{
	for (int i = 0; i < cache_size; i++)
		if (cache[i].used)
		{
			pfree(cache[i].model);
			pfree(cache[i].text);
			pfree(cache[i].vector);
		}
	if (cache)
		pfree(cache);
	cache = NULL;
	cache_size = 0;
}

static Cached *
cache_find(const char *model, int dims, const char *text)
{
	uint32		h = cache_hash(model, dims, text);

	if (cache_size != tvdb_query_cache_entries)
		cache_clear();			/* resized: start afresh */
	for (int i = 0; i < cache_size; i++)
		if (cache[i].used && cache[i].hash == h && cache[i].dims == dims &&
			strcmp(cache[i].model, model) == 0 && strcmp(cache[i].text, text) == 0)
		{
			cache[i].used = ++cache_tick;
			return &cache[i];
		}
	return NULL;
}

static void
cache_put(const char *model, int dims, const char *text, const float *vector)
{
	Cached	   *slot;

	if (tvdb_query_cache_entries <= 0)
		return;
	if (cache == NULL)
	{
		cache = MemoryContextAllocZero(TopMemoryContext, sizeof(Cached) * tvdb_query_cache_entries);
		cache_size = tvdb_query_cache_entries;
	}
	slot = &cache[0];
	for (int i = 1; i < cache_size && slot->used; i++)
		if (cache[i].used < slot->used)
			slot = &cache[i];	/* an empty one, else the least recently used */
	if (slot->used)
	{
		pfree(slot->model);
		pfree(slot->text);
		pfree(slot->vector);
	}
	slot->hash = cache_hash(model, dims, text);
	slot->used = ++cache_tick;
	slot->model = MemoryContextStrdup(TopMemoryContext, model);
	slot->dims = dims;
	slot->text = MemoryContextStrdup(TopMemoryContext, text);
	slot->vector = MemoryContextAlloc(TopMemoryContext, sizeof(float) * dims);
	memcpy(slot->vector, vector, sizeof(float) * dims);
}

/* The model documents are embedded with now: the mock's, or tvdb.embedding_model. */
static const char *
model_in_use(void)
{
	return tvdb_mock_runs(TVDB_SERVICE_OPENAI) ? "mock" : tvdb_embedding_model;
}

static void
check_query(const char *query)
{
	size_t		len = strlen(query);

	if (len == 0 || strspn(query, " \t\r\n") == len)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the query is empty"),
				 errhint("Pass the question to embed as text.")));
	if (len > MAX_QUERY_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the query is %zu bytes, more than the %d a query may have", len, MAX_QUERY_BYTES),
				 errdetail("Chunks are cut below %d bytes so that every input is within the model's limit.",
						   MAX_QUERY_BYTES),
				 errhint("Ask a shorter question, or upload the text as a document.")));
}

/* A requested model other than the documents' is refused: their vectors could not be compared. */
static void
check_model(const char *requested)
{
	const char *in_use = model_in_use();

	if (strcmp(requested, "mock") == 0 || strcmp(requested, in_use) == 0)
		return;
	if (strcmp(requested, tvdb_embedding_model) == 0 && tvdb_service_mode == TVDB_MODE_MOCK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("documents are embedded with model \"mock\", not \"%s\"", requested),
				 errdetail("tvdb.service_mode is mock: nothing is sent to OpenAI."),
				 errhint("Leave model out to use \"mock\".")));
	if (strcmp(requested, tvdb_embedding_model) == 0)
		return;					/* hybrid mode: OpenAI's, if it answers */
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("documents are embedded with model \"%s\", not \"%s\"", in_use, requested),
			 errdetail("A query's vector is only comparable with vectors of its own model and dimensions."),
			 errhint("Leave model out to use \"%s\"; tvdb.embedding_model and tvdb.service_mode decide it.",
					 in_use)));
}

/* Why OpenAI may not be asked now, from the circuit's own view. */
static void
refuse_unavailable(long due_ms)
{
	char	   *state = "unknown";
	char	   *last_error = NULL;

	if (tvdb_spi_run("SELECT state, last_error FROM tvdb.circuits WHERE service = 'openai'",
					 0, NULL, NULL, NULL, SPI_OK_SELECT) == 1)
	{
		state = tvdb_spi_text(0, 1);
		last_error = tvdb_spi_text(0, 2);
	}
	ereport(ERROR,
			(errcode(ERRCODE_TVDB_SERVICE_UNAVAILABLE),
			 errmsg("openai cannot embed the query now: its circuit is %s", state),
			 last_error ? errdetail("Its last error: %s", last_error) : 0,
			 strcmp(state, "blocked") == 0
			 ? errhint("A key or quota problem blocks it: fix the configuration and reload, or call tvdb.reset_circuit('openai').")
			 : errhint("Try again in %ld ms, or search with model => 'mock' over the mock's vectors.",
					   Max(due_ms, 1))));
}

/*
 * Wait until the circuit and the rate buckets let one request of this many
 * tokens go (no longer than a request's timeout), or refuse.
 */
static void
wait_for_turn(int64 tokens)
{
	TimestampTz give_up = GetCurrentTimestamp() + (int64) tvdb_http_timeout_ms * 1000;

	for (;;)
	{
		long		due_ms = tvdb_query_may_send(tokens);

		if (due_ms == 0)
			return;
		if (due_ms < 0 || GetCurrentTimestamp() + due_ms * 1000 > give_up)
			refuse_unavailable(due_ms);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, due_ms,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* The request's ledger row, committed before it goes (query_ledger.c); a budget without room refuses. */
static int64
reserve(double estimate)
{
	char	   *refusal = NULL;
	char	   *owner = psprintf("query by %s pid %d", GetUserNameFromId(GetSessionUserId(), false), MyProcPid);
	int64		id = tvdb_query_reserve(estimate, tvdb_embedding_model, owner, &refusal);

	if (id == 0)
		ereport(ERROR,
				(errcode(ERRCODE_TVDB_BUDGET_EXHAUSTED),
				 errmsg("a budget has no room to embed the query"),
				 errdetail("%s.", refusal ? refusal : "refused"),
				 errhint("Raise the limit with tvdb.set_budget(), wait for the period to roll over, "
						 "or search with a vector you have.")));
	return id;
}

/* The request's answer on its ledger row (in the caller's transaction). */
static void
settle(int64 usage_id, TvdbHttp *req, long prompt_tokens, const char *failure)
{
	static const Oid types[6] = {INT8OID, INT4OID, FLOAT8OID, INT4OID, TEXTOID, TEXTOID};
	Datum		values[6];
	char		nulls[6] = "      ";

	values[0] = Int64GetDatum(usage_id);
	values[1] = Int32GetDatum((int32) req->status);
	values[2] = Float8GetDatum(req->latency_ms);
	values[3] = Int32GetDatum((int32) prompt_tokens);
	nulls[3] = prompt_tokens >= 0 ? ' ' : 'n';
	values[4] = CStringGetTextDatum(tvdb_embedding_model);
	values[5] = failure ? CStringGetTextDatum(failure) : (Datum) 0;
	nulls[5] = failure ? ' ' : 'n';
	tvdb_spi_run("SELECT tvdb._query_embedded($1, $2, $3, $4, $5, $6)", 6, types, values, nulls, SPI_OK_SELECT);
}

/* Send the request and wait for its answer; cancel and statement_timeout interrupt. */
static void
send_and_wait(TvdbHttp *req)
{
	static bool started = false;
	List	   *done = NIL;

	if (!started)
	{
		tvdb_http_init();
		started = true;
	}
	tvdb_http_start(req);
	while (done == NIL)
	{
		CHECK_FOR_INTERRUPTS();
		done = tvdb_http_wait(1000, true);
	}
}

/* OpenAI's vector of query (UTF-8), at unit length, in vector (dims floats). */
static void
embed_remote(const char *query, float *vector, int dims)
{
	int64		tokens = (int64) strlen(query) / Max(tvdb_chunk_bytes_per_token, 1) + 1;
	static const Oid ptypes[2] = {INT4OID, TEXTOID};
	Datum		pvalues[2] = {Int32GetDatum((int32) tokens), CStringGetTextDatum(tvdb_embedding_model)};
	bool		isnull;
	double		estimate;
	int64		usage_id;
	StringInfoData input;
	TvdbWork   *w;
	TvdbEmbeddings e = {1, dims, CurrentMemoryContext};
	const char *failure = NULL;
	char	   *body;

	if (tvdb_openai_api_key[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_TVDB_SERVICE_UNAVAILABLE),
				 errmsg("openai cannot embed the query: tvdb.openai_api_key is not set"),
				 errhint("Set the key and reload, or use tvdb.service_mode = 'mock' offline.")));
	tvdb_spi_run("SELECT tvdb._openai_cost($1, $2)::float8", 2, ptypes, pvalues, NULL, SPI_OK_SELECT);
	estimate = DatumGetFloat8(tvdb_spi_datum(0, 1, &isnull));
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("embedding model \"%s\" has no price", tvdb_embedding_model),
				 errdetail("Nothing is spent on a model whose cost the ledger cannot know."),
				 errhint("INSERT INTO upload_pipeline.embedding_prices (model, usd_per_million_tokens) VALUES ('%s', <price>);",
						 tvdb_embedding_model)));
	wait_for_turn(tokens);
	usage_id = reserve(estimate);

	initStringInfo(&input);
	appendStringInfoChar(&input, '[');
	escape_json(&input, query);
	appendStringInfoChar(&input, ']');
	w = tvdb_work_new(&tvdb_stage_embed, "query", 0, CurrentMemoryContext);
	w->req = tvdb_openai_embeddings_request(input.data, w);
	send_and_wait(w->req);
	tvdb_after_answer(w);		/* moves the circuit, as the worker's answers do */
	tvdb_write_alerts();

	body = tvdb_http_text(w->req, &failure);
	if (w->answer == TVDB_ANSWER_SUCCESS && body != NULL)
	{
		tvdb_read_embeddings(body, strlen(body), &e);
		failure = e.error;
	}
	else if (failure == NULL)
		failure = tvdb_http_failure(w->req) ? tvdb_http_failure(w->req)
			: psprintf("HTTP %ld (%s)", w->req->status, w->answer_kind);
	if (failure == NULL && !tvdb_normalise(e.vectors[0], dims))
		failure = "the vector has no length";
	settle(usage_id, w->req, failure ? -1 : e.prompt_tokens, failure);
	if (failure != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_TVDB_SERVICE_UNAVAILABLE),
				 errmsg("openai did not embed the query: %s", failure),
				 errdetail("Answer kind: %s; the request is in the usage ledger.", w->answer_kind),
				 errhint("tvdb.circuits shows whether openai is answering.")));
	memcpy(vector, e.vectors[0], sizeof(float) * dims);
}

/* The query's vector and the model that made it. */
static ArrayType *
embed(text *query_text, text *model_text, const char **model_used)
{
	char	   *query = text_to_cstring(query_text);
	const char *model = model_text ? text_to_cstring(model_text) : model_in_use();
	int			dims = tvdb_model_dimensions();
	float	   *vector = palloc(sizeof(float) * dims);
	Datum	   *elems = palloc(sizeof(Datum) * dims);
	Cached	   *hit;

	check_query(query);
	check_model(model);
	*model_used = model;
	if (strcmp(model, "mock") == 0)
		tvdb_mock_embed(query, strlen(query), vector, dims);
	else if ((hit = cache_find(model, dims, query)) != NULL)
		memcpy(vector, hit->vector, sizeof(float) * dims);
	else
	{
		char	   *utf8 = pg_server_to_any(query, strlen(query), PG_UTF8);

		tvdb_spi_connect();
		embed_remote(utf8, vector, dims);
		tvdb_spi_finish();
		cache_put(model, dims, query, vector);
	}
	for (int d = 0; d < dims; d++)
		elems[d] = Float4GetDatum(vector[d]);
	return construct_array(elems, dims, FLOAT4OID, 4, true, TYPALIGN_INT);
}

/* tvdb.embed(query text, model text DEFAULT NULL) RETURNS real[] */
Datum
tvdb_embed(PG_FUNCTION_ARGS)
{
	const char *model;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_ARRAYTYPE_P(embed(PG_GETARG_TEXT_PP(0), PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1), &model));
}

/*
 * tvdb._embed_query(query text, model text, OUT model text, OUT embedding
 * real[]): the same, with the model that made it, for tvdb.search.
 */
Datum
tvdb_embed_query(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	const char *model;
	ArrayType  *vector;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the query is NULL"),
				 errhint("Pass the question to search with as text.")));
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "tvdb._embed_query must return a record");
	vector = embed(PG_GETARG_TEXT_PP(0), PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1), &model);
	values[0] = CStringGetTextDatum(model);
	values[1] = PointerGetDatum(vector);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
