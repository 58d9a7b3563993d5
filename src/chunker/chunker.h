/*
 * chunker.h — splits a markdown document into chunks for embedding, each
 * tagged with the path of headings it sits under.  Plain C99 with no
 * PostgreSQL headers, so it is unit-tested standalone (test/chunker) and
 * can be called from the background worker; it reads the markdown with
 * libcmark-gfm (link -lcmark-gfm -lcmark-gfm-extensions).
 *
 * Sizes.  Token counts are estimated from bytes:
 *     estimate(text) = ceil(bytes / bytes_per_token)
 * target_tokens and overlap_tokens are goals measured with that estimate.
 * max_tokens is a hard limit measured in BYTES: no chunk is longer than
 * max_tokens bytes.  A token is at least one byte of UTF-8, so a chunk of
 * at most max_tokens bytes never exceeds the model's max_tokens tokens,
 * whatever the real tokenizer does.  The target in bytes is
 * min(target_tokens * bytes_per_token, max_tokens); the overlap in bytes is
 * scaled with it.
 *
 * Rules (the README lists them too):
 *  - Sections: every top-level heading (ATX or setext, levels 1-6) starts a
 *    section; a chunk holds content of one section only, and sections are
 *    never merged.  heading_path is the plain text of the enclosing
 *    headings, outermost first; skipped levels are simply absent (# A then
 *    ### C gives {"A", "C"}), as are empty headings.  Content before the
 *    first heading has no heading path.  Headings inside block quotes or
 *    lists are ordinary content, not section breaks.
 *  - The heading line itself is not in the chunk text (it is in
 *    heading_path); a section with no body gives no chunk.
 *  - Text is sliced from the source by the blocks' line positions, so it is
 *    the author's markdown byte for byte; between two blocks of a chunk the
 *    source between them is kept if it is at most 32 bytes (usually the
 *    blank line), otherwise it becomes one blank line.  Thematic breaks are
 *    never units of their own (they survive only inside such a gap), and
 *    containers holding nothing else (">", "-") give nothing.
 *  - Within a section whole blocks are packed, in order, while the chunk
 *    stays within the target.  A block larger than the target:
 *      lists, list items and block quotes are opened and their children
 *      packed instead (to a depth of 32);
 *      code blocks and tables are kept whole up to max_tokens bytes; a
 *      larger one is cut between lines, a fenced code block re-opening (the
 *      opening fence line) and closing its fence in every piece, a table
 *      repeating its header and delimiter rows in every piece (when the
 *      fence or header leaves under 16 bytes of room, it is cut as text
 *      into pieces of up to max_tokens bytes);
 *      anything else (paragraphs, HTML blocks, over-deep containers) is cut
 *      into pieces of at most (target - overlap): at the last sentence end
 *      that fits ('.', '!' or '?', optionally followed by closing quotes,
 *      brackets or emphasis, then whitespace; a CJK full stop, '！' or '？';
 *      or a blank line), never inside a `code span`; else at the last
 *      whitespace; else at a UTF-8 character boundary.
 *  - Overlap: when a chunk is followed by another in the same section and
 *    ends in text (not in a code block or table), the next chunk starts
 *    with at most overlap bytes of its tail, taken from its trailing text
 *    only: from the first sentence start in that window if it keeps at
 *    least half of it, else from the first word start, else from a
 *    character boundary.  The overlap is dropped when it would push the
 *    next chunk over the target.  No overlap across sections.
 *  - Every chunk is non-empty, has no leading blank lines or trailing
 *    whitespace, is at most max_tokens bytes, and is never cut inside a
 *    byte sequence that looks like one UTF-8 character (input that is not
 *    valid UTF-8 is used as it is, and NUL bytes are copied through: the
 *    caller validates).
 *  - Empty or whitespace-only input gives zero chunks.  The output depends
 *    only on the input and the options.
 */
#ifndef TVDB_CHUNKER_H
#define TVDB_CHUNKER_H

#include <stddef.h>

typedef struct TvdbChunkOptions
{
	int			target_tokens;	/* desired chunk size, e.g. 512 */
	int			overlap_tokens; /* tail of a chunk repeated at the start of
								 * the next, e.g. 64; 0 <= overlap < target */
	int			max_tokens;		/* hard limit, in bytes (see above), e.g.
								 * 8192; >= target_tokens and >= 4 */
	int			bytes_per_token;	/* for the estimate, e.g. 4; >= 1 */
} TvdbChunkOptions;

typedef struct TvdbChunk
{
	char	   *text;			/* UTF-8 markdown, NUL-terminated */
	size_t		len;			/* bytes, without the NUL */
	int			token_estimate; /* ceil(len / bytes_per_token) */
	char	  **heading_path;	/* outermost first; NULL when n_headings = 0 */
	int			n_headings;
} TvdbChunk;

typedef struct TvdbChunkList
{
	TvdbChunk  *chunks;			/* NULL when n = 0 */
	int			n;
} TvdbChunkList;

/*
 * Chunks md[0..len) (it need not be NUL-terminated).  Returns 0 on success;
 * -1 on bad arguments or options or out of memory, with *errmsg set to a
 * static string and *out empty.  Free the result with tvdb_chunk_list_free.
 */
extern int	tvdb_chunk_markdown(const char *md, size_t len,
								const TvdbChunkOptions *opt,
								TvdbChunkList *out, const char **errmsg);
extern void tvdb_chunk_list_free(TvdbChunkList *list);

/*
 * Allocator for everything the chunker allocates, the result included
 * (cmark's own nodes use cmark's default allocator and are freed before
 * returning).  The hooks must return NULL on failure rather than throw:
 * wrappers of palloc that raise ERROR would leak cmark's tree, so use
 * MCXT_ALLOC_NO_OOM ones or keep libc and copy the result.  realloc_fn and
 * free_fn are never given NULL.  Passing any NULL restores libc's.  This is
 * process-wide state: set it once, before chunking.
 */
typedef void *(*TvdbMallocFn) (size_t size);
typedef void *(*TvdbReallocFn) (void *ptr, size_t size);
typedef void (*TvdbFreeFn) (void *ptr);

extern void tvdb_chunker_set_allocator(TvdbMallocFn malloc_fn,
									   TvdbReallocFn realloc_fn,
									   TvdbFreeFn free_fn);

#endif							/* TVDB_CHUNKER_H */
