-- bench/hmac/setup.sql — run by run.sh.  Bodies in a table, so the C and the
-- SQL verification read the same data: 256 random bodies of 1 KiB (stored in
-- the heap row) and 8 of 1 MiB (TOASTed; random bytes do not compress), each
-- with realistic headers carrying its genuine "sha256=<hex>" signature under
-- the secret 'bench-webhook-secret'.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS tvdb CASCADE;
CREATE SCHEMA bench;

CREATE TABLE bench.bodies (
    kib     integer NOT NULL,
    id      integer NOT NULL,
    body    bytea NOT NULL,
    headers jsonb,
    PRIMARY KEY (kib, id)
);
INSERT INTO bench.bodies (kib, id, body)
SELECT 1, i, gen_random_bytes(1024) FROM generate_series(1, 256) i;
INSERT INTO bench.bodies (kib, id, body)
SELECT 1024, i, (SELECT string_agg(gen_random_bytes(1024), ''::bytea) FROM generate_series(1, 1024 + 0 * i))
FROM generate_series(1, 8) i;
UPDATE bench.bodies
SET headers = jsonb_build_object(
        'Content-Type', 'application/json',
        'User-Agent', 'LlamaParse-Webhook/1.0',
        'X-Request-Id', md5(kib || '/' || id)::uuid,
        'x-webhook-signature', 'sha256=' || encode(hmac(body, 'bench-webhook-secret', 'sha256'), 'hex'));
ALTER TABLE bench.bodies ALTER headers SET NOT NULL;

-- The same check in SQL with pgcrypto: the header found case-insensitively,
-- an optional "sha256=" prefix stripped, the hex HMAC of the body under each
-- secret compared.  (Plain =, not constant-time: SQL has no such compare.)
CREATE FUNCTION bench.sql_verify_webhook_signature(body bytea, headers jsonb, secrets text[])
    RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT coalesce(bool_or(encode(hmac(body, convert_to(s, 'UTF8'), 'sha256'), 'hex') = h.sig), false)
    FROM (SELECT CASE WHEN v LIKE 'sha256=%' THEN substr(v, 8) ELSE v END AS sig
          FROM (SELECT lower(btrim(value)) AS v
                FROM jsonb_each_text(headers)
                WHERE lower(key) = 'x-webhook-signature'
                LIMIT 1) x) h,
         unnest(secrets) AS s
$$;

VACUUM ANALYZE bench.bodies;

-- Both sides must accept every genuine signature and reject a wrong secret
-- and a changed body.
DO $$
DECLARE
    bad text;
BEGIN
    SELECT string_agg(format('%s KiB #%s: C %s/%s/%s, SQL %s/%s/%s', kib, id, c, c_secret, c_body, s, s_secret, s_body), '; ')
    INTO bad
    FROM (SELECT kib, id,
                 tvdb.verify_webhook_signature(body, headers, ARRAY['bench-webhook-secret']) AS c,
                 bench.sql_verify_webhook_signature(body, headers, ARRAY['bench-webhook-secret']) AS s,
                 tvdb.verify_webhook_signature(body, headers, ARRAY['other-secret']) AS c_secret,
                 bench.sql_verify_webhook_signature(body, headers, ARRAY['other-secret']) AS s_secret,
                 tvdb.verify_webhook_signature(body || '\x00'::bytea, headers, ARRAY['bench-webhook-secret']) AS c_body,
                 bench.sql_verify_webhook_signature(body || '\x00'::bytea, headers, ARRAY['bench-webhook-secret']) AS s_body
          FROM bench.bodies) t
    WHERE NOT (c AND s) OR c_secret OR s_secret OR c_body OR s_body;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'verification disagrees with the genuine signatures (true/false/false expected): %', bad;
    END IF;
END
$$;
SELECT format('   %s bodies of %s KiB, genuine signatures accepted and forgeries rejected by both C and SQL',
              count(*), kib) AS " "
FROM bench.bodies GROUP BY kib ORDER BY kib;
