/*
 * hmac.c — webhook signatures: tvdb.hmac_sha256() and
 * tvdb.verify_webhook_signature().  HMAC comes from PostgreSQL's own
 * pg_hmac_* (OpenSSL underneath); comparisons are constant-time and every
 * buffer holding key material or a MAC is zeroed before it is freed.
 *
 * Everything in a request (headers, signatures, timestamps) is attacker
 * controlled, so malformed input makes verification fail; it never raises.
 */
#include "tvdb.h"

#include "catalog/pg_type.h"
#include "common/base64.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(tvdb_hmac_sha256);
PG_FUNCTION_INFO_V1(tvdb_verify_webhook_signature);

#define MAC_LEN PG_SHA256_DIGEST_LENGTH
#define WHSEC_PREFIX "whsec_"

/*
 * One secret, as the HMAC keys it gives: for the sha256=<hex> headers its
 * bytes (a "whsec_" secret: the base64 it holds); for Standard Webhooks the
 * base64 it holds, prefixed or not, as the reference library reads it
 * (sw_len 0: the secret holds none, and serves only the hex headers).
 */
typedef struct Key
{
	char	   *bytes;
	int			len;
	char	   *sw;
	int			sw_len;
} Key;

void
tvdb_hmac(const char *key, int keylen, const char *const *parts,
		  const int *lens, int nparts, uint8 *out)
{
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);

	if (ctx == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY),
						errmsg("out of memory")));
	if (pg_hmac_init(ctx, (const uint8 *) key, keylen) < 0)
		goto fail;
	for (int i = 0; i < nparts; i++)
		if (pg_hmac_update(ctx, (const uint8 *) parts[i], lens[i]) < 0)
			goto fail;
	if (pg_hmac_final(ctx, out, MAC_LEN) < 0)
		goto fail;
	pg_hmac_free(ctx);			/* zeroes its own state */
	return;

fail:
	{
		const char *why = pg_hmac_error(ctx);

		pg_hmac_free(ctx);
		elog(ERROR, "could not compute HMAC-SHA256: %s", why);
	}
}

/* tvdb.hmac_sha256(key bytea, message bytea) RETURNS bytea */
Datum
tvdb_hmac_sha256(PG_FUNCTION_ARGS)
{
	bytea	   *key = PG_GETARG_BYTEA_PP(0);
	bytea	   *msg = PG_GETARG_BYTEA_PP(1);
	bytea	   *result = palloc(VARHDRSZ + MAC_LEN);
	const char *parts[1] = {VARDATA_ANY(msg)};
	int			lens[1] = {VARSIZE_ANY_EXHDR(msg)};

	tvdb_hmac(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key), parts, lens, 1,
				(uint8 *) VARDATA(result));
	SET_VARSIZE(result, VARHDRSZ + MAC_LEN);
	PG_RETURN_BYTEA_P(result);
}

static void
free_keys(Key *keys, int nkeys)
{
	for (int i = 0; i < nkeys; i++)
	{
		explicit_bzero(keys[i].bytes, keys[i].len);
		pfree(keys[i].bytes);
		if (keys[i].sw)
		{
			explicit_bzero(keys[i].sw, keys[i].sw_len);
			pfree(keys[i].sw);
		}
	}
	pfree(keys);
}

/*
 * The bytes a base64 secret holds, read as the Standard Webhooks reference
 * library (Python) reads it: characters outside the base64 alphabet are
 * skipped, padding is optional.  -1 when it holds no whole byte sequence.
 */
static int
secret_base64(const char *s, char **out)
{
	int			n = strlen(s);
	char	   *clean = palloc(n + 4);
	int			k = 0;
	int			len;

	for (const char *p = s; *p && *p != '='; p++)
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			(*p >= '0' && *p <= '9') || *p == '+' || *p == '/')
			clean[k++] = *p;
	if (k % 4 == 1)
		len = -1;
	else
	{
		while (k % 4 != 0)
			clean[k++] = '=';
		*out = palloc(pg_b64_dec_len(k) + 1);
		len = pg_b64_decode(clean, k, *out, pg_b64_dec_len(k) + 1);
		if (len <= 0)
		{
			explicit_bzero(*out, pg_b64_dec_len(k) + 1);
			pfree(*out);
			*out = NULL;
		}
	}
	explicit_bzero(clean, n + 4);
	pfree(clean);
	return len;
}

/*
 * The secrets in force.  A "whsec_" secret that holds no key is a
 * configuration error, reported without echoing it.
 */
static pg_noinline Key *
decode_secrets(List *secrets, int *nkeys)
{
	Key		   *keys = palloc0(sizeof(Key) * Max(list_length(secrets), 1));
	ListCell   *lc;
	int			n = 0;

	foreach(lc, secrets)
	{
		const char *s = lfirst(lc);
		bool		prefixed = strncmp(s, WHSEC_PREFIX, strlen(WHSEC_PREFIX)) == 0;
		char	   *sw = NULL;
		int			sw_len;

		if (s[0] == '\0')
			continue;
		sw_len = secret_base64(prefixed ? s + strlen(WHSEC_PREFIX) : s, &sw);
		if (prefixed && sw_len <= 0)
		{
			/* the keys decoded so far are zeroed on this path too */
			free_keys(keys, n);
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("webhook secret %d is not valid base64 after \"whsec_\"", n + 1),
					 errhint("Standard Webhooks secrets are \"whsec_\" followed by the base64 of the key.")));
		}
		keys[n].sw = sw_len > 0 ? sw : NULL;
		keys[n].sw_len = Max(sw_len, 0);
		if (prefixed)
		{
			keys[n].bytes = palloc(sw_len);
			memcpy(keys[n].bytes, sw, sw_len);
			keys[n].len = sw_len;
		}
		else
		{
			keys[n].bytes = pstrdup(s);
			keys[n].len = strlen(s);
		}
		n++;
	}
	*nkeys = n;
	return keys;
}


/* The headers a signature can be in, found in one pass over the jsonb. */
enum
{
	H_WEBHOOK_SIGNATURE, H_WEBHOOK_ID, H_WEBHOOK_TIMESTAMP,
	H_X_WEBHOOK_SIGNATURE, H_LC_SIGNATURE, H_X_HUB_SIGNATURE_256,
	N_HEADERS
};

static const char *const header_names[N_HEADERS] = {
	"webhook-signature", "webhook-id", "webhook-timestamp",
	"X-Webhook-Signature", "LC-Signature", "X-Hub-Signature-256",
};

/* String values of the headers above (names in any case; first one wins), else NULL. */
static void
find_headers(Jsonb *headers, char **values)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			matched = -1;

	memset(values, 0, sizeof(char *) * N_HEADERS);
	if (headers == NULL || !JB_ROOT_IS_OBJECT(headers))
		return;
	it = JsonbIteratorInit(&headers->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			matched = -1;
			for (int i = 0; i < N_HEADERS; i++)
				if (v.val.string.len == (int) strlen(header_names[i]) &&
					pg_strncasecmp(v.val.string.val, header_names[i], v.val.string.len) == 0)
					matched = i;
		}
		else if (tok == WJB_VALUE && matched >= 0 && values[matched] == NULL &&
				 v.type == jbvString)
			values[matched] = pnstrdup(v.val.string.val, v.val.string.len);
	}
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* "sha256=<64 hex>" or bare hex into a MAC; false when malformed. */
static bool
parse_hex_signature(const char *value, uint8 *mac)
{
	const char *hex = value;

	while (*hex == ' ')
		hex++;
	if (pg_strncasecmp(hex, "sha256=", 7) == 0)
		hex += 7;
	if (strspn(hex, "0123456789abcdefABCDEF") != MAC_LEN * 2)
		return false;
	for (int i = 0; i < MAC_LEN; i++)
		mac[i] = (uint8) (hexval(hex[2 * i]) << 4 | hexval(hex[2 * i + 1]));
	hex += MAC_LEN * 2;
	while (*hex == ' ')
		hex++;
	return *hex == '\0';
}

static bool
any_key_matches(Key *keys, int nkeys, bool standard, const char *const *parts,
				const int *lens, int nparts, const uint8 *claimed)
{
	uint8		mac[MAC_LEN];
	bool		ok = false;

	/* Try every key even after a match, so timing says nothing about which. */
	for (int k = 0; k < nkeys; k++)
	{
		if (standard && keys[k].sw_len == 0)
			continue;
		if (standard)
			tvdb_hmac(keys[k].sw, keys[k].sw_len, parts, lens, nparts, mac);
		else
			tvdb_hmac(keys[k].bytes, keys[k].len, parts, lens, nparts, mac);
		ok |= timingsafe_bcmp(mac, claimed, MAC_LEN) == 0;
	}
	explicit_bzero(mac, sizeof(mac));
	return ok;
}

/* The sha256=<hex> headers, over the raw body. */
static bool
verify_hex_headers(char **values, bytea *body, Key *keys, int nkeys)
{
	const char *parts[1] = {VARDATA_ANY(body)};
	int			lens[1] = {VARSIZE_ANY_EXHDR(body)};

	for (int i = H_X_WEBHOOK_SIGNATURE; i <= H_X_HUB_SIGNATURE_256; i++)
	{
		uint8		claimed[MAC_LEN];

		if (values[i] != NULL && parse_hex_signature(values[i], claimed) &&
			any_key_matches(keys, nkeys, false, parts, lens, 1, claimed))
			return true;
	}
	return false;
}

/* A webhook-timestamp (decimal seconds) within tvdb.webhook_tolerance of now. */
static bool
timestamp_acceptable(const char *ts)
{
	int64		sent = 0;
	int64		now;

	if (*ts == '\0' || strspn(ts, "0123456789") != strlen(ts) || strlen(ts) > 15)
		return false;
	for (const char *p = ts; *p; p++)
		sent = sent * 10 + (*p - '0');
	if (tvdb_webhook_tolerance == 0)
		return true;
	now = (int64) timestamptz_to_time_t(GetCurrentTimestamp());
	return sent >= now - tvdb_webhook_tolerance && sent <= now + tvdb_webhook_tolerance;
}

/*
 * Standard Webhooks: webhook-signature is a space-separated list of
 * "v1,<base64>" over "id.timestamp.body"; other versions are skipped.
 */
static bool
verify_standard_webhooks(char **values, bytea *body, Key *keys, int nkeys)
{
	char	   *sigs = values[H_WEBHOOK_SIGNATURE];
	char	   *id = values[H_WEBHOOK_ID];
	char	   *ts = values[H_WEBHOOK_TIMESTAMP];
	const char *parts[5];
	int			lens[5];
	char	   *tok;
	char	   *save = NULL;

	if (sigs == NULL || id == NULL || ts == NULL || !timestamp_acceptable(ts))
		return false;
	parts[0] = id;
	lens[0] = strlen(id);
	parts[1] = ".";
	lens[1] = 1;
	parts[2] = ts;
	lens[2] = strlen(ts);
	parts[3] = ".";
	lens[3] = 1;
	parts[4] = VARDATA_ANY(body);
	lens[4] = VARSIZE_ANY_EXHDR(body);

	for (tok = strtok_r(sigs, " ", &save); tok != NULL; tok = strtok_r(NULL, " ", &save))
	{
		uint8		claimed[MAC_LEN + 3];	/* room for what padding decodes */
		int			len;

		if (strncmp(tok, "v1,", 3) != 0 || strlen(tok + 3) > 64)
			continue;
		len = pg_b64_decode(tok + 3, strlen(tok + 3), (char *) claimed, sizeof(claimed));
		if (len == MAC_LEN &&
			any_key_matches(keys, nkeys, true, parts, lens, 5, claimed))
			return true;
	}
	return false;
}

/*
 * The key a configured secret gives the sha256=<hex> headers and callback
 * tokens: its bytes, or for a "whsec_" secret the bytes its base64 holds.
 * The caller zeroes and frees it.
 */
char *
tvdb_secret_key(const char *secret, int *len)
{
	Key		   *keys;
	int			n;
	char	   *key;

	keys = decode_secrets(list_make1((char *) secret), &n);
	if (n == 0)
	{
		pfree(keys);
		*len = 0;
		return NULL;
	}
	key = palloc(keys[0].len);
	memcpy(key, keys[0].bytes, keys[0].len);
	*len = keys[0].len;
	free_keys(keys, n);
	return key;
}

/* Split tvdb.webhook_secrets at commas, trimming blanks. */
List *
tvdb_configured_webhook_secrets(void)
{
	List	   *out = NIL;
	char	   *copy;
	char	   *tok;
	char	   *save = NULL;

	if (tvdb_webhook_secrets == NULL)
		return NIL;
	copy = pstrdup(tvdb_webhook_secrets);
	for (tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save))
	{
		char	   *end;

		while (*tok == ' ' || *tok == '\t')
			tok++;
		end = tok + strlen(tok);
		while (end > tok && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (*tok != '\0')
			out = lappend(out, tok);
	}
	return out;
}

bool
tvdb_verify_signature(bytea *body, Jsonb *headers, List *secrets)
{
	Key		   *keys;
	int			nkeys;
	volatile bool ok = false;
	char	   *values[N_HEADERS];

	keys = decode_secrets(secrets, &nkeys);
	PG_TRY();
	{
		find_headers(headers, values);
		ok = nkeys > 0 &&
			(verify_standard_webhooks(values, body, keys, nkeys) ||
			 verify_hex_headers(values, body, keys, nkeys));
	}
	PG_FINALLY();
	{
		free_keys(keys, nkeys);	/* zeroed also when verifying raised an error */
	}
	PG_END_TRY();
	return ok;
}

/*
 * tvdb.verify_webhook_signature(body bytea, headers jsonb,
 *                               secrets text[] DEFAULT NULL) RETURNS boolean
 */
Datum
tvdb_verify_webhook_signature(PG_FUNCTION_ARGS)
{
	List	   *secrets = NIL;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_BOOL(false);

	if (PG_ARGISNULL(2))
	{
		secrets = tvdb_configured_webhook_secrets();
		if (secrets == NIL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("no webhook secrets are configured"),
					 errhint("Set tvdb.webhook_secrets in postgresql.conf and reload, or pass the secrets.")));
	}
	else
	{
		ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(2);
		Datum	   *elems;
		bool	   *nulls;
		int			n;

		deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
		for (int i = 0; i < n; i++)
			if (!nulls[i])
				secrets = lappend(secrets, TextDatumGetCString(elems[i]));
	}

	PG_RETURN_BOOL(tvdb_verify_signature(PG_GETARG_BYTEA_PP(0),
										 PG_GETARG_JSONB_P(1), secrets));
}
