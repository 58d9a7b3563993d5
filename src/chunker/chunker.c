/*
 * chunker.c — splits a markdown document into chunks for embedding.
 *
 * libcmark-gfm (with the table extension) finds the blocks; the chunk text
 * is sliced from the source by the blocks' line positions, so the author's
 * markdown is kept byte for byte except where a block has to be cut.  The
 * rules are listed in chunker.h.  Plain C99 and no PostgreSQL headers;
 * never aborts, and the only mutable global is the allocator hooks.
 *
 * The work, per top-level block of the document: a heading closes the
 * current section; any other block is turned into units (expand: the block
 * whole, its children, or the pieces it is cut into), and each unit is
 * packed into the chunk being filled (add_unit), which is emitted when the
 * next unit does not fit.
 */
#include "chunker.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmark-gfm.h>
#include <cmark-gfm-core-extensions.h>

#define N_LEVELS		6		/* heading levels */
#define MAX_DEPTH		32		/* deeper containers are cut as text */
#define GAP_MAX			32		/* longer gaps between units become "\n\n" */
#define MIN_ROOM		16		/* least room for lines in a code/table piece */
#define MIN_MAX_TOKENS	4		/* a chunk must hold any one UTF-8 character */
#define MAX_DOC_BYTES		((size_t) 1 << 30)

/* The allocator hooks: the only mutable global. */
static TvdbMallocFn mem_alloc = malloc;
static TvdbReallocFn mem_realloc = realloc;
static TvdbFreeFn mem_free = free;

void
tvdb_chunker_set_allocator(TvdbMallocFn malloc_fn, TvdbReallocFn realloc_fn,
						   TvdbFreeFn free_fn)
{
	if (malloc_fn == NULL || realloc_fn == NULL || free_fn == NULL)
	{
		malloc_fn = malloc;
		realloc_fn = realloc;
		free_fn = free;
	}
	mem_alloc = malloc_fn;
	mem_realloc = realloc_fn;
	mem_free = free_fn;
}

/* A growable, always NUL-terminated byte buffer. */
typedef struct Buf
{
	char	   *data;
	size_t		len;
	size_t		cap;
} Buf;

static bool
buf_append(Buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap)
	{
		size_t		cap = b->cap ? b->cap : 256;
		char	   *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		p = b->data ? mem_realloc(b->data, cap) : mem_alloc(cap);
		if (p == NULL)
			return false;
		b->data = p;
		b->cap = cap;
	}
	if (n > 0)
		memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
	return true;
}

static void
buf_free(Buf *b)
{
	if (b->data)
		mem_free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

static char *
mem_strndup(const char *s, size_t n)
{
	char	   *p = mem_alloc(n + 1);

	if (p == NULL)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

typedef enum UnitKind
{
	UNIT_TEXT,					/* prose: may be cut, and overlapped */
	UNIT_CODE,
	UNIT_TABLE
} UnitKind;

/* One piece of a section, ready to be packed into a chunk. */
typedef struct Unit
{
	UnitKind	kind;
	const char *text;
	size_t		len;
	bool		built;			/* assembled (a code or table piece), not a
								 * slice of the source */
	size_t		start;			/* where a slice lies in the source */
	size_t		end;
} Unit;

/* Code spans of a block: positions p with start < p < end are inside. */
typedef struct Spans
{
	size_t	   *start;
	size_t	   *end;
	int			n;
} Spans;

typedef struct Chunker
{
	const char *src;
	size_t		len;
	size_t	   *line_start;		/* line L (from 1) is src[line_start[L-1], */
	size_t	   *line_end;		/* line_end[L-1]), without its line break */
	int			n_lines;

	int			bytes_per_token;
	size_t		max_bytes;
	size_t		target_bytes;
	size_t		overlap_bytes;
	size_t		text_budget;	/* largest piece prose is cut into */

	char	   *heading[N_LEVELS];
	size_t		consumed;		/* the source before this is taken */

	/* the chunk being filled, and the unit last put in a chunk */
	Buf			cur;
	bool		tail_is_text;	/* cur ends in text (or is empty) ... */
	size_t		text_tail;		/* ... from this offset on */
	UnitKind	last_kind;
	bool		last_built;
	size_t		last_end;

	Buf			overlap;		/* scratch */
	Buf			piece;			/* scratch for a code or table piece */
	Buf			fence;			/* scratch for a closing fence */

	TvdbChunk  *chunks;
	int			n_chunks;
	int			cap_chunks;

	const char *error;			/* set when returning false */
} Chunker;

static bool
oom(Chunker *c)
{
	c->error = "out of memory";
	return false;
}

/* ---- bytes, UTF-8 and sentences ---- */

static bool
is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' ||
		ch == '\f' || ch == '\v';
}

static bool
is_cont(char ch)
{
	return ((unsigned char) ch & 0xC0) == 0x80;
}

/* The length a lead byte announces; 1 for ASCII and for non-lead bytes. */
static size_t
utf8_seq_len(char ch)
{
	unsigned char u = (unsigned char) ch;

	if (u >= 0xF0 && u <= 0xF7)
		return 4;
	if (u >= 0xE0 && u < 0xF0)
		return 3;
	if (u >= 0xC0 && u < 0xE0)
		return 2;
	return 1;
}

/* The bytes of the character at t[pos] (at least 1, never past hi). */
static size_t
utf8_char_len(const char *t, size_t pos, size_t hi)
{
	size_t		n = utf8_seq_len(t[pos]);
	size_t		k = 1;

	while (k < n && pos + k < hi && is_cont(t[pos + k]))
		k++;
	return k;
}

/*
 * The largest cut <= p (and >= lo) that is not inside a byte sequence that
 * looks like one UTF-8 character.  May return lo.
 */
static size_t
utf8_floor(const char *t, size_t lo, size_t p, size_t hi)
{
	size_t		q = p;

	if (p >= hi || !is_cont(t[p]))
		return p;
	while (q > lo && p - q < 3)
	{
		q--;
		if (is_cont(t[q]))
			continue;
		if ((unsigned char) t[q] >= 0xC0 && q + utf8_seq_len(t[q]) > p)
			return q;
		return p;				/* a broken sequence: any cut will do */
	}
	return p;					/* stray continuation bytes */
}

/* The smallest cut >= p that is not inside a character. */
static size_t
utf8_ceil(const char *t, size_t lo, size_t p, size_t hi)
{
	size_t		q = utf8_floor(t, lo, p, hi);

	return q == p ? p : q + utf8_char_len(t, q, hi);
}

/*
 * The last resort: cut at the character boundary at or before limit, or
 * after one whole character when that would make no progress.
 */
static size_t
char_cut(const char *t, size_t pos, size_t limit, size_t hi)
{
	size_t		cut = utf8_floor(t, pos, limit, hi);

	return cut > pos ? cut : pos + utf8_char_len(t, pos, hi);
}

/* Does t[lo..k) end in '.', '!' or '?', maybe then closing marks? */
static bool
ends_sentence(const char *t, size_t lo, size_t k)
{
	int			closers = 0;

	while (k > lo && closers < 4 && t[k - 1] != '\0' &&
		   strchr("\"')]*_", t[k - 1]) != NULL)
	{
		k--;
		closers++;
	}
	return k > lo && (t[k - 1] == '.' || t[k - 1] == '!' || t[k - 1] == '?');
}

/* Does t[lo..k) end in a CJK full stop, fullwidth '!' or fullwidth '?'? */
static bool
ends_cjk_sentence(const char *t, size_t lo, size_t k)
{
	const unsigned char *u = (const unsigned char *) t + k - 3;

	if (k < lo + 3)
		return false;
	return (u[0] == 0xE3 && u[1] == 0x80 && u[2] == 0x82) ||	/* 。 */
		(u[0] == 0xEF && u[1] == 0xBC && u[2] == 0x81) ||	/* ！ */
		(u[0] == 0xEF && u[1] == 0xBC && u[2] == 0x9F);	/* ？ */
}

/* Does a blank line (maybe quoted: "> ") start at the line break t[k]? */
static bool
blank_line_after(const char *t, size_t k, size_t hi)
{
	size_t		j = k + 1;

	if (t[k] == '\r' && j < hi && t[j] == '\n')
		j++;
	while (j < hi && (t[j] == ' ' || t[j] == '\t' || t[j] == '>'))
		j++;
	return j < hi && (t[j] == '\n' || t[j] == '\r');
}

/*
 * The code spans of t[lo..hi): a run of n backticks opens a span that the
 * next run of exactly n backticks closes (runs longer than 32 are taken as
 * literal).  Escapes are not considered.
 */
static bool
find_spans(Chunker *c, size_t lo, size_t hi, Spans *sp)
{
	const char *t = c->src;
	size_t	   *pos = NULL;
	size_t	   *len = NULL;
	int		   *next = NULL;
	int			n = 0;
	int			last[33];
	size_t		i;
	int			k;

	memset(sp, 0, sizeof(*sp));
	for (i = lo; i < hi; i++)
		if (t[i] == '`' && (i == lo || t[i - 1] != '`'))
			n++;
	if (n < 2)
		return true;
	pos = mem_alloc((size_t) n * sizeof(size_t));
	len = mem_alloc((size_t) n * sizeof(size_t));
	next = mem_alloc((size_t) n * sizeof(int));
	sp->start = mem_alloc((size_t) (n / 2) * sizeof(size_t));
	sp->end = mem_alloc((size_t) (n / 2) * sizeof(size_t));
	if (!pos || !len || !next || !sp->start || !sp->end)
		goto fail;

	n = 0;
	for (i = lo; i < hi;)
	{
		size_t		j = i;

		if (t[i] != '`')
		{
			i++;
			continue;
		}
		while (j < hi && t[j] == '`')
			j++;
		pos[n] = i;
		len[n] = j - i;
		n++;
		i = j;
	}
	for (k = 0; k < 33; k++)
		last[k] = -1;
	for (k = n - 1; k >= 0; k--)
	{
		if (len[k] > 32)
		{
			next[k] = -1;
			continue;
		}
		next[k] = last[len[k]];
		last[len[k]] = k;
	}
	for (k = 0; k < n;)
	{
		if (next[k] < 0)
		{
			k++;
			continue;
		}
		sp->start[sp->n] = pos[k];
		sp->end[sp->n] = pos[next[k]] + len[next[k]];
		sp->n++;
		k = next[k] + 1;
	}
	mem_free(pos);
	mem_free(len);
	mem_free(next);
	return true;

fail:
	if (pos)
		mem_free(pos);
	if (len)
		mem_free(len);
	if (next)
		mem_free(next);
	if (sp->start)
		mem_free(sp->start);
	if (sp->end)
		mem_free(sp->end);
	memset(sp, 0, sizeof(*sp));
	return oom(c);
}

static void
free_spans(Spans *sp)
{
	if (sp->start)
		mem_free(sp->start);
	if (sp->end)
		mem_free(sp->end);
	memset(sp, 0, sizeof(*sp));
}

static bool
in_span(const Spans *sp, size_t p)
{
	int			lo = 0;
	int			hi = sp->n;

	/* the last span starting before p */
	while (lo < hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (sp->start[mid] < p)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 && p < sp->end[lo - 1];
}

/* The last sentence end k in (pos, limit] (limit < hi), or 0. */
static size_t
sentence_cut(const char *t, size_t pos, size_t limit, size_t hi,
			 const Spans *sp)
{
	size_t		k;

	for (k = limit; k > pos; k--)
	{
		bool		end;

		if (is_space(t[k]))
			end = ends_sentence(t, pos, k) || ends_cjk_sentence(t, pos, k) ||
				((t[k] == '\n' || t[k] == '\r') && blank_line_after(t, k, hi));
		else
			end = ends_cjk_sentence(t, pos, k);
		if (end && !in_span(sp, k))
			return k;
	}
	return 0;
}

/* The last whitespace k in (pos, limit], or 0. */
static size_t
word_cut(const char *t, size_t pos, size_t limit)
{
	size_t		k;

	for (k = limit; k > pos; k--)
		if (is_space(t[k]))
			return k;
	return 0;
}

/* ---- packing units into chunks ---- */

static bool
emit_chunk(Chunker *c)
{
	TvdbChunk  *ch;
	int			nh = 0;
	int			i;

	if (c->cur.len > c->max_bytes)
	{
		/* cannot happen: every unit fits, see add_unit */
		c->error = "internal error: chunk over max_tokens bytes";
		return false;
	}
	if (c->n_chunks == c->cap_chunks)
	{
		int			cap = c->cap_chunks ? c->cap_chunks * 2 : 16;
		TvdbChunk  *p;

		if (c->cap_chunks > INT_MAX / 2)
			return oom(c);
		p = c->chunks ? mem_realloc(c->chunks, (size_t) cap * sizeof(TvdbChunk))
			: mem_alloc((size_t) cap * sizeof(TvdbChunk));
		if (p == NULL)
			return oom(c);
		c->chunks = p;
		c->cap_chunks = cap;
	}
	ch = &c->chunks[c->n_chunks++];
	memset(ch, 0, sizeof(*ch));
	ch->text = mem_strndup(c->cur.data, c->cur.len);
	if (ch->text == NULL)
		return oom(c);
	ch->len = c->cur.len;
	ch->token_estimate = (int) ((c->cur.len + (size_t) c->bytes_per_token - 1) /
								(size_t) c->bytes_per_token);
	for (i = 0; i < N_LEVELS; i++)
		if (c->heading[i] && c->heading[i][0])
			nh++;
	if (nh == 0)
		return true;
	ch->heading_path = mem_alloc((size_t) nh * sizeof(char *));
	if (ch->heading_path == NULL)
		return oom(c);
	for (i = 0; i < N_LEVELS; i++)
	{
		char	   *h;

		if (!c->heading[i] || !c->heading[i][0])
			continue;
		h = mem_strndup(c->heading[i], strlen(c->heading[i]));
		if (h == NULL)
			return oom(c);
		ch->heading_path[ch->n_headings++] = h;
	}
	return true;
}

/*
 * The overlap for the chunk after cur: at most overlap_bytes of cur's
 * trailing text, from a sentence start (if that keeps half), else a word
 * start, else a character boundary.
 */
static bool
make_overlap(Chunker *c)
{
	const char *t = c->cur.data;
	size_t		len = c->cur.len;
	size_t		want = c->overlap_bytes;
	size_t		lo = c->text_tail;
	size_t		p0;
	size_t		q;
	size_t		best = len;

	c->overlap.len = 0;
	if (want == 0 || !c->tail_is_text || lo >= len)
		return true;
	p0 = len > want ? len - want : 0;
	if (p0 < lo)
		p0 = lo;
	p0 = utf8_ceil(t, lo, p0, len);

	for (q = p0; q < len && len - q >= (want + 1) / 2; q++)
	{
		size_t		k = q;
		int			breaks = 0;

		if (is_space(t[q]))
			continue;
		if (q == lo || ends_cjk_sentence(t, lo, q))
		{
			best = q;
			break;
		}
		if (!is_space(t[q - 1]))
			continue;
		while (k > lo && is_space(t[k - 1]))
			if (t[--k] == '\n')
				breaks++;
		if (breaks >= 2 || ends_sentence(t, lo, k) ||
			ends_cjk_sentence(t, lo, k))
		{
			best = q;
			break;
		}
	}
	for (q = p0; best == len && q < len; q++)
		if (!is_space(t[q]) && (q == lo || is_space(t[q - 1])))
			best = q;
	if (best == len)
		best = p0;
	return buf_append(&c->overlap, t + best, len - best) || oom(c);
}

/* What goes between the last unit and u: the source gap, if short. */
static void
separator(const Chunker *c, const Unit *u, const char **sep, size_t *n)
{
	if (c->last_built || u->built || u->start < c->last_end ||
		u->start - c->last_end > GAP_MAX)
	{
		*sep = "\n\n";
		*n = 2;
	}
	else
	{
		*sep = c->src + c->last_end;
		*n = u->start - c->last_end;
	}
}

/*
 * Packs u into the chunk being filled, emitting that chunk first if u does
 * not fit within the target.  Every unit is at most max_bytes, and a chunk
 * only grows past the target by holding a single unit, so no chunk exceeds
 * max_bytes.
 */
static bool
add_unit(Chunker *c, const Unit *u)
{
	const char *sep = "";
	size_t		seplen = 0;

	if (u->len == 0)
		return true;
	if (c->cur.len > 0)
	{
		separator(c, u, &sep, &seplen);
		if (c->cur.len + seplen + u->len > c->target_bytes)
		{
			if (!emit_chunk(c) || !make_overlap(c))
				return false;
			c->cur.len = 0;
			c->tail_is_text = true;
			c->text_tail = 0;
			if (c->overlap.len > 0 &&
				c->overlap.len + seplen + u->len <= c->target_bytes)
			{
				if (!buf_append(&c->cur, c->overlap.data, c->overlap.len))
					return oom(c);
			}
			else
				seplen = 0;
		}
	}
	if (!buf_append(&c->cur, sep, seplen))
		return oom(c);
	if (u->kind == UNIT_TEXT)
	{
		if (!c->tail_is_text)
			c->text_tail = c->cur.len;
		c->tail_is_text = true;
	}
	else
		c->tail_is_text = false;
	if (!buf_append(&c->cur, u->text, u->len))
		return oom(c);
	if (!c->tail_is_text)
		c->text_tail = c->cur.len;
	c->last_kind = u->kind;
	c->last_built = u->built;
	c->last_end = u->end;
	return true;
}

static bool
add_slice(Chunker *c, UnitKind kind, size_t s, size_t e)
{
	Unit		u;

	u.kind = kind;
	u.text = c->src + s;
	u.len = e - s;
	u.built = false;
	u.start = s;
	u.end = e;
	if (e > c->consumed)
		c->consumed = e;
	return add_unit(c, &u);
}

/* Emits what is left of the section. */
static bool
flush_section(Chunker *c)
{
	if (c->cur.len > 0 && !emit_chunk(c))
		return false;
	c->cur.len = 0;
	c->tail_is_text = true;
	c->text_tail = 0;
	c->last_built = true;		/* nothing to take a gap from */
	return true;
}

/* ---- cutting blocks ---- */

/*
 * Cuts src[s..e) into pieces of at most budget bytes: at the last sentence
 * end that fits, else the last whitespace, else a character boundary.
 */
static bool
split_text(Chunker *c, size_t s, size_t e, size_t budget, UnitKind kind)
{
	const char *t = c->src;
	Spans		sp;
	size_t		pos = s;
	bool		ok = true;

	if (!find_spans(c, s, e, &sp))
		return false;
	while (ok)
	{
		size_t		cut;
		size_t		next;
		size_t		pe;

		while (pos < e && is_space(t[pos]))
			pos++;
		if (pos >= e)
			break;
		if (e - pos <= budget)
			cut = next = e;
		else
		{
			size_t		limit = pos + budget;

			cut = sentence_cut(t, pos, limit, e, &sp);
			if (cut == 0)
				cut = word_cut(t, pos, limit);
			if (cut == 0)
				cut = char_cut(t, pos, limit, e);
			next = cut;
		}
		pe = cut;
		while (pe > pos && is_space(t[pe - 1]))
			pe--;
		ok = add_slice(c, kind, pos, pe);
		pos = next;
	}
	free_spans(&sp);
	if (e > c->consumed)
		c->consumed = e;
	return ok;
}

/*
 * Cuts the lines src[s..e) into pieces of at most max_bytes, each being
 * hdr + "\n" + lines + "\n" + ftr (hdr and ftr when given).  A line too
 * long for a piece is cut at whitespace or a character boundary.  The
 * caller checks that hdr and ftr leave at least MIN_ROOM.
 */
static bool
split_lines(Chunker *c, size_t s, size_t e, const char *hdr, size_t hlen,
			const char *ftr, size_t flen, UnitKind kind)
{
	const char *t = c->src;
	size_t		room = c->max_bytes - (hdr ? hlen + 1 : 0) - (ftr ? flen + 1 : 0);
	size_t		pos = s;

	while (pos < e)
	{
		size_t		end = pos;
		size_t		next = pos;
		size_t		q = pos;
		size_t		ps;
		bool		took = false;

		/* whole lines while they fit */
		while (q < e)
		{
			size_t		eol = q;

			while (eol < e && t[eol] != '\n' && t[eol] != '\r')
				eol++;
			if (eol - pos > room)
				break;
			end = eol;
			took = true;
			if (eol < e && t[eol] == '\r' && eol + 1 < e && t[eol + 1] == '\n')
				q = eol + 2;
			else
				q = eol < e ? eol + 1 : e;
			next = q;
		}
		if (!took)
		{
			size_t		limit = pos + room;

			end = word_cut(t, pos, limit);
			if (end == 0)
				end = char_cut(t, pos, limit, e);
			next = end;
		}

		/* skip leading blank lines; drop a piece of whitespace only */
		ps = pos;
		for (q = pos; q < end; q++)
		{
			if (t[q] == '\n' || t[q] == '\r')
				ps = q + 1;
			else if (t[q] != ' ' && t[q] != '\t')
				break;
		}
		while (end > ps && is_space(t[end - 1]))
			end--;
		if (q < end)
		{
			if (hdr == NULL && ftr == NULL)
			{
				if (!add_slice(c, kind, ps, end))
					return false;
			}
			else
			{
				Unit		u;

				c->piece.len = 0;
				if ((hdr && (!buf_append(&c->piece, hdr, hlen) ||
							 !buf_append(&c->piece, "\n", 1))) ||
					!buf_append(&c->piece, t + ps, end - ps) ||
					(ftr && (!buf_append(&c->piece, "\n", 1) ||
							 !buf_append(&c->piece, ftr, flen))))
					return oom(c);
				u.kind = kind;
				u.text = c->piece.data;
				u.len = c->piece.len;
				u.built = true;
				u.start = ps;
				u.end = end;
				if (!add_unit(c, &u))
					return false;
			}
		}
		pos = next;
	}
	if (e > c->consumed)
		c->consumed = e;
	return true;
}

/* Is src[p..hi) a closing fence: (quote markers and) n >= flen of ch? */
static bool
is_closing_fence(const char *t, size_t p, size_t hi, char ch, int flen)
{
	int			n = 0;

	while (p < hi && (t[p] == ' ' || t[p] == '\t' || t[p] == '>'))
		p++;
	while (p < hi && t[p] == ch)
	{
		p++;
		n++;
	}
	while (p < hi && is_space(t[p]))
		p++;
	return p == hi && n >= flen && n >= 3;
}

/* Cuts a code block src[s..e) larger than max_bytes. */
static bool
split_code(Chunker *c, cmark_node *node, size_t s, size_t e)
{
	const char *t = c->src;
	int			flen = 0;
	int			foff = 0;
	char		fch = '`';
	size_t		eol = s;
	size_t		body;
	size_t		ls = e;
	size_t		body_end = e;
	const char *ftr;
	size_t		ftr_len;

	if (!cmark_node_get_fenced(node, &flen, &foff, &fch) || flen <= 0)
		return split_lines(c, s, e, NULL, 0, NULL, 0, UNIT_CODE);

	/* the opening fence line, the body, the closing fence line */
	while (eol < e && t[eol] != '\n' && t[eol] != '\r')
		eol++;
	body = eol;
	if (body < e && t[body] == '\r' && body + 1 < e && t[body + 1] == '\n')
		body += 2;
	else if (body < e)
		body++;
	while (ls > body && t[ls - 1] != '\n' && t[ls - 1] != '\r')
		ls--;
	if (ls >= body && ls < e && ls > s && is_closing_fence(t, ls, e, fch, flen))
	{
		ftr = t + ls;
		ftr_len = e - ls;
		body_end = ls;
		if (body_end > body && t[body_end - 1] == '\n')
			body_end--;
		if (body_end > body && t[body_end - 1] == '\r')
			body_end--;
	}
	else
	{
		/* unclosed: close it with the opening fence's run */
		int			i;

		c->fence.len = 0;
		for (i = 0; i < flen; i++)
			if (!buf_append(&c->fence, &fch, 1))
				return oom(c);
		ftr = c->fence.data;
		ftr_len = c->fence.len;
	}
	if (body_end < body)
		body_end = body;
	if ((eol - s) + 1 + ftr_len + 1 + MIN_ROOM > c->max_bytes)
		return split_text(c, s, e, c->max_bytes, UNIT_CODE);
	if (!split_lines(c, body, body_end, t + s, eol - s, ftr, ftr_len, UNIT_CODE))
		return false;
	if (e > c->consumed)
		c->consumed = e;
	return true;
}

/* Cuts a table on lines first..last (src[s..e)) larger than max_bytes. */
static bool
split_table(Chunker *c, int first, int last, size_t s, size_t e)
{
	size_t		hs;
	size_t		he;
	size_t		rows;

	if (first < 1 || first + 2 > last || last > c->n_lines)
		return split_text(c, s, e, c->max_bytes, UNIT_TABLE);
	hs = c->line_start[first - 1];
	if (hs < s)
		hs = s;
	he = c->line_end[first];	/* the delimiter row's end */
	rows = c->line_start[first + 1];
	if (he <= hs || rows >= e || (he - hs) + 1 + MIN_ROOM > c->max_bytes)
		return split_text(c, s, e, c->max_bytes, UNIT_TABLE);
	return split_lines(c, rows, e, c->src + hs, he - hs, NULL, 0, UNIT_TABLE);
}

/* ---- blocks ---- */

static bool
is_table(cmark_node *n)
{
	const char *ts = cmark_node_get_type_string(n);

	return ts != NULL && strcmp(ts, "table") == 0;
}

static bool
is_container(cmark_node *n)
{
	switch (cmark_node_get_type(n))
	{
		case CMARK_NODE_BLOCK_QUOTE:
		case CMARK_NODE_LIST:
		case CMARK_NODE_ITEM:
		case CMARK_NODE_FOOTNOTE_DEFINITION:
			return true;
		default:
			return false;
	}
}

/*
 * A table's lines.  cmark-gfm 0.29 gives a table that interrupts a
 * paragraph the paragraph's start line (and what is left of the paragraph
 * no position at all); its end and its body rows are right, and the header
 * is the line two above the first body row, or above the last line.
 */
static void
table_lines(cmark_node *n, int *first, int *last)
{
	int			start = cmark_node_get_start_line(n);
	int			end = cmark_node_get_end_line(n);
	int			f = end - 1;
	cmark_node *row;

	for (row = cmark_node_first_child(n); row; row = cmark_node_next(row))
	{
		const char *ts = cmark_node_get_type_string(row);

		if (ts && strcmp(ts, "table_row") == 0)
		{
			f = cmark_node_get_start_line(row) - 2;
			break;
		}
	}
	if (f < start)
		f = start;
	*first = f;
	*last = end;
}

/* Is line L a setext underline (maybe quoted): only '=' or only '-'? */
static bool
is_underline(const Chunker *c, int line)
{
	const char *t = c->src;
	size_t		p;
	size_t		e;
	char		ch;

	if (line < 1 || line > c->n_lines)
		return false;
	p = c->line_start[line - 1];
	e = c->line_end[line - 1];
	while (p < e && (t[p] == ' ' || t[p] == '\t' || t[p] == '>'))
		p++;
	if (p >= e || (t[p] != '=' && t[p] != '-'))
		return false;
	ch = t[p];
	while (p < e && t[p] == ch)
		p++;
	while (p < e && is_space(t[p]))
		p++;
	return p == e;
}

/* The first line of a block as cmark gives it (0: none), tables fixed. */
static int
raw_first(cmark_node *n)
{
	int			f;
	int			l;

	if (n == NULL)
		return 0;
	if (!is_table(n))
		return cmark_node_get_start_line(n);
	table_lines(n, &f, &l);
	return f;
}

/*
 * A block's lines.  cmark sets the end of a setext heading, and of a fenced
 * code block closed by the end of its container, to the line after it: so
 * the end is kept before the next sibling's start, within the parent's end,
 * and a setext heading ends at its underline.  A block without a position
 * (the rest of a paragraph a table interrupted) gets the lines between its
 * neighbours.
 */
static void
node_lines(const Chunker *c, cmark_node *n, int *first, int *last)
{
	cmark_node *prev = cmark_node_previous(n);
	cmark_node *next = cmark_node_next(n);
	cmark_node *parent = cmark_node_parent(n);
	int			f;
	int			l;
	int			bound;

	if (is_table(n))
		table_lines(n, &f, &l);
	else if ((f = cmark_node_get_start_line(n)) >= 1)
	{
		l = cmark_node_get_end_line(n);
		if (l < f)
			l = f;
		if (cmark_node_get_type(n) == CMARK_NODE_HEADING && l > f &&
			!is_underline(c, l))
			l--;
	}
	else
	{
		f = 0;
		if (prev && cmark_node_get_start_line(prev) >= 1)
		{
			int			pf;

			node_lines(c, prev, &pf, &f);
			f++;
		}
		else if (parent)
			f = cmark_node_get_start_line(parent);
		if (f < 1)
			f = 1;
		l = INT_MAX;
	}
	bound = raw_first(next);
	if (bound >= 1 && bound - 1 < l)
		l = bound - 1;
	if (parent && cmark_node_get_type(parent) != CMARK_NODE_DOCUMENT &&
		cmark_node_get_end_line(parent) >= 1 &&
		cmark_node_get_end_line(parent) < l)
		l = cmark_node_get_end_line(parent);
	*first = f;
	*last = l;					/* l < f: nothing */
}

/*
 * The source of lines first..last, less what is already taken, leading
 * blank lines and trailing whitespace.  False if nothing is left.
 */
static bool
slice_lines(Chunker *c, int first, int last, size_t *s, size_t *e)
{
	const char *t = c->src;
	size_t		p;
	size_t		q;
	size_t		end;

	if (first < 1)
		first = 1;
	if (last > c->n_lines)
		last = c->n_lines;
	if (first > last)
		return false;
	p = c->line_start[first - 1];
	end = c->line_end[last - 1];
	if (p < c->consumed)
		p = c->consumed;
	for (q = p; q < end; q++)
	{
		if (t[q] == '\n' || t[q] == '\r')
			p = q + 1;
		else if (t[q] != ' ' && t[q] != '\t')
			break;
	}
	while (end > p && is_space(t[end - 1]))
		end--;
	if (p >= end)
		return false;
	*s = p;
	*e = end;
	return true;
}

/* Does a container hold any block other than containers and breaks? */
static bool
has_leaf(cmark_node *n)
{
	cmark_iter *it = cmark_iter_new(n);
	cmark_event_type ev;
	bool		found = false;

	if (it == NULL)
		return true;
	while (!found && (ev = cmark_iter_next(it)) != CMARK_EVENT_DONE)
	{
		cmark_node *d = cmark_iter_get_node(it);

		found = ev == CMARK_EVENT_ENTER && d != n && !is_container(d) &&
			cmark_node_get_type(d) != CMARK_NODE_THEMATIC_BREAK;
	}
	cmark_iter_free(it);
	return found;
}

/*
 * Turns a block into units: whole if it fits (code blocks and tables up to
 * max_bytes), else its children (containers), else cut.
 */
static bool
expand(Chunker *c, cmark_node *node, int depth)
{
	cmark_node_type type = cmark_node_get_type(node);
	UnitKind	kind = UNIT_TEXT;
	int			first;
	int			last;
	size_t		s;
	size_t		e;
	cmark_node *child;

	if (type == CMARK_NODE_THEMATIC_BREAK)
		return true;
	if (is_container(node) && !has_leaf(node))
		return true;
	if (is_table(node))
		kind = UNIT_TABLE;
	else if (type == CMARK_NODE_CODE_BLOCK)
		kind = UNIT_CODE;

	node_lines(c, node, &first, &last);
	if (!slice_lines(c, first, last, &s, &e))
		return true;
	if (e - s <= c->target_bytes || (kind != UNIT_TEXT && e - s <= c->max_bytes))
		return add_slice(c, kind, s, e);
	if (is_container(node) && depth < MAX_DEPTH)
	{
		for (child = cmark_node_first_child(node); child;
			 child = cmark_node_next(child))
			if (!expand(c, child, depth + 1))
				return false;
		return true;
	}
	if (kind == UNIT_CODE)
		return split_code(c, node, s, e);
	if (kind == UNIT_TABLE)
		return split_table(c, first, last, s, e);
	return split_text(c, s, e, c->text_budget, UNIT_TEXT);
}

/* A heading's plain text: its text and code, whitespace collapsed. */
static char *
heading_text(cmark_node *h)
{
	Buf			b = {NULL, 0, 0};
	cmark_iter *it = cmark_iter_new(h);
	cmark_event_type ev;
	bool		ok = it != NULL && buf_append(&b, "", 0);
	bool		space = false;

	while (ok && (ev = cmark_iter_next(it)) != CMARK_EVENT_DONE)
	{
		cmark_node *n = cmark_iter_get_node(it);
		cmark_node_type type = cmark_node_get_type(n);
		const char *lit;

		if (ev != CMARK_EVENT_ENTER)
			continue;
		if (type == CMARK_NODE_SOFTBREAK || type == CMARK_NODE_LINEBREAK)
			space = true;
		if (type != CMARK_NODE_TEXT && type != CMARK_NODE_CODE)
			continue;
		for (lit = cmark_node_get_literal(n); ok && lit && *lit; lit++)
		{
			if (is_space(*lit))
				space = true;
			else
			{
				if (space && b.len > 0)
					ok = buf_append(&b, " ", 1);
				space = false;
				ok = ok && buf_append(&b, lit, 1);
			}
		}
	}
	if (it)
		cmark_iter_free(it);
	if (!ok)
	{
		buf_free(&b);
		return NULL;
	}
	return b.data;
}

static bool
set_heading(Chunker *c, cmark_node *h)
{
	int			level = cmark_node_get_heading_level(h);
	char	   *text = heading_text(h);
	int			first;
	int			end;
	int			i;

	if (text == NULL)
		return oom(c);
	if (level < 1)
		level = 1;
	if (level > N_LEVELS)
		level = N_LEVELS;
	for (i = level - 1; i < N_LEVELS; i++)
	{
		if (c->heading[i])
			mem_free(c->heading[i]);
		c->heading[i] = NULL;
	}
	c->heading[level - 1] = text;
	node_lines(c, h, &first, &end);
	if (end >= first && end >= 1 && end <= c->n_lines && c->line_end[end - 1] > c->consumed)
		c->consumed = c->line_end[end - 1];
	return true;
}

/* Where each line starts and ends; line breaks as cmark: \n, \r\n, \r. */
static bool
index_lines(Chunker *c)
{
	const char *t = c->src;
	size_t		n = 1;
	size_t		i;
	int			line = 0;

	for (i = 0; i < c->len; i++)
		if (t[i] == '\n' || (t[i] == '\r' && !(i + 1 < c->len && t[i + 1] == '\n')))
			n++;
	if (n > INT_MAX)
		return oom(c);
	c->line_start = mem_alloc(n * sizeof(size_t));
	c->line_end = mem_alloc(n * sizeof(size_t));
	if (!c->line_start || !c->line_end)
		return oom(c);
	c->line_start[0] = 0;
	for (i = 0; i < c->len; i++)
	{
		if (t[i] != '\n' && t[i] != '\r')
			continue;
		c->line_end[line] = i;
		if (t[i] == '\r' && i + 1 < c->len && t[i + 1] == '\n')
			i++;
		c->line_start[++line] = i + 1;
	}
	c->line_end[line] = c->len;
	c->n_lines = line + 1;
	return true;
}

static const char *
check_options(const TvdbChunkOptions *opt)
{
	if (opt->bytes_per_token < 1)
		return "bytes_per_token must be positive";
	if (opt->target_tokens < 1)
		return "target_tokens must be positive";
	if (opt->overlap_tokens < 0)
		return "overlap_tokens must not be negative";
	if (opt->overlap_tokens >= opt->target_tokens)
		return "overlap_tokens must be less than target_tokens";
	if (opt->max_tokens < opt->target_tokens)
		return "max_tokens must not be less than target_tokens";
	if (opt->max_tokens < MIN_MAX_TOKENS)
		return "max_tokens must be at least 4";
	return NULL;
}

int
tvdb_chunk_markdown(const char *md, size_t len, const TvdbChunkOptions *opt,
					TvdbChunkList *out, const char **errmsg)
{
	Chunker		c;
	cmark_parser *parser = NULL;
	cmark_node *doc = NULL;
	cmark_syntax_extension *table;
	cmark_node *node;
	const char *err = NULL;
	bool		ok;
	uint64_t	target;
	int			i;

	if (out)
	{
		out->chunks = NULL;
		out->n = 0;
	}
	if (opt == NULL || out == NULL || (md == NULL && len > 0))
		err = "invalid arguments";
	else if ((err = check_options(opt)) == NULL && len > MAX_DOC_BYTES)
		err = "document too large";
	if (err)
	{
		if (errmsg)
			*errmsg = err;
		return -1;
	}
	if (len == 0)
		return 0;

	memset(&c, 0, sizeof(c));
	c.src = md;
	c.len = len;
	c.bytes_per_token = opt->bytes_per_token;
	c.max_bytes = (size_t) opt->max_tokens;
	target = (uint64_t) opt->target_tokens * (uint64_t) opt->bytes_per_token;
	c.target_bytes = target < c.max_bytes ? (size_t) target : c.max_bytes;
	c.overlap_bytes = (size_t) ((uint64_t) c.target_bytes *
								(uint64_t) opt->overlap_tokens /
								(uint64_t) opt->target_tokens);
	c.text_budget = c.target_bytes - c.overlap_bytes;
	c.tail_is_text = true;
	c.last_built = true;
	if (len >= 3 && memcmp(md, "\xEF\xBB\xBF", 3) == 0)
		c.consumed = 3;			/* the byte order mark */

	ok = index_lines(&c);
	if (ok)
	{
		cmark_gfm_core_extensions_ensure_registered();
		parser = cmark_parser_new(CMARK_OPT_DEFAULT);
		ok = parser != NULL || oom(&c);
	}
	if (ok)
	{
		table = cmark_find_syntax_extension("table");
		if (table)
			cmark_parser_attach_syntax_extension(parser, table);
		cmark_parser_feed(parser, md, len);
		doc = cmark_parser_finish(parser);
		ok = doc != NULL || oom(&c);
	}
	for (node = ok ? cmark_node_first_child(doc) : NULL; ok && node;
		 node = cmark_node_next(node))
	{
		if (cmark_node_get_type(node) == CMARK_NODE_HEADING)
			ok = flush_section(&c) && set_heading(&c, node);
		else
			ok = expand(&c, node, 0);
	}
	ok = ok && flush_section(&c);

	if (doc)
		cmark_node_free(doc);
	if (parser)
		cmark_parser_free(parser);
	if (c.line_start)
		mem_free(c.line_start);
	if (c.line_end)
		mem_free(c.line_end);
	for (i = 0; i < N_LEVELS; i++)
		if (c.heading[i])
			mem_free(c.heading[i]);
	buf_free(&c.cur);
	buf_free(&c.overlap);
	buf_free(&c.piece);
	buf_free(&c.fence);

	out->chunks = c.chunks;
	out->n = c.n_chunks;
	if (!ok)
	{
		tvdb_chunk_list_free(out);
		if (errmsg)
			*errmsg = c.error ? c.error : "out of memory";
		return -1;
	}
	if (out->n == 0 && out->chunks)
	{
		mem_free(out->chunks);
		out->chunks = NULL;
	}
	return 0;
}

void
tvdb_chunk_list_free(TvdbChunkList *list)
{
	int			i;
	int			j;

	if (list == NULL)
		return;
	for (i = 0; i < list->n; i++)
	{
		TvdbChunk  *ch = &list->chunks[i];

		if (ch->text)
			mem_free(ch->text);
		for (j = 0; j < ch->n_headings; j++)
			mem_free(ch->heading_path[j]);
		if (ch->heading_path)
			mem_free(ch->heading_path);
	}
	if (list->chunks)
		mem_free(list->chunks);
	list->chunks = NULL;
	list->n = 0;
}
