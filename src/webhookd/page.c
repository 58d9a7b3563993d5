/*
 * page.c — the dashboard's static files, compiled in (mk/embed.sh): the
 * same page for GET / and GET /documents/{id} (its script tells them
 * apart), and the script.  They hold no data: what they show comes from
 * the JSON endpoints, which need a monitor's bearer token.
 */
#include "webhookd.h"

#include <string.h>

#include "page_assets.h"

/* The uuid-shaped rest of /documents/{id}; the database checks it again. */
static bool
uuid_shaped(const char *s)
{
	static const char hex[] = "0123456789abcdefABCDEF";

	if (strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++)
		if ((i == 8 || i == 13 || i == 18 || i == 23) ? s[i] != '-' : strchr(hex, s[i]) == NULL || s[i] == '\0')
			return false;
	return true;
}

const char *
page_for(const char *url, const char **type, size_t *len)
{
	const char *body = NULL;

	if (strcmp(url, "/") == 0 ||
		(strncmp(url, "/documents/", 11) == 0 && uuid_shaped(url + 11)))
	{
		body = asset_dashboard_html;
		*type = "text/html; charset=utf-8";
	}
	else if (strcmp(url, "/dashboard.js") == 0)
	{
		body = asset_dashboard_js;
		*type = "text/javascript; charset=utf-8";
	}
	if (body != NULL)
		*len = strlen(body);
	return body;
}
