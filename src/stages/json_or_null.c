/*
 * json_or_null.c — tvdb._json_or_null(text): the body of a service's answer as
 * jsonb, or NULL when it is not JSON.  Checked with PostgreSQL's JSON parser,
 * which reports a syntax error instead of raising one: no subtransaction per
 * answer, which a PL/pgSQL EXCEPTION block would cost.
 */
#include "tvdb.h"

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

PG_FUNCTION_INFO_V1(tvdb_json_or_null);

Datum
tvdb_json_or_null(PG_FUNCTION_ARGS)
{
	text	   *body = PG_GETARG_TEXT_PP(0);
	JsonLexContext *lex;

	/* de-escaping strings as well catches what jsonb refuses (\u0000, bad surrogates) */
	lex = makeJsonLexContextCstringLen(VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body),
									   GetDatabaseEncoding(), true);
	if (pg_parse_json(lex, &nullSemAction) != JSON_SUCCESS)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(text_to_cstring(body))));
}
