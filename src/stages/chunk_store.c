/*
 * chunk_store.c — the chunking stage: a batch of parsed jobs in one
 * transaction, parsed -> chunking -> chunks_stored -> embedding_queued (or
 * failed_chunking), the markdown cut by the chunker (src/chunker/), every
 * chunk of the batch written by one INSERT and each status change made for
 * the whole batch by one UPDATE.  Nothing here waits on the network, so a
 * crash leaves the jobs parsed; only an older version's crash leaves jobs in
 * chunking, which the rechunk stage takes up now and then.
 */
#include "stages/stages.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/uuid.h"

#include "chunker/chunker.h"

/* What one batch writes: a row per chunk, and per job its outcome. */
typedef struct ChunkRows
{
	int			n;
	int			cap;
	Datum	   *job;			/* uuid */
	Datum	   *idx;			/* int4 */
	Datum	   *content;		/* text */
	Datum	   *tokens;			/* int4 */
	Datum	   *headings;		/* text: a text[] literal (array_out), exact */
} ChunkRows;

/* array_out keeps its type lookups in flinfo: it needs a real one */
static FmgrInfo array_out_fn;

static void
add_row(ChunkRows *r, Datum job, int idx, TvdbChunk *ch)
{
	Datum	   *heads = palloc(sizeof(Datum) * Max(ch->n_headings, 1));
	ArrayType  *a;

	if (array_out_fn.fn_oid == InvalidOid)
		fmgr_info_cxt(F_ARRAY_OUT, &array_out_fn, TopMemoryContext);
	if (r->n == r->cap)
	{
		Datum	  **cols[5] = {&r->job, &r->idx, &r->content, &r->tokens, &r->headings};

		r->cap = Max(64, r->cap * 2);
		for (int c = 0; c < 5; c++)
			*cols[c] = *cols[c] ? repalloc_huge(*cols[c], sizeof(Datum) * r->cap)
				: palloc_extended(sizeof(Datum) * r->cap, MCXT_ALLOC_HUGE);
	}
	for (int h = 0; h < ch->n_headings; h++)
		heads[h] = CStringGetTextDatum(ch->heading_path[h]);
	a = construct_array(heads, ch->n_headings, TEXTOID, -1, false, TYPALIGN_INT);
	r->job[r->n] = job;
	r->idx[r->n] = Int32GetDatum(idx);
	r->content[r->n] = PointerGetDatum(cstring_to_text_with_len(ch->text, ch->len));
	r->tokens[r->n] = Int32GetDatum(ch->token_estimate);
	r->headings[r->n] = CStringGetTextDatum(OutputFunctionCall(&array_out_fn, PointerGetDatum(a)));
	r->n++;
}

/* Whether a chunk has any text to embed (OpenAI refuses empty inputs). */
static bool
has_text(const TvdbChunk *ch)
{
	for (size_t i = 0; i < ch->len; i++)
		if (!isspace((unsigned char) ch->text[i]))
			return true;
	return false;
}

/*
 * Chunk one document into r; NULL on success, else why it failed.  A chunk
 * with no text is not kept (indexes stay dense), and a document with none
 * at all fails: there is nothing to embed.
 */
static char *
chunk_one(ChunkRows *r, Datum job, text *md)
{
	TvdbChunkOptions opt = {tvdb_chunk_target_tokens, tvdb_chunk_overlap_effective(),
		8192, tvdb_chunk_bytes_per_token};
	TvdbChunkList list = {NULL, 0};
	const char *err = NULL;

	if (tvdb_chunk_markdown(VARDATA_ANY(md), VARSIZE_ANY_EXHDR(md), &opt, &list, &err) != 0)
		return psprintf("chunker: %s", err ? err : "failed");
	PG_TRY();
	{
		int			kept = 0;

		for (int i = 0; i < list.n; i++)
			if (has_text(&list.chunks[i]))
				add_row(r, job, kept++, &list.chunks[i]);
	}
	PG_FINALLY();
	{
		tvdb_chunk_list_free(&list);
	}
	PG_END_TRY();
	return NULL;
}

/* Take up to n parsed jobs into chunking, leased to owner: one work each. */
static List *
chunk_claim(const char *owner, int n, MemoryContext cxt)
{
	static const Oid types[3] = {TEXTOID, INT4OID, INT4OID};
	Datum		values[3] = {CStringGetTextDatum(owner), Int32GetDatum(n),
	Int32GetDatum(tvdb_lease_effective())};
	List	   *works = NIL;
	uint64		rows;

	rows = tvdb_spi_run("SELECT unnest(tvdb._take('parsed', 'chunking', $1, $2, $3))::text",
						3, types, values, NULL, SPI_OK_SELECT);
	for (uint64 i = 0; i < rows; i++)
	{
		TvdbWork   *w = tvdb_work_new(&tvdb_stage_chunk, owner, 1, cxt);

		w->jobs[0] = MemoryContextStrdup(w->cxt, tvdb_spi_text(i, 1));
		works = tvdb_work_append(works, w, cxt);
	}
	return works;
}

/*
 * Chunk the works' jobs, which are in chunking and leased to their owner; a
 * job leased in parsed (one at a time, after a batch failed) moves there first.
 */
static void
chunk_run(List *works)
{
	static const Oid t2[2] = {UUIDARRAYOID, TEXTOID};
	Datum		v2[2];
	ChunkRows	r = {0};
	Datum	   *ok_jobs;
	Datum	   *ok_detail;
	Datum	   *bad_jobs;
	Datum	   *bad_detail;
	int			n_ok = 0;
	int			n_bad = 0;
	uint64		n;
	char	  **ids = palloc(sizeof(char *) * list_length(works));
	ListCell   *lc;

	v2[1] = CStringGetTextDatum(((TvdbWork *) linitial(works))->owner);	/* one worker's */
	foreach(lc, works)
	{
		TvdbWork   *w = lfirst(lc);

		ids[foreach_current_index(lc)] = w->jobs[0];
		if (w->leased_only && w->stage->claims == TVDB_PARSED)
		{
			static const Oid at[2] = {UUIDOID, TEXTOID};
			Datum		av[2] = {DirectFunctionCall1(uuid_in, CStringGetDatum(w->jobs[0])), v2[1]};

			tvdb_spi_run("SELECT tvdb._advance($1, $2, 'parsed', 'chunking', '{}', true)", 2, at, av, NULL,
						 SPI_OK_SELECT);
		}
	}
	v2[0] = tvdb_uuid_array(ids, list_length(works));
	n = tvdb_spi_run("SELECT j.job_id, b.content FROM upload_pipeline.upload_jobs j "
					 "JOIN upload_pipeline.blobs b ON b.document_id = j.document_id AND b.path = j.parsed_path "
					 "WHERE j.job_id = ANY($1) AND j.lease_owner = $2 AND j.status = 'chunking'",
					 2, t2, v2, NULL, SPI_OK_SELECT);
	if (n == 0)
		return;
	ok_jobs = palloc(sizeof(Datum) * n);
	ok_detail = palloc(sizeof(Datum) * n);
	bad_jobs = palloc(sizeof(Datum) * n);
	bad_detail = palloc(sizeof(Datum) * n);
	{
		SPITupleTable *tt = SPI_tuptable;

		for (uint64 i = 0; i < n; i++)
		{
			bool		isnull;
			Datum		job = SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull);
			text	   *md = DatumGetTextPP(SPI_getbinval(tt->vals[i], tt->tupdesc, 2, &isnull));
			int			before = r.n;
			char	   *err = chunk_one(&r, job, md);
			StringInfoData e;

			if (err == NULL && r.n == before)
				err = "no text: the parsed document has nothing to embed";
			if (err == NULL)
			{
				ok_detail[n_ok] = DirectFunctionCall1(jsonb_in, CStringGetDatum(psprintf("{\"chunks\": %d}", r.n - before)));
				ok_jobs[n_ok++] = job;
				continue;
			}
			initStringInfo(&e);
			appendStringInfoString(&e, "{\"error\": ");
			escape_json(&e, err);
			appendStringInfoString(&e, ", \"class\": \"permanent\"}");	/* no retry gives it text */
			bad_detail[n_bad] = DirectFunctionCall1(jsonb_in, CStringGetDatum(e.data));
			bad_jobs[n_bad++] = job;
		}
	}
	if (n_bad > 0)
	{
		static const Oid ft[3] = {UUIDARRAYOID, TEXTOID, JSONBARRAYOID};
		Datum		fv[3] = {tvdb_array(bad_jobs, NULL, n_bad, UUIDOID), v2[1],
		tvdb_array(bad_detail, NULL, n_bad, JSONBOID)};

		tvdb_spi_run("SELECT tvdb._advance_all($1, $2, 'chunking', 'failed_chunking', $3)", 3, ft, fv, NULL,
					 SPI_OK_SELECT);
	}
	if (n_ok == 0)
		return;
	{
		static const Oid it[5] = {UUIDARRAYOID, INT4ARRAYOID, TEXTARRAYOID, INT4ARRAYOID, TEXTARRAYOID};
		Datum		iv[5];
		static const Oid at[3] = {UUIDARRAYOID, TEXTOID, JSONBARRAYOID};
		Datum		av[3] = {tvdb_array(ok_jobs, NULL, n_ok, UUIDOID), v2[1],
		tvdb_array(ok_detail, NULL, n_ok, JSONBOID)};

		/* re-chunking replaces: never two sets of chunks for a document */
		tvdb_spi_run("DELETE FROM upload_pipeline.document_chunks c USING upload_pipeline.upload_jobs j "
					 "WHERE j.job_id = ANY($1) AND c.document_id = j.document_id", 1, at, av, NULL,
					 SPI_OK_DELETE);
		if (r.n > 0)
		{
			iv[0] = tvdb_array(r.job, NULL, r.n, UUIDOID);
			iv[1] = tvdb_array(r.idx, NULL, r.n, INT4OID);
			iv[2] = tvdb_array(r.content, NULL, r.n, TEXTOID);
			iv[3] = tvdb_array(r.tokens, NULL, r.n, INT4OID);
			iv[4] = tvdb_array(r.headings, NULL, r.n, TEXTOID);
			tvdb_spi_run("INSERT INTO upload_pipeline.document_chunks "
					  "(document_id, job_id, chunk_index, content, token_estimate, sha256, heading_path) "
					  "SELECT j.document_id, j.job_id, v.idx, v.content, v.tokens, "
					  "       encode(sha256(convert_to(v.content, 'UTF8')), 'hex'), v.heads::text[] "
					  "FROM unnest($1, $2, $3, $4, $5) AS v(job, idx, content, tokens, heads) "
					  "JOIN upload_pipeline.upload_jobs j ON j.job_id = v.job",
					  5, it, iv, NULL, SPI_OK_INSERT);
		}
		/* chunks_stored waits for nothing: one row version, an event per edge */
		tvdb_spi_run("SELECT tvdb._advance_path($1, $2, '{chunking,chunks_stored,embedding_queued}', $3)",
					 3, at, av, NULL, SPI_OK_SELECT);
	}
}

const TvdbStage tvdb_stage_chunk = {
	.name = "chunk",
	.claims = TVDB_PARSED,
	.batch = 64,
	.service = TVDB_SERVICE_LOCAL,
	.fails_to = TVDB_FAILED_CHUNKING,
	.operation = "chunk",
	.runs = tvdb_any_mode,
	.claim = chunk_claim,
	.run = chunk_run,
};

static List *
rechunk_claim(const char *owner, int n, MemoryContext cxt)
{
	return tvdb_lease(&tvdb_stage_rechunk, owner, n, cxt);
}

const TvdbStage tvdb_stage_rechunk = {
	.name = "rechunk",
	.claims = TVDB_CHUNKING,
	.batch = LOCAL_BATCH,
	.service = TVDB_SERVICE_LOCAL,
	.fails_to = TVDB_FAILED_CHUNKING,
	.operation = "chunk",
	.every_ms = 5000,
	.runs = tvdb_any_mode,
	.claim = rechunk_claim,
	.run = chunk_run,
};
