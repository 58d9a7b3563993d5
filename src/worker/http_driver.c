/*
 * http_driver.c — every request of a worker goes through one libcurl multi handle,
 * driven by the same wait as the worker's latch: hundreds of requests are in
 * flight at once, and SIGTERM, SIGHUP, a commit that made work or the death
 * of the postmaster are noticed at once, whatever the network is doing.
 *
 * libcurl tells us which sockets to watch (socket callback) and when to call
 * back (timer callback); we wait on them with a WaitEventSet rebuilt when the
 * set of sockets changes.  Response bodies are malloc'd: a libcurl callback
 * must never ereport (a longjmp through libcurl would corrupt it).
 *
 * A request lives in the memory context it was created in; resetting or
 * deleting that context frees its libcurl handles (and takes it out of the
 * multi handle if it is still running), on error paths too.
 */
#include "worker/http_driver.h"

#include <math.h>

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#define MAX_RESPONSE_BYTES ((size_t) 512 * 1024 * 1024)

typedef struct Watched
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN / OUT / INOUT */
} Watched;

static CURLM *multi = NULL;
static int	inflight = 0;
static long curl_timeout_ms = -1;
static Watched *watched = NULL;
static int	n_watched = 0;
static int	cap_watched = 0;
static bool set_dirty = true;
static WaitEventSet *wait_set = NULL;
static int	wait_set_size = 0;

static int
socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	int			i;

	for (i = 0; i < n_watched; i++)
		if (watched[i].fd == fd)
			break;
	if (what == CURL_POLL_REMOVE)
	{
		if (i < n_watched)
			watched[i] = watched[--n_watched];
	}
	else
	{
		if (i == n_watched)
		{
			if (n_watched == cap_watched)
			{
				int			cap = Max(16, cap_watched * 2);
				Watched    *grown = realloc(watched, cap * sizeof(Watched));

				if (grown == NULL)
					return -1;
				watched = grown;
				cap_watched = cap;
			}
			n_watched++;
		}
		watched[i].fd = fd;
		watched[i].what = what;
	}
	set_dirty = true;
	return 0;
}

static int
timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	curl_timeout_ms = timeout_ms;
	return 0;
}

static size_t
write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	TvdbHttp   *req = userp;
	size_t		n = size * nmemb;

	if (req->body_len + n + 1 > req->body_cap)
	{
		size_t		cap = Max(req->body_cap * 2, req->body_len + n + 1);
		char	   *grown;

		if (cap > MAX_RESPONSE_BYTES)
			return 0;			/* makes the transfer fail with a write error */
		grown = realloc(req->body, cap);
		if (grown == NULL)
			return 0;
		req->body = grown;
		req->body_cap = cap;
	}
	memcpy(req->body + req->body_len, data, n);
	req->body_len += n;
	req->body[req->body_len] = '\0';
	return n;
}

/* A header's value as a count (x-ratelimit-remaining-*), or -1. */
static long
count_value(const char *v)
{
	char	   *end;
	long		n = strtol(v, &end, 10);

	return (end != v && *end == '\0' && n >= 0) ? n : -1;
}

/*
 * A duration as OpenAI writes its x-ratelimit-reset-* values ("1s", "6m0s",
 * "17.28s", "250ms", "1h2m3s"), in milliseconds; -1 if it is not one.
 */
static long
duration_ms(const char *v)
{
	double		ms = 0;
	bool		any = false;

	while (*v)
	{
		char	   *end;
		double		d = strtod(v, &end);

		if (end == v || d < 0)
			return -1;
		if (strncmp(end, "ms", 2) == 0)
			v = end + 2;
		else if (*end == 'h' || *end == 'm' || *end == 's')
		{
			d *= *end == 'h' ? 3600e3 : *end == 'm' ? 60e3 : 1e3;
			v = end + 1;
		}
		else
			return -1;
		ms += d;
		any = true;
	}
	return (any && ms < 1e9) ? (long) ceil(ms) : -1;
}

/*
 * The headers that say when and whether to retry, as the official OpenAI
 * client reads them: retry-after-ms (milliseconds), retry-after (seconds, or
 * an HTTP date), x-should-retry (true / false); and what the service says is
 * left of its rate limits and when that fills up again
 * (x-ratelimit-remaining-* / x-ratelimit-reset-*, requests and tokens).  A
 * callback of libcurl: it must not ereport, and its line is not
 * NUL-terminated.
 */
static size_t
header_cb(char *line, size_t size, size_t nitems, void *userp)
{
	TvdbHttp   *req = userp;
	size_t		n = size * nitems;
	char		value[128];
	const char *colon = memchr(line, ':', n);
	size_t		name_len;
	size_t		len;
	char	   *end;
	char	   *v;
	double		d;

	if (colon == NULL)
		return n;
	name_len = colon - line;
	len = Min(n - name_len - 1, sizeof(value) - 1);
	memcpy(value, colon + 1, len);
	value[len] = '\0';
	while (len > 0 && (value[len - 1] == '\r' || value[len - 1] == '\n' || value[len - 1] == ' '))
		value[--len] = '\0';
	v = value;
	while (*v == ' ' || *v == '\t')
		v++;

	if (name_len == 14 && pg_strncasecmp(line, "retry-after-ms", 14) == 0)
	{
		d = strtod(v, &end);
		if (end != v && *end == '\0' && d >= 0 && d < 1e9)
		{
			req->retry_after_ms = (long) d;
			req->retry_after_exact = true;	/* wins over retry-after */
		}
	}
	else if (name_len == 11 && pg_strncasecmp(line, "retry-after", 11) == 0 && !req->retry_after_exact)
	{
		d = strtod(v, &end);
		if (end != v && *end == '\0' && d >= 0 && d < 1e6)
			req->retry_after_ms = (long) (d * 1000);
		else
		{
			time_t		when = curl_getdate(v, NULL);
			time_t		now = time(NULL);

			if (when != (time_t) -1)
				req->retry_after_ms = when > now ? (long) (when - now) * 1000 : 0;
		}
	}
	else if (name_len == 14 && pg_strncasecmp(line, "x-should-retry", 14) == 0)
	{
		if (pg_strcasecmp(v, "true") == 0)
			req->should_retry = 1;
		else if (pg_strcasecmp(v, "false") == 0)
			req->should_retry = 0;
	}
	else if (name_len == 30 && pg_strncasecmp(line, "x-ratelimit-remaining-requests", 30) == 0)
		req->remaining_requests = count_value(v);
	else if (name_len == 28 && pg_strncasecmp(line, "x-ratelimit-remaining-tokens", 28) == 0)
		req->remaining_tokens = count_value(v);
	else if (name_len == 26 && pg_strncasecmp(line, "x-ratelimit-reset-requests", 26) == 0)
		req->reset_requests_ms = duration_ms(v);
	else if (name_len == 24 && pg_strncasecmp(line, "x-ratelimit-reset-tokens", 24) == 0)
		req->reset_tokens_ms = duration_ms(v);
	return n;
}

static void
cleanup_at_exit(int code, Datum arg)
{
	if (multi != NULL)
		curl_multi_cleanup(multi);
	multi = NULL;
	curl_global_cleanup();
	free(watched);
	watched = NULL;
}

void
tvdb_http_init(void)
{
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		elog(ERROR, "could not initialize libcurl");
	multi = curl_multi_init();
	if (multi == NULL)
		elog(ERROR, "could not create a libcurl multi handle");
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
	on_proc_exit(cleanup_at_exit, (Datum) 0);
}

/* Called when the request's memory context goes away. */
static void
free_request(void *arg)
{
	TvdbHttp   *req = arg;

	if (req->in_multi && multi != NULL)
	{
		curl_multi_remove_handle(multi, req->easy);
		inflight--;
	}
	curl_easy_cleanup(req->easy);
	curl_slist_free_all(req->headers);
	if (req->mime)
		curl_mime_free(req->mime);
	free(req->body);
}

/* A request in CurrentMemoryContext; the caller adds headers and a body, then starts it. */
TvdbHttp *
tvdb_http_new(const char *url, void *owner)
{
	TvdbHttp   *req = palloc0(sizeof(TvdbHttp));
	MemoryContextCallback *cb = palloc(sizeof(MemoryContextCallback));
	CURL	   *easy = curl_easy_init();

	if (easy == NULL)
		elog(ERROR, "could not create a libcurl handle");
	req->easy = easy;
	cb->func = free_request;
	cb->arg = req;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, cb);
	req->owner = owner;
	req->retry_after_ms = -1;
	req->should_retry = -1;
	req->remaining_requests = -1;
	req->remaining_tokens = -1;
	req->reset_requests_ms = -1;
	req->reset_tokens_ms = -1;
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, req);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, req);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->error);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) tvdb_http_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) tvdb_connect_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_USERAGENT, "tvdb/" TVDB_VERSION);
	return req;
}

void
tvdb_http_header(TvdbHttp *req, const char *header)
{
	struct curl_slist *l = curl_slist_append(req->headers, header);

	if (l == NULL)
		elog(ERROR, "out of memory adding an HTTP header");
	req->headers = l;
}

void
tvdb_http_bearer(TvdbHttp *req, const char *key)
{
	char	   *h = psprintf("Authorization: Bearer %s", key);

	tvdb_http_header(req, h);
	explicit_bzero(h, strlen(h));	/* libcurl keeps its own copy */
	pfree(h);
}

/* A JSON request body (POST), kept with the request. */
void
tvdb_http_json(TvdbHttp *req, const char *body)
{
	req->post = pstrdup(body);
	curl_easy_setopt(req->easy, CURLOPT_POSTFIELDS, req->post);
	curl_easy_setopt(req->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) strlen(req->post));
	tvdb_http_header(req, "Content-Type: application/json");
}

static curl_mimepart *
form_part(TvdbHttp *req, const char *name)
{
	curl_mimepart *part;

	if (req->mime == NULL)
	{
		req->mime = curl_mime_init(req->easy);
		if (req->mime == NULL)
			elog(ERROR, "out of memory building a multipart request");
		curl_easy_setopt(req->easy, CURLOPT_MIMEPOST, req->mime);
	}
	part = curl_mime_addpart(req->mime);
	if (part == NULL || curl_mime_name(part, name) != CURLE_OK)
		elog(ERROR, "out of memory building a multipart request");
	return part;
}

/* A multipart file part (POST); libcurl copies the data. */
void
tvdb_http_form_file(TvdbHttp *req, const char *name, const char *filename,
					const char *type, const char *data, size_t len)
{
	curl_mimepart *part = form_part(req, name);

	if (curl_mime_filename(part, filename) != CURLE_OK ||
		curl_mime_type(part, type) != CURLE_OK ||
		curl_mime_data(part, data, len) != CURLE_OK)
		elog(ERROR, "out of memory building a multipart request");
}

void
tvdb_http_form_field(TvdbHttp *req, const char *name, const char *value)
{
	if (curl_mime_data(form_part(req, name), value, CURL_ZERO_TERMINATED) != CURLE_OK)
		elog(ERROR, "out of memory building a multipart request");
}

void
tvdb_http_start(TvdbHttp *req)
{
	Assert(!req->in_multi);
	if (req->headers)
		curl_easy_setopt(req->easy, CURLOPT_HTTPHEADER, req->headers);
	req->started_us = GetCurrentTimestamp();
	if (curl_multi_add_handle(multi, req->easy) != CURLM_OK)
		elog(ERROR, "could not add a request to the libcurl multi handle");
	req->in_multi = true;
	inflight++;
}

int
tvdb_http_inflight(void)
{
	return inflight;
}

/* Why a request failed, for last_error and the ledger; NULL if it got an answer. */
const char *
tvdb_http_failure(TvdbHttp *req)
{
	if (req->rc == CURLE_OK)
		return NULL;
	return psprintf("%s: %s", curl_easy_strerror(req->rc),
					req->error[0] ? req->error : "no detail");
}

/* The answer's body as text, or NULL (with a failure) when it is not valid UTF-8. */
char *
tvdb_http_text(TvdbHttp *req, const char **failure)
{
	if (req->body == NULL)
		return NULL;
	if (strlen(req->body) != req->body_len ||
		!pg_verifymbstr(req->body, req->body_len, true))
	{
		*failure = "response body is not valid UTF-8 text";
		return NULL;
	}
	return req->body;
}

/* s percent-encoded for a URL path segment (all but A-Z a-z 0-9 - . _ ~), palloc'd. */
char *
tvdb_http_escape(const char *s)
{
	char	   *e = curl_easy_escape(NULL, s, 0);
	char	   *out;

	if (e == NULL)
		elog(ERROR, "out of memory escaping a URL segment");
	out = pstrdup(e);
	curl_free(e);
	return out;
}

/* The requests libcurl has finished, in a list in the current memory context. */
static List *
finished(void)
{
	CURLMsg    *msg;
	int			left;
	List	   *done = NIL;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		TvdbHttp   *req;
		curl_off_t	total_us = 0;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req);
		req->rc = msg->data.result;
		curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &req->status);
		if (req->rc != CURLE_OK)
			req->status = 0;
		/* the service's time, not how long the answer waited for us */
		if (curl_easy_getinfo(req->easy, CURLINFO_TOTAL_TIME_T, &total_us) == CURLE_OK && total_us > 0)
			req->latency_ms = total_us / 1000.0;
		else
			req->latency_ms = (GetCurrentTimestamp() - req->started_us) / 1000.0;
		curl_multi_remove_handle(multi, req->easy);
		req->in_multi = false;
		inflight--;
		done = lappend(done, req);
	}
	return done;
}
static void
rebuild_wait_set(void)
{
	if (wait_set != NULL && wait_set_size >= n_watched + 2 && !set_dirty)
		return;
	if (wait_set != NULL)
		FreeWaitEventSet(wait_set);
	wait_set_size = n_watched + 2;
	wait_set = CreateWaitEventSet(TopMemoryContext, wait_set_size);
	AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (int i = 0; i < n_watched; i++)
	{
		uint32		ev = 0;

		if (watched[i].what & CURL_POLL_IN)
			ev |= WL_SOCKET_READABLE;
		if (watched[i].what & CURL_POLL_OUT)
			ev |= WL_SOCKET_WRITEABLE;
		AddWaitEventToSet(wait_set, ev, watched[i].fd, NULL, NULL);
	}
	set_dirty = false;
}

/*
 * Wait for the latch (unless latch is false), a socket or a timeout (ms; -1:
 * none of our own), drive libcurl and hand back the requests that finished.
 * Returns with the latch reset if it was waited on; the caller then looks at
 * its interrupts.
 */
List *
tvdb_http_wait(long timeout_ms, bool latch)
{
	WaitEvent	events[64];
	int			n;
	int			running;
	long		t = timeout_ms;

	if (inflight > 0 && curl_timeout_ms >= 0 && (t < 0 || curl_timeout_ms < t))
		t = curl_timeout_ms;
	rebuild_wait_set();
	/*
	 * Without the latch in the set, SetLatch() from committing backends only
	 * marks it set: no signal, no wake-up.  The next wait with it sees it.
	 */
	ModifyWaitEvent(wait_set, 0, WL_LATCH_SET, latch ? MyLatch : NULL);
	n = WaitEventSetWait(wait_set, t, events, lengthof(events), PG_WAIT_EXTENSION);
	for (int i = 0; i < n; i++)
	{
		if (events[i].events & WL_LATCH_SET)
			ResetLatch(MyLatch);
		else if (events[i].events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE))
		{
			int			mask = 0;

			if (events[i].events & WL_SOCKET_READABLE)
				mask |= CURL_CSELECT_IN;
			if (events[i].events & WL_SOCKET_WRITEABLE)
				mask |= CURL_CSELECT_OUT;
			curl_multi_socket_action(multi, events[i].fd, mask, &running);
		}
	}
	/* libcurl's own timers (connect, timeouts, retries) */
	curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
	return finished();
}
