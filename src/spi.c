/*
 * spi.c — the one way tvdb's C code runs SQL, in application backends and in
 * the workers alike: each statement is prepared once per process and kept in
 * one plan cache keyed by its text and argument types, and every SPI result
 * code is checked against the one the caller expects.
 */
#include "tvdb.h"

#include "common/hashfn.h"
#include "utils/array.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/uuid.h"
#include "utils/memutils.h"

typedef struct PlanKey
{
	const char *sql;
	int			nargs;
	const Oid  *types;
} PlanKey;

typedef struct PlanEntry
{
	PlanKey		key;			/* must be first */
	SPIPlanPtr	plan;
} PlanEntry;

static HTAB *plans = NULL;

static uint32
plan_hash(const void *key, Size keysize)
{
	const PlanKey *k = key;
	uint32		h = hash_bytes((const unsigned char *) k->sql, (int) strlen(k->sql));

	if (k->nargs > 0)
		h = hash_combine(h, hash_bytes((const unsigned char *) k->types, k->nargs * (int) sizeof(Oid)));
	return h;
}

static int
plan_match(const void *a, const void *b, Size keysize)
{
	const PlanKey *x = a;
	const PlanKey *y = b;

	if (x->nargs != y->nargs || strcmp(x->sql, y->sql) != 0)
		return 1;
	return x->nargs > 0 && memcmp(x->types, y->types, x->nargs * sizeof(Oid)) != 0;
}

static void *
plan_keycopy(void *dest, const void *src, Size keysize)
{
	PlanKey    *d = dest;
	const PlanKey *s = src;
	Oid		   *types = MemoryContextAlloc(TopMemoryContext, sizeof(Oid) * Max(s->nargs, 1));

	if (s->nargs > 0)
		memcpy(types, s->types, s->nargs * sizeof(Oid));
	d->sql = MemoryContextStrdup(TopMemoryContext, s->sql);
	d->nargs = s->nargs;
	d->types = types;
	return dest;
}

/* The kept plan of sql with these argument types, prepared on first use. */
SPIPlanPtr
tvdb_plan(const char *sql, int nargs, const Oid *types)
{
	PlanKey		key = {sql, nargs, types};
	PlanEntry  *e;
	SPIPlanPtr	plan;

	if (plans == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(PlanKey);
		ctl.entrysize = sizeof(PlanEntry);
		ctl.hash = plan_hash;
		ctl.match = plan_match;
		ctl.keycopy = plan_keycopy;
		ctl.hcxt = TopMemoryContext;
		plans = hash_create("tvdb plans", 64, &ctl,
							HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_KEYCOPY | HASH_CONTEXT);
	}
	e = hash_search(plans, &key, HASH_FIND, NULL);
	if (e != NULL)
		return e->plan;
	/* the statements of every job's move keep their one generic plan (hot.c) */
	plan = SPI_prepare_cursor(sql, nargs, unconstify(Oid *, types),
							  tvdb_is_hot(sql) ? CURSOR_OPT_GENERIC_PLAN : 0);
	if (plan == NULL)
		elog(ERROR, "tvdb: could not prepare (%s): %s", SPI_result_code_string(SPI_result), sql);
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "tvdb: could not keep the plan of: %s", sql);
	e = hash_search(plans, &key, HASH_ENTER, NULL);
	e->plan = plan;
	return plan;
}

/* rc must be expect; anything else is a bug (errors raise before getting here). */
static uint64
checked(int rc, int expect, const char *sql)
{
	if (rc != expect)
		elog(ERROR, "tvdb: statement returned %s, expected %s: %s",
			 SPI_result_code_string(rc), SPI_result_code_string(expect), sql);
	return SPI_processed;
}

/*
 * Run sql with its arguments (nulls as for SPI_execute_plan, NULL for none);
 * expect is the SPI result code it must return.  The number of rows.
 */
uint64
tvdb_spi_run(const char *sql, int nargs, const Oid *types, Datum *values, const char *nulls, int expect)
{
	SPIPlanPtr	plan = tvdb_plan(sql, nargs, types);

	return checked(SPI_execute_plan(plan, values, nulls, false, 0), expect, sql);
}

/*
 * The same, but under the given snapshot instead of a new one: a claim made
 * from inside a caller's statement sees exactly the rows that statement sees.
 */
uint64
tvdb_spi_run_in_snapshot(const char *sql, int nargs, const Oid *types, Datum *values,
						 const char *nulls, Snapshot snapshot, int expect)
{
	SPIPlanPtr	plan = tvdb_plan(sql, nargs, types);

	return checked(SPI_execute_snapshot(plan, values, nulls, snapshot, InvalidSnapshot,
										false, true, 0),
				   expect, sql);
}

void
tvdb_spi_connect(void)
{
	int			rc = SPI_connect();

	if (rc != SPI_OK_CONNECT)
		elog(ERROR, "tvdb: SPI_connect returned %s", SPI_result_code_string(rc));
}

void
tvdb_spi_finish(void)
{
	int			rc = SPI_finish();

	if (rc != SPI_OK_FINISH)
		elog(ERROR, "tvdb: SPI_finish returned %s", SPI_result_code_string(rc));
}

/* Column col (1-based) of row of the last result, as text in the current context, or NULL. */
char *
tvdb_spi_text(uint64 row, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

/* Column col of row of the last result; *isnull says whether it is NULL. */
Datum
tvdb_spi_datum(uint64 row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);
}

/* A one-dimensional array of n items (nulls may be NULL: none), an argument for a statement. */
Datum
tvdb_array(Datum *items, bool *nulls, int n, Oid elemtype)
{
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int16		len;
	bool		byval;
	char		align;

	get_typlenbyvalalign(elemtype, &len, &byval, &align);
	return PointerGetDatum(construct_md_array(items, nulls, 1, dims, lbs, elemtype, len, byval, align));
}

/* A copy of a uuid in the current memory context (the original goes with its tuple or SPI result). */
Datum
tvdb_uuid_copy(Datum d)
{
	pg_uuid_t  *u = palloc(sizeof(pg_uuid_t));

	memcpy(u, DatumGetUUIDP(d), sizeof(pg_uuid_t));
	return UUIDPGetDatum(u);
}
