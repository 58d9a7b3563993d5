/*
 * reference.c — the pipeline as a perfect worker would run it, for
 * bench/pipeline/run.sh to measure tvdb against, on the same fake servers in
 * the same run.  It writes nothing to any database and keeps nothing.
 *
 * For each of N documents (the same HTML the bench uploads to tvdb, under
 * another tag so that the fake's parse cache never hits):
 *   1. upload it: POST {llamaparse}/api/v1/parsing/upload, multipart with the
 *      one part "file" (filename, text/html, bytes), as tvdb sends with
 *      tvdb.llamaparse_options = '{}' and no webhook;
 *   2. poll it once, --parse-latency seconds after its upload was answered
 *      (the oracle tvdb does not have): GET .../api/v1/parsing/job/{id}; a
 *      parse still running (never expected) is polled again 10 ms later and
 *      counted;
 *   3. fetch the markdown: GET .../api/v1/parsing/job/{id}/result/markdown;
 *   4. chunk it with tvdb's own chunker (src/chunker/chunker.c, linked in)
 *      with tvdb's options, dropping whitespace-only chunks as the worker
 *      does (src/stages/chunk_store.c);
 *   5. embed: POST {openai}/embeddings, the body tvdb builds
 *      (src/stages/openai.c: model, encoding_format, dimensions if > 0,
 *      input), each request holding the chunks of up to --batch-docs
 *      documents (tvdb's embed stage claims 64 jobs at a time) within
 *      --batch-inputs inputs and --batch-tokens UTF-8 bytes
 *      (tvdb.embedding_batch_inputs / _tokens), cut in the same order as
 *      tvdb's batches().  A batch goes when it is full, or when no document
 *      is left upstream that could join it.  The answer is read: every
 *      vector is decoded (base64 or float) and counted.
 * At most --inflight requests are in flight at once (tvdb.max_inflight);
 * when a slot frees, the later stage goes first: embed, fetch, poll, upload.
 * One libcurl multi handle, one easy handle per request, the same options as
 * tvdb's HTTP driver (src/worker/http_driver.c), so connections are reused
 * the same way.
 *
 * Prints one line of JSON: wall_s (first upload sent to last embeddings
 * answer read), requests by kind, extra polls, inputs and bytes embedded,
 * and its own CPU time (user + system).  Exit status 1 if any request
 * failed or any answer was not what was expected.
 *
 *   cc -O2 -o reference reference.c ../../src/chunker/chunker.c \
 *      -I../../src/chunker -lcurl -lcmark-gfm-extensions -lcmark-gfm
 */
#define _POSIX_C_SOURCE 200809L
#include <curl/curl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "chunker.h"

/* ------------------------------------------------------------ options */

static const char *lp_base;		/* http://127.0.0.1:PORT */
static const char *oa_base;		/* http://127.0.0.1:PORT/v1 */
static const char *tag = "ref";
static const char *model = "text-embedding-3-small";
static const char *encoding = "base64";
static int	n_docs = 100;
static int	inflight_max = 64;
static double parse_latency = 0;
static int	dims = 0;			/* 0: the model's own (1536), not sent */
static int	batch_docs = 64;
static int	batch_inputs = 2048;
static long batch_tokens = 300000;
static TvdbChunkOptions chunk_opt = {512, 64, 8192, 4};

/* ------------------------------------------------------------ helpers */

static void
die(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	fprintf(stderr, "reference: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static void *
xmalloc(size_t n)
{
	void	   *p = malloc(n ? n : 1);

	if (p == NULL)
		die("out of memory");
	return p;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A growing byte buffer, always NUL-terminated. */
typedef struct Buf
{
	char	   *data;
	size_t		len;
	size_t		cap;
} Buf;

static void
buf_add(Buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap)
	{
		b->cap = (b->len + n + 1) * 2;
		b->data = realloc(b->data, b->cap);
		if (b->data == NULL)
			die("out of memory");
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static void
buf_str(Buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

static void
buf_printf(Buf *b, const char *fmt,...)
{
	char		tmp[512];
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || n >= (int) sizeof(tmp))
		die("buf_printf: too long");
	buf_add(b, tmp, n);
}

/* A JSON string literal of s, escaped as PostgreSQL's escape_json does (tvdb uses it). */
static void
buf_json_string(Buf *b, const char *s, size_t n)
{
	buf_add(b, "\"", 1);
	for (size_t i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) s[i];

		switch (c)
		{
			case '"':
				buf_add(b, "\\\"", 2);
				break;
			case '\\':
				buf_add(b, "\\\\", 2);
				break;
			case '\b':
				buf_add(b, "\\b", 2);
				break;
			case '\f':
				buf_add(b, "\\f", 2);
				break;
			case '\n':
				buf_add(b, "\\n", 2);
				break;
			case '\r':
				buf_add(b, "\\r", 2);
				break;
			case '\t':
				buf_add(b, "\\t", 2);
				break;
			default:
				if (c < ' ')
					buf_printf(b, "\\u%04x", c);
				else
					buf_add(b, (const char *) &c, 1);
		}
	}
	buf_add(b, "\"", 1);
}

/* ------------------------------------------------------------ reading JSON answers */

static const char *
skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	return p;
}

/* p at a '"': the end of that string literal (after its closing quote), or NULL. */
static const char *
skip_string(const char *p)
{
	for (p++; *p; p++)
	{
		if (*p == '\\' && p[1])
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

/* p at any JSON value: its end, or NULL. */
static const char *
skip_value(const char *p)
{
	int			depth = 0;

	p = skip_ws(p);
	do
	{
		if (*p == '\0')
			return NULL;
		if (*p == '"')
		{
			if ((p = skip_string(p)) == NULL)
				return NULL;
			continue;
		}
		if (*p == '{' || *p == '[')
			depth++;
		else if (*p == '}' || *p == ']')
			depth--;
		else if (depth == 0 && (*p == ',' || *p == ' ' || *p == '\n'))
			return p;
		p++;
	} while (depth > 0 || (*p != ',' && *p != '}' && *p != ']' && *p != '\0'));
	return p;
}

static void
put_utf8(Buf *b, unsigned cp)
{
	char		u[4];

	if (cp < 0x80)
		u[0] = cp, buf_add(b, u, 1);
	else if (cp < 0x800)
		u[0] = 0xC0 | (cp >> 6), u[1] = 0x80 | (cp & 0x3F), buf_add(b, u, 2);
	else if (cp < 0x10000)
		u[0] = 0xE0 | (cp >> 12), u[1] = 0x80 | ((cp >> 6) & 0x3F), u[2] = 0x80 | (cp & 0x3F),
			buf_add(b, u, 3);
	else
		u[0] = 0xF0 | (cp >> 18), u[1] = 0x80 | ((cp >> 12) & 0x3F), u[2] = 0x80 | ((cp >> 6) & 0x3F),
			u[3] = 0x80 | (cp & 0x3F), buf_add(b, u, 4);
}

/* p at a '"': the string's text, unescaped, into out (cleared first); the end, or NULL. */
static const char *
read_string(const char *p, Buf *out)
{
	out->len = 0;
	buf_add(out, "", 0);
	for (p++; *p && *p != '"'; p++)
	{
		const char *run = p;

		while (*p && *p != '"' && *p != '\\')
			p++;
		buf_add(out, run, p - run);
		if (*p != '\\')
		{
			p--;
			continue;
		}
		switch (*++p)
		{
			case 'b':
				buf_add(out, "\b", 1);
				break;
			case 'f':
				buf_add(out, "\f", 1);
				break;
			case 'n':
				buf_add(out, "\n", 1);
				break;
			case 'r':
				buf_add(out, "\r", 1);
				break;
			case 't':
				buf_add(out, "\t", 1);
				break;
			case 'u':
				{
					unsigned	cp = 0,
								lo = 0;

					if (sscanf(p + 1, "%4x", &cp) != 1)
						return NULL;
					p += 4;
					if (cp >= 0xD800 && cp < 0xDC00 && p[1] == '\\' && p[2] == 'u' &&
						sscanf(p + 3, "%4x", &lo) == 1)
					{
						cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
						p += 6;
					}
					put_utf8(out, cp);
					break;
				}
			case '\0':
				return NULL;
			default:			/* " \ / */
				buf_add(out, p, 1);
		}
	}
	return *p == '"' ? p + 1 : NULL;
}

/*
 * The top-level member key of the JSON object body: a pointer to its value
 * (past the colon and blanks), or NULL.
 */
static const char *
member(const char *body, const char *key)
{
	const char *p = skip_ws(body);
	size_t		klen = strlen(key);

	if (*p++ != '{')
		return NULL;
	for (;;)
	{
		const char *k;

		p = skip_ws(p);
		if (*p != '"')
			return NULL;
		k = p + 1;
		if ((p = skip_string(p)) == NULL)
			return NULL;
		bool		match = (size_t) (p - 1 - k) == klen && memcmp(k, key, klen) == 0;

		p = skip_ws(p);
		if (*p++ != ':')
			return NULL;
		p = skip_ws(p);
		if (match)
			return p;
		if ((p = skip_value(p)) == NULL)
			return NULL;
		p = skip_ws(p);
		if (*p++ != ',')
			return NULL;
	}
}

/* The top-level string member key, unescaped into out; false if there is none. */
static bool
string_member(const char *body, const char *key, Buf *out)
{
	const char *p = member(body, key);

	return p != NULL && *p == '"' && read_string(p, out) != NULL;
}

static int
b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * Read every vector of an embeddings answer (as tvdb must, to store them):
 * how many there were, or -1 if one is malformed or not of want_dims.
 */
static int
read_vectors(const char *body, int want_dims, double *checksum)
{
	const char *data = member(body, "data");
	float	   *v = xmalloc(sizeof(float) * (want_dims + 1));
	int			n = 0;

	if (data == NULL || *data != '[')
		return -1;
	for (const char *p = data; (p = strstr(p, "\"embedding\"")) != NULL;)
	{
		int			d = 0;

		p = skip_ws(p + strlen("\"embedding\""));
		if (*p != ':')
			continue;			/* "object": "embedding" */
		p = skip_ws(p + 1);
		n++;
		if (*p == '"')			/* base64 of little-endian float32 */
		{
			unsigned char bytes[4];
			int			nb = 0,
						acc = 0,
						bits = 0;

			for (p++; *p && *p != '"'; p++)
			{
				int			x = b64_value((unsigned char) *p);

				if (x < 0)
					continue;	/* '=' padding */
				acc = (acc << 6) | x;
				bits += 6;
				if (bits >= 8)
				{
					bits -= 8;
					bytes[nb++] = (acc >> bits) & 0xFF;
					if (nb == 4)
					{
						uint32_t	u = bytes[0] | bytes[1] << 8 | bytes[2] << 16 | (uint32_t) bytes[3] << 24;

						if (d == want_dims)
							return -1;
						memcpy(&v[d++], &u, 4);
						nb = 0;
					}
				}
			}
		}
		else if (*p == '[')
		{
			for (p++; *(p = skip_ws(p)) != ']';)
			{
				char	   *end;

				if (d == want_dims)
					return -1;
				v[d++] = strtof(p, &end);
				if (end == p)
					return -1;
				p = skip_ws(end);
				if (*p == ',')
					p++;
			}
		}
		else
			return -1;
		if (d != want_dims)
			return -1;
		*checksum += v[0];
	}
	free(v);
	return n;
}

/* ------------------------------------------------------------ documents */

enum Kind
{
	UPLOAD, POLL, FETCH, EMBED, NKINDS
};
static const char *const kind_name[NKINDS] = {"upload", "poll", "fetch", "embed"};

typedef struct Doc
{
	int			i;				/* 1..N, as in the bench's generate_series */
	char	   *job;			/* LlamaParse's job id */
	double		poll_at;		/* when to poll (monotonic) */
	char	  **inputs;			/* chunk texts to embed */
	size_t	   *lens;
	int			n_inputs;
	int			left;			/* inputs not yet embedded */
} Doc;

/* A FIFO of documents waiting for a stage. */
typedef struct Queue
{
	Doc		  **items;
	int			head;
	int			tail;
	int			cap;
} Queue;

static int
queued(const Queue *q)
{
	return q->tail - q->head;
}


static void
push(Queue *q, Doc *d)
{
	if (q->tail == q->cap)
	{
		q->cap = q->cap ? q->cap * 2 : 1024;
		q->items = realloc(q->items, sizeof(Doc *) * q->cap);
		if (q->items == NULL)
			die("out of memory");
	}
	q->items[q->tail++] = d;
}

static Doc *
pop(Queue *q)
{
	return q->items[q->head++];
}

/* ------------------------------------------------------------ requests */

/* One request, built and then started. */
typedef struct Req
{
	enum Kind	kind;
	CURL	   *easy;
	Doc		   *doc;			/* upload, poll, fetch */
	Doc		  **batch;			/* embed: each input's document */
	int			n_inputs;
	struct curl_slist *headers;
	curl_mime  *mime;
	Buf			post;			/* embed: the JSON body */
	Buf			answer;
} Req;

static CURLM *multi;
static int	inflight;
static int	inflight_seen;
static long requests[NKINDS];
static long extra_polls;
static long inputs_embedded;
static long bytes_embedded;
static int	docs_done;
static int	docs_upstream;		/* not yet in the embed queue */
static int	next_upload = 0;
static Doc *docs;
static Queue polls,
			fetches,
			embeds;
static Req **ready;				/* embed requests built, waiting for a slot */
static int	n_ready;
static int	cap_ready;
static double checksum;
static char lp_auth[256],
			oa_auth[256];

static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	buf_add(&((Req *) arg)->answer, ptr, size * nmemb);
	return size * nmemb;
}

/* A request with tvdb's HTTP driver's options and the service's headers. */
static Req *
new_req(enum Kind kind, const char *url)
{
	Req		   *r = calloc(1, sizeof(Req));

	if (r == NULL || (r->easy = curl_easy_init()) == NULL)
		die("out of memory");
	r->kind = kind;
	buf_add(&r->answer, "", 0);
	curl_easy_setopt(r->easy, CURLOPT_URL, url);
	curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
	curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, 60000L);	/* tvdb.http_timeout */
	curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, 10000L);	/* tvdb.connect_timeout */
	curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(r->easy, CURLOPT_USERAGENT, "tvdb/reference");
	if (kind == EMBED)
	{
		r->headers = curl_slist_append(r->headers, "Content-Type: application/json");
		r->headers = curl_slist_append(r->headers, oa_auth);
	}
	else
	{
		r->headers = curl_slist_append(r->headers, lp_auth);
		r->headers = curl_slist_append(r->headers, "Accept: application/json");
	}
	return r;
}

static void
start(Req *r)
{
	curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
	if (curl_multi_add_handle(multi, r->easy) != CURLM_OK)
		die("curl_multi_add_handle failed");
	requests[r->kind]++;
	if (++inflight > inflight_seen)
		inflight_seen = inflight;
}

static void
free_req(Req *r)
{
	curl_multi_remove_handle(multi, r->easy);
	curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->headers);
	if (r->mime)
		curl_mime_free(r->mime);
	free(r->post.data);
	free(r->answer.data);
	free(r->batch);
	free(r);
	inflight--;
}

/* The HTML of document i, byte for byte what run.sh's upload_docs makes for the tag. */
static char *
document(int i, size_t *len)
{
	Buf			b = {0};

	buf_printf(&b, "<h1>Report %d of %s</h1><h2>Summary</h2><p>", i, tag);
	for (int k = 0; k < 26; k++)
		buf_printf(&b, "Summary sentence about document %d of run %s. ", i, tag);
	buf_str(&b, "</p><h2>Details</h2><p>");
	for (int k = 0; k < 26; k++)
		buf_printf(&b, "A detail of document %d, run %s, goes here. ", i, tag);
	buf_str(&b, "</p>");
	*len = b.len;
	return b.data;
}

static void
start_upload(Doc *d)
{
	char		url[512],
				filename[128];
	size_t		len;
	char	   *html = document(d->i, &len);
	Req		   *r;
	curl_mimepart *part;

	snprintf(url, sizeof(url), "%s/api/v1/parsing/upload", lp_base);
	snprintf(filename, sizeof(filename), "%s-%d.html", tag, d->i);
	r = new_req(UPLOAD, url);
	r->doc = d;
	r->mime = curl_mime_init(r->easy);
	part = curl_mime_addpart(r->mime);
	curl_mime_name(part, "file");
	curl_mime_filename(part, filename);
	curl_mime_type(part, "text/html");
	curl_mime_data(part, html, len);	/* copied */
	curl_easy_setopt(r->easy, CURLOPT_MIMEPOST, r->mime);
	free(html);
	start(r);
}

static void
start_get(enum Kind kind, Doc *d)
{
	char		url[512];
	char	   *id = curl_easy_escape(NULL, d->job, 0);
	Req		   *r;

	snprintf(url, sizeof(url), kind == POLL ? "%s/api/v1/parsing/job/%s"
			 : "%s/api/v1/parsing/job/%s/result/markdown", lp_base, id);
	curl_free(id);
	r = new_req(kind, url);
	r->doc = d;
	start(r);
}

/* An embeddings request's body, opened as tvdb's start_request writes it. */
static Req *
new_embed(void)
{
	char		url[512];
	Req		   *r;

	snprintf(url, sizeof(url), "%s/embeddings", oa_base);
	r = new_req(EMBED, url);
	r->batch = xmalloc(sizeof(Doc *) * batch_inputs);
	buf_str(&r->post, "{\"model\": ");
	buf_json_string(&r->post, model, strlen(model));
	buf_printf(&r->post, ", \"encoding_format\": \"%s\"", encoding);
	if (dims > 0)
		buf_printf(&r->post, ", \"dimensions\": %d", dims);
	buf_str(&r->post, ", \"input\": [");
	return r;
}

static void
close_embed(Req *r)
{
	buf_str(&r->post, "]}");
	curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->post.data);
	curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) r->post.len);
	if (n_ready == cap_ready)
	{
		cap_ready = cap_ready ? cap_ready * 2 : 64;
		ready = realloc(ready, sizeof(Req *) * cap_ready);
		if (ready == NULL)
			die("out of memory");
	}
	ready[n_ready++] = r;
}

/*
 * Take up to batch_docs documents from the embed queue and cut their chunks
 * into requests within the limits, in order (tvdb's embed claim and batches()).
 */
static void
claim_embeds(void)
{
	Req		   *r = NULL;
	size_t		bytes = 0;

	for (int k = 0; k < batch_docs && queued(&embeds) > 0; k++)
	{
		Doc		   *d = pop(&embeds);

		for (int c = 0; c < d->n_inputs; c++)
		{
			if (r != NULL && (r->n_inputs >= batch_inputs || bytes + d->lens[c] > (size_t) batch_tokens))
			{
				close_embed(r);
				r = NULL;
			}
			if (r == NULL)
			{
				r = new_embed();
				bytes = 0;
			}
			if (r->n_inputs > 0)
				buf_add(&r->post, ",", 1);
			buf_json_string(&r->post, d->inputs[c], d->lens[c]);
			r->batch[r->n_inputs++] = d;
			bytes += d->lens[c];
		}
	}
	if (r != NULL)
		close_embed(r);
}

/* Start what is due while slots are free: the later stage first. */
static void
fill_slots(double now)
{
	while (inflight < inflight_max)
	{
		if (n_ready == 0 && queued(&embeds) > 0 &&
			(queued(&embeds) >= batch_docs || docs_upstream == 0))
			claim_embeds();
		if (n_ready > 0)
		{
			start(ready[0]);
			memmove(ready, ready + 1, sizeof(Req *) * --n_ready);
		}
		else if (queued(&fetches) > 0)
			start_get(FETCH, pop(&fetches));
		else if (queued(&polls) > 0 && polls.items[polls.head]->poll_at <= now)
			start_get(POLL, pop(&polls));
		else if (next_upload < n_docs)
			start_upload(&docs[next_upload++]);
		else
			break;
	}
}

/* Whether a chunk has any text to embed (src/stages/chunk_store.c keeps only those). */
static bool
has_text(const TvdbChunk *ch)
{
	for (size_t i = 0; i < ch->len; i++)
		if (ch->text[i] != ' ' && (ch->text[i] < '\t' || ch->text[i] > '\r'))
			return true;
	return false;
}

static void
chunk(Doc *d, const Buf *md)
{
	TvdbChunkList list = {NULL, 0};
	const char *err = NULL;

	if (tvdb_chunk_markdown(md->data, md->len, &chunk_opt, &list, &err) != 0)
		die("chunker: %s", err ? err : "failed");
	d->inputs = xmalloc(sizeof(char *) * (list.n + 1));
	d->lens = xmalloc(sizeof(size_t) * (list.n + 1));
	for (int c = 0; c < list.n; c++)
		if (has_text(&list.chunks[c]))
		{
			d->inputs[d->n_inputs] = strndup(list.chunks[c].text, list.chunks[c].len);
			d->lens[d->n_inputs++] = list.chunks[c].len;
		}
	tvdb_chunk_list_free(&list);
	if (d->n_inputs == 0)
		die("document %d: nothing to embed", d->i);
	d->left = d->n_inputs;
}

static void
finished(Req *r, CURLcode rc, double now)
{
	long		status = 0;
	Buf			s = {0};
	Doc		   *d = r->doc;

	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	if (rc != CURLE_OK || status != 200)
		die("%s %s: %s, HTTP %ld: %.200s", kind_name[r->kind], d ? d->job ? d->job : "" : "",
			curl_easy_strerror(rc), status, r->answer.data);
	switch (r->kind)
	{
		case UPLOAD:
			if (!string_member(r->answer.data, "id", &s) || s.len == 0)
				die("upload: no id in %.200s", r->answer.data);
			d->job = strdup(s.data);
			d->poll_at = now + parse_latency;
			push(&polls, d);
			break;
		case POLL:
			if (!string_member(r->answer.data, "status", &s))
				die("poll: no status in %.200s", r->answer.data);
			if (strcmp(s.data, "SUCCESS") == 0)
				push(&fetches, d);
			else if (strcmp(s.data, "PENDING") == 0 || strcmp(s.data, "RUNNING") == 0)
			{
				extra_polls++;	/* not expected: the parse latency has passed */
				d->poll_at = now + 0.01;
				push(&polls, d);
			}
			else
				die("poll: job %s is %s", d->job, s.data);
			break;
		case FETCH:
			if (!string_member(r->answer.data, "markdown", &s))
				die("fetch: no markdown in %.200s", r->answer.data);
			chunk(d, &s);
			push(&embeds, d);
			docs_upstream--;
			break;
		case EMBED:
			if (read_vectors(r->answer.data, dims > 0 ? dims : 1536, &checksum) != r->n_inputs)
				die("embed: not %d vectors of %d dimensions in %.200s", r->n_inputs,
					dims > 0 ? dims : 1536, r->answer.data);
			inputs_embedded += r->n_inputs;
			for (int k = 0; k < r->n_inputs; k++)
			{
				Doc		   *b = r->batch[k];

				bytes_embedded += b->lens[b->n_inputs - b->left];
				if (--b->left == 0)
					docs_done++;
			}
			break;
		default:
			break;
	}
	free(s.data);
	free_req(r);
}

/* ------------------------------------------------------------ main */

static void
usage(void)
{
	die("usage: reference --llamaparse URL --openai URL/v1 --documents N --tag TAG "
		"--inflight M --parse-latency S [--dims D] [--encoding base64|float] [--model M] "
		"[--batch-docs 64] [--batch-inputs 2048] [--batch-tokens 300000] "
		"[--chunk-target 512] [--chunk-overlap 64] [--bytes-per-token 4]");
}

int
main(int argc, char **argv)
{
	double		t0,
				t1;
	struct rusage ru;

	for (int a = 1; a < argc; a++)
	{
		const char *o = argv[a],
				   *v = a + 1 < argc ? argv[a + 1] : NULL;

		if (v == NULL)
			usage();
		a++;
		if (strcmp(o, "--llamaparse") == 0)
			lp_base = v;
		else if (strcmp(o, "--openai") == 0)
			oa_base = v;
		else if (strcmp(o, "--documents") == 0)
			n_docs = atoi(v);
		else if (strcmp(o, "--tag") == 0)
			tag = v;
		else if (strcmp(o, "--inflight") == 0)
			inflight_max = atoi(v);
		else if (strcmp(o, "--parse-latency") == 0)
			parse_latency = atof(v);
		else if (strcmp(o, "--dims") == 0)
			dims = atoi(v);
		else if (strcmp(o, "--encoding") == 0)
			encoding = v;
		else if (strcmp(o, "--model") == 0)
			model = v;
		else if (strcmp(o, "--batch-docs") == 0)
			batch_docs = atoi(v);
		else if (strcmp(o, "--batch-inputs") == 0)
			batch_inputs = atoi(v);
		else if (strcmp(o, "--batch-tokens") == 0)
			batch_tokens = atol(v);
		else if (strcmp(o, "--chunk-target") == 0)
			chunk_opt.target_tokens = atoi(v);
		else if (strcmp(o, "--chunk-overlap") == 0)
			chunk_opt.overlap_tokens = atoi(v);
		else if (strcmp(o, "--bytes-per-token") == 0)
			chunk_opt.bytes_per_token = atoi(v);
		else
			usage();
	}
	if (lp_base == NULL || oa_base == NULL || n_docs < 1 || inflight_max < 1 || batch_docs < 1 ||
		batch_inputs < 1 || batch_tokens < 1)
		usage();
	/* tvdb_chunk_overlap_effective: at most half the target */
	if (chunk_opt.overlap_tokens > chunk_opt.target_tokens / 2)
		chunk_opt.overlap_tokens = chunk_opt.target_tokens / 2;
	snprintf(lp_auth, sizeof(lp_auth), "Authorization: Bearer %s", "bench-llamaparse-key");
	snprintf(oa_auth, sizeof(oa_auth), "Authorization: Bearer %s", "bench-openai-key");

	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK || (multi = curl_multi_init()) == NULL)
		die("could not initialize libcurl");
	curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
	docs = calloc(n_docs, sizeof(Doc));
	if (docs == NULL)
		die("out of memory");
	for (int i = 0; i < n_docs; i++)
		docs[i].i = i + 1;
	docs_upstream = n_docs;

	t0 = now_s();
	while (docs_done < n_docs)
	{
		double		now = now_s();
		int			running,
					left,
					wait_ms = 1000;
		CURLMsg    *m;

		fill_slots(now);
		if (inflight == 0 && queued(&polls) == 0)
			die("stuck: %d of %d documents done, nothing to do", docs_done, n_docs);
		if (inflight < inflight_max && queued(&polls) > 0)
		{
			double		due = polls.items[polls.head]->poll_at - now;

			wait_ms = due <= 0 ? 0 : (int) (due * 1000) + 1;
			if (wait_ms > 1000)
				wait_ms = 1000;
		}
		curl_multi_poll(multi, NULL, 0, wait_ms, NULL);
		curl_multi_perform(multi, &running);
		now = now_s();
		while ((m = curl_multi_info_read(multi, &left)) != NULL)
		{
			Req		   *r;

			if (m->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **) &r);
			finished(r, m->data.result, now);
		}
	}
	t1 = now_s();
	getrusage(RUSAGE_SELF, &ru);
	printf("{\"documents\": %d, \"wall_s\": %.3f, \"documents_per_s\": %.1f, \"inflight\": %d, "
		   "\"inflight_reached\": %d, \"requests\": {\"upload\": %ld, \"poll\": %ld, \"fetch\": %ld, "
		   "\"embed\": %ld, \"total\": %ld}, \"extra_polls\": %ld, \"inputs\": %ld, \"input_bytes\": %ld, "
		   "\"inputs_per_embed\": %.1f, \"cpu_s\": %.3f, \"cpu_ms_per_document\": %.3f, \"checksum\": %.3f}\n",
		   n_docs, t1 - t0, n_docs / (t1 - t0), inflight_max, inflight_seen,
		   requests[UPLOAD], requests[POLL], requests[FETCH], requests[EMBED],
		   requests[UPLOAD] + requests[POLL] + requests[FETCH] + requests[EMBED],
		   extra_polls, inputs_embedded, bytes_embedded,
		   requests[EMBED] ? (double) inputs_embedded / requests[EMBED] : 0.0,
		   ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6,
		   (ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6)
		   / n_docs * 1000, checksum);
	curl_multi_cleanup(multi);
	curl_global_cleanup();
	return 0;
}
