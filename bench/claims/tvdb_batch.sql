-- tvdb, batch: the same for up to 10 jobs in one call.
SELECT tvdb._take('parsed', 'chunking', 'bench-' || :client_id, 10, 60);
