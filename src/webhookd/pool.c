/*
 * pool.c — a fixed set of libpq connections shared by the request threads.
 *
 * A request borrows a connection only for the one statement it runs, after
 * its body has been read, so a slow client never ties one up.  A connection
 * that broke (server restart, network) is reset and the statement retried
 * once.  Retrying is safe because the handler is idempotent: if a commit
 * went through but its acknowledgement was lost, the retry is answered as a
 * duplicate.
 */
#include "webhookd.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct Slot
{
	PGconn	   *conn;			/* NULL until first used */
	bool		busy;			/* lent to a request thread */
	bool		broken;			/* last statement failed at connection level */
} Slot;

static Slot *slots;
static int	nslots;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slot_freed;
static bool stopping;
static unsigned wait_seconds;
static __thread char last_sqlstate[6];

const char *
pool_sqlstate(void)
{
	return last_sqlstate;
}

/*
 * Connection parameters.  Ours come before the DSN so that it can override
 * them; client_encoding comes after because the JSON we send is UTF-8.
 */
static char connect_timeout[16];
static char options[64];
static const char *keywords[] = {
	"connect_timeout", "options", "dbname", "client_encoding",
	"fallback_application_name", NULL
};
static const char *values[] = {
	connect_timeout, options, NULL, "UTF8", "tvdb-webhookd", NULL
};

/* Copy the first line of a libpq message (they end in newlines). */
static void
first_line(char *dst, size_t len, const char *msg)
{
	size_t		n;

	if (msg == NULL || *msg == '\0')
		msg = "unknown error";
	n = strcspn(msg, "\n");
	while (n > 0 && (msg[n - 1] == ' ' || msg[n - 1] == '\r'))
		n--;
	if (n >= len)
		n = len - 1;
	memcpy(dst, msg, n);
	dst[n] = '\0';
}

/* Connect a slot, or reset it if its connection is not usable. */
static bool
ensure_connected(Slot *s, char *errbuf, size_t errlen)
{
	if (s->conn == NULL)
		s->conn = PQconnectdbParams(keywords, values, 1);
	else if (s->broken || PQstatus(s->conn) != CONNECTION_OK ||
			 PQtransactionStatus(s->conn) != PQTRANS_IDLE)
		PQreset(s->conn);
	else
		return true;

	if (s->conn != NULL && PQstatus(s->conn) == CONNECTION_OK)
	{
		s->broken = false;
		return true;
	}
	first_line(errbuf, errlen, s->conn ? PQerrorMessage(s->conn) : "out of memory");
	return false;
}

/*
 * Did the statement fail because of the connection rather than the SQL?
 * Class 08 and the shutdown/startup codes mean the server went away;
 * a failure without any SQLSTATE was detected by libpq itself.
 */
static bool
connection_failed(PGconn *conn, const PGresult *res)
{
	const char *state;

	if (PQstatus(conn) != CONNECTION_OK || res == NULL)
		return true;
	state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	if (state == NULL)
		return true;
	return strncmp(state, "08", 2) == 0 ||
		strcmp(state, "57P01") == 0 ||	/* admin_shutdown */
		strcmp(state, "57P02") == 0 ||	/* crash_shutdown */
		strcmp(state, "57P03") == 0;	/* cannot_connect_now */
}

static Slot *
acquire(char *errbuf, size_t errlen)
{
	struct timespec deadline;
	Slot	   *found = NULL;
	bool		shutting_down;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += wait_seconds;

	pthread_mutex_lock(&lock);
	while (found == NULL && !stopping)
	{
		for (int i = 0; i < nslots && found == NULL; i++)
			if (!slots[i].busy)
				found = &slots[i];
		if (found != NULL)
			found->busy = true;
		else if (pthread_cond_timedwait(&slot_freed, &lock, &deadline) == ETIMEDOUT)
			break;
	}
	shutting_down = stopping;
	pthread_mutex_unlock(&lock);

	if (found == NULL && shutting_down)
		snprintf(errbuf, errlen, "the receiver is shutting down");
	else if (found == NULL)
		snprintf(errbuf, errlen, "all %d database connections stayed busy for %u s",
				 nslots, wait_seconds);
	return found;
}

static void
release(Slot *s)
{
	pthread_mutex_lock(&lock);
	s->busy = false;
	pthread_cond_signal(&slot_freed);
	pthread_mutex_unlock(&lock);
}

bool
pool_init(const Config *cfg)
{
	pthread_condattr_t attr;
	char		errbuf[256];

	snprintf(connect_timeout, sizeof(connect_timeout), "%u", cfg->timeout);
	snprintf(options, sizeof(options), "-c statement_timeout=%us", cfg->timeout);
	values[2] = cfg->dsn;
	wait_seconds = cfg->timeout;

	/* Waits are measured on the monotonic clock: wall-clock jumps don't matter. */
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&slot_freed, &attr);
	pthread_condattr_destroy(&attr);

	nslots = cfg->pool;
	slots = calloc(nslots, sizeof(Slot));
	if (slots == NULL)
		return false;

	/* Connect one now so a wrong DSN shows up in the log at once; not fatal. */
	if (ensure_connected(&slots[0], errbuf, sizeof(errbuf)))
		wlog("database connection ok (user %s, database %s)",
			 PQuser(slots[0].conn), PQdb(slots[0].conn));
	else
		wlog("warning: database not reachable yet: %s", errbuf);
	return true;
}

DbOutcome
pool_exec(const char *sql, int nparams, const Oid *types,
		  const char *const *params, const int *lengths, const int *formats,
		  PGresult **res, char *errbuf, size_t errlen)
{
	Slot	   *s = acquire(errbuf, errlen);
	DbOutcome	outcome = DB_UNAVAILABLE;

	*res = NULL;
	last_sqlstate[0] = '\0';
	if (s == NULL)
		return DB_UNAVAILABLE;

	for (int attempt = 0; attempt < 2; attempt++)
	{
		PGresult   *r;
		ExecStatusType st;

		if (!ensure_connected(s, errbuf, errlen))
			continue;
		r = PQexecParams(s->conn, sql, nparams, types, params, lengths, formats, 0);
		st = PQresultStatus(r);
		if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
		{
			*res = r;
			outcome = DB_OK;
			break;
		}
		if (connection_failed(s->conn, r))
		{
			first_line(errbuf, errlen, PQerrorMessage(s->conn));
			wlog("database connection lost (%s)%s", errbuf,
				 attempt == 0 ? "; reconnecting" : "");
			s->broken = true;
			PQclear(r);
			continue;
		}
		/* An error in the SQL itself: report its primary text, no retry. */
		first_line(errbuf, errlen, PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
		snprintf(last_sqlstate, sizeof(last_sqlstate), "%s",
				 PQresultErrorField(r, PG_DIAG_SQLSTATE) ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : "");
		wlog("statement failed: SQLSTATE %s: %s", last_sqlstate, errbuf);
		PQclear(r);
		outcome = DB_SQL_ERROR;
		break;
	}
	release(s);
	return outcome;
}

/* Wake every thread waiting for a connection: they give up with 503. */
void
pool_shutdown(void)
{
	pthread_mutex_lock(&lock);
	stopping = true;
	pthread_cond_broadcast(&slot_freed);
	pthread_mutex_unlock(&lock);
}

void
pool_destroy(void)
{
	for (int i = 0; i < nslots; i++)
		if (slots[i].conn != NULL)
			PQfinish(slots[i].conn);
	free(slots);
	slots = NULL;
	nslots = 0;
}
