#!/usr/bin/env bash
# Self-test of the fake LlamaParse / OpenAI servers (and the webhook sink):
# starts them on free loopback ports, drives every endpoint and knob with curl,
# checks statuses and JSON with python3, stops them.  Prints TAP-ish
# "ok N - ..." / "not ok N - ..." lines; exits non-zero on any failure.
set -u
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fakes-selftest.XXXXXX")
declare -A pid
n=0
fails=0

cleanup() {
    for p in "${pid[@]}" ${ck_pid:+"$ck_pid"}; do kill -TERM "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

ok()    { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; [ -n "${2:-}" ] && echo "#   $2"; }

start() {  # start NAME SCRIPT ARGS...
    local name=$1 script=$2; shift 2
    python3 "$here/$script" --port-file "$tmp/$name.port" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
    pid[$name]=$!
}
port_of() {
    local i
    for i in $(seq 200); do
        [ -s "$tmp/$1.port" ] && { cat "$tmp/$1.port"; return 0; }
        sleep 0.05
    done
    echo "no port file for $1" >&2; cat "$tmp/$1.err" >&2; return 1
}

# req METHOD URL [curl args...]  -> sets $st, body in $tmp/body, headers in $tmp/hdr, $tt time
req() {
    local m=$1 u=$2; shift 2
    local out
    out=$(curl -s -o "$tmp/body" -D "$tmp/hdr" -w '%{http_code} %{time_total}' -X "$m" "$@" "$u")
    st=${out% *}; tt=${out#* }
}

# One long-lived python3 evaluates the checks (a python start-up per check is
# slow on a loaded machine).  Request: fields joined by \x1f on one line:
# kind, status, wanted status, python expression, time, body file, header file.
# The expression sees st (int), b (parsed JSON body or None), raw (bytes),
# h (lower-cased headers of the last response), tt (seconds) and json, math,
# hashlib, hmac, base64, struct.  Reply: "1", "0 <why>", or for kind get the value.
checker_py='
import sys, json, math, hashlib, hmac, base64, struct
for line in sys.stdin:
    kind, st, want, expr, tt, bf, hf = line.rstrip("\n").split("\x1f")
    g = {"json": json, "math": math, "hashlib": hashlib, "hmac": hmac, "base64": base64,
         "struct": struct, "st": int(st or 0), "tt": float(tt or 0)}
    try:
        if kind == "write":  # write the value (str or bytes) of expr to file bf
            v = eval(expr, g)
            open(bf, "wb").write(v if isinstance(v, bytes) else v.encode())
            print("1", flush=True)
            continue
        if kind == "run":  # run the python file bf; it sets ok (and why)
            exec(open(bf).read(), g)
            print("1" if g.get("ok") else "0 %s" % g.get("why", "failed"), flush=True)
            continue
        raw = open(bf, "rb").read()
        g["raw"] = raw
        try:
            g["b"] = json.loads(raw)
        except ValueError:
            g["b"] = None
        h = {}
        if hf:
            for hl in open(hf, "rb").read().decode("latin-1").splitlines():
                if hl.startswith("HTTP/"):
                    h = {}
                elif ":" in hl:
                    k, v = hl.split(":", 1)
                    h[k.strip().lower()] = v.strip()
        g["h"] = h
        if kind == "get":
            print(eval(expr, g), flush=True)
        elif want not in ("", "-") and g["st"] != int(want):
            print("0 status %s, wanted %s" % (st, want), flush=True)
        else:
            print("1" if eval(expr, g) else "0 expression is false", flush=True)
    except Exception as e:
        print("0 %s: %s" % (type(e).__name__, str(e).replace("\n", " ")), flush=True)
'
coproc CK { exec python3 -u -c "$checker_py"; }
ck_pid=$CK_PID
ask() {  # ask KIND WANT EXPR [BODYFILE] -> $reply
    printf '%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s\n' "$1" "${st:-0}" "$2" "$3" "${tt:-0}" \
        "${4:-$tmp/body}" "${5:-$tmp/hdr}" >&"${CK[1]}"
    IFS= read -r -t 120 reply <&"${CK[0]}" || reply="0 no answer from the checker"
}
# expect WANT_STATUS PYEXPR DESC
expect() {
    ask check "$1" "$2"
    if [ "$reply" = 1 ]; then ok "$3"
    else notok "$3" "${reply#0 } | status $st: $(head -c 300 "$tmp/body")"; fi
}
# mk FILE PYEXPR: write the value (str or bytes) of PYEXPR to FILE
mk() { ask write - "$2" "$1" ""; [ "$reply" = 1 ] || echo "# mk $1: $reply"; }
# pyrun DESC ASSIGNMENTS < script: run a python script (stdin) in the checker; it sets ok
pyrun() {
    { printf '%s\n' "$2"; cat; } > "$tmp/run.py"
    ask run - "" "$tmp/run.py" ""
    if [ "$reply" = 1 ]; then ok "$1"; else notok "$1" "${reply#0 }"; fi
}
# jget VAR PYEXPR: VAR := value of PYEXPR over the last body
jget() { ask get - "$2"; printf -v "$1" '%s' "$reply"; }

wait_until() {  # wait_until URL PYEXPR [tries]: poll until PYEXPR(b) holds
    local i
    for i in $(seq "${3:-100}"); do
        curl -s "$1" -o "$tmp/wait" 2>/dev/null
        ask check - "$2" "$tmp/wait" ""
        [ "$reply" = 1 ] && return 0
        sleep 0.1
    done
    return 1
}

LPKEY=llx-test-key
OAKEY=sk-test-0123456789

start lp fake_llamaparse.py --api-key "$LPKEY" --prefix /proxy
start oa fake_openai.py --api-key "$OAKEY"
start sink webhook_sink.py
LP=http://127.0.0.1:$(port_of lp) || exit 1
OA=http://127.0.0.1:$(port_of oa) || exit 1
SINK=http://127.0.0.1:$(port_of sink) || exit 1
grep -q "listening on http://127.0.0.1:" "$tmp/lp.out" && ok "llamaparse prints its listening line" \
    || notok "llamaparse prints its listening line"

A=(-H "Authorization: Bearer $LPKEY")
V1=$LP/api/v1/parsing

# ------------------------------------------------------------ data files
printf 'First paragraph\nstill first.\n\n\nSecond paragraph.\n' > "$tmp/doc.txt"
printf '# Heading\n\nSome *markdown* body.\n' > "$tmp/doc.md"
printf '<html><head><title>T</title><style>p{}</style></head><body><h1>Big</h1><h2>Sub</h2><p>Para <b>one</b>.</p><ul><li>alpha</li><li>beta</li></ul><script>x()</script></body></html>' > "$tmp/doc.html"
mk "$tmp/doc.pdf" 'bytes((i * 37 + 11) % 256 for i in range(7000))'
mk "$tmp/big.pdf" 'bytes(range(256)) * 5860'
# .txt is not a supported extension: plain text goes up under .md names, typed text/plain
cp "$tmp/doc.txt" "$tmp/plain.md"
cp "$tmp/doc.txt" "$tmp/will-fail.md"
cp "$tmp/doc.txt" "$tmp/please-cancel.md"
cp "$tmp/doc.txt" "$tmp/partial-doc.md"
cp "$tmp/doc.pdf" "$tmp/partial-doc.pdf"
PLAIN=(-F "file=@$tmp/plain.md;type=text/plain")
PYDANTIC='For further information visit https://errors.pydantic.dev/2.11/v/extra_forbidden'

# sink_get: the sink's records into $tmp/body (st=200), for expect / pyrun
sink_get() { curl -s "$SINK/_received" -o "$tmp/body"; st=200; }

echo "# fake LlamaParse v1"
# ------------------------------------------------------------ auth, routing
req POST "$V1/upload" "${PLAIN[@]}"
expect 401 'b == {"detail": "Invalid API key"}' "upload without a key is 401 Invalid API key"
req POST "$V1/upload" -H "Authorization: Bearer wrong" "${PLAIN[@]}"
expect 401 'b["detail"] == "Invalid API key"' "upload with a wrong key is 401"
req POST "$V1/upload" "${A[@]}" "${PLAIN[@]}" -F "webhook_url="
expect 200 'set(b) == {"id", "status"} and b["status"] == "PENDING" and len(b["id"]) == 36' \
    "upload text/plain (.md name) -> 200 {id, status: PENDING}"
jget TXT 'b["id"]'
req GET "$V1/job/$TXT" "${A[@]}"
expect 200 'b == {"id": "'"$TXT"'", "status": "SUCCESS"}' "job status SUCCESS (no parse latency)"
req GET "$LP/api/parsing/job/$TXT" "${A[@]}"
expect 200 'b["status"] == "SUCCESS"' "path without /v1 answered"
req GET "$LP/proxy/api/v1/parsing/job/$TXT" "${A[@]}"
expect 200 'b["status"] == "SUCCESS"' "path with --prefix answered"
req GET "$V1/job/$TXT"
expect 401 'b["detail"] == "Invalid API key"' "job status without a key is 401"
req GET "$V1/job/$TXT/result/markdown" "${A[@]}"
expect 200 'b["markdown"] == "First paragraph still first.\n\nSecond paragraph.\n" and b["job_metadata"] == {"job_pages": 1, "job_credits_usage": 1, "job_is_cache_hit": False, "credits_used": 1, "credits_max": 10000, "job_auto_mode_triggered_pages": 0}' \
    "text/plain result: paragraphs; job_metadata {job_pages, job_credits_usage, job_is_cache_hit, credits_used, credits_max, job_auto_mode_triggered_pages}"
req GET "$V1/job/00000000-0000-0000-0000-000000000000" "${A[@]}"
expect 404 'b == {"detail": "Job not found"}' "unknown job id -> 404 Job not found"
req GET "$V1/job/nope/result/markdown" "${A[@]}"
expect 404 'b == {"detail": "Job not found"}' "unknown job result -> 404 Job not found"
req GET "$V1/upload" "${A[@]}"
expect 405 'b["detail"] == "Method Not Allowed"' "GET on upload -> 405"
req GET "$LP/api/v1/elsewhere" "${A[@]}"
expect 404 'b == {"detail": "Not Found"}' "unknown path -> 404 {detail}"

# ------------------------------------------------------------ form fields, file checks
req POST "$V1/upload" "${A[@]}" "${PLAIN[@]}" -F "job_id=j1"
expect 400 'b == {"detail": "Invalid configuration: 1 validation error for LlamaParseMultipartConfiguration\njob_id\n  Extra inputs are not permitted [type=extra_forbidden, input_value=\x27j1\x27, input_type=str]\n    '"$PYDANTIC"'"}' \
    "unknown v1 field job_id -> 400, pydantic extra_forbidden text (issue #1132 form)"
req POST "$V1/upload" "${A[@]}" "${PLAIN[@]}" -F "document_id=d1" -F "correlation_id=true" -F "parse_mode=parse_page_with_llm"
expect 400 'b["detail"].startswith("Invalid configuration: 2 validation errors for LlamaParseMultipartConfiguration\ndocument_id\n") and "\ncorrelation_id\n  Extra inputs are not permitted [type=extra_forbidden, input_value=True, input_type=bool]\n" in b["detail"] and "parse_mode" not in b["detail"]' \
    "two unknown fields -> 2 validation errors; \"true\" shown as True/bool; known fields not named"
req POST "$V1/upload" "${A[@]}" "${PLAIN[@]}" -F "project_id=p1"
expect 400 '"\nproject_id\n  Extra inputs" in b["detail"]' "project_id as a form field is refused (it is a query parameter)"
req POST "$V1/upload" "${A[@]}" -F "file=@$tmp/doc.txt;type=text/plain"
expect 400 'b == {"detail": "Unsupported file type: .txt"}' ".txt upload -> 400 Unsupported file type"
req POST "$V1/upload" "${A[@]}" -F "file=@$tmp/doc.txt;filename=README;type=text/plain"
expect 400 'b["detail"].startswith("Unsupported file type: (no extension")' "file name without an extension -> 400"
req POST "$V1/upload" "${A[@]}" -F "file=@$tmp/doc.pdf;filename=SCAN.PDF;type=application/pdf"
expect 200 'b["status"] == "PENDING"' ".PDF (upper case) accepted"
req POST "$LP/_control" -d '{"max_file_bytes": 5000}'
req POST "$V1/upload" "${A[@]}" -F "file=@$tmp/doc.pdf;type=application/pdf"
expect 413 'b["detail"].startswith("File too large: 7000 bytes")' "file over max_file_bytes -> 413 {detail}"
req POST "$LP/_control" -d '{"max_file_bytes": 536870912, "unsupported_type": "job_error"}'
req POST "$V1/upload" "${A[@]}" -F "file=@$tmp/doc.txt;type=text/plain"
expect 200 'b["status"] == "PENDING"' "unsupported_type job_error: .txt upload accepted"
jget UT 'b["id"]'
req GET "$V1/job/$UT" "${A[@]}"
expect 200 'b == {"id": "'"$UT"'", "status": "ERROR", "error_code": "UNSUPPORTED_FILE_TYPE", "error_message": "Unsupported file type."}' \
    "... and its job fails: ERROR, UNSUPPORTED_FILE_TYPE"
req POST "$LP/_control" -d '{"unsupported_type": "reject"}'
req POST "$LP/_control" -d '{"unsupported_type": "maybe"}'
expect 400 '"unsupported_type" in b["detail"]' "unsupported_type takes only reject / job_error"
req POST "$V1/upload" "${A[@]}" -F "file=@$tmp/doc.md;type=text/markdown" -F "language=en" -F "language=fr" -F "language[]=de" \
    -F "parse_mode=parse_page_with_agent" -F "output_tables_as_HTML=true" -F "input_url=" -F "webhook_configurations=" -F "max_pages=3"
expect 200 'b["status"] == "PENDING"' "documented fields accepted (language repeated, language[], output_tables_as_HTML, ...)"
jget FLD 'b["id"]'
req GET "$LP/_stats?jobs=1"
expect 200 '[j["fields"] for j in b["job_list"] if j["id"] == "'"$FLD"'"] == [{"language": ["en", "fr"], "language[]": ["de"], "parse_mode": "parse_page_with_agent", "output_tables_as_HTML": "true", "input_url": "", "webhook_configurations": "", "max_pages": "3"}] and b["jobs"] == 4 and b["uploads_refused"] == {"fields": 3, "file_type": 2, "file_size": 1}' \
    "/_stats?jobs=1 records the fields received; refused uploads created nothing, counted by reason"
req POST "$LP/_control" -d '{"drop_rate": 1.0}'
code=0; curl -s -o /dev/null "${A[@]}" "$V1/job/$TXT" || code=$?
if [ "$code" = 52 ]; then ok "drop_rate 1: the connection closes with no answer (curl: empty reply)"; else notok "drop_rate 1: no answer" "curl exit $code"; fi
req POST "$LP/_control" -d '{"drop_rate": 0, "rate_limit_rate": 1.0}'
req GET "$V1/job/$TXT" "${A[@]}"
expect 429 'b == {"detail": "Rate limit exceeded. Please retry later."}' "rate_limit_rate 1: the service's 429"
req POST "$LP/_control" -d '{"rate_limit_rate": 0}'
req GET "$LP/_stats?times=1"
expect 200 '[t := b["upload_times"], len(t) == b["uploads"] and t == sorted(t) and t[-1] - t[0] < 600][-1]' \
    "/_stats?times=1 lists the arrival of every upload request, refused ones too"
req POST "$LP/_control" -d '{"webhook_url_rules": true}'
req POST "$V1/upload" "${A[@]}" "${PLAIN[@]}" -F "webhook_url=http://example.com/hook"
expect 400 'b == {"detail": "Invalid webhook_url: the protocol must be HTTPS"}' "webhook_url_rules: http:// refused"
req POST "$V1/upload" "${A[@]}" "${PLAIN[@]}" -F "webhook_url=https://10.1.2.3/hook"
expect 400 '"domain name" in b["detail"]' "webhook_url_rules: an IP host refused"
req POST "$V1/upload" "${A[@]}" "${PLAIN[@]}" -F "webhook_url=https://example.com/$(printf 'x%.0s' $(seq 190))"
expect 400 '"200 characters" in b["detail"]' "webhook_url_rules: 200+ characters refused"
req POST "$V1/upload" "${A[@]}" "${PLAIN[@]}" -F "webhook_url=https://example.com/hook"
expect 200 'True' "webhook_url_rules: https://domain accepted"
req POST "$LP/_control" -d '{"webhook_url_rules": false}'

# ------------------------------------------------------------ multipart edge cases
req POST "$V1/upload" "${A[@]}" -F "parse_mode=parse_page_with_llm"
expect 400 '"file" in b["detail"]' "multipart without file -> 400 detail"
req POST "$V1/upload" "${A[@]}" -H 'Content-Type: application/json' -d '{"file": "x"}'
expect 400 '"multipart/form-data" in b["detail"]' "non-multipart body -> 400 detail"
req POST "$V1/upload" "${A[@]}" -H 'Content-Type: multipart/form-data; boundary=XYZ' --data-binary $'--XYZ\r\nContent-Disposition: form-data; name="file"; filename="a.md"\r\n\r\ntruncated'
expect 400 '"terminated" in b["detail"]' "truncated multipart -> 400"
req POST "$V1/upload" "${A[@]}" -H 'Content-Type: multipart/form-data; boundary="q b"' --data-binary $'preamble\r\n--q b\r\nContent-Disposition: form-data; name="preset"\r\n\r\nhi\r\n--q b\r\ncontent-disposition: form-data; name="file"; filename="we\\"ird.md"\r\nContent-Type: application/octet-stream\r\n\r\n# Q\r\n\r\n--q c\r\n--\r\n--q b--\r\n'
expect 200 'b["status"] == "PENDING"' "hand-made multipart (quoted boundary, preamble, CRLF in data) accepted"
jget QID 'b["id"]'
req GET "$V1/job/$QID/result/markdown" "${A[@]}"
expect 200 'b["markdown"] == "# Q\r\n\r\n--q c\r\n--"' "part data kept byte-exact up to the delimiter; .md by filename"
req POST "$V1/upload" "${A[@]}" -H 'Transfer-Encoding: chunked' -F "file=@$tmp/doc.md;type=text/markdown"
expect 200 'b["status"] == "PENDING"' "chunked request body accepted"
jget MD 'b["id"]'
req GET "$V1/job/$MD/result/markdown" "${A[@]}"
expect 200 'b["markdown"] == open("'"$tmp/doc.md"'").read()' "text/markdown passes through"
req POST "$V1/upload" "${A[@]}" -F "file=@$tmp/doc.html;type=text/html"
jget HT 'b["id"]'
req GET "$V1/job/$HT/result/markdown" "${A[@]}"
expect 200 'b["markdown"] == "# Big\n\n## Sub\n\nPara one.\n\n- alpha\n- beta\n"' "text/html -> headings, paragraphs, list items"
req POST "$V1/upload" "${A[@]}" -F "file=@$tmp/doc.pdf;type=application/pdf"
jget PDF 'b["id"]'
req GET "$V1/job/$PDF/result/markdown" "${A[@]}"
expect 200 'b["markdown"].startswith("# doc.pdf\n\n7000 bytes of application/pdf\n") and "## Page 2" in b["markdown"] and b["job_metadata"]["job_pages"] == 2' \
    "binary -> deterministic markdown, pages = bytes // 3000"
req POST "$V1/upload" "${A[@]}" -F "file=@$tmp/doc.pdf;filename=again.pdf;type=application/pdf"
jget PDF2 'b["id"]'
req GET "$V1/job/$PDF2/result/markdown" "${A[@]}"
expect 200 'b["job_metadata"]["job_is_cache_hit"] is True and b["job_metadata"]["job_credits_usage"] == 0 and b["job_metadata"]["job_pages"] == 2' \
    "same bytes and options again -> cache hit, job_credits_usage 0"
req POST "$V1/upload" "${A[@]}" -F "file=@$tmp/doc.pdf;filename=again.pdf;type=application/pdf" -F "invalidate_cache=true"
jget PDF3 'b["id"]'
req GET "$V1/job/$PDF3/result/markdown" "${A[@]}"
expect 200 'b["job_metadata"]["job_is_cache_hit"] is False and b["job_metadata"]["job_credits_usage"] == 2' "invalidate_cache=true -> no cache hit"
req POST "$V1/upload" "${A[@]}" -F "file=@$tmp/doc.pdf;filename=again.pdf;type=application/pdf" -F "parse_mode=parse_page_with_agent"
jget PDF4 'b["id"]'
req GET "$V1/job/$PDF4/result/markdown" "${A[@]}"
expect 200 'b["job_metadata"]["job_is_cache_hit"] is False' "another option value -> no cache hit"
req POST "$V1/upload" "${A[@]}" -H 'Expect: 100-continue' -F "file=@$tmp/big.pdf;type=application/pdf"
jget BIG 'b["id"]'
req GET "$V1/job/$BIG/result/markdown" "${A[@]}"
expect 200 'b["job_metadata"]["job_pages"] == 500 and b["markdown"].count("## Page ") == 500' "1.5 MB upload with Expect: 100-continue, 500 pages"

# ------------------------------------------------------------ outcome markers
req POST "$V1/upload" "${A[@]}" -F "file=@$tmp/will-fail.md;type=text/plain"
jget F 'b["id"]'
req GET "$V1/job/$F" "${A[@]}"
expect 200 'b["status"] == "ERROR" and b["error_code"] and "will-fail.md" in b["error_message"]' "fail marker -> ERROR with error_code, error_message"
req GET "$V1/job/$F/result/markdown" "${A[@]}"
expect 404 'b == {"detail": "Result for Parsing Job '"$F"' not found. Check job status to see if it has completed."}' "no result for an ERROR job (404, the service's wording)"
req POST "$V1/upload" "${A[@]}" -F "file=@$tmp/please-cancel.md;type=text/plain"
jget C 'b["id"]'
req GET "$V1/job/$C" "${A[@]}"
expect 200 'b["status"] == "CANCELLED"' "cancel marker -> CANCELLED"
req POST "$LP/_control" -d '{"cancel_status": "CANCELED"}'
req POST "$V1/upload" "${A[@]}" -F "file=@$tmp/please-cancel.md;type=text/plain"
jget C 'b["id"]'
req GET "$V1/job/$C" "${A[@]}"
expect 200 'b["status"] == "CANCELED"' "cancel_status knob -> CANCELED spelling"
req POST "$LP/_control" -d '{"cancel_status": "CANCELLED"}'
req POST "$V1/upload" "${A[@]}" -F "file=@$tmp/partial-doc.md;type=text/plain"
jget P 'b["id"]'
req GET "$V1/job/$P" "${A[@]}"
expect 200 'b["status"] == "PARTIAL_SUCCESS"' "partial marker -> PARTIAL_SUCCESS"
req GET "$V1/job/$P/result/markdown" "${A[@]}"
expect 200 'b["markdown"].startswith("First paragraph")' "PARTIAL_SUCCESS has a result"
req POST "$LP/_control" -d '{"absurd_pages_marker": "ABSURD"}'
req POST "$V1/upload" "${A[@]}" -F "file=@$tmp/doc.md;filename=ABSURD.md;type=text/markdown"
jget AB 'b["id"]'
req GET "$V1/job/$AB/result/markdown" "${A[@]}"
expect 200 'b["job_metadata"]["job_pages"] == 10 ** 12' "absurd_pages_marker -> job_pages 10^12"
req POST "$LP/_control" -d '{"absurd_pages_marker": null}'

# ------------------------------------------------------------ latency knobs
req POST "$LP/_control" -d '{"parse_latency": 1.0}'
expect 200 'b["parse_latency"] == 1.0' "POST /_control sets parse_latency"
req POST "$V1/upload" "${A[@]}" -F "file=@$tmp/plain.md;filename=slow.md;type=text/plain"
jget S 'b["id"]'
req GET "$V1/job/$S" "${A[@]}"
expect 200 'b["status"] == "PENDING"' "job PENDING during parse latency"
req GET "$V1/job/$S/result/markdown" "${A[@]}"
expect 404 'b == {"detail": "Result for Parsing Job '"$S"' not found. Check job status to see if it has completed."}' "result 404 while PENDING"
sleep 1.1
req GET "$V1/job/$S" "${A[@]}"
expect 200 'b["status"] == "SUCCESS"' "SUCCESS after parse latency"
req POST "$LP/_control" -d '{"parse_latency": 0, "latency": 0.3}'
req GET "$V1/job/$S" "${A[@]}"
expect 200 'tt >= 0.3' "latency knob delays responses"
req POST "$LP/_control" -d '{"latency": 0, "bogus": 1}'
expect 400 '"unknown knob" in b["detail"]' "unknown knob -> 400 (and nothing applied)"
req GET "$LP/_control"
expect 200 'b["latency"] == 0.3 and b["fail_marker"] == "fail" and b["webhook_style"] == "push" and b["webhook_retries"] == 2 and b["webhook_timeout"] == 30 and b["max_file_bytes"] == 536870912' "GET /_control shows knobs (defaults as documented)"
req POST "$LP/_control" -d '{"latency": -1}'
expect 400 'True' "negative knob value -> 400"
req POST "$LP/_control" -d '{"webhook_style": "sha256"}'
expect 400 '"webhook_style" in b["detail"]' "webhook_style takes only push / events"
req POST "$LP/_control" -d '{"webhook_secret": "x"}'
expect 400 '"unknown knob" in b["detail"]' "the signing knobs are gone (LlamaParse signs nothing)"
req POST "$LP/_control" -d '{"latency": 0}'

# ------------------------------------------------------------ transient faults, stats
req POST "$LP/_reset"
expect 200 'b == {"reset": True}' "POST /_reset"
req GET "$V1/job/$TXT" "${A[@]}"
expect 404 'True' "reset forgot the jobs"
req POST "$LP/_control" -d '{"rate_limit_every": 2}'
req POST "$V1/upload" "${A[@]}" "${PLAIN[@]}"
expect 200 'True' "1st upload after reset ok (rate_limit_every 2)"
jget R1 'b["id"]'
req POST "$V1/upload" "${A[@]}" -F "file=@$tmp/doc.pdf;type=application/pdf"
expect 429 'h.get("retry-after") == "1" and "detail" in b' "2nd upload -> 429 with Retry-After: 1"
req POST "$V1/upload" "${A[@]}" -F "file=@$tmp/doc.pdf;type=application/pdf"
expect 200 'True' "3rd upload ok"
jget R2 'b["id"]'
req POST "$LP/_control" -d '{"rate_limit_every": 0, "error_rate": 1.0}'
req POST "$V1/upload" "${A[@]}" "${PLAIN[@]}"
expect 500 'b["detail"].startswith("Oops! Something went wrong on our end.")' "error_rate 1 -> 500 with the service's wording"
req POST "$LP/_control" -d '{"error_rate": 0, "poll_error_rate": 1.0}'
req GET "$V1/job/$R1" "${A[@]}"
expect 500 'True' "poll_error_rate 1 -> 500 on job GET"
req POST "$LP/_control" -d '{"poll_error_rate": 0}'
req POST "$V1/upload" "${A[@]}" "${PLAIN[@]}"
jget R3 'b["id"]'
for id in "$R1" "$R2" "$R3"; do
    req GET "$V1/job/$id" "${A[@]}"
    req GET "$V1/job/$id/result/markdown" "${A[@]}"
done
req GET "$V1/job/$R2/result/markdown" "${A[@]}"
expect 200 'b["job_metadata"]["credits_used"] == 3 and b["job_metadata"]["job_credits_usage"] == 2' "job_metadata.credits_used is the account's total so far"
req GET "$LP/_stats"
expect 200 'b["uploads"] == 5 and b["uploads_accepted"] == 3 and b["http_429"] == 1 and b["http_500"] == 2 and b["job_polls"] == 5 and b["result_fetches"] == 4 and b["results_served"] == 4 and b["pages_billed"] == 3 and b["result_pages_served"] == 4 and b["cache_hits"] == 1 and b["credits_used"] == 3 and b["jobs"] == 3' \
    "/_stats counts uploads, 429s, 500s, polls, results, pages billed (cache hits free)"
req GET "$LP/_stats?jobs=1"
expect 200 'len(b["job_list"]) == 3 and {j["pages"] for j in b["job_list"]} == {1, 2}' "/_stats?jobs=1 lists jobs"

# ------------------------------------------------------------ v1 webhooks: push
req POST "$LP/_control" -d '{"webhook": true, "webhook_backoff": 0.1}'
req POST "$V1/upload" "${A[@]}" -F "file=@$tmp/will-fail.md;type=text/plain" -F "webhook_url=$SINK/failed"
req POST "$V1/upload" "${A[@]}" -F "file=@$tmp/doc.md;type=text/markdown" -F "webhook_url=$SINK/hook"
jget WH 'b["id"]'
if wait_until "$SINK/_received" 'b["count"] >= 1'; then
    sleep 0.3; sink_get
    pyrun "push webhook: one POST of {txt, md, json: [{page, text, md, images}], images}, JSON, unsigned, no job id" "" <<PY
b = json.load(open("$tmp/body"))
r = b["requests"]
p = json.loads(r[0]["body"])
hd = r[0]["headers"]
ok = (len(r) == 1 and r[0]["path"] == "/hook" and hd["content-type"] == "application/json"
      and p == {"txt": "Heading\n\nSome markdown body.\n", "md": "# Heading\n\nSome *markdown* body.\n",
                "json": [{"page": 1, "text": "Heading\n\nSome markdown body.\n",
                          "md": "# Heading\n\nSome *markdown* body.\n", "images": []}], "images": []}
      and not [k for k in hd if "signature" in k or k.startswith("webhook-") or k.startswith("x-webhook")])
why = "requests: %r" % r
PY
else
    notok "push webhook delivered" "$(cat "$tmp/lp.err")"
fi
req GET "$LP/_stats?jobs=1"
expect 200 '[j["deliveries"] for j in b["job_list"] if j["filename"] == "will-fail.md"] == [[]] and [len(j["deliveries"]) for j in b["job_list"] if j["id"] == "'"$WH"'"] == [1]' \
    "no push for an ERROR job (undocumented), one for the SUCCESS job"
req POST "$SINK/_reset"
req POST "$LP/_control" -d '{"webhook_url": "'"$SINK/default"'"}'
req POST "$V1/upload" "${A[@]}" -F "file=@$tmp/doc.pdf;filename=two-pages.pdf;type=application/pdf"
if wait_until "$SINK/_received" 'b["count"] >= 1'; then
    sink_get
    expect 200 '[r := b["requests"][0], p := json.loads(r["body"]), r["path"] == "/default" and [x["page"] for x in p["json"]] == [1, 2] and "".join(x["md"] for x in p["json"]) == p["md"] and p["json"][1]["md"].startswith("\n## Page 2\n")][-1]' \
        "push to the webhook_url knob when the upload has none; json has one entry per page"
else
    notok "push to the webhook_url knob"
fi

# ------------------------------------------------------------ v1 webhooks: events
req POST "$SINK/_reset"
req POST "$LP/_control" -d '{"webhook_style": "events", "webhook_headers": {"X-Tvdb-Secret": "s3cret"}, "webhook_repeat": 2}'
req POST "$V1/upload" "${A[@]}" -F "file=@$tmp/doc.md;type=text/markdown" -F "webhook_url=$SINK/ev"
jget EV 'b["id"]'
if wait_until "$SINK/_received" 'b["count"] >= 4'; then
    sleep 0.2; sink_get
    pyrun "events style: parse.pending then parse.success, each twice with the same event_id; LlamaCloud headers + webhook_headers" "" <<PY
b = json.load(open("$tmp/body"))
r = b["requests"]
ps = [json.loads(x["body"]) for x in r]
types = [p["event_type"] for p in ps]
hd_ok = all(x["headers"]["content-type"] == "application/json"
            and x["headers"]["user-agent"] == "llamaindex-webhook-service/1.0"
            and x["headers"]["x-webhook-event-id"] == p["event_id"]
            and x["headers"]["x-webhook-event-type"] == p["event_type"]
            and x["headers"]["x-tvdb-secret"] == "s3cret" and x["path"] == "/ev"
            for x, p in zip(r, ps))
body_ok = all(set(p) == {"event_id", "event_type", "timestamp", "data"}
              and p["data"] == {"id": "$EV", "job_id": "$EV"}
              and isinstance(p["timestamp"], float) and len(p["event_id"]) == 36 for p in ps)
ids = {t: {p["event_id"] for p in ps if p["event_type"] == t} for t in set(types)}
ok = (len(r) == 4 and types == ["parse.pending", "parse.pending", "parse.success", "parse.success"]
      and hd_ok and body_ok and len(ids["parse.pending"]) == 1 and len(ids["parse.success"]) == 1
      and ids["parse.pending"] != ids["parse.success"])
why = "types %s hd_ok %s body_ok %s ids %s" % (types, hd_ok, body_ok, ids)
PY
else
    notok "events webhook delivered" "$(cat "$tmp/lp.err")"
fi
req POST "$SINK/_reset"
req POST "$LP/_control" -d '{"webhook_repeat": 1}'
for f in will-fail please-cancel partial-doc; do
    req POST "$V1/upload" "${A[@]}" -F "file=@$tmp/$f.md;type=text/plain" -F "webhook_url=$SINK/$f"
done
if wait_until "$SINK/_received" 'b["count"] >= 6'; then
    sleep 0.2; sink_get
    expect 200 '[seen := {}, [seen.setdefault(r["path"], []).append(json.loads(r["body"])["event_type"]) for r in b["requests"]], seen == {"/will-fail": ["parse.pending", "parse.error"], "/please-cancel": ["parse.pending", "parse.cancelled"], "/partial-doc": ["parse.pending", "parse.partial_success"]}][-1]' \
        "events: ERROR -> parse.error, CANCELLED -> parse.cancelled, PARTIAL_SUCCESS -> parse.partial_success"
else
    notok "events for failed / cancelled / partial jobs"
fi

# ------------------------------------------------------------ v1 webhook_configurations field
req POST "$SINK/_reset"
req POST "$LP/_control" -d '{"webhook": false}'
req POST "$V1/upload" "${A[@]}" -F "file=@$tmp/doc.md;type=text/markdown" \
    -F 'webhook_configurations=[{"webhook_url": "'"$SINK/cfg"'", "webhook_events": ["parse.success"], "webhook_headers": {"Authorization": "Bearer wh-token"}}]'
jget CFG 'b["id"]'
if wait_until "$SINK/_received" 'b["count"] >= 1'; then
    sleep 0.3; sink_get
    expect 200 '[r := b["requests"], p := json.loads(r[0]["body"]), len(r) == 1 and r[0]["path"] == "/cfg" and p["event_type"] == "parse.success" and p["data"]["id"] == "'"$CFG"'" and r[0]["headers"]["authorization"] == "Bearer wh-token"][-1]' \
        "v1 webhook_configurations: events to its url, only those listed, with its headers (webhook knob off)"
else
    notok "v1 webhook_configurations delivered"
fi
req POST "$V1/upload" "${A[@]}" -F "file=@$tmp/doc.md;type=text/markdown" -F 'webhook_configurations={not json'
expect 400 'b["detail"].startswith("Invalid configuration:")' "v1 webhook_configurations that is not JSON -> 400"

# ------------------------------------------------------------ webhook retries
req POST "$SINK/_reset"
req POST "$LP/_reset"
req POST "$SINK/_control" -d '{"status": 404}'
req POST "$LP/_control" -d '{"webhook": true, "webhook_style": "push", "webhook_retries": 2, "webhook_repeat": 1}'
req POST "$V1/upload" "${A[@]}" -F "file=@$tmp/doc.md;type=text/markdown" -F "webhook_url=$SINK/h3"
jget RT 'b["id"]'
if wait_until "$SINK/_received" 'b["count"] >= 3' 60; then ok "webhook re-sent after a 404 (any non-2xx): 1 + 2 retries"; else notok "webhook retried after 404"; fi
sleep 0.3
req GET "$LP/_stats"
expect 200 'b["webhooks"] == {"attempts": 3, "by_status": {"404": 3}, "failed": 1, "by_event": {"push": 1}}' "webhook delivery counted in /_stats (attempts, by_status, failed, by_event)"
req POST "$SINK/_control" -d '{"status": 200}'
req POST "$LP/_control" -d '{"webhook": false}'

echo "# fake LlamaParse v2"
V2=$LP/api/v2/parse
conf() { printf '%s' "configuration=$1"; }
req POST "$V2/upload" -F "file=@$tmp/doc.md;type=text/markdown" -F "$(conf '{"tier": "fast", "version": "latest"}')"
expect 401 'b == {"detail": "Invalid API key"}' "v2 upload without a key -> 401"
req POST "$V2/upload" "${A[@]}" -F "file=@$tmp/doc.md;type=text/markdown" -F "$(conf '{"tier": "fast", "version": "latest", "disable_cache": true}')"
expect 200 'set(b) == {"id", "project_id", "status", "created_at", "updated_at", "name", "tier", "error_message"} and b["status"] == "PENDING" and b["name"] == "doc.md" and b["tier"] == "fast" and b["error_message"] is None and b["created_at"] == b["updated_at"] and b["created_at"].endswith("Z") and len(b["id"]) == 36' \
    "v2 upload -> 200 {id, project_id, status PENDING, created_at, updated_at, name, tier, error_message null}"
jget V2MD 'b["id"]'
req GET "$V2/$V2MD" "${A[@]}"
expect 200 'set(b) == {"job"} and b["job"]["status"] == "COMPLETED" and b["job"]["id"] == "'"$V2MD"'" and b["job"]["name"] == "doc.md"' "v2 GET without expand -> {job} only, COMPLETED"
req GET "$LP/proxy/api/v2/parse/$V2MD?expand=markdown_full,text_full" "${A[@]}"
expect 200 'b["markdown_full"] == "# Heading\n\nSome *markdown* body.\n" and b["text_full"] == "Heading\n\nSome markdown body.\n" and "markdown" not in b' "expand=markdown_full,text_full (comma form, with --prefix)"
req GET "$V2/$V2MD?expand=markdown&expand=text&expand=job_metadata" "${A[@]}"
expect 200 'b["markdown"] == {"pages": [{"page_number": 1, "success": True, "markdown": "# Heading\n\nSome *markdown* body.\n"}]} and b["text"] == {"pages": [{"page_number": 1, "text": "Heading\n\nSome markdown body.\n"}]} and b["job_metadata"]["job_pages"] == 1 and b["job_metadata"]["configuration"] == {"tier": "fast", "version": "latest", "disable_cache": True} and "markdown_full" not in b' \
    "expand=markdown&expand=text&expand=job_metadata (repeated form): pages, and job_metadata echoes the configuration"
req POST "$V2/upload" "${A[@]}" -F "file=@$tmp/doc.pdf;type=application/pdf" -F "$(conf '{"tier": "agentic", "version": "2026-01-08", "output_options": {"markdown": {"annotate_links": true}}}')"
jget V2PDF 'b["id"]'
req GET "$V2/$V2PDF?expand=markdown,markdown_full" "${A[@]}"
expect 200 '[p := b["markdown"]["pages"], [x["page_number"] for x in p] == [1, 2] and all(x["success"] for x in p) and "".join(x["markdown"] for x in p) == b["markdown_full"] and b["job"]["tier"] == "agentic"][-1]' \
    "v2 two-page pdf: markdown.pages 1..2, their concatenation is markdown_full"
req POST "$V2/upload" "${A[@]}" -F "file=@$tmp/partial-doc.pdf;type=application/pdf" -F "$(conf '{"tier": "cost_effective", "version": "latest"}')"
jget V2P 'b["id"]'
req GET "$V2/$V2P?expand=markdown,markdown_full,text" "${A[@]}"
expect 200 '[p := b["markdown"]["pages"], b["job"]["status"] == "COMPLETED" and p[0]["success"] is True and set(p[1]) == {"page_number", "success", "error"} and p[1]["page_number"] == 2 and p[1]["success"] is False and b["markdown_full"] == p[0]["markdown"] and [t["page_number"] for t in b["text"]["pages"]] == [1]][-1]' \
    "v2 partial marker: COMPLETED, page 2 {page_number, success: false, error}, markdown_full without it"
req POST "$V2/upload" "${A[@]}" -F "file=@$tmp/will-fail.md;type=text/plain" -F "$(conf '{"tier": "fast", "version": "latest"}')"
jget V2F 'b["id"]'
req GET "$V2/$V2F?expand=markdown_full" "${A[@]}"
expect 200 'b["job"]["status"] == "FAILED" and "will-fail.md" in b["job"]["error_message"] and set(b) == {"job"}' "v2 fail marker: FAILED with error_message, nothing expanded"
req POST "$V2/upload" "${A[@]}" -F "file=@$tmp/please-cancel.md;type=text/plain" -F "$(conf '{"tier": "fast", "version": "latest"}')"
jget V2C 'b["id"]'
req GET "$V2/$V2C" "${A[@]}"
expect 200 'b["job"]["status"] == "CANCELLED" and b["job"]["error_message"] is None' "v2 cancel marker: CANCELLED"
req GET "$V2/00000000-0000-0000-0000-000000000000" "${A[@]}"
expect 404 'b == {"detail": "Job not found"}' "v2 unknown id -> 404 Job not found"
req GET "$V2/$RT" "${A[@]}"
expect 404 'b == {"detail": "Job not found"}' "a v1 job id is not a v2 job"
req GET "$V2/upload" "${A[@]}"
expect 405 'True' "GET on v2 upload -> 405"
req POST "$LP/_control" -d '{"parse_latency": 2.0}'
req POST "$V2/upload" "${A[@]}" -F "file=@$tmp/doc.md;filename=slow2.md;type=text/markdown" -F "$(conf '{"tier": "fast", "version": "latest"}')"
jget V2S 'b["id"]'
req GET "$V2/$V2S?expand=markdown_full" "${A[@]}"
expect 200 'b["job"]["status"] == "PENDING" and set(b) == {"job"}' "v2 PENDING in the first half of the parse latency (expand ignored)"
sleep 1.2
req GET "$V2/$V2S" "${A[@]}"
expect 200 'b["job"]["status"] == "RUNNING" and b["job"]["updated_at"] > b["job"]["created_at"]' "v2 RUNNING in the second half, updated_at moved"
sleep 1.0
req GET "$V2/$V2S?expand=markdown_full" "${A[@]}"
expect 200 'b["job"]["status"] == "COMPLETED" and b["markdown_full"].startswith("# Heading")' "v2 COMPLETED after the parse latency"
req POST "$LP/_control" -d '{"parse_latency": 0}'

# ------------------------------------------------------------ v2 refusals (422 shapes)
req POST "$V2/upload" "${A[@]}" -F "file=@$tmp/doc.md;type=text/markdown" -F "$(conf '{"version": "latest"}')"
expect 422 'b == {"detail": [{"type": "missing", "loc": ["body", "configuration", "tier"], "msg": "Field required", "input": {"version": "latest"}}]}' \
    "v2 configuration without tier -> 422 pydantic missing"
req POST "$V2/upload" "${A[@]}" -F "file=@$tmp/doc.md;type=text/markdown" -F "$(conf '{"tier": "premium", "version": "latest"}')"
expect 422 'b == {"detail": [{"type": "literal_error", "loc": ["body", "configuration", "tier"], "msg": "Input should be \x27fast\x27, \x27cost_effective\x27, \x27agentic\x27 or \x27agentic_plus\x27", "input": "premium", "ctx": {"expected": "\x27fast\x27, \x27cost_effective\x27, \x27agentic\x27 or \x27agentic_plus\x27"}}]}' \
    "v2 bad tier -> 422 literal_error"
req POST "$V2/upload" "${A[@]}" -F "file=@$tmp/doc.md;type=text/markdown" -F "$(conf '{"tier": "fast", "version": "latest", "job_id": "j1", "source_url": "https://example.com/a.pdf"}')"
expect 422 'b == {"detail": [{"type": "extra_forbidden", "loc": ["body", "configuration", "job_id"], "msg": "Extra inputs are not permitted", "input": "j1"}, {"type": "extra_forbidden", "loc": ["body", "configuration", "source_url"], "msg": "Extra inputs are not permitted", "input": "https://example.com/a.pdf"}]}' \
    "v2 unknown configuration keys -> 422 extra_forbidden, one per key"
req POST "$V2/upload" "${A[@]}" -F "file=@$tmp/doc.md;type=text/markdown" -F "configuration=tier=fast"
expect 422 '[e := b["detail"], len(e) == 1 and e[0]["type"] == "json_invalid" and e[0]["loc"] == ["body", "configuration"] and e[0]["msg"].startswith("Invalid JSON: ") and e[0]["input"] == "tier=fast"][-1]' \
    "v2 configuration that is not JSON -> 422 json_invalid"
req POST "$V2/upload" "${A[@]}" -F "file=@$tmp/doc.md;type=text/markdown" -F "$(conf '["fast"]')"
expect 422 'b["detail"][0]["type"] == "dict_type" and b["detail"][0]["loc"] == ["body", "configuration"]' "v2 configuration that is not an object -> 422"
req POST "$V2/upload" "${A[@]}" -F "file=@$tmp/doc.md;type=text/markdown" -F "$(conf '{"tier": "fast", "version": "latest"}')" -F "job_id=j1"
expect 422 'b == {"detail": [{"type": "extra_forbidden", "loc": ["body", "job_id"], "msg": "Extra inputs are not permitted", "input": "j1"}]}' \
    "v2 extra multipart field -> 422 extra_forbidden at [body, name]"
req POST "$V2/upload" "${A[@]}" -F "$(conf '{"tier": "fast"}')"
expect 422 'b == {"detail": [{"type": "missing", "loc": ["body", "file"], "msg": "Field required", "input": None}, {"type": "missing", "loc": ["body", "configuration", "version"], "msg": "Field required", "input": {"tier": "fast"}}]}' \
    "v2 without file (and without version) -> 422 listing both"
req POST "$V2/upload" "${A[@]}" -H 'Content-Type: application/json' -d '{"tier": "fast", "version": "latest"}'
expect 422 '[e["loc"] for e in b["detail"]] == [["body", "file"], ["body", "configuration"]]' "v2 JSON body on the upload path -> 422 file and configuration missing"
req POST "$V2/upload" "${A[@]}" -F "file=@$tmp/doc.txt;type=text/plain" -F "$(conf '{"tier": "fast", "version": "latest"}')"
expect 400 'b == {"detail": "Unsupported file type: .txt"}' "v2 .txt -> 400 Unsupported file type"
req POST "$LP/_control" -d '{"max_file_bytes": 5000}'
req POST "$V2/upload" "${A[@]}" -F "file=@$tmp/doc.pdf;type=application/pdf" -F "$(conf '{"tier": "fast", "version": "latest"}')"
expect 413 'b["detail"].startswith("File too large")' "v2 file over max_file_bytes -> 413"
req POST "$LP/_control" -d '{"max_file_bytes": 536870912, "rate_limit_every": 1}'
req POST "$V2/upload" "${A[@]}" -F "file=@$tmp/doc.md;type=text/markdown" -F "$(conf '{"tier": "fast", "version": "latest"}')"
expect 429 'h.get("retry-after") == "1"' "v2 upload under rate_limit_every -> 429 Retry-After"
req POST "$LP/_control" -d '{"rate_limit_every": 0, "poll_error_rate": 1.0}'
req GET "$V2/$V2MD" "${A[@]}"
expect 500 'b["detail"].startswith("Oops!")' "v2 GET under poll_error_rate -> 500"
req POST "$LP/_control" -d '{"poll_error_rate": 0}'
req GET "$LP/_stats"
expect 200 'b["v2_uploads"] == 18 and b["v2_uploads_by_status"] == {"401": 1, "200": 6, "422": 8, "400": 1, "413": 1, "429": 1} and b["v2_uploads_refused"] == {"validation": 8, "file_type": 1, "file_size": 1} and b["v2_jobs"] == 6 and b["v2_jobs_by_status"] == {"COMPLETED": 4, "FAILED": 1, "CANCELLED": 1} and b["v2_polls"] == 13 and b["v2_polls_by_status"] == {"200": 10, "404": 2, "500": 1} and b["v2_results_served"] == 5 and b["http_422"] == 8' \
    "/_stats counts v2 uploads, refusals, jobs, polls, results"

# ------------------------------------------------------------ v2 webhook_configurations
req POST "$SINK/_reset"
req POST "$LP/_control" -d '{"parse_latency": 0.6}'
req POST "$V2/upload" "${A[@]}" -F "file=@$tmp/doc.md;type=text/markdown" \
    -F "$(conf '{"tier": "fast", "version": "latest", "webhook_configurations": [{"webhook_url": "'"$SINK/v2"'", "webhook_headers": {"X-Tenant": "t1"}}, {"webhook_url": "'"$SINK/second"'"}]}')"
jget V2W 'b["id"]'
if wait_until "$SINK/_received" 'b["count"] >= 3'; then
    sleep 0.3; sink_get
    pyrun "v2 webhook_configurations[0]: parse.pending, parse.running, parse.success with its headers; the second configuration unused" "" <<PY
b = json.load(open("$tmp/body"))
r = b["requests"]
ps = [json.loads(x["body"]) for x in r]
ok = ([p["event_type"] for p in ps] == ["parse.pending", "parse.running", "parse.success"]
      and all(x["path"] == "/v2" and x["headers"]["x-tenant"] == "t1"
              and x["headers"]["user-agent"] == "llamaindex-webhook-service/1.0"
              and x["headers"]["x-webhook-event-type"] == p["event_type"]
              and x["headers"]["x-webhook-event-id"] == p["event_id"]
              and p["data"] == {"id": "$V2W", "job_id": "$V2W"} for x, p in zip(r, ps))
      and len({p["event_id"] for p in ps}) == 3)
why = "requests: %r" % [(x["path"], x["body"]) for x in r]
PY
else
    notok "v2 webhook events delivered" "$(cat "$tmp/lp.err")"
fi
req POST "$SINK/_reset"
req POST "$LP/_control" -d '{"parse_latency": 0}'
req POST "$V2/upload" "${A[@]}" -F "file=@$tmp/doc.md;type=text/markdown" \
    -F "$(conf '{"tier": "fast", "version": "latest", "webhook_configurations": [{"webhook_url": "'"$SINK/only-success"'", "webhook_events": ["parse.success"]}]}')"
for f in will-fail please-cancel; do
    req POST "$V2/upload" "${A[@]}" -F "file=@$tmp/$f.md;type=text/plain" \
        -F "$(conf '{"tier": "fast", "version": "latest", "webhook_configurations": [{"webhook_url": "'"$SINK/$f"'"}]}')"
done
req POST "$V2/upload" "${A[@]}" -F "file=@$tmp/partial-doc.pdf;type=application/pdf" \
    -F "$(conf '{"tier": "fast", "version": "latest", "webhook_configurations": [{"webhook_url": "'"$SINK/partial"'", "webhook_events": ["parse.partial_success", "parse.success"]}]}')"
if wait_until "$SINK/_received" 'b["count"] >= 6'; then
    sleep 0.3; sink_get
    expect 200 '[seen := {}, [seen.setdefault(r["path"], []).append(json.loads(r["body"])["event_type"]) for r in b["requests"]], seen == {"/only-success": ["parse.success"], "/will-fail": ["parse.pending", "parse.error"], "/please-cancel": ["parse.pending", "parse.cancelled"], "/partial": ["parse.partial_success"]}][-1]' \
        "v2 webhook_events filter; FAILED -> parse.error, CANCELLED -> parse.cancelled, partial -> parse.partial_success; no running event without latency"
else
    notok "v2 webhook events for filtered / failed / cancelled / partial jobs"
fi
req POST "$V2/upload" "${A[@]}" -F "file=@$tmp/doc.md;type=text/markdown" \
    -F "$(conf '{"tier": "fast", "version": "latest", "webhook_configurations": [{"webhook_url": "x", "webhook_events": "parse.success"}]}')"
expect 422 'b["detail"] == [{"type": "list_type", "loc": ["body", "configuration", "webhook_configurations", 0, "webhook_events"], "msg": "Input should be a valid list", "input": "parse.success"}]' \
    "v2 webhook_events that is not a list -> 422 list_type"

# ------------------------------------------------------------ keep-alive, concurrency
curl -sv "${A[@]}" "$V1/job/$R1" "$V1/job/$R2" -o /dev/null -o /dev/null 2>"$tmp/kv"
if grep -qi "re-using existing connection\|reusing existing connection\|Connection #0 .* left intact" "$tmp/kv" && [ "$(grep -c 'Connected to' "$tmp/kv")" = 1 ]; then
    ok "HTTP/1.1 keep-alive: two requests on one connection"
else notok "HTTP/1.1 keep-alive" "$(grep -i connect "$tmp/kv" | head -5)"; fi
pyrun "300 concurrent keep-alive connections: upload + result each" "url, key = '$V1', '$LPKEY'" <<'PY'
import http.client, sys, threading, json, urllib.parse
u = urllib.parse.urlsplit(url)
N = 300
barrier = threading.Barrier(N, timeout=30)
results = []
lock = threading.Lock()
def one(i):
  try:
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    c.connect()
    barrier.wait()
    body = (b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"c%d.md\"\r\n"
            b"Content-Type: text/plain\r\n\r\nconcurrent %d\r\n--B--\r\n" % (i, i))
    c.request("POST", u.path + "/upload", body, {"Authorization": "Bearer " + key,
              "Content-Type": "multipart/form-data; boundary=B"})
    r = c.getresponse()
    d = json.loads(r.read())
    c.request("GET", u.path + "/job/" + d["id"] + "/result/markdown", headers={"Authorization": "Bearer " + key})
    r2 = c.getresponse()
    md = json.loads(r2.read())["markdown"]
    with lock:
        results.append((r.status, r2.status, md == "concurrent %d\n" % i))
  except Exception as e:
    with lock:
        results.append(repr(e))
ts = [threading.Thread(target=one, args=(i,)) for i in range(N)]
[t.start() for t in ts]
[t.join() for t in ts]
ok = len(results) == N and all(r == (200, 200, True) for r in results)
why = "results: %s" % sorted(set(map(str, results)))[:5]
PY

echo "# fake OpenAI"
O=(-H "Authorization: Bearer $OAKEY" -H 'Content-Type: application/json')
E=$OA/v1/embeddings
req POST "$E" -H 'Content-Type: application/json' -d '{"model":"text-embedding-3-small","input":"x"}'
expect 401 'b["error"]["code"] == "invalid_api_key" and b["error"]["type"] == "invalid_request_error" and b["error"]["param"] is None and "message" in b["error"]' \
    "no key -> 401 OpenAI error object, invalid_api_key"
req POST "$E" -H 'Authorization: Bearer sk-wrong-key-123' -d '{"model":"text-embedding-3-small","input":"x"}'
expect 401 'b["error"]["code"] == "invalid_api_key" and "Incorrect API key" in b["error"]["message"]' "wrong key -> 401"
req POST "$E" "${O[@]}" -d '{"model":"text-embedding-3-small","input":"hello world","encoding_format":"float"}'
expect 200 'b["object"] == "list" and b["model"] == "text-embedding-3-small" and len(b["data"]) == 1 and b["data"][0]["object"] == "embedding" and b["data"][0]["index"] == 0 and len(b["data"][0]["embedding"]) == 1536 and abs(math.hypot(*b["data"][0]["embedding"]) - 1) < 1e-9 and b["usage"] == {"prompt_tokens": 3, "total_tokens": 3}' \
    "string input -> 1536-d unit vector, usage ceil(11 bytes / 4) = 3 tokens"
expect 200 'h["x-ratelimit-remaining-requests"].isdigit() and h["x-ratelimit-remaining-tokens"].isdigit() and h["x-request-id"].startswith("req_") and h["content-length"] == str(len(raw))' \
    "x-ratelimit-remaining-*, x-request-id, exact Content-Length"
cp "$tmp/body" "$tmp/hello.json"
req POST "$OA/embeddings" "${O[@]}" -d '{"model":"text-embedding-3-small","input":["a","hello world","日本語テキスト"]}'
expect 200 '[d["index"] for d in b["data"]] == [0, 1, 2] and b["data"][1]["embedding"] == json.load(open("'"$tmp/hello.json"'"))["data"][0]["embedding"] and b["usage"]["prompt_tokens"] == 1 + 3 + 6' \
    "/embeddings without /v1; list input; deterministic; tokens ceil(utf8 bytes/4)"
req POST "$E" "${O[@]}" -d '{"model":"text-embedding-3-small","input":["hello world"],"dimensions":256}'
expect 200 '[v := b["data"][0]["embedding"], full := json.load(open("'"$tmp/hello.json"'"))["data"][0]["embedding"][:256], nf := math.hypot(*full), len(v) == 256 and abs(math.hypot(*v) - 1) < 1e-9 and all(abs(x - y / nf) < 1e-9 for x, y in zip(v, full))][-1]' \
    "dimensions 256: truncated full vector, renormalized"
req POST "$E" "${O[@]}" -d '{"model":"text-embedding-3-small","input":["hello world"],"dimensions":5}'
expect 200 '[v := b["data"][0]["embedding"], full := json.load(open("'"$tmp/hello.json"'"))["data"][0]["embedding"][:5], nf := math.hypot(*full), len(v) == 5 and abs(math.hypot(*v) - 1) < 1e-9 and all(abs(x - y / nf) < 1e-9 for x, y in zip(v, full))][-1]' \
    "odd dimensions 5: truncated full vector, renormalized"
req POST "$E" "${O[@]}" -d '{"model":"text-embedding-3-large","input":"x"}'
expect 200 'len(b["data"][0]["embedding"]) == 3072' "text-embedding-3-large -> 3072 dims"
req POST "$E" "${O[@]}" -d '{"model":"text-embedding-ada-002","input":"x"}'
expect 200 'len(b["data"][0]["embedding"]) == 1536' "text-embedding-ada-002 -> 1536 dims"
req POST "$E" "${O[@]}" -d '{"model":"text-embedding-ada-002","input":"x","dimensions":512}'
expect 400 'b["error"]["type"] == "invalid_request_error" and "dimensions" in b["error"]["message"]' "dimensions on ada-002 -> 400"
req POST "$E" "${O[@]}" -d '{"model":"text-embedding-3-small","input":"x","dimensions":5000}'
expect 400 'b["error"]["param"] == "dimensions"' "dimensions above model size -> 400"
req POST "$E" "${O[@]}" -d '{"model":"text-embedding-4-huge","input":"x"}'
expect 404 'b["error"]["code"] == "model_not_found"' "unknown model -> 404 model_not_found"
req POST "$E" "${O[@]}" -d '{"model":"text-embedding-3-small","input":""}'
expect 400 'b["error"]["type"] == "invalid_request_error"' "empty string -> 400"
req POST "$E" "${O[@]}" -d '{"model":"text-embedding-3-small","input":["ok",""]}'
expect 400 'True' "empty string inside a list -> 400"
req POST "$E" "${O[@]}" -d '{"model":"text-embedding-3-small","input":[]}'
expect 400 'True' "empty list -> 400"
req POST "$E" "${O[@]}" -d '{"model":"text-embedding-3-small","input":"x","temperature":1}'
expect 400 '"Unrecognized request argument supplied: temperature" == b["error"]["message"]' "unknown field -> 400"
req POST "$E" "${O[@]}" -d '{"model":"text-embedding-3-small","input":"x","encoding_format":"int8"}'
expect 400 'b["error"]["param"] == "encoding_format"' "bad encoding_format -> 400"
req POST "$E" "${O[@]}" -d 'not json'
expect 400 '"could not parse the JSON body" in b["error"]["message"]' "invalid JSON -> 400"
req POST "$E" "${O[@]}" -d '{"model":"text-embedding-3-small","input":"hello world","encoding_format":"base64"}'
expect 200 '[v := struct.unpack("<1536f", base64.b64decode(b["data"][0]["embedding"])), all(abs(x - y) < 1e-6 for x, y in zip(v, json.load(open("'"$tmp/hello.json"'"))["data"][0]["embedding"]))][-1]' \
    "encoding_format base64 -> little-endian float32"
req POST "$E" "${O[@]}" -d '{"model":"text-embedding-3-small","input":[1,2,3]}'
expect 200 'b["usage"]["prompt_tokens"] == 3 and len(b["data"]) == 1' "pre-tokenized input counts its tokens"
mk "$tmp/req" 'json.dumps({"model": "text-embedding-3-small", "input": ["w"] * 2049})'
req POST "$E" "${O[@]}" --data-binary "@$tmp/req"
expect 400 '"2048" in b["error"]["message"]' "2049 inputs -> 400"
mk "$tmp/req" 'json.dumps({"model": "text-embedding-3-small", "input": ["w%d" % i for i in range(2048)], "dimensions": 4})'
req POST "$E" "${O[@]}" --data-binary "@$tmp/req"
expect 200 'len(b["data"]) == 2048' "2048 inputs -> 200"
mk "$tmp/req" 'json.dumps({"model": "text-embedding-3-small", "input": ["a" * 32768, "b" * 32769]})'
req POST "$E" "${O[@]}" --data-binary "@$tmp/req"
expect 400 '"maximum context length is 8192 tokens" in b["error"]["message"] and "8193" in b["error"]["message"]' "input of 8193 tokens -> 400 context length"
mk "$tmp/req" 'json.dumps({"model": "text-embedding-3-small", "input": ["a" * 32768]})'
req POST "$E" "${O[@]}" --data-binary "@$tmp/req"
expect 200 'b["usage"]["prompt_tokens"] == 8192' "input of exactly 8192 tokens -> 200"
mk "$tmp/req" 'json.dumps({"model": "text-embedding-3-small", "input": [chr(97 + i % 26) * 32768 for i in range(37)]})'
req POST "$E" "${O[@]}" --data-binary "@$tmp/req"
expect 400 'b["error"]["code"] == "max_tokens_per_request" and "303104" in b["error"]["message"]' "request over 300000 tokens -> 400 max_tokens_per_request"
req POST "$OA/_control" -d '{"bytes_per_token": 1}'
req POST "$E" "${O[@]}" -d '{"model":"text-embedding-3-small","input":["hello world","日本"]}'
expect 200 'b["usage"]["prompt_tokens"] == 11 + 6' "bytes_per_token 1: tokens = UTF-8 bytes (worst case)"
req POST "$OA/_control" -d '{"bytes_per_token": 4, "shuffle": true}'
mk "$tmp/req" 'json.dumps({"model": "text-embedding-3-small", "input": ["s%d" % i for i in range(30)], "dimensions": 8})'
req POST "$E" "${O[@]}" --data-binary "@$tmp/req"
cp "$tmp/body" "$tmp/shuf.json"
req POST "$OA/_control" -d '{"shuffle": false}'
req POST "$E" "${O[@]}" --data-binary "@$tmp/req"
expect 200 '[s := json.load(open("'"$tmp/shuf.json"'"))["data"], idx := [d["index"] for d in s], sorted(idx) == list(range(30)) and idx != list(range(30)) and all(d["embedding"] == b["data"][d["index"]]["embedding"] for d in s)][-1]' \
    "shuffle: data out of order, same vector per index"
req POST "$OA/_control" -d '{"fail_marker": "POISON"}'
req POST "$E" "${O[@]}" -d '{"model":"text-embedding-3-small","input":["fine","has POISON inside"]}'
expect 400 'b["error"]["type"] == "invalid_request_error" and "POISON" in b["error"]["message"] and "input[1]" in b["error"]["message"]' "fail marker -> 400 naming it"
req POST "$OA/_control" -d '{"fail_marker": "", "error_rate": 1.0}'
req POST "$E" "${O[@]}" -d '{"model":"text-embedding-3-small","input":"x"}'
expect 500 'b["error"]["type"] == "server_error"' "error_rate 1 -> 500 server_error"
req POST "$OA/_control" -d '{"error_rate": 0, "latency": 0.3}'
req POST "$E" "${O[@]}" -d '{"model":"text-embedding-3-small","input":"x"}'
expect 200 'tt >= 0.3' "latency knob delays responses"
req POST "$OA/_control" -d '{"latency": 0}'
req GET "$OA/v1/models" "${O[@]}"
expect 200 'sorted(m["id"] for m in b["data"]) == ["text-embedding-3-large", "text-embedding-3-small", "text-embedding-ada-002"]' "GET /v1/models"
req GET "$E" "${O[@]}"
expect 405 '"error" in b' "GET /v1/embeddings -> 405 error object"
req POST "$OA/v1/chat/completions" "${O[@]}" -d '{}'
expect 404 'b["error"]["message"].startswith("Invalid URL")' "unknown path -> 404 Invalid URL"

req POST "$OA/_reset"
req POST "$OA/_control" -d '{"rate_limit_every": 3}'
req POST "$E" "${O[@]}" -d '{"model":"text-embedding-3-small","input":["one","two"]}'
req POST "$E" "${O[@]}" -d '{"model":"text-embedding-3-large","input":"three!!"}'
expect 200 'int(h["x-ratelimit-remaining-requests"]) == 10000 - 2' "remaining-requests falls with use"
req POST "$E" "${O[@]}" -d '{"model":"text-embedding-3-small","input":"x"}'
expect 429 'h["retry-after"] == "1" and h["retry-after-ms"] == "1000" and b["error"]["code"] == "rate_limit_exceeded"' \
    "rate_limit_every 3 -> 3rd request 429 with retry-after / retry-after-ms"
req POST "$E" "${O[@]}" -d '{"model":"nope","input":"x"}'
req GET "$OA/_stats"
expect 200 'b["requests"] == 4 and b["requests_ok"] == 2 and b["inputs_embedded"] == 3 and b["prompt_tokens"] == 1 + 1 + 2 and b["http_429"] == 1 and b["http_404"] == 1 and b["by_model"]["text-embedding-3-large"] == {"requests": 1, "inputs": 1, "tokens": 2} and b["max_inputs_in_request"] == 2' \
    "/_stats counts requests, inputs, prompt tokens, statuses, per model"
req POST "$OA/_reset"
req POST "$OA/_control" -d '{"rate_limit_every": 0, "rpm": 2}'
req POST "$E" "${O[@]}" -d '{"model":"text-embedding-3-small","input":"x"}'
req POST "$E" "${O[@]}" -d '{"model":"text-embedding-3-small","input":"x"}'
expect 200 'h["x-ratelimit-limit-requests"] == "2" and h["x-ratelimit-remaining-requests"] == "0"' "rpm 2: limit and remaining headers"
req POST "$E" "${O[@]}" -d '{"model":"text-embedding-3-small","input":"x"}'
expect 429 'b["error"]["code"] == "rate_limit_exceeded" and "(RPM)" in b["error"]["message"] and int(h["retry-after-ms"]) > 50000' "rpm exhausted -> 429 with time until the window frees"
req POST "$OA/_control" -d '{"rpm": 0, "tpm": 5}'
req POST "$OA/_reset"
req POST "$E" "${O[@]}" -d '{"model":"text-embedding-3-small","input":"0123456789012345678901234"}'
expect 429 '"(TPM)" in b["error"]["message"]' "tpm -> 429 when a request would exceed the token budget"
req POST "$OA/_reset" -d '{"knobs": true}'
req GET "$OA/_control"
expect 200 'b["tpm"] == 0 and b["api_key"] == "'$OAKEY'"' "/_reset {knobs: true} restores command-line knobs"

pyrun "200 concurrent embedding requests" "url, key = '$E', '$OAKEY'" <<'PY'
import http.client, sys, threading, json, urllib.parse
u = urllib.parse.urlsplit(url)
N = 200
barrier = threading.Barrier(N, timeout=30)
res = []
def one(i):
  try:
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    c.connect(); barrier.wait()
    c.request("POST", u.path, json.dumps({"model": "text-embedding-3-small", "input": ["t%d" % i, "u%d" % i], "dimensions": 16}),
              {"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    r = c.getresponse(); d = json.loads(r.read())
    res.append(r.status == 200 and [x["index"] for x in d["data"]] == [0, 1])
  except Exception as e:
    res.append(False)
ts = [threading.Thread(target=one, args=(i,)) for i in range(N)]
[t.start() for t in ts]; [t.join() for t in ts]
ok = len(res) == N and all(res)
why = "%d of %d ok" % (sum(res), N)
PY

echo "# shutdown"
for name in lp oa sink; do
    kill -TERM "${pid[$name]}"
    wait "${pid[$name]}"; rc=$?
    if [ "$rc" = 0 ]; then ok "$name exits 0 on SIGTERM"; else notok "$name exits 0 on SIGTERM" "rc=$rc $(tail -3 "$tmp/$name.err")"; fi
    unset "pid[$name]"
done
for name in lp oa sink; do
    if grep -q Traceback "$tmp/$name.err"; then notok "$name stderr has no traceback" "$(head -20 "$tmp/$name.err")"; fi
done

echo "1..$n"
if [ "$fails" -ne 0 ]; then echo "# $fails of $n failed"; exit 1; fi
echo "# all $n passed"
