/*
 * stage.h — what a pipeline stage is, for the dispatcher (dispatch.c) that
 * walks the table of them (stages/table.c), the two hooks every stage goes
 * through (hooks.c), and the stages themselves (src/stages/).
 *
 * A stage claims work from one status, in a transaction the worker opens:
 * local stages do their work in that same transaction; remote stages build
 * one request per unit of work, which the worker starts after the claim has
 * committed, and record each answer later in a (sub)transaction of the
 * worker's.  A stage never opens a transaction or starts a request itself.
 */
#ifndef TVDB_STAGE_H
#define TVDB_STAGE_H

#include "tvdb.h"

#include "worker/http_driver.h"

#define UUID_TEXT_LEN 36

/* Who does a stage's work. */
typedef enum TvdbService
{
	TVDB_SERVICE_LOCAL,			/* the worker itself (chunking) */
	TVDB_SERVICE_MOCK,			/* the built-in parser and embedder */
	TVDB_SERVICE_LLAMAPARSE,
	TVDB_SERVICE_OPENAI
} TvdbService;

/* Before a request is sent: send it now, later (release the job), or never. */
typedef enum TvdbVerdict
{
	TVDB_SEND_NOW,
	TVDB_SEND_LATER,
	TVDB_SEND_NEVER
} TvdbVerdict;

/* After an answer, what kind it is. */
typedef enum TvdbAnswer
{
	TVDB_ANSWER_SUCCESS,
	TVDB_ANSWER_TRANSIENT,		/* no answer, rate limited, server error */
	TVDB_ANSWER_PERMANENT,		/* the request or the document is refused */
	TVDB_ANSWER_CONFIGURATION	/* a bad key, no quota or credits */
} TvdbAnswer;

typedef struct TvdbStage TvdbStage;

/* One unit of a stage's work: a job, or a batch of chunks of many jobs. */
typedef struct TvdbWork
{
	const TvdbStage *stage;
	MemoryContext cxt;			/* holds the work and its request */
	const char *owner;			/* the worker's lease owner name */
	int			njobs;
	char	  **jobs;			/* the jobs it serves, as text */
	bool		leased_only;	/* leased in stage->claims, not yet moved on */
	char	   *parse_job_id;	/* LlamaParse's id of the job */
	void	   *data;			/* the stage's own */
	TvdbHttp   *req;			/* remote stages: the request */
	TvdbAnswer	answer;			/* set by the after-answer hook */
	const char *answer_kind;	/* and its finer kind, for the SQL (tvdb._answer_class) */
	bool		follow;			/* recording asks for stage->next's request */
	int64		cost_tokens;	/* OpenAI: the input tokens it sends (for the bucket) */
	int			est_pages;		/* LlamaParse uploads: the pages it is expected to bill */
	int64		usage_id;		/* its ledger row, written before it is sent (0: none) */
	int64	   *job_tokens;		/* batches: each job's estimated tokens, or NULL */
} TvdbWork;

struct TvdbStage
{
	const char *name;			/* in logs and in pg_stat_activity */
	TvdbStatus	claims;			/* the status it takes jobs from (NO_STATUS: follow-ups only) */
	int			batch;			/* most units one claim takes */
	TvdbService service;
	TvdbStatus	fails_to;		/* its jobs' failure status */
	const char *operation;		/* the ledger's operation for its requests */
	bool		by_job;			/* remote: claims jobs, whatever the free request slots */
	int			share;			/* remote: claims at most 1/share of the free slots first (0: all) */
	bool		rate_limited;	/* remote: its requests count against the service's requests per minute */
	int			every_ms;		/* looked at no more often than this (0: every pass) */
	bool		(*runs) (void); /* in the current service mode */

	/*
	 * In the claim's transaction: lease up to n units, as works in cxt;
	 * remote stages build each one's request here.
	 */
	List	   *(*claim) (const char *owner, int n, MemoryContext cxt);
	/*
	 * Local stages, in the claim's transaction: do the work.  Also given one
	 * job that tvdb_lease leased (w->leased_only) when a batch failed.
	 */
	void		(*run) (List *works);
	/* Follow-up stages: build w->req, after a commit (no SQL). */
	void		(*request) (TvdbWork *w);
	/* Remote stages, in a subtransaction: record one answer. */
	void		(*record) (TvdbWork *w);
	/* Remote stages: answers that can wait for record_all (NULL: none). */
	bool		(*deferrable) (TvdbWork *w);
	void		(*record_all) (List *works);
	/* The stage whose request follows a recorded answer that set w->follow. */
	const TvdbStage *next;
};

/* stages/table.c: every stage, in the order a pass looks at them */
extern const TvdbStage *const tvdb_stage_table[];

/* work.c: what stages share */
extern TvdbWork *tvdb_work_new(const TvdbStage *s, const char *owner, int njobs, MemoryContext parent);
extern List *tvdb_work_append(List *works, TvdbWork *w, MemoryContext cxt);
extern List *tvdb_lease(const TvdbStage *s, const char *owner, int n, MemoryContext cxt);
extern Datum tvdb_job_ids(TvdbWork *w);
extern Datum tvdb_uuid_array(char **items, int n);

/* hooks.c: the one place before every request, and the one after every answer */
extern TvdbVerdict tvdb_before_send(const TvdbStage *s, TvdbWork *w);
extern int	tvdb_send_allowance(const TvdbStage *s, int wanted, long *due_ms);
extern void tvdb_allowance_unused(const TvdbStage *s);
extern TvdbAnswer tvdb_after_answer(TvdbWork *w);
extern long tvdb_query_may_send(int64 tokens);
extern void tvdb_config_reloaded(void);
extern void tvdb_write_alerts(void);
extern bool tvdb_alerts_pending(void);
extern const char *tvdb_answer_kind(long http_status, const char *body, size_t len, int should_retry);

#endif							/* TVDB_STAGE_H */
