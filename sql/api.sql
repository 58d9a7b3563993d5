-- The SQL API: tvdb.upload(), tvdb.transition(), tvdb.job(), and every bad
-- input getting a clear error while writing nothing.
\set VERBOSITY default
\set SHOW_CONTEXT never

CREATE TEMP VIEW counts AS
  SELECT (SELECT count(*) FROM upload_pipeline.blobs) AS blobs,
         (SELECT count(*) FROM upload_pipeline.documents) AS documents,
         (SELECT count(*) FROM upload_pipeline.upload_jobs) AS jobs,
         (SELECT count(*) FROM upload_pipeline.events) AS events;

-- A good upload: blob with sha256 and size, document, job in uploaded.
SELECT tvdb.upload('notes.txt', convert_to('hello world', 'UTF8')) AS job \gset
SELECT j.status, j.attempts, d.filename, d.mime_type, d.size_bytes,
       d.sha256 = encode(sha256('hello world'), 'hex') AS sha_ok,
       b.path = 'storage://uploads/' || d.document_id || '/notes.txt' AS path_ok,
       b.content = convert_to('hello world', 'UTF8') AS content_ok,
       b.size_bytes, b.content_type, j.correlation_id IS NOT NULL AS has_correlation
FROM upload_pipeline.upload_jobs j
JOIN upload_pipeline.documents d USING (document_id)
JOIN upload_pipeline.blobs b ON b.path = d.storage_path
WHERE j.job_id = :'job';

-- Content type: given, or guessed from the name.
CREATE TEMP TABLE typed AS
  SELECT unnest(ARRAY[tvdb.upload('a.HTML', 'x'), tvdb.upload('b.md', 'x'),
                      tvdb.upload('c.bin', 'x'), tvdb.upload('d.txt', 'x', 'text/x-custom')]) AS job_id;
SELECT d.filename, d.mime_type FROM upload_pipeline.documents d
JOIN upload_pipeline.upload_jobs j USING (document_id) JOIN typed USING (job_id)
ORDER BY d.filename;

-- A caller's correlation id is kept.
SELECT tvdb.upload('e.txt', 'x', NULL, 'cccccccc-0000-4000-8000-000000000003') AS job_e \gset
SELECT correlation_id FROM upload_pipeline.upload_jobs WHERE job_id = :'job_e';

-- A job with a known id, so that messages naming it are stable.
INSERT INTO upload_pipeline.upload_jobs (job_id, document_id)
  SELECT 'dddddddd-0000-4000-8000-000000000004', document_id
  FROM upload_pipeline.upload_jobs WHERE job_id = :'job';
\set job dddddddd-0000-4000-8000-000000000004

-- The job as an application sees it.
SELECT tvdb.transition(:'job', 'parse_queued');
SELECT status, filename, attempts, last_error, in_status_for >= '0'::interval AS timed,
       stage_seconds ? 'uploaded' AS has_upload_timing
FROM tvdb.job(:'job');

-- Bad input: a clear error, and nothing written.
SELECT * FROM counts \gset before_
SELECT tvdb.upload(NULL, 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT tvdb.upload('', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT tvdb.upload(repeat('n', 1025), 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT tvdb.upload('a.txt', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT tvdb.upload('a.txt', '');
\echo :LAST_ERROR_SQLSTATE
-- The type and the name go into the multipart upload to LlamaParse: no
-- CR/LF (header injection), no path separators, media types as RFC 9110 has them.
SELECT tvdb.upload(E'a.pdf\r\nX-Injected: 1', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT tvdb.upload('../../etc/passwd', 'x');
SELECT tvdb.upload(E'dir\\a.pdf', 'x');
SELECT tvdb.upload('a.pdf', 'x', E'application/pdf\r\nContent-Length: 0');
\echo :LAST_ERROR_SQLSTATE
SELECT tvdb.upload('a.pdf', 'x', 'pdf');
SELECT tvdb.upload('a.pdf', 'x', 'application/pdf; x');
SELECT tvdb.upload('a.pdf', 'x', E'text/plain; charset="utf\n8"');
SELECT tvdb.upload('a.pdf', 'x', 'app lication/pdf');
SELECT tvdb.upload('a.pdf', 'x', 'application/' || repeat('x', 300));
BEGIN;   -- (rolled back: the counts below are of the statements after)
SELECT count(*) AS accepted FROM (VALUES (tvdb.upload('ok1.txt', 'x', 'text/plain; charset=utf-8')),
    (tvdb.upload('ok2.txt', 'x', 'text/plain;charset="utf-8" ; format=flowed')),
    (tvdb.upload('ok3.pdf', 'x', 'application/vnd.ms-excel')),
    (tvdb.upload('rapport d''été (v2).pdf', 'x'))) v(j);
ROLLBACK;
SET tvdb.max_upload_bytes = 10;
SELECT tvdb.upload('exactly-ten.txt', '0123456789') IS NOT NULL AS ten_bytes_fit;
SELECT tvdb.upload('big.txt', '01234567890');
\echo :LAST_ERROR_SQLSTATE
RESET tvdb.max_upload_bytes;
SHOW tvdb.max_upload_bytes;
SELECT tvdb.transition('00000000-0000-4000-8000-000000000000', 'parsed');
\echo :LAST_ERROR_SQLSTATE
SELECT tvdb.transition(:'job', 'bogus');
\echo :LAST_ERROR_SQLSTATE
SELECT tvdb.transition(:'job', 'complete');
\echo :LAST_ERROR_SQLSTATE
SELECT tvdb.transition(:'job', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT tvdb.transition(NULL, 'parsed');
\echo :LAST_ERROR_SQLSTATE
SELECT tvdb.transition(:'job', 'parsed', '[1, 2]');
\echo :LAST_ERROR_SQLSTATE
SELECT tvdb.transition(:'job', 'parsed', '{}', 'uploaded');
\echo :LAST_ERROR_SQLSTATE
SELECT tvdb.transition(:'job', 'parsed', '{}', 'nonsense');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM tvdb.job('00000000-0000-4000-8000-000000000000');
\echo :LAST_ERROR_SQLSTATE
-- only the ten-byte upload above was written
SELECT c.blobs - :before_blobs AS blobs, c.documents - :before_documents AS documents,
       c.jobs - :before_jobs AS jobs, c.events - :before_events AS events
FROM counts c;

-- The compare-and-set form succeeds when the expected status holds.
SELECT tvdb.transition(:'job', 'parsed', '{}', 'parse_queued');
SELECT status FROM tvdb.job(:'job');

-- The limit is a superuser setting.
CREATE ROLE tvdb_regress_app;
SET ROLE tvdb_regress_app;
SET tvdb.max_upload_bytes = 100000000;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DROP ROLE tvdb_regress_app;

-- Where the worker sends a document: the types tvdb.parse_locally names to
-- the built-in parser, the extensions LlamaParse reads to LlamaParse (within
-- its size limit), anything else refused with the reason.
SELECT f, m, r.* FROM (VALUES
    ('notes.txt', 'text/plain', 100), ('readme.md', 'text/markdown; charset=utf-8', 100),
    ('report.PDF', 'application/pdf', 100), ('page.html', 'text/html', 100),
    ('archive.zip', 'application/zip', 100), ('no-extension', 'application/octet-stream', 100),
    ('huge.pdf', 'application/pdf', 600 * 1024 * 1024)) AS v(f, m, s),
    tvdb.parse_route(f, m, s) AS r;
