/*
 * advance.c — the worker's status changes, one UPDATE for a whole batch of
 * jobs: the C triggers still check every edge and write every event (with
 * each job's own detail), but a batch costs one statement, not a PL/pgSQL
 * call, a locking read and two updates per job.
 *
 *   tvdb._advance(job, owner, from, to, detail, keep_lease) -> boolean
 *   tvdb._advance_all(jobs[], owner, from, to, details[], keep_lease) -> uuid[]
 *   tvdb._take(from, to, owner, n, lease_seconds) -> uuid[]
 *   tvdb._claim(status, owner, n, lease_seconds) -> setof uuid
 *   tvdb._advance_path(jobs[], owner, path[], details[]) -> uuid[]
 *   tvdb._advance_parsed(jobs[], owner, paths[], sha256s[], details[]) -> uuid[]
 *
 * A job moves only while it is still in `from` and leased to `owner`;
 * the others are left alone (the lease was lost, or a webhook moved the job
 * first).  _take claims due, unleased jobs and moves them in one statement;
 * _claim only leases them.  Both run under the calling statement's snapshot,
 * so a claim joined with other tables returns every job it leases: a job
 * committed after that statement began is neither seen nor leased.  The
 * statements are in hot.c: planned once, claims read the queue of open jobs.
 */
#include "tvdb.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/uuid.h"

PG_FUNCTION_INFO_V1(tvdb_advance);
PG_FUNCTION_INFO_V1(tvdb_advance_all);
PG_FUNCTION_INFO_V1(tvdb_take);
PG_FUNCTION_INFO_V1(tvdb_claim);
PG_FUNCTION_INFO_V1(tvdb_advance_path);
PG_FUNCTION_INFO_V1(tvdb_advance_parsed);

static void
check_status_name(text *name)
{
	(void) tvdb_status_parse(text_to_cstring(name));	/* errors if unknown */
}

/* The moved jobs' ids, as a uuid[] in the caller's memory context. */
static Datum
moved_ids(MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	Datum	   *ids = palloc(sizeof(Datum) * Max(SPI_processed, 1));
	ArrayType  *a;

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);

		ids[i] = tvdb_uuid_copy(d);
	}
	a = construct_array(ids, (int) SPI_processed, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR);
	MemoryContextSwitchTo(old);
	return PointerGetDatum(a);
}

static int
array_items(Datum a)
{
	ArrayType  *arr = DatumGetArrayTypeP(a);

	return ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));
}

/* details (NULL: none) as one Datum per job, 0 for a null one; NULL if none. */
static Datum *
details_of(ArrayType *details, int n)
{
	Datum	   *detail_d;
	bool	   *detail_null;
	int			nd;

	if (details == NULL)
		return NULL;
	deconstruct_array(details, JSONBOID, -1, false, TYPALIGN_INT, &detail_d, &detail_null, &nd);
	if (nd != n)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%d details for %d jobs", nd, n),
				 errhint("Pass one detail per job, or none.")));
	for (int i = 0; i < n; i++)
		if (detail_null[i])
			detail_d[i] = (Datum) 0;
	return detail_d;
}

/*
 * Move jobs[i] (with details[i], NULL = none) from `from` to `to` if still
 * leased to owner; leaves the moved ids in SPI_tuptable.
 */
static void
move_jobs(ArrayType *jobs, ArrayType *details, text *owner, text *from, text *to, bool keep_lease,
	 const TvdbStatus *via, int nvia)
{
	const TvdbHotStatement *move = &tvdb_hot[TVDB_HOT_MOVE];
	Datum		args[5];
	Datum	   *job_d;
	Datum	   *detail_d;
	int			n;

	check_status_name(from);
	check_status_name(to);
	deconstruct_array(jobs, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR, &job_d, NULL, &n);
	detail_d = details_of(details, n);
	args[0] = PointerGetDatum(jobs);
	args[1] = PointerGetDatum(owner);
	args[2] = PointerGetDatum(from);
	args[3] = PointerGetDatum(to);
	args[4] = BoolGetDatum(keep_lease);

	tvdb_update_with_path(move->sql, move->nargs, move->types, args, NULL, job_d, detail_d, detail_d || nvia ? n : 0,
						  via, nvia, SPI_OK_UPDATE_RETURNING);
}

Datum
tvdb_advance(PG_FUNCTION_ARGS)
{
	Datum		job = PG_GETARG_DATUM(0);
	Datum		detail = PG_ARGISNULL(4) ? (Datum) 0 : PG_GETARG_DATUM(4);
	ArrayType  *details = NULL;
	bool		moved;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		PG_RETURN_BOOL(false);
	if (detail)
		details = construct_array(&detail, 1, JSONBOID, -1, false, TYPALIGN_INT);
	tvdb_spi_connect();
	move_jobs(construct_array(&job, 1, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR), details,
		 PG_GETARG_TEXT_PP(1), PG_GETARG_TEXT_PP(2), PG_GETARG_TEXT_PP(3),
		 !PG_ARGISNULL(5) && PG_GETARG_BOOL(5), NULL, 0);
	moved = SPI_processed == 1;
	tvdb_spi_finish();
	PG_RETURN_BOOL(moved);
}

Datum
tvdb_advance_all(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = CurrentMemoryContext;
	Datum		moved;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		PG_RETURN_DATUM(PointerGetDatum(construct_empty_array(UUIDOID)));
	tvdb_spi_connect();
	move_jobs(PG_GETARG_ARRAYTYPE_P(0), PG_ARGISNULL(4) ? NULL : PG_GETARG_ARRAYTYPE_P(4),
		 PG_GETARG_TEXT_PP(1), PG_GETARG_TEXT_PP(2), PG_GETARG_TEXT_PP(3),
		 !PG_ARGISNULL(5) && PG_GETARG_BOOL(5), NULL, 0);
	moved = moved_ids(cxt);
	tvdb_spi_finish();
	PG_RETURN_DATUM(moved);
}

/*
 * tvdb._advance_path(jobs[], owner, path[], details[]): move the jobs from
 * path[1] to its last status through the ones between, in one UPDATE per
 * batch: the triggers check every edge and write an event for each, in
 * order, details[i] in jobs[i]'s first.  For hops that wait for nothing
 * (chunks_stored, embeddings_stored), which cost a row version each
 * otherwise.  The lease is dropped.  The ids of the jobs moved.
 */
Datum
tvdb_advance_path(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = CurrentMemoryContext;
	Datum	   *steps;
	bool	   *step_nulls;
	int			nsteps;
	TvdbStatus	via[TVDB_MAX_VIA];
	Datum		moved;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_DATUM(PointerGetDatum(construct_empty_array(UUIDOID)));
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(2), TEXTOID, -1, false, TYPALIGN_INT,
					  &steps, &step_nulls, &nsteps);
	if (nsteps < 2 || nsteps > TVDB_MAX_VIA + 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a path has %d statuses", nsteps),
				 errdetail("A path names from 2 to %d statuses: where the jobs are, where they pass, where they go.",
						   TVDB_MAX_VIA + 2)));
	for (int i = 0; i < nsteps; i++)
		if (step_nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("a path holds a null status"),
					 errhint("Name every status of the path.")));
	for (int i = 1; i < nsteps - 1; i++)
		via[i - 1] = tvdb_status_parse(TextDatumGetCString(steps[i]));
	tvdb_spi_connect();
	move_jobs(PG_GETARG_ARRAYTYPE_P(0), PG_ARGISNULL(3) ? NULL : PG_GETARG_ARRAYTYPE_P(3),
		 PG_GETARG_TEXT_PP(1), DatumGetTextPP(steps[0]), DatumGetTextPP(steps[nsteps - 1]),
		 false, via, nsteps - 2);
	moved = moved_ids(cxt);
	tvdb_spi_finish();
	PG_RETURN_DATUM(moved);
}

/*
 * tvdb._advance_parsed(jobs[], owner, paths[], sha256s[], details[]): the
 * jobs still leased to owner in parse_queued move to parsed with their
 * parsed markdown's path and hash set in the same UPDATE: one row version
 * (and one queue row change) instead of an update and then a move.  The ids
 * of the jobs moved.
 */
Datum
tvdb_advance_parsed(PG_FUNCTION_ARGS)
{
	const TvdbHotStatement *st = &tvdb_hot[TVDB_HOT_MOVE_PARSED];
	MemoryContext cxt = CurrentMemoryContext;
	Datum		args[4];
	Datum	   *job_d;
	Datum	   *detail_d;
	int			n;
	Datum		moved;

	for (int i = 0; i < 4; i++)
	{
		if (PG_ARGISNULL(i))
			PG_RETURN_DATUM(PointerGetDatum(construct_empty_array(UUIDOID)));
		args[i] = PG_GETARG_DATUM(i);
	}
	deconstruct_array(DatumGetArrayTypeP(args[0]), UUIDOID, UUID_LEN, false, TYPALIGN_CHAR, &job_d, NULL, &n);
	if (array_items(args[2]) != n || array_items(args[3]) != n)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%d jobs need as many paths and hashes", n),
				 errhint("Pass paths[i] and sha256s[i] for jobs[i].")));
	detail_d = details_of(PG_ARGISNULL(4) ? NULL : PG_GETARG_ARRAYTYPE_P(4), n);
	tvdb_spi_connect();
	tvdb_update_with_path(st->sql, st->nargs, st->types, args, NULL, job_d, detail_d, detail_d ? n : 0,
						  NULL, 0, SPI_OK_UPDATE_RETURNING);
	moved = moved_ids(cxt);
	tvdb_spi_finish();
	PG_RETURN_DATUM(moved);
}

/*
 * Claim up to n due jobs in `from` that nobody holds (SKIP LOCKED) and move
 * them to `to` under a new lease, in one statement.
 */
Datum
tvdb_take(PG_FUNCTION_ARGS)
{
	const TvdbHotStatement *take = &tvdb_hot[TVDB_HOT_TAKE];
	MemoryContext cxt = CurrentMemoryContext;
	Datum		args[5];
	Datum		moved;

	for (int i = 0; i < 5; i++)
	{
		if (PG_ARGISNULL(i))
			PG_RETURN_DATUM(PointerGetDatum(construct_empty_array(UUIDOID)));
		args[i] = PG_GETARG_DATUM(i);
	}
	check_status_name(PG_GETARG_TEXT_PP(0));
	check_status_name(PG_GETARG_TEXT_PP(1));
	tvdb_spi_connect();
	tvdb_spi_run_in_snapshot(take->sql, take->nargs, take->types, args, NULL, GetActiveSnapshot(),
							 SPI_OK_UPDATE_RETURNING);
	moved = moved_ids(cxt);
	tvdb_spi_finish();
	PG_RETURN_DATUM(moved);
}

/* Lease up to n due jobs in a status that nobody holds (SKIP LOCKED): their ids. */
Datum
tvdb_claim(PG_FUNCTION_ARGS)
{
	const TvdbHotStatement *claim = &tvdb_hot[TVDB_HOT_CLAIM];
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		args[4];
	uint64		n;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	for (int i = 0; i < 4; i++)
	{
		if (PG_ARGISNULL(i))
			return (Datum) 0;
		args[i] = PG_GETARG_DATUM(i);
	}
	check_status_name(PG_GETARG_TEXT_PP(0));
	tvdb_spi_connect();
	n = tvdb_spi_run_in_snapshot(claim->sql, claim->nargs, claim->types, args, NULL, GetActiveSnapshot(),
								 SPI_OK_UPDATE_RETURNING);
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;
		Datum		id = tvdb_spi_datum(i, 1, &isnull);

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &id, &isnull);
	}
	tvdb_spi_finish();
	return (Datum) 0;
}
