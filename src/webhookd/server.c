/*
 * server.c — routes and request handling on libmicrohttpd.
 *
 *   POST /api/v1/webhooks/llamaparse   raw body, headers and query to the
 *                                      database, its {"http_status", ...} relayed back
 *   POST /api/v1/upload                a multipart "file", with a bearer token,
 *                                      to tvdb.upload_with_token(), relayed the same way
 *   GET  /health, /api/v1/webhooks/health   tvdb.health as JSON (503 when down)
 *   GET  /metrics                      tvdb.metrics(), Prometheus text format
 *   GET  /, /documents/{id}, /dashboard.js   the dashboard's page (no data in it)
 *   GET  /api/v1/status, /api/v1/documents?q=, /api/v1/documents/{id}
 *                                      with a monitor's bearer token, to
 *                                      tvdb.monitor_with_token(), relayed
 *
 * libmicrohttpd runs one thread per connection, so a request may block in
 * libpq without stalling others; the connection limit bounds the threads.
 * A body is collected in memory, bounded by --max-body (webhooks) or
 * --max-upload (uploads), before any database connection is borrowed for
 * it; an upload's token is checked before its body is read.
 */
#include "webhookd.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define BYTEAOID 17
#define TEXTOID 25
#define JSONBOID 3802

/* What a multipart body may hold besides the file: boundaries, part headers, small fields. */
#define FORM_OVERHEAD 65536
/* A bearer token longer than this is not one of ours (they are 69 characters). */
#define MAX_TOKEN 512

/* Relayed answers: the status, the body, and the job and correlation id it concerns, for the log. */
static const char *const webhook_sql =
"SELECT (r->>'http_status')::int, r::text, r->>'job_id', tvdb._job_correlation(r->>'job_id') "
"FROM tvdb.handle_llamaparse_webhook($1::bytea, $2::jsonb, $3::jsonb) AS r";
static const char *const upload_sql =
"SELECT (r->>'http_status')::int, r::text, r->>'job_id', r->>'correlation_id' "
"FROM tvdb.upload_with_token($1::text, $2::text, $3::bytea, $4::text) AS r";
static const char *const token_sql = "SELECT tvdb.api_token_valid($1::text)";
static const char *const health_sql =
"SELECT h.status, (jsonb_build_object('database', 'up') || to_jsonb(h))::text FROM tvdb.health h";
static const char *const metrics_sql = "SELECT tvdb.metrics()";
static const char *const monitor_sql =
"SELECT (r->>'http_status')::int, r::text "
"FROM tvdb.monitor_with_token($1::text, $2::text, $3::text) AS r";

/* The page may run its own script and talk to us, and nothing else. */
#define PAGE_POLICY "default-src 'none'; script-src 'self'; connect-src 'self'; " \
	"style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

#define BEARER_CHALLENGE "Bearer realm=\"tvdb\""
#define BEARER_INVALID   "Bearer realm=\"tvdb\", error=\"invalid_token\""

typedef enum Route
{
	ROUTE_NONE,
	ROUTE_WEBHOOK,
	ROUTE_UPLOAD,
	ROUTE_HEALTH,
	ROUTE_METRICS,
	ROUTE_PAGE,
	ROUTE_MONITOR
} Route;

static const struct
{
	const char *path;
	Route		route;
	bool		post;			/* POST, else GET and HEAD */
}			routes[] = {
	{"/api/v1/webhooks/llamaparse", ROUTE_WEBHOOK, true},
	{"/api/v1/upload", ROUTE_UPLOAD, true},
	{"/health", ROUTE_HEALTH, false},
	{"/api/v1/webhooks/health", ROUTE_HEALTH, false},
	{"/metrics", ROUTE_METRICS, false},
	{"/", ROUTE_PAGE, false},
	{"/dashboard.js", ROUTE_PAGE, false},
	{"/documents/", ROUTE_PAGE, false},	/* a prefix: /documents/{id} */
	{"/api/v1/status", ROUTE_MONITOR, false},
	{"/api/v1/documents", ROUTE_MONITOR, false},
	{"/api/v1/documents/", ROUTE_MONITOR, false},	/* a prefix */
};

/* Does url take this route: the same path, or below a path ending in '/'? */
static bool
route_matches(const char *url, const char *path)
{
	size_t		n = strlen(path);

	if (n > 1 && path[n - 1] == '/')
		return strncmp(url, path, n) == 0 && url[n] != '\0';
	return strcmp(url, path) == 0;
}

/* Per-request state, kept in libmicrohttpd's con_cls between calls. */
typedef struct Request
{
	struct timespec started;
	char		method[16];
	char		path[128];		/* for the log line only */
	Route		route;
	bool		post;			/* the route takes POST (else GET, HEAD) */
	Buf			body;			/* webhook body, at most max_body bytes */
	Upload	   *upload;			/* upload body, its "file" part */
	char	   *token;			/* upload's bearer token; wiped when freed */
	size_t		received;		/* body bytes seen, kept or not */
	bool		too_large;
	unsigned	status;			/* response queued, 0 if none yet */
	char		job[40];		/* the job the answer names, for the log */
	char		correlation[40];
	const char *dropped;		/* why we closed the connection, for the log */
} Request;

static const Config *config;

static const char *bearer_token(struct MHD_Connection *conn);

/* Requests under way, so that a shutdown can let them finish first. */
static pthread_mutex_t active_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t active_none;
static int	active;

static double
elapsed_ms(const struct timespec *since)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - since->tv_sec) * 1000.0 +
		(now.tv_nsec - since->tv_nsec) / 1e6;
}

/* Copy for the log: printable ASCII only, so a URL cannot forge log lines. */
static void
copy_printable(char *dst, size_t len, const char *src)
{
	size_t		i;

	for (i = 0; i + 1 < len && src[i] != '\0'; i++)
		dst[i] = (src[i] > 0x20 && src[i] < 0x7f) ? src[i] : '?';
	dst[i] = '\0';
}

/* A response with one extra header (header NULL: none). */
static enum MHD_Result
reply_as(struct MHD_Connection *conn, Request *req, unsigned status, const char *type,
		 const char *body, size_t len, const char *header, const char *value)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(len, (void *) body, MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (header != NULL)
		MHD_add_response_header(resp, header, value);
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	if (ret == MHD_YES)
		req->status = status;
	return ret;
}

static enum MHD_Result
reply(struct MHD_Connection *conn, Request *req, unsigned status,
	  const char *json, size_t len, const char *allow)
{
	return reply_as(conn, req, status, "application/json", json, len,
					allow ? MHD_HTTP_HEADER_ALLOW : NULL, allow);
}

/*
 * {"http_status": N, "result": "...", "detail": "..."}, the handler's shape;
 * with an Allow header for a 405, WWW-Authenticate for a 401.
 */
static enum MHD_Result
reply_error(struct MHD_Connection *conn, Request *req, unsigned status,
			const char *result, const char *detail, const char *header_value)
{
	Buf			b = {0};
	char		num[32];
	enum MHD_Result ret;
	const char *header = status == 405 ? MHD_HTTP_HEADER_ALLOW :
		status == 401 ? MHD_HTTP_HEADER_WWW_AUTHENTICATE : NULL;

	snprintf(num, sizeof(num), "{\"http_status\":%u,\"result\":", status);
	buf_puts(&b, num);
	buf_json_string(&b, result, strlen(result));
	buf_puts(&b, ",\"detail\":");
	buf_json_string(&b, detail, strlen(detail));
	buf_puts(&b, "}");
	if (b.failed)
		ret = MHD_NO;
	else
		ret = reply_as(conn, req, status, "application/json", b.data, b.len,
					   header_value ? header : NULL, header_value);
	buf_free(&b);
	return ret;
}

/* ---- headers, and the URL's query arguments, as JSON objects -------- */

typedef struct Header
{
	const char *name;			/* as received; owned by libmicrohttpd */
	Buf			value;			/* repeated headers joined with ", " */
} Header;

typedef struct HeaderList
{
	Header	   *items;
	int			count;
	int			cap;
	bool		failed;
} HeaderList;

static enum MHD_Result
collect_header(void *cls, enum MHD_ValueKind kind, const char *name, const char *value)
{
	HeaderList *list = cls;
	Header	   *h = NULL;

	(void) kind;
	if (value == NULL)
		value = "";
	/* HTTP header names are case-insensitive: a repeat joins the first. */
	for (int i = 0; i < list->count && h == NULL; i++)
		if (strcasecmp(list->items[i].name, name) == 0)
			h = &list->items[i];
	if (h != NULL)
	{
		buf_puts(&h->value, ", ");
		buf_puts(&h->value, value);
		return MHD_YES;
	}
	if (list->count == list->cap)
	{
		int			cap = list->cap ? list->cap * 2 : 32;
		Header	   *items = realloc(list->items, cap * sizeof(Header));

		if (items == NULL)
		{
			list->failed = true;
			return MHD_NO;
		}
		list->items = items;
		list->cap = cap;
	}
	h = &list->items[list->count++];
	h->name = name;
	memset(&h->value, 0, sizeof(h->value));
	buf_puts(&h->value, value);
	return MHD_YES;
}

/*
 * Fills out with {"Name": "value", ...} from the request's headers (or its
 * query arguments); false if memory ran out.
 */
static bool
values_json(struct MHD_Connection *conn, enum MHD_ValueKind kind, Buf *out)
{
	HeaderList	list = {0};
	bool		ok;

	MHD_get_connection_values(conn, kind, collect_header, &list);
	buf_puts(out, "{");
	for (int i = 0; i < list.count; i++)
	{
		Header	   *h = &list.items[i];

		if (i > 0)
			buf_puts(out, ",");
		buf_json_string(out, h->name, strlen(h->name));
		buf_puts(out, ":");
		buf_json_string(out, h->value.data ? h->value.data : "", h->value.len);
		list.failed |= h->value.failed;
		buf_free(&h->value);
	}
	buf_puts(out, "}");
	ok = !list.failed && !out->failed;
	free(list.items);
	return ok;
}

/* ---- the endpoints ------------------------------------------------- */

/*
 * A function's {"http_status": N, ...} answer, relayed as it is: N is the
 * HTTP status, the object the body.  Frees res.
 */
static enum MHD_Result
relay(struct MHD_Connection *conn, Request *req, PGresult *res)
{
	enum MHD_Result ret;

	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0) || PQgetisnull(res, 0, 1))
		ret = reply_error(conn, req, 500, "database_error",
						  "the handler returned no http_status", NULL);
	else
	{
		long		status = strtol(PQgetvalue(res, 0, 0), NULL, 10);

		if (status < 100 || status > 599)
			ret = reply_error(conn, req, 500, "database_error",
							  "the handler returned an invalid http_status", NULL);
		else if (status == 401 && (req->route == ROUTE_UPLOAD || req->route == ROUTE_MONITOR))
			ret = reply_as(conn, req, 401, "application/json", PQgetvalue(res, 0, 1),
						   PQgetlength(res, 0, 1), MHD_HTTP_HEADER_WWW_AUTHENTICATE, BEARER_INVALID);
		else
			ret = reply(conn, req, (unsigned) status, PQgetvalue(res, 0, 1),
						PQgetlength(res, 0, 1), NULL);
	}
	if (PQnfields(res) >= 4 && PQntuples(res) == 1)
	{
		copy_printable(req->job, sizeof(req->job), PQgetvalue(res, 0, 2));
		copy_printable(req->correlation, sizeof(req->correlation), PQgetvalue(res, 0, 3));
	}
	PQclear(res);
	return ret;
}

/*
 * A function given text from the request: its answer relayed; 503 when the
 * database is out of reach, 400 when it cannot take the text as text
 * (class 22: bad UTF-8), 500 for any other error.
 */
static enum MHD_Result
relay_text_args(struct MHD_Connection *conn, Request *req, DbOutcome outcome, PGresult *res,
				const char *errbuf)
{
	if (outcome == DB_UNAVAILABLE)
		return reply_error(conn, req, 503, "database_unavailable", errbuf, NULL);
	if (outcome == DB_SQL_ERROR && strncmp(pool_sqlstate(), "22", 2) == 0)
		return reply_error(conn, req, 400, "bad_request", errbuf, NULL);
	if (outcome == DB_SQL_ERROR)
		return reply_error(conn, req, 500, "database_error", errbuf, NULL);
	return relay(conn, req, res);
}

static enum MHD_Result
handle_webhook(struct MHD_Connection *conn, Request *req)
{
	Buf			headers = {0};
	Buf			query = {0};
	PGresult   *res = NULL;
	char		errbuf[512];
	DbOutcome	outcome;

	/* the query carries the job and token of the callback URL tvdb handed out */
	if (!values_json(conn, MHD_HEADER_KIND, &headers) ||
		!values_json(conn, MHD_GET_ARGUMENT_KIND, &query))
	{
		buf_free(&headers);
		buf_free(&query);
		return reply_error(conn, req, 500, "internal_error", "out of memory", NULL);
	}

	{
		const Oid	types[3] = {BYTEAOID, JSONBOID, JSONBOID};
		const char *params[3] = {req->body.data ? req->body.data : "", headers.data, query.data};
		const int	lengths[3] = {(int) req->body.len, 0, 0};
		const int	formats[3] = {1, 0, 0};	/* body binary: bytes as received */

		outcome = pool_exec(webhook_sql, 3, types, params, lengths, formats,
							&res, errbuf, sizeof(errbuf));
	}
	buf_free(&headers);
	buf_free(&query);

	if (outcome == DB_UNAVAILABLE)
		return reply_error(conn, req, 503, "database_unavailable", errbuf, NULL);
	if (outcome == DB_SQL_ERROR)
		return reply_error(conn, req, 500, "database_error", errbuf, NULL);
	return relay(conn, req, res);
}

/* The whole upload is in: its file to tvdb.upload_with_token(). */
static enum MHD_Result
handle_upload(struct MHD_Connection *conn, Request *req)
{
	const char *detail;
	PGresult   *res = NULL;
	char		errbuf[512];
	DbOutcome	outcome;

	switch (upload_finish(req->upload, &detail))
	{
		case UPLOAD_OK:
			break;
		case UPLOAD_BAD:
			return reply_error(conn, req, 400, "bad_request", detail, NULL);
		case UPLOAD_TOO_LARGE:
			return reply_error(conn, req, 413, "payload_too_large", detail, NULL);
		case UPLOAD_NO_MEMORY:
			return reply_error(conn, req, 500, "internal_error", detail, NULL);
	}

	{
		const Buf  *file = upload_file(req->upload);
		const Oid	types[4] = {TEXTOID, TEXTOID, BYTEAOID, TEXTOID};
		const char *params[4] = {req->token, upload_filename(req->upload),
			file->data ? file->data : "", upload_content_type(req->upload)};
		const int	lengths[4] = {0, 0, (int) file->len, 0};
		const int	formats[4] = {0, 0, 1, 0};	/* the file binary, as received */

		outcome = pool_exec(upload_sql, 4, types, params, lengths, formats,
							&res, errbuf, sizeof(errbuf));
	}
	return relay_text_args(conn, req, outcome, res, errbuf);
}

/* tvdb.health as JSON: 200 when ok or degraded, 503 when down or unreachable. */
static enum MHD_Result
handle_health(struct MHD_Connection *conn, Request *req)
{
	PGresult   *res = NULL;
	char		errbuf[512];
	Buf			b = {0};
	enum MHD_Result ret;
	DbOutcome	outcome;

	outcome = pool_exec(health_sql, 0, NULL, NULL, NULL, NULL, &res, errbuf, sizeof(errbuf));
	if (outcome == DB_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 1))
	{
		unsigned	status = strcmp(PQgetvalue(res, 0, 0), "down") == 0 ? 503 : 200;

		ret = reply(conn, req, status, PQgetvalue(res, 0, 1), PQgetlength(res, 0, 1), NULL);
		PQclear(res);
		return ret;
	}
	if (outcome == DB_OK)
	{
		snprintf(errbuf, sizeof(errbuf), "tvdb.health returned no row");
		PQclear(res);
	}
	buf_puts(&b, outcome == DB_UNAVAILABLE ?
			 "{\"status\":\"down\",\"database\":\"down\",\"detail\":" :
			 "{\"status\":\"down\",\"database\":\"error\",\"detail\":");
	buf_json_string(&b, errbuf, strlen(errbuf));
	buf_puts(&b, "}");
	ret = b.failed ? MHD_NO : reply(conn, req, 503, b.data, b.len, NULL);
	buf_free(&b);
	return ret;
}

/* tvdb.metrics(), as Prometheus scrapes it. */
static enum MHD_Result
handle_metrics(struct MHD_Connection *conn, Request *req)
{
	PGresult   *res = NULL;
	char		errbuf[512];
	enum MHD_Result ret;
	DbOutcome	outcome;

	outcome = pool_exec(metrics_sql, 0, NULL, NULL, NULL, NULL, &res, errbuf, sizeof(errbuf));
	if (outcome == DB_UNAVAILABLE)
		return reply_error(conn, req, 503, "database_unavailable", errbuf, NULL);
	if (outcome == DB_SQL_ERROR)
		return reply_error(conn, req, 500, "database_error", errbuf, NULL);
	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0))
		ret = reply_error(conn, req, 500, "database_error", "tvdb.metrics() returned nothing", NULL);
	else
		ret = reply_as(conn, req, 200, "text/plain; version=0.0.4; charset=utf-8",
					   PQgetvalue(res, 0, 0), PQgetlength(res, 0, 0), NULL, NULL);
	PQclear(res);
	return ret;
}

/* The dashboard's page or script; 404 for any other path under /documents/. */
static enum MHD_Result
handle_page(struct MHD_Connection *conn, Request *req, const char *url)
{
	const char *type;
	size_t		len;
	const char *body = page_for(url, &type, &len);
	struct MHD_Response *resp;
	enum MHD_Result ret;

	if (body == NULL)
		return reply_error(conn, req, 404, "not_found", "a document's page is /documents/{document id}", NULL);
	resp = MHD_create_response_from_buffer(len, (void *) body, MHD_RESPMEM_PERSISTENT);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
	MHD_add_response_header(resp, "Content-Security-Policy", PAGE_POLICY);
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
	ret = MHD_queue_response(conn, 200, resp);
	MHD_destroy_response(resp);
	if (ret == MHD_YES)
		req->status = 200;
	return ret;
}

/*
 * The dashboard's data: the bearer token, what is asked (status, search,
 * document) and its argument to tvdb.monitor_with_token(), which checks
 * them all; its answer relayed.
 */
static enum MHD_Result
handle_monitor(struct MHD_Connection *conn, Request *req, const char *url)
{
	const char *token = bearer_token(conn);
	const Oid	types[3] = {TEXTOID, TEXTOID, TEXTOID};
	const char *params[3];
	char	   *own;
	PGresult   *res = NULL;
	char		errbuf[512];
	DbOutcome	outcome;

	if (token == NULL)
		return reply_error(conn, req, 401, "unauthorized",
						   "an Authorization: Bearer <token> header is required (a token owned by tvdb_monitor)",
						   BEARER_CHALLENGE);
	own = strndup(token, strcspn(token, " "));
	if (own == NULL)
		return MHD_NO;
	params[0] = own;
	if (strcmp(url, "/api/v1/status") == 0)
	{
		params[1] = "status";
		params[2] = NULL;
	}
	else if (strcmp(url, "/api/v1/documents") == 0)
	{
		params[1] = "search";
		params[2] = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "q");
	}
	else
	{
		params[1] = "document";
		params[2] = url + strlen("/api/v1/documents/");
	}
	outcome = pool_exec(monitor_sql, 3, types, params, NULL, NULL, &res, errbuf, sizeof(errbuf));
	explicit_bzero(own, strlen(own));
	free(own);
	return relay_text_args(conn, req, outcome, res, errbuf);
}

/* ---- libmicrohttpd callbacks --------------------------------------- */

/* The largest body a route reads. */
static size_t
body_limit(const Request *req)
{
	return req->route == ROUTE_UPLOAD ? config->max_upload + FORM_OVERHEAD : config->max_body;
}

/*
 * The token of "Authorization: Bearer <token>" (RFC 6750: the scheme in any
 * case, a token68), or NULL.
 */
static const char *
bearer_token(struct MHD_Connection *conn)
{
	const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
												   MHD_HTTP_HEADER_AUTHORIZATION);
	size_t		n;

	if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0)
		return NULL;
	auth += 7;
	while (*auth == ' ')
		auth++;
	n = strspn(auth, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/");
	while (auth[n] == '=')
		n++;
	if (n == 0 || n > MAX_TOKEN || strspn(auth + n, " ") != strlen(auth + n))
		return NULL;
	return auth;
}

/*
 * An upload, before its body: a bearer token (401 without one), a
 * multipart body (400), not declared larger than the limit (413), and a
 * token the database knows (401), so that nobody else can make us read one.
 */
static enum MHD_Result
start_upload(struct MHD_Connection *conn, Request *req)
{
	const char *token = bearer_token(conn);
	const Oid	types[1] = {TEXTOID};
	PGresult   *res = NULL;
	char		errbuf[512];
	DbOutcome	outcome;
	bool		valid;

	if (token == NULL)
		return reply_error(conn, req, 401, "unauthorized",
						   "an Authorization: Bearer <token> header is required", BEARER_CHALLENGE);
	req->token = strndup(token, strcspn(token, " "));
	if (req->token == NULL)
		return MHD_NO;
	req->upload = upload_begin(conn, config->max_upload);
	if (req->upload == NULL)
		return reply_error(conn, req, 400, "bad_request",
						   "the body must be multipart/form-data (with a boundary) holding a \"file\" part", NULL);

	outcome = pool_exec(token_sql, 1, types, (const char *const *) &req->token, NULL, NULL,
						&res, errbuf, sizeof(errbuf));
	if (outcome == DB_UNAVAILABLE)
		return reply_error(conn, req, 503, "database_unavailable", errbuf, NULL);
	if (outcome == DB_SQL_ERROR)
		return reply_error(conn, req, 500, "database_error", errbuf, NULL);
	valid = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (!valid)
		return reply_error(conn, req, 401, "unauthorized", "missing or unknown bearer token",
						   BEARER_INVALID);
	return MHD_YES;
}

/* First call for a request: route it, and refuse early what we can. */
static enum MHD_Result
start_request(struct MHD_Connection *conn, Request *req)
{
	const char *length;

	if (req->route == ROUTE_NONE)
		return reply_error(conn, req, 404, "not_found", "no such endpoint", NULL);
	if (!req->post &&
		strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0)
		return reply_error(conn, req, 405, "method_not_allowed",
						   "use GET", "GET, HEAD");
	if (req->post && strcmp(req->method, "POST") != 0)
		return reply_error(conn, req, 405, "method_not_allowed",
						   "use POST", "POST");

	/*
	 * A declared length over the limit is refused before any of the body is
	 * read (libmicrohttpd then skips the body and closes the connection;
	 * with "Expect: 100-continue" the client never sends it).
	 */
	length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
										 MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (length != NULL && strtoull(length, NULL, 10) > body_limit(req))
		return reply_error(conn, req, 413, "payload_too_large",
						   req->route == ROUTE_UPLOAD ?
						   "the body is larger than the receiver's --max-upload" :
						   "the body is larger than the receiver's --max-body", NULL);
	if (req->route == ROUTE_UPLOAD)
		return start_upload(conn, req);
	return MHD_YES;				/* wait for the body */
}

/*
 * A part of the body.  libmicrohttpd lets no response be queued here, so a
 * chunked body that outgrows the limit is dropped from memory at once and
 * the rest only counted, to answer 413 when it ends; one that keeps going
 * past twice the limit, or past --timeout, gets its connection closed.
 */
static enum MHD_Result
take_body(Request *req, const char *data, size_t size)
{
	req->received += size;
	if (elapsed_ms(&req->started) > config->timeout * 1000.0)
	{
		req->dropped = "body still arriving after --timeout";
		return MHD_NO;
	}
	if (req->received > 2 * body_limit(req))
	{
		req->dropped = "chunked body over twice its limit";
		return MHD_NO;
	}
	if (req->received > body_limit(req))
	{
		req->too_large = true;
		buf_free(&req->body);
	}
	else if (req->route == ROUTE_WEBHOOK)
	{
		buf_append(&req->body, data, size);
		if (req->body.failed)
			return MHD_NO;
	}
	else if (req->route == ROUTE_UPLOAD)
		upload_feed(req->upload, data, size);	/* bounds the file itself */
	return MHD_YES;
}

static enum MHD_Result
access_handler(void *cls, struct MHD_Connection *conn, const char *url,
			   const char *method, const char *version,
			   const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	Request    *req = *con_cls;

	(void) cls;
	(void) version;
	if (req == NULL)
	{
		req = calloc(1, sizeof(Request));
		if (req == NULL)
			return MHD_NO;
		*con_cls = req;
		pthread_mutex_lock(&active_lock);
		active++;
		pthread_mutex_unlock(&active_lock);
		clock_gettime(CLOCK_MONOTONIC, &req->started);
		copy_printable(req->method, sizeof(req->method), method);
		copy_printable(req->path, sizeof(req->path), url);
		for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
			if (route_matches(url, routes[i].path))
			{
				req->route = routes[i].route;
				req->post = routes[i].post;
			}
		return start_request(conn, req);
	}

	if (*upload_data_size > 0)
	{
		enum MHD_Result ret = take_body(req, upload_data, *upload_data_size);

		*upload_data_size = 0;
		return ret;
	}

	/* The whole request is in. */
	if (req->too_large)
		return reply_error(conn, req, 413, "payload_too_large",
						   req->route == ROUTE_UPLOAD ?
						   "the body is larger than the receiver's --max-upload" :
						   "the body is larger than the receiver's --max-body", NULL);
	switch (req->route)
	{
		case ROUTE_WEBHOOK:
			return handle_webhook(conn, req);
		case ROUTE_UPLOAD:
			return handle_upload(conn, req);
		case ROUTE_METRICS:
			return handle_metrics(conn, req);
		case ROUTE_PAGE:
			return handle_page(conn, req, url);
		case ROUTE_MONITOR:
			return handle_monitor(conn, req, url);
		default:
			return handle_health(conn, req);
	}
}

/* One log line per request, then free its state. */
static void
request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
				  enum MHD_RequestTerminationCode toe)
{
	Request    *req = *con_cls;
	static const char *const why[] = {
		[MHD_REQUEST_TERMINATED_COMPLETED_OK] = "",
		[MHD_REQUEST_TERMINATED_WITH_ERROR] = " (connection error)",
		[MHD_REQUEST_TERMINATED_TIMEOUT_REACHED] = " (timed out)",
		[MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN] = " (shutting down)",
		[MHD_REQUEST_TERMINATED_READ_ERROR] = " (client went away)",
		[MHD_REQUEST_TERMINATED_CLIENT_ABORT] = " (client aborted)",
	};
	char		status[12] = "-";

	(void) cls;
	(void) conn;
	if (req == NULL)
		return;
	if (req->status != 0)
		snprintf(status, sizeof(status), "%u", req->status);
	if (req->dropped != NULL)
		wlog("%s %s %s %.1fms (closed: %s)", req->method, req->path, status,
			 elapsed_ms(&req->started), req->dropped);
	else
		wlog("%s %s %s %.1fms%s%s%s%s%s", req->method, req->path, status,
			 elapsed_ms(&req->started),
			 (unsigned) toe < sizeof(why) / sizeof(why[0]) ? why[toe] : " (closed)",
			 req->job[0] ? " job=" : "", req->job,
			 req->correlation[0] ? " correlation=" : "", req->correlation);
	buf_free(&req->body);
	upload_free(req->upload);
	if (req->token != NULL)
		explicit_bzero(req->token, strlen(req->token));
	free(req->token);
	free(req);
	*con_cls = NULL;

	pthread_mutex_lock(&active_lock);
	if (--active == 0)
		pthread_cond_broadcast(&active_none);
	pthread_mutex_unlock(&active_lock);
}

struct MHD_Daemon *
http_start(const Config *cfg, const struct sockaddr *addr, bool ipv6)
{
	/* MHD_USE_ITC: required for MHD_quiesce_daemon() in this threading mode */
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD |
		MHD_USE_THREAD_PER_CONNECTION | MHD_USE_AUTO | MHD_USE_ITC |
		MHD_USE_ERROR_LOG;

	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&active_none, &attr);
	pthread_condattr_destroy(&attr);

	config = cfg;
	if (ipv6)
		flags |= MHD_USE_IPv6;
	return MHD_start_daemon(flags, (uint16_t) cfg->port, NULL, NULL,
							access_handler, NULL,
							MHD_OPTION_SOCK_ADDR, addr,
							MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) cfg->timeout,
							MHD_OPTION_CONNECTION_LIMIT, (unsigned int) WEBHOOKD_MAX_CONNECTIONS,
							MHD_OPTION_NOTIFY_COMPLETED, request_completed, NULL,
							MHD_OPTION_END);
}

/*
 * Stop accepting connections and give the requests under way up to
 * `seconds` to finish, so that a callback being applied is answered rather
 * than cut off (the sender would only retry it).  Returns how many are
 * still running.
 */
int
http_quiesce(struct MHD_Daemon *daemon, unsigned seconds)
{
	struct timespec deadline;
	MHD_socket	fd = MHD_quiesce_daemon(daemon);
	int			left;

	if (fd != MHD_INVALID_SOCKET)
		close(fd);
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += seconds;
	pthread_mutex_lock(&active_lock);
	while (active > 0 &&
		   pthread_cond_timedwait(&active_none, &active_lock, &deadline) == 0)
		;
	left = active;
	pthread_mutex_unlock(&active_lock);
	return left;
}
