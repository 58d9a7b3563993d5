/*
 * work.c — units of a stage's work: each in a memory context of its own,
 * so that freeing one (answer recorded, claim rolled back, worker error)
 * frees everything it holds, its request's libcurl handles included.
 */
#include "worker/stage.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/uuid.h"

TvdbWork *
tvdb_work_new(const TvdbStage *s, const char *owner, int njobs, MemoryContext parent)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "tvdb work", ALLOCSET_SMALL_SIZES);
	TvdbWork   *w = MemoryContextAllocZero(cxt, sizeof(TvdbWork));

	w->stage = s;
	w->cxt = cxt;
	w->owner = owner;
	w->njobs = njobs;
	w->jobs = MemoryContextAllocZero(cxt, sizeof(char *) * Max(njobs, 1));
	return w;
}

/* Append w to works, the list living in cxt (SPI's memory goes at SPI_finish). */
List *
tvdb_work_append(List *works, TvdbWork *w, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);

	works = lappend(works, w);
	MemoryContextSwitchTo(old);
	return works;
}

/*
 * Lease up to n due jobs in s->claims, one work each, without moving them:
 * what a stage whose batch failed falls back to, one job at a time.
 */
List *
tvdb_lease(const TvdbStage *s, const char *owner, int n, MemoryContext cxt)
{
	static const Oid types[4] = {TEXTOID, TEXTOID, INT4OID, INT4OID};
	Datum		values[4] = {CStringGetTextDatum(tvdb_status_name(s->claims)),
		CStringGetTextDatum(owner), Int32GetDatum(n), Int32GetDatum(tvdb_lease_effective())};
	uint64		rows = tvdb_spi_run("SELECT c.id::text FROM tvdb._claim($1, $2, $3, $4) AS c(id)",
									4, types, values, NULL, SPI_OK_SELECT);
	List	   *works = NIL;

	for (uint64 i = 0; i < rows; i++)
	{
		TvdbWork   *w = tvdb_work_new(s, owner, 1, cxt);

		w->jobs[0] = MemoryContextStrdup(w->cxt, tvdb_spi_text(i, 1));
		w->leased_only = true;
		works = tvdb_work_append(works, w, cxt);
	}
	return works;
}

/* A uuid[] from the text form of the ids. */
Datum
tvdb_uuid_array(char **items, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = DirectFunctionCall1(uuid_in, CStringGetDatum(items[i]));
	return PointerGetDatum(construct_array(d, n, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
}

/* The work's jobs as a uuid[]. */
Datum
tvdb_job_ids(TvdbWork *w)
{
	return tvdb_uuid_array(w->jobs, w->njobs);
}
