-- SQL function, every body of the size in one statement.
SELECT count(*) FILTER (WHERE bench.sql_verify_webhook_signature(body, headers, ARRAY['bench-webhook-secret'])) AS ok
FROM bench.bodies WHERE kib = :kib \gset
\if :ok != :rows
SELECT 'signature rejected'::int;
\endif
