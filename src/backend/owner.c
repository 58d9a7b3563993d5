/*
 * owner.c — whose document is it.  Every document records the role that
 * uploaded it; with tvdb.isolate_documents on, a role sees (and cancels,
 * retries, reads the chunks of) only documents of roles it has the
 * privileges of.  The caller is the role the session acts as (its login
 * role, or the one it SET ROLE to): the SQL API runs SECURITY DEFINER, so
 * the current user inside it is the extension's owner, never the caller.
 */
#include "tvdb.h"

#include "catalog/pg_authid.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(tvdb_caller);
PG_FUNCTION_INFO_V1(tvdb_may_see);

/* tvdb._caller() → name: the role the session acts as. */
Datum
tvdb_caller(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(DirectFunctionCall1(namein,
										CStringGetDatum(GetUserNameFromId(GetOuterUserId(), false))));
}

/*
 * tvdb._may_see(owner name) → boolean: may the caller see a document of
 * this owner?  Always, unless tvdb.isolate_documents is on; then only a
 * superuser, a member of tvdb_monitor, or a role with the owner's
 * privileges.  An owner role that no longer exists is seen by superusers
 * and monitors only.
 */
Datum
tvdb_may_see(PG_FUNCTION_ARGS)
{
	Oid			caller = GetOuterUserId();
	Oid			owner;
	Oid			monitor;

	if (!tvdb_isolate_documents || superuser_arg(caller))
		PG_RETURN_BOOL(true);
	monitor = get_role_oid("tvdb_monitor", true);
	if (OidIsValid(monitor) && has_privs_of_role(caller, monitor))
		PG_RETURN_BOOL(true);
	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(false);
	owner = get_role_oid(NameStr(*PG_GETARG_NAME(0)), true);
	PG_RETURN_BOOL(OidIsValid(owner) && has_privs_of_role(caller, owner));
}
