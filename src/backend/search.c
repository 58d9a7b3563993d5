/*
 * search.c — exact nearest-chunk search: an aggregate that keeps the k best
 * chunks in a bounded heap while PostgreSQL scans the vectors, in parallel
 * when it chooses to (each worker keeps its own heap; the leader merges
 * them).  Stored vectors are unit length (normalised when stored), so every
 * metric ranks by the dot product with the query; the metric only decides
 * the distance reported.  Per row: one dot product over the vector as it
 * lies in the buffer, no allocation unless the chunk enters the heap.
 */
#include "tvdb.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "libpq/pqformat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"
#include "utils/uuid.h"

PG_FUNCTION_INFO_V1(tvdb_nearest_step);
PG_FUNCTION_INFO_V1(tvdb_nearest_combine);
PG_FUNCTION_INFO_V1(tvdb_nearest_serial);
PG_FUNCTION_INFO_V1(tvdb_nearest_deserial);
PG_FUNCTION_INFO_V1(tvdb_nearest_final);
PG_FUNCTION_INFO_V1(tvdb_search_args);

#define MAX_K 10000

typedef enum Metric
{
	METRIC_COSINE,
	METRIC_INNER_PRODUCT,
	METRIC_L2
} Metric;

typedef struct Hit
{
	double		dot;
	pg_uuid_t	document;
	int32		chunk;
} Hit;

typedef struct Nearest
{
	int			k;
	int			n;				/* hits held, <= k */
	int			dims;
	Metric		metric;
	double		query_norm;
	int64		mismatched;		/* vectors of another dimension, skipped */
	float	   *query;
	Hit			hits[FLEXIBLE_ARRAY_MEMBER];	/* a min-heap on dot */
} Nearest;

/*
 * The dot product, in 32 lanes of independent sums so the compiler can use
 * the widest vector unit it has (GCC and clang vector extensions); on x86-64
 * an AVX2 copy is chosen at load time where the CPU has it.
 */
typedef float v8sf __attribute__((vector_size(32)));

#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef VECTOR_CLONES
#define VECTOR_CLONES
#endif

VECTOR_CLONES static double
dot(const float *a, const float *b, int n)
{
	v8sf		s0 = {0},
				s1 = {0},
				s2 = {0},
				s3 = {0};
	v8sf		x[4],
				y[4];
	float		lanes[8];
	double		sum = 0;
	int			i = 0;

	for (; i + 32 <= n; i += 32)
	{
		memcpy(x, a + i, sizeof(x));	/* unaligned loads */
		memcpy(y, b + i, sizeof(y));
		s0 += x[0] * y[0];
		s1 += x[1] * y[1];
		s2 += x[2] * y[2];
		s3 += x[3] * y[3];
	}
	s0 += s1 + s2 + s3;
	memcpy(lanes, &s0, sizeof(lanes));
	for (int l = 0; l < 8; l++)
		sum += lanes[l];
	for (; i < n; i++)
		sum += (double) a[i] * b[i];
	return sum;
}

static Metric
metric_named(const char *name)
{
	if (strcmp(name, "cosine") == 0)
		return METRIC_COSINE;
	if (strcmp(name, "inner_product") == 0)
		return METRIC_INNER_PRODUCT;
	if (strcmp(name, "l2") == 0)
		return METRIC_L2;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown distance metric \"%s\"", name),
			 errhint("Use cosine, inner_product or l2.")));
	return METRIC_COSINE;		/* not reached */
}

/* The floats of a one-dimensional real[] without NULLs; what is wrong otherwise. */
static const char *
vector_problem(ArrayType *a)
{
	if (ARR_ELEMTYPE(a) != FLOAT4OID)
		return "it is not a real[]";
	if (ARR_NDIM(a) != 1)
		return "it is not a one-dimensional array";
	if (ARR_HASNULL(a) && array_contains_nulls(a))
		return "it holds NULLs";
	return NULL;
}

static int
vector_dims(ArrayType *a)
{
	return ARR_DIMS(a)[0];
}

/* The floats of a one-dimensional real[] (ARR_DATA_PTR, without its sign-compare warning). */
static float *
vector_data(ArrayType *a)
{
	return (float *) ((char *) a + (ARR_HASNULL(a) ? a->dataoffset : (int32) ARR_OVERHEAD_NONULLS(1)));
}

static Nearest *
nearest_new(MemoryContext cxt, int k, int dims, Metric metric)
{
	Nearest    *s = MemoryContextAllocZero(cxt, offsetof(Nearest, hits) + sizeof(Hit) * k);

	s->k = k;
	s->dims = dims;
	s->metric = metric;
	s->query = MemoryContextAlloc(cxt, sizeof(float) * Max(dims, 1));
	return s;
}

/* The heap: hits[0] is the worst kept, so a better chunk replaces it. */
static void
sift_down(Nearest *s, int i)
{
	for (;;)
	{
		int			l = 2 * i + 1;
		int			m = i;
		Hit			t;

		if (l < s->n && s->hits[l].dot < s->hits[m].dot)
			m = l;
		if (l + 1 < s->n && s->hits[l + 1].dot < s->hits[m].dot)
			m = l + 1;
		if (m == i)
			return;
		t = s->hits[i];
		s->hits[i] = s->hits[m];
		s->hits[m] = t;
		i = m;
	}
}

static void
offer(Nearest *s, double d, const pg_uuid_t *document, int32 chunk)
{
	int			i;

	if (s->n == s->k)
	{
		if (d <= s->hits[0].dot)
			return;
		s->hits[0].dot = d;
		s->hits[0].document = *document;
		s->hits[0].chunk = chunk;
		sift_down(s, 0);
		return;
	}
	i = s->n++;
	s->hits[i].dot = d;
	s->hits[i].document = *document;
	s->hits[i].chunk = chunk;
	while (i > 0 && s->hits[(i - 1) / 2].dot > s->hits[i].dot)
	{
		Hit			t = s->hits[i];

		s->hits[i] = s->hits[(i - 1) / 2];
		s->hits[(i - 1) / 2] = t;
		i = (i - 1) / 2;
	}
}

/*
 * The query, k and metric at fcinfo's arguments first, first + 1 and
 * first + 2, checked: errors the user can act on, raised before any row is
 * read (tvdb._search asks first, so an empty table says them too).
 */
static void
check_args(FunctionCallInfo fcinfo, int first, Metric *metric)
{
	ArrayType  *q;
	const char *problem;
	int			k;
	double		norm;

	if (PG_ARGISNULL(first) || PG_ARGISNULL(first + 1) || PG_ARGISNULL(first + 2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the query vector, k and the metric must not be NULL"),
				 errhint("Pass a real[] query, a k between 1 and %d and a metric.", MAX_K)));
	k = PG_GETARG_INT32(first + 1);
	if (k < 1 || k > MAX_K)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("k must be between 1 and %d", MAX_K),
				 errdetail("k is %d.", k)));
	*metric = metric_named(text_to_cstring(PG_GETARG_TEXT_PP(first + 2)));
	q = PG_GETARG_ARRAYTYPE_P(first);
	problem = vector_problem(q);
	if (problem == NULL && vector_dims(q) < 1)
		problem = "it is empty";
	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the query vector cannot be searched with: %s", problem),
				 errhint("Pass a one-dimensional real[] without NULLs, such as tvdb.embed() returns.")));
	norm = sqrt(dot(vector_data(q), vector_data(q), vector_dims(q)));
	if (norm == 0 || !isfinite(norm))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the query vector has no direction"),
				 errdetail("Its length is %g.", norm),
				 errhint("Pass a vector with at least one finite non-zero value.")));
}

/* tvdb._search_args(query real[], k integer, metric text) RETURNS void: check_args, for tvdb._search. */
Datum
tvdb_search_args(PG_FUNCTION_ARGS)
{
	Metric		metric;

	check_args(fcinfo, 0, &metric);
	PG_RETURN_VOID();
}

static MemoryContext
aggregate_context(FunctionCallInfo fcinfo)
{
	MemoryContext cxt;

	if (!AggCheckCallContext(fcinfo, &cxt))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s is an aggregate's step", "tvdb._nearest"),
				 errhint("Call tvdb.search().")));
	return cxt;
}

/*
 * tvdb._nearest_step(state internal, document uuid, chunk integer, vector
 * real[], query real[], k integer, metric text) RETURNS internal
 */
Datum
tvdb_nearest_step(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = aggregate_context(fcinfo);
	Nearest    *s = PG_ARGISNULL(0) ? NULL : (Nearest *) PG_GETARG_POINTER(0);
	ArrayType  *v;

	if (s == NULL)
	{
		ArrayType  *q;
		Metric		metric;

		check_args(fcinfo, 4, &metric);
		q = PG_GETARG_ARRAYTYPE_P(4);
		s = nearest_new(cxt, PG_GETARG_INT32(5), vector_dims(q), metric);
		memcpy(s->query, vector_data(q), sizeof(float) * s->dims);
		s->query_norm = sqrt(dot(s->query, s->query, s->dims));
	}
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		PG_RETURN_POINTER(s);
	/* in the buffer as it lies, unless it was stored out of line */
	v = PG_GETARG_ARRAYTYPE_P(3);
	if (vector_problem(v) != NULL || vector_dims(v) != s->dims)
		s->mismatched++;
	else
		offer(s, dot(vector_data(v), s->query, s->dims),
			  DatumGetUUIDP(PG_GETARG_DATUM(1)), PG_GETARG_INT32(2));
	PG_RETURN_POINTER(s);
}

/* Parallel workers' heaps merged into one. */
Datum
tvdb_nearest_combine(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = aggregate_context(fcinfo);
	Nearest    *a = PG_ARGISNULL(0) ? NULL : (Nearest *) PG_GETARG_POINTER(0);
	Nearest    *b = PG_ARGISNULL(1) ? NULL : (Nearest *) PG_GETARG_POINTER(1);

	if (b == NULL)
		PG_RETURN_POINTER(a);
	if (a == NULL)
	{
		a = nearest_new(cxt, b->k, b->dims, b->metric);
		a->query_norm = b->query_norm;
		memcpy(a->query, b->query, sizeof(float) * b->dims);
	}
	a->mismatched += b->mismatched;
	for (int i = 0; i < b->n; i++)
		offer(a, b->hits[i].dot, &b->hits[i].document, b->hits[i].chunk);
	PG_RETURN_POINTER(a);
}

Datum
tvdb_nearest_serial(PG_FUNCTION_ARGS)
{
	Nearest    *s = (Nearest *) PG_GETARG_POINTER(0);
	StringInfoData buf;

	aggregate_context(fcinfo);
	pq_begintypsend(&buf);
	pq_sendint32(&buf, s->k);
	pq_sendint32(&buf, s->n);
	pq_sendint32(&buf, s->dims);
	pq_sendint32(&buf, s->metric);
	pq_sendfloat8(&buf, s->query_norm);
	pq_sendint64(&buf, s->mismatched);
	pq_sendbytes(&buf, (const char *) s->query, sizeof(float) * s->dims);
	pq_sendbytes(&buf, (const char *) s->hits, sizeof(Hit) * s->n);
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

Datum
tvdb_nearest_deserial(PG_FUNCTION_ARGS)
{
	bytea	   *b = PG_GETARG_BYTEA_PP(0);
	StringInfoData buf;
	Nearest    *s;
	int			k,
				n,
				dims;
	Metric		metric;

	aggregate_context(fcinfo);
	buf.data = VARDATA_ANY(b);
	buf.len = VARSIZE_ANY_EXHDR(b);
	buf.maxlen = buf.len;
	buf.cursor = 0;
	k = pq_getmsgint(&buf, 4);
	n = pq_getmsgint(&buf, 4);
	dims = pq_getmsgint(&buf, 4);
	metric = (Metric) pq_getmsgint(&buf, 4);
	s = nearest_new(CurrentMemoryContext, k, dims, metric);
	s->n = n;
	s->query_norm = pq_getmsgfloat8(&buf);
	s->mismatched = pq_getmsgint64(&buf);
	pq_copymsgbytes(&buf, (char *) s->query, sizeof(float) * dims);
	pq_copymsgbytes(&buf, (char *) s->hits, sizeof(Hit) * n);
	pq_getmsgend(&buf);
	PG_RETURN_POINTER(s);
}

static int
better_first(const void *a, const void *b)
{
	double		x = ((const Hit *) a)->dot;
	double		y = ((const Hit *) b)->dot;

	return x > y ? -1 : x < y ? 1 : 0;
}

/* The distance the metric reports for a unit vector at this dot product. */
static double
distance(const Nearest *s, double d)
{
	switch (s->metric)
	{
		case METRIC_INNER_PRODUCT:
			return -d;			/* smaller is nearer, as pgvector's <#> */
		case METRIC_L2:
			return sqrt(Max(s->query_norm * s->query_norm + 1.0 - 2.0 * d, 0.0));
		default:
			return 1.0 - d / s->query_norm;
	}
}

/* tvdb._nearest_final(state internal) RETURNS tvdb.search_hit[]: nearest first. */
Datum
tvdb_nearest_final(PG_FUNCTION_ARGS)
{
	Nearest    *s = PG_ARGISNULL(0) ? NULL : (Nearest *) PG_GETARG_POINTER(0);
	Oid			hit_type = get_element_type(get_fn_expr_rettype(fcinfo->flinfo));
	TupleDesc	desc;
	Datum	   *elems;

	aggregate_context(fcinfo);
	if (!OidIsValid(hit_type))
		elog(ERROR, "tvdb._nearest must return an array of tvdb.search_hit");
	if (s == NULL)
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(hit_type));
	if (s->mismatched > 0)
		ereport(WARNING,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%lld vectors were not searched: they do not have the query's %d dimensions",
						(long long) s->mismatched, s->dims),
				 errhint("They were embedded with other settings; tvdb.reprocess() embeds them again.")));
	desc = lookup_rowtype_tupdesc_copy(hit_type, -1);
	BlessTupleDesc(desc);
	qsort(s->hits, s->n, sizeof(Hit), better_first);
	elems = palloc(sizeof(Datum) * Max(s->n, 1));
	for (int i = 0; i < s->n; i++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		values[0] = UUIDPGetDatum(&s->hits[i].document);
		values[1] = Int32GetDatum(s->hits[i].chunk);
		values[2] = Float8GetDatum(distance(s, s->hits[i].dot));
		elems[i] = HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
	}
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, s->n, hit_type, -1, false, TYPALIGN_DOUBLE));
}

/*
 * Scale v (n floats) to unit length in place; false when it has no length.
 * Stored vectors go through this once, so that search is a dot product.
 */
bool
tvdb_normalise(float *v, int n)
{
	double		len = sqrt(dot(v, v, n));

	if (len == 0 || !isfinite(len))
		return false;
	for (int i = 0; i < n; i++)
		v[i] = (float) (v[i] / len);
	return true;
}
