/*
 * worker.h — the background worker: its settings, the wake-up on commit,
 * the libcurl driver and the pipeline stages.
 */
#ifndef TVDB_WORKER_H
#define TVDB_WORKER_H

#include "tvdb.h"

#include <curl/curl.h>

#include "lib/stringinfo.h"

#define TVDB_MAX_WORKERS 32

/* settings.c */
typedef enum
{
	TVDB_MODE_REAL,
	TVDB_MODE_MOCK
} TvdbServiceMode;

extern char *tvdb_database;
extern int	tvdb_workers;
extern int	tvdb_service_mode;
extern char *tvdb_llamaparse_base_url;
extern char *tvdb_llamaparse_api_key;
extern char *tvdb_openai_base_url;
extern char *tvdb_openai_api_key;
extern char *tvdb_embedding_model;
extern int	tvdb_embedding_dimensions;
extern int	tvdb_max_inflight;
extern int	tvdb_chunk_target_tokens;
extern int	tvdb_chunk_overlap_tokens;
extern int	tvdb_chunk_bytes_per_token;
extern int	tvdb_http_timeout_ms;
extern int	tvdb_connect_timeout_ms;
extern int	tvdb_poll_min_ms;
extern int	tvdb_poll_max_ms;
extern int	tvdb_lease_seconds;
extern char *tvdb_parse_webhook_url;
extern double tvdb_llamaparse_usd_per_page;
extern double tvdb_openai_usd_per_mtok;
extern int	tvdb_embedding_batch_inputs;
extern int	tvdb_embedding_batch_tokens;

extern void tvdb_define_worker_settings(void);
extern int	tvdb_model_dimensions(void);
extern int	tvdb_lease_effective(void);

/* wakeup.c: workers sleep on their latch; a commit that made work wakes them */
extern void tvdb_wakeup_init(void);
extern void tvdb_wakeup_register(int slot);
extern void tvdb_wakeup_on_commit(void);

/* http.c: one libcurl multi handle driven together with the latch */
typedef struct TvdbHttp TvdbHttp;
typedef void (*TvdbHttpDone) (TvdbHttp *req);

struct TvdbHttp
{
	CURL	   *easy;
	struct curl_slist *headers;
	curl_mime  *mime;
	char	   *post;			/* request body, owned */
	char	   *body;			/* response body (malloc), NUL-terminated */
	size_t		body_len;
	size_t		body_cap;
	long		status;			/* 0: no response */
	long		retry_after_ms; /* from retry-after(-ms), or -1 */
	CURLcode	rc;
	char		error[CURL_ERROR_SIZE];
	double		latency_ms;
	int64		started_us;
	TvdbHttpDone done;
	void	   *arg;			/* the stage's own state */
};

extern void tvdb_http_init(void);
extern TvdbHttp *tvdb_http_new(const char *url, TvdbHttpDone done, void *arg);
extern void tvdb_http_header(TvdbHttp *req, const char *header);
extern void tvdb_http_bearer(TvdbHttp *req, const char *key);
extern void tvdb_http_start(TvdbHttp *req);
extern void tvdb_http_free(TvdbHttp *req);
extern int	tvdb_http_inflight(void);
extern void tvdb_http_wait(long timeout_ms, bool latch);
extern const char *tvdb_http_failure(TvdbHttp *req);

/* worker.c */
extern void tvdb_register_workers(void);

/* stages.c */
extern bool tvdb_stages_dispatch(const char *owner);
extern void tvdb_answers_begin(void);
extern void tvdb_answers_end(void);

/* embedjson.c: an OpenAI embeddings answer, read in C */
typedef struct TvdbEmbeddings
{
	int			n;				/* inputs sent */
	int			dims;			/* dimensions expected */
	MemoryContext cxt;			/* where the vectors go */
	float	  **vectors;		/* by input index */
	int			answered;
	long		prompt_tokens;	/* -1: not given */
	const char *error;			/* NULL if the answer is complete and well-formed */
} TvdbEmbeddings;

extern void tvdb_read_embeddings(const char *body, size_t len, TvdbEmbeddings *e);

/* topjson.c */
extern bool tvdb_json_top_strings(const char *body, size_t len, const char *const *keys,
								  char **values, int nkeys);

/* mock.c: the offline parser and embedder */
extern char *tvdb_mock_markdown(const char *filename, const char *mime_type,
								const char *data, size_t len);
extern void tvdb_mock_embed(const char *text, size_t len, float *out, int dims);

#endif							/* TVDB_WORKER_H */
