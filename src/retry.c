/*
 * retry.c — the retry policy, in one place.  A transient failure (rate
 * limited, server error, no answer) is tried again after a delay drawn at
 * random between 0 and min(tvdb.retry_max_delay, tvdb.retry_base_delay x
 * 2^tries) — exponential backoff with full jitter, so that jobs that failed
 * together do not come back together — and never sooner than the service's
 * Retry-After.  tries counts the failures in the job's current stage visit
 * since its last success; at tvdb.max_attempts the job fails with class
 * retries_exhausted.
 */
#include "tvdb.h"

#include <math.h>

#include "common/pg_prng.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(tvdb_retry_delay_sql);
PG_FUNCTION_INFO_V1(tvdb_max_attempts_sql);

/* The delay before try tries + 1, in milliseconds. */
int64
tvdb_retry_delay_ms(int tries, int64 retry_after_ms)
{
	double		cap = tvdb_retry_base_delay_ms * pow(2.0, Min(Max(tries, 0), 40));
	double		delay;

	cap = Min(cap, (double) tvdb_retry_max_delay_ms);
	delay = pg_prng_double(&pg_global_prng_state) * cap;
	return Max((int64) delay, retry_after_ms);
}

/* tvdb._retry_delay(tries integer, retry_after_ms bigint) RETURNS interval */
Datum
tvdb_retry_delay_sql(PG_FUNCTION_ARGS)
{
	int			tries = PG_ARGISNULL(0) ? 0 : PG_GETARG_INT32(0);
	int64		after = PG_ARGISNULL(1) ? 0 : PG_GETARG_INT64(1);
	Interval   *result = palloc0(sizeof(Interval));

	result->time = tvdb_retry_delay_ms(tries, Max(after, 0)) * INT64CONST(1000);
	PG_RETURN_INTERVAL_P(result);
}

/* tvdb._max_attempts() RETURNS integer */
Datum
tvdb_max_attempts_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(tvdb_max_attempts);
}
