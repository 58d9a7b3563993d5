#!/usr/bin/env python3
"""Fake OpenAI embeddings API for integration tests and benchmarks.

  POST {prefix}/embeddings      ({prefix} is --prefix, default /v1; /embeddings
                                 and /v1/embeddings are always answered too)
  GET  {prefix}/models
  GET  /_stats   POST /_reset   GET|POST /_control   GET /_health

Token rule: an input string of B UTF-8 bytes counts max(1, ceil(B / 4)) tokens
(4 is --bytes-per-token); a pre-tokenized input (list of ints) counts its
length.  So tokens <= UTF-8 bytes always holds.

Embedding rule (see embed()): components 2j, 2j+1 are cos and sin of the
angle (u_j >> 4) / 4096 turns, u_j the j-th little-endian uint16 of
SHAKE-256(UTF-8 text), times sqrt(2 / dims): unit length, deterministic, `dimensions` gives the
full vector truncated and renormalized.  The model does not enter the seed, so
one text has the same vector under every model (up to size).

See README.md in this directory.  Standard library only.
"""

import base64
import collections
import email.utils
import hashlib
import hmac
import json
import math
import os
import random
import struct
import sys
import threading
import time
import uuid

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fakecommon  # noqa: E402

MODELS = {
    "text-embedding-3-small": {"dims": 1536, "dimensions_param": True},
    "text-embedding-3-large": {"dims": 3072, "dimensions_param": True},
    "text-embedding-ada-002": {"dims": 1536, "dimensions_param": False},
}
ALLOWED_FIELDS = {"model", "input", "encoding_format", "dimensions", "user"}
DEFAULT_RPM = 10000        # reported in x-ratelimit-limit-* when not enforcing
DEFAULT_TPM = 10000000


class APIError(Exception):
    def __init__(self, status, message, etype="invalid_request_error", param=None, code=None,
                 headers=None):
        super().__init__(message)
        self.status, self.message, self.etype = status, message, etype
        self.param, self.code, self.headers = param, code, headers or {}

    def body(self):
        return {"error": {"message": self.message, "type": self.etype,
                          "param": self.param, "code": self.code}}


def count_tokens(item, bytes_per_token):
    if isinstance(item, str):
        return max(1, math.ceil(len(item.encode("utf-8")) / max(1.0, bytes_per_token)))
    return len(item)


ANGLE_STEPS = 4096  # angle a_j uses the top 12 bits of its uint16
_tables = {}
_tables_lock = threading.Lock()


def _seed(item):
    if isinstance(item, str):
        return item.encode("utf-8")
    return b"tokens:" + ",".join(map(str, item)).encode()


def _angles(item, npairs):
    # SHAKE is an extendable-output function: a shorter digest is a prefix of
    # a longer one, so fewer dimensions read a prefix of the same angles.
    return struct.unpack("<%dH" % npairs, hashlib.shake_256(_seed(item)).digest(2 * npairs))


def _table(dims):
    """Per uint16 value: cos/sin of its angle times sqrt(2/dims), as floats and text."""
    t = _tables.get(dims)
    if t is None:
        with _tables_lock:  # build once, not once per concurrent request
            t = _tables.get(dims)
            if t is None:
                r = math.sqrt(2.0 / dims)
                step = 2.0 * math.pi / ANGLE_STEPS
                cf = [r * math.cos(a * step) for a in range(ANGLE_STEPS)]
                sf = [r * math.sin(a * step) for a in range(ANGLE_STEPS)]
                cs, ss = [repr(x) for x in cf], [repr(x) for x in sf]
                t = tuple([tab[u >> 4] for u in range(65536)] for tab in (cf, sf, cs, ss))
                if len(_tables) >= 16:
                    _tables.clear()
                _tables[dims] = t
    return t


def embed(item, dims):
    """Deterministic unit vector for one input (string or token list).

    Pair j of components is (cos a_j, sin a_j) * sqrt(2/dims), a_j = u_j >> 4
    in 1/4096 turns, u_j the j-th little-endian uint16 of SHAKE-256(input): unit length by
    construction, and `dimensions` gives the full vector truncated and
    renormalized.  An odd size takes one more pair, drops the last sine and
    renormalizes.
    """
    if dims % 2 == 0:
        cf, sf, _, _ = _table(dims)
        return [x for a in _angles(item, dims // 2) for x in (cf[a], sf[a])]
    step = 2.0 * math.pi / ANGLE_STEPS
    v = [f((u >> 4) * step) for u in _angles(item, (dims + 1) // 2) for f in (math.cos, math.sin)]
    v = v[:dims]
    scale = 1.0 / (math.hypot(*v) or 1.0)
    return [x * scale for x in v]


def embed_json(item, dims):
    """JSON array text of embed(item, dims), built from precomputed strings."""
    if dims % 2:
        return json.dumps(embed(item, dims), separators=(",", ":"))
    _, _, cs, ss = _table(dims)
    return "[" + ",".join([x for a in _angles(item, dims // 2) for x in (cs[a], ss[a])]) + "]"


def fmt_duration(seconds):
    """OpenAI's x-ratelimit-reset-* style: 1ms, 250ms, 1s, 6m0s."""
    if seconds < 1:
        return "%dms" % max(0, round(seconds * 1000))
    if seconds < 60:
        s = ("%.3f" % seconds).rstrip("0").rstrip(".")
        return s + "s"
    m, s = divmod(int(round(seconds)), 60)
    return "%dm%ds" % (m, s)


class OpenAIApp:
    name = "fake-openai"

    def __init__(self, args):
        self.verbose = args.verbose
        self.prefix = (args.prefix or "").rstrip("/")
        self.knobs = fakecommon.Knobs({
            "api_key": None, "latency": 0.0, "error_rate": 0.0, "rate_limit_every": 0,
            "rate_limit_rate": 0.0, "drop_rate": 0.0,
            "retry_after": 1.0, "fail_marker": "", "shuffle": False,
            "bytes_per_token": 4.0, "max_inputs": 2048, "max_input_tokens": 8192,
            "max_request_tokens": 300000, "rpm": 0, "tpm": 0,
            "retry_after_date": False, "should_retry": None, "rate_window": 60.0,
        })
        for name, value in (("api_key", args.api_key), ("latency", args.latency),
                            ("error_rate", args.error_rate),
                            ("rate_limit_every", args.rate_limit_every),
                            ("retry_after", args.retry_after),
                            ("fail_marker", args.fail_marker), ("shuffle", args.shuffle),
                            ("bytes_per_token", args.bytes_per_token),
                            ("max_inputs", args.max_inputs),
                            ("max_input_tokens", args.max_input_tokens),
                            ("max_request_tokens", args.max_request_tokens),
                            ("rpm", args.rpm), ("tpm", args.tpm)):
            self.knobs.set_default(name, value)
        self.seed = args.seed
        self.lock = threading.Lock()
        self.rng = random.Random(args.seed)
        self.stats = fakecommon.Counter()
        self.count = 0
        self.max_inputs = 0
        self.max_tokens = 0
        self.window = collections.deque()  # (monotonic time, tokens) of accepted requests
        self.window_tokens = 0
        self.times = []  # (time, tokens) of every accepted request (/_stats?times=1)

    def reset(self, knobs=False):
        with self.lock:
            self.count = 0
            self.max_inputs = self.max_tokens = 0
            self.rng = random.Random(self.seed)
            self.window.clear()
            self.window_tokens = 0
            self.times = []
        self.stats.clear()
        if knobs:
            self.knobs.reset()

    def close(self):
        pass

    def stats_json(self, raw_path):
        s = self.stats.snapshot()
        by = s.get("embeddings", {})
        http = s.get("http", {})
        out = {
            "requests": sum(by.values()),
            "requests_by_status": by,
            "requests_ok": by.get("200", 0),
            "inputs_embedded": s.get("inputs_embedded", 0),
            "prompt_tokens": s.get("prompt_tokens", 0),
            "max_inputs_in_request": self.max_inputs,
            "max_tokens_in_request": self.max_tokens,
            "by_model": s.get("by_model", {}),
            "by_encoding": s.get("by_encoding", {}),
            "http_by_status": http,
            "http_400": http.get("400", 0),
            "http_401": http.get("401", 0),
            "http_404": http.get("404", 0),
            "http_429": http.get("429", 0),
            "http_500": http.get("500", 0),
        }
        if "times=1" in raw_path.partition("?")[2].split("&"):
            with self.lock:
                out["embedding_times"] = list(self.times)
        return out

    # sliding window (60 s, as the service's per-minute limits; shorter for
    # quick tests) for x-ratelimit-* and rpm/tpm enforcement
    def _prune(self, now):
        span = self.knobs.get("rate_window")
        while self.window and self.window[0][0] <= now - span:
            _, t = self.window.popleft()
            self.window_tokens -= t

    def ratelimit_headers(self, k, now=None):
        now = time.monotonic() if now is None else now
        with self.lock:
            self._prune(now)
            used_r, used_t = len(self.window), self.window_tokens
            oldest = self.window[0][0] if self.window else now
        lim_r = k["rpm"] or DEFAULT_RPM
        lim_t = k["tpm"] or DEFAULT_TPM
        reset = max(0.0, oldest + k["rate_window"] - now) if used_r else 0.0
        return {
            "x-ratelimit-limit-requests": lim_r,
            "x-ratelimit-limit-tokens": lim_t,
            "x-ratelimit-remaining-requests": max(0, lim_r - used_r),
            "x-ratelimit-remaining-tokens": max(0, lim_t - used_t),
            "x-ratelimit-reset-requests": fmt_duration(reset * min(1.0, used_r / lim_r)),
            "x-ratelimit-reset-tokens": fmt_duration(reset * min(1.0, used_t / lim_t)),
        }

    def admit(self, k, model, tokens):
        """Enforce rpm/tpm when set; record the request in the window."""
        now = time.monotonic()
        with self.lock:
            self._prune(now)
            for kind, limit, used, want in (("requests", k["rpm"], len(self.window), 1),
                                            ("tokens", k["tpm"], self.window_tokens, tokens)):
                if limit and used + want > limit:
                    # wait until enough of the window has expired
                    need = used + want - limit
                    wait = k["rate_window"]
                    acc = 0
                    for t0, tk in self.window:
                        acc += tk if kind == "tokens" else 1
                        if acc >= need:
                            wait = max(0.001, t0 + k["rate_window"] - now)
                            break
                    abbrev = "RPM" if kind == "requests" else "TPM"
                    raise APIError(
                        429, "Rate limit reached for %s in organization org-fake on %s per min "
                        "(%s): Limit %d, Used %d, Requested %d. Please try again in %s."
                        % (model, kind, abbrev, limit, used, want, fmt_duration(wait)),
                        etype=kind, code="rate_limit_exceeded",
                        headers={"retry-after": str(max(1, math.ceil(wait))),
                                 "retry-after-ms": str(max(1, math.ceil(wait * 1000)))})
            self.window.append((now, tokens))
            self.window_tokens += tokens
            self.times.append((round(time.time(), 6), tokens))


class Handler(fakecommon.BaseHandler):
    server_version = "fake-openai/1.0"

    def rate_limited(self):
        """The storm's 429, as OpenAI sends rate_limit_exceeded (see embeddings)."""
        ra = self.app.knobs.get("retry_after")
        self.app.stats.inc("embeddings", "429")
        self.send_error_obj(APIError(429, "Rate limit reached for requests. Please try again in %s."
                                     % fmt_duration(ra), etype="requests", code="rate_limit_exceeded",
                                     headers={"retry-after": str(max(0, math.ceil(ra))),
                                              "retry-after-ms": str(int(ra * 1000))}), {})

    def send_error_obj(self, err, extra):
        h = dict(extra)
        h.update(err.headers)
        k = self.app.knobs.snapshot()
        if k["should_retry"] is not None:
            h["x-should-retry"] = k["should_retry"]
        self.send_json(err.status, err.body(), h)

    def route(self, method, path):
        app = self.app
        if app.prefix and path.startswith(app.prefix + "/"):
            path = path[len(app.prefix):]
        elif path.startswith("/v1/"):
            path = path[3:]
        k = app.knobs.snapshot()
        base = {"x-request-id": "req_" + uuid.uuid4().hex, "openai-version": "2020-10-01"}
        if path not in ("/embeddings", "/models"):
            return self.send_error_obj(APIError(
                404, "Invalid URL (%s %s)" % (method, self.path)), base)
        if path == "/models":
            if method not in ("GET", "HEAD"):
                return self.send_error_obj(APIError(
                    405, "Invalid method for URL (%s %s)" % (method, self.path)), base)
            if not self.authorized(k):
                return self.send_error_obj(self.auth_error(), base)
            return self.send_json(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 1700000000, "owned_by": "system"}
                for m in sorted(MODELS)]}, base)
        if method != "POST":
            return self.send_error_obj(APIError(
                405, "Invalid method for URL (%s %s)" % (method, self.path)), base)
        t0 = time.monotonic()
        try:
            resp, headers = self.embeddings(k, base)
        except APIError as e:
            app.stats.inc("embeddings", str(e.status))
            h = dict(base)
            h.update(app.ratelimit_headers(k))
            return self.send_error_obj(e, h)
        app.stats.inc("embeddings", "200")
        headers["openai-processing-ms"] = str(int((time.monotonic() - t0) * 1000))
        self.send_raw(200, resp, "application/json", headers)

    def authorized(self, k):
        given = self.bearer()
        key = k["api_key"]
        return given is not None and (key is None or hmac.compare_digest(given.encode(), key.encode()))

    def auth_error(self):
        given = self.bearer()
        if given is None:
            return APIError(401, "You didn't provide an API key. You need to provide your API "
                                 "key in an Authorization header using Bearer auth (i.e. "
                                 "Authorization: Bearer YOUR_KEY).", code="invalid_api_key")
        shown = given[:3] + "*" * 4 + given[-4:] if len(given) > 8 else "****"
        return APIError(401, "Incorrect API key provided: %s. You can find your API key at "
                             "https://platform.openai.com/account/api-keys." % shown,
                        code="invalid_api_key")

    def embeddings(self, k, base):
        app = self.app
        if not self.authorized(k):
            raise self.auth_error()
        with app.lock:
            app.count += 1
            n = app.count
            transient = k["error_rate"] > 0 and app.rng.random() < k["error_rate"]
        if k["rate_limit_every"] and n % k["rate_limit_every"] == 0:
            ra = k["retry_after"]
            raise APIError(429, "Rate limit reached for requests (fake-openai: every %dth "
                                "request). Please try again in %s."
                           % (k["rate_limit_every"], fmt_duration(ra)),
                           etype="requests", code="rate_limit_exceeded",
                           headers=({"retry-after": email.utils.formatdate(time.time() + ra, usegmt=True)}
                                    if k["retry_after_date"] else
                                    {"retry-after": str(max(0, math.ceil(ra))),
                                     "retry-after-ms": str(int(ra * 1000))}))
        if transient:
            raise APIError(500, "The server had an error while processing your request. "
                                "Sorry about that!", etype="server_error")
        try:
            req = json.loads(self._body or b"")
        except ValueError:
            raise APIError(400, "We could not parse the JSON body of your request. (HINT: "
                                "This likely means you aren't using your HTTP library "
                                "correctly. The OpenAI API expects a JSON payload, but what "
                                "was sent was not valid JSON. If you have trouble figuring "
                                "out how to fix this, please contact us through our help "
                                "center at help.openai.com.)")
        if not isinstance(req, dict):
            raise APIError(400, "Invalid request body: expected a JSON object.")
        for key in req:
            if key not in ALLOWED_FIELDS:
                raise APIError(400, "Unrecognized request argument supplied: %s" % key)
        model = req.get("model")
        if model is None:
            raise APIError(400, "you must provide a model parameter")
        if not isinstance(model, str):
            raise APIError(400, "Invalid type for 'model': expected a string.", param="model",
                           code="invalid_type")
        if model not in MODELS:
            raise APIError(404, "The model `%s` does not exist or you do not have access to it."
                           % model, code="model_not_found")
        spec = MODELS[model]
        if "input" not in req:
            raise APIError(400, "'input' is a required property")
        inputs = self.normalize_inputs(req["input"], k)
        fmt = req.get("encoding_format", "float")
        if fmt not in ("float", "base64"):
            raise APIError(400, "'%s' is not one of ['float', 'base64'] - 'encoding_format'"
                           % (fmt,), param="encoding_format")
        dims = spec["dims"]
        if "dimensions" in req and req["dimensions"] is not None:
            d = req["dimensions"]
            if not spec["dimensions_param"]:
                raise APIError(400, "This model does not support specifying dimensions.",
                               param="dimensions")
            if isinstance(d, bool) or not isinstance(d, int) or d < 1 or d > spec["dims"]:
                raise APIError(400, "Invalid value for 'dimensions' = %s. Must be an integer "
                                    "between 1 and %d." % (json.dumps(d), spec["dims"]),
                               param="dimensions")
            dims = d
        toks = [count_tokens(x, k["bytes_per_token"]) for x in inputs]
        for t in toks:
            if t > k["max_input_tokens"]:
                raise APIError(400, "This model's maximum context length is %d tokens, however "
                                    "you requested %d tokens (%d in your prompt; 0 for the "
                                    "completion). Please reduce your prompt; or completion "
                                    "length." % (k["max_input_tokens"], t, t))
        total = sum(toks)
        if total > k["max_request_tokens"]:
            raise APIError(400, "Requested %d tokens, max %d tokens per request"
                           % (total, k["max_request_tokens"]), etype="max_tokens_per_request",
                           code="max_tokens_per_request")
        marker = k["fail_marker"]
        if marker:
            for i, x in enumerate(inputs):
                if isinstance(x, str) and marker in x:
                    raise APIError(400, "input[%d] contains the fail marker %r (fake-openai)"
                                   % (i, marker), param="input", code="fake_fail_marker")
        app.admit(k, model, total)

        # The body is assembled as text: json.dumps of a million floats is the
        # slowest part otherwise, and benchmarks must not wait on the fake.
        items = []
        for i, x in enumerate(inputs):
            if fmt == "base64":
                v = '"%s"' % base64.b64encode(struct.pack("<%df" % dims, *embed(x, dims))).decode()
            else:
                v = embed_json(x, dims)
            items.append('{"object":"embedding","index":%d,"embedding":%s}' % (i, v))
        if k["shuffle"] and len(items) > 1:
            with app.lock:
                app.rng.shuffle(items)
        body = ('{"object":"list","data":[%s],"model":%s,"usage":{"prompt_tokens":%d,'
                '"total_tokens":%d}}' % (",".join(items), json.dumps(model), total,
                                         total)).encode()
        app.stats.inc("inputs_embedded", by=len(inputs))
        app.stats.inc("prompt_tokens", by=total)
        app.stats.inc("by_encoding", fmt)
        app.stats.inc("by_model", model, "requests")
        app.stats.inc("by_model", model, "inputs", by=len(inputs))
        app.stats.inc("by_model", model, "tokens", by=total)
        with app.lock:  # high-water marks
            app.max_inputs = max(app.max_inputs, len(inputs))
            app.max_tokens = max(app.max_tokens, total)
        headers = dict(base)
        headers["openai-model"] = model
        headers.update(app.ratelimit_headers(k))
        return body, headers

    def normalize_inputs(self, value, k):
        bad = APIError(400, "'$.input' is invalid. Please check the API reference: "
                            "https://platform.openai.com/docs/api-reference.")
        if isinstance(value, str):
            inputs = [value]
        elif isinstance(value, list):
            if not value:
                raise bad
            if all(isinstance(x, int) and not isinstance(x, bool) for x in value):
                inputs = [value]  # one pre-tokenized input
            elif all(isinstance(x, str) for x in value):
                inputs = value
            elif all(isinstance(x, list) and x and all(
                    isinstance(t, int) and not isinstance(t, bool) for t in x) for x in value):
                inputs = value
            else:
                raise bad
        else:
            raise bad
        if len(inputs) > k["max_inputs"]:
            raise APIError(400, "Invalid 'input': maximum array size is %d, got an array with "
                                "%d elements." % (k["max_inputs"], len(inputs)), param="input",
                           code="array_above_max_length")
        for x in inputs:
            if isinstance(x, str) and x == "":
                raise bad
        return inputs


def main(argv=None):
    p = fakecommon.new_parser("Fake OpenAI embeddings API (see test/fakes/README.md)")
    fakecommon.add_common_args(p)
    p.add_argument("--prefix", default="/v1", help="path prefix before /embeddings (default /v1)")
    p.add_argument("--fail-marker", default="",
                   help="an input containing this string gets 400 (default: off)")
    p.add_argument("--shuffle", action="store_true", help="return data[] in shuffled order")
    p.add_argument("--bytes-per-token", type=float, default=4.0,
                   help="token estimate: max(1, ceil(utf8_bytes / this)); 1 = worst case")
    p.add_argument("--max-inputs", type=int, default=2048)
    p.add_argument("--max-input-tokens", type=int, default=8192)
    p.add_argument("--max-request-tokens", type=int, default=300000)
    p.add_argument("--rpm", type=int, default=0, help="enforce requests/minute (0 = off)")
    p.add_argument("--tpm", type=int, default=0, help="enforce tokens/minute (0 = off)")
    args = p.parse_args(argv)
    if args.bytes_per_token < 1:
        p.error("--bytes-per-token must be >= 1 (tokens may not exceed bytes)")
    app = OpenAIApp(args)
    fakecommon.serve(app, Handler, args)


if __name__ == "__main__":
    main()
