/*
 * xact.h — the worker's transactions: the worker loop owns them, and every
 * piece of SQL work runs inside one of these.  No transaction is ever open
 * while a request is in flight.
 */
#ifndef TVDB_XACT_H
#define TVDB_XACT_H

#include "tvdb.h"

#include "utils/elog.h"

/*
 * Run fn(arg) in a transaction of its own, or, between tvdb_batch_begin and
 * tvdb_batch_end, in a subtransaction of the batch's.  An error is logged
 * and rolled back and false returned; *err (if given) gets a copy of it.
 */
extern bool tvdb_in_xact(const char *what, void (*fn) (void *), void *arg, ErrorData **err);

/* One transaction for the answers that arrive together; false if it did not commit. */
extern void tvdb_batch_begin(const char *what);
extern bool tvdb_batch_end(void);

#endif							/* TVDB_XACT_H */
