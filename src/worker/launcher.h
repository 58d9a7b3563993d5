/*
 * launcher.h — what the launcher hands each worker it starts (in
 * bgw_extra): the database to serve, by oid, and its name for messages.
 */
#ifndef TVDB_LAUNCHER_H
#define TVDB_LAUNCHER_H

#include "postgres.h"

typedef struct TvdbWorkerTarget
{
	Oid			database;
	char		name[NAMEDATALEN];
} TvdbWorkerTarget;

StaticAssertDecl(sizeof(TvdbWorkerTarget) <= 128, "TvdbWorkerTarget must fit in bgw_extra");

#endif							/* TVDB_LAUNCHER_H */
