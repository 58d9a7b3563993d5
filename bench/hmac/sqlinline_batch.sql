-- The SQL check written into the query itself, every body of the size in
-- one statement.
SELECT count(*) FILTER (WHERE v.ok) AS ok
FROM bench.bodies b,
     LATERAL (SELECT coalesce(bool_or(encode(hmac(b.body, convert_to(s, 'UTF8'), 'sha256'), 'hex') = h.sig), false) AS ok
              FROM (SELECT CASE WHEN v LIKE 'sha256=%' THEN substr(v, 8) ELSE v END AS sig
                    FROM (SELECT lower(btrim(value)) AS v
                          FROM jsonb_each_text(b.headers)
                          WHERE lower(key) = 'x-webhook-signature'
                          LIMIT 1) x) h,
                   unnest(ARRAY['bench-webhook-secret']) AS s) v
WHERE b.kib = :kib \gset
\if :ok != :rows
SELECT 'signature rejected'::int;
\endif
