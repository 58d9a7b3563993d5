-- Webhook signatures: tvdb.hmac_sha256() and tvdb.verify_webhook_signature()
-- against published vectors, tampering, rotation and the time tolerance.
-- Test signatures are made with pgcrypto's hmac(), an independent HMAC.
\set VERBOSITY default
\set SHOW_CONTEXT never

-- RFC 4231 test case 2, and GitHub's published example.
SELECT encode(tvdb.hmac_sha256('Jefe', 'what do ya want for nothing?'), 'hex');
SELECT encode(tvdb.hmac_sha256('It''s a Secret to Everybody', 'Hello, World!'), 'hex');
SELECT tvdb.hmac_sha256('', '') = hmac(''::bytea, ''::bytea, 'sha256') AS empty_ok,
       tvdb.hmac_sha256(NULL, 'x') IS NULL AS strict;

CREATE TEMP TABLE gh AS SELECT
  'Hello, World!'::bytea AS body,
  'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17' AS sig,
  ARRAY['It''s a Secret to Everybody'] AS secrets;

-- The sha256=<hex> headers, names in any case, prefix optional, hex in any case.
SELECT h AS header, tvdb.verify_webhook_signature(body, jsonb_build_object(h, sig), secrets) AS ok
FROM gh, unnest(ARRAY['X-Webhook-Signature', 'x-webhook-signature', 'LC-Signature',
                      'lc-signature', 'X-Hub-Signature-256', 'X-HUB-SIGNATURE-256']) AS h;
SELECT v AS value, tvdb.verify_webhook_signature(body, jsonb_build_object('X-Webhook-Signature', v), secrets) AS ok
FROM gh, unnest(ARRAY[substr(sig, 8), upper(substr(sig, 8)), 'SHA256=' || substr(sig, 8),
                      'sha256=' || substr(sig, 8, 63),          -- one digit short
                      sig || '0',                               -- one digit long
                      'sha1=' || substr(sig, 8),
                      'sha256=' || repeat('z', 64), '', 'sha256=']) AS v;

-- Tampering: body, signature, wrong secret, missing header, other header names.
SELECT tvdb.verify_webhook_signature('Hello, World?', jsonb_build_object('X-Webhook-Signature', sig), secrets) AS tampered_body,
       tvdb.verify_webhook_signature(body, jsonb_build_object('X-Webhook-Signature',
         overlay(sig placing '8' from 20 for 1)), secrets) AS tampered_sig,
       tvdb.verify_webhook_signature(body, jsonb_build_object('X-Webhook-Signature', sig), '{wrong}') AS wrong_secret,
       tvdb.verify_webhook_signature(body, '{}', secrets) AS no_header,
       tvdb.verify_webhook_signature(body, jsonb_build_object('X-Signature', sig), secrets) AS other_header,
       tvdb.verify_webhook_signature(body, jsonb_build_object('X-Webhook-Signature', 42), secrets) AS not_a_string,
       tvdb.verify_webhook_signature(body, '[1, 2]', secrets) AS headers_not_object,
       tvdb.verify_webhook_signature(NULL, '{}', secrets) AS null_body
FROM gh;

-- Rotation: any active secret passes; none of them, fails.
SELECT tvdb.verify_webhook_signature(body, jsonb_build_object('LC-Signature', sig),
         ARRAY['old-secret', 'It''s a Secret to Everybody']) AS new_of_two,
       tvdb.verify_webhook_signature(body, jsonb_build_object('LC-Signature', sig),
         ARRAY['It''s a Secret to Everybody', 'next-secret']) AS old_of_two,
       tvdb.verify_webhook_signature(body, jsonb_build_object('LC-Signature', sig),
         ARRAY['old-secret', 'next-secret']) AS neither,
       tvdb.verify_webhook_signature(body, jsonb_build_object('LC-Signature', sig), '{}') AS no_secrets
FROM gh;

-- Standard Webhooks: the spec's vector (timestamp 2021, so tolerance off).
CREATE TEMP TABLE sw AS SELECT
  '{"test": 2432232314}'::bytea AS body,
  'msg_p5jXN8AQM9LWM0D4loKWxJek' AS id, '1614265330' AS ts,
  'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=' AS sig,
  ARRAY['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'] AS secrets;
SET tvdb.webhook_tolerance = 0;
SELECT tvdb.verify_webhook_signature(body, jsonb_build_object('webhook-id', id,
         'webhook-timestamp', ts, 'webhook-signature', sig), secrets) AS spec_vector,
       tvdb.verify_webhook_signature(body, jsonb_build_object('Webhook-Id', id,
         'Webhook-Timestamp', ts, 'Webhook-Signature', 'v1a,abc v2,xyz ' || sig), secrets) AS in_a_list,
       tvdb.verify_webhook_signature('{"test": 2432232315}', jsonb_build_object('webhook-id', id,
         'webhook-timestamp', ts, 'webhook-signature', sig), secrets) AS tampered_body,
       tvdb.verify_webhook_signature(body, jsonb_build_object('webhook-id', id || 'x',
         'webhook-timestamp', ts, 'webhook-signature', sig), secrets) AS tampered_id,
       tvdb.verify_webhook_signature(body, jsonb_build_object('webhook-id', id,
         'webhook-timestamp', '1614265331', 'webhook-signature', sig), secrets) AS tampered_timestamp,
       tvdb.verify_webhook_signature(body, jsonb_build_object('webhook-id', id,
         'webhook-timestamp', ts, 'webhook-signature', 'v2,' || substr(sig, 4)), secrets) AS wrong_version,
       tvdb.verify_webhook_signature(body, jsonb_build_object('webhook-id', id,
         'webhook-timestamp', ts, 'webhook-signature', 'v1,!!!notbase64'), secrets) AS bad_base64,
       tvdb.verify_webhook_signature(body, jsonb_build_object(
         'webhook-timestamp', ts, 'webhook-signature', sig), secrets) AS no_id,
       tvdb.verify_webhook_signature(body, jsonb_build_object('webhook-id', id,
         'webhook-timestamp', ts, 'webhook-signature', sig), '{MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}') AS unprefixed_is_base64_too
FROM sw;
-- The default tolerance of 300 s refuses the 2021 timestamp.
RESET tvdb.webhook_tolerance;
SHOW tvdb.webhook_tolerance;
SELECT tvdb.verify_webhook_signature(body, jsonb_build_object('webhook-id', id,
         'webhook-timestamp', ts, 'webhook-signature', sig), secrets) AS stale_vector
FROM sw;

-- Tolerance around now, in both directions, signed here with pgcrypto.
CREATE FUNCTION pg_temp.sw_headers(body bytea, ts bigint, secret text) RETURNS jsonb
LANGUAGE sql AS $$
  SELECT jsonb_build_object('webhook-id', 'msg_1', 'webhook-timestamp', ts::text,
    'webhook-signature', 'v1,' || encode(hmac(convert_to('msg_1.' || ts || '.', 'UTF8') || body,
                                              decode(substr(secret, 7), 'base64'), 'sha256'), 'base64'))
$$;
SELECT offs, tvdb.verify_webhook_signature('{"a": 1}',
         pg_temp.sw_headers('{"a": 1}', extract(epoch FROM clock_timestamp())::bigint + offs,
                            secrets[1]), secrets) AS ok
FROM sw, unnest(ARRAY[0, -250, 250, -400, 400, -100000, 100000]) AS offs;
SET tvdb.webhook_tolerance = 60;
SELECT offs, tvdb.verify_webhook_signature('{"a": 1}',
         pg_temp.sw_headers('{"a": 1}', extract(epoch FROM clock_timestamp())::bigint + offs,
                            secrets[1]), secrets) AS ok
FROM sw, unnest(ARRAY[-30, 30, -90, 90]) AS offs;
RESET tvdb.webhook_tolerance;

-- Rotation with Standard Webhooks: a delivery signed by both keys, or by either.
SELECT tvdb.verify_webhook_signature('{"a": 1}',
         pg_temp.sw_headers('{"a": 1}', extract(epoch FROM clock_timestamp())::bigint,
                            'whsec_' || encode('second key', 'base64')),
         ARRAY['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'whsec_' || encode('second key', 'base64')]) AS rotated;

-- Secrets as the Standard Webhooks reference library reads them
-- (libraries/python/standardwebhooks/webhooks.py): padding is optional,
-- characters outside base64 are skipped, and a secret without "whsec_" is
-- base64 too.  A secret that holds no base64 serves only the sha256=<hex>
-- headers, where an unprefixed secret stays its own bytes.
SELECT k.label, tvdb.verify_webhook_signature('{"a": 1}',
         pg_temp.sw_headers('{"a": 1}', extract(epoch FROM clock_timestamp())::bigint,
                            'whsec_' || encode('second key', 'base64')), ARRAY[k.secret]) AS standard,
       tvdb.verify_webhook_signature('{"a": 1}', jsonb_build_object('X-Webhook-Signature',
         'sha256=' || encode(hmac('{"a": 1}'::bytea, convert_to(k.secret, 'UTF8'), 'sha256'), 'hex')),
         ARRAY[k.secret]) AS hex_with_its_bytes
FROM (VALUES ('padded', 'whsec_' || encode('second key', 'base64')),
             ('unpadded', 'whsec_' || rtrim(encode('second key', 'base64'), '=')),
             ('unprefixed', encode('second key', 'base64')),
             ('unprefixed, unpadded', rtrim(encode('second key', 'base64'), '=')),
             ('with a line break', E'whsec_c2Vjb2\n5kIGtleQ'),
             ('not base64', 'second key')) AS k(label, secret);

-- Configured secrets (NULL argument) are read from tvdb.webhook_secrets.
SET tvdb.webhook_secrets = '';
SELECT tvdb.verify_webhook_signature(body, jsonb_build_object('X-Webhook-Signature', sig)) FROM gh;
SET tvdb.webhook_secrets = ' first ,It''s a Secret to Everybody ';
SELECT tvdb.verify_webhook_signature(body, jsonb_build_object('X-Webhook-Signature', sig)) AS configured FROM gh;
SET tvdb.webhook_secrets = 'whsec_***';
SELECT tvdb.verify_webhook_signature(body, jsonb_build_object('X-Webhook-Signature', sig)) FROM gh;
RESET tvdb.webhook_secrets;

-- An application role can read neither the secrets nor call the check with them.
-- (An application role is granted the schema, as the README shows.)
CREATE ROLE tvdb_regress_app;
GRANT USAGE ON SCHEMA tvdb TO tvdb_regress_app;
SET ROLE tvdb_regress_app;
SHOW tvdb.webhook_secrets;
SELECT current_setting('tvdb.webhook_secrets');
SELECT count(*) FROM pg_settings WHERE name = 'tvdb.webhook_secrets';
SET tvdb.webhook_secrets = 'mine';
SELECT tvdb.verify_webhook_signature('x', '{}');
SELECT encode(tvdb.hmac_sha256('k', 'm'), 'hex') AS hmac_is_public;
RESET ROLE;
REVOKE USAGE ON SCHEMA tvdb FROM tvdb_regress_app;
DROP ROLE tvdb_regress_app;
