/*
 * http_driver.h — the workers' HTTP mechanics: one libcurl multi handle
 * driven by the same wait as the latch.  It moves bytes and hands back
 * finished requests; it knows nothing of jobs, stages or transactions.
 */
#ifndef TVDB_HTTP_DRIVER_H
#define TVDB_HTTP_DRIVER_H

#include "tvdb.h"

#include <curl/curl.h>

typedef struct TvdbHttp
{
	CURL	   *easy;
	struct curl_slist *headers;
	curl_mime  *mime;
	char	   *post;			/* request body */
	char	   *body;			/* response body (malloc), NUL-terminated */
	size_t		body_len;
	size_t		body_cap;
	long		status;			/* 0: no response */
	long		retry_after_ms; /* from retry-after(-ms), or -1 */
	bool		retry_after_exact;	/* it came from retry-after-ms */
	int			should_retry;	/* x-should-retry: 1 true, 0 false, -1 not said */
	long		remaining_requests; /* x-ratelimit-remaining-requests, or -1 */
	long		remaining_tokens;	/* x-ratelimit-remaining-tokens, or -1 */
	long		reset_requests_ms;	/* x-ratelimit-reset-requests, or -1 */
	long		reset_tokens_ms;	/* x-ratelimit-reset-tokens, or -1 */
	CURLcode	rc;
	char		error[CURL_ERROR_SIZE];
	double		latency_ms;
	int64		started_us;
	bool		in_multi;		/* started and not yet handed back */
	void	   *owner;			/* whoever asked for it */
} TvdbHttp;

extern void tvdb_http_init(void);
extern TvdbHttp *tvdb_http_new(const char *url, void *owner);
extern void tvdb_http_header(TvdbHttp *req, const char *header);
extern void tvdb_http_bearer(TvdbHttp *req, const char *key);
extern void tvdb_http_json(TvdbHttp *req, const char *body);
extern void tvdb_http_form_file(TvdbHttp *req, const char *name, const char *filename,
								const char *type, const char *data, size_t len);
extern void tvdb_http_form_field(TvdbHttp *req, const char *name, const char *value);
extern void tvdb_http_start(TvdbHttp *req);
extern int	tvdb_http_inflight(void);
extern List *tvdb_http_wait(long timeout_ms, bool latch);
extern const char *tvdb_http_failure(TvdbHttp *req);
extern char *tvdb_http_text(TvdbHttp *req, const char **failure);
extern char *tvdb_http_escape(const char *s);

#endif							/* TVDB_HTTP_DRIVER_H */
