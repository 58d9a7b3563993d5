/*
 * read_embeddings.c — reads an OpenAI embeddings answer in C: data[].index,
 * data[].embedding and usage.prompt_tokens.  An answer for 2048 inputs of
 * 1536 dimensions is three million numbers; going through jsonb and numeric
 * in SQL costs more than everything else the worker does.  PostgreSQL's own
 * JSON lexer does the parsing and reports malformed input without raising.
 */
#include "stages/stages.h"

#include <math.h>

#include "common/base64.h"
#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#define MAX_DEPTH 8

typedef struct Reader
{
	TvdbEmbeddings *out;
	int			depth;
	char	   *field[MAX_DEPTH + 1];	/* last field name seen at each depth */
	bool		in_data;		/* inside the top-level "data" array */
	bool		in_vector;		/* inside data[i].embedding */
	int			index;			/* data[i].index, -1 until seen */
	float	   *vec;			/* data[i].embedding so far */
	int			n;
	int			cap;
	int			elements;		/* entries of data[] */
} Reader;

static bool
is(const char *field, const char *name)
{
	return field != NULL && strcmp(field, name) == 0;
}

static void
fail(Reader *r, const char *why)
{
	if (r->out->error == NULL)
		r->out->error = why;
}

static void
object_start(void *state)
{
	Reader	   *r = state;

	r->depth++;
	if (r->depth <= MAX_DEPTH)
		r->field[r->depth] = NULL;
	if (r->in_data && r->depth == 3)
	{
		r->index = -1;
		r->n = 0;
		r->elements++;
	}
}

static void
object_end(void *state)
{
	Reader	   *r = state;
	TvdbEmbeddings *e = r->out;

	if (r->in_data && r->depth == 3)
	{
		if (r->index < 0 || r->index >= e->n)
			fail(r, "an index is out of range");
		else if (e->vectors[r->index] != NULL)
			fail(r, "an index is answered twice");
		else if (r->n != e->dims)
			fail(r, psprintf("an embedding has %d dimensions, expected %d", r->n, e->dims));
		else
		{
			e->vectors[r->index] = MemoryContextAlloc(e->cxt, sizeof(float) * r->n);
			memcpy(e->vectors[r->index], r->vec, sizeof(float) * r->n);
			e->answered++;
		}
	}
	r->depth--;
}

static void
array_start(void *state)
{
	Reader	   *r = state;

	r->depth++;
	if (r->depth <= MAX_DEPTH)
		r->field[r->depth] = NULL;
	if (r->depth == 2 && is(r->field[1], "data"))
		r->in_data = true;
	else if (r->in_data && r->depth == 4 && is(r->field[3], "embedding"))
		r->in_vector = true;
}

static void
array_end(void *state)
{
	Reader	   *r = state;

	if (r->depth == 2)
		r->in_data = false;
	else if (r->depth == 4)
		r->in_vector = false;
	r->depth--;
}

static void
field_start(void *state, char *fname, bool isnull)
{
	Reader	   *r = state;

	if (r->depth <= MAX_DEPTH)
		r->field[r->depth] = fname;
}

/*
 * encoding_format "base64": the vector is the base64 of its float32s,
 * little-endian, as the official client decodes it.
 */
static void
read_base64_vector(Reader *r, const char *b64)
{
	int			len = strlen(b64);
	int			cap = pg_b64_dec_len(len);
	uint8	   *raw = palloc(Max(cap, 1));
	int			n = pg_b64_decode(b64, len, (char *) raw, cap);

	if (n < 0 || n % 4 != 0)
	{
		fail(r, "an embedding is not base64 of float32 values");
		return;
	}
	if (n / 4 > r->cap)
	{
		r->cap = n / 4;
		r->vec = repalloc(r->vec, sizeof(float) * r->cap);
	}
	r->n = 0;
	for (int i = 0; i < n; i += 4)
	{
		uint32		bits = (uint32) raw[i] | (uint32) raw[i + 1] << 8 |
			(uint32) raw[i + 2] << 16 | (uint32) raw[i + 3] << 24;
		float		v;

		memcpy(&v, &bits, sizeof(v));
		if (!isfinite(v))
		{
			fail(r, "an embedding holds a number out of range");
			return;
		}
		r->vec[r->n++] = v;
	}
}

static void
scalar(void *state, char *token, JsonTokenType type)
{
	Reader	   *r = state;
	char	   *end;

	if (r->in_vector && r->depth == 4)
	{
		float		v;

		if (type != JSON_TOKEN_NUMBER)
		{
			fail(r, "an embedding holds something other than numbers");
			return;
		}
		v = strtof(token, &end);
		if (*end != '\0' || !isfinite(v))
			fail(r, "an embedding holds a number out of range");
		if (r->n == r->cap)
		{
			r->cap = Max(r->cap * 2, 256);
			r->vec = repalloc(r->vec, sizeof(float) * r->cap);
		}
		r->vec[r->n++] = v;
	}
	else if (r->in_data && r->depth == 3 && is(r->field[3], "embedding") && type == JSON_TOKEN_STRING)
		read_base64_vector(r, token);
	else if (r->in_data && r->depth == 3 && is(r->field[3], "index"))
	{
		long		v = strtol(token, &end, 10);

		r->index = (type == JSON_TOKEN_NUMBER && *end == '\0' && v >= 0 && v < INT_MAX) ? (int) v : -1;
	}
	else if (r->depth == 2 && is(r->field[1], "usage") && is(r->field[2], "prompt_tokens") &&
			 type == JSON_TOKEN_NUMBER)
		r->out->prompt_tokens = strtol(token, NULL, 10);
	pfree(token);
}

/*
 * Read body (NUL-terminated) into e, whose n and dims the caller set.  The
 * vectors land in e->cxt; e->error says what is wrong, if anything.
 */
void
tvdb_read_embeddings(const char *body, size_t len, TvdbEmbeddings *e)
{
	MemoryContext work = AllocSetContextCreate(CurrentMemoryContext, "tvdb embeddings reader",
											   ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(work);
	Reader		r = {0};
	JsonSemAction sem = {0};
	JsonLexContext *lex;

	e->vectors = MemoryContextAllocZero(e->cxt, sizeof(float *) * Max(e->n, 1));
	e->answered = 0;
	e->prompt_tokens = -1;
	e->error = NULL;
	r.out = e;
	r.vec = palloc(sizeof(float) * 256);
	r.cap = 256;
	sem.semstate = &r;
	sem.object_start = object_start;
	sem.object_end = object_end;
	sem.array_start = array_start;
	sem.array_end = array_end;
	sem.object_field_start = field_start;
	sem.scalar = scalar;

	lex = makeJsonLexContextCstringLen(unconstify(char *, body), (int) len, PG_UTF8, true);
	if (pg_parse_json(lex, &sem) != JSON_SUCCESS)
	{
		e->error = NULL;
		fail(&r, "the answer is not valid JSON");
	}
	else if (r.elements != e->n)
	{
		/* the count is the first thing wrong with an answer */
		e->error = NULL;
		fail(&r, psprintf("%d embeddings for %d inputs", r.elements, e->n));
	}
	else if (e->answered != e->n)
		fail(&r, "the answer does not have one embedding per input");
	MemoryContextSwitchTo(old);
	if (e->error != NULL)
		e->error = MemoryContextStrdup(e->cxt, e->error);
	MemoryContextDelete(work);
}

PG_FUNCTION_INFO_V1(tvdb_embeddings_problem);

/*
 * tvdb._embeddings_problem(body text, inputs integer, dims integer) RETURNS
 * text: what is wrong with an embeddings answer for that many inputs of
 * that many dimensions, or NULL when nothing is.  The SQL that records an
 * answer asks this, so the rule lives here only.
 */
Datum
tvdb_embeddings_problem(PG_FUNCTION_ARGS)
{
	text	   *body = PG_GETARG_TEXT_PP(0);
	TvdbEmbeddings e = {PG_GETARG_INT32(1), PG_GETARG_INT32(2), CurrentMemoryContext};

	if (e.n < 0 || e.dims < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("inputs must be at least 0 and dims at least 1"),
				 errdetail("inputs is %d, dims is %d.", e.n, e.dims)));
	tvdb_read_embeddings(text_to_cstring(body), VARSIZE_ANY_EXHDR(body), &e);
	if (e.error == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(e.error));
}
