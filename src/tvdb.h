/*
 * tvdb.h — declarations shared by the tvdb extension's C files:
 * the job statuses, the transition table, tvdb's own SQLSTATEs and GUCs.
 */
#ifndef TVDB_H
#define TVDB_H

#include "postgres.h"
#include "fmgr.h"
#include "executor/spi.h"
#include "nodes/pg_list.h"
#include "utils/jsonb.h"

/*
 * tvdb's own SQLSTATEs, class "TV" (implementation-defined classes start
 * with I-Z).  Listed in the README; never reuse or renumber.
 */
#define ERRCODE_TVDB_INVALID_TRANSITION MAKE_SQLSTATE('T','V','0','0','1')
#define ERRCODE_TVDB_UNKNOWN_STATUS     MAKE_SQLSTATE('T','V','0','0','2')
#define ERRCODE_TVDB_TRANSITION_CONFLICT MAKE_SQLSTATE('T','V','0','0','3')
#define ERRCODE_TVDB_JOB_NOT_FOUND      MAKE_SQLSTATE('T','V','0','0','4')

/* The job statuses, in pipeline order; the failure states come last. */
typedef enum TvdbStatus
{
	TVDB_UPLOADED = 0,
	TVDB_PARSE_QUEUED,
	TVDB_PARSED,
	TVDB_CHUNKING,
	TVDB_CHUNKS_STORED,
	TVDB_EMBEDDING_QUEUED,
	TVDB_EMBEDDING_IN_PROGRESS,
	TVDB_EMBEDDINGS_STORED,
	TVDB_COMPLETE,
	TVDB_FAILED_PARSE,
	TVDB_FAILED_CHUNKING,
	TVDB_FAILED_EMBEDDING,
	TVDB_NUM_STATUSES
} TvdbStatus;

#define TVDB_INITIAL_STATUS TVDB_UPLOADED
#define TVDB_NO_STATUS ((TvdbStatus) -1)

/* One allowed edge and the event it writes. */
typedef struct TvdbEdge
{
	TvdbStatus	from;			/* TVDB_NO_STATUS: job creation */
	TvdbStatus	to;
	const char *type;			/* stage_started / stage_done / stage_error */
	const char *severity;		/* info / warn / error */
	const char *code;			/* <stage>_<what> */
	bool		is_retry;		/* counts as a new attempt */
} TvdbEdge;

/* statemachine.c */
extern const char *tvdb_status_name(TvdbStatus s);
extern TvdbStatus tvdb_status_lookup(const char *name);
extern TvdbStatus tvdb_status_parse(const char *name); /* errors if unknown */
extern const TvdbEdge *tvdb_edge_lookup(TvdbStatus from, TvdbStatus to);
extern void tvdb_report_invalid_transition(TvdbStatus from, TvdbStatus to);
struct TriggerData;
extern int	tvdb_trigger_column(struct TriggerData *trigdata, const char *name);

/* events.c: an UPDATE of jobs whose events carry the caller's details */
extern int	tvdb_execute_with_details(SPIPlanPtr plan, Datum *args, const char *nulls,
									  const Datum *jobs, const Datum *details, int n);

/* api.c: prepare a statement once per backend and keep it */
extern SPIPlanPtr tvdb_keep_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types);

/* hmac.c */
extern List *tvdb_configured_webhook_secrets(void);
extern bool tvdb_verify_signature(bytea *body, Jsonb *headers, List *secrets);

/* tvdb.c: GUCs */
extern int	tvdb_max_upload_bytes;
extern char *tvdb_webhook_secrets;
extern int	tvdb_webhook_tolerance;
extern int	tvdb_webhook_max_bytes;

#endif							/* TVDB_H */
