-- Webhook signatures, in C (src/hmac.c).

CREATE FUNCTION tvdb.hmac_sha256(key bytea, message bytea)
    RETURNS bytea
    AS 'MODULE_PATHNAME', 'tvdb_hmac_sha256'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION tvdb.hmac_sha256(bytea, bytea) IS 'HMAC-SHA256 of message under key';

CREATE FUNCTION tvdb.verify_webhook_signature(body bytea, headers jsonb, secrets text[] DEFAULT NULL)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'tvdb_verify_webhook_signature'
    LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION tvdb.verify_webhook_signature(bytea, jsonb, text[]) IS
    'true when any secret (NULL: tvdb.webhook_secrets) signs the body: sha256=<hex> headers or Standard Webhooks';

-- With NULL secrets it checks against the configured ones: not for everyone.
REVOKE ALL ON FUNCTION tvdb.verify_webhook_signature(bytea, jsonb, text[]) FROM PUBLIC;
