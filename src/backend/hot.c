/*
 * hot.c — the statements tvdb runs for every job that moves: claims, moves,
 * the events and the queue rows the status trigger writes.  Each is written
 * so that one generic plan serves every call on indexes (the status is a
 * parameter of a plain index, ids come as arrays to = ANY), and is prepared
 * with that plan forced (spi.c): PostgreSQL never plans them again.
 * tvdb._hot_statements() lists them, so that a test can EXPLAIN the very
 * text the C code runs.
 */
#include "tvdb.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(tvdb_hot_statements);

/*
 * Due jobs in status $1 that nobody holds, oldest due first, locked: their
 * queue rows are taken in due order (job_queue holds only open jobs), then
 * the jobs themselves, each SKIP LOCKED, so a claim never waits for anyone.
 * The job's own columns have the last word.  The rows are returned by
 * ctid: locked, they stay where they are until the UPDATE that takes them
 * (a TID scan, not a second probe of the job index; a row a concurrent
 * change moved after the statement's snapshot is left to the next claim).
 */
#define DUE_JOBS(n) \
	"SELECT c.ctid FROM upload_pipeline.upload_jobs c" \
	" WHERE c.job_id = ANY (ARRAY(SELECT q.job_id FROM upload_pipeline.job_queue q" \
	"                             WHERE q.status = $1 AND q.due_at <= now()" \
	"                             ORDER BY q.due_at LIMIT " n " FOR UPDATE SKIP LOCKED))" \
	"   AND c.status = $1" \
	"   AND (c.next_poll_at IS NULL OR c.next_poll_at <= now())" \
	"   AND (c.lease_expires_at IS NULL OR c.lease_expires_at < now())" \
	" FOR UPDATE SKIP LOCKED"

const TvdbHotStatement tvdb_hot[TVDB_NUM_HOT] = {
	/* $1 from, $2 to, $3 owner, $4 n, $5 lease seconds */
	[TVDB_HOT_TAKE] = {"take",
		"UPDATE upload_pipeline.upload_jobs u "
		"SET status = $2, next_poll_at = NULL, lease_owner = $3,"
		" lease_expires_at = now() + make_interval(secs => $5) "
		"WHERE u.ctid = ANY (ARRAY(" DUE_JOBS("$4") ")) "
		"RETURNING u.job_id",
	5, {TEXTOID, TEXTOID, TEXTOID, INT4OID, INT4OID}},
	/* $1 status, $2 owner, $3 n, $4 lease seconds */
	[TVDB_HOT_CLAIM] = {"claim",
		"UPDATE upload_pipeline.upload_jobs u "
		"SET lease_owner = $2, lease_expires_at = now() + make_interval(secs => $4) "
		"WHERE u.ctid = ANY (ARRAY(" DUE_JOBS("$3") ")) "
		"RETURNING u.job_id",
	4, {TEXTOID, TEXTOID, INT4OID, INT4OID}},

	/*
	 * $1 jobs, $2 owner, $3 from, $4 to, $5 keep the lease.  A new status
	 * starts with no wait of its own (a new parse job sets one after); the
	 * guard trigger records a failure's error as last_error.
	 */
	[TVDB_HOT_MOVE] = {"move",
		"UPDATE upload_pipeline.upload_jobs u "
		"SET status = $4,"
		" next_poll_at = CASE WHEN $4 = 'parse_queued' THEN u.next_poll_at END,"
		" lease_owner = CASE WHEN $5 THEN u.lease_owner END,"
		" lease_expires_at = CASE WHEN $5 THEN u.lease_expires_at END "
		"WHERE u.job_id = ANY ($1) AND u.lease_owner = $2 AND u.status = $3 "
		"RETURNING u.job_id",
	5, {UUIDARRAYOID, TEXTOID, TEXTOID, TEXTOID, BOOLOID}},

	/*
	 * $1 jobs, $2 owner, $3 paths, $4 sha256s: parse_queued -> parsed with
	 * the stored markdown's path and hash, one row version for both
	 */
	[TVDB_HOT_MOVE_PARSED] = {"move_parsed",
		"UPDATE upload_pipeline.upload_jobs u "
		"SET status = 'parsed', next_poll_at = NULL, lease_owner = NULL, lease_expires_at = NULL,"
		" parsed_path = v.path, parsed_sha256 = v.sha "
		"FROM unnest($1, $3, $4) AS v(job, path, sha) "
		"WHERE u.job_id = v.job AND u.lease_owner = $2 AND u.status = 'parse_queued' "
		"RETURNING u.job_id",
	4, {UUIDARRAYOID, TEXTOID, TEXTARRAYOID, TEXTARRAYOID}},

	/* a statement's events, in order (events.c) */
	[TVDB_HOT_EVENTS] = {"events",
		"INSERT INTO upload_pipeline.events "
		"(job_id, document_id, type, severity, code, payload, "
		" correlation_id, ts, from_status, to_status, in_previous_state, attempt) "
		"SELECT v.job, v.doc, v.type, v.severity, v.code, v.payload, v.corr, now(),"
		" v.from_status, v.to_status, v.prev, v.attempt "
		"FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
		" AS v(job, doc, type, severity, code, payload, corr, from_status, to_status, prev, attempt)",
		11, {UUIDARRAYOID, UUIDARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, JSONBARRAYOID,
	UUIDARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INTERVALARRAYOID, INT4ARRAYOID}},

	/* a statement's open jobs, upserted (job_queue.c) */
	[TVDB_HOT_QUEUE_PUT] = {"queue_put",
		"INSERT INTO upload_pipeline.job_queue AS q "
		"(document_id, job_id, status, due_at, status_changed_at, lease_expires_at) "
		"SELECT * FROM unnest($1, $2, $3, $4, $5, $6) "
		"ON CONFLICT (document_id, job_id) DO UPDATE "
		"SET status = EXCLUDED.status, due_at = EXCLUDED.due_at,"
		" status_changed_at = EXCLUDED.status_changed_at,"
		" lease_expires_at = EXCLUDED.lease_expires_at",
		6, {UUIDARRAYOID, UUIDARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID,
	TIMESTAMPTZARRAYOID}},
	/* and its finished ones, deleted */
	[TVDB_HOT_QUEUE_DROP] = {"queue_drop",
		"DELETE FROM upload_pipeline.job_queue q USING unnest($1, $2) AS v(doc, job) "
		"WHERE q.document_id = v.doc AND q.job_id = v.job",
	2, {UUIDARRAYOID, UUIDARRAYOID}},
	/* the jobs that finished (or were deleted finished), per terminal status, into this backend's slot */
	[TVDB_HOT_COUNT] = {"count",
		"INSERT INTO upload_pipeline.finished_counts AS f (status, slot, jobs) "
		"SELECT v.status, $3, v.jobs FROM unnest($1, $2) AS v(status, jobs) "
		"ON CONFLICT (status, slot) DO UPDATE SET jobs = f.jobs + EXCLUDED.jobs",
	3, {TEXTARRAYOID, INT8ARRAYOID, INT4OID}},
};

bool
tvdb_is_hot(const char *sql)
{
	for (int i = 0; i < TVDB_NUM_HOT; i++)
		if (strcmp(sql, tvdb_hot[i].sql) == 0)
			return true;
	return false;
}

/* tvdb._hot_statements(): name, text and argument types of each. */
Datum
tvdb_hot_statements(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < TVDB_NUM_HOT; i++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};
		Datum		types[TVDB_HOT_MAX_ARGS];

		for (int a = 0; a < tvdb_hot[i].nargs; a++)
			types[a] = ObjectIdGetDatum(tvdb_hot[i].types[a]);
		values[0] = CStringGetTextDatum(tvdb_hot[i].name);
		values[1] = CStringGetTextDatum(tvdb_hot[i].sql);
		values[2] = tvdb_array(types, NULL, tvdb_hot[i].nargs, REGTYPEOID);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
