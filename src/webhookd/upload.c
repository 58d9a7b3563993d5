/*
 * upload.c — the body of POST /api/v1/upload: multipart/form-data read as it
 * streams in, by libmicrohttpd's post processor, keeping only the one part
 * named "file" (its bytes, filename and Content-Type).  The file is bounded
 * by --max-upload while it arrives: past the limit its bytes are dropped at
 * once and the request is answered 413 when the body ends.
 */
#include "webhookd.h"

#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* libmicrohttpd's buffer for one part's headers and data between calls */
#define POST_BUFFER 65536

struct Upload
{
	struct MHD_PostProcessor *pp;
	size_t		max_file;
	Buf			file;
	char	   *filename;		/* from the part's Content-Disposition */
	char	   *content_type;	/* the part's Content-Type, NULL if none */
	int			file_parts;		/* parts named "file" seen */
	bool		no_filename;	/* a "file" part that is not a file */
	bool		too_large;
	bool		malformed;
	bool		out_of_memory;
};

static enum MHD_Result
take_part(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
		  const char *content_type, const char *transfer_encoding,
		  const char *data, uint64_t off, size_t size)
{
	Upload	   *u = cls;

	(void) kind;
	(void) transfer_encoding;
	if (key == NULL || strcmp(key, "file") != 0)
		return MHD_YES;			/* other fields are ignored */
	if (off == 0)
	{
		/* a part begins: the first call for each part has off 0 */
		if (++u->file_parts == 1)
		{
			if (filename == NULL)
				u->no_filename = true;
			else
			{
				u->filename = strdup(filename);
				u->content_type = content_type ? strdup(content_type) : NULL;
				if (u->filename == NULL || (content_type && u->content_type == NULL))
					u->out_of_memory = true;
			}
		}
	}
	if (u->file_parts > 1 || u->no_filename || u->too_large || u->out_of_memory)
		return MHD_YES;
	if (u->file.len + size > u->max_file)
	{
		u->too_large = true;
		buf_free(&u->file);
		return MHD_YES;
	}
	buf_append(&u->file, data, size);
	if (u->file.failed)
		u->out_of_memory = true;
	return MHD_YES;
}

/* NULL if the request's Content-Type is not multipart/form-data with a boundary. */
Upload *
upload_begin(struct MHD_Connection *conn, size_t max_file)
{
	const char *type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
												   MHD_HTTP_HEADER_CONTENT_TYPE);
	Upload	   *u;

	if (type == NULL || strncasecmp(type, MHD_HTTP_POST_ENCODING_MULTIPART_FORMDATA,
									strlen(MHD_HTTP_POST_ENCODING_MULTIPART_FORMDATA)) != 0)
		return NULL;
	u = calloc(1, sizeof(Upload));
	if (u == NULL)
		return NULL;
	u->max_file = max_file;
	u->pp = MHD_create_post_processor(conn, POST_BUFFER, take_part, u);
	if (u->pp == NULL)
	{
		free(u);
		return NULL;
	}
	return u;
}

/* A piece of the body; once it is found malformed the rest is only skipped. */
void
upload_feed(Upload *u, const char *data, size_t size)
{
	if (u->malformed || u->pp == NULL)
		return;
	if (MHD_post_process(u->pp, data, size) != MHD_YES)
		u->malformed = true;
}

/* The body has ended: what it held, and why it cannot be used if so. */
UploadResult
upload_finish(Upload *u, const char **detail)
{
	if (u->pp != NULL && MHD_destroy_post_processor(u->pp) != MHD_YES)
		u->malformed = true;
	u->pp = NULL;

	if (u->out_of_memory)
	{
		*detail = "out of memory";
		return UPLOAD_NO_MEMORY;
	}
	if (u->too_large)
	{
		*detail = "the file is larger than the receiver's --max-upload";
		return UPLOAD_TOO_LARGE;
	}
	if (u->malformed)
	{
		*detail = "the multipart/form-data body is malformed";
		return UPLOAD_BAD;
	}
	if (u->file_parts == 0)
	{
		*detail = "the form has no part named \"file\"";
		return UPLOAD_BAD;
	}
	if (u->file_parts > 1)
	{
		*detail = "the form has more than one part named \"file\"";
		return UPLOAD_BAD;
	}
	if (u->no_filename)
	{
		*detail = "the \"file\" part has no filename";
		return UPLOAD_BAD;
	}
	*detail = "";
	return UPLOAD_OK;
}

const char *
upload_filename(const Upload *u)
{
	return u->filename;
}

const char *
upload_content_type(const Upload *u)
{
	return u->content_type;
}

const Buf *
upload_file(const Upload *u)
{
	return &u->file;
}

void
upload_free(Upload *u)
{
	if (u == NULL)
		return;
	if (u->pp != NULL)
		MHD_destroy_post_processor(u->pp);
	buf_free(&u->file);
	free(u->filename);
	free(u->content_type);
	free(u);
}
