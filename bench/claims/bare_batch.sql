-- bare, batch: the same for up to 10 messages (the read returns them all; the
-- client keeps their ids for the archive).
BEGIN;
WITH r AS (UPDATE bench.q SET vt = now() + interval '60 seconds', read_ct = read_ct + 1
           WHERE msg_id IN (SELECT msg_id FROM bench.q WHERE vt <= now()
                            ORDER BY msg_id LIMIT 10 FOR UPDATE SKIP LOCKED)
           RETURNING msg_id, read_ct, enqueued_at, vt, message)
SELECT array_agg(msg_id) AS ids, array_agg(message) AS messages FROM r \gset
WITH archived AS (DELETE FROM bench.q WHERE msg_id = ANY (:ids::bigint[])
                  RETURNING msg_id, read_ct, enqueued_at, vt, message)
INSERT INTO bench.a (msg_id, read_ct, enqueued_at, vt, message)
SELECT msg_id, read_ct, enqueued_at, vt, message FROM archived;
COMMIT;
