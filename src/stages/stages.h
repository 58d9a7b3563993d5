/*
 * stages.h — the pipeline's stages (one file each, listed in table.c) and
 * what they share: the arguments every answer-recording SQL function takes,
 * the answer readers, and the built-in mock parser and embedder.
 */
#ifndef TVDB_STAGES_H
#define TVDB_STAGES_H

#include "worker/stage.h"

/* How many jobs one claim of local work takes. */
#define LOCAL_BATCH 16

/* the stages */
extern const TvdbStage tvdb_stage_upload;		/* llamaparse.c */
extern const TvdbStage tvdb_stage_poll;
extern const TvdbStage tvdb_stage_fetch;
extern const TvdbStage tvdb_stage_mock_parse;	/* mock.c */
extern const TvdbStage tvdb_stage_chunk;		/* chunk_store.c */
extern const TvdbStage tvdb_stage_rechunk;
extern const TvdbStage tvdb_stage_embed;		/* openai.c */
extern const TvdbStage tvdb_stage_mock_embed;
extern TvdbHttp *tvdb_openai_embeddings_request(const char *input, void *owner);

/* answers.c */
#define TVDB_ANSWER_ARGS 5
extern void tvdb_answer_args(TvdbHttp *req, Oid *types, Datum *values, char *nulls);
extern char *tvdb_service_url(const char *base, const char *path);
extern bool tvdb_real_mode(void);
extern bool tvdb_mock_mode(void);
extern bool tvdb_remote_mode(void);
extern bool tvdb_service_usable(TvdbService service);
extern bool tvdb_real_runs(TvdbService service);
extern bool tvdb_mock_runs(TvdbService service);
extern bool tvdb_any_mode(void);

/* read_embeddings.c: an OpenAI embeddings answer, read in C */
typedef struct TvdbEmbeddings
{
	int			n;				/* inputs sent */
	int			dims;			/* dimensions expected */
	MemoryContext cxt;			/* where the vectors go */
	float	  **vectors;		/* by input index */
	int			answered;
	long		prompt_tokens;	/* -1: not given */
	const char *error;			/* NULL if the answer is complete and well-formed */
} TvdbEmbeddings;

extern void tvdb_read_embeddings(const char *body, size_t len, TvdbEmbeddings *e);

/* mock.c: the offline parser and embedder */
extern char *tvdb_mock_markdown(const char *filename, const char *mime_type,
								const char *data, size_t len);
extern void tvdb_mock_embed(const char *text, size_t len, float *out, int dims);
extern void tvdb_parse_builtin(const char *job, const char *owner, const char *service);

#endif							/* TVDB_STAGES_H */
