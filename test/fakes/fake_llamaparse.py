#!/usr/bin/env python3
"""Fake LlamaParse (v1 parsing API and v2 parse API) for integration tests and benchmarks.

Endpoints ({prefix} is --prefix, empty by default; paths are also answered
without the prefix, and v1 paths with /api/parsing/... as well as /api/v1/parsing/...):

  POST {prefix}/api/v1/parsing/upload                 multipart: file + v1 option fields
  GET  {prefix}/api/v1/parsing/job/{id}               status
  GET  {prefix}/api/v1/parsing/job/{id}/result/markdown
  POST {prefix}/api/v2/parse/upload                   multipart: file + configuration (JSON)
  GET  {prefix}/api/v2/parse/{id}?expand=...          job (+ expanded results)
  GET  /_stats   POST /_reset   GET|POST /_control   GET /_health

Every behaviour modelled is cited in README.md (section "Sources").
Standard library only.
"""

import datetime
import hashlib
import heapq
import hmac
import ipaddress
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
import urllib.parse
import urllib.request
import uuid
from html.parser import HTMLParser

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fakecommon  # noqa: E402

BYTES_PER_PAGE = 3000

ROUTE_V1 = re.compile(r"^/api(?:/v1)?/parsing/(?:(upload)|job/([^/]+)(/result/markdown)?)/?$")
ROUTE_V2 = re.compile(r"^/api/v2/parse/([^/]+)/?$")

# v1 multipart field names: run-llama/llama-cloud-py @394d0a8
# src/llama_cloud/types/parsing_upload_file_params.py (organization_id and project_id
# are query parameters there, not form fields; output_tables_as_html goes on the
# wire as output_tables_as_HTML).  "file" is the document itself.
V1_FIELDS = frozenset("""
adaptive_long_table aggressive_table_extraction annotate_links auto_mode
auto_mode_configuration_json auto_mode_trigger_on_image_in_page
auto_mode_trigger_on_regexp_in_page auto_mode_trigger_on_table_in_page
auto_mode_trigger_on_text_in_page azure_openai_api_version azure_openai_deployment_name
azure_openai_endpoint azure_openai_key bbox_bottom bbox_left bbox_right bbox_top bounding_box
compact_markdown_table complemental_formatting_instruction content_guideline_instruction
continuous_mode disable_image_extraction disable_ocr disable_reconstruction do_not_cache
do_not_unroll_columns extract_charts extract_layout extract_printed_page_number fast_mode
file formatting_instruction gpt4o_api_key gpt4o_mode guess_xlsx_sheet_name hide_footers
hide_headers high_res_ocr html_make_all_elements_visible html_remove_fixed_elements
html_remove_navigation_elements http_proxy ignore_document_elements_for_layout_detection
inline_images_in_markdown input_s3_path input_s3_region input_url invalidate_cache
is_formatting_instruction job_timeout_extra_time_per_page_in_seconds job_timeout_in_seconds
keep_page_separator_when_merging_tables language layout_aware line_level_bounding_box
markdown_table_multiline_header_separator max_pages merge_tables_across_pages_in_markdown
model outlined_table_extraction output_pdf_of_document output_s3_path_prefix output_s3_region
output_tables_as_HTML output_tables_as_html page_error_tolerance page_footer_prefix
page_footer_suffix page_header_prefix page_header_suffix page_prefix page_separator page_suffix
parse_mode parsing_instruction precise_bounding_box premium_mode
presentation_out_of_bounds_content presentation_skip_embedded_data
preserve_layout_alignment_across_pages preserve_very_small_text preset remove_hidden_text
replace_failed_page_mode replace_failed_page_with_error_message_prefix
replace_failed_page_with_error_message_suffix save_images skip_diagonal_text
specialized_chart_parsing_agentic specialized_chart_parsing_efficient
specialized_chart_parsing_plus specialized_image_parsing spreadsheet_extract_sub_tables
spreadsheet_force_formula_computation strict_mode_buggy_font strict_mode_image_extraction
strict_mode_image_ocr strict_mode_reconstruction structured_output
structured_output_json_schema structured_output_json_schema_name system_prompt
system_prompt_append take_screenshot target_pages tier use_vendor_multimodal_model
user_prompt vendor_multimodal_api_key vendor_multimodal_model_name version
webhook_configurations webhook_url
""".split())
V1_LIST_FIELDS = frozenset({"language"})  # List[...]: sent as language[] (brackets)
# fields that steer caching or delivery, not the parse: left out of the cache key
V1_NOT_OPTIONS = frozenset({"webhook_url", "webhook_configurations", "do_not_cache",
                            "invalidate_cache"})

# v2 upload configuration: run-llama/llama-cloud-py src/llama_cloud/types/parsing_create_params.py
# (tier and version required) and parse_v2_parameters.py (the same keys, no file_id/source_url)
V2_TIERS = ("fast", "cost_effective", "agentic", "agentic_plus")
V2_OPTIONAL = frozenset({"agentic_options", "client_name", "crop_box", "disable_cache",
                         "fast_options", "http_proxy", "input_options", "output_options",
                         "page_ranges", "processing_control", "processing_options",
                         "webhook_configurations"})
V2_NOT_OPTIONS = frozenset({"webhook_configurations", "disable_cache", "client_name"})

# run-llama/llama-cloud-py src/llama_cloud/types/llama_parse_supported_file_extensions.py
SUPPORTED_EXTENSIONS = frozenset("""
.pdf .abw .awt .cgm .cwk .doc .docm .docx .dot .dotm .dotx .fodg .fodp .fopd .fodt .fb2 .hwp
.lwp .mcw .mw .mwd .odf .odt .otg .ott .pages .pbd .psw .rtf .sda .sdd .sdp .sdw .sgl .std
.stw .sxd .sxg .sxm .sxw .uof .uop .uot .vor .wpd .wps .wpt .wri .wn .xml .zabw .key .odp .odg
.otp .pot .potm .potx .ppt .pptm .pptx .sti .sxi .vsd .vsdm .vsdx .vdx .bmp .gif .jpg .jpeg
.png .svg .tif .tiff .webp .htm .html .xhtm .csv .dbf .dif .et .eth .fods .numbers .ods .ots
.prn .qpw .slk .stc .sxc .sylk .tsv .uos1 .uos2 .uos .wb1 .wb2 .wb3 .wk1 .wk2 .wk3 .wk4 .wks
.wq1 .wq2 .xlr .xls .xlsb .xlsm .xlsx .xlw .azw .azw3 .azw4 .cb7 .cbc .cbr .cbz .chm .djvu
.epub .fbz .htmlz .lit .lrf .md .mobi .pdb .pml .prc .rb .snb .tcr .txtz .m4a .mp3 .mp4 .mpeg
.mpga .wav .webm
""".split())
assert len(SUPPORTED_EXTENSIONS) == 144

# https://developers.llamaindex.ai/llamaparse/general/webhooks/ (parse.running: v2's
# webhook_configurations page)
PARSE_EVENTS = ("parse.pending", "parse.running", "parse.success", "parse.error",
                "parse.partial_success", "parse.cancelled")
WEBHOOK_USER_AGENT = "llamaindex-webhook-service/1.0"
PYDANTIC_URL = "https://errors.pydantic.dev/2.11/v/"

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


def split_pages(md, n):
    """Cut md into n consecutive slices (their concatenation is md), at paragraph
    breaks near equal sizes where there are any."""
    if n <= 1:
        return [md]
    import bisect
    breaks = [m.end() for m in re.finditer(r"\n\n+", md)] or \
        [m.end() for m in re.finditer(r"\n", md)]
    slack = len(md) // (2 * n) + 1
    cuts = []
    prev = 0
    for k in range(1, n):
        target = k * len(md) // n
        i = bisect.bisect_left(breaks, target)
        near = [b for b in breaks[max(0, i - 1):i + 1] if prev < b < len(md)]
        best = min(near, key=lambda b: abs(b - target)) if near else None
        if best is None or abs(best - target) > slack:
            best = max(prev, target)
        cuts.append(best)
        prev = best
    bounds = [0] + cuts + [len(md)]
    return [md[bounds[i]:bounds[i + 1]] for i in range(n)]


def to_pages(filename, ctype, data, pages):
    """Deterministic markdown for uploaded bytes, one string per page (see README)."""
    if ctype in ("text/markdown", "text/x-markdown"):
        return split_pages(data.decode("utf-8", "replace"), pages)
    if ctype == "text/plain":
        text = data.decode("utf-8", "replace").replace("\r\n", "\n")
        paras = [" ".join(line.strip() for line in p.splitlines() if line.strip())
                 for p in re.split(r"\n\s*\n", text)]
        paras = [p for p in paras if p]
        return split_pages("\n\n".join(paras) + "\n" if paras else "", pages)
    if ctype in ("text/html", "application/xhtml+xml"):
        p = _HTMLToMarkdown()
        p.feed(data.decode("utf-8", "replace"))
        p.close()
        return split_pages(p.result(), pages)
    digest = hashlib.sha256(data).digest()
    out = []
    for page in range(1, pages + 1):
        seed = digest + page.to_bytes(4, "big")
        nparas = 1 + seed[0] % 3 if page > 1 else 1 + digest[1] % 3
        chunk = ["# %s\n\n%d bytes of %s\n" % (filename or "document", len(data), ctype)] \
            if page == 1 else []
        chunk.append("\n## Page %d\n" % page)
        for k in range(nparas):
            chunk.append("\n" + _lorem_paragraph(seed + bytes([k])) + "\n")
        out.append("".join(chunk))
    return out


def md_to_text(md):
    """The plain-text twin of a markdown page: heading marks and emphasis dropped."""
    lines = []
    for line in md.split("\n"):
        line = re.sub(r"^#{1,6} ", "", line)
        line = re.sub(r"(\*\*|__|\*|`)", "", line)
        lines.append(line)
    return "\n".join(lines)


# ------------------------------------------------------------------ helpers
def iso(ts):
    """Wall-clock seconds -> ISO 8601 in UTC, as the v2 job's created_at / updated_at."""
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat() \
        .replace("+00:00", "Z")


def num(x):
    """3.0 -> 3 (the metadata docs type the credit counts as int); 0.5 stays 0.5."""
    return int(x) if float(x).is_integer() else x


def truthy(v):
    """A form value as pydantic reads a bool ("true", "1", "yes", "on", ...)."""
    if isinstance(v, bool):
        return v
    return str(v).strip().lower() in ("1", "true", "t", "yes", "y", "on")


def form_value(raw):
    """How the v1 server has typed a form value by the time it is validated: issue
    run-llama/llama_cloud_services#1132 reports take_screenshot=true as
    input_value=True, input_type=bool."""
    low = raw.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    return raw


def pydantic_repr(v):
    r = repr(v)
    return r if len(r) <= 50 else r[:25] + "..." + r[-24:]


def v1_extra_detail(extras):
    """The v1 answer to unknown form fields (issue #1132's text, one block per field)."""
    n = len(extras)
    out = ["Invalid configuration: %d validation error%s for LlamaParseMultipartConfiguration"
           % (n, "" if n == 1 else "s")]
    for name, raw in extras:
        v = form_value(raw)
        out.append(name)
        out.append("  Extra inputs are not permitted [type=extra_forbidden, input_value=%s, "
                   "input_type=%s]" % (pydantic_repr(v), type(v).__name__))
        out.append("    For further information visit %sextra_forbidden" % PYDANTIC_URL)
    return "\n".join(out)


def err(kind, loc, msg, value, ctx=None):
    """One FastAPI / pydantic v2 error object (the 422 detail list items)."""
    e = {"type": kind, "loc": loc, "msg": msg, "input": value}
    if ctx:
        e["ctx"] = ctx
    return e


def extension_of(filename):
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    i = base.rfind(".")
    return base[i:].lower() if i > 0 else ""


def webhook_url_problem(url):
    """The v1 webhook page's rules: https, a domain name (not an IP), under 200 chars."""
    try:
        u = urllib.parse.urlsplit(url)
    except ValueError:
        return "it is not a URL"
    if u.scheme != "https":
        return "the protocol must be HTTPS"
    host = u.hostname or ""
    if not host:
        return "it has no host"
    try:
        ipaddress.ip_address(host)
        return "the host must be a domain name rather than an IP address"
    except ValueError:
        pass
    if len(url) >= 200:
        return "the URL must be less than 200 characters"
    return None


def webhook_target(conf, where):
    """webhook_configurations[0] -> a delivery target, or raise ValueError(msg)."""
    if not isinstance(conf, dict):
        raise ValueError("%s[0] must be an object" % where)
    url = conf.get("webhook_url")
    if url is None:
        return None
    if not isinstance(url, str):
        raise ValueError("%s[0].webhook_url must be a string" % where)
    events = conf.get("webhook_events")
    if events is not None and (not isinstance(events, list)
                               or not all(isinstance(e, str) for e in events)):
        raise ValueError("%s[0].webhook_events must be a list of strings" % where)
    headers = conf.get("webhook_headers") or {}
    if not isinstance(headers, dict):
        raise ValueError("%s[0].webhook_headers must be an object" % where)
    return {"mode": "events", "url": url,
            "headers": {str(k): v if isinstance(v, str) else json.dumps(v)
                        for k, v in headers.items()},
            "events": None if events is None else set(events)}


FINAL_EVENT = {"success": "parse.success", "partial": "parse.partial_success",
               "error": "parse.error", "cancelled": "parse.cancelled"}


# ------------------------------------------------------------------- state
class Job:
    """One parse job, v1 (api 1) or v2 (api 2).  outcome: success, partial, error, cancelled."""

    def __init__(self, api):
        self.api = api
        self.id = str(uuid.uuid4())
        self.fields = None          # v1: the form fields received
        self.configuration = None   # v2: the configuration received
        self.tier = None
        self.error_code = None
        self.error_message = None
        self.failed_page = None     # v2 partial: the page reported as failed
        self.targets = []           # webhook targets: {"mode", "url", "headers", "events"}
        self.deliveries = []        # what was delivered: event, event_id, status, attempts
        self.wh_queue = []
        self.wh_busy = False
        self.webhook_status = None
        self.webhook_attempts = 0
        self.polls = 0
        self.result_fetches = 0
        self.served = False

    @property
    def markdown(self):
        return "".join(self.page_md)

    def ok_pages(self):
        """(page_number, markdown) of the pages that parsed."""
        return [(i + 1, md) for i, md in enumerate(self.page_md) if i + 1 != self.failed_page]

    def status(self, now):
        if self.api == 1:
            if now < self.ready_at:
                return "PENDING"
            return {"success": "SUCCESS", "partial": "PARTIAL_SUCCESS", "error": "ERROR",
                    "cancelled": self.cancel_spelling}[self.outcome]
        if now < self.ready_at:
            return "RUNNING" if now >= self.running_at and self.ready_at > self.created \
                else "PENDING"
        return {"success": "COMPLETED", "partial": "COMPLETED", "error": "FAILED",
                "cancelled": "CANCELLED"}[self.outcome]

    def updated_wall(self, now):
        if now >= self.ready_at:
            t = self.ready_at
        elif now >= self.running_at and self.api == 2 and self.ready_at > self.created:
            t = self.running_at
        else:
            t = self.created
        return self.created_wall + (t - self.created)

    def done(self, now):
        return now >= self.ready_at

    def billed(self):
        return self.outcome in ("success", "partial") and not self.cache_hit

    def to_json(self, now):
        out = {
            "api": "v%d" % self.api, "id": self.id, "filename": self.filename,
            "content_type": self.content_type, "bytes": self.size, "sha256": self.sha256,
            "pages": self.pages, "status": self.status(now), "outcome": self.outcome,
            "cache_hit": self.cache_hit, "markdown_bytes": len(self.markdown.encode()),
            "webhooks": [{"mode": t["mode"], "url": t["url"], "headers": t["headers"],
                          "events": None if t["events"] is None else sorted(t["events"])}
                         for t in self.targets],
            "webhook_url": self.targets[0]["url"] if self.targets else None,
            "webhook_status": self.webhook_status, "webhook_attempts": self.webhook_attempts,
            "deliveries": list(self.deliveries),
            "polls": self.polls, "result_fetches": self.result_fetches,
        }
        if self.api == 1:
            out["fields"] = self.fields
            out["final_status"] = self.status(float("inf"))
        else:
            out["configuration"] = self.configuration
            out["tier"] = self.tier
        return out


class LlamaParseApp:
    name = "fake-llamaparse"

    def __init__(self, args):
        self.verbose = args.verbose
        self.prefix = (args.prefix or "").rstrip("/")
        self.knobs = fakecommon.Knobs({
            "api_key": None, "latency": 0.0, "error_rate": 0.0, "rate_limit_every": 0,
            "rate_limit_rate": 0.0, "drop_rate": 0.0,
            "retry_after": 1.0, "parse_latency": 0.0, "parse_latency_per_page": 0.0,
            "fail_marker": "fail", "cancel_marker": "cancel", "partial_marker": "partial",
            "cancel_status": "CANCELLED", "poll_error_rate": 0.0, "credits_per_page": 1.0,
            "credits_max": 10000.0, "max_file_bytes": 512 * 1024 * 1024,
            "unsupported_type": "reject", "project_id": "00000000-0000-4000-8000-00000000f00d",
            "webhook": False, "webhook_url": "", "webhook_style": "push",
            "webhook_headers": {}, "webhook_retries": 2, "webhook_backoff": 1.0,
            "webhook_repeat": 1, "webhook_timeout": 30.0, "webhook_url_rules": False,
            "absurd_pages_marker": None,
        }, choices={"cancel_status": ("CANCELLED", "CANCELED"),
                    "webhook_style": ("push", "events"),
                    "unsupported_type": ("reject", "job_error")})
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
                            ("credits_max", args.credits_max),
                            ("max_file_bytes", args.max_file_bytes),
                            ("unsupported_type", args.unsupported_type),
                            ("webhook", args.webhook or bool(args.webhook_url)),
                            ("webhook_url", args.webhook_url or ""),
                            ("webhook_style", args.webhook_style),
                            ("webhook_headers", fakecommon._coerce(
                                "webhook_headers", {}, args.webhook_headers)),
                            ("webhook_retries", args.webhook_retries),
                            ("webhook_backoff", args.webhook_backoff),
                            ("webhook_repeat", args.webhook_repeat),
                            ("webhook_timeout", args.webhook_timeout),
                            ("webhook_url_rules", args.webhook_url_rules)):
            self.knobs.set_default(name, value)
        self.lock = threading.Lock()
        self.rng = random.Random(args.seed)
        self.seed = args.seed
        self.stats = fakecommon.Counter()
        self.jobs = {}
        self.upload_times = []  # every upload request's arrival (/_stats?times=1)
        self.cache = set()
        self.upload_count = 0
        # webhook scheduler: heap of (due, seq, job_id, target index, kind)
        self.wh_cond = threading.Condition()
        self.wh_heap = []
        self.wh_seq = 0
        self.wh_stop = False
        self.wh_thread = threading.Thread(target=self._webhook_loop, daemon=True)
        self.wh_thread.start()

    # ---- control ----------------------------------------------------------
    def reset(self, knobs=False):
        with self.lock:
            self.upload_times = []
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

    def credits_so_far(self, now):
        """Credits of every finished, billed job (the account's credits_used)."""
        with self.lock:
            jobs = list(self.jobs.values())
        per_page = self.knobs.get("credits_per_page")
        return sum(j.pages * per_page for j in jobs if j.done(now) and j.billed())

    def stats_json(self, raw_path):
        now = time.monotonic()
        s = self.stats.snapshot()
        with self.lock:
            jobs = list(self.jobs.values())
        by_status, v2_by_status = {}, {}
        pages_billed = 0
        credits = 0.0
        pages_done = 0
        per_page = self.knobs.get("credits_per_page")
        for j in jobs:
            st = j.status(now)
            d = by_status if j.api == 1 else v2_by_status
            d[st] = d.get(st, 0) + 1
            if j.done(now) and j.billed():
                pages_billed += j.pages
                credits += j.pages * per_page
            if j.done(now):
                pages_done += j.pages
        up = s.get("upload", {})
        v2up = s.get("v2_upload", {})
        v2job = s.get("v2_job", {})
        http = s.get("http", {})
        out = {
            "uploads": sum(up.values()),
            "uploads_by_status": up,
            "uploads_accepted": up.get("200", 0),
            "uploads_refused": s.get("refused", {}),
            "job_polls": sum(s.get("job", {}).values()),
            "job_polls_by_status": s.get("job", {}),
            "result_fetches": sum(s.get("result", {}).values()),
            "result_fetches_by_status": s.get("result", {}),
            "results_served": s.get("result", {}).get("200", 0),
            "result_pages_served": s.get("result_pages_served", 0),
            "jobs": sum(1 for j in jobs if j.api == 1),
            "jobs_by_status": by_status,
            "v2_uploads": sum(v2up.values()),
            "v2_uploads_by_status": v2up,
            "v2_uploads_accepted": v2up.get("200", 0),
            "v2_uploads_refused": s.get("v2_refused", {}),
            "v2_polls": sum(v2job.values()),
            "v2_polls_by_status": v2job,
            "v2_results_served": s.get("v2_results_served", 0),
            "v2_jobs": sum(1 for j in jobs if j.api == 2),
            "v2_jobs_by_status": v2_by_status,
            "cache_hits": sum(1 for j in jobs if j.cache_hit),
            "pages_billed": pages_billed,
            "pages_parsed": pages_done,
            "credits_used": num(credits),
            "http_by_status": http,
            "http_401": http.get("401", 0),
            "http_413": http.get("413", 0),
            "http_422": http.get("422", 0),
            "http_429": http.get("429", 0),
            "http_500": http.get("500", 0),
            "webhooks": s.get("webhooks", {}),
            "faults": s.get("faults", {}),
        }
        if "jobs=1" in raw_path.partition("?")[2].split("&"):
            out["job_list"] = [j.to_json(now) for j in jobs]
        if "times=1" in raw_path.partition("?")[2].split("&"):
            with self.lock:
                out["upload_times"] = list(self.upload_times)
        return out

    def note_upload(self):
        """The arrival of every upload request (v1 or v2, answered or not), wall clock."""
        with self.lock:
            self.upload_times.append(round(time.time(), 6))

    # ---- jobs ---------------------------------------------------------------
    def create_job(self, api, filename, ctype, data, fields=None, configuration=None,
                   targets=(), unsupported=False):
        k = self.knobs.snapshot()
        j = Job(api)
        ctype = guess_type(filename, ctype)
        name = filename or ""
        pages = max(1, len(data) // BYTES_PER_PAGE)
        outcome = "success"
        if unsupported:  # unsupported_type = job_error
            outcome, j.error_code, j.error_message = "error", "UNSUPPORTED_FILE_TYPE", \
                "Unsupported file type."
        elif k["fail_marker"] and k["fail_marker"] in name:
            outcome, j.error_code = "error", "FAKE_PARSE_ERROR"
            j.error_message = "fake-llamaparse: cannot parse %r (name contains %r)" \
                % (name, k["fail_marker"])
        elif k["cancel_marker"] and k["cancel_marker"] in name:
            outcome = "cancelled"
        elif k["partial_marker"] and k["partial_marker"] in name:
            outcome = "partial"
        ok = outcome in ("success", "partial")
        j.outcome = outcome
        j.cancel_spelling = k["cancel_status"]
        j.project_id = k["project_id"] or ""
        j.filename, j.content_type, j.size, j.pages = name, ctype, len(data), pages
        j.sha256 = hashlib.sha256(data).hexdigest()
        j.page_md = to_pages(name, ctype, data, pages) if ok else []
        if api == 2 and outcome == "partial":
            j.failed_page = pages  # the last page (the only one of a 1-page document)
        j.created = time.monotonic()
        j.created_wall = time.time()
        j.ready_at = j.created + k["parse_latency"] + k["parse_latency_per_page"] * pages
        j.running_at = j.created + (j.ready_at - j.created) / 2
        if api == 1:
            j.fields = fields
            opts = {n: v for n, v in fields.items() if n not in V1_NOT_OPTIONS}
            no_hit = truthy(fields.get("do_not_cache", "")) or \
                truthy(fields.get("invalidate_cache", ""))
            store = not truthy(fields.get("do_not_cache", ""))
        else:
            j.configuration = configuration
            j.tier = configuration["tier"]
            opts = {n: v for n, v in configuration.items() if n not in V2_NOT_OPTIONS}
            no_hit = configuration.get("disable_cache") is True
            store = True
        key = (api, j.sha256, json.dumps(opts, sort_keys=True))
        j.targets = list(targets)
        with self.lock:
            j.cache_hit = ok and not no_hit and key in self.cache
            if ok and store:
                self.cache.add(key)
            self.jobs[j.id] = j
        self._schedule(j)
        return j

    def get_job(self, job_id, api):
        with self.lock:
            j = self.jobs.get(job_id)
        return j if j is not None and j.api == api else None

    def metadata(self, j):
        """v1 job_metadata (docs.cloud.llamaindex.ai/llamaparse/features/metadata)."""
        per_page = self.knobs.get("credits_per_page")
        usage = 0 if j.cache_hit else j.pages * per_page
        marker = self.knobs.get("absurd_pages_marker")
        pages = j.pages
        if marker and marker in (j.filename or ""):
            pages = 10 ** 12  # fault injection: a page count no integer column holds
        return {"job_pages": pages, "job_credits_usage": num(usage),
                "job_is_cache_hit": j.cache_hit,
                "credits_used": num(self.credits_so_far(time.monotonic())),
                "credits_max": num(self.knobs.get("credits_max")),
                "job_auto_mode_triggered_pages": 0}

    def v2_metadata(self, j):
        """v2 job_metadata is an untyped object in the client; the fake's choice."""
        per_page = self.knobs.get("credits_per_page")
        return {"job_pages": j.pages,
                "job_credits_usage": num(0 if j.cache_hit else j.pages * per_page),
                "job_is_cache_hit": j.cache_hit, "configuration": j.configuration}

    # ---- webhooks -----------------------------------------------------------
    def _schedule(self, j):
        items = []
        for ti, t in enumerate(j.targets):
            if t["mode"] == "push":
                # documented for finished parses; a push on ERROR/CANCELLED is not
                if j.outcome in ("success", "partial"):
                    items.append((j.ready_at, ti, "final"))
                continue
            plan = [(j.created, "parse.pending")]
            if j.api == 2 and j.ready_at > j.created:
                plan.append((j.running_at, "parse.running"))
            plan.append((j.ready_at, FINAL_EVENT[j.outcome]))
            items.extend((due, ti, ev) for due, ev in plan
                         if t["events"] is None or ev in t["events"])
        if not items:
            return
        with self.wh_cond:
            for due, ti, kind in items:
                self.wh_seq += 1
                heapq.heappush(self.wh_heap, (due, self.wh_seq, j.id, ti, kind))
            self.wh_cond.notify()

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
                _, _, job_id, ti, kind = heapq.heappop(self.wh_heap)
            with self.lock:
                j = self.jobs.get(job_id)
                if j is None:
                    continue
                j.wh_queue.append((ti, kind))
                start = not j.wh_busy
                j.wh_busy = True
            if start:  # one sender per job: its events go out in order
                threading.Thread(target=self._drain, args=(j,), daemon=True).start()

    def _drain(self, j):
        while True:
            with self.lock:
                if not j.wh_queue:
                    j.wh_busy = False
                    return
                ti, kind = j.wh_queue.pop(0)
            try:
                self._deliver(j, j.targets[ti], kind)
            except Exception:  # a bug here must not stop the job's other events
                import traceback
                traceback.print_exc()

    def push_body(self, j):
        """v1 webhook push (developers.llamaindex.ai/llamaparse/parse/v1/features/webhook/)."""
        pages = [{"page": i + 1, "text": md_to_text(md), "md": md, "images": []}
                 for i, md in enumerate(j.page_md)]
        return {"txt": md_to_text(j.markdown), "md": j.markdown, "json": pages, "images": []}

    def _deliver(self, j, target, kind):
        k = self.knobs.snapshot()
        if target["mode"] == "push":
            event, event_id = "push", None
            body = json.dumps(self.push_body(j), separators=(",", ":")).encode()
            headers = {"Content-Type": "application/json"}
        else:
            event, event_id = kind, str(uuid.uuid4())
            body = json.dumps({"event_id": event_id, "event_type": event,
                               "timestamp": round(time.time(), 6),
                               "data": {"id": j.id, "job_id": j.id}},
                              separators=(",", ":")).encode()
            headers = {"Content-Type": "application/json", "User-Agent": WEBHOOK_USER_AGENT,
                       "X-Webhook-Event-ID": event_id, "X-Webhook-Event-Type": event}
            headers.update(target["headers"])
        for copy in range(max(1, k["webhook_repeat"])):  # a redelivery: same body, same id
            status = None
            attempts = 0
            for attempt in range(k["webhook_retries"] + 1):
                if attempt:
                    time.sleep(k["webhook_backoff"] * 2 ** (attempt - 1))
                attempts += 1
                self.stats.inc("webhooks", "attempts")
                with self.lock:
                    j.webhook_attempts += 1
                try:
                    req = urllib.request.Request(target["url"], data=body, headers=headers,
                                                 method="POST")
                    with urllib.request.urlopen(req, timeout=k["webhook_timeout"]) as r:
                        r.read()
                        status = r.status
                except urllib.error.HTTPError as e:
                    status = e.code
                except Exception:
                    status = "error"
                self.stats.inc("webhooks", "by_status", str(status))
                if isinstance(status, int) and 200 <= status < 300:
                    break
            ok = isinstance(status, int) and 200 <= status < 300
            self.stats.inc("webhooks", "delivered" if ok else "failed")
            self.stats.inc("webhooks", "by_event", event)
            with self.lock:
                j.webhook_status = status
                j.deliveries.append({"event": event, "event_id": event_id, "url": target["url"],
                                     "copy": copy + 1, "status": status, "attempts": attempts})


# ---------------------------------------------------------------- v2 validation
TIER_CHOICES = "'fast', 'cost_effective', 'agentic' or 'agentic_plus'"


def v2_config_errors(c):
    """pydantic v2 errors for an upload's configuration (extra keys forbidden)."""
    loc = ["body", "configuration"]
    if not isinstance(c, dict):
        return [err("dict_type", loc, "Input should be a valid dictionary", c)]
    errors = []
    if "tier" not in c:
        errors.append(err("missing", loc + ["tier"], "Field required", c))
    elif c["tier"] not in V2_TIERS:
        errors.append(err("literal_error", loc + ["tier"], "Input should be " + TIER_CHOICES,
                          c["tier"], {"expected": TIER_CHOICES}))
    if "version" not in c:
        errors.append(err("missing", loc + ["version"], "Field required", c))
    elif not isinstance(c["version"], str):
        errors.append(err("string_type", loc + ["version"], "Input should be a valid string",
                          c["version"]))
    if c.get("disable_cache") is not None and not isinstance(c["disable_cache"], bool):
        errors.append(err("bool_type", loc + ["disable_cache"],
                          "Input should be a valid boolean", c["disable_cache"]))
    wcs = c.get("webhook_configurations")
    wloc = loc + ["webhook_configurations"]
    if wcs is not None and not isinstance(wcs, list):
        errors.append(err("list_type", wloc, "Input should be a valid list", wcs))
    elif wcs:
        for i, w in enumerate(wcs):
            if not isinstance(w, dict):
                errors.append(err("dict_type", wloc + [i], "Input should be a valid dictionary",
                                  w))
                continue
            if w.get("webhook_url") is not None and not isinstance(w["webhook_url"], str):
                errors.append(err("string_type", wloc + [i, "webhook_url"],
                                  "Input should be a valid string", w["webhook_url"]))
            ev = w.get("webhook_events")
            if ev is not None and not isinstance(ev, list):
                errors.append(err("list_type", wloc + [i, "webhook_events"],
                                  "Input should be a valid list", ev))
            elif ev:
                for n, e in enumerate(ev):
                    if not isinstance(e, str):
                        errors.append(err("string_type", wloc + [i, "webhook_events", n],
                                          "Input should be a valid string", e))
            hd = w.get("webhook_headers")
            if hd is not None and not isinstance(hd, dict):
                errors.append(err("dict_type", wloc + [i, "webhook_headers"],
                                  "Input should be a valid dictionary", hd))
    for key, value in c.items():
        if key not in V2_OPTIONAL and key not in ("tier", "version"):
            errors.append(err("extra_forbidden", loc + [key], "Extra inputs are not permitted",
                              value))
    return errors


# ---------------------------------------------------------------- handler
class Handler(fakecommon.BaseHandler):
    server_version = "fake-llamaparse/1.0"

    def detail(self, status, msg, headers=None):
        self.send_json(status, {"detail": msg}, headers)

    @staticmethod
    def oops():
        """The service's 5xx detail (as quoted in run-llama/llama_cloud_services#498, #1060)."""
        return ("Oops! Something went wrong on our end. Please try again in a few minutes. "
                "If the problem persists, please contact support by clicking the chat icon on "
                "cloud.llamaindex.ai providing this correlation ID: %s" % uuid.uuid4())

    def route(self, method, path):
        app = self.app
        if app.prefix and path.startswith(app.prefix + "/"):
            path = path[len(app.prefix):]
        m = ROUTE_V1.match(path)
        if m:
            kind = "upload" if m.group(1) else ("result" if m.group(3) else "job")
            job_id = m.group(2)
        else:
            m = ROUTE_V2.match(path)
            if not m:
                return self.detail(404, "Not Found")
            kind = "v2_upload" if m.group(1) == "upload" else "v2_job"
            job_id = m.group(1)
        want = "POST" if kind in ("upload", "v2_upload") else "GET"
        if method != want and not (method == "HEAD" and want == "GET"):
            return self.detail(405, "Method Not Allowed")
        if kind in ("upload", "v2_upload"):
            app.note_upload()
        key = app.knobs.get("api_key")
        given = self.bearer()
        if given is None or (key is not None
                             and not hmac.compare_digest(given.encode(), key.encode())):
            app.stats.inc(kind, "401")
            return self.detail(401, "Invalid API key")
        if kind == "upload":
            return self.upload()
        if kind == "v2_upload":
            return self.v2_upload()
        job = app.get_job(job_id, 2 if kind == "v2_job" else 1)
        if job is None:
            app.stats.inc(kind, "404")
            return self.detail(404, "Job not found")
        if kind == "job":
            return self.job_status(job)
        if kind == "result":
            return self.job_result(job)
        return self.v2_job(job)

    # ---- shared upload steps ---------------------------------------------------
    def rate_limited(self):
        """The storm's 429, as the service sends it (see throttled)."""
        self.app.stats.inc("http", "429")
        self.detail(429, "Rate limit exceeded. Please retry later.",
                    {"Retry-After": str(max(0, math.ceil(self.app.knobs.get("retry_after"))))})

    def throttled(self, stat):
        """rate_limit_every / error_rate: answer 429 or 500 and return True."""
        app = self.app
        k = app.knobs.snapshot()
        with app.lock:
            app.upload_count += 1
            n = app.upload_count
            transient = k["error_rate"] > 0 and app.rng.random() < k["error_rate"]
        if k["rate_limit_every"] and n % k["rate_limit_every"] == 0:
            app.stats.inc(stat, "429")
            self.detail(429, "Rate limit exceeded. Please retry later.",
                        {"Retry-After": str(max(0, math.ceil(k["retry_after"])))})
            return True
        if transient:
            app.stats.inc(stat, "500")
            self.detail(500, self.oops())
            return True
        return False

    def refuse(self, stat, reason, status, body):
        self.app.stats.inc(stat, str(status))
        self.app.stats.inc("refused" if stat == "upload" else "v2_refused", reason)
        self.send_json(status, body)

    def file_problem(self, f):
        """(status, reason, detail) when the file is refused, else None."""
        k = self.app.knobs.snapshot()
        if len(f["data"]) > k["max_file_bytes"]:
            return (413, "file_size", "File too large: %d bytes; the maximum file size is %d "
                    "bytes" % (len(f["data"]), k["max_file_bytes"]))
        ext = extension_of(f["filename"])
        if ext not in SUPPORTED_EXTENSIONS and k["unsupported_type"] == "reject":
            return (400, "file_type", "Unsupported file type: %s"
                    % (ext or "(no extension in %r)" % f["filename"]))
        return None

    # ---- v1 ---------------------------------------------------------------------
    def upload(self):
        app = self.app
        if self.throttled("upload"):
            return
        try:
            parts = parse_multipart(self.headers.get("Content-Type"), self._body or b"")
        except MultipartError as e:
            app.stats.inc("upload", "400")
            return self.detail(400, str(e))
        k = app.knobs.snapshot()
        fields, extras, seen = {}, [], set()
        for p in parts:
            name = p["name"]
            if name == "file":
                continue
            value = p["data"].decode("utf-8", "replace")
            base = name[:-2] if name.endswith("[]") else name
            if base not in V1_FIELDS or (base != name and base not in V1_LIST_FIELDS):
                if name not in seen:
                    seen.add(name)
                    extras.append((name, value))
                continue
            if base in V1_LIST_FIELDS:
                fields.setdefault(name, []).append(value)
            elif name not in fields:
                fields[name] = value
        if extras:
            return self.refuse("upload", "fields", 400, {"detail": v1_extra_detail(extras)})
        files = [p for p in parts if p["name"] == "file" and p["filename"] is not None]
        if not files:
            app.stats.inc("upload", "400")
            return self.detail(400, "No file provided: send the document in the multipart "
                                    "field 'file' (with a filename)")
        f = files[0]
        problem = self.file_problem(f)
        if problem:
            return self.refuse("upload", problem[1], problem[0], {"detail": problem[2]})
        url = fields.get("webhook_url") or ""
        if url and k["webhook_url_rules"]:
            why = webhook_url_problem(url)
            if why:
                return self.refuse("upload", "webhook_url", 400,
                                   {"detail": "Invalid webhook_url: %s" % why})
        targets = []
        raw = fields.get("webhook_configurations") or ""
        if raw.strip():
            try:
                wcs = json.loads(raw)
                if not isinstance(wcs, list):
                    raise ValueError("webhook_configurations must be a JSON list")
                t = webhook_target(wcs[0], "webhook_configurations") if wcs else None
            except ValueError as e:
                return self.refuse("upload", "webhook_configurations", 400,
                                   {"detail": "Invalid configuration: %s" % e})
            if t:
                targets.append(t)
        url = url or k["webhook_url"]
        if k["webhook"] and url:
            events = k["webhook_style"] == "events"
            targets.append({"mode": k["webhook_style"], "url": url,
                            "headers": dict(k["webhook_headers"]) if events else {},
                            "events": None})
        job = app.create_job(1, f["filename"], f["content_type"], f["data"], fields=fields,
                             targets=targets,
                             unsupported=extension_of(f["filename"]) not in SUPPORTED_EXTENSIONS)
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
            self.detail(500, self.oops())
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
            return self.detail(404, "Result for Parsing Job %s not found. Check job status to "
                                    "see if it has completed." % job.id)
        with app.lock:
            job.result_fetches += 1
            first = not job.served
            job.served = True
        if first:
            app.stats.inc("result_pages_served", by=job.pages)
        app.stats.inc("result", "200")
        self.send_json(200, {"markdown": job.markdown, "job_metadata": app.metadata(job)})

    # ---- v2 ---------------------------------------------------------------------
    def v2_job_json(self, j, now, created=False):
        st = "PENDING" if created else j.status(now)
        return {"id": j.id, "project_id": j.project_id, "status": st,
                "created_at": iso(j.created_wall),
                "updated_at": iso(j.created_wall if created else j.updated_wall(now)),
                "error_message": j.error_message if st == "FAILED" else None,
                "name": j.filename, "tier": j.tier}

    def v2_upload(self):
        app = self.app
        if self.throttled("v2_upload"):
            return
        ctype = self.headers.get("Content-Type") or ""
        if _header_params(ctype)[0] != "multipart/form-data":
            parts = []  # no form at all: every field is missing
        else:
            try:
                parts = parse_multipart(ctype, self._body or b"")
            except MultipartError:
                app.stats.inc("v2_upload", "400")
                return self.detail(400, "There was an error parsing the body")
        errors = []
        files = [p for p in parts if p["name"] == "file" and p["filename"] is not None]
        confs = [p for p in parts if p["name"] == "configuration" and p["filename"] is None]
        if not files:
            errors.append(err("missing", ["body", "file"], "Field required", None))
        config = None
        if not confs:
            errors.append(err("missing", ["body", "configuration"], "Field required", None))
        else:
            raw = confs[0]["data"].decode("utf-8", "replace")
            try:
                config = json.loads(raw)
            except ValueError as e:
                msg = "%s at line %d column %d" % (e.msg.lower(), e.lineno, e.colno)
                errors.append(err("json_invalid", ["body", "configuration"],
                                  "Invalid JSON: " + msg, raw, {"error": msg}))
            else:
                errors.extend(v2_config_errors(config))
        for p in parts:
            if p["name"] not in ("file", "configuration"):
                errors.append(err("extra_forbidden", ["body", p["name"]],
                                  "Extra inputs are not permitted",
                                  p["filename"] if p["filename"] is not None
                                  else p["data"].decode("utf-8", "replace")))
        if errors:
            return self.refuse("v2_upload", "validation", 422, {"detail": errors})
        f = files[0]
        problem = self.file_problem(f)
        if problem:
            return self.refuse("v2_upload", problem[1], problem[0], {"detail": problem[2]})
        targets = []
        wcs = config.get("webhook_configurations")
        if wcs:  # only the first configuration is used
            t = webhook_target(wcs[0], "webhook_configurations")
            if t:
                targets.append(t)
        job = app.create_job(2, f["filename"], f["content_type"], f["data"],
                             configuration=config, targets=targets,
                             unsupported=extension_of(f["filename"]) not in SUPPORTED_EXTENSIONS)
        app.stats.inc("v2_upload", "200")
        self.send_json(200, self.v2_job_json(job, time.monotonic(), created=True))

    def v2_job(self, j):
        app = self.app
        if self.injected_500("v2_job"):
            return
        now = time.monotonic()
        with app.lock:
            j.polls += 1
        expand = set()
        query = urllib.parse.parse_qs(self.path.partition("?")[2], keep_blank_values=True)
        for v in query.get("expand", []) + query.get("expand[]", []):
            expand.update(x.strip() for x in v.split(",") if x.strip())
        body = {"job": self.v2_job_json(j, now)}
        if body["job"]["status"] == "COMPLETED" and expand:
            ok = j.ok_pages()
            md_full = "".join(md for _, md in ok)
            served = False
            if "markdown_full" in expand:
                body["markdown_full"] = md_full
                served = True
            if "text_full" in expand:
                body["text_full"] = md_to_text(md_full)
                served = True
            if "markdown" in expand:
                pages = []
                for i, md in enumerate(j.page_md):
                    n = i + 1
                    if n == j.failed_page:
                        pages.append({"page_number": n, "success": False,
                                      "error": "fake-llamaparse: page %d could not be parsed "
                                               "(partial marker in %r)" % (n, j.filename)})
                    else:
                        pages.append({"page_number": n, "success": True, "markdown": md})
                body["markdown"] = {"pages": pages}
                served = True
            if "text" in expand:
                body["text"] = {"pages": [{"page_number": n, "text": md_to_text(md)}
                                          for n, md in ok]}
                served = True
            if "job_metadata" in expand:
                body["job_metadata"] = app.v2_metadata(j)
            if served:
                app.stats.inc("v2_results_served")
                with app.lock:
                    first = not j.served
                    j.served = True
                if first:
                    app.stats.inc("result_pages_served", by=j.pages)
        app.stats.inc("v2_job", "200")
        self.send_json(200, body)


def main(argv=None):
    p = fakecommon.new_parser("Fake LlamaParse v1 parsing / v2 parse API "
                              "(see test/fakes/README.md)")
    fakecommon.add_common_args(p)
    p.add_argument("--prefix", default="", help="path prefix before /api (default none)")
    p.add_argument("--parse-latency", type=float, default=0.0,
                   help="seconds from upload until the job is done")
    p.add_argument("--parse-latency-per-page", type=float, default=0.0,
                   help="extra seconds per page until the job is done")
    p.add_argument("--fail-marker", default="fail", help="filename marker -> ERROR / FAILED")
    p.add_argument("--cancel-marker", default="cancel", help="filename marker -> CANCELLED")
    p.add_argument("--partial-marker", default="partial",
                   help="filename marker -> PARTIAL_SUCCESS (v1) / one failed page (v2)")
    p.add_argument("--cancel-status", default="CANCELLED", choices=("CANCELLED", "CANCELED"),
                   help="v1 spelling of the cancelled status")
    p.add_argument("--poll-error-rate", type=float, default=0.0,
                   help="fraction of job/result GETs answered 500")
    p.add_argument("--credits-per-page", type=float, default=1.0)
    p.add_argument("--credits-max", type=float, default=10000.0,
                   help="v1 job_metadata.credits_max (the account's credit allowance)")
    p.add_argument("--max-file-bytes", type=int, default=512 * 1024 * 1024,
                   help="larger files are refused with 413 (default 512 MB)")
    p.add_argument("--unsupported-type", default="reject", choices=("reject", "job_error"),
                   help="a file extension not supported: 400 at upload (reject) or a job that "
                        "fails with UNSUPPORTED_FILE_TYPE (job_error)")
    p.add_argument("--webhook", action="store_true",
                   help="deliver v1 webhooks to the upload's webhook_url")
    p.add_argument("--webhook-url", default="",
                   help="v1 webhook target for uploads without webhook_url (implies --webhook)")
    p.add_argument("--webhook-style", default="push", choices=("push", "events"),
                   help="v1 webhook_url deliveries: the result push, or LlamaCloud events")
    p.add_argument("--webhook-headers", default="{}",
                   help="JSON object of headers added to v1 'events' deliveries")
    p.add_argument("--webhook-retries", type=int, default=2,
                   help="re-sends after a non-2xx answer or a connection failure")
    p.add_argument("--webhook-backoff", type=float, default=1.0,
                   help="seconds before the first re-send; doubles each time")
    p.add_argument("--webhook-repeat", type=int, default=1,
                   help="deliver every webhook this many times (duplicate tests)")
    p.add_argument("--webhook-timeout", type=float, default=30.0,
                   help="seconds to wait for the receiver's answer")
    p.add_argument("--webhook-url-rules", action="store_true",
                   help="refuse a v1 webhook_url that is not https, names an IP, or is long")
    args = p.parse_args(argv)
    try:
        fakecommon._coerce("webhook_headers", {}, args.webhook_headers)
    except ValueError as e:
        p.error(str(e))
    app = LlamaParseApp(args)
    fakecommon.serve(app, Handler, args)


if __name__ == "__main__":
    main()
