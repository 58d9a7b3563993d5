#!/usr/bin/env python3
"""Fake LlamaParse (v1 parsing API) for integration tests and benchmarks.

Endpoints ({prefix} is --prefix, empty by default; paths are also answered
without the prefix, and with /api/parsing/... as well as /api/v1/parsing/...):

  POST {prefix}/api/v1/parsing/upload                 multipart, field "file"
  GET  {prefix}/api/v1/parsing/job/{id}               status
  GET  {prefix}/api/v1/parsing/job/{id}/result/markdown
  GET  /_stats   POST /_reset   GET|POST /_control   GET /_health

See README.md in this directory.  Standard library only.
"""

import base64
import hashlib
import heapq
import hmac
import json
import math
import mimetypes
import os
import random
import re
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from html.parser import HTMLParser

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fakecommon  # noqa: E402

PARSER_NAME = "fake-llamaparse"
PARSER_VERSION = "1.0"
BYTES_PER_PAGE = 3000

ROUTE = re.compile(r"^/api(?:/v1)?/parsing/(?:(upload)|job/([^/]+)(/result/markdown)?)/?$")

LOREM = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
         "incididunt ut labore et dolore magna aliqua enim ad minim veniam quis nostrud "
         "exercitation ullamco laboris nisi aliquip ex ea commodo consequat duis aute irure "
         "in reprehenderit voluptate velit esse cillum fugiat nulla pariatur excepteur sint "
         "occaecat cupidatat non proident sunt culpa qui officia deserunt mollit anim id est "
         "laborum document ledger invoice pipeline vector chunk parse embed table figure "
         "section appendix summary revenue quarter report analysis method result").split()


# ---------------------------------------------------------------- multipart
class MultipartError(ValueError):
    pass


def _header_params(value):
    """Split 'form-data; name="file"; filename="a b.pdf"' -> ('form-data', {..})."""
    params = {}
    i = value.find(";")
    main = (value if i < 0 else value[:i]).strip().lower()
    rest = "" if i < 0 else value[i + 1:]
    pos = 0
    n = len(rest)
    while pos < n:
        while pos < n and rest[pos] in " \t;":
            pos += 1
        eq = rest.find("=", pos)
        if eq < 0:
            break
        key = rest[pos:eq].strip().lower()
        pos = eq + 1
        if pos < n and rest[pos] == '"':
            pos += 1
            buf = []
            while pos < n and rest[pos] != '"':
                if rest[pos] == "\\" and pos + 1 < n:
                    pos += 1
                buf.append(rest[pos])
                pos += 1
            pos += 1  # closing quote
            val = "".join(buf)
        else:
            semi = rest.find(";", pos)
            semi = n if semi < 0 else semi
            val = rest[pos:semi].strip()
            pos = semi
        params[key] = val
    if "filename*" in params:  # RFC 5987: charset'lang'pct-encoded
        try:
            import urllib.parse
            charset, _, enc = params["filename*"].split("'", 2)
            params["filename"] = urllib.parse.unquote(enc, encoding=charset or "utf-8")
        except ValueError:
            pass
    return main, params


def parse_multipart(content_type, body):
    """Return a list of parts: dict(name, filename, content_type, data)."""
    kind, params = _header_params(content_type or "")
    if kind != "multipart/form-data":
        raise MultipartError("Content-Type must be multipart/form-data, got %r"
                             % (content_type or ""))
    boundary = params.get("boundary")
    if not boundary:
        raise MultipartError("multipart/form-data without a boundary")
    delim = b"--" + boundary.encode("latin-1")
    start = body.find(delim)
    if start < 0 or (start > 0 and body[start - 2:start] != b"\r\n"):
        raise MultipartError("multipart body does not contain its boundary")
    parts = []
    pos = start + len(delim)
    while True:
        if body[pos:pos + 2] == b"--":
            return parts  # close delimiter
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            raise MultipartError("truncated multipart body")
        pos = eol + 2
        hdr_end = body.find(b"\r\n\r\n", pos)
        if hdr_end < 0:
            if body[pos:pos + 2] == b"\r\n":  # part with no headers
                hdr_end = pos - 2
            else:
                raise MultipartError("truncated multipart part headers")
        headers = {}
        for line in body[pos:hdr_end].split(b"\r\n"):
            if not line.strip():
                continue
            k, sep, v = line.partition(b":")
            if not sep:
                raise MultipartError("bad multipart header line %r" % line[:80])
            headers[k.strip().lower().decode("latin-1")] = v.strip().decode("utf-8", "replace")
        data_start = hdr_end + 4
        nxt = body.find(b"\r\n" + delim, data_start)
        if nxt < 0:
            raise MultipartError("multipart part is not terminated by the boundary")
        disp, dparams = _header_params(headers.get("content-disposition", ""))
        if disp != "form-data" or "name" not in dparams:
            raise MultipartError("multipart part without Content-Disposition: form-data; name=...")
        parts.append({
            "name": dparams["name"],
            "filename": dparams.get("filename"),
            "content_type": headers.get("content-type"),
            "data": body[data_start:nxt],
        })
        pos = nxt + 2 + len(delim)


# ----------------------------------------------------------------- parsing
class _HTMLToMarkdown(HTMLParser):
    BLOCK = {"p", "div", "section", "article", "header", "footer", "main", "table", "tr",
             "ul", "ol", "blockquote", "pre", "h1", "h2", "h3", "h4", "h5", "h6", "li",
             "body", "html", "br", "hr"}
    SKIP = {"script", "style", "head", "title", "noscript", "template"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.blocks = []
        self.cur = []
        self.prefix = ""
        self.skip = 0

    def _flush(self):
        text = re.sub(r"\s+", " ", "".join(self.cur)).strip()
        if text:
            self.blocks.append(self.prefix + text)
        self.cur = []
        self.prefix = ""

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skip += 1
            return
        if tag in self.BLOCK:
            self._flush()
            if tag[0] == "h" and tag[1:].isdigit():
                self.prefix = "#" * int(tag[1:]) + " "
            elif tag == "li":
                self.prefix = "- "

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skip = max(0, self.skip - 1)
            return
        if tag in self.BLOCK:
            self._flush()

    def handle_data(self, data):
        if not self.skip:
            self.cur.append(data)

    def result(self):
        self._flush()
        out = []
        for b in self.blocks:  # list items stay together, other blocks are paragraphs
            if out and b.startswith("- ") and out[-1].startswith("- "):
                out[-1] += "\n" + b
            else:
                out.append(b)
        return "\n\n".join(out) + "\n" if out else ""


def _words(seed, count):
    stream = hashlib.shake_256(seed).digest(count)
    return [LOREM[b % len(LOREM)] for b in stream]


def _lorem_paragraph(seed):
    n = 30 + hashlib.sha256(seed + b"len").digest()[0] % 60
    w = _words(seed, n)
    sentences = []
    i = 0
    while i < len(w):
        k = 6 + (len(w) - i) % 9
        s = " ".join(w[i:i + k])
        sentences.append(s[0].upper() + s[1:] + ".")
        i += k
    return " ".join(sentences)


def guess_type(filename, declared):
    t = (declared or "").split(";", 1)[0].strip().lower()
    if not t or t == "application/octet-stream":
        g = mimetypes.guess_type(filename or "")[0]
        if (filename or "").lower().endswith((".md", ".markdown")):
            g = "text/markdown"
        t = g or t or "application/octet-stream"
    return t


def to_markdown(filename, ctype, data, pages):
    """Deterministic markdown for uploaded bytes (see README)."""
    if ctype in ("text/markdown", "text/x-markdown"):
        return data.decode("utf-8", "replace")
    if ctype == "text/plain":
        text = data.decode("utf-8", "replace").replace("\r\n", "\n")
        paras = [" ".join(line.strip() for line in p.splitlines() if line.strip())
                 for p in re.split(r"\n\s*\n", text)]
        paras = [p for p in paras if p]
        return "\n\n".join(paras) + "\n" if paras else ""
    if ctype in ("text/html", "application/xhtml+xml"):
        p = _HTMLToMarkdown()
        p.feed(data.decode("utf-8", "replace"))
        p.close()
        return p.result()
    digest = hashlib.sha256(data).digest()
    out = ["# %s\n\n%d bytes of %s\n" % (filename or "document", len(data), ctype)]
    for page in range(1, pages + 1):
        seed = digest + page.to_bytes(4, "big")
        nparas = 1 + seed[0] % 3 if page > 1 else 1 + digest[1] % 3
        out.append("\n## Page %d\n" % page)
        for k in range(nparas):
            out.append("\n" + _lorem_paragraph(seed + bytes([k])) + "\n")
    return "".join(out)


# ------------------------------------------------------------------- state
class Job:
    __slots__ = ("id", "filename", "content_type", "size", "sha256", "pages", "markdown",
                 "final_status", "error_code", "error_message", "created", "ready_at",
                 "cache_hit", "fields", "webhook_url", "webhook_status", "webhook_attempts",
                 "result_fetches", "polls")

    def to_json(self, now):
        return {
            "id": self.id, "filename": self.filename, "content_type": self.content_type,
            "bytes": self.size, "sha256": self.sha256, "pages": self.pages,
            "status": self.status(now), "final_status": self.final_status,
            "cache_hit": self.cache_hit, "fields": self.fields,
            "markdown_bytes": len(self.markdown.encode()),
            "webhook_url": self.webhook_url, "webhook_status": self.webhook_status,
            "webhook_attempts": self.webhook_attempts,
            "polls": self.polls, "result_fetches": self.result_fetches,
        }

    def status(self, now):
        return self.final_status if now >= self.ready_at else "PENDING"

    def billed(self):
        return self.final_status in ("SUCCESS", "PARTIAL_SUCCESS") and not self.cache_hit


class LlamaParseApp:
    name = "fake-llamaparse"

    def __init__(self, args):
        self.verbose = args.verbose
        self.prefix = (args.prefix or "").rstrip("/")
        self.knobs = fakecommon.Knobs({
            "api_key": None, "latency": 0.0, "error_rate": 0.0, "rate_limit_every": 0,
            "retry_after": 1.0, "parse_latency": 0.0, "parse_latency_per_page": 0.0,
            "fail_marker": "fail", "cancel_marker": "cancel", "partial_marker": "partial",
            "cancel_status": "CANCELLED", "poll_error_rate": 0.0, "credits_per_page": 1.0,
            "webhook": False, "webhook_url": "", "webhook_secret": "fake-webhook-secret",
            "webhook_style": "sha256", "webhook_header": "X-Webhook-Signature",
            "webhook_retries": 3, "webhook_repeat": 1, "webhook_bad_signature": False,
            "webhook_timeout": 10.0, "absurd_pages_marker": None,
        })
        for name, value in (("api_key", args.api_key), ("latency", args.latency),
                            ("error_rate", args.error_rate),
                            ("rate_limit_every", args.rate_limit_every),
                            ("retry_after", args.retry_after),
                            ("parse_latency", args.parse_latency),
                            ("parse_latency_per_page", args.parse_latency_per_page),
                            ("fail_marker", args.fail_marker),
                            ("cancel_marker", args.cancel_marker),
                            ("partial_marker", args.partial_marker),
                            ("cancel_status", args.cancel_status),
                            ("poll_error_rate", args.poll_error_rate),
                            ("credits_per_page", args.credits_per_page),
                            ("webhook", args.webhook or bool(args.webhook_url)),
                            ("webhook_url", args.webhook_url or ""),
                            ("webhook_secret", args.webhook_secret),
                            ("webhook_style", args.webhook_style),
                            ("webhook_header", args.webhook_header),
                            ("webhook_retries", args.webhook_retries),
                            ("webhook_repeat", args.webhook_repeat)):
            self.knobs.set_default(name, value)
        self.lock = threading.Lock()
        self.rng = random.Random(args.seed)
        self.seed = args.seed
        self.stats = fakecommon.Counter()
        self.jobs = {}
        self.cache = set()
        self.upload_count = 0
        # webhook scheduler: heap of (due, seq, job_id)
        self.wh_cond = threading.Condition()
        self.wh_heap = []
        self.wh_seq = 0
        self.wh_stop = False
        self.wh_thread = threading.Thread(target=self._webhook_loop, daemon=True)
        self.wh_thread.start()

    # ---- control ----------------------------------------------------------
    def reset(self, knobs=False):
        with self.lock:
            self.jobs.clear()
            self.cache.clear()
            self.upload_count = 0
            self.rng = random.Random(self.seed)
        with self.wh_cond:
            self.wh_heap.clear()
        self.stats.clear()
        if knobs:
            self.knobs.reset()

    def close(self):
        with self.wh_cond:
            self.wh_stop = True
            self.wh_cond.notify_all()

    def stats_json(self, raw_path):
        now = time.monotonic()
        s = self.stats.snapshot()
        with self.lock:
            jobs = list(self.jobs.values())
        by_status = {}
        pages_billed = 0
        credits = 0.0
        pages_done = 0
        for j in jobs:
            st = j.status(now)
            by_status[st] = by_status.get(st, 0) + 1
            if st != "PENDING" and j.billed():
                pages_billed += j.pages
                credits += j.pages * self.knobs.get("credits_per_page")
            if st != "PENDING":
                pages_done += j.pages
        up = s.get("upload", {})
        out = {
            "uploads": sum(up.values()),
            "uploads_by_status": up,
            "uploads_accepted": up.get("200", 0),
            "job_polls": sum(s.get("job", {}).values()),
            "job_polls_by_status": s.get("job", {}),
            "result_fetches": sum(s.get("result", {}).values()),
            "result_fetches_by_status": s.get("result", {}),
            "results_served": s.get("result", {}).get("200", 0),
            "result_pages_served": s.get("result_pages_served", 0),
            "jobs": len(jobs),
            "jobs_by_status": by_status,
            "cache_hits": sum(1 for j in jobs if j.cache_hit),
            "pages_billed": pages_billed,
            "pages_parsed": pages_done,
            "credits_used": credits,
            "http_by_status": s.get("http", {}),
            "http_401": s.get("http", {}).get("401", 0),
            "http_429": s.get("http", {}).get("429", 0),
            "http_500": s.get("http", {}).get("500", 0),
            "webhooks": s.get("webhooks", {}),
        }
        if "jobs=1" in raw_path.partition("?")[2].split("&"):
            out["job_list"] = [j.to_json(now) for j in jobs]
        return out

    # ---- jobs ---------------------------------------------------------------
    def create_job(self, filename, ctype, data, fields):
        k = self.knobs.snapshot()
        ctype = guess_type(filename, ctype)
        sha = hashlib.sha256(data).hexdigest()
        pages = max(1, len(data) // BYTES_PER_PAGE)
        name = filename or ""
        final, code, msg = "SUCCESS", None, None
        if k["fail_marker"] and k["fail_marker"] in name:
            final, code = "ERROR", "FAKE_PARSE_ERROR"
            msg = "fake-llamaparse: cannot parse %r (name contains %r)" % (name, k["fail_marker"])
        elif k["cancel_marker"] and k["cancel_marker"] in name:
            final = k["cancel_status"] if k["cancel_status"] in ("CANCELLED", "CANCELED") \
                else "CANCELLED"
        elif k["partial_marker"] and k["partial_marker"] in name:
            final = "PARTIAL_SUCCESS"
        j = Job()
        j.id = str(uuid.uuid4())
        j.filename, j.content_type, j.size, j.sha256, j.pages = name, ctype, len(data), sha, pages
        j.markdown = to_markdown(name, ctype, data, pages) if final in (
            "SUCCESS", "PARTIAL_SUCCESS") else ""
        j.final_status, j.error_code, j.error_message = final, code, msg
        j.created = time.monotonic()
        j.ready_at = j.created + k["parse_latency"] + k["parse_latency_per_page"] * pages
        j.fields = {kk: v for kk, v in fields.items()}
        j.webhook_url = None
        if k["webhook"]:
            j.webhook_url = fields.get("webhook_url") or k["webhook_url"] or None
        j.webhook_status = None
        j.webhook_attempts = 0
        j.result_fetches = 0
        j.polls = 0
        with self.lock:
            j.cache_hit = final in ("SUCCESS", "PARTIAL_SUCCESS") and sha in self.cache
            if final in ("SUCCESS", "PARTIAL_SUCCESS"):
                self.cache.add(sha)
            self.jobs[j.id] = j
        if j.webhook_url:
            with self.wh_cond:
                self.wh_seq += 1
                heapq.heappush(self.wh_heap, (j.ready_at, self.wh_seq, j.id))
                self.wh_cond.notify()
        return j

    def get_job(self, job_id):
        with self.lock:
            return self.jobs.get(job_id)

    def metadata(self, j):
        credits = 0.0 if j.cache_hit else j.pages * self.knobs.get("credits_per_page")
        marker = self.knobs.get("absurd_pages_marker")
        if marker and marker in (j.filename or ""):
            # fault injection: a page count no integer column holds
            return {"job_pages": 10 ** 12, "job_is_cache_hit": False, "credits_used": credits,
                    "job_credits_usage": j.pages, "job_auto_mode_triggered_pages": 0}
        return {"job_pages": j.pages, "job_is_cache_hit": j.cache_hit,
                "credits_used": credits, "job_credits_usage": 0 if j.cache_hit else j.pages,
                "job_auto_mode_triggered_pages": 0}

    # ---- webhooks -----------------------------------------------------------
    def _webhook_loop(self):
        while True:
            with self.wh_cond:
                while not self.wh_stop:
                    if self.wh_heap:
                        wait = self.wh_heap[0][0] - time.monotonic()
                        if wait <= 0:
                            break
                        self.wh_cond.wait(wait)
                    else:
                        self.wh_cond.wait()
                if self.wh_stop:
                    return
                _, _, job_id = heapq.heappop(self.wh_heap)
            j = self.get_job(job_id)
            if j is not None:
                threading.Thread(target=self._deliver, args=(j,), daemon=True).start()

    def webhook_body(self, j):
        body = {}
        for key in ("job_id", "document_id"):
            if j.fields.get(key):
                body[key] = j.fields[key]
        body["parse_job_id"] = j.id
        if j.fields.get("correlation_id"):
            body["correlation_id"] = j.fields["correlation_id"]
        meta = {"parser_name": PARSER_NAME, "parser_version": PARSER_VERSION}
        if j.final_status in ("SUCCESS", "PARTIAL_SUCCESS"):
            md = j.markdown.encode()
            body["status"] = "parsed"
            body["artifacts"] = [{"type": "markdown", "content": j.markdown,
                                  "sha256": hashlib.sha256(md).hexdigest(), "bytes": len(md)}]
            meta["pages"] = j.pages
            meta["cache_hit"] = j.cache_hit
        else:
            body["status"] = "failed"
            body["artifacts"] = []
            meta["error"] = j.error_message or ("job %s" % j.final_status.lower())
        body["meta"] = meta
        return json.dumps(body, separators=(",", ":")).encode()

    def sign(self, body, k):
        headers = {"Content-Type": "application/json", "User-Agent": PARSER_NAME + "/1.0"}
        secret = k["webhook_secret"] or ""
        if k["webhook_bad_signature"]:
            secret = secret + "-wrong"
        style = k["webhook_style"]
        if style in ("sha256", "both"):
            mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            headers[k["webhook_header"] or "X-Webhook-Signature"] = "sha256=" + mac
        if style in ("standard", "both"):
            # as the reference library reads a secret: "whsec_" optional,
            # the rest base64, padding optional
            key = base64.b64decode((secret[6:] if secret.startswith("whsec_") else secret) + "==")
            msg_id = "msg_" + uuid.uuid4().hex
            ts = str(int(time.time()))
            mac = hmac.new(key, b"%s.%s.%s" % (msg_id.encode(), ts.encode(), body),
                           hashlib.sha256).digest()
            headers["webhook-id"] = msg_id
            headers["webhook-timestamp"] = ts
            headers["webhook-signature"] = "v1," + base64.b64encode(mac).decode()
        return headers

    def _deliver(self, j):
        k = self.knobs.snapshot()
        body = self.webhook_body(j)
        for copy in range(max(1, k["webhook_repeat"])):
            headers = self.sign(body, k)  # same body; Standard Webhooks id is per copy
            status = None
            for attempt in range(k["webhook_retries"] + 1):
                if attempt:
                    time.sleep(min(5.0, 0.2 * 2 ** (attempt - 1)))
                self.stats.inc("webhooks", "attempts")
                j.webhook_attempts += 1
                try:
                    req = urllib.request.Request(j.webhook_url, data=body, headers=headers,
                                                 method="POST")
                    with urllib.request.urlopen(req, timeout=k["webhook_timeout"]) as r:
                        r.read()
                        status = r.status
                except urllib.error.HTTPError as e:
                    status = e.code
                except Exception:
                    status = "error"
                self.stats.inc("webhooks", "by_status", str(status))
                if isinstance(status, int) and (status < 500 and status != 429):
                    break
            j.webhook_status = status
            ok = isinstance(status, int) and 200 <= status < 300
            self.stats.inc("webhooks", "delivered" if ok else "failed")


# ---------------------------------------------------------------- handler
class Handler(fakecommon.BaseHandler):
    server_version = "fake-llamaparse/1.0"

    def detail(self, status, msg, headers=None):
        self.send_json(status, {"detail": msg}, headers)

    def route(self, method, path):
        app = self.app
        if app.prefix and path.startswith(app.prefix + "/"):
            path = path[len(app.prefix):]
        m = ROUTE.match(path)
        if not m:
            return self.detail(404, "Not Found")
        kind = "upload" if m.group(1) else ("result" if m.group(3) else "job")
        want = "POST" if kind == "upload" else "GET"
        if method != want and not (method == "HEAD" and want == "GET"):
            return self.detail(405, "Method Not Allowed")
        key = app.knobs.get("api_key")
        given = self.bearer()
        if given is None or (key is not None and not hmac.compare_digest(given.encode(), key.encode())):
            app.stats.inc(kind, "401")
            return self.detail(401, "Invalid API key")
        if kind == "upload":
            return self.upload()
        job = app.get_job(m.group(2))
        if job is None:
            app.stats.inc(kind, "404")
            return self.detail(404, "Job not found")
        if kind == "job":
            return self.job_status(job)
        return self.job_result(job)

    def upload(self):
        app = self.app
        k = app.knobs.snapshot()
        with app.lock:
            app.upload_count += 1
            n = app.upload_count
            transient = k["error_rate"] > 0 and app.rng.random() < k["error_rate"]
        if k["rate_limit_every"] and n % k["rate_limit_every"] == 0:
            app.stats.inc("upload", "429")
            ra = k["retry_after"]
            return self.detail(429, "Rate limit exceeded. Please retry later.",
                               {"Retry-After": str(max(0, math.ceil(ra)))})
        if transient:
            app.stats.inc("upload", "500")
            return self.detail(500, "Internal Server Error")
        try:
            parts = parse_multipart(self.headers.get("Content-Type"), self._body or b"")
        except MultipartError as e:
            app.stats.inc("upload", "400")
            return self.detail(400, str(e))
        files = [p for p in parts if p["name"] == "file" and p["filename"] is not None]
        if not files:
            app.stats.inc("upload", "400")
            return self.detail(400, "No file provided: send the document in the multipart "
                                    "field 'file' (with a filename)")
        fields = {}
        for p in parts:
            if p["name"] != "file" and p["filename"] is None and p["name"] not in fields:
                fields[p["name"]] = p["data"].decode("utf-8", "replace")
        f = files[0]
        job = app.create_job(f["filename"], f["content_type"], f["data"], fields)
        app.stats.inc("upload", "200")
        self.send_json(200, {"id": job.id, "status": "PENDING"})

    def injected_500(self, stat):
        """The poll_error_rate knob: that share of polls and fetches is answered 500."""
        app = self.app
        rate = app.knobs.get("poll_error_rate")
        if rate <= 0:
            return False
        with app.lock:
            bad = app.rng.random() < rate
        if bad:
            app.stats.inc(stat, "500")
            self.detail(500, "Internal Server Error")
        return bad

    def job_status(self, job):
        app = self.app
        if self.injected_500("job"):
            return
        with app.lock:
            job.polls += 1
        st = job.status(time.monotonic())
        body = {"id": job.id, "status": st}
        if st == "ERROR":
            body["error_code"] = job.error_code
            body["error_message"] = job.error_message
        app.stats.inc("job", "200")
        self.send_json(200, body)

    def job_result(self, job):
        app = self.app
        if self.injected_500("result"):
            return
        st = job.status(time.monotonic())
        if st not in ("SUCCESS", "PARTIAL_SUCCESS"):
            app.stats.inc("result", "404")
            if st == "PENDING":
                return self.detail(404, "Job not yet complete")
            return self.detail(404, "Job has no result: status %s" % st)
        with app.lock:
            job.result_fetches += 1
            first = job.result_fetches == 1
        if first:
            app.stats.inc("result_pages_served", by=job.pages)
        app.stats.inc("result", "200")
        self.send_json(200, {"markdown": job.markdown, "job_metadata": app.metadata(job)})


def main(argv=None):
    p = fakecommon.new_parser("Fake LlamaParse v1 parsing API (see test/fakes/README.md)")
    fakecommon.add_common_args(p)
    p.add_argument("--prefix", default="", help="path prefix before /api/v1 (default none)")
    p.add_argument("--parse-latency", type=float, default=0.0,
                   help="seconds from upload until the job is done")
    p.add_argument("--parse-latency-per-page", type=float, default=0.0,
                   help="extra seconds per page until the job is done")
    p.add_argument("--fail-marker", default="fail", help="filename marker -> status ERROR")
    p.add_argument("--cancel-marker", default="cancel", help="filename marker -> CANCELLED")
    p.add_argument("--partial-marker", default="partial",
                   help="filename marker -> PARTIAL_SUCCESS")
    p.add_argument("--cancel-status", default="CANCELLED", choices=("CANCELLED", "CANCELED"))
    p.add_argument("--poll-error-rate", type=float, default=0.0,
                   help="fraction of job/result GETs answered 500")
    p.add_argument("--credits-per-page", type=float, default=1.0)
    p.add_argument("--webhook", action="store_true",
                   help="POST results to the upload's webhook_url when done")
    p.add_argument("--webhook-url", default="",
                   help="webhook target for uploads without webhook_url (implies --webhook)")
    p.add_argument("--webhook-secret", default="fake-webhook-secret")
    p.add_argument("--webhook-style", default="sha256", choices=("sha256", "standard", "both"))
    p.add_argument("--webhook-header", default="X-Webhook-Signature",
                   help="header carrying sha256=<hex> (e.g. LC-Signature, X-Hub-Signature-256)")
    p.add_argument("--webhook-retries", type=int, default=3,
                   help="re-sends after a 5xx/429/connection failure")
    p.add_argument("--webhook-repeat", type=int, default=1,
                   help="deliver every callback this many times (duplicate tests)")
    args = p.parse_args(argv)
    app = LlamaParseApp(args)
    fakecommon.serve(app, Handler, args)


if __name__ == "__main__":
    main()
