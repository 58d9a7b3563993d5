/*
 * json_fields.c — string fields of a JSON object, read in C: what the worker
 * needs from the services' commonest answers ({"id": ..., "status":
 * "PENDING"}) and error bodies ({"error": {"code": ...}}) without going
 * through jsonb in SQL.  A key is a top-level name, or "parent.child" for a
 * field of a top-level object.  PostgreSQL's JSON lexer reports malformed
 * input without raising.
 */
#include "tvdb.h"

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"

typedef struct Fields
{
	int			depth;
	bool		is_object;
	bool		in_child;		/* inside the object value of a top-level field */
	const char *parent;			/* that field's name */
	const char *field;			/* the name whose value comes next, NULL if none */
	int			nkeys;
	const char *const *keys;
	char	  **values;
} Fields;

static void
array_start(void *state)
{
	Fields	   *f = state;

	f->depth++;
	f->field = NULL;
}

static void
object_start(void *state)
{
	Fields	   *f = state;

	if (f->depth == 0)
		f->is_object = true;
	else if (f->depth == 1 && f->field != NULL)
	{
		f->in_child = true;
		f->parent = f->field;
	}
	f->depth++;
	f->field = NULL;
}

static void
nest_end(void *state)
{
	Fields	   *f = state;

	f->depth--;
	if (f->depth == 1)
		f->in_child = false;
}

static void
field_start(void *state, char *fname, bool isnull)
{
	Fields	   *f = state;

	f->field = (f->depth == 1 || (f->depth == 2 && f->in_child)) ? fname : NULL;
}

/* The key the value at hand answers, -1 if none. */
static int
wanted(Fields *f)
{
	for (int i = 0; i < f->nkeys; i++)
	{
		const char *dot = strchr(f->keys[i], '.');

		if (f->depth == 1 && dot == NULL && strcmp(f->keys[i], f->field) == 0)
			return i;
		if (f->depth == 2 && dot != NULL && strcmp(dot + 1, f->field) == 0 &&
			strncmp(f->keys[i], f->parent, dot - f->keys[i]) == 0 &&
			f->parent[dot - f->keys[i]] == '\0')
			return i;
	}
	return -1;
}

static void
scalar(void *state, char *token, JsonTokenType type)
{
	Fields	   *f = state;
	int			i = f->field != NULL ? wanted(f) : -1;

	/* later duplicates win, as in jsonb; a value that is no string is NULL */
	if (i >= 0)
		f->values[i] = type == JSON_TOKEN_STRING ? token : NULL;
	f->field = NULL;
}

/*
 * True if body is a JSON object; values[i] is then the string at keys[i]
 * (palloc'd, de-escaped), or NULL when absent or not a string.
 */
bool
tvdb_json_fields(const char *body, size_t len, const char *const *keys, char **values, int nkeys)
{
	Fields		f = {0};
	JsonSemAction sem = {0};
	JsonLexContext *lex;

	for (int i = 0; i < nkeys; i++)
		values[i] = NULL;
	f.nkeys = nkeys;
	f.keys = keys;
	f.values = values;
	sem.semstate = &f;
	sem.object_start = object_start;
	sem.object_end = nest_end;
	sem.array_start = array_start;
	sem.array_end = nest_end;
	sem.object_field_start = field_start;
	sem.scalar = scalar;
	lex = makeJsonLexContextCstringLen(unconstify(char *, body), (int) len, PG_UTF8, true);
	if (pg_parse_json(lex, &sem) != JSON_SUCCESS || !f.is_object)
	{
		for (int i = 0; i < nkeys; i++)
			values[i] = NULL;
		return false;
	}
	return true;
}
