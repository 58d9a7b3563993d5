#!/usr/bin/env python3
"""Per-request service times of the fake LlamaParse and OpenAI servers.

Used by bench/pipeline/run.sh to compute the ideal schedule from latencies
measured in the same run: one client, one keep-alive connection per server,
requests one after another (so nothing queues), the same request shapes the
worker sends (multipart upload of a small HTML file, job status, result,
an embeddings request for one document's chunks).  The fakes' current knobs
apply (--latency, --parse-latency); the caller sets parse_latency to 0 for the
probe so that results can be fetched at once.

Prints one line of JSON: {"upload": {"p50": ms, "p90": ms}, "poll": ..., "result": ..., "embed": ...}
"""
import argparse
import http.client
import json
import statistics
import sys
import time
import urllib.parse
import uuid


def conn_for(base):
    u = urllib.parse.urlsplit(base)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=30), u.path.rstrip("/")


def timed(conn, method, path, body=None, headers=None):
    t = time.perf_counter()
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    ms = (time.perf_counter() - t) * 1000.0
    if r.status != 200:
        sys.exit("probe: %s %s -> %s %s" % (method, path, r.status, data[:200]))
    return ms, data


def summary(xs):
    xs = sorted(xs)
    return {"p50": round(statistics.median(xs), 3),
            "p90": round(xs[min(len(xs) - 1, int(0.9 * len(xs)))], 3), "n": len(xs)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llamaparse", required=True, help="http://127.0.0.1:PORT")
    ap.add_argument("--openai", required=True, help="http://127.0.0.1:PORT/v1")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--dims", type=int, default=0)
    ap.add_argument("--doc-bytes", type=int, default=2600)
    args = ap.parse_args()

    lp, lp_prefix = conn_for(args.llamaparse)
    oa, oa_prefix = conn_for(args.openai)
    auth = {"Authorization": "Bearer bench-key", "Accept": "application/json"}
    out = {"upload": [], "poll": [], "result": [], "embed": []}
    for i in range(args.rounds):
        # a document like the benchmark's: HTML, two sections, unique text; the
        # upload carries the file only, as the worker's does
        sentence = "Probe %d sentence about topic %s. " % (i, uuid.uuid4().hex[:8])
        half = sentence * max(1, (args.doc_bytes // 2) // len(sentence))
        doc = "<h1>Probe %d</h1><h2>Summary</h2><p>%s</p><h2>Details</h2><p>%s</p>" % (i, half, half)
        boundary = "----probe" + uuid.uuid4().hex
        body = ("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"probe-%d.html\"\r\n"
                "Content-Type: text/html\r\n\r\n" % (boundary, i)).encode() + doc.encode() \
            + ("\r\n--%s--\r\n" % boundary).encode()
        h = dict(auth)
        h["Content-Type"] = "multipart/form-data; boundary=" + boundary
        ms, data = timed(lp, "POST", lp_prefix + "/api/v1/parsing/upload", body, h)
        out["upload"].append(ms)
        job = json.loads(data)["id"]
        ms, data = timed(lp, "GET", lp_prefix + "/api/v1/parsing/job/" + job, headers=auth)
        out["poll"].append(ms)
        ms, data = timed(lp, "GET", lp_prefix + "/api/v1/parsing/job/%s/result/markdown" % job,
                         headers=auth)
        out["result"].append(ms)
        req = {"model": "text-embedding-3-small", "encoding_format": "float",
               "input": [half, half + " (2)"]}
        if args.dims > 0:
            req["dimensions"] = args.dims
        h = {"Authorization": "Bearer bench-key", "Content-Type": "application/json"}
        ms, data = timed(oa, "POST", oa_prefix + "/embeddings", json.dumps(req).encode(), h)
        out["embed"].append(ms)
    print(json.dumps({k: summary(v) for k, v in out.items()}))


if __name__ == "__main__":
    main()
