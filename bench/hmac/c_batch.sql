-- C, every body of the size in one statement: the function's own cost.
SELECT count(*) FILTER (WHERE tvdb.verify_webhook_signature(body, headers, ARRAY['bench-webhook-secret'])) AS ok
FROM bench.bodies WHERE kib = :kib \gset
\if :ok != :rows
SELECT 'signature rejected'::int;
\endif
