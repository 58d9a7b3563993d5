#!/usr/bin/env python3
"""A webhook receiver for tests: records every request, answers a set status.

  POST <any path>   -> --status (default 200), body {"received": n}
  GET  /_received   -> {"count": n, "requests": [{"method","path","headers","body"}...]}
  POST /_control    -> {"status": 503} changes the answer; POST /_reset clears

Each recorded request is also appended as one JSON line to --out if given.
Nothing is verified: LlamaParse signs no webhook (see README.md).
Standard library only.
"""

import json
import os
import sys
import threading

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fakecommon  # noqa: E402


class SinkApp:
    name = "webhook-sink"

    def __init__(self, args):
        self.verbose = args.verbose
        self.out = args.out
        self.knobs = fakecommon.Knobs({"status": args.status, "latency": 0.0})
        self.stats = fakecommon.Counter()
        self.lock = threading.Lock()
        self.received = []

    def reset(self, knobs=False):
        with self.lock:
            self.received = []
        self.stats.clear()
        if knobs:
            self.knobs.reset()

    def close(self):
        pass

    def stats_json(self, raw_path):
        with self.lock:
            return {"count": len(self.received), "http_by_status": self.stats.snapshot()}


class Handler(fakecommon.BaseHandler):
    server_version = "webhook-sink/1.0"

    def route(self, method, path):
        app = self.app
        if path == "/_received" and method == "GET":
            with app.lock:
                return self.send_json(200, {"count": len(app.received),
                                            "requests": list(app.received)})
        body = self._body or b""
        rec = {"method": method, "path": self.path,
               "headers": {k.lower(): v for k, v in self.headers.items()},
               "body": body.decode("utf-8", "replace")}
        with app.lock:
            app.received.append(rec)
            n = len(app.received)
            if app.out:
                with open(app.out, "a") as f:
                    f.write(json.dumps(rec) + "\n")
        self.send_json(app.knobs.get("status"), {"received": n})


def main(argv=None):
    p = fakecommon.new_parser("Webhook receiver that records requests")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--status", type=int, default=200, help="HTTP status to answer")
    p.add_argument("--out", default=None, help="append each request as a JSON line here")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    fakecommon.serve(SinkApp(args), Handler, args)


if __name__ == "__main__":
    main()
