/*
 * json.c — a growable buffer and JSON string escaping.
 *
 * Header names and values come straight from the network, so the escaper
 * must produce text that jsonb always accepts: quotes, backslashes and all
 * control characters are escaped, and bytes that are not well-formed UTF-8
 * (overlong forms, surrogates, code points past U+10FFFF, stray
 * continuation bytes) become U+FFFD instead of failing the whole request.
 */
#include "webhookd.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool
buf_reserve(Buf *b, size_t extra)
{
	size_t		want;
	size_t		cap;
	char	   *p;

	if (b->failed)
		return false;
	if (extra > SIZE_MAX - b->len - 1)
		goto fail;
	want = b->len + extra + 1;	/* room for a terminating NUL */
	if (want <= b->cap)
		return true;
	cap = b->cap ? b->cap : 256;
	while (cap < want)
		cap = cap > SIZE_MAX / 2 ? want : cap * 2;
	p = realloc(b->data, cap);
	if (p == NULL)
		goto fail;
	b->data = p;
	b->cap = cap;
	return true;

fail:
	b->failed = true;
	return false;
}

void
buf_append(Buf *b, const char *s, size_t n)
{
	if (!buf_reserve(b, n))
		return;
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
buf_puts(Buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

void
buf_free(Buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
	b->failed = false;
}

/* Length of the well-formed UTF-8 sequence at s (RFC 3629), 0 if none. */
static size_t
utf8_sequence(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80;
	unsigned char hi = 0xBF;
	size_t		len;

	if (c >= 0xC2 && c <= 0xDF)
		len = 2;
	else if (c >= 0xE0 && c <= 0xEF)
	{
		len = 3;
		if (c == 0xE0)
			lo = 0xA0;			/* no overlong forms */
		else if (c == 0xED)
			hi = 0x9F;			/* no UTF-16 surrogates */
	}
	else if (c >= 0xF0 && c <= 0xF4)
	{
		len = 4;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;			/* nothing past U+10FFFF */
	}
	else
		return 0;

	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
	return len;
}

/* Append s[0..n) as a quoted JSON string. */
void
buf_json_string(Buf *b, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		i = 0;

	buf_append(b, "\"", 1);
	while (i < n)
	{
		unsigned char c = p[i];
		size_t		run;

		if (c >= 0x80)
		{
			run = utf8_sequence(p + i, n - i);
			if (run == 0)
			{
				buf_append(b, "\xEF\xBF\xBD", 3);	/* U+FFFD */
				i++;
			}
			else
			{
				buf_append(b, s + i, run);
				i += run;
			}
			continue;
		}

		switch (c)
		{
			case '"':
				buf_append(b, "\\\"", 2);
				break;
			case '\\':
				buf_append(b, "\\\\", 2);
				break;
			case '\b':
				buf_append(b, "\\b", 2);
				break;
			case '\f':
				buf_append(b, "\\f", 2);
				break;
			case '\n':
				buf_append(b, "\\n", 2);
				break;
			case '\r':
				buf_append(b, "\\r", 2);
				break;
			case '\t':
				buf_append(b, "\\t", 2);
				break;
			default:
				if (c < 0x20)
				{
					char		esc[8];

					snprintf(esc, sizeof(esc), "\\u%04x", c);
					buf_append(b, esc, 6);
				}
				else
				{
					/* copy a run of plain ASCII in one go */
					run = 1;
					while (i + run < n && p[i + run] >= 0x20 && p[i + run] < 0x80 &&
						   p[i + run] != '"' && p[i + run] != '\\')
						run++;
					buf_append(b, s + i, run);
					i += run;
					continue;
				}
		}
		i++;
	}
	buf_append(b, "\"", 1);
}
