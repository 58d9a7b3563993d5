/*
 * mock.c — tvdb.service_mode = 'mock': an offline parser for text, markdown
 * and HTML, and a deterministic embedder, so the whole pipeline runs with no
 * network and no keys.  The embedder hashes words and character trigrams
 * into the vector (feature hashing): the same text always gives the same
 * vector, and texts sharing words give nearby vectors.
 */
#include "stages/stages.h"

#include <math.h>

#include "common/hashfn.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/uuid.h"


static bool
starts_tag(const char *p, const char *end, const char *tag)
{
	size_t		n = strlen(tag);

	return (size_t) (end - p) > n && pg_strncasecmp(p, tag, n) == 0 &&
		(p[n] == '>' || p[n] == ' ' || p[n] == '/' || p[n] == '\t' || p[n] == '\n');
}

/* At most one blank line in a row, none at the ends, no trailing blanks. */
static char *
tidy_blank_lines(char *s)
{
	char	   *w = s;
	int			newlines = 0;

	for (char *r = s; *r; r++)
	{
		if (*r == '\n')
		{
			while (w > s && w[-1] == ' ')
				w--;
			newlines++;
			continue;
		}
		if (*r == ' ' && (w == s || w[-1] == '\n') && newlines == 0)
			continue;
		if (newlines > 0 && w > s)
		{
			*w++ = '\n';
			if (newlines > 1)
				*w++ = '\n';
		}
		newlines = 0;
		if (*r == ' ' && (w == s || w[-1] == '\n'))
			continue;
		*w++ = *r;
	}
	while (w > s && w[-1] == ' ')
		w--;
	*w = '\0';
	return s;
}

/* Rough HTML to markdown: headings, paragraphs, list items; other tags dropped. */
static char *
html_to_markdown(const char *data, size_t len)
{
	StringInfoData out;
	const char *p = data;
	const char *end = data + len;
	bool		skip = false;	/* inside <head>, <script> or <style> */

	initStringInfo(&out);
	while (p < end)
	{
		if (*p == '<')
		{
			const char *close = memchr(p, '>', end - p);
			const char *t = p + 1;
			bool		closing = t < end && *t == '/';

			if (close == NULL)
				break;
			if (closing)
				t++;
			if (starts_tag(t, end, "head") || starts_tag(t, end, "script") ||
				starts_tag(t, end, "style"))
				skip = !closing;
			else if (!closing && t + 1 < end && (t[0] == 'h' || t[0] == 'H') &&
					 t[1] >= '1' && t[1] <= '6')
			{
				appendStringInfoString(&out, "\n\n");
				for (int i = 0; i < t[1] - '0'; i++)
					appendStringInfoChar(&out, '#');
				appendStringInfoChar(&out, ' ');
			}
			else if (starts_tag(t, end, "p") || starts_tag(t, end, "div") ||
					 starts_tag(t, end, "br") || starts_tag(t, end, "table") ||
					 (closing && t[0] == 'h'))
				appendStringInfoString(&out, "\n\n");
			else if (!closing && starts_tag(t, end, "li"))
				appendStringInfoString(&out, "\n- ");
			p = close + 1;
			continue;
		}
		if (!skip)
		{
			if (*p == '&')
			{
				static const char *const ents[][2] = {
					{"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""},
					{"&#39;", "'"}, {"&nbsp;", " "},
				};
				int			i;

				for (i = 0; i < (int) lengthof(ents); i++)
				{
					size_t		n = strlen(ents[i][0]);

					if ((size_t) (end - p) >= n && strncmp(p, ents[i][0], n) == 0)
					{
						appendStringInfoString(&out, ents[i][1]);
						p += n;
						break;
					}
				}
				if (i < (int) lengthof(ents))
					continue;
			}
			/* collapse runs of blanks the HTML layout carried */
			if ((*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
			{
				if (out.len > 0 && out.data[out.len - 1] != ' ' && out.data[out.len - 1] != '\n')
					appendStringInfoChar(&out, ' ');
			}
			else
				appendStringInfoChar(&out, *p);
		}
		p++;
	}
	return tidy_blank_lines(out.data);
}

/* The markdown of a document, or NULL when the mock parser cannot read it. */
char *
tvdb_mock_markdown(const char *filename, const char *mime_type, const char *data, size_t len)
{
	if (memchr(data, '\0', len) != NULL || !pg_verifymbstr(data, len, true))
		return NULL;
	if (strcmp(mime_type, "text/html") == 0)
		return html_to_markdown(data, len);
	if (strncmp(mime_type, "text/", 5) == 0)
		return pnstrdup(data, len);
	return NULL;
}

static void
add_feature(float *v, int dims, const char *s, size_t n, float weight)
{
	uint32		h = hash_bytes((const unsigned char *) s, (int) n);

	v[h % dims] += (h & 0x80000000) ? -weight : weight;
}

void
tvdb_mock_embed(const char *text, size_t len, float *v, int dims)
{
	char		word[64];
	size_t		wlen = 0;
	double		norm = 0;

	memset(v, 0, sizeof(float) * dims);
	for (size_t i = 0; i <= len; i++)
	{
		unsigned char c = i < len ? (unsigned char) text[i] : ' ';

		if (isalnum(c) || c >= 0x80)
		{
			if (wlen < sizeof(word))
				word[wlen++] = (char) tolower(c);
			continue;
		}
		if (wlen > 0)
		{
			add_feature(v, dims, word, wlen, 1.0f);
			for (size_t k = 0; k + 3 <= wlen; k++)
				add_feature(v, dims, word + k, 3, 0.5f);
			wlen = 0;
		}
	}
	for (int d = 0; d < dims; d++)
		norm += (double) v[d] * v[d];
	if (norm == 0)
		v[0] = 1.0f;			/* no words: still a unit vector */
	else
		for (int d = 0; d < dims; d++)
			v[d] = (float) (v[d] / sqrt(norm));
}

/* ---- mock_parse: uploaded -> parse_queued -> parsed with the built-in parser ---- */

static List *
mock_parse_claim(const char *owner, int n, MemoryContext cxt)
{
	return tvdb_lease(&tvdb_stage_mock_parse, owner, n, cxt);
}

/*
 * Parse a leased job in uploaded with the built-in parser: uploaded ->
 * parse_queued -> parsed, with one ledger row for service ("mock" in mock
 * mode, "local" for what tvdb.parse_locally routes here), costing nothing.
 * A document it cannot read fails parse with the reason.
 */
void
tvdb_parse_builtin(const char *job, const char *owner, const char *service)
{
	static const Oid types[4] = {UUIDOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[4] = {DirectFunctionCall1(uuid_in, CStringGetDatum(job)),
	CStringGetTextDatum(owner), (Datum) 0, CStringGetTextDatum(service)};
	bool		isnull;
	bytea	   *content;
	char	   *mime_type;
	char	   *md;

	if (tvdb_spi_run("SELECT b.content, d.filename, d.mime_type FROM upload_pipeline.upload_jobs j "
					 "JOIN upload_pipeline.documents d ON d.document_id = j.document_id "
					 "JOIN upload_pipeline.blobs b ON b.document_id = d.document_id AND b.path = d.storage_path "
					 "WHERE j.job_id = $1 AND j.lease_owner = $2 AND j.status = 'uploaded'",
					 2, types, values, NULL, SPI_OK_SELECT) != 1)
		return;					/* no longer ours */
	content = DatumGetByteaPP(tvdb_spi_datum(0, 1, &isnull));
	mime_type = tvdb_spi_text(0, 3);
	md = tvdb_mock_markdown(tvdb_spi_text(0, 2), mime_type, VARDATA_ANY(content), VARSIZE_ANY_EXHDR(content));
	if (md == NULL && tvdb_service_mode == TVDB_MODE_HYBRID && strcmp(service, "mock") == 0)
	{
		/* standing in for LlamaParse, which reads what the mock cannot: wait for it */
		values[2] = CStringGetTextDatum(psprintf("the built-in parser cannot read this %s document: "
												 "it waits for LlamaParse", mime_type));
		tvdb_spi_run("SELECT tvdb._release($1, $2, interval '1 minute', $3::text, 'parse')",
					 3, types, values, NULL, SPI_OK_SELECT);
		return;
	}
	tvdb_spi_run("UPDATE upload_pipeline.upload_jobs SET parse_job_id = $4 || '-' || job_id "
				 "WHERE job_id = $1 AND lease_owner = $2 AND status = 'uploaded'", 4, types, values, NULL,
				 SPI_OK_UPDATE);
	tvdb_spi_run("SELECT tvdb._advance($1, $2, 'uploaded', 'parse_queued', "
				 "jsonb_build_object('parse_job_id', $4 || '-' || $1::text), true)", 4, types, values, NULL,
				 SPI_OK_SELECT);
	if (md == NULL)
	{
		values[2] = CStringGetTextDatum(psprintf("the built-in parser reads UTF-8 text, markdown and HTML; "
												 "this %s document is not that", mime_type));
		tvdb_spi_run("SELECT tvdb._record_usage($4, 'parse', $1, NULL, 415, 0, error => $3::text)",
					 4, types, values, NULL, SPI_OK_SELECT);
		tvdb_spi_run("SELECT tvdb._advance($1, $2, 'parse_queued', 'failed_parse', "
					 "jsonb_build_object('error', $3::text, 'class', 'permanent'))",
					 3, types, values, NULL, SPI_OK_SELECT);
		return;
	}
	values[2] = CStringGetTextDatum(md);
	tvdb_spi_run("SELECT tvdb._record_usage($4, 'parse', $1, NULL, 200, 0, pages => 1)", 4, types, values,
				 NULL, SPI_OK_SELECT);
	tvdb_spi_run("SELECT tvdb._store_parsed($1, $2, $3, jsonb_build_object('via', $4::text))", 4, types, values,
				 NULL, SPI_OK_SELECT);
}

static void
mock_parse_run(List *works)
{
	ListCell   *lc;

	foreach(lc, works)
		tvdb_parse_builtin(((TvdbWork *) lfirst(lc))->jobs[0], ((TvdbWork *) lfirst(lc))->owner, "mock");
}

static bool
mock_parse_runs(void)
{
	return tvdb_mock_runs(TVDB_SERVICE_LLAMAPARSE);
}

const TvdbStage tvdb_stage_mock_parse = {
	.name = "mock_parse",
	.claims = TVDB_UPLOADED,
	.batch = LOCAL_BATCH,
	.service = TVDB_SERVICE_MOCK,
	.fails_to = TVDB_FAILED_PARSE,
	.operation = "parse",
	.runs = mock_parse_runs,
	.claim = mock_parse_claim,
	.run = mock_parse_run,
};
