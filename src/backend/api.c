/*
 * api.c — the SQL API applications call: tvdb.upload() stores a document and
 * creates its job; tvdb.transition() moves a job compare-and-set.  Both check
 * their input before writing anything.
 */
#include "tvdb.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

PG_FUNCTION_INFO_V1(tvdb_upload);
PG_FUNCTION_INFO_V1(tvdb_upload_0_2);
PG_FUNCTION_INFO_V1(tvdb_transition);

#define MAX_FILENAME_BYTES 1024

/* A content type from the file name when the caller gives none. */
static const char *
guess_mime_type(const char *filename)
{
	static const char *const map[][2] = {
		{".md", "text/markdown"}, {".markdown", "text/markdown"},
		{".txt", "text/plain"}, {".html", "text/html"}, {".htm", "text/html"},
		{".pdf", "application/pdf"}, {".json", "application/json"},
		{".csv", "text/csv"},
		{".docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
	};
	const char *dot = strrchr(filename, '.');

	if (dot != NULL)
		for (int i = 0; i < (int) lengthof(map); i++)
			if (pg_strcasecmp(dot, map[i][0]) == 0)
				return map[i][1];
	return "application/octet-stream";
}

/*
 * tvdb.upload(filename, content, mime_type, correlation_id) RETURNS uuid
 * The blob, the document and the job are written by one statement.  Since
 * 0.2.0 a blob is keyed by its document; tvdb_upload is the entry point of
 * 0.1.0's SQL, which a database keeps until ALTER EXTENSION tvdb UPDATE.
 */
static Datum upload(FunctionCallInfo fcinfo, bool blob_has_document);

#define UPLOAD_SQL(blob_col, blob_val) \
	"WITH ids AS (" \
	"  SELECT gen_random_uuid() AS document_id, gen_random_uuid() AS job_id," \
	"         encode(sha256($2), 'hex') AS sha256, octet_length($2) AS size," \
	"         coalesce($4, gen_random_uuid()) AS correlation_id)," \
	" blob AS (" \
	"  INSERT INTO upload_pipeline.blobs (" blob_col "path, content, content_type, sha256, size_bytes)" \
	"  SELECT " blob_val "'storage://uploads/' || document_id || '/' || $1, $2, $3, sha256, size" \
	"  FROM ids RETURNING path)," \
	" doc AS (" \
	"  INSERT INTO upload_pipeline.documents" \
	"    (document_id, filename, mime_type, size_bytes, sha256, storage_path)" \
	"  SELECT document_id, $1, $3, size, sha256, blob.path FROM ids, blob" \
	"  RETURNING document_id)" \
	" INSERT INTO upload_pipeline.upload_jobs (job_id, document_id, correlation_id)" \
	" SELECT job_id, doc.document_id, correlation_id FROM ids, doc" \
	" RETURNING job_id"

Datum
tvdb_upload(PG_FUNCTION_ARGS)
{
	return upload(fcinfo, false);
}

Datum
tvdb_upload_0_2(PG_FUNCTION_ARGS)
{
	return upload(fcinfo, true);
}

static Datum
upload(FunctionCallInfo fcinfo, bool blob_has_document)
{
	static const Oid types[4] = {TEXTOID, BYTEAOID, TEXTOID, UUIDOID};
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	char	   *filename;
	const char *problem;
	int64		size;
	bool		isnull;
	Datum		job_id;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("filename must not be null"),
				 errhint("Pass the document's original file name, such as 'report.pdf'.")));
	filename = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (filename[0] == '\0' || strlen(filename) > MAX_FILENAME_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("filename must be between 1 and %d bytes long", MAX_FILENAME_BYTES),
				 errdetail("The filename given is %zu bytes long.", strlen(filename))));
	if ((problem = tvdb_filename_problem(filename)) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid filename: %s", problem),
				 errhint("Pass the file's own name, such as 'report.pdf', without a directory.")));
	if (!PG_ARGISNULL(2) &&
		(problem = tvdb_media_type_problem(text_to_cstring(PG_GETARG_TEXT_PP(2)))) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid mime_type: %s", problem),
				 errdetail("A media type is type/subtype with optional \"; name=value\" parameters (RFC 9110, 8.3.1)."),
				 errhint("Pass one such as 'application/pdf' or 'text/plain; charset=utf-8', or NULL to guess it from the filename.")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("content must not be null"),
				 errdetail("Document \"%s\" has no content.", filename)));
	size = VARSIZE_ANY_EXHDR(PG_GETARG_DATUM(1));
	if (size == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("content must not be empty"),
				 errdetail("Document \"%s\" has 0 bytes.", filename)));
	if (size > tvdb_max_upload_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("document \"%s\" is too large: %lld bytes", filename, (long long) size),
				 errdetail("tvdb.max_upload_bytes allows at most %d bytes.", tvdb_max_upload_bytes),
				 errhint("Split the document, or have a superuser raise tvdb.max_upload_bytes.")));

	args[0] = CStringGetTextDatum(filename);
	args[1] = PG_GETARG_DATUM(1);
	args[2] = PG_ARGISNULL(2)
		? CStringGetTextDatum(guess_mime_type(filename))
		: PG_GETARG_DATUM(2);
	if (PG_ARGISNULL(3))
		nulls[3] = 'n';
	else
		args[3] = PG_GETARG_DATUM(3);

	tvdb_spi_connect();
	tvdb_spi_run(blob_has_document ? UPLOAD_SQL("document_id, ", "document_id, ") : UPLOAD_SQL("", ""),
				 4, types, args, nulls, SPI_OK_INSERT_RETURNING);
	job_id = SPI_datumTransfer(tvdb_spi_datum(0, 1, &isnull), false, sizeof(pg_uuid_t));
	tvdb_spi_finish();

	PG_RETURN_DATUM(job_id);
}

/*
 * tvdb.transition(job_id, to_status, detail, from_status) RETURNS boolean
 * Compare-and-set: the UPDATE only matches while the job is still in the
 * status read (or the from_status the caller names).  True when the status
 * changed, false when the job was already in to_status.
 */
Datum
tvdb_transition(PG_FUNCTION_ARGS)
{
	static const Oid read_types[1] = {UUIDOID};
	static const Oid update_types[4] = {UUIDOID, TEXTOID, TEXTOID, JSONBOID};
	Datum		job_id;
	TvdbStatus	to;
	TvdbStatus	from;
	char	   *job_str;
	Datum		detail;
	Datum		args[4];
	uint64		moved;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("job_id and to_status must not be null")));
	job_id = PG_GETARG_DATUM(0);
	job_str = DatumGetCString(DirectFunctionCall1(uuid_out, job_id));
	to = tvdb_status_parse(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	detail = PG_ARGISNULL(2)
		? DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"))
		: PG_GETARG_DATUM(2);
	if (!JB_ROOT_IS_OBJECT(DatumGetJsonbP(detail)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("detail must be a JSON object"),
				 errhint("Pass something like '{\"reason\": \"...\"}'.")));

	tvdb_spi_connect();
	if (tvdb_spi_run("SELECT status FROM upload_pipeline.upload_jobs WHERE job_id = $1",
					 1, read_types, &job_id, NULL, SPI_OK_SELECT) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_TVDB_JOB_NOT_FOUND),
				 errmsg("job %s does not exist", job_str),
				 errhint("Job ids are returned by tvdb.upload().")));
	from = tvdb_status_parse(tvdb_spi_text(0, 1));

	if (!PG_ARGISNULL(3))
	{
		TvdbStatus	expected = tvdb_status_parse(text_to_cstring(PG_GETARG_TEXT_PP(3)));

		if (expected != from)
			ereport(ERROR,
					(errcode(ERRCODE_TVDB_TRANSITION_CONFLICT),
					 errmsg("job %s is in status \"%s\", not \"%s\"",
							job_str, tvdb_status_name(from), tvdb_status_name(expected)),
					 errdetail("Another session may have moved it."),
					 errhint("Read the job again before deciding what it needs.")));
	}
	if (from == to)
	{
		tvdb_spi_finish();
		PG_RETURN_BOOL(false);
	}
	if (tvdb_edge_lookup(from, to) == NULL)
		tvdb_report_invalid_transition(from, to);

	args[0] = job_id;
	args[1] = CStringGetTextDatum(tvdb_status_name(to));
	args[2] = CStringGetTextDatum(tvdb_status_name(from));
	args[3] = detail;
	moved = tvdb_update_with_details("UPDATE upload_pipeline.upload_jobs SET status = $2"
									 " WHERE job_id = $1 AND status = $3",
									 3, update_types, args, NULL, &job_id, &detail, 1,
									 SPI_OK_UPDATE);
	if (moved == 0)
		ereport(ERROR,
				(errcode(ERRCODE_TVDB_TRANSITION_CONFLICT),
				 errmsg("job %s left status \"%s\" before it could move to \"%s\"",
						job_str, tvdb_status_name(from), tvdb_status_name(to)),
				 errdetail("A concurrent transaction changed the job first."),
				 errhint("Read the job again before deciding what it needs.")));
	tvdb_spi_finish();
	PG_RETURN_BOOL(true);
}
