/*
 * tvdb.h — what every C file of the server module shares: the job statuses
 * and the edge table, tvdb's own SQLSTATEs, the settings and the one SPI
 * helper.  Never includes libcurl: application backends use it.
 */
#ifndef TVDB_H
#define TVDB_H

#include "postgres.h"
#include "fmgr.h"
#include "executor/spi.h"
#include "nodes/pg_list.h"
#include "utils/jsonb.h"
#include "datatype/timestamp.h"
#include "utils/snapshot.h"

#include "guc.h"

/*
 * tvdb's own SQLSTATEs, class "TV" (implementation-defined classes start
 * with I-Z).  Listed in the README; never reuse or renumber.
 */
#define ERRCODE_TVDB_INVALID_TRANSITION MAKE_SQLSTATE('T','V','0','0','1')
#define ERRCODE_TVDB_UNKNOWN_STATUS     MAKE_SQLSTATE('T','V','0','0','2')
#define ERRCODE_TVDB_TRANSITION_CONFLICT MAKE_SQLSTATE('T','V','0','0','3')
#define ERRCODE_TVDB_JOB_NOT_FOUND      MAKE_SQLSTATE('T','V','0','0','4')
#define ERRCODE_TVDB_SERVICE_UNAVAILABLE MAKE_SQLSTATE('T','V','0','0','5')
#define ERRCODE_TVDB_BUDGET_EXHAUSTED   MAKE_SQLSTATE('T','V','0','0','6')

/*
 * The job statuses: the pipeline in order, then the failure states, then
 * cancelled (last, so that no status already stored changes its number).
 */
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
	TVDB_CANCELLED,
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
extern bool tvdb_status_is_failure(TvdbStatus s);
extern bool tvdb_status_is_open(TvdbStatus s);
extern TvdbStatus tvdb_status_lookup(const char *name);
extern TvdbStatus tvdb_status_parse(const char *name); /* errors if unknown */
extern TvdbStatus tvdb_status_value(Datum d, bool isnull);	/* errors if NULL or unknown */
extern const TvdbEdge *tvdb_edge_lookup(TvdbStatus from, TvdbStatus to);
extern void tvdb_report_invalid_transition(TvdbStatus from, TvdbStatus to);
extern int	tvdb_path_edges(TvdbStatus from, TvdbStatus to, const TvdbStatus *via, int nvia,
							const TvdbEdge **edges);
struct TriggerData;
extern int	tvdb_trigger_column(struct TriggerData *trigdata, const char *name);
extern Datum tvdb_trigger_value(struct TriggerData *trigdata, HeapTuple tuple, const char *name,
								bool *isnull);

/* backend/restore.c: rows pg_restore loads are checked, not re-stamped */
extern bool tvdb_restoring(void);
extern HeapTuple tvdb_restored_job(struct TriggerData *td, HeapTuple tuple, TvdbStatus status);

/* backend/details.c: a status change whose events carry the caller's details */
extern uint64 tvdb_update_with_details(const char *sql, int nargs, const Oid *types, Datum *args,
									   const char *nulls, const Datum *jobs, const Datum *details,
									   int n, int expect);
extern uint64 tvdb_update_with_path(const char *sql, int nargs, const Oid *types, Datum *args,
									const char *nulls, const Datum *jobs, const Datum *details,
									int n, const TvdbStatus *via, int nvia, int expect);
extern Datum tvdb_pending_detail(Datum job_id);
extern int	tvdb_pending_via(Datum job_id, const TvdbStatus **via);
#define TVDB_MAX_VIA 4


/* backend/job_queue.c: the open jobs, beside the history (the triggers keep it) */
typedef struct TvdbQueueChanges TvdbQueueChanges;
extern TvdbQueueChanges *tvdb_queue_changes(int cap);
extern void tvdb_queue_put(TvdbQueueChanges *q, Datum document_id, Datum job_id, TvdbStatus status,
						   TimestampTz status_changed_at, Datum next_poll_at, bool poll_null,
						   Datum lease_expires_at, bool lease_null);
extern void tvdb_queue_drop(TvdbQueueChanges *q, Datum document_id, Datum job_id);
extern void tvdb_queue_count(TvdbQueueChanges *q, TvdbStatus finished, int delta);
extern void tvdb_queue_flush(TvdbQueueChanges *q);

/* backend/hmac.c */
extern List *tvdb_configured_webhook_secrets(void);
extern bool tvdb_verify_signature(bytea *body, Jsonb *headers, List *secrets);
extern void tvdb_hmac(const char *key, int keylen, const char *const *parts,
					  const int *lens, int nparts, uint8 *out);
extern char *tvdb_secret_key(const char *secret, int *len);

/* backend/callback.c: the callback URL handed to LlamaParse, and its token */
#define TVDB_CALLBACK_SUFFIX_LEN 91 /* "?job=" uuid "&token=" 43 base64url chars */
#define TVDB_CALLBACK_URL_MAX 200	/* LlamaParse: "less than 200 characters" */
extern char *tvdb_callback_url_problem(const char *url, int rules);
extern char *tvdb_callback_url(const char *job);
extern bool tvdb_callback_token_valid(const char *job, const char *token, List *secrets);

/* wakeup.c: workers sleep on their latch; a commit that made work wakes them */
extern Size tvdb_wakeup_shmem_size(void);
extern void tvdb_wakeup_shmem_attach(void);
extern void tvdb_wakeup_register(int slot);
extern bool tvdb_wakeup_slot_taken(int slot);
extern void tvdb_wakeup_on_commit(void);

/* spi.c: one plan cache for every statement tvdb runs */
extern SPIPlanPtr tvdb_plan(const char *sql, int nargs, const Oid *types);
extern uint64 tvdb_spi_run(const char *sql, int nargs, const Oid *types, Datum *values,
						   const char *nulls, int expect);
extern uint64 tvdb_spi_run_in_snapshot(const char *sql, int nargs, const Oid *types, Datum *values,
									   const char *nulls, Snapshot snapshot, int expect);
extern void tvdb_spi_connect(void);
extern void tvdb_spi_finish(void);
extern char *tvdb_spi_text(uint64 row, int col);
extern Datum tvdb_spi_datum(uint64 row, int col, bool *isnull);
extern Datum tvdb_array(Datum *items, bool *nulls, int n, Oid elemtype);
extern Datum tvdb_uuid_copy(Datum d);

/* backend/hot.c: the statements run for every job that moves, planned once */
#define TVDB_HOT_MAX_ARGS 11
typedef enum TvdbHot
{
	TVDB_HOT_TAKE,
	TVDB_HOT_CLAIM,
	TVDB_HOT_MOVE,
	TVDB_HOT_MOVE_PARSED,
	TVDB_HOT_EVENTS,
	TVDB_HOT_QUEUE_PUT,
	TVDB_HOT_QUEUE_DROP,
	TVDB_HOT_COUNT,
	TVDB_NUM_HOT
} TvdbHot;
typedef struct TvdbHotStatement
{
	const char *name;
	const char *sql;
	int			nargs;
	Oid			types[TVDB_HOT_MAX_ARGS];
} TvdbHotStatement;
extern const TvdbHotStatement tvdb_hot[TVDB_NUM_HOT];
extern bool tvdb_is_hot(const char *sql);

/* circuit.c: per service, shared by all workers: circuit breaker and token buckets */
#define TVDB_CIRCUIT_SERVICES 2
#define TVDB_CIRCUIT_LLAMAPARSE 0
#define TVDB_CIRCUIT_OPENAI 1
#define TVDB_CIRCUIT_NO_CHANGE (-1)
typedef enum
{
	TVDB_CIRCUIT_CLOSED,
	TVDB_CIRCUIT_OPEN,
	TVDB_CIRCUIT_HALF_OPEN,
	TVDB_CIRCUIT_BLOCKED
} TvdbCircuitState;
extern Size tvdb_circuit_shmem_size(void);
extern void tvdb_circuit_shmem_attach(void);
extern int	tvdb_circuit_allowance(int service, bool limited, int wanted, long *due_ms, bool *probe);
extern bool tvdb_circuit_take(int service, bool limited, int64 tokens);
extern void tvdb_circuit_probe_unused(int service);
extern bool tvdb_circuit_usable(int service);
/* what a service says is left of its rate limits; -1: not said */
typedef struct TvdbRemaining
{
	long		requests;
	long		tokens;
	long		requests_reset_ms;
	long		tokens_reset_ms;
} TvdbRemaining;
extern void tvdb_circuit_remaining(int service, const TvdbRemaining *left);
extern int	tvdb_circuit_answer(int service, const char *kind, long retry_after_ms, const char *error);
extern bool tvdb_circuit_reset(int service, bool blocked_only);
extern const char *tvdb_circuit_service_name(int service);
extern int	tvdb_circuit_service(const char *name);

/* retry.c: the retry policy */
extern int64 tvdb_retry_delay_ms(int tries, int64 retry_after_ms);

/* parse_route.c: which parser reads a document */
typedef enum
{
	TVDB_ROUTE_LLAMAPARSE,
	TVDB_ROUTE_LOCAL,
	TVDB_ROUTE_REFUSED
} TvdbParseRoute;
/* what may name a document's type and file (media_type.c): NULL, or what is wrong */
extern const char *tvdb_media_type_problem(const char *mime_type);
extern const char *tvdb_filename_problem(const char *filename);
/* the pages LlamaParse is expected to bill for a file (page_estimate.c) */
extern int	tvdb_estimate_pages(const char *data, size_t len);
extern TvdbParseRoute tvdb_parse_route(const char *filename, const char *mime_type, int64 size_bytes,
									   char **reason);
extern char *tvdb_parse_locally_problem(const char *list);

/* llamaparse_options.c: tvdb.llamaparse_options checked against the documented names */
extern char *tvdb_llamaparse_options_problem(const char *json, int api);

/* json_fields.c: string fields of a JSON object ("name" or "parent.child") */
extern bool tvdb_json_fields(const char *body, size_t len, const char *const *keys,
							 char **values, int nkeys);

/* backend/query_ledger.c: a query's ledger row, committed before its request goes */
extern int64 tvdb_query_reserve(double estimate, const char *model, const char *owner, char **refusal);

/* backend/search.c: v scaled to unit length in place; false if it has none */
extern bool tvdb_normalise(float *v, int n);

/* databases.c: the databases the workers serve (tvdb.database) */
extern bool tvdb_preloaded;		/* set by _PG_init in the postmaster */
extern char *tvdb_database_list_problem(const char *value, List **names);
extern List *tvdb_database_list(void);
extern bool tvdb_database_is_served(const char *name);

/* worker/launcher.c: registered from _PG_init when preloaded */
extern void tvdb_register_workers(void);
extern int	tvdb_worker_slots(void);

#endif							/* TVDB_H */
