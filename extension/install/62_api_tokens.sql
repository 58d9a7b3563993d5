-- Bearer tokens for tvdb-webhookd's POST /api/v1/upload.  Only a token's
-- sha256 is kept: the token itself is shown once, by create_api_token.  A
-- token is looked up by its hash (an index probe on a hash reveals nothing
-- about the token), so no comparison of secrets takes time that depends on
-- them.  Superusers manage tokens; the daemon's role (tvdb_webhook) can only
-- upload with one.
CREATE TABLE upload_pipeline.api_tokens (
    name         text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
    token_sha256 bytea NOT NULL UNIQUE CHECK (octet_length(token_sha256) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    owner        name NOT NULL    -- the role its uploads belong to (tvdb.isolate_documents)
);
COMMENT ON TABLE upload_pipeline.api_tokens IS
    'bearer tokens for POST /api/v1/upload, by name: only their sha256 (tvdb.create_api_token, tvdb.revoke_api_token)';
SELECT pg_catalog.pg_extension_config_dump('upload_pipeline.api_tokens', '');

CREATE FUNCTION tvdb.create_api_token(name text, owner name DEFAULT 'tvdb_app') RETURNS text
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- 244 random bits from the server's strong random source (two v4 UUIDs)
    token text := 'tvdb_' || replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' THEN
        RAISE EXCEPTION 'invalid api token name "%"', name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A name is 1 to 63 letters, digits, ".", "_" or "-", starting with a letter or digit.',
                  HINT = 'Name the token for who uses it, e.g. ''billing-service''.';
    END IF;
    IF owner IS NULL OR to_regrole(quote_ident(owner)) IS NULL THEN
        RAISE EXCEPTION 'role "%" does not exist', owner
            USING ERRCODE = 'undefined_object',
                  DETAIL = 'The documents uploaded with a token belong to its owner role.',
                  HINT = 'Name an existing role, e.g. the tenant''s own role granted tvdb_app.';
    END IF;
    INSERT INTO upload_pipeline.api_tokens (name, token_sha256, owner)
    VALUES (create_api_token.name, sha256(convert_to(token, 'UTF8')), create_api_token.owner)
    ON CONFLICT ON CONSTRAINT api_tokens_pkey DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'api token "%" already exists', name
            USING ERRCODE = 'duplicate_object',
                  DETAIL = 'Its value was shown only when it was created.',
                  HINT = format('Revoke it first with tvdb.revoke_api_token(%L), or choose another name.', name);
    END IF;
    RETURN token;
END
$$;
COMMENT ON FUNCTION tvdb.create_api_token(text, name) IS
    'a new bearer token for POST /api/v1/upload, returned once (only its sha256 is kept), its uploads owned by owner; superusers only';

CREATE FUNCTION tvdb.revoke_api_token(name text) RETURNS boolean
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH gone AS (DELETE FROM upload_pipeline.api_tokens t WHERE t.name = revoke_api_token.name RETURNING 1)
    SELECT count(*) > 0 FROM gone
$$;
COMMENT ON FUNCTION tvdb.revoke_api_token(text) IS
    'revoke a bearer token at once; true if it existed; superusers only';

CREATE VIEW tvdb.api_tokens AS
    SELECT name, owner, created_at FROM upload_pipeline.api_tokens ORDER BY name;
COMMENT ON VIEW tvdb.api_tokens IS 'the bearer tokens by name (their values are not kept); superusers only';

-- The name of the token, or NULL if it is not one.
CREATE FUNCTION tvdb._api_token_name(token text) RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.name FROM upload_pipeline.api_tokens t
    WHERE t.token_sha256 = sha256(convert_to(coalesce(token, ''), 'UTF8'))
$$;
COMMENT ON FUNCTION tvdb._api_token_name(text) IS 'internal: which token this is, by its sha256, or NULL';

-- Is this a valid token?  tvdb-webhookd asks before it reads an upload's
-- body, so that an unauthenticated client cannot make it buffer one.
CREATE FUNCTION tvdb.api_token_valid(token text) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT tvdb._api_token_name(token) IS NOT NULL $$;
COMMENT ON FUNCTION tvdb.api_token_valid(text) IS 'whether a bearer token is valid (tvdb-webhookd, before reading an upload)';

-- An upload through tvdb-webhookd: the token is checked, then tvdb.upload
-- stores the document.  The answer has the receiver's shape,
-- {"http_status", "result", ...}: 201 with job_id and correlation_id, 401
-- for a token that is not valid, 400 for input tvdb.upload refuses, 413 for
-- a document over tvdb.max_upload_bytes.
CREATE FUNCTION tvdb.upload_with_token(token text, filename text, content bytea, mime_type text DEFAULT NULL,
                                       correlation_id uuid DEFAULT NULL)
    RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job uuid;
    corr uuid;
BEGIN
    IF tvdb._api_token_name(token) IS NULL THEN
        RETURN jsonb_build_object('http_status', 401, 'result', 'unauthorized',
                                  'detail', 'missing or unknown bearer token');
    END IF;
    BEGIN
        job := tvdb.upload(filename, content, mime_type, correlation_id);
    EXCEPTION
        WHEN null_value_not_allowed OR invalid_parameter_value OR invalid_text_representation THEN
            RETURN jsonb_build_object('http_status', 400, 'result', 'bad_request', 'detail', SQLERRM);
        WHEN program_limit_exceeded THEN
            RETURN jsonb_build_object('http_status', 413, 'result', 'payload_too_large', 'detail', SQLERRM);
    END;
    SELECT j.correlation_id INTO corr FROM upload_pipeline.upload_jobs j WHERE j.job_id = job;
    UPDATE upload_pipeline.documents d SET owner = t.owner
    FROM upload_pipeline.upload_jobs j, upload_pipeline.api_tokens t
    WHERE j.job_id = job AND d.document_id = j.document_id
      AND t.token_sha256 = sha256(convert_to(token, 'UTF8'));
    RETURN jsonb_build_object('http_status', 201, 'result', 'created', 'job_id', job, 'correlation_id', corr);
END
$$;
COMMENT ON FUNCTION tvdb.upload_with_token(text, text, bytea, text, uuid) IS
    'tvdb.upload for tvdb-webhookd''s POST /api/v1/upload, if token is a valid bearer token; {"http_status", "result", "job_id", "correlation_id"}';

REVOKE ALL ON upload_pipeline.api_tokens FROM PUBLIC;
REVOKE ALL ON tvdb.api_tokens FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb.create_api_token(text, name) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb.revoke_api_token(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb._api_token_name(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb.api_token_valid(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION tvdb.upload_with_token(text, text, bytea, text, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tvdb.api_token_valid(text), tvdb.upload_with_token(text, text, bytea, text, uuid)
    TO tvdb_webhook;
-- tvdb-webhookd's role is granted tvdb_webhook (callbacks, uploads) and
-- tvdb_monitor (health, metrics); this is all tvdb_webhook needs for callbacks.
GRANT EXECUTE ON FUNCTION tvdb.handle_llamaparse_webhook(bytea, jsonb, jsonb) TO tvdb_webhook;
