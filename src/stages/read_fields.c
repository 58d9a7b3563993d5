/*
 * read_fields.c — the top-level string fields of a JSON object, read in C: what
 * the worker needs from LlamaParse's commonest answers ({"id": ...,
 * "status": "PENDING"}) without going through jsonb in SQL.  PostgreSQL's
 * JSON lexer reports malformed input without raising.
 */
#include "stages/stages.h"

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"

typedef struct Top
{
	int			depth;
	bool		is_object;
	int			nkeys;
	const char *const *keys;
	char	  **values;
	int			want;			/* the key whose value comes next, -1 if none */
} Top;

static void
nest_start(void *state)
{
	Top		   *t = state;

	t->depth++;
}

static void
obj_start(void *state)
{
	Top		   *t = state;

	if (t->depth == 0)
		t->is_object = true;
	t->depth++;
}

static void
nest_end(void *state)
{
	Top		   *t = state;

	t->depth--;
}

static void
field_start(void *state, char *fname, bool isnull)
{
	Top		   *t = state;

	t->want = -1;
	if (t->depth != 1)
		return;
	for (int i = 0; i < t->nkeys; i++)
		if (strcmp(fname, t->keys[i]) == 0)
			t->want = i;
}

static void
scalar(void *state, char *token, JsonTokenType type)
{
	Top		   *t = state;

	if (t->depth == 1 && t->want >= 0 && type == JSON_TOKEN_STRING)
		t->values[t->want] = token;	/* later duplicates win, as in jsonb */
	else if (t->depth == 1 && t->want >= 0)
		t->values[t->want] = NULL;
	t->want = -1;
}

/*
 * True if body is a JSON object; values[i] is then its top-level string
 * keys[i] (palloc'd, de-escaped), or NULL when absent or not a string.
 */
bool
tvdb_json_top_strings(const char *body, size_t len, const char *const *keys, char **values, int nkeys)
{
	Top			t = {0, false, nkeys, keys, values, -1};
	JsonSemAction sem = {0};
	JsonLexContext *lex;

	for (int i = 0; i < nkeys; i++)
		values[i] = NULL;
	sem.semstate = &t;
	sem.object_start = obj_start;
	sem.object_end = nest_end;
	sem.array_start = nest_start;
	sem.array_end = nest_end;
	sem.object_field_start = field_start;
	sem.scalar = scalar;
	lex = makeJsonLexContextCstringLen(unconstify(char *, body), (int) len, PG_UTF8, true);
	if (pg_parse_json(lex, &sem) != JSON_SUCCESS || !t.is_object)
	{
		for (int i = 0; i < nkeys; i++)
			values[i] = NULL;
		return false;
	}
	return true;
}
