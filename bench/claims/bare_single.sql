-- bare, single: pgmq's read (make the oldest visible message invisible for
-- 60 s, SKIP LOCKED, and return it), then its archive (move the message to
-- the archive table), in one transaction.
BEGIN;
UPDATE bench.q SET vt = now() + interval '60 seconds', read_ct = read_ct + 1
WHERE msg_id = (SELECT msg_id FROM bench.q WHERE vt <= now()
                ORDER BY msg_id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING msg_id, read_ct, enqueued_at, vt, message \gset
WITH archived AS (DELETE FROM bench.q WHERE msg_id = :msg_id
                  RETURNING msg_id, read_ct, enqueued_at, vt, message)
INSERT INTO bench.a (msg_id, read_ct, enqueued_at, vt, message)
SELECT msg_id, read_ct, enqueued_at, vt, message FROM archived;
COMMIT;
