/*
 * details.c — the details a caller wants in the events of a status change it
 * makes (tvdb.transition(), the worker's moves): one per job, set just around
 * the caller's UPDATE and found by the event trigger by job id.  A change made
 * any other way (or to another job by a user trigger) never picks one up.
 *
 * A mover may also name the statuses a job passes through on the way
 * (tvdb._advance_path): the triggers then check every edge of the path and
 * write an event for each, though the row is written once.
 *
 * The set is saved and restored around each UPDATE, so a nested change (a
 * user trigger calling tvdb.transition()) does not wipe the outer one's.
 */
#include "tvdb.h"

#include "utils/uuid.h"

typedef struct PendingDetail
{
	pg_uuid_t	job;
	Datum		detail;
} PendingDetail;

static PendingDetail *pending = NULL;
static int	n_pending = 0;
static const TvdbStatus *pending_via = NULL;	/* for every job of the set */
static int	n_pending_via = 0;

static int
pending_cmp(const void *a, const void *b)
{
	return memcmp(&((const PendingDetail *) a)->job, &((const PendingDetail *) b)->job, sizeof(pg_uuid_t));
}

/*
 * Run sql (an UPDATE of upload_pipeline.upload_jobs) with details[i] (a
 * jsonb, or 0 for none; details NULL: none at all) written into the first event of jobs[i], each of
 * which passes through via[0..nvia-1] on its way; expect is its SPI result
 * code.  The number of rows.
 */
uint64
tvdb_update_with_path(const char *sql, int nargs, const Oid *types, Datum *args,
					  const char *nulls, const Datum *jobs, const Datum *details,
					  int n, const TvdbStatus *via, int nvia, int expect)
{
	PendingDetail *p = palloc(sizeof(PendingDetail) * Max(n, 1));
	PendingDetail *saved = pending;
	int			saved_n = n_pending;
	const TvdbStatus *saved_via = pending_via;
	int			saved_nvia = n_pending_via;
	volatile uint64 rows = 0;
	int			k = 0;

	for (int i = 0; i < n; i++)
	{
		Datum		detail = details ? details[i] : (Datum) 0;

		if (detail == (Datum) 0 && nvia == 0)
			continue;
		memcpy(&p[k].job, DatumGetUUIDP(jobs[i]), sizeof(pg_uuid_t));
		p[k++].detail = detail;
	}
	qsort(p, k, sizeof(PendingDetail), pending_cmp);
	pending = p;
	n_pending = k;
	pending_via = via;
	n_pending_via = nvia;
	PG_TRY();
	{
		rows = tvdb_spi_run(sql, nargs, types, args, nulls, expect);
	}
	PG_FINALLY();
	{
		pending = saved;
		n_pending = saved_n;
		pending_via = saved_via;
		n_pending_via = saved_nvia;
		pfree(p);
	}
	PG_END_TRY();
	return rows;
}

uint64
tvdb_update_with_details(const char *sql, int nargs, const Oid *types, Datum *args,
						 const char *nulls, const Datum *jobs, const Datum *details,
						 int n, int expect)
{
	return tvdb_update_with_path(sql, nargs, types, args, nulls, jobs, details, n, NULL, 0, expect);
}

static PendingDetail *
find_pending(Datum job_id)
{
	PendingDetail key;

	if (n_pending == 0)
		return NULL;
	memcpy(&key.job, DatumGetUUIDP(job_id), sizeof(pg_uuid_t));
	return bsearch(&key, pending, n_pending, sizeof(PendingDetail), pending_cmp);
}

/* The statuses this job passes through in the UPDATE under way (*via), how many. */
int
tvdb_pending_via(Datum job_id, const TvdbStatus **via)
{
	if (n_pending_via == 0 || find_pending(job_id) == NULL)
		return 0;
	*via = pending_via;
	return n_pending_via;
}

/* The detail set for this job by the UPDATE under way, or 0. */
Datum
tvdb_pending_detail(Datum job_id)
{
	PendingDetail *hit = find_pending(job_id);

	return hit ? hit->detail : (Datum) 0;
}
