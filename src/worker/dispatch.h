/*
 * dispatch.h — what the worker loop asks of the dispatcher.
 */
#ifndef TVDB_DISPATCH_H
#define TVDB_DISPATCH_H

#include "tvdb.h"

extern void tvdb_dispatch_init(void);
extern bool tvdb_dispatch(const char *owner);
extern void tvdb_dispatch_alerts(void);
extern void tvdb_record_answers(List *finished);

#endif							/* TVDB_DISPATCH_H */
