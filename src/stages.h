/*
 * stages.h — what the worker's files (worker.c, stages.c, parse.c, embed.c,
 * xact.c) share; not part of the extension's interface.
 */
#ifndef TVDB_STAGES_H
#define TVDB_STAGES_H

#include "worker.h"

#include "executor/spi.h"

/* How many jobs one pass claims for local work (chunking, mock stages). */
#define LOCAL_BATCH 16
/* How many parsed jobs one chunking transaction takes. */
#define CHUNK_BATCH 64
#define UUID_TEXT_LEN 36

typedef struct Task
{
	char		job[UUID_TEXT_LEN + 1];	/* text form of the job id */
	char	   *parse_job_id;
	const char *owner;
} Task;

typedef struct Claim
{
	const char *status;
	const char *owner;
	int			n;
	const char *select;			/* columns, from j (job), d (document), b (blob) */
	void		(*row) (int row, void *arg);
	void	   *arg;
	int			claimed;
} Claim;

/* Rows of an upload claim become requests, started after the commit. */
typedef struct Pending
{
	TvdbHttp   *reqs[1024];
	int			n;
	Task	   *tasks[1024];
	int			ntasks;
	const char *owner;
} Pending;

typedef struct Local
{
	Task	   *task;
	const char *step;
	char	   *outcome;
} Local;

/* A batch of chunking: the given jobs (a uuid[]), or up to limit taken now. */
typedef struct ChunkBatch
{
	const char *owner;
	Datum		ids;
	int			limit;
	int			taken;
} ChunkBatch;

/* xact.c */
extern void tvdb_begin_xact(const char *what);
extern void tvdb_commit_xact(void);
extern bool tvdb_in_xact(const char *what, void (*fn) (void *), void *arg);
extern int	tvdb_exec(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls);
extern char *tvdb_col_text(int row, int col);
extern char *tvdb_scalar_text(void);
extern char *tvdb_body_text(TvdbHttp *req, const char **failure);
#define TVDB_ANSWER_ARGS 5
extern void tvdb_answer_args(TvdbHttp *req, Oid *types, Datum *values, char *nulls);
extern Datum tvdb_uuid_array(char **items, int n);

/* stages.c */
extern Task *tvdb_new_task(const char *owner);
extern void tvdb_free_task(Task *t);
extern void tvdb_release_after_error(void *arg);

/* chunking.c */
extern void tvdb_chunk_batch(void *arg);
extern void tvdb_chunk_leased(void *arg);

/* parse.c */
extern void tvdb_upload_row(int row, void *arg);
extern void tvdb_poll_row(int row, void *arg);
extern void tvdb_mock_parse_job(void *arg);
extern void tvdb_flush_answers(void);

/* embed.c */
extern int	tvdb_dispatch_embeddings(const char *owner, bool mock);

#endif							/* TVDB_STAGES_H */
