"""openapi_check.py: every HTTP response the integration tests receive is checked against
server/openapi.json (the document vitd serves at /openapi.json): the path and method must be
documented, the status must be one of the operation's responses, the Content-Type one of that
response's media types (no body where none is documented), and a JSON body must validate
against its schema (JSON Schema 2020-12, python3-jsonschema; "$ref"s resolve inside the
document).  A binary Open Inference Protocol answer (Inference-Header-Content-Length) has its
JSON part checked.  HEAD answers are checked for status only.  vitd_testlib.Daemon.request calls
check_response; a mismatch is a failed check of the test that made the request."""
import json
import os
import re

from jsonschema import Draft202012Validator

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
SPEC_PATH = os.path.join(ROOT, "server", "openapi.json")
_spec = None
_routes = None


def spec():
    global _spec, _routes
    if _spec is None:
        with open(SPEC_PATH) as f:
            _spec = json.load(f)
        _routes = []
        for tmpl in _spec["paths"]:
            rx = "^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(tmpl)) + "$"
            _routes.append((tmpl.count("{"), re.compile(rx), tmpl))
        _routes.sort(key=lambda r: r[0])         # literal paths before templated ones
    return _spec


def _validator(pointer):
    """a validator whose root is the whole document, pointed at pointer: #/ refs resolve"""
    root = dict(spec())
    root["$ref"] = pointer
    return Draft202012Validator(root)


def _escape(s):
    return s.replace("~", "~0").replace("/", "~1")


def find_operation(method, path):
    """(template, operation) for a request path (query stripped), or (None, None)"""
    spec()
    p = path.split("?", 1)[0]
    for _, rx, tmpl in _routes:
        if rx.match(p):
            return tmpl, _spec["paths"][tmpl].get(method.lower())
    return None, None


def _resolve(obj):
    while isinstance(obj, dict) and "$ref" in obj:
        node = spec()
        for part in obj["$ref"].lstrip("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        obj = node
    return obj


def _json_or_none(body):
    try:
        return json.loads(body)
    except ValueError:
        return None


def check_response(method, path, status, headers, body):
    """None when the response matches the document, else a one-line reason"""
    m = "GET" if method == "HEAD" else method
    tmpl, op = find_operation(m, path)
    if tmpl is None:
        # any other path: 404 (or the admin prefix's 401/405; 503 while starting) with vitd's
        # error body, the protocol's under /v2/
        if status in (401, 404, 405, 503) and method != "HEAD":
            shape = "V2Error" if (path == "/v2" or path.startswith("/v2/")) and status != 503 else "Error"
            errs = list(_validator("#/components/schemas/" + shape).iter_errors(_json_or_none(body)))
            return f"{method} {path} {status}: {errs[0].message[:300]}" if errs else None
        return f"{method} {path}: path not in server/openapi.json (answered {status})"
    if op is None:
        if status == 405 or (method == "OPTIONS" and status in (204, 405)):
            return None                            # the transport's answer to another method
        return f"{method} {path}: method not documented, yet answered {status}"
    responses = op["responses"]
    key = str(status) if str(status) in responses else (f"{status // 100}XX" if f"{status // 100}XX" in responses else "default")
    if key not in responses:
        return f"{method} {path}: status {status} not documented (documented: {', '.join(sorted(responses))})"
    if method == "HEAD":
        return None
    resp = _resolve(responses[key])
    content = resp.get("content")
    ctype = (headers.get("content-type") or "").split(";")[0].strip().lower()
    if not content:
        if body:
            return f"{method} {path} {status}: a body ({len(body)} bytes) where the document has none"
        return None
    if ctype not in content:
        return f"{method} {path} {status}: Content-Type {ctype!r} not documented ({', '.join(content)})"
    if ctype == "application/octet-stream" and "inference-header-content-length" in headers:
        hl = int(headers["inference-header-content-length"])
        body, ctype = body[:hl], "application/json"
        if ctype not in content:
            return f"{method} {path} {status}: binary answer without a JSON schema"
    if ctype != "application/json":
        return None
    try:
        doc = json.loads(body)
    except ValueError as e:
        return f"{method} {path} {status}: body is not JSON ({e})"
    pointer = "#/paths/" + _escape(tmpl) + "/" + m.lower() + "/responses/" + key
    if "$ref" in responses[key]:
        pointer = responses[key]["$ref"]
    pointer += "/content/" + _escape(ctype) + "/schema"
    errs = sorted(_validator(pointer).iter_errors(doc), key=lambda e: list(e.path))
    if errs:
        e = errs[0]
        where = "/".join(str(x) for x in e.path) or "(root)"
        return f"{method} {path} {status}: {where}: {e.message[:300]}"
    return None
