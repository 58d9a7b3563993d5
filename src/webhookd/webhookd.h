/*
 * webhookd.h — tvdb-webhookd, tvdb's HTTP front door: parser callbacks,
 * uploads, health and Prometheus metrics.
 *
 * It runs as its own process, outside the postmaster, on purpose: a crash in
 * network-facing code must never make PostgreSQL restart.  All it does is
 * hand each request's bytes to one SQL function and relay the answer; every
 * decision (signatures, tokens, validation) is made inside the database.
 */
#ifndef TVDB_WEBHOOKD_H
#define TVDB_WEBHOOKD_H

#include <stdbool.h>
#include <stddef.h>
#include <libpq-fe.h>

#ifndef TVDB_VERSION
#define TVDB_VERSION "dev"
#endif

/* At most this many simultaneous client connections (one thread each). */
#define WEBHOOKD_MAX_CONNECTIONS 256

typedef struct Config
{
	const char *listen;			/* numeric address or host name to bind */
	unsigned	port;
	const char *dsn;			/* libpq connection string; "" = PG* env */
	size_t		max_body;		/* largest webhook body accepted, bytes */
	size_t		max_upload;		/* largest uploaded file accepted, bytes */
	unsigned	timeout;		/* seconds: idle connection, whole request,
								 * pool wait, statement_timeout */
	int			pool;			/* database connections */
} Config;

/* main.c */
extern void wlog(const char *fmt,...) __attribute__((format(printf, 1, 2)));

/* json.c — a growable byte buffer and JSON string escaping */
typedef struct Buf
{
	char	   *data;
	size_t		len;
	size_t		cap;
	bool		failed;			/* an allocation failed; contents are partial */
} Buf;

extern bool buf_reserve(Buf *b, size_t extra);
extern void buf_append(Buf *b, const char *s, size_t n);
extern void buf_puts(Buf *b, const char *s);
extern void buf_json_string(Buf *b, const char *s, size_t n);
extern void buf_free(Buf *b);

/* pool.c — a fixed set of libpq connections shared by the request threads */
typedef enum DbOutcome
{
	DB_OK,						/* *res holds the tuples */
	DB_SQL_ERROR,				/* the statement failed; errbuf has why */
	DB_UNAVAILABLE				/* no usable connection, even after a retry */
} DbOutcome;

extern bool pool_init(const Config *cfg);
extern DbOutcome pool_exec(const char *sql, int nparams, const Oid *types,
						   const char *const *values, const int *lengths,
						   const int *formats, PGresult **res,
						   char *errbuf, size_t errlen);
/* the SQLSTATE of the last DB_SQL_ERROR in this thread ("" if none) */
extern const char *pool_sqlstate(void);
extern void pool_shutdown(void);
extern void pool_destroy(void);

/* upload.c — a multipart/form-data body, streamed, keeping its "file" part */
typedef struct Upload Upload;
typedef enum UploadResult
{
	UPLOAD_OK,
	UPLOAD_BAD,					/* malformed, no file part, two of them, no filename */
	UPLOAD_TOO_LARGE,			/* the file outgrew --max-upload */
	UPLOAD_NO_MEMORY
} UploadResult;

struct MHD_Connection;
extern Upload *upload_begin(struct MHD_Connection *conn, size_t max_file);
extern void upload_feed(Upload *u, const char *data, size_t size);
extern UploadResult upload_finish(Upload *u, const char **detail);
extern const char *upload_filename(const Upload *u);
extern const char *upload_content_type(const Upload *u);
extern const Buf *upload_file(const Upload *u);
extern void upload_free(Upload *u);

/* page.c — the dashboard's page and script for a GET of url, or NULL */
extern const char *page_for(const char *url, const char **type, size_t *len);

/* server.c — routes and request handling on libmicrohttpd */
struct MHD_Daemon;
struct sockaddr;
extern struct MHD_Daemon *http_start(const Config *cfg,
									 const struct sockaddr *addr, bool ipv6);
extern int	http_quiesce(struct MHD_Daemon *daemon, unsigned seconds);

#endif							/* TVDB_WEBHOOKD_H */
