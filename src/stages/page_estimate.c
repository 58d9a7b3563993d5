/*
 * page_estimate.c — how many pages LlamaParse is expected to bill for a
 * file, before it is sent (the ledger's estimate, and what a budget
 * reserves).  A PDF whose page objects can be read without decompressing
 * anything ("/Type /Page", not "/Pages") is counted; anything else is one
 * page per TVDB_BYTES_PER_PAGE bytes, at least one: generous for text and
 * office files, so that a budget errs on the side of stopping early.
 */
#include "tvdb.h"

#include "fmgr.h"

#define TVDB_BYTES_PER_PAGE 20000

PG_FUNCTION_INFO_V1(tvdb_estimate_pages_sql);

static int
pdf_pages(const char *data, size_t len)
{
	int			pages = 0;

	for (size_t i = 0; i + 10 < len; i++)
	{
		size_t		j;

		if (data[i] != '/' || memcmp(data + i, "/Type", 5) != 0)
			continue;
		j = i + 5;
		while (j < len && (data[j] == ' ' || data[j] == '\r' || data[j] == '\n' || data[j] == '\t'))
			j++;
		if (j + 5 <= len && memcmp(data + j, "/Page", 5) == 0 &&
			(j + 5 == len || !((data[j + 5] >= 'a' && data[j + 5] <= 'z') ||
							   (data[j + 5] >= 'A' && data[j + 5] <= 'Z'))))
			pages++;
	}
	return pages;
}

int
tvdb_estimate_pages(const char *data, size_t len)
{
	int			pages = 0;

	if (len >= 5 && memcmp(data, "%PDF-", 5) == 0)
		pages = pdf_pages(data, len);
	if (pages == 0)
		pages = (int) Min((len + TVDB_BYTES_PER_PAGE - 1) / TVDB_BYTES_PER_PAGE, (size_t) PG_INT32_MAX);
	return Max(pages, 1);
}

/* tvdb._estimate_pages(bytea) RETURNS integer */
Datum
tvdb_estimate_pages_sql(PG_FUNCTION_ARGS)
{
	bytea	   *b = PG_GETARG_BYTEA_PP(0);

	PG_RETURN_INT32(tvdb_estimate_pages(VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b)));
}
