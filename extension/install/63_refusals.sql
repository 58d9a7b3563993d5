-- Refused webhook deliveries (no valid token, secret header or signature),
-- counted per minute in one row: a flood of forged deliveries must not
-- write a row each. Names the signature headers seen, never a body or value.
CREATE TABLE upload_pipeline.webhook_refusals (
    minute            timestamptz NOT NULL,
    endpoint          text NOT NULL,
    refused           bigint NOT NULL CHECK (refused > 0),
    body_bytes        bigint NOT NULL CHECK (body_bytes >= 0),
    signature_headers text[] NOT NULL DEFAULT '{}',
    last_at           timestamptz NOT NULL,
    PRIMARY KEY (minute, endpoint)
);
COMMENT ON TABLE upload_pipeline.webhook_refusals IS
    'webhook deliveries refused as unauthenticated, per minute and endpoint';
SELECT pg_catalog.pg_extension_config_dump('upload_pipeline.webhook_refusals', '');

CREATE VIEW tvdb.webhook_refusals AS
    SELECT minute, endpoint, refused, body_bytes, signature_headers, last_at
    FROM upload_pipeline.webhook_refusals;
COMMENT ON VIEW tvdb.webhook_refusals IS
    'refused (unauthenticated) webhook deliveries per minute: how many, their bytes, the signature headers they carried';
