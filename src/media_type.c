/*
 * media_type.c — what may name a document's type and file.  Both end up in
 * the multipart upload to LlamaParse (Content-Type and the filename of the
 * Content-Disposition), so a CR or LF in either would let a caller write
 * headers or body of that request.  A media type must be one as RFC 9110
 * section 8.3.1 has it: type "/" subtype, then "; name=value" parameters,
 * a value a token or a quoted string.  A filename must hold no control
 * character and no path separator.
 */
#include "tvdb.h"

#define MAX_MEDIA_TYPE_BYTES 255

static bool
tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		(c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Skip a token; NULL when there is none. */
static const char *
token(const char *p)
{
	const char *start = p;

	while (tchar((unsigned char) *p))
		p++;
	return p == start ? NULL : p;
}

/* Skip a quoted string; NULL when it is not one. */
static const char *
quoted_string(const char *p)
{
	if (*p++ != '"')
		return NULL;
	for (;;)
	{
		unsigned char c = (unsigned char) *p;

		if (c == '"')
			return p + 1;
		if (c == '\\')
		{
			c = (unsigned char) p[1];
			if (!(c == '\t' || (c >= 0x20 && c != 0x7f)))
				return NULL;
			p += 2;
		}
		else if (c == '\t' || (c >= 0x20 && c != 0x7f))
			p++;
		else
			return NULL;		/* a control character, or the end */
	}
}

static const char *
ows(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* NULL if mime_type is a media type as RFC 9110 defines it, else what is wrong. */
const char *
tvdb_media_type_problem(const char *mime_type)
{
	const char *p = mime_type;

	if (strlen(mime_type) > MAX_MEDIA_TYPE_BYTES)
		return psprintf("it is longer than %d bytes", MAX_MEDIA_TYPE_BYTES);
	if ((p = token(p)) == NULL || *p++ != '/' || (p = token(p)) == NULL)
		return "it is not type/subtype, each a token";
	for (;;)
	{
		p = ows(p);
		if (*p == '\0')
			return NULL;
		if (*p++ != ';')
			return "only \"; name=value\" parameters may follow type/subtype";
		p = ows(p);
		if ((p = token(p)) == NULL || *p++ != '=')
			return "a parameter is not name=value with a token for its name";
		p = *p == '"' ? quoted_string(p) : token(p);
		if (p == NULL)
			return "a parameter's value is neither a token nor a quoted string (control characters are never allowed)";
	}
}

/* NULL if filename may name a document, else what is wrong. */
const char *
tvdb_filename_problem(const char *filename)
{
	for (const unsigned char *p = (const unsigned char *) filename; *p; p++)
	{
		if (*p < 0x20 || *p == 0x7f)
			return "it holds a control character (such as CR or LF)";
		if (*p == '/' || *p == '\\')
			return "it holds a path separator (/ or \\)";
	}
	return NULL;
}
