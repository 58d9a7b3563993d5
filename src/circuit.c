/*
 * circuit.c — per service (LlamaParse, OpenAI), shared by every worker
 * process: a circuit breaker and token buckets, in shared memory.
 *
 * Circuit: closed -> open after tvdb.breaker_failures server errors or
 * unanswered requests in a row (a 429 pauses the service instead); while open nothing is sent and the jobs wait in their status
 * (no try spent); after a cool-down (tvdb.breaker_cooldown, doubling with
 * each reopening up to tvdb.breaker_max_cooldown) it is half-open and lets
 * one probe through; the probe's success closes it, its failure reopens
 * it.  An authentication or quota refusal blocks it: only a configuration
 * reload or tvdb.reset_circuit() opens the way again.  A 429 pauses the
 * service for its Retry-After.
 *
 * Buckets: requests per minute (LlamaParse: its uploads, the rate-limited
 * endpoint; OpenAI: embeddings) and OpenAI tokens per minute, refilled
 * continuously.  A request may go while its bucket holds a whole request
 * (for tokens: anything), and takes its full cost, so a large request may
 * leave the bucket in debt; the rate over time is what was set, with a
 * burst of at most a second's worth.  OpenAI's x-ratelimit-remaining-*
 * answers lower the buckets to what the service says is left, and pause
 * the service until its x-ratelimit-reset-* when that is nothing.
 *
 * Without shared memory (the library not preloaded) nothing is limited
 * and the view shows no rows: no worker runs then either.
 */
#include "tvdb.h"

#include <math.h>

#include "funcapi.h"
#include "miscadmin.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(tvdb_circuits_sql);
PG_FUNCTION_INFO_V1(tvdb_reset_circuit_sql);

static const char *const service_names[TVDB_CIRCUIT_SERVICES] = {"llamaparse", "openai"};
static const char *const state_names[] = {"closed", "open", "half_open", "blocked"};

typedef struct Circuit
{
	TvdbCircuitState state;
	int			failures;		/* transient failures in a row */
	int			opens;			/* openings since it was last closed */
	TimestampTz since;			/* in this state since */
	TimestampTz probe_at;		/* open: when the probe may go; half-open: when a lost probe is given up */
	TimestampTz paused_until;	/* a 429: the whole service waits */
	char		last_error[256];
	double		requests;		/* bucket: requests that may go now */
	double		tokens;			/* bucket: OpenAI tokens */
	TimestampTz refilled_at;
} Circuit;

typedef struct Circuits
{
	slock_t		mutex;
	Circuit		c[TVDB_CIRCUIT_SERVICES];
} Circuits;

static Circuits *circuits = NULL;
/* Its share of shared memory (module.c requests and attaches it). */
Size
tvdb_circuit_shmem_size(void)
{
	return MAXALIGN(sizeof(Circuits));
}

/* Called with AddinShmemInitLock held, in every process at start. */
void
tvdb_circuit_shmem_attach(void)
{
	bool		found;

	circuits = ShmemInitStruct("tvdb circuits", sizeof(Circuits), &found);
	if (!found)
	{
		memset(circuits, 0, sizeof(Circuits));
		SpinLockInit(&circuits->mutex);
		for (int i = 0; i < TVDB_CIRCUIT_SERVICES; i++)
		{
			circuits->c[i].since = GetCurrentTimestamp();
			circuits->c[i].requests = -1;	/* full at the first look */
		}
	}
}

static double
requests_per_minute(int service)
{
	return service == TVDB_CIRCUIT_LLAMAPARSE ? tvdb_llamaparse_rpm : tvdb_openai_rpm;
}

/* Refill the buckets for the time gone by (the caller holds the mutex). */
static void
refill(int service, Circuit *c, TimestampTz now)
{
	double		rpm = requests_per_minute(service);
	double		secs = (now - c->refilled_at) / 1e6;

	if (c->requests < 0 || c->refilled_at == 0)
	{
		c->requests = Max(1.0, rpm / 60);
		c->tokens = Max(1.0, tvdb_openai_tpm / 60.0);
	}
	else if (secs > 0)
	{
		c->requests = Min(Max(1.0, rpm / 60), c->requests + secs * rpm / 60);
		c->tokens = Min(Max(1.0, tvdb_openai_tpm / 60.0), c->tokens + secs * tvdb_openai_tpm / 60);
	}
	c->refilled_at = now;
}

static void
set_state(Circuit *c, TvdbCircuitState state, TimestampTz now)
{
	c->state = state;
	c->since = now;
}

/*
 * May requests go to the service now, and how many?  limited: they count
 * against its request bucket.  0 when the circuit is open or blocked, the
 * service paused, or the bucket empty; 1 for a half-open circuit's probe
 * (taken by the caller's asking; *probe says so).  *due_ms: when to ask
 * again, if 0.
 */
int
tvdb_circuit_allowance(int service, bool limited, int wanted, long *due_ms, bool *probe)
{
	Circuit    *c;
	TimestampTz now = GetCurrentTimestamp();
	int			n = wanted;

	*due_ms = 0;
	*probe = false;
	if (circuits == NULL)
		return wanted;
	c = &circuits->c[service];
	SpinLockAcquire(&circuits->mutex);
	refill(service, c, now);
	if (c->state == TVDB_CIRCUIT_BLOCKED)
		n = 0;
	else if (c->paused_until > now)
	{
		n = 0;
		*due_ms = (c->paused_until - now) / 1000 + 1;
	}
	else if (c->state == TVDB_CIRCUIT_OPEN && now < c->probe_at)
	{
		n = 0;
		*due_ms = (c->probe_at - now) / 1000 + 1;
	}
	else if (c->state == TVDB_CIRCUIT_HALF_OPEN && now < c->probe_at)
		n = 0;					/* its probe is out */
	if (n > 0 && limited && requests_per_minute(service) > 0)
	{
		n = Min(n, (int) c->requests);
		if (n == 0)
			*due_ms = (long) ((1.0 - c->requests) * 60000 / requests_per_minute(service)) + 1;
	}
	if (n > 0 && c->state != TVDB_CIRCUIT_CLOSED)
	{
		/* the one probe; if it is never answered, another after a request's timeout */
		*probe = c->state == TVDB_CIRCUIT_OPEN;	/* the first probe of this opening */
		set_state(c, TVDB_CIRCUIT_HALF_OPEN, now);
		c->probe_at = now + (int64) (tvdb_http_timeout_ms + tvdb_connect_timeout_ms) * 1000;
		n = 1;
	}
	SpinLockRelease(&circuits->mutex);
	return n;
}

/*
 * Take one request (and tokens) from the service's buckets as it is sent;
 * false when another worker took them first (the request then waits).
 */
bool
tvdb_circuit_take(int service, bool limited, int64 tokens)
{
	Circuit    *c;
	bool		ok = true;

	if (circuits == NULL)
		return true;
	c = &circuits->c[service];
	SpinLockAcquire(&circuits->mutex);
	refill(service, c, GetCurrentTimestamp());
	if (limited && requests_per_minute(service) > 0)
	{
		ok = c->requests >= 1.0;
		if (ok)
			c->requests -= 1.0;
	}
	if (ok && tokens > 0 && tvdb_openai_tpm > 0)
	{
		ok = c->tokens > 0;
		if (ok)
			c->tokens -= tokens;	/* may go into debt: a large request still goes */
		else if (limited && requests_per_minute(service) > 0)
			c->requests += 1.0;
	}
	SpinLockRelease(&circuits->mutex);
	return ok;
}

/*
 * Could a request go to the service now, or soon: not blocked, and not open
 * with its probe still to wait for.  (A pause for a 429 or an empty bucket
 * is soon.)  Hybrid mode runs the mock instead while it is not.
 */
bool
tvdb_circuit_usable(int service)
{
	Circuit    *c;
	bool		usable;

	if (circuits == NULL)
		return true;
	c = &circuits->c[service];
	SpinLockAcquire(&circuits->mutex);
	usable = c->state != TVDB_CIRCUIT_BLOCKED &&
		!(c->state == TVDB_CIRCUIT_OPEN && GetCurrentTimestamp() < c->probe_at);
	SpinLockRelease(&circuits->mutex);
	return usable;
}

/* A probe that was allowed but found nothing to send: the next asker may probe. */
void
tvdb_circuit_probe_unused(int service)
{
	Circuit    *c;

	if (circuits == NULL)
		return;
	c = &circuits->c[service];
	SpinLockAcquire(&circuits->mutex);
	if (c->state == TVDB_CIRCUIT_HALF_OPEN)
	{
		c->state = TVDB_CIRCUIT_OPEN;
		c->probe_at = GetCurrentTimestamp();
	}
	SpinLockRelease(&circuits->mutex);
}

/*
 * What the service said is left: the buckets hold no more than that, and
 * when nothing is left the whole service waits until it fills up again (its
 * x-ratelimit-reset-*), rather than spend a request on a 429.
 */
void
tvdb_circuit_remaining(int service, const TvdbRemaining *left)
{
	Circuit    *c;
	TimestampTz now = GetCurrentTimestamp();

	if (circuits == NULL)
		return;
	c = &circuits->c[service];
	SpinLockAcquire(&circuits->mutex);
	if (left->requests >= 0)
		c->requests = Min(c->requests, (double) left->requests);
	if (left->tokens >= 0)
		c->tokens = Min(c->tokens, (double) left->tokens);
	if (left->requests == 0 && left->requests_reset_ms > 0)
		c->paused_until = Max(c->paused_until, now + (int64) left->requests_reset_ms * 1000);
	if (left->tokens == 0 && left->tokens_reset_ms > 0)
		c->paused_until = Max(c->paused_until, now + (int64) left->tokens_reset_ms * 1000);
	SpinLockRelease(&circuits->mutex);
}

/*
 * An answer from the service, by kind (the after-answer hook's): moves the
 * circuit, and says what changed (TVDB_CIRCUIT_NO_CHANGE, or the new state)
 * so that the caller can raise an alert.
 */
int
tvdb_circuit_answer(int service, const char *kind, long retry_after_ms, const char *error)
{
	Circuit    *c;
	TimestampTz now = GetCurrentTimestamp();
	int			changed = TVDB_CIRCUIT_NO_CHANGE;
	/* a 429 pauses the service (below) but says nothing of its health */
	bool		transient = strcmp(kind, "server_error") == 0 || strcmp(kind, "no_answer") == 0;

	if (circuits == NULL)
		return changed;
	c = &circuits->c[service];
	SpinLockAcquire(&circuits->mutex);
	if (strcmp(kind, "rate_limited") == 0)
		c->paused_until = Max(c->paused_until, now + (int64) Max(retry_after_ms, 1000) * 1000);
	if (strcmp(kind, "quota") == 0 || strcmp(kind, "auth") == 0)
	{
		if (c->state != TVDB_CIRCUIT_BLOCKED)
			changed = TVDB_CIRCUIT_BLOCKED;
		set_state(c, TVDB_CIRCUIT_BLOCKED, now);
		strlcpy(c->last_error, error ? error : kind, sizeof(c->last_error));
	}
	else if (transient && c->state != TVDB_CIRCUIT_BLOCKED)
	{
		strlcpy(c->last_error, error ? error : kind, sizeof(c->last_error));
		c->failures++;
		if (c->state == TVDB_CIRCUIT_HALF_OPEN ||
			(c->state == TVDB_CIRCUIT_CLOSED && c->failures >= tvdb_breaker_failures))
		{
			double		cool = tvdb_breaker_cooldown_ms * pow(2.0, Min(c->opens, 20));

			cool = Min(cool, (double) tvdb_breaker_max_cooldown_ms);
			c->opens++;
			set_state(c, TVDB_CIRCUIT_OPEN, now);
			c->probe_at = now + (int64) cool * 1000;
			changed = TVDB_CIRCUIT_OPEN;
		}
	}
	else if (!transient && strcmp(kind, "rate_limited") != 0 && c->state != TVDB_CIRCUIT_BLOCKED)
	{
		/* the service answered (a success, or a refusal of one document) */
		c->failures = 0;
		if (c->state != TVDB_CIRCUIT_CLOSED)
		{
			c->opens = 0;
			set_state(c, TVDB_CIRCUIT_CLOSED, now);
			changed = TVDB_CIRCUIT_CLOSED;
		}
	}
	SpinLockRelease(&circuits->mutex);
	return changed;
}

/* Close the service's circuit (blocked_only: only if it is blocked); whether it changed. */
bool
tvdb_circuit_reset(int service, bool blocked_only)
{
	Circuit    *c;
	bool		changed;

	if (circuits == NULL)
		return false;
	c = &circuits->c[service];
	SpinLockAcquire(&circuits->mutex);
	changed = c->state != TVDB_CIRCUIT_CLOSED && (!blocked_only || c->state == TVDB_CIRCUIT_BLOCKED);
	if (changed)
	{
		set_state(c, TVDB_CIRCUIT_CLOSED, GetCurrentTimestamp());
		c->failures = 0;
		c->opens = 0;
		c->paused_until = 0;
	}
	SpinLockRelease(&circuits->mutex);
	return changed;
}

const char *
tvdb_circuit_service_name(int service)
{
	return service_names[service];
}

int
tvdb_circuit_service(const char *name)
{
	for (int i = 0; i < TVDB_CIRCUIT_SERVICES; i++)
		if (pg_strcasecmp(name, service_names[i]) == 0)
			return i;
	return -1;
}

static Datum
timestamp_or_null(TimestampTz t, bool *isnull)
{
	*isnull = t == 0;
	return TimestampTzGetDatum(t);
}

/*
 * tvdb._circuits(): service, state, since, failures, last_error,
 * next_probe, paused_until, requests_available, tokens_available.
 */
Datum
tvdb_circuits_sql(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	if (circuits == NULL)
		return (Datum) 0;
	for (int i = 0; i < TVDB_CIRCUIT_SERVICES; i++)
	{
		Circuit		c;
		Datum		values[9];
		bool		nulls[9] = {false};
		TimestampTz now = GetCurrentTimestamp();

		SpinLockAcquire(&circuits->mutex);
		refill(i, &circuits->c[i], now);
		c = circuits->c[i];
		SpinLockRelease(&circuits->mutex);
		values[0] = CStringGetTextDatum(service_names[i]);
		values[1] = CStringGetTextDatum(state_names[c.state]);
		values[2] = TimestampTzGetDatum(c.since);
		values[3] = Int32GetDatum(c.failures);
		nulls[4] = c.last_error[0] == '\0';
		values[4] = CStringGetTextDatum(c.last_error);
		values[5] = timestamp_or_null(c.state == TVDB_CIRCUIT_OPEN ? c.probe_at : 0, &nulls[5]);
		values[6] = timestamp_or_null(c.paused_until > now ? c.paused_until : 0, &nulls[6]);
		values[7] = Float8GetDatum(floor(c.requests));
		values[8] = Float8GetDatum(floor(c.tokens));
		nulls[7] = requests_per_minute(i) <= 0;
		nulls[8] = i != TVDB_CIRCUIT_OPENAI || tvdb_openai_tpm <= 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* tvdb.reset_circuit(service text) RETURNS boolean: close it now. */
Datum
tvdb_reset_circuit_sql(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int			service = tvdb_circuit_service(name);

	if (service < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown service \"%s\"", name),
				 errhint("The services are llamaparse and openai.")));
	if (circuits == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("tvdb has no circuits: the library is not in shared_preload_libraries"),
				 errhint("Add tvdb to shared_preload_libraries and restart.")));
	PG_RETURN_BOOL(tvdb_circuit_reset(service, false));
}
