/*
 * databases.c — which databases the background workers serve: the names in
 * tvdb.database, a list read as PostgreSQL reads its own lists of names
 * (SplitGUCList: comma-separated, whitespace around a name ignored, double
 * quotes around a name with a comma, a space or a quote in it, no case
 * folding).  The launcher, the check of the setting, CREATE EXTENSION's
 * warning and tvdb.jobs' waiting_for all read it here, so they agree.
 */
#include "tvdb.h"

#include "miscadmin.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/varlena.h"

PG_FUNCTION_INFO_V1(tvdb_served_databases);
PG_FUNCTION_INFO_V1(tvdb_database_served);

bool		tvdb_preloaded = false;

/*
 * What is wrong with a tvdb.database value, or NULL; *names (when not NULL)
 * gets its names, each once, in the order given.
 */
char *
tvdb_database_list_problem(const char *value, List **names)
{
	char	   *copy = pstrdup(value ? value : "");
	List	   *raw;
	List	   *result = NIL;
	ListCell   *lc;

	if (names != NULL)
		*names = NIL;
	if (!SplitGUCList(copy, ',', &raw))
		return pstrdup("it is not a list of database names: put a name that holds a comma, a space or a quote "
					   "in double quotes, and double a quote inside one");
	foreach(lc, raw)
	{
		char	   *name = lfirst(lc);

		if (name[0] == '\0')
			return pstrdup("it holds an empty name");
		if (strlen(name) >= NAMEDATALEN)
			return psprintf("\"%s\" is longer than a database name can be (%d bytes)", name, NAMEDATALEN - 1);
		if (!list_member(result, makeString(name)))
			result = lappend(result, makeString(name));
	}
	if (names != NULL)
		*names = result;
	return NULL;
}

/* The databases tvdb.database names (each once); none when it is invalid. */
List *
tvdb_database_list(void)
{
	List	   *names;

	if (tvdb_database_list_problem(tvdb_database, &names) != NULL)
		return NIL;
	return names;
}

/* Does a worker serve this database: preloaded, workers, and listed? */
bool
tvdb_database_is_served(const char *name)
{
	ListCell   *lc;

	if (!tvdb_preloaded || IsBinaryUpgrade || tvdb_workers == 0)
		return false;
	foreach(lc, tvdb_database_list())
		if (strcmp(strVal(lfirst(lc)), name) == 0)
			return true;
	return false;
}

/* tvdb._served_databases() RETURNS text[]: the names in tvdb.database. */
Datum
tvdb_served_databases(PG_FUNCTION_ARGS)
{
	List	   *names = tvdb_database_list();
	Datum	   *elems = palloc(sizeof(Datum) * (list_length(names) + 1));
	int			n = 0;
	ListCell   *lc;

	foreach(lc, names)
		elems[n++] = CStringGetTextDatum(strVal(lfirst(lc)));
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * tvdb._database_served() RETURNS boolean: will a worker serve this
 * database (tvdb preloaded, tvdb.workers > 0, and it is in tvdb.database)?
 */
Datum
tvdb_database_served(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(tvdb_database_is_served(get_database_name(MyDatabaseId)));
}
