-- SQL function (pgcrypto hmac + encode), one verification per statement.
\set id random(1, :rows)
SELECT bench.sql_verify_webhook_signature(body, headers, ARRAY['bench-webhook-secret'])::int AS ok
FROM bench.bodies WHERE kib = :kib AND id = :id \gset
\if :ok = 0
SELECT 'signature rejected'::int;
\endif
