/*
 * ledger.h — each request's usage ledger row, written before it is sent
 * and completed by the SQL that records its answer (ledger.c).
 */
#ifndef TVDB_LEDGER_H
#define TVDB_LEDGER_H

#include "worker/stage.h"

extern const char *tvdb_service_name(TvdbService s);
extern bool tvdb_ledger_sent(TvdbWork *w);
extern void tvdb_ledger_unsent(TvdbWork *w);
extern void tvdb_ledger_recording(List *works);
extern void tvdb_ledger_current(TvdbWork *w);

#endif							/* TVDB_LEDGER_H */
