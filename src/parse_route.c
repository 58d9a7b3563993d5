/*
 * parse_route.c — which parser reads a document.  LlamaParse reads the file
 * types of its official client's list (run-llama/llama-cloud-py,
 * src/llama_cloud/types/llama_parse_supported_file_extensions.py), known by
 * the file name's extension; plain text is not among them.  The content
 * types named in tvdb.parse_locally are read by tvdb's built-in parser
 * instead (no upload, no cost).  Anything else is refused at once, with a
 * reason; so is a file larger than LlamaParse takes (512 MB, "Maximum file
 * size" in developers.llamaindex.ai/llamaparse/general/limitations).
 */
#include "tvdb.h"

#include "funcapi.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(tvdb_parse_route_sql);

static const char *const llamaparse_extensions[] = {
	".pdf", ".abw", ".awt", ".cgm", ".cwk", ".doc", ".docm", ".docx", ".dot", ".dotm", ".dotx",
	".fodg", ".fodp", ".fopd", ".fodt", ".fb2", ".hwp", ".lwp", ".mcw", ".mw", ".mwd", ".odf",
	".odt", ".otg", ".ott", ".pages", ".pbd", ".psw", ".rtf", ".sda", ".sdd", ".sdp", ".sdw",
	".sgl", ".std", ".stw", ".sxd", ".sxg", ".sxm", ".sxw", ".uof", ".uop", ".uot", ".vor",
	".wpd", ".wps", ".wpt", ".wri", ".wn", ".xml", ".zabw", ".key", ".odp", ".odg", ".otp",
	".pot", ".potm", ".potx", ".ppt", ".pptm", ".pptx", ".sti", ".sxi", ".vsd", ".vsdm",
	".vsdx", ".vdx", ".bmp", ".gif", ".jpg", ".jpeg", ".png", ".svg", ".tif", ".tiff", ".webp",
	".htm", ".html", ".xhtm", ".csv", ".dbf", ".dif", ".et", ".eth", ".fods", ".numbers",
	".ods", ".ots", ".prn", ".qpw", ".slk", ".stc", ".sxc", ".sylk", ".tsv", ".uos1", ".uos2",
	".uos", ".wb1", ".wb2", ".wb3", ".wk1", ".wk2", ".wk3", ".wk4", ".wks", ".wq1", ".wq2",
	".xlr", ".xls", ".xlsb", ".xlsm", ".xlsx", ".xlw", ".azw", ".azw3", ".azw4", ".cb7",
	".cbc", ".cbr", ".cbz", ".chm", ".djvu", ".epub", ".fbz", ".htmlz", ".lit", ".lrf", ".md",
	".mobi", ".pdb", ".pml", ".prc", ".rb", ".snb", ".tcr", ".txtz", ".m4a", ".mp3", ".mp4",
	".mpeg", ".mpga", ".wav", ".webm"
};

/* The content type without parameters, lower-cased. */
static char *
bare_type(const char *mime)
{
	char	   *t = pnstrdup(mime, strcspn(mime, "; \t"));

	for (char *p = t; *p; p++)
		*p = pg_tolower((unsigned char) *p);
	return t;
}

/* Is type one of the comma-separated list's? */
static bool
in_type_list(const char *list, const char *type)
{
	const char *p = list;

	while (p != NULL && *p != '\0')
	{
		size_t		len;

		while (*p == ' ' || *p == ',')
			p++;
		len = strcspn(p, ", ");
		if (len > 0 && len == strlen(type) && pg_strncasecmp(p, type, len) == 0)
			return true;
		p += len;
	}
	return false;
}

static const char *
extension_of(const char *filename)
{
	const char *dot = strrchr(filename, '.');

	return (dot != NULL && dot[1] != '\0' && strchr(dot, '/') == NULL) ? dot : NULL;
}

TvdbParseRoute
tvdb_parse_route(const char *filename, const char *mime_type, int64 size_bytes, char **reason)
{
	char	   *type = bare_type(mime_type);
	const char *ext = extension_of(filename);

	*reason = NULL;
	if (in_type_list(tvdb_parse_locally, type))
		return TVDB_ROUTE_LOCAL;
	for (int i = 0; ext != NULL && i < (int) lengthof(llamaparse_extensions); i++)
		if (pg_strcasecmp(ext, llamaparse_extensions[i]) == 0)
		{
			if (size_bytes <= tvdb_llamaparse_max_file_bytes)
				return TVDB_ROUTE_LLAMAPARSE;
			*reason = psprintf("the file is %lld bytes; LlamaParse takes files up to %lld bytes "
							   "(tvdb.llamaparse_max_file_size)",
							   (long long) size_bytes, (long long) tvdb_llamaparse_max_file_bytes);
			return TVDB_ROUTE_REFUSED;
		}
	*reason = psprintf("no parser reads this document: LlamaParse reads files by extension and does not take %s%s%s, "
					   "and %s is not among the types tvdb.parse_locally has the built-in parser read (%s)",
					   ext ? "\"" : "", ext ? ext : "files without an extension", ext ? "\" files" : "",
					   type, tvdb_parse_locally);
	return TVDB_ROUTE_REFUSED;
}

/* What tvdb.parse_locally may name: text types, all the built-in parser reads. */
char *
tvdb_parse_locally_problem(const char *list)
{
	const char *p = list;

	while (p != NULL && *p != '\0')
	{
		size_t		len;
		char	   *item;

		while (*p == ' ' || *p == ',')
			p++;
		len = strcspn(p, ", ");
		if (len == 0)
			break;
		item = pnstrdup(p, len);
		if (pg_strncasecmp(item, "text/", 5) != 0 || len == 5 || strchr(item + 5, '/') != NULL)
			return psprintf("\"%s\" is not a text/... content type; the built-in parser reads text, markdown and HTML only", item);
		p += len;
	}
	return NULL;
}

/*
 * tvdb.parse_route(filename text, mime_type text, size_bytes bigint,
 *                  OUT route text, OUT reason text): where the worker
 * would send such a document now ('llamaparse', 'local' or 'refused').
 */
Datum
tvdb_parse_route_sql(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {"llamaparse", "local", "refused"};
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	char	   *reason;
	TvdbParseRoute route;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "tvdb.parse_route must return a record");
	route = tvdb_parse_route(text_to_cstring(PG_GETARG_TEXT_PP(0)), text_to_cstring(PG_GETARG_TEXT_PP(1)),
							 PG_GETARG_INT64(2), &reason);
	values[0] = CStringGetTextDatum(names[route]);
	nulls[1] = reason == NULL;
	values[1] = reason ? CStringGetTextDatum(reason) : (Datum) 0;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
