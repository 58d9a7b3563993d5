/*
 * test_chunker.c — unit tests for src/chunker/chunker.c, printing TAP.  Exits
 * non-zero if any test fails.  Environment: FUZZ_ITERS (default 300) random
 * documents, FUZZ_SEED to vary them, FUZZ_DUMP=N writes document N to
 * fuzz_dump.md (then: ./chunk_file fuzz_dump.md T O M B).
 */
#define _POSIX_C_SOURCE 200809L	/* strdup, strtok_r */

#include "chunker.h"

#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmark-gfm.h>
#include <cmark-gfm-core-extensions.h>

static int	n_tests;
static int	n_failed;

static bool
ok(bool cond, const char *fmt,...)
{
	va_list		ap;

	n_tests++;
	printf("%sok %d - ", cond ? "" : "not ", n_tests);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!cond)
		n_failed++;
	return cond;
}

static void
diag(const char *fmt,...)
{
	va_list		ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

/* ---- counting (and failing) allocator ---- */

static long live_allocs;
static long alloc_calls;
static long fail_at = -1;		/* fail the call with this index */

static void *
t_malloc(size_t n)
{
	if (fail_at >= 0 && alloc_calls++ == fail_at)
		return NULL;
	live_allocs++;
	return malloc(n);
}

static void *
t_realloc(void *p, size_t n)
{
	if (p == NULL)
	{
		diag("realloc called with NULL");
		abort();
	}
	if (fail_at >= 0 && alloc_calls++ == fail_at)
		return NULL;
	return realloc(p, n);
}

static void
t_free(void *p)
{
	if (p == NULL)
	{
		diag("free called with NULL");
		abort();
	}
	live_allocs--;
	free(p);
}

/* ---- helpers ---- */

static TvdbChunkOptions
opts(int target, int overlap, int max, int bpt)
{
	TvdbChunkOptions o;

	o.target_tokens = target;
	o.overlap_tokens = overlap;
	o.max_tokens = max;
	o.bytes_per_token = bpt;
	return o;
}

static bool
valid_utf8(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *) s;
	size_t		i = 0;

	while (i < len)
	{
		size_t		n;
		uint32_t	cp;
		size_t		k;

		if (u[i] < 0x80)
		{
			i++;
			continue;
		}
		if (u[i] >= 0xC2 && u[i] <= 0xDF)
			n = 2, cp = u[i] & 0x1F;
		else if (u[i] >= 0xE0 && u[i] <= 0xEF)
			n = 3, cp = u[i] & 0x0F;
		else if (u[i] >= 0xF0 && u[i] <= 0xF4)
			n = 4, cp = u[i] & 0x07;
		else
			return false;
		if (i + n > len)
			return false;
		for (k = 1; k < n; k++)
		{
			if ((u[i + k] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (u[i + k] & 0x3F);
		}
		if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
			(cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += n;
	}
	return true;
}

static bool
is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
 * What must hold of every result; returns NULL or what is wrong.
 * input_utf8: the input is valid UTF-8, so every chunk must be.
 */
static const char *
check_list(const TvdbChunkList *l, const TvdbChunkOptions *o, bool input_utf8)
{
	int			i;
	int			j;

	if (l->n < 0 || (l->n > 0 && l->chunks == NULL))
		return "bad list";
	for (i = 0; i < l->n; i++)
	{
		const TvdbChunk *c = &l->chunks[i];
		size_t		k;
		bool		content = false;

		if (c->text == NULL || c->len == 0)
			return "empty chunk";
		if (c->len > (size_t) o->max_tokens)
			return "chunk over max_tokens bytes";
		if (c->text[c->len] != '\0' || strlen(c->text) != c->len)
			return "text not NUL-terminated at len";
		for (k = 0; k < c->len; k++)
			if (!is_ws(c->text[k]))
				content = true;
		if (!content)
			return "whitespace-only chunk";
		if (is_ws(c->text[c->len - 1]))
			return "trailing whitespace";
		if (c->text[0] == '\n' || c->text[0] == '\r')
			return "leading line break";
		if (input_utf8 && !valid_utf8(c->text, c->len))
			return "invalid UTF-8 in chunk";
		if (c->token_estimate !=
			(int) ((c->len + o->bytes_per_token - 1) / o->bytes_per_token))
			return "wrong token_estimate";
		if (c->n_headings < 0 || c->n_headings > 6 ||
			(c->n_headings > 0) != (c->heading_path != NULL))
			return "bad heading path";
		for (j = 0; j < c->n_headings; j++)
			if (c->heading_path[j] == NULL || c->heading_path[j][0] == '\0')
				return "empty heading in path";
	}
	return NULL;
}

/* Chunks md; the call must succeed and its result pass check_list. */
static TvdbChunkList
run(const char *md, TvdbChunkOptions o)
{
	TvdbChunkList l;
	const char *err = NULL;
	const char *bad;

	if (tvdb_chunk_markdown(md, strlen(md), &o, &l, &err) != 0)
	{
		diag("tvdb_chunk_markdown failed: %s", err ? err : "?");
		l.chunks = NULL;
		l.n = -1;
		return l;
	}
	bad = check_list(&l, &o, valid_utf8(md, strlen(md)));
	if (bad)
		diag("invariant broken: %s", bad);
	return l;
}

static void
dump(const TvdbChunkList *l)
{
	int			i;

	for (i = 0; i < l->n; i++)
		diag("chunk %d (%zu bytes, %d headings): [%s]", i, l->chunks[i].len,
			 l->chunks[i].n_headings, l->chunks[i].text);
}

static bool
path_is(const TvdbChunk *c, int n,...)
{
	va_list		ap;
	int			i;
	bool		same = c->n_headings == n;

	va_start(ap, n);
	for (i = 0; i < n; i++)
	{
		const char *h = va_arg(ap, const char *);

		if (same && strcmp(c->heading_path[i], h) != 0)
			same = false;
	}
	va_end(ap);
	return same;
}

static bool
starts_with(const char *s, const char *p)
{
	return strncmp(s, p, strlen(p)) == 0;
}

static bool
ends_with(const char *s, size_t len, const char *p)
{
	size_t		n = strlen(p);

	return len >= n && memcmp(s + len - n, p, n) == 0;
}

/* A growable string for building inputs and expectations. */
typedef struct Str
{
	char	   *s;
	size_t		len;
	size_t		cap;
} Str;

static void
str_add(Str *b, const char *p, size_t n)
{
	if (b->len + n + 1 > b->cap)
	{
		b->cap = (b->len + n + 1) * 2;
		b->s = realloc(b->s, b->cap);
		if (b->s == NULL)
			abort();
	}
	memcpy(b->s + b->len, p, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void
str_cat(Str *b, const char *p)
{
	str_add(b, p, strlen(p));
}

static void
str_fmt(Str *b, const char *fmt,...)
{
	va_list		ap;
	int			n;
	char	   *tmp;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	tmp = malloc((size_t) n + 1);
	if (tmp == NULL)
		abort();
	va_start(ap, fmt);
	vsnprintf(tmp, (size_t) n + 1, fmt, ap);
	va_end(ap);
	str_add(b, tmp, (size_t) n);
	free(tmp);
}

static void
str_reset(Str *b)
{
	b->len = 0;
	if (b->s)
		b->s[0] = '\0';
}

static void
str_free(Str *b)
{
	free(b->s);
	b->s = NULL;
	b->len = b->cap = 0;
}

/* ---- tests ---- */

static void
test_empty(void)
{
	TvdbChunkOptions o = opts(64, 8, 256, 4);
	TvdbChunkList l;
	const char *err = NULL;
	int			rc;

	rc = tvdb_chunk_markdown("", 0, &o, &l, &err);
	ok(rc == 0 && l.n == 0 && l.chunks == NULL, "empty input gives no chunks");
	rc = tvdb_chunk_markdown(NULL, 0, &o, &l, &err);
	ok(rc == 0 && l.n == 0, "NULL input of length 0 gives no chunks");
	l = run(" \n\t\n   \r\n\n", o);
	ok(l.n == 0, "whitespace-only input gives no chunks");
	tvdb_chunk_list_free(&l);
	l = run("# Title\n\n## Sub\n\n---\n\n", o);
	ok(l.n == 0, "headings and a thematic break only give no chunks");
	tvdb_chunk_list_free(&l);
	l = run(">\n\n-\n", o);
	ok(l.n == 0, "empty containers give no chunks");
	tvdb_chunk_list_free(&l);
}

static void
test_bad_options(void)
{
	struct
	{
		TvdbChunkOptions o;
		const char *what;
	}			cases[] = {
		{{0, 0, 100, 4}, "target 0"},
		{{-5, 0, 100, 4}, "target negative"},
		{{64, 64, 100, 4}, "overlap equal to target"},
		{{64, 65, 100, 4}, "overlap above target"},
		{{64, -1, 100, 4}, "overlap negative"},
		{{64, 8, 63, 4}, "max below target"},
		{{64, 8, 100, 0}, "bytes_per_token 0"},
		{{2, 0, 3, 1}, "max below 4 bytes"},
	};
	size_t		i;
	TvdbChunkList l;
	TvdbChunkOptions o = opts(64, 8, 256, 4);

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		const char *err = NULL;
		int			rc = tvdb_chunk_markdown("hello", 5, &cases[i].o, &l, &err);

		ok(rc == -1 && err != NULL && l.n == 0 && l.chunks == NULL,
		   "bad options rejected: %s (%s)", cases[i].what, err ? err : "no message");
	}
	{
		const char *err = NULL;

		ok(tvdb_chunk_markdown("x", 1, NULL, &l, &err) == -1 && err != NULL,
		   "NULL options rejected");
		err = NULL;
		ok(tvdb_chunk_markdown(NULL, 3, &o, &l, &err) == -1 && err != NULL,
		   "NULL input with a length rejected");
		ok(tvdb_chunk_markdown("x", 1, &o, NULL, NULL) == -1,
		   "NULL output rejected, NULL errmsg tolerated");
	}
}

static void
test_headings(void)
{
	const char *md =
		"intro text\n"
		"\n"
		"# Report\n"
		"\n"
		"Summary para.\n"
		"\n"
		"## Q3\n"
		"\n"
		"### Revenue\n"
		"\n"
		"Revenue grew.\n"
		"\n"
		"## Q4\n"
		"\n"
		"#### Deep\n"
		"\n"
		"Deep text.\n"
		"\n"
		"Setext  *Title*\n"
		"===============\n"
		"\n"
		"Setext body.\n"
		"\n"
		"## The `x.y`   **big** [link](http://a) ##\n"
		"\n"
		"Inline body.\n"
		"\n"
		"> # quoted heading\n"
		"> quoted body\n";
	TvdbChunkList l = run(md, opts(512, 0, 8192, 4));

	if (!ok(l.n == 6, "headings: 6 chunks (got %d)", l.n))
	{
		dump(&l);
		tvdb_chunk_list_free(&l);
		return;
	}
	ok(strcmp(l.chunks[0].text, "intro text") == 0 && path_is(&l.chunks[0], 0),
	   "text before the first heading has an empty path");
	ok(strcmp(l.chunks[1].text, "Summary para.") == 0 &&
	   path_is(&l.chunks[1], 1, "Report"), "level 1 path");
	ok(strcmp(l.chunks[2].text, "Revenue grew.") == 0 &&
	   path_is(&l.chunks[2], 3, "Report", "Q3", "Revenue"), "nested path");
	ok(strcmp(l.chunks[3].text, "Deep text.") == 0 &&
	   path_is(&l.chunks[3], 3, "Report", "Q4", "Deep"),
	   "skipped level is absent, sibling replaced");
	ok(strcmp(l.chunks[4].text, "Setext body.") == 0 &&
	   path_is(&l.chunks[4], 1, "Setext Title"), "setext heading, plain text");
	ok(path_is(&l.chunks[5], 2, "Setext Title", "The x.y big link"),
	   "heading plain text drops markup");
	ok(strcmp(l.chunks[5].text,
			  "Inline body.\n\n> # quoted heading\n> quoted body") == 0,
	   "a heading in a block quote is content, not a section");
	tvdb_chunk_list_free(&l);

	l = run("# Only\n\n## Headings\n\n### Here\n", opts(512, 0, 8192, 4));
	ok(l.n == 0, "sections without a body give no chunk");
	tvdb_chunk_list_free(&l);
}

static void
test_packing(void)
{
	Str			md = {0};
	Str			want = {0};
	char		para[10][128];
	TvdbChunkList l;
	int			i;
	bool		good = true;

	for (i = 0; i < 10; i++)
	{
		snprintf(para[i], sizeof(para[i]),
				 "Paragraph %d talks about item %d and then some more words "
				 "so that it is about a hundred bytes long.", i, i);
		if (i)
			str_cat(&md, "\n\n");
		str_cat(&md, para[i]);
	}
	/* each paragraph ~100 bytes, target 256 bytes: two per chunk */
	l = run(md.s, opts(64, 0, 1024, 4));
	ok(l.n == 5, "paragraphs packed two by two (got %d chunks)", l.n);
	for (i = 0; i < l.n && i < 5; i++)
	{
		str_reset(&want);
		str_fmt(&want, "%s\n\n%s", para[2 * i], para[2 * i + 1]);
		if (strcmp(want.s, l.chunks[i].text) != 0 || l.chunks[i].len > 256)
			good = false;
	}
	ok(good, "packed chunks are whole paragraphs, in order, within target");
	if (!good)
		dump(&l);
	tvdb_chunk_list_free(&l);

	/* a list: items are packed whole, with the source between them */
	l = run("- one\n- two\n- three\n\n1. a\n2. b\n", opts(512, 0, 8192, 4));
	ok(l.n == 1 && strcmp(l.chunks[0].text, "- one\n- two\n- three\n\n1. a\n2. b") == 0,
	   "source between blocks is kept");
	tvdb_chunk_list_free(&l);

	str_free(&md);
	str_free(&want);
}

static void
test_sentences(void)
{
	Str			md = {0};
	Str			joined = {0};
	TvdbChunkList l;
	int			i;
	bool		ends = true;
	bool		starts = true;
	bool		small = true;

	for (i = 0; i < 30; i++)
		str_fmt(&md, "%sSentence number %d is here and it is fine.", i ? " " : "", i);
	l = run(md.s, opts(64, 0, 1024, 4));
	for (i = 0; i < l.n; i++)
	{
		const TvdbChunk *c = &l.chunks[i];

		ends = ends && c->text[c->len - 1] == '.';
		starts = starts && starts_with(c->text, "Sentence number ");
		small = small && c->len <= 256;
		if (i)
			str_cat(&joined, " ");
		str_cat(&joined, c->text);
	}
	ok(l.n > 4, "long paragraph is split (%d chunks)", l.n);
	ok(ends && starts, "split at sentence ends");
	ok(small, "pieces within target");
	ok(joined.s && strcmp(joined.s, md.s) == 0, "nothing lost or repeated without overlap");
	tvdb_chunk_list_free(&l);

	/* never inside a code span, which here holds ". " */
	str_reset(&md);
	for (i = 0; i < 40; i++)
		str_fmt(&md, "%sCall `obj. Method() done. ` now %d. Then `a! B` too.",
				i ? " " : "", i);
	l = run(md.s, opts(32, 0, 1024, 4));
	{
		bool		even = true;
		int			j;

		for (i = 0; i < l.n; i++)
		{
			int			ticks = 0;

			for (j = 0; j < (int) l.chunks[i].len; j++)
				ticks += l.chunks[i].text[j] == '`';
			even = even && ticks % 2 == 0 &&
				l.chunks[i].text[l.chunks[i].len - 1] == '.';
		}
		ok(l.n > 2 && even, "no split inside a code span (%d chunks)", l.n);
	}
	tvdb_chunk_list_free(&l);

	/* closing quotes and brackets after the stop */
	str_reset(&md);
	for (i = 0; i < 30; i++)
		str_fmt(&md, "%sHe said \"stop number %d.\" (Then left.)", i ? " " : "", i);
	l = run(md.s, opts(32, 0, 1024, 4));
	{
		bool		good = l.n > 2;

		for (i = 0; i < l.n; i++)
			good = good && (ends_with(l.chunks[i].text, l.chunks[i].len, ".\"") ||
							ends_with(l.chunks[i].text, l.chunks[i].len, ".)"));
		ok(good, "a sentence may end in closing quotes or brackets");
	}
	tvdb_chunk_list_free(&l);

	/* CJK full stops need no space */
	str_reset(&md);
	for (i = 0; i < 60; i++)
		str_cat(&md, "日本語の文です。");
	l = run(md.s, opts(16, 0, 256, 4));
	{
		bool		good = l.n > 2;

		for (i = 0; i < l.n; i++)
			good = good && ends_with(l.chunks[i].text, l.chunks[i].len, "。");
		ok(good, "CJK text split after full stops (%d chunks)", l.n);
	}
	tvdb_chunk_list_free(&l);
	str_free(&md);
	str_free(&joined);
}

static bool
all_words_in(const char *text, const char *const *dict, int n)
{
	char	   *copy = strdup(text);
	char	   *save = NULL;
	char	   *w;
	bool		good = true;

	for (w = strtok_r(copy, " \n", &save); w; w = strtok_r(NULL, " \n", &save))
	{
		int			i;
		bool		found = false;

		for (i = 0; i < n; i++)
			found = found || strcmp(w, dict[i]) == 0;
		good = good && found;
	}
	free(copy);
	return good;
}

static void
test_words(void)
{
	static const char *const dict[] = {"lorem", "ipsum", "dolor", "sit", "amet",
	"consectetur", "adipiscing", "elit"};
	Str			md = {0};
	Str			joined = {0};
	TvdbChunkList l;
	int			i;
	bool		good = true;

	for (i = 0; i < 300; i++)
		str_fmt(&md, "%s%s", i ? " " : "", dict[(i * 7) % 8]);
	l = run(md.s, opts(32, 0, 1024, 4));
	for (i = 0; i < l.n; i++)
	{
		good = good && l.chunks[i].len <= 128 &&
			all_words_in(l.chunks[i].text, dict, 8);
		if (i)
			str_cat(&joined, " ");
		str_cat(&joined, l.chunks[i].text);
	}
	ok(l.n > 10 && good, "giant sentence split at words (%d chunks)", l.n);
	ok(joined.s && strcmp(joined.s, md.s) == 0, "word split loses nothing");
	tvdb_chunk_list_free(&l);
	str_free(&md);
	str_free(&joined);
}

static void
test_utf8_word(void)
{
	Str			md = {0};
	Str			joined = {0};
	TvdbChunkList l;
	int			i;
	bool		good = true;

	for (i = 0; i < 200; i++)
		str_cat(&md, i % 3 ? "日本語" : "😀é語");
	l = run(md.s, opts(16, 0, 100, 4));
	for (i = 0; i < l.n; i++)
	{
		good = good && l.chunks[i].len <= 64 &&
			valid_utf8(l.chunks[i].text, l.chunks[i].len);
		str_cat(&joined, l.chunks[i].text);
	}
	ok(l.n > 10 && good, "giant word split on UTF-8 boundaries (%d chunks)", l.n);
	ok(joined.s && strcmp(joined.s, md.s) == 0, "UTF-8 split loses nothing");
	tvdb_chunk_list_free(&l);

	/* with overlap, and with odd sizes down to one character per chunk */
	{
		int			sizes[][4] = {{16, 4, 100, 4}, {5, 2, 5, 1}, {7, 3, 9, 1},
		{1, 0, 4, 1}, {2, 1, 4, 3}};
		size_t		k;

		for (k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++)
		{
			TvdbChunkOptions o = opts(sizes[k][0], sizes[k][1], sizes[k][2],
									  sizes[k][3]);

			l = run(md.s, o);
			good = l.n > 0;
			for (i = 0; i < l.n; i++)
				good = good && l.chunks[i].len <= (size_t) o.max_tokens &&
					valid_utf8(l.chunks[i].text, l.chunks[i].len);
			ok(good, "UTF-8 intact, target %d overlap %d max %d bpt %d (%d chunks)",
			   o.target_tokens, o.overlap_tokens, o.max_tokens,
			   o.bytes_per_token, l.n);
			tvdb_chunk_list_free(&l);
		}
	}

	/* invalid input: never cut a sequence that looks like a character */
	{
		const char *bad = "\xE6\x97\xA5\xE6\x97\xE6\x97\xA5\x80\x80\x80\x80\xF0\x9F\x98\x80"
			"\xE6\x97\xA5\xE6\x97\xA5\xE6\x97\xA5\xE6\x97\xA5\xE6\x97\xA5\xE6\x97\xA5";
		TvdbChunkOptions o = opts(2, 0, 8, 2);

		l = run(bad, o);
		str_reset(&joined);
		good = l.n > 0;
		for (i = 0; i < l.n; i++)
		{
			str_cat(&joined, l.chunks[i].text);
			good = good && l.chunks[i].len <= 8 &&
				!((unsigned char) l.chunks[i].text[l.chunks[i].len - 1] >= 0xC0);
		}
		ok(good && strcmp(joined.s, bad) == 0,
		   "invalid UTF-8 is kept as it is and not cut after a lead byte");
		tvdb_chunk_list_free(&l);
	}
	str_free(&md);
	str_free(&joined);
}

static void
test_code(void)
{
	Str			code = {0};
	Str			md = {0};
	Str			lines = {0};
	Str			want = {0};
	TvdbChunkList l;
	int			i;
	bool		good;

	/* above target, under max: whole, fence intact */
	str_cat(&code, "```python\n");
	for (i = 0; i < 20; i++)
		str_fmt(&code, "def f%d(x):\n    return x * %d  # ok. Fine. \n", i, i);
	str_cat(&code, "```");
	str_fmt(&md, "Intro.\n\n%s\n\nOutro.\n", code.s);
	l = run(md.s, opts(64, 8, 4096, 4));
	good = false;
	for (i = 0; i < l.n; i++)
		good = good || strcmp(l.chunks[i].text, code.s) == 0;
	ok(code.len > 256 && good, "code block above target kept whole with its fences");
	tvdb_chunk_list_free(&l);

	/* above max: cut by lines, each piece fenced */
	str_reset(&code);
	str_reset(&md);
	str_cat(&code, "~~~~c  info string\n");
	for (i = 0; i < 200; i++)
	{
		str_fmt(&lines, "%sx_%d = %d * 2;  /* comment. */", i ? "\n" : "", i, i);
		str_fmt(&code, "x_%d = %d * 2;  /* comment. */\n", i, i);
	}
	str_cat(&code, "~~~~~");
	str_fmt(&md, "# Code\n\n%s\n", code.s);
	l = run(md.s, opts(128, 16, 1024, 4));
	good = l.n > 4;
	for (i = 0; i < l.n; i++)
	{
		const TvdbChunk *c = &l.chunks[i];

		good = good && c->len <= 1024 &&
			starts_with(c->text, "~~~~c  info string\n") &&
			ends_with(c->text, c->len, "\n~~~~~");
		if (good)
		{
			size_t		hl = strlen("~~~~c  info string\n");

			str_add(&want, i ? "\n" : "", i ? 1 : 0);
			str_add(&want, c->text + hl, c->len - hl - strlen("\n~~~~~"));
		}
	}
	ok(good, "giant code block cut with fences re-opened and closed (%d chunks)", l.n);
	ok(want.s && strcmp(want.s, lines.s) == 0, "every code line once, in order");
	tvdb_chunk_list_free(&l);

	/* unclosed fence: closed with the opening run */
	str_reset(&md);
	str_cat(&md, "```\n");
	for (i = 0; i < 100; i++)
		str_fmt(&md, "line %d of unclosed code\n", i);
	l = run(md.s, opts(64, 0, 512, 4));
	good = l.n > 2;
	for (i = 0; i < l.n; i++)
		good = good && starts_with(l.chunks[i].text, "```\nline ") &&
			ends_with(l.chunks[i].text, l.chunks[i].len, "\n```");
	ok(good, "unclosed fence closed in every piece");
	tvdb_chunk_list_free(&l);

	/* indented code: pieces stay indented */
	str_reset(&md);
	str_cat(&md, "Para.\n\n");
	for (i = 0; i < 100; i++)
		str_fmt(&md, "    indented line %d\n", i);
	l = run(md.s, opts(64, 0, 512, 4));
	good = l.n > 2;
	for (i = 1; i < l.n; i++)
		good = good && starts_with(l.chunks[i].text, "    indented line ");
	ok(good, "giant indented code cut into indented pieces");
	tvdb_chunk_list_free(&l);

	/* a single line longer than max inside a fence */
	str_reset(&md);
	str_cat(&md, "```\n");
	for (i = 0; i < 300; i++)
		str_cat(&md, "tok ");
	str_cat(&md, "\n```\n");
	l = run(md.s, opts(64, 0, 256, 4));
	good = l.n > 3;
	for (i = 0; i < l.n; i++)
		good = good && starts_with(l.chunks[i].text, "```\n") &&
			ends_with(l.chunks[i].text, l.chunks[i].len, "\n```");
	ok(good, "an over-long code line is cut, fences kept");
	tvdb_chunk_list_free(&l);

	str_free(&code);
	str_free(&md);
	str_free(&lines);
	str_free(&want);
}

static void
test_tables(void)
{
	Str			table = {0};
	Str			md = {0};
	Str			rows = {0};
	Str			got = {0};
	const char *hdr = "| id | name | value |\n|---:|:-----|-------|\n";
	TvdbChunkList l;
	int			i;
	bool		good;

	str_cat(&table, hdr);
	for (i = 0; i < 12; i++)
		str_fmt(&table, "| %d | name %d | %d.5 |%s", i, i, i * 3, i < 11 ? "\n" : "");
	str_fmt(&md, "Before.\n\n%s\n\nAfter.\n", table.s);
	l = run(md.s, opts(64, 8, 4096, 4));
	good = false;
	for (i = 0; i < l.n; i++)
		good = good || strcmp(l.chunks[i].text, table.s) == 0;
	ok(table.len > 256 && good, "table above target kept whole");
	tvdb_chunk_list_free(&l);

	str_reset(&md);
	str_cat(&md, "## Data\n\n");
	str_cat(&md, hdr);
	for (i = 0; i < 200; i++)
	{
		str_fmt(&md, "| %d | name %d | %d.5 |\n", i, i, i * 3);
		str_fmt(&rows, "| %d | name %d | %d.5 |\n", i, i, i * 3);
	}
	str_cat(&md, "\n# Next\n\nAfter the table.\n");
	l = run(md.s, opts(128, 16, 1024, 4));
	good = l.n > 4;
	for (i = 0; i < l.n; i++)
	{
		const TvdbChunk *c = &l.chunks[i];

		if (strcmp(c->text, "After the table.") == 0)
			continue;
		good = good && c->len <= 1024 && starts_with(c->text, hdr) &&
			path_is(c, 1, "Data");
		if (good)
		{
			str_cat(&got, c->text + strlen(hdr));
			str_cat(&got, "\n");
		}
	}
	ok(good, "giant table cut with header and delimiter repeated (%d chunks)", l.n);
	ok(got.s && strcmp(got.s, rows.s) == 0, "every row once, in order");
	tvdb_chunk_list_free(&l);

	/* a table that interrupts a paragraph (cmark-gfm positions it wrongly) */
	l = run("Lead line one\nlead line two\n| a | b |\n|---|---|\n| 1 | 2 |\n\nTail.\n",
			opts(512, 0, 8192, 4));
	ok(l.n == 1 && strcmp(l.chunks[0].text,
						  "Lead line one\nlead line two\n| a | b |\n|---|---|\n| 1 | 2 |\n\nTail.") == 0,
	   "paragraph before an interrupting table kept");
	tvdb_chunk_list_free(&l);
	l = run("Lead line one is long enough to fill.\n| a | b |\n|---|---|\n| 1 | 2 |\n",
			opts(10, 0, 8192, 4));
	ok(l.n == 2 && strcmp(l.chunks[0].text, "Lead line one is long enough to fill.") == 0 &&
	   strcmp(l.chunks[1].text, "| a | b |\n|---|---|\n| 1 | 2 |") == 0,
	   "paragraph and interrupting table separated when they do not fit");
	if (l.n != 2)
		dump(&l);
	tvdb_chunk_list_free(&l);

	str_free(&table);
	str_free(&md);
	str_free(&rows);
	str_free(&got);
}

/* The overlap chunk[i+1] starts with: the longest suffix of a that b starts with. */
static size_t
overlap_len(const TvdbChunk *a, const TvdbChunk *b, size_t most)
{
	size_t		n;

	for (n = most < a->len ? most : a->len; n > 0; n--)
		if (n <= b->len && memcmp(a->text + a->len - n, b->text, n) == 0)
			return n;
	return 0;
}

static void
test_overlap(void)
{
	Str			md = {0};
	TvdbChunkList l;
	int			i;
	bool		good;

	for (i = 0; i < 40; i++)
		str_fmt(&md, "%sItem %d costs %d dollars today.", i ? " " : "", i, i * 7);
	l = run(md.s, opts(64, 16, 1024, 4));
	good = l.n > 3;
	for (i = 0; good && i + 1 < l.n; i++)
	{
		const TvdbChunk *a = &l.chunks[i];
		const TvdbChunk *b = &l.chunks[i + 1];
		size_t		n = overlap_len(a, b, 64);

		good = n >= 16 && n <= 64 && a->len - n > 0 &&
			is_ws(a->text[a->len - n - 1]) && is_ws(b->text[n]) &&
			b->len <= 256;
		if (!good)
			diag("chunks %d/%d: overlap %zu", i, i + 1, n);
	}
	ok(good, "overlap present, at most 64 bytes, starts at a word boundary (%d chunks)", l.n);
	good = l.n > 3;
	for (i = 0; good && i + 1 < l.n; i++)
		good = starts_with(l.chunks[i + 1].text, "Item ");
	ok(good, "overlap starts at a sentence when it can");
	tvdb_chunk_list_free(&l);

	/* no overlap across sections, nor out of a code block */
	str_reset(&md);
	str_cat(&md, "# A\n\n");
	for (i = 0; i < 20; i++)
		str_fmt(&md, "Alpha sentence %d. ", i);
	str_cat(&md, "\n\n```\n");
	for (i = 0; i < 30; i++)
		str_fmt(&md, "code line %d\n", i);
	str_cat(&md, "```\n\nAfter code.\n\n# B\n\nBeta text.\n");
	l = run(md.s, opts(64, 16, 1024, 4));
	good = l.n >= 4;
	for (i = 0; good && i < l.n; i++)
	{
		const TvdbChunk *c = &l.chunks[i];

		if (strstr(c->text, "Beta") != NULL)
			good = strcmp(c->text, "Beta text.") == 0 && path_is(c, 1, "B");
		if (strstr(c->text, "After code.") != NULL)
			good = strcmp(c->text, "After code.") == 0;
	}
	ok(good, "no overlap across sections or from a code block");
	if (!good)
		dump(&l);
	tvdb_chunk_list_free(&l);
	str_free(&md);
}

static void
test_misc(void)
{
	TvdbChunkList l;

	l = run("# A\r\n\r\npara one\r\nline two\r\n\r\n- x\r\n- y\r\n", opts(512, 0, 8192, 4));
	ok(l.n == 1 && strcmp(l.chunks[0].text, "para one\r\nline two\r\n\r\n- x\r\n- y") == 0 &&
	   path_is(&l.chunks[0], 1, "A"), "CRLF line breaks");
	tvdb_chunk_list_free(&l);

	l = run("\xEF\xBB\xBFhello\n", opts(512, 0, 8192, 4));
	ok(l.n == 1 && strcmp(l.chunks[0].text, "hello") == 0, "byte order mark dropped");
	tvdb_chunk_list_free(&l);

	l = run("one\n\n***\n\ntwo\n", opts(512, 0, 8192, 4));
	ok(l.n == 1 && strcmp(l.chunks[0].text, "one\n\n***\n\ntwo") == 0,
	   "thematic break kept inside a chunk");
	tvdb_chunk_list_free(&l);

	/* a big list is opened: items packed, not cut mid-item */
	{
		Str			md = {0};
		int			i;
		bool		good;

		for (i = 0; i < 40; i++)
			str_fmt(&md, "- item number %d has a few words\n", i);
		l = run(md.s, opts(32, 0, 8192, 4));
		good = l.n > 4;
		for (i = 0; i < l.n; i++)
			good = good && starts_with(l.chunks[i].text, "- item number ") &&
				ends_with(l.chunks[i].text, l.chunks[i].len, "a few words");
		ok(good, "big list split between items (%d chunks)", l.n);
		tvdb_chunk_list_free(&l);

		/* deep nesting does not recurse without bound */
		str_reset(&md);
		for (i = 0; i < 2000; i++)
			str_cat(&md, "> ");
		for (i = 0; i < 200; i++)
			str_cat(&md, "deep words. ");
		l = run(md.s, opts(32, 4, 512, 4));
		ok(l.n > 3, "deeply nested quotes are cut as text (%d chunks)", l.n);
		tvdb_chunk_list_free(&l);
		str_free(&md);
	}

	/* deterministic */
	{
		const char *md = "# T\n\nSome. Text. Here. Again. And more text. Yes.\n\n- a\n- b\n";
		TvdbChunkList a = run(md, opts(4, 1, 64, 4));
		TvdbChunkList b = run(md, opts(4, 1, 64, 4));
		bool		same = a.n == b.n;
		int			i;

		for (i = 0; same && i < a.n; i++)
			same = strcmp(a.chunks[i].text, b.chunks[i].text) == 0;
		ok(same && a.n > 1, "same input and options, same chunks");
		tvdb_chunk_list_free(&a);
		tvdb_chunk_list_free(&b);
	}
}

static void
test_allocator(void)
{
	const char *md =
		"# H\n\nSome text. More text here. And more.\n\n"
		"```\ncode 1\ncode 2\ncode 3\ncode 4\ncode 5\ncode 6\n```\n\n"
		"| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |\n| 5 | 6 |\n\n"
		"## I\n\n- x `y. z` w\n- q\n";
	TvdbChunkOptions o = opts(8, 2, 40, 2);
	TvdbChunkList l;
	const char *err;
	long		calls;
	long		k;
	bool		good = true;
	bool		leak = false;

	tvdb_chunker_set_allocator(t_malloc, t_realloc, t_free);
	live_allocs = 0;
	alloc_calls = 0;
	fail_at = LONG_MAX;
	good = tvdb_chunk_markdown(md, strlen(md), &o, &l, &err) == 0 && l.n > 3;
	calls = alloc_calls;
	tvdb_chunk_list_free(&l);
	ok(good && live_allocs == 0, "hooks used, everything freed (%ld calls)", calls);

	for (k = 0; k < calls; k++)
	{
		live_allocs = 0;
		alloc_calls = 0;
		fail_at = k;
		err = NULL;
		if (tvdb_chunk_markdown(md, strlen(md), &o, &l, &err) != -1 ||
			err == NULL || strcmp(err, "out of memory") != 0 ||
			l.n != 0 || l.chunks != NULL)
			good = false;
		if (live_allocs != 0)
			leak = true;
	}
	fail_at = -1;
	ok(good, "every allocation failure reported as out of memory");
	ok(!leak, "nothing leaked on failure");
	tvdb_chunker_set_allocator(NULL, NULL, NULL);
}

/* ---- fuzz ---- */

static uint64_t rng_state;

static uint32_t
rnd(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t) ((rng_state * 0x2545F4914F6CDD1DULL) >> 32);
}

static int
rnd_in(int lo, int hi)
{
	return lo + (int) (rnd() % (uint32_t) (hi - lo + 1));
}

static bool used[10000];

static void
gen_word(Str *b)
{
	int			r = rnd_in(0, 99);

	if (r < 80)
	{
		int			id = rnd_in(0, 9999);

		used[id] = true;
		str_fmt(b, "w%04d", id);
	}
	else if (r < 90)
		str_cat(b, rnd_in(0, 1) ? "日本語" : "naïve😀");
	else if (r < 95)
		str_cat(b, "`co. de`");
	else if (r < 98)
		str_cat(b, "*em*");
	else
	{
		int			n = rnd_in(10, 600);
		int			i;

		for (i = 0; i < n; i++)
			str_cat(b, i % 3 == 0 ? "語" : i % 3 == 1 ? "a" : "😀");
	}
}

static void
gen_text(Str *b, int words, const char *nl)
{
	int			i;

	for (i = 0; i < words; i++)
	{
		int			r = rnd_in(0, 99);

		gen_word(b);
		if (i + 1 == words)
			break;
		if (r < 10)
			str_cat(b, ". ");
		else if (r < 13)
			str_cat(b, "! ");
		else if (r < 16)
			str_cat(b, nl);
		else
			str_cat(b, " ");
	}
	str_cat(b, ".");
}

/* Soup of markdown punctuation, whitespace and characters. */
static void
gen_soup(Str *b)
{
	static const char *const bits[] = {"#", ">", "-", "*", "`", "```", "|",
		"~", " ", "  ", "\t", "\n", "\n\n", "\r\n", ".", ". ", "!", "?", "[",
		"]", "(", ")", "=", "_", "1.", "<div>", "</div>", "---", "|---|", "語",
		"😀", "é", "a", "b", "w", "    ", "\\", "&amp;", "<!--", "-->"};
	int			n = rnd_in(0, 3000);

	while (n-- > 0)
		str_cat(b, bits[rnd_in(0, (int) (sizeof(bits) / sizeof(bits[0])) - 1)]);
}

static void
gen_doc(Str *b)
{
	const char *nl = rnd_in(0, 4) == 0 ? "\r\n" : "\n";
	int			blocks = rnd_in(0, 25);
	int			i;
	int			j;

	for (i = 0; i < blocks; i++)
	{
		int			kind = rnd_in(0, 16);
		int			n;

		switch (kind)
		{
			case 0:
			case 1:
				for (n = rnd_in(1, 6); n > 0; n--)
					str_cat(b, "#");
				str_cat(b, " ");
				gen_text(b, rnd_in(0, 4), " ");
				break;
			case 2:
				gen_text(b, rnd_in(1, 3), " ");
				str_fmt(b, "%s%s", nl, rnd_in(0, 1) ? "===" : "---");
				break;
			case 3:
			case 4:
			case 5:
				gen_text(b, rnd_in(1, 300), nl);
				break;
			case 6:
				for (n = rnd_in(1, 12); n > 0; n--)
				{
					str_cat(b, rnd_in(0, 3) == 0 ? "  - " : rnd_in(0, 1) ? "- " : "1. ");
					gen_text(b, rnd_in(1, 40), " ");
					str_cat(b, nl);
					if (rnd_in(0, 5) == 0)
						str_cat(b, nl);
				}
				break;
			case 7:
				for (n = rnd_in(1, 8); n > 0; n--)
				{
					str_cat(b, rnd_in(0, 4) == 0 ? "> > " : "> ");
					gen_text(b, rnd_in(1, 40), " ");
					str_cat(b, nl);
				}
				break;
			case 8:
			case 9:
				{
					const char *fence = rnd_in(0, 1) ? "```" : "~~~~";

					str_fmt(b, "%s%s%s", fence, rnd_in(0, 1) ? "sql" : "", nl);
					for (n = rnd_in(0, rnd_in(0, 1) ? 10 : 300); n > 0; n--)
					{
						gen_text(b, rnd_in(0, 12), " ");
						str_cat(b, nl);
					}
					if (rnd_in(0, 9) || i + 1 < blocks)
						str_cat(b, fence);
				}
				break;
			case 10:
				n = rnd_in(1, 5);
				str_cat(b, "|");
				for (j = 0; j < n; j++)
				{
					str_cat(b, " ");
					gen_word(b);
					str_cat(b, " |");
				}
				str_cat(b, nl);
				str_cat(b, "|");
				for (j = 0; j < n; j++)
					str_cat(b, "---|");
				for (j = rnd_in(0, rnd_in(0, 1) ? 5 : 400); j > 0; j--)
				{
					int			k;

					str_cat(b, nl);
					str_cat(b, "|");
					for (k = 0; k < n; k++)
					{
						str_cat(b, " ");
						gen_text(b, rnd_in(0, 3), " ");
						str_cat(b, " |");
					}
				}
				break;
			case 11:
				for (n = rnd_in(1, 20); n > 0; n--)
				{
					str_cat(b, "    ");
					gen_text(b, rnd_in(0, 10), " ");
					str_cat(b, nl);
				}
				break;
			case 12:
				str_fmt(b, "<div>%s", nl);
				gen_text(b, rnd_in(1, 50), nl);
				str_fmt(b, "%s</div>", nl);
				break;
			case 13:
				/* list items holding code, quotes, nested lists */
				for (n = rnd_in(1, 6); n > 0; n--)
				{
					str_cat(b, "- ");
					gen_text(b, rnd_in(1, 20), " ");
					str_fmt(b, "%s%s  ```%s", nl, nl, nl);
					for (j = rnd_in(0, rnd_in(0, 1) ? 5 : 150); j > 0; j--)
					{
						str_cat(b, "  ");
						gen_text(b, rnd_in(0, 8), " ");
						str_cat(b, nl);
					}
					str_fmt(b, "  ```%s%s  > ", nl, nl);
					gen_text(b, rnd_in(1, 30), " ");
					str_fmt(b, "%s%s  - ", nl, nl);
					gen_text(b, rnd_in(1, 30), " ");
					str_cat(b, nl);
				}
				break;
			case 14:
				/* a quote holding an unclosed fence, then a paragraph */
				str_fmt(b, "> ```%s", nl);
				for (n = rnd_in(0, 30); n > 0; n--)
				{
					str_cat(b, "> ");
					gen_text(b, rnd_in(0, 8), " ");
					str_cat(b, nl);
				}
				gen_text(b, rnd_in(1, 20), " ");
				break;
			case 15:
				/* link reference definitions and a paragraph using them */
				str_fmt(b, "[ref]: http://example.com/x%s", nl);
				gen_text(b, rnd_in(1, 10), " ");
				str_cat(b, " [ref]");
				break;
			default:
				str_cat(b, rnd_in(0, 1) ? "***" : "- - -");
				break;
		}
		/* usually a blank line; sometimes none, so blocks interrupt */
		n = rnd_in(0, 9);
		str_cat(b, nl);
		if (n > 0 && kind != 2)
			str_cat(b, nl);
		if (n > 8)
			str_cat(b, nl);
	}
}

/* Marks the w0000-w9999 words of text in marks. */
static void
mark_words(const char *text, bool *marks)
{
	const char *p;

	for (p = text; (p = strchr(p, 'w')) != NULL; p++)
		if (p[1] >= '0' && p[1] <= '9' && p[2] >= '0' && p[2] <= '9' &&
			p[3] >= '0' && p[3] <= '9' && p[4] >= '0' && p[4] <= '9')
			marks[(p[1] - '0') * 1000 + (p[2] - '0') * 100 +
				  (p[3] - '0') * 10 + (p[4] - '0')] = true;
}

/*
 * Marks the words of md's top-level headings, as cmark reads them: a
 * heading without a body leaves no trace in the chunks.
 */
static void
mark_heading_words(const char *md, size_t len, bool *marks)
{
	cmark_parser *parser;
	cmark_node *doc;
	cmark_node *n;

	cmark_gfm_core_extensions_ensure_registered();
	parser = cmark_parser_new(CMARK_OPT_DEFAULT);
	cmark_parser_attach_syntax_extension(parser, cmark_find_syntax_extension("table"));
	cmark_parser_feed(parser, md, len);
	doc = cmark_parser_finish(parser);
	for (n = cmark_node_first_child(doc); n; n = cmark_node_next(n))
	{
		cmark_iter *it;
		cmark_event_type ev;

		if (cmark_node_get_type(n) != CMARK_NODE_HEADING)
			continue;
		it = cmark_iter_new(n);
		while ((ev = cmark_iter_next(it)) != CMARK_EVENT_DONE)
		{
			cmark_node *t = cmark_iter_get_node(it);

			if (ev == CMARK_EVENT_ENTER && cmark_node_get_literal(t))
				mark_words(cmark_node_get_literal(t), marks);
		}
		cmark_iter_free(it);
	}
	cmark_node_free(doc);
	cmark_parser_free(parser);
}

/* Are all generated words in some chunk (or in a heading)? */
static bool
covered(const TvdbChunkList *l, const char *md, size_t len)
{
	static bool seen[10000];
	int			i;
	int			j;

	memset(seen, 0, sizeof(seen));
	mark_heading_words(md, len, seen);
	for (i = 0; i < l->n; i++)
	{
		mark_words(l->chunks[i].text, seen);
		for (j = 0; j < l->chunks[i].n_headings; j++)
			mark_words(l->chunks[i].heading_path[j], seen);
	}
	for (i = 0; i < 10000; i++)
		if (used[i] && !seen[i])
		{
			diag("word w%04d lost", i);
			return false;
		}
	return true;
}

static void
test_fuzz(int iters)
{
	Str			md = {0};
	int			it;
	int			failures = 0;
	int			lost = 0;
	int			chunks = 0;

	rng_state = 0x9E3779B97F4A7C15ULL;
	if (getenv("FUZZ_SEED"))
		rng_state ^= strtoull(getenv("FUZZ_SEED"), NULL, 10) * 0xD1B54A32D192ED03ULL;
	(void) rnd();
	for (it = 0; it < iters; it++)
	{
		TvdbChunkOptions o;
		TvdbChunkList a;
		TvdbChunkList b;
		const char *err = NULL;
		const char *bad = NULL;
		int			i;

		memset(used, 0, sizeof(used));
		str_reset(&md);
		str_cat(&md, "");
		if (rnd_in(0, 9) == 0)
			gen_soup(&md);
		else
			gen_doc(&md);
		if (getenv("FUZZ_DUMP") && atoi(getenv("FUZZ_DUMP")) == it)
		{
			FILE	   *f = fopen("fuzz_dump.md", "wb");

			if (f)
			{
				fwrite(md.s, 1, md.len, f);
				fclose(f);
			}
		}
		o.bytes_per_token = rnd_in(1, 6);
		o.target_tokens = rnd_in(0, 3) == 0 ? rnd_in(1, 20) : rnd_in(20, 400);
		o.overlap_tokens = rnd_in(0, 2) == 0 ? 0 : rnd_in(0, o.target_tokens - 1);
		o.max_tokens = o.target_tokens * rnd_in(1, o.bytes_per_token * 3);
		if (o.max_tokens < 4)
			o.max_tokens = 4;

		if (tvdb_chunk_markdown(md.s, md.len, &o, &a, &err) != 0 ||
			tvdb_chunk_markdown(md.s, md.len, &o, &b, &err) != 0)
		{
			diag("iteration %d: failed: %s", it, err ? err : "?");
			failures++;
			continue;
		}
		bad = check_list(&a, &o, true);
		if (bad == NULL && a.n != b.n)
			bad = "not deterministic";
		for (i = 0; bad == NULL && i < a.n; i++)
			if (strcmp(a.chunks[i].text, b.chunks[i].text) != 0)
				bad = "not deterministic";
		if (bad)
		{
			diag("iteration %d (target %d overlap %d max %d bpt %d): %s",
				 it, o.target_tokens, o.overlap_tokens, o.max_tokens,
				 o.bytes_per_token, bad);
			failures++;
		}
		/* words can only be cut when the pieces are tiny */
		{
			long		target = (long) o.target_tokens * o.bytes_per_token;
			long		budget;

			if (target > o.max_tokens)
				target = o.max_tokens;
			budget = target - target * o.overlap_tokens / o.target_tokens;
			if (budget >= 16 && o.max_tokens >= 64 && !covered(&a, md.s, md.len))
			{
				diag("iteration %d (target %d overlap %d max %d bpt %d): content lost",
					 it, o.target_tokens, o.overlap_tokens, o.max_tokens,
					 o.bytes_per_token);
				lost++;
			}
		}
		chunks += a.n;
		tvdb_chunk_list_free(&a);
		tvdb_chunk_list_free(&b);
	}
	ok(failures == 0, "fuzz: %d documents, %d chunks, all within limits, "
	   "valid UTF-8, non-empty, deterministic", iters, chunks);
	ok(lost == 0, "fuzz: no generated word lost");
	str_free(&md);
}

int
main(void)
{
	const char *env = getenv("FUZZ_ITERS");

	test_empty();
	test_bad_options();
	test_headings();
	test_packing();
	test_sentences();
	test_words();
	test_utf8_word();
	test_code();
	test_tables();
	test_overlap();
	test_misc();
	test_allocator();
	test_fuzz(env ? atoi(env) : 300);
	printf("1..%d\n", n_tests);
	if (n_failed)
		printf("# %d of %d tests failed\n", n_failed, n_tests);
	return n_failed ? 1 : 0;
}
