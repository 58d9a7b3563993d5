/*
 * table.c — every stage of the pipeline, in the order a worker's pass looks
 * at them: downstream first, since finishing documents matters more than
 * starting new ones.  A new stage is one file and one line here.
 */
#include "stages/stages.h"

const TvdbStage *const tvdb_stage_table[] = {
	&tvdb_stage_chunk,			/* parsed -> chunking -> chunks_stored -> embedding_queued */
	&tvdb_stage_rechunk,		/* chunking left by a crash */
	&tvdb_stage_embed,			/* embedding_queued -> ... -> complete, OpenAI */
	&tvdb_stage_mock_embed,		/* the same, built-in embedder */
	&tvdb_stage_mock_parse,		/* uploaded -> parse_queued -> parsed, built-in parser */
	&tvdb_stage_upload,			/* uploaded -> parse_queued, LlamaParse */
	&tvdb_stage_poll,			/* parse_queued: is it done? */
	&tvdb_stage_fetch,			/* parse_queued -> parsed: the result (after a poll) */
	NULL
};
