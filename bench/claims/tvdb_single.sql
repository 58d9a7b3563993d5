-- tvdb, single: claim one due job in 'parsed' and move it to 'chunking' under
-- a 60 s lease, in one call (tvdb._take, one UPDATE ... SKIP LOCKED); the
-- triggers check the edge, write its event row and NOTIFY.
SELECT tvdb._take('parsed', 'chunking', 'bench-' || :client_id, 1, 60);
