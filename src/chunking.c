/*
 * chunking.c — the chunking stage for a batch of parsed jobs in one
 * transaction: parsed -> chunking -> chunks_stored -> embedding_queued (or
 * failed_chunking), with every chunk of the batch written by one INSERT and
 * each status change made for the whole batch by one UPDATE.  Nothing here
 * waits on the network, so nothing needs a lease that outlives the
 * transaction: a crash leaves the jobs parsed.
 */
#include "stages.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/uuid.h"

#include "chunker.h"

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

/* Chunk one document into r; NULL on success, else why it failed. */
static char *
chunk_one(ChunkRows *r, Datum job, text *md)
{
	TvdbChunkOptions opt = {tvdb_chunk_target_tokens,
		Min(tvdb_chunk_overlap_tokens, tvdb_chunk_target_tokens / 2),
		8192, tvdb_chunk_bytes_per_token};
	TvdbChunkList list = {NULL, 0};
	const char *err = NULL;

	if (tvdb_chunk_markdown(VARDATA_ANY(md), VARSIZE_ANY_EXHDR(md), &opt, &list, &err) != 0)
		return psprintf("chunker: %s", err ? err : "failed");
	PG_TRY();
	{
		for (int i = 0; i < list.n; i++)
			add_row(r, job, i, &list.chunks[i]);
	}
	PG_FINALLY();
	{
		tvdb_chunk_list_free(&list);
	}
	PG_END_TRY();
	return NULL;
}

static Datum
array_of(Datum *d, int n, Oid type)
{
	int16		len;
	bool		byval;
	char		align;

	get_typlenbyvalalign(type, &len, &byval, &align);
	return PointerGetDatum(construct_array(d, n, type, len, byval, align));
}

/*
 * Chunk the jobs of the batch: c->ids (a uuid[] of jobs in chunking leased
 * to us) or, when c->ids is 0, the parsed jobs _take gives.
 */
void
tvdb_chunk_batch(void *arg)
{
	ChunkBatch *c = arg;
	Oid			t2[2] = {UUIDARRAYOID, TEXTOID};
	Datum		v2[2];
	ChunkRows	r = {0};
	Datum	   *ok_jobs;
	Datum	   *ok_detail;
	Datum	   *bad_jobs;
	Datum	   *bad_detail;
	int			n_ok = 0;
	int			n_bad = 0;
	uint64		n;

	if (c->ids == (Datum) 0)
	{
		bool		isnull;

		Oid			tt[3] = {TEXTOID, INT4OID, INT4OID};
		Datum		tv[3] = {CStringGetTextDatum(c->owner), Int32GetDatum(c->limit),
		Int32GetDatum(tvdb_lease_effective())};

		tvdb_exec("SELECT tvdb._take('parsed', 'chunking', $1, $2, $3)", 3, tt, tv, NULL);
		v2[0] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	}
	else
		v2[0] = c->ids;
	v2[1] = CStringGetTextDatum(c->owner);
	tvdb_exec("SELECT j.job_id, b.content FROM upload_pipeline.upload_jobs j "
			  "JOIN upload_pipeline.blobs b ON b.path = j.parsed_path "
			  "WHERE j.job_id = ANY($1) AND j.lease_owner = $2 AND j.status = 'chunking'",
			  2, t2, v2, NULL);
	n = SPI_processed;
	c->taken = (int) n;
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

			if (err == NULL)
			{
				ok_detail[n_ok] = DirectFunctionCall1(jsonb_in, CStringGetDatum(psprintf("{\"chunks\": %d}", r.n - before)));
				ok_jobs[n_ok++] = job;
				continue;
			}
			initStringInfo(&e);
			appendStringInfoString(&e, "{\"error\": ");
			escape_json(&e, err);
			appendStringInfoChar(&e, '}');
			bad_detail[n_bad] = DirectFunctionCall1(jsonb_in, CStringGetDatum(e.data));
			bad_jobs[n_bad++] = job;
		}
	}
	if (n_bad > 0)
	{
		Oid			ft[3] = {UUIDARRAYOID, TEXTOID, JSONBARRAYOID};
		Datum		fv[3] = {array_of(bad_jobs, n_bad, UUIDOID), v2[1], array_of(bad_detail, n_bad, JSONBOID)};

		tvdb_exec("SELECT tvdb._advance_all($1, $2, 'chunking', 'failed_chunking', $3)", 3, ft, fv, NULL);
	}
	if (n_ok == 0)
		return;
	{
		Oid			it[5] = {UUIDARRAYOID, INT4ARRAYOID, TEXTARRAYOID, INT4ARRAYOID, TEXTARRAYOID};
		Datum		iv[5];
		Oid			at[3] = {UUIDARRAYOID, TEXTOID, JSONBARRAYOID};
		Datum		av[3] = {array_of(ok_jobs, n_ok, UUIDOID), v2[1], array_of(ok_detail, n_ok, JSONBOID)};

		/* re-chunking replaces: never two sets of chunks for a document */
		tvdb_exec("DELETE FROM upload_pipeline.document_chunks c USING upload_pipeline.upload_jobs j "
				  "WHERE j.job_id = ANY($1) AND c.document_id = j.document_id", 1, at, av, NULL);
		if (r.n > 0)
		{
			iv[0] = array_of(r.job, r.n, UUIDOID);
			iv[1] = array_of(r.idx, r.n, INT4OID);
			iv[2] = array_of(r.content, r.n, TEXTOID);
			iv[3] = array_of(r.tokens, r.n, INT4OID);
			iv[4] = array_of(r.headings, r.n, TEXTOID);
			tvdb_exec("INSERT INTO upload_pipeline.document_chunks "
					  "(document_id, job_id, chunk_index, content, token_estimate, sha256, heading_path) "
					  "SELECT j.document_id, j.job_id, v.idx, v.content, v.tokens, "
					  "       encode(sha256(convert_to(v.content, 'UTF8')), 'hex'), v.heads::text[] "
					  "FROM unnest($1, $2, $3, $4, $5) AS v(job, idx, content, tokens, heads) "
					  "JOIN upload_pipeline.upload_jobs j ON j.job_id = v.job",
					  5, it, iv, NULL);
		}
		tvdb_exec("SELECT tvdb._advance_all($1, $2, 'chunking', 'chunks_stored', $3, true)", 3, at, av, NULL);
		tvdb_exec("SELECT tvdb._advance_all($1, $2, 'chunks_stored', 'embedding_queued')", 2, at, av, NULL);
	}
}

/*
 * One job already leased to us by _claim, in parsed (or in chunking, where
 * only an older version's crash leaves one): the fallback when a batch failed.
 */
void
tvdb_chunk_leased(void *arg)
{
	Local	   *l = arg;
	Datum		job = DirectFunctionCall1(uuid_in, CStringGetDatum(l->task->job));
	ChunkBatch	c = {l->task->owner, array_of(&job, 1, UUIDOID), 1, 0};

	if (strcmp(l->step, "parsed") == 0)
	{
		Oid			types[2] = {UUIDOID, TEXTOID};
		Datum		values[2] = {job, CStringGetTextDatum(l->task->owner)};

		tvdb_exec("SELECT tvdb._advance($1, $2, 'parsed', 'chunking', '{}', true)", 2, types, values, NULL);
	}
	tvdb_chunk_batch(&c);
	l->outcome = c.taken ? "done" : "lost";
}
