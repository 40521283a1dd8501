"""test_logs.py: --log-format json writes one JSON object a line (start-up, access, drain lines
alike), an access line carrying request_id, method, path, status, duration_ms, images, client
and, for a request with a valid W3C traceparent, its trace_id and vitd's span_id, which the
response's traceparent names under the same trace and flags; an invalid traceparent is ignored;
head_version, the reply's X-Head-Version, on /classify and on v2 inference with probabilities,
absent where no head answered (/embed, v2 embedding alone, /healthz); --log-format text keeps the
text lines, with head_version= and trace= where they apply; a bad --log-format is a start-up
error."""
import base64
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from vitd_testlib import DATA, VITD, Daemon, check, read, summary  # noqa: E402

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def wait_log(d, pred, timeout=5):
    t0 = time.time()
    while time.time() - t0 < timeout:
        lines = d.logtext().splitlines()
        if pred(lines):
            return lines
        time.sleep(0.05)
    return d.logtext().splitlines()


def head_requests(d, png):
    """/embed, v2 inference with probabilities and with the embedding alone (request ids hv-*):
    the X-Head-Version each answered with, None where absent"""
    st, h, _ = d.request("POST", "/embed", png, {"Content-Type": "image/png", "X-Request-Id": "hv-embed"})
    got = {"hv-embed": (st, h.get("x-head-version"))}
    inp = {"name": "image", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(png).decode()]}
    for rid, out in (("hv-v2-probs", "probabilities"), ("hv-v2-emb", "embedding")):
        body = json.dumps({"inputs": [inp], "outputs": [{"name": out}]}).encode()
        st, h, _ = d.request("POST", "/v2/models/tiny-hf/infer", body,
                             {"Content-Type": "application/json", "X-Request-Id": rid})
        got[rid] = (st, h.get("x-head-version"))
    return got


def test_json():
    png = read(os.path.join(DATA, "sneaker.png"))
    d = Daemon("--threads", "1", "--log-format", "json")
    if not check(d.wait_ready(), "vitd --log-format json ready", d.logtext()[-1000:]):
        return
    tp = f"00-{TRACE}-{PARENT}-01"
    st, h, _ = d.classify([png], headers={"traceparent": tp, "X-Request-Id": "trace-test-1"})
    got = h.get("traceparent", "")
    parts = got.split("-")
    check(st == 200 and len(parts) == 4 and parts[0] == "00" and parts[1] == TRACE and parts[3] == "01"
          and len(parts[2]) == 16 and parts[2] != PARENT and parts[2] != "0" * 16,
          "response traceparent: the same trace and flags, vitd's own span", got)
    st, h2, _ = d.request("GET", "/healthz", headers={"traceparent": "00-" + "0" * 32 + "-" + PARENT + "-01"})
    check(st == 200 and "traceparent" not in h2, "an all-zero trace id is ignored (no traceparent back)", h2.get("traceparent"))
    st, h3, _ = d.classify([png], headers={"traceparent": f"00-{TRACE}-{PARENT}-00"})
    check(h3.get("traceparent", "").split("-")[2:3] != parts[2:3], "each request its own span", (h3.get("traceparent"), got))
    hv = head_requests(d, png)
    check(hv["hv-embed"] == (200, None) and hv["hv-v2-probs"] == (200, "1") and hv["hv-v2-emb"] == (200, None),
          "X-Head-Version: on v2 probabilities, not on /embed or v2 embedding alone", hv)
    lines = wait_log(d, lambda ls: sum('"access"' in l for l in ls) >= 7)
    objs, bad = [], []
    for l in lines:
        try:
            objs.append(json.loads(l))
        except ValueError:
            bad.append(l)
    check(not bad and objs and all({"time", "level", "msg"} <= set(o) for o in objs),
          f"every log line is a JSON object with time, level, msg ({len(objs)} lines)", bad[:3])
    acc = [o for o in objs if o.get("msg") == "access" and o.get("request_id") == "trace-test-1"]
    a = acc[0] if acc else {}
    check(a.get("method") == "POST" and a.get("path") == "/classify" and a.get("status") == 200 and a.get("images") == 1
          and isinstance(a.get("duration_ms"), (int, float)) and a.get("client") == "127.0.0.1"
          and a.get("trace_id") == TRACE and a.get("span_id") == parts[2] and a.get("level") == "info",
          "access line: request_id, method, path, status, duration_ms, images, client, trace_id, span_id", a)
    check(h.get("x-head-version") == "1" and a.get("head_version") == 1,
          "access line: head_version is the X-Head-Version /classify answered with", (h.get("x-head-version"), a))
    plain = [o for o in objs if o.get("msg") == "access" and o.get("path") == "/healthz"]
    check(plain and "trace_id" not in plain[-1], "no trace_id without a valid traceparent", plain[-1:] or objs[-3:])
    check(plain and "head_version" not in plain[-1], "no head_version where no head answered (/healthz)", plain[-1:])
    by_id = {o.get("request_id"): o for o in objs if o.get("msg") == "access"}
    got = {rid: by_id.get(rid, {}).get("head_version", "absent") for rid in ("hv-embed", "hv-v2-probs", "hv-v2-emb")}
    check(got == {"hv-embed": "absent", "hv-v2-probs": 1, "hv-v2-emb": "absent"},
          "access line head_version: v2 probabilities 1, /embed and v2 embedding alone none", got)
    check(any(o.get("msg", "").startswith("ready: model") for o in objs), "start-up lines are JSON too")
    d.stop()


def test_text():
    png = read(os.path.join(DATA, "sneaker.png"))
    d = Daemon("--threads", "1")
    if not check(d.wait_ready(), "vitd (text logs) ready", d.logtext()[-1000:]):
        return
    d.classify([png], headers={"traceparent": f"00-{TRACE}-{PARENT}-01", "X-Request-Id": "text-1"})
    d.request("GET", "/healthz", headers={"X-Request-Id": "text-2"})
    hv = head_requests(d, png)
    lines = wait_log(d, lambda ls: all(any("id=" + i in l for l in ls) for i in ("text-1", "text-2", *hv)))
    line = next((l for l in lines if "id=text-1" in l), "")
    check(" vitd info: access 127.0.0.1 POST /classify 200 images=1 head_version=1 " in line
          and line.endswith(f"id=text-1 trace={TRACE}"),
          "text access line: head_version= after images=, trace= on a traced request", line)
    line = next((l for l in lines if "id=text-2" in l), "")
    check(" access 127.0.0.1 GET /healthz 200 images=0 " in line and "head_version" not in line,
          "text access line without head_version where no head answered", line)
    got = {i: "head_version=1 " in next((l for l in lines if l.endswith("id=" + i)), "") for i in hv}
    check(got == {"hv-embed": False, "hv-v2-probs": True, "hv-v2-emb": False},
          "text head_version= on v2 probabilities only, not /embed or v2 embedding alone", got)
    d.stop()
    p = subprocess.run([VITD, "--log-format", "yaml"], capture_output=True, text=True, timeout=30)
    check(p.returncode != 0 and p.returncode < 128 and "--log-format" in p.stderr, "--log-format yaml: an error naming the flag",
          (p.returncode, p.stderr[-200:]))


def main():
    test_json()
    test_text()
    return summary()


if __name__ == "__main__":
    sys.exit(main())
