#!/usr/bin/env python3
"""Helpers for test/webhookd/run.sh (python3 standard library only).

  webhook.py payload JOB DOC parsed|failed OUT   write a callback body; print the
                                                 markdown's sha256 ("" if failed)
  webhook.py sign KEY FILE                       print "sha256=<hex HMAC-SHA256>"
  webhook.py garbage KEY GENUINE OUTDIR          write random bodies and truncated
                                                 copies of GENUINE into OUTDIR, each
                                                 with its signature in NAME.sig
  webhook.py abort PORT                          send half a body, then hang up
  webhook.py odd-headers PORT FILE SIGNATURE     POST FILE with control characters,
                                                 bad UTF-8 and a repeated header;
                                                 print the HTTP status
  webhook.py check-metrics FILE                  check Prometheus text format 0.0.4:
                                                 print "ok" or the first problem
"""
import hashlib
import hmac
import json
import os
import random
import re
import socket
import sys

PATH = "/api/v1/webhooks/llamaparse"


def payload(job, doc, status, out):
    meta = {"parser_name": "llamaparse", "parser_version": "1.0"}
    body = {"job_id": job, "document_id": doc, "parse_job_id": "pj-1", "status": status}
    sha = ""
    if status == "parsed":
        content = "# Title\n\nParsed text of job %s.\n\nNon-ASCII: café, 日本語, ✓\n" % job
        data = content.encode("utf-8")
        sha = hashlib.sha256(data).hexdigest()
        body["artifacts"] = [{"type": "markdown", "content": content,
                              "sha256": sha, "bytes": len(data)}]
    else:
        meta["error"] = "unsupported file format"
    body["meta"] = meta
    with open(out, "wb") as f:
        f.write(json.dumps(body, ensure_ascii=False).encode("utf-8"))
    print(sha)


def sign(key, path):
    with open(path, "rb") as f:
        mac = hmac.new(key.encode(), f.read(), hashlib.sha256).hexdigest()
    print("sha256=" + mac)


def garbage(key, genuine, outdir):
    rng = random.Random(20240501)      # the same bodies on every run
    with open(genuine, "rb") as f:
        body = f.read()
    bodies = [rng.randbytes(rng.randint(1, 4000)) for _ in range(6)]
    bodies += [bytes(rng.choice(b"{}[]\":,0123456789abcdef ") for _ in range(rng.randint(1, 300)))
               for _ in range(2)]
    bodies += [b"", b"null", b"[]", b"{}", b'{"job_id": 5}', b"\xff\xfe{}"]
    bodies += [body[:n] for n in sorted(rng.sample(range(1, len(body)), 8))]
    for i, b in enumerate(bodies):
        name = os.path.join(outdir, "garbage-%02d" % i)
        with open(name, "wb") as f:
            f.write(b)
        with open(name + ".sig", "w") as f:
            f.write("sha256=" + hmac.new(key.encode(), b, hashlib.sha256).hexdigest())


def connect(port):
    return socket.create_connection(("127.0.0.1", int(port)), timeout=10)


def abort(port):
    s = connect(port)
    s.sendall(b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\n"
              b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"job_id\":")
    s.close()


def odd_headers(port, path, signature):
    with open(path, "rb") as f:
        body = f.read()
    request = (b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               b"X-Odd: tab\there \x01\x1f quote\" backslash\\ bad-utf8 \xff\xc0\xaf \xed\xa0\x80 ok \xc3\xa9\r\n"
               b"X-Repeat: one\r\nx-repeat: two\r\n"
               b"X-Webhook-Signature: " + signature.encode() + b"\r\n"
               b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    s = connect(port)
    s.sendall(request)
    reply = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        reply += chunk
    s.close()
    print(reply.split(b" ", 2)[1].decode() if reply.startswith(b"HTTP/") else "000")


NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(r"(%s)(\{%s(?:,%s)*\})? (-?[0-9.]+(?:e[+-]?[0-9]+)?|[+-]Inf|NaN)" % (NAME, LABEL, LABEL))
COMMENT = re.compile(r"# (HELP|TYPE) (%s) (.+)" % NAME)


def check_metrics(path):
    """The text exposition format 0.0.4 (prometheus/docs, exposition_formats.md):
    each family's HELP then TYPE before its samples, samples of a family
    together, a histogram's buckets cumulative and ending in le="+Inf" equal
    to its _count."""
    text = open(path, encoding="utf-8").read()
    if not text.endswith("\n"):
        return print("no newline at the end")
    families, current, buckets = {}, None, {}
    for n, line in enumerate(text[:-1].split("\n"), 1):
        m = COMMENT.fullmatch(line)
        if m:
            kind, name = m.group(1), m.group(2)
            if kind == "HELP":
                if name in families:
                    return print("line %d: %s described twice" % (n, name))
                families[name], current = None, name
            elif current != name or families[name] is not None:
                return print("line %d: TYPE of %s not right after its HELP" % (n, name))
            else:
                families[name] = m.group(3)
            continue
        m = SAMPLE.fullmatch(line)
        if not m:
            return print("line %d is not a sample: %r" % (n, line))
        name, value = m.group(1), m.group(3)
        base = re.sub(r"_(bucket|sum|count)$", "", name) if families.get(current) == "histogram" else name
        if base != current:
            return print("line %d: %s outside its family" % (n, name))
        if name.endswith("_bucket"):
            labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            le = labels.pop("le")
            key = tuple(sorted(labels.items()))
            prev = buckets.get(key, (float("-inf"), 0))
            if float(le) <= prev[0] or float(value) < prev[1]:
                return print("line %d: buckets not cumulative" % n)
            buckets[key] = (float(le), float(value))
        elif name.endswith("_count") and families.get(current) == "histogram":
            labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            if buckets.get(tuple(sorted(labels.items()))) != (float("inf"), float(value)):
                return print("line %d: _count is not the +Inf bucket" % n)
    print("ok")


def main(argv):
    commands = {"payload": (payload, 4), "sign": (sign, 2), "garbage": (garbage, 3),
                "abort": (abort, 1), "odd-headers": (odd_headers, 3), "check-metrics": (check_metrics, 1)}
    if len(argv) < 2 or argv[1] not in commands or len(argv) - 2 != commands[argv[1]][1]:
        sys.exit(__doc__)
    commands[argv[1]][0](*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
