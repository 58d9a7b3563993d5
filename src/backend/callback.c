/*
 * callback.c — the callback URL tvdb hands LlamaParse with each upload.
 *
 * LlamaParse signs nothing it sends, so the URL itself authenticates the
 * callback: it names the job and carries an HMAC-SHA256 of it under the
 * first of tvdb.webhook_secrets.  A token is accepted under any active
 * secret, so a new secret can go first while URLs issued under the old one
 * are still out; every secret is tried, and compared in constant time.
 */
#include "tvdb.h"

#include "common/base64.h"
#include "common/sha2.h"
#include "utils/builtins.h"
#include "utils/uuid.h"

PG_FUNCTION_INFO_V1(tvdb_callback_url_sql);

#define TOKEN_LEN 43			/* base64url of 32 bytes, unpadded */
#define TOKEN_CONTEXT "tvdb-callback-v1:"

/* The token for a job (its canonical UUID text) under one secret; NULL if the secret holds no key. */
static char *
token_for(const char *job, const char *secret)
{
	uint8		mac[PG_SHA256_DIGEST_LENGTH];
	char		b64[64];
	const char *parts[2] = {TOKEN_CONTEXT, job};
	int			lens[2] = {strlen(TOKEN_CONTEXT), strlen(job)};
	int			keylen;
	char	   *key = tvdb_secret_key(secret, &keylen);
	int			n;
	char	   *out;

	if (key == NULL)
		return NULL;
	tvdb_hmac(key, keylen, parts, lens, 2, mac);
	explicit_bzero(key, keylen);
	pfree(key);
	n = pg_b64_encode((const char *) mac, sizeof(mac), b64, sizeof(b64));
	explicit_bzero(mac, sizeof(mac));
	if (n < TOKEN_LEN)
		elog(ERROR, "could not encode a callback token");
	out = palloc(TOKEN_LEN + 1);
	for (int i = 0; i < TOKEN_LEN; i++)
		out[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
	out[TOKEN_LEN] = '\0';
	explicit_bzero(b64, sizeof(b64));
	return out;
}

/* The job id as the token covers it: the canonical (lower-case) UUID text; NULL if not a UUID. */
static char *
canonical_job(const char *job)
{
	Datum		d;

	if (job == NULL || strlen(job) != 36 ||
		strspn(job, "0123456789abcdefABCDEF-") != 36)
		return NULL;
	d = DirectFunctionCall1(uuid_in, CStringGetDatum(job));
	return DatumGetCString(DirectFunctionCall1(uuid_out, d));
}

/*
 * The callback URL for a job: tvdb.parse_webhook_url with ?job=&token=
 * appended; NULL when no URL is set or no secret can sign it.
 */
char *
tvdb_callback_url(const char *job)
{
	List	   *secrets;
	char	   *token = NULL;
	char	   *id = canonical_job(job);
	ListCell   *lc;

	if (tvdb_parse_webhook_url == NULL || tvdb_parse_webhook_url[0] == '\0' || id == NULL)
		return NULL;
	secrets = tvdb_configured_webhook_secrets();
	foreach(lc, secrets)
		if ((token = token_for(id, lfirst(lc))) != NULL)
			break;
	if (token == NULL)
		return NULL;
	return psprintf("%s%cjob=%s&token=%s", tvdb_parse_webhook_url,
					strchr(tvdb_parse_webhook_url, '?') ? '&' : '?', id, token);
}

/* Does token authenticate job under any of the secrets?  Never raises on bad input. */
bool
tvdb_callback_token_valid(const char *job, const char *token, List *secrets)
{
	char	   *id;
	bool		ok = false;
	ListCell   *lc;

	if (token == NULL || strlen(token) != TOKEN_LEN || (id = canonical_job(job)) == NULL)
		return false;
	foreach(lc, secrets)
	{
		char	   *expected = token_for(id, lfirst(lc));

		if (expected == NULL)
			continue;
		/* every secret is tried even after a match: timing tells nothing */
		ok |= timingsafe_bcmp(expected, token, TOKEN_LEN) == 0;
		explicit_bzero(expected, TOKEN_LEN);
		pfree(expected);
	}
	return ok;
}

/*
 * tvdb.callback_url(job uuid) RETURNS text: the URL the worker hands
 * LlamaParse for this job (NULL when callbacks are off).  It holds a valid
 * token, so only superusers may call it.
 */
Datum
tvdb_callback_url_sql(PG_FUNCTION_ARGS)
{
	char	   *job = DatumGetCString(DirectFunctionCall1(uuid_out, PG_GETARG_DATUM(0)));
	char	   *url;

	if (tvdb_parse_webhook_url[0] != '\0' && tvdb_configured_webhook_secrets() == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("tvdb.parse_webhook_url is set but no webhook secret can sign it"),
				 errhint("Set tvdb.webhook_secrets in postgresql.conf and reload.")));
	url = tvdb_callback_url(job);
	if (url == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(url));
}

/* An IP literal ([v6] or dotted digits), which LlamaParse refuses as a callback host. */
static bool
host_is_ip(const char *host, int len)
{
	if (len > 0 && host[0] == '[')
		return true;
	return len > 0 && (int) strspn(host, "0123456789.") == len;
}

/*
 * What LlamaParse would refuse in a callback URL, or NULL.  Its documented
 * rules (developers.llamaindex.ai, LlamaParse "Webhook"): https, a domain
 * name rather than an IP address, under 200 characters — counted with the
 * job and token tvdb appends.  TVDB_CALLBACK_RULES_LOCAL lifts the first
 * two, for test setups whose fake service posts to a loopback receiver.
 */
char *
tvdb_callback_url_problem(const char *url, int rules)
{
	const char *host;
	int			hostlen;

	if (url == NULL || url[0] == '\0')
		return NULL;
	if (strlen(url) + TVDB_CALLBACK_SUFFIX_LEN >= TVDB_CALLBACK_URL_MAX)
		return psprintf("it is %zu characters; with the job and token tvdb appends (%d) it would reach "
						"LlamaParse's limit of %d", strlen(url), TVDB_CALLBACK_SUFFIX_LEN,
						TVDB_CALLBACK_URL_MAX);
	if (strchr(url, '#') != NULL)
		return pstrdup("it has a fragment (#), which would hide the job and token tvdb appends");
	if (rules == TVDB_CALLBACK_RULES_LOCAL)
		return NULL;
	if (pg_strncasecmp(url, "https://", 8) != 0)
		return pstrdup("LlamaParse only calls https:// URLs");
	host = url + 8;
	if (strchr(host, '@') != NULL && strchr(host, '@') < host + strcspn(host, "/?"))
		host = strchr(host, '@') + 1;
	hostlen = host[0] == '[' ? (int) strcspn(host, "]") + 1 : (int) strcspn(host, ":/?");
	if (host_is_ip(host, hostlen))
		return pstrdup("LlamaParse needs a domain name as the host, not an IP address");
	return NULL;
}
