-- C, one verification per statement (a webhook request).
\set id random(1, :rows)
SELECT tvdb.verify_webhook_signature(body, headers, ARRAY['bench-webhook-secret'])::int AS ok
FROM bench.bodies WHERE kib = :kib AND id = :id \gset
\if :ok = 0
SELECT 'signature rejected'::int;
\endif
