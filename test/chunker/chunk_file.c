/*
 * chunk_file.c — prints the chunks of a markdown file as JSON lines, for
 * debugging the chunker:
 *     chunk_file FILE|- [target_tokens overlap_tokens max_tokens bytes_per_token]
 * (defaults 512 64 8192 4).
 */
#include "chunker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
put_json_string(const char *s, size_t len)
{
	size_t		i;

	putchar('"');
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c == '\n')
			fputs("\\n", stdout);
		else if (c == '\r')
			fputs("\\r", stdout);
		else if (c == '\t')
			fputs("\\t", stdout);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

int
main(int argc, char **argv)
{
	TvdbChunkOptions o = {512, 64, 8192, 4};
	TvdbChunkList l;
	const char *err = NULL;
	FILE	   *f;
	char	   *buf = NULL;
	size_t		len = 0;
	size_t		cap = 0;
	size_t		n;
	int			i;
	int			j;

	if (argc != 2 && argc != 6)
	{
		fprintf(stderr, "usage: %s FILE|- [target_tokens overlap_tokens "
				"max_tokens bytes_per_token]\n", argv[0]);
		return 2;
	}
	if (argc == 6)
	{
		o.target_tokens = atoi(argv[2]);
		o.overlap_tokens = atoi(argv[3]);
		o.max_tokens = atoi(argv[4]);
		o.bytes_per_token = atoi(argv[5]);
	}
	f = strcmp(argv[1], "-") == 0 ? stdin : fopen(argv[1], "rb");
	if (f == NULL)
	{
		perror(argv[1]);
		return 1;
	}
	do
	{
		if (len == cap)
		{
			cap = cap ? cap * 2 : 65536;
			buf = realloc(buf, cap);
			if (buf == NULL)
			{
				fprintf(stderr, "out of memory\n");
				return 1;
			}
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
	} while (n > 0);
	if (f != stdin)
		fclose(f);

	if (tvdb_chunk_markdown(buf, len, &o, &l, &err) != 0)
	{
		fprintf(stderr, "chunk_file: %s\n", err);
		free(buf);
		return 1;
	}
	for (i = 0; i < l.n; i++)
	{
		printf("{\"i\":%d,\"bytes\":%zu,\"tokens\":%d,\"headings\":[",
			   i, l.chunks[i].len, l.chunks[i].token_estimate);
		for (j = 0; j < l.chunks[i].n_headings; j++)
		{
			if (j)
				putchar(',');
			put_json_string(l.chunks[i].heading_path[j],
							strlen(l.chunks[i].heading_path[j]));
		}
		fputs("],\"text\":", stdout);
		put_json_string(l.chunks[i].text, l.chunks[i].len);
		fputs("}\n", stdout);
	}
	tvdb_chunk_list_free(&l);
	free(buf);
	return 0;
}
