"""Shared plumbing for the fake LlamaParse and OpenAI servers.

Standard library only.  A ThreadingHTTPServer speaking HTTP/1.1 with
keep-alive, JSON helpers, request-body reading (Content-Length or chunked),
runtime knobs (POST /_control), and start-up / shutdown handling
(--host, --port, --port-file, SIGTERM/SIGINT).
"""

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Knobs:
    """Thread-safe named settings with typed defaults, changeable at runtime."""

    def __init__(self, defaults, choices=None):
        self._defaults = dict(defaults)
        self._values = dict(defaults)
        self._choices = dict(choices or {})  # knob -> allowed string values
        self._lock = threading.Lock()

    def get(self, name):
        with self._lock:
            return self._values[name]

    def snapshot(self):
        with self._lock:
            return dict(self._values)

    def reset(self):
        with self._lock:
            self._values = dict(self._defaults)

    def update(self, changes):
        """Apply a dict of changes; raise ValueError naming a bad knob or value."""
        if not isinstance(changes, dict):
            raise ValueError("body must be a JSON object of knob: value")
        coerced = {}
        for name, value in changes.items():
            if name not in self._defaults:
                raise ValueError("unknown knob %r (known: %s)"
                                 % (name, ", ".join(sorted(self._defaults))))
            coerced[name] = _coerce(name, self._defaults[name], value)
            allowed = self._choices.get(name)
            if allowed and coerced[name] is not None and coerced[name] not in allowed:
                raise ValueError("knob %r wants one of %s, got %r"
                                 % (name, ", ".join(allowed), coerced[name]))
        with self._lock:
            self._values.update(coerced)

    def set_default(self, name, value):
        """Used at start-up: command-line values become the reset defaults."""
        with self._lock:
            self._defaults[name] = value
            self._values[name] = value


def _coerce(name, default, value):
    kind = type(default)
    if value is None:
        if default is None or kind is str:
            return None
        raise ValueError("knob %r cannot be null" % name)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ValueError("knob %r wants true or false" % name)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError("knob %r wants a non-negative integer" % name)
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError("knob %r wants a non-negative number" % name)
        return float(value)
    if default is None or kind is str:
        if not isinstance(value, str):
            raise ValueError("knob %r wants a string" % name)
        return value
    if kind is dict:  # a JSON object of string values (e.g. HTTP headers)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ValueError("knob %r wants a JSON object" % name)
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise ValueError("knob %r wants a JSON object of string values" % name)
        return dict(value)
    raise ValueError("knob %r has an unsupported type" % name)


class Counter:
    """Nested counters under one lock: inc("uploads"), inc("by_status", "200")."""

    def __init__(self):
        self._lock = threading.Lock()
        self._data = {}

    def inc(self, *path, by=1):
        with self._lock:
            d = self._data
            for key in path[:-1]:
                d = d.setdefault(key, {})
            d[path[-1]] = d.get(path[-1], 0) + by

    def snapshot(self):
        with self._lock:
            return json.loads(json.dumps(self._data))

    def clear(self):
        with self._lock:
            self._data = {}


class FakeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # SIGTERM must not wait for idle keep-alive connections
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, addr, handler, app):
        host = addr[0]
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.app = app
        super().__init__(addr, handler)


class BaseHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler; subclasses implement route(method, path)."""

    protocol_version = "HTTP/1.1"
    server_version = "fake"
    sys_version = ""
    timeout = 300  # idle keep-alive connections are dropped after this

    def version_string(self):
        return self.server_version

    def setup(self):
        super().setup()
        # Headers and body go out in two writes; without this, Nagle's algorithm
        # holds the body back for the client's delayed ACK (~40 ms per answer).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # ---- plumbing -------------------------------------------------------
    @property
    def app(self):
        return self.server.app

    def log_message(self, fmt, *args):
        if self.app.verbose:
            sys.stderr.write("%s %s\n" % (self.app.name, fmt % args))

    def read_body(self):
        """Read the whole request body (Content-Length or chunked)."""
        if getattr(self, "_body", None) is not None:
            return self._body
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            parts = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("eof in chunked body")
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers
                        t = self.rfile.readline(65537)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline(3)
            body = b"".join(parts)
        else:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            if len(body) != length:
                raise ConnectionError("short body")
        self._body = body
        return body

    def send_raw(self, status, body, content_type="application/json", headers=None):
        latency = self.app.knobs.get("latency")
        if latency > 0 and not self.path.startswith("/_"):
            time.sleep(latency)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        if not self.path.startswith("/_"):
            self.app.stats.inc("http", str(status))

    def send_json(self, status, obj, headers=None):
        body = json.dumps(obj, separators=(",", ":")).encode()
        self.send_raw(status, body, "application/json", headers)

    def storm(self):
        """The storm knobs, drawn for every API request: drop_rate closes the
        connection with no answer at all; rate_limit_rate answers the
        service's own 429 (rate_limited()).  True when the request was taken."""
        k = self.app.knobs.snapshot()
        drop, limit = k.get("drop_rate", 0.0), k.get("rate_limit_rate", 0.0)
        if drop <= 0 and limit <= 0:
            return False
        with self.app.lock:
            r = self.app.rng.random()
        if r < drop:
            self.app.stats.inc("faults", "dropped")
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return True
        if r < drop + limit:
            self.app.stats.inc("faults", "rate_limited")
            self.rate_limited()
            return True
        return False

    def rate_limited(self):  # pragma: no cover - overridden
        self.send_json(429, {"detail": "rate limited"})

    def bearer(self):
        h = self.headers.get("Authorization") or ""
        if h[:7].lower() == "bearer " and h[7:].strip():
            return h[7:].strip()
        return None

    def _dispatch(self, method):
        self._body = None
        path = self.path.split("?", 1)[0]
        try:
            if method in ("POST", "PUT", "PATCH", "DELETE"):
                self.read_body()
        except (ValueError, ConnectionError):
            self.close_connection = True
            self.send_json(400, {"detail": "malformed request body"})
            return
        try:
            if path == "/_stats" and method == "GET":
                return self.send_json(200, self.app.stats_json(self.path))
            if path == "/_reset" and method == "POST":
                opts = {}
                if self._body:
                    try:
                        opts = json.loads(self._body)
                    except ValueError:
                        opts = {}
                self.app.reset(knobs=bool(isinstance(opts, dict) and opts.get("knobs")))
                return self.send_json(200, {"reset": True})
            if path == "/_control" and method == "GET":
                return self.send_json(200, self.app.knobs.snapshot())
            if path == "/_control" and method == "POST":
                try:
                    self.app.knobs.update(json.loads(self._body or b"{}"))
                except ValueError as e:
                    return self.send_json(400, {"detail": str(e)})
                return self.send_json(200, self.app.knobs.snapshot())
            if path == "/_health":
                return self.send_json(200, {"ok": True, "name": self.app.name})
            if self.storm():
                return
            self.route(method, path)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # a bug in the fake: say so loudly, keep serving
            import traceback
            traceback.print_exc()
            try:
                self.close_connection = True
                self.send_json(500, {"detail": "fake server bug: %r" % (e,)})
            except Exception:
                pass

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def route(self, method, path):  # pragma: no cover - overridden
        self.send_json(404, {"detail": "Not Found"})


def add_common_args(p):
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port; 0 picks a free one")
    p.add_argument("--port-file", help="write the chosen port to this file")
    p.add_argument("--api-key", default=None, help="accept only this Bearer key (default: any)")
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every response")
    p.add_argument("--error-rate", type=float, default=0.0,
                   help="fraction of requests answered 500 (transient)")
    p.add_argument("--rate-limit-every", type=int, default=0,
                   help="every Nth request gets 429 (0 = never)")
    p.add_argument("--retry-after", type=float, default=1.0,
                   help="seconds announced in Retry-After on 429")
    p.add_argument("--seed", type=int, default=0, help="seed for --error-rate / --shuffle")
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")


def serve(app, handler_cls, args):
    """Bind, announce, serve until SIGTERM/SIGINT, exit 0."""
    server = FakeHTTPServer((args.host, args.port), handler_cls, app)
    port = server.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp.%d" % os.getpid()
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.port_file)
    host = args.host if ":" not in args.host else "[%s]" % args.host
    print("%s listening on http://%s:%d" % (app.name, host, port), flush=True)

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5},
                         daemon=True)
    t.start()
    while not stop.wait(1.0):
        pass
    server.shutdown()
    server.server_close()
    app.close()
    sys.exit(0)


def new_parser(description):
    return argparse.ArgumentParser(description=description)
