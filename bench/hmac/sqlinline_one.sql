-- The SQL check written into the query itself (no function call), one
-- verification per statement: the SQL side without its function overhead.
\set id random(1, :rows)
SELECT v.ok::int AS ok
FROM bench.bodies b,
     LATERAL (SELECT coalesce(bool_or(encode(hmac(b.body, convert_to(s, 'UTF8'), 'sha256'), 'hex') = h.sig), false) AS ok
              FROM (SELECT CASE WHEN v LIKE 'sha256=%' THEN substr(v, 8) ELSE v END AS sig
                    FROM (SELECT lower(btrim(value)) AS v
                          FROM jsonb_each_text(b.headers)
                          WHERE lower(key) = 'x-webhook-signature'
                          LIMIT 1) x) h,
                   unnest(ARRAY['bench-webhook-secret']) AS s) v
WHERE b.kib = :kib AND b.id = :id \gset
\if :ok = 0
SELECT 'signature rejected'::int;
\endif
