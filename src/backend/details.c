/*
 * details.c — the details a caller wants in the events of a status change it
 * makes (tvdb.transition(), the worker's moves): one per job, set just around
 * the caller's UPDATE and found by the event trigger by job id.  A change made
 * any other way (or to another job by a user trigger) never picks one up.
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

static int
pending_cmp(const void *a, const void *b)
{
	return memcmp(&((const PendingDetail *) a)->job, &((const PendingDetail *) b)->job, sizeof(pg_uuid_t));
}

/*
 * Run sql (an UPDATE of upload_pipeline.upload_jobs) with details[i] (a
 * jsonb, or 0 for none) written into the event of jobs[i]; expect is its
 * SPI result code.  The number of rows.
 */
uint64
tvdb_update_with_details(const char *sql, int nargs, const Oid *types, Datum *args,
						 const char *nulls, const Datum *jobs, const Datum *details,
						 int n, int expect)
{
	PendingDetail *p = palloc(sizeof(PendingDetail) * Max(n, 1));
	PendingDetail *saved = pending;
	int			saved_n = n_pending;
	volatile uint64 rows = 0;
	int			k = 0;

	for (int i = 0; i < n; i++)
	{
		if (details[i] == (Datum) 0)
			continue;
		memcpy(&p[k].job, DatumGetUUIDP(jobs[i]), sizeof(pg_uuid_t));
		p[k++].detail = details[i];
	}
	qsort(p, k, sizeof(PendingDetail), pending_cmp);
	pending = p;
	n_pending = k;
	PG_TRY();
	{
		rows = tvdb_spi_run(sql, nargs, types, args, nulls, expect);
	}
	PG_FINALLY();
	{
		pending = saved;
		n_pending = saved_n;
		pfree(p);
	}
	PG_END_TRY();
	return rows;
}

/* The detail set for this job by the UPDATE under way, or 0. */
Datum
tvdb_pending_detail(Datum job_id)
{
	PendingDetail key;
	PendingDetail *hit;

	if (n_pending == 0)
		return (Datum) 0;
	memcpy(&key.job, DatumGetUUIDP(job_id), sizeof(pg_uuid_t));
	hit = bsearch(&key, pending, n_pending, sizeof(PendingDetail), pending_cmp);
	return hit ? hit->detail : (Datum) 0;
}
