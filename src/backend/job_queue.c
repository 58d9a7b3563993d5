/*
 * job_queue.c — upload_pipeline.job_queue: one row per open job (a working
 * or a failure status), with its status and the time it is next due, kept
 * by the status triggers (events.c) in the statement that changes the job.
 * The worker's claims and due times, and the monitoring of open jobs, read
 * this small table instead of the history, so their cost follows the
 * backlog, not the number of jobs ever processed.
 *
 * A statement's changes are written with at most three statements: one
 * upsert for the jobs still open (which also mends a row that went
 * missing), one delete for the jobs that finished, and one upsert of how
 * many finished in each terminal status (upload_pipeline.finished_counts).
 */
#include "tvdb.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "miscadmin.h"
#include "utils/uuid.h"

#define COUNT_SLOTS 16			/* rows per terminal status in finished_counts */

struct TvdbQueueChanges
{
	int			cap;
	int			n;				/* open jobs: upserted */
	Datum	   *doc,
			   *job,
			   *status,
			   *due,
			   *since,
			   *lease;
	bool	   *lease_null;
	int			ndrop;			/* finished jobs: deleted */
	Datum	   *drop_doc,
			   *drop_job;
	int64		finished[TVDB_NUM_STATUSES];	/* per terminal status */
};

TvdbQueueChanges *
tvdb_queue_changes(int cap)
{
	TvdbQueueChanges *q = palloc0(sizeof(TvdbQueueChanges));

	cap = Max(cap, 1);
	q->cap = cap;
	q->doc = palloc(sizeof(Datum) * cap);
	q->job = palloc(sizeof(Datum) * cap);
	q->status = palloc(sizeof(Datum) * cap);
	q->due = palloc(sizeof(Datum) * cap);
	q->since = palloc(sizeof(Datum) * cap);
	q->lease = palloc(sizeof(Datum) * cap);
	q->lease_null = palloc(sizeof(bool) * cap);
	q->drop_doc = palloc(sizeof(Datum) * cap);
	q->drop_job = palloc(sizeof(Datum) * cap);
	return q;
}

/* delta jobs more (or fewer) in a terminal status. */
void
tvdb_queue_count(TvdbQueueChanges *q, TvdbStatus finished, int delta)
{
	Assert(!tvdb_status_is_open(finished));
	q->finished[finished] += delta;
}

/*
 * An open job: due when neither a poll nor a lease holds it back, and
 * never before it entered its status (the latest of the three).
 */
void
tvdb_queue_put(TvdbQueueChanges *q, Datum document_id, Datum job_id, TvdbStatus status,
			   TimestampTz status_changed_at, Datum next_poll_at, bool poll_null,
			   Datum lease_expires_at, bool lease_null)
{
	TimestampTz due = status_changed_at;
	int			i = q->n++;

	Assert(i < q->cap);
	if (!poll_null && DatumGetTimestampTz(next_poll_at) > due)
		due = DatumGetTimestampTz(next_poll_at);
	if (!lease_null && DatumGetTimestampTz(lease_expires_at) > due)
		due = DatumGetTimestampTz(lease_expires_at);
	q->doc[i] = tvdb_uuid_copy(document_id);
	q->job[i] = tvdb_uuid_copy(job_id);
	q->status[i] = CStringGetTextDatum(tvdb_status_name(status));
	q->due[i] = TimestampTzGetDatum(due);
	q->since[i] = TimestampTzGetDatum(status_changed_at);
	q->lease[i] = lease_null ? (Datum) 0 : lease_expires_at;
	q->lease_null[i] = lease_null;
}

/* A job that left the open statuses (complete, cancelled). */
void
tvdb_queue_drop(TvdbQueueChanges *q, Datum document_id, Datum job_id)
{
	int			i = q->ndrop++;

	Assert(i < q->cap);
	q->drop_doc[i] = tvdb_uuid_copy(document_id);
	q->drop_job[i] = tvdb_uuid_copy(job_id);
}

/* Write the changes gathered (the caller is connected to SPI). */
void
tvdb_queue_flush(TvdbQueueChanges *q)
{
	if (q->n > 0)
	{
		const TvdbHotStatement *st = &tvdb_hot[TVDB_HOT_QUEUE_PUT];
		Datum		args[6];

		args[0] = tvdb_array(q->doc, NULL, q->n, UUIDOID);
		args[1] = tvdb_array(q->job, NULL, q->n, UUIDOID);
		args[2] = tvdb_array(q->status, NULL, q->n, TEXTOID);
		args[3] = tvdb_array(q->due, NULL, q->n, TIMESTAMPTZOID);
		args[4] = tvdb_array(q->since, NULL, q->n, TIMESTAMPTZOID);
		args[5] = tvdb_array(q->lease, q->lease_null, q->n, TIMESTAMPTZOID);
		tvdb_spi_run(st->sql, st->nargs, st->types, args, NULL, SPI_OK_INSERT);
	}
	if (q->ndrop > 0)
	{
		const TvdbHotStatement *st = &tvdb_hot[TVDB_HOT_QUEUE_DROP];
		Datum		args[2];

		args[0] = tvdb_array(q->drop_doc, NULL, q->ndrop, UUIDOID);
		args[1] = tvdb_array(q->drop_job, NULL, q->ndrop, UUIDOID);
		tvdb_spi_run(st->sql, st->nargs, st->types, args, NULL, SPI_OK_DELETE);
	}
	{
		const TvdbHotStatement *st = &tvdb_hot[TVDB_HOT_COUNT];
		Datum		statuses[TVDB_NUM_STATUSES];
		Datum		counts[TVDB_NUM_STATUSES];
		Datum		args[3];
		int			n = 0;

		for (int s = 0; s < TVDB_NUM_STATUSES; s++)
		{
			if (q->finished[s] == 0)
				continue;
			statuses[n] = CStringGetTextDatum(tvdb_status_name((TvdbStatus) s));
			counts[n++] = Int64GetDatum(q->finished[s]);
		}
		if (n == 0)
			return;
		args[0] = tvdb_array(statuses, NULL, n, TEXTOID);
		args[1] = tvdb_array(counts, NULL, n, INT8OID);
		args[2] = Int32GetDatum(MyProcPid % COUNT_SLOTS);
		tvdb_spi_run(st->sql, st->nargs, st->types, args, NULL, SPI_OK_INSERT);
	}
}
