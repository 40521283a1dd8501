"""test_logs.py: --log-format json writes one JSON object a line (start-up, access, drain lines
alike), an access line carrying request_id, method, path, status, duration_ms, images, client
and, for a request with a valid W3C traceparent, its trace_id and vitd's span_id, which the
response's traceparent names under the same trace and flags; an invalid traceparent is ignored;
--log-format text keeps the text lines, with trace= on traced requests; a bad --log-format is a
start-up error."""
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
    lines = wait_log(d, lambda ls: sum('"access"' in l for l in ls) >= 4)
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
    plain = [o for o in objs if o.get("msg") == "access" and o.get("path") == "/healthz"]
    check(plain and "trace_id" not in plain[-1], "no trace_id without a valid traceparent", plain[-1:] or objs[-3:])
    check(any(o.get("msg", "").startswith("ready: model") for o in objs), "start-up lines are JSON too")
    d.stop()


def test_text():
    png = read(os.path.join(DATA, "sneaker.png"))
    d = Daemon("--threads", "1")
    if not check(d.wait_ready(), "vitd (text logs) ready", d.logtext()[-1000:]):
        return
    d.classify([png], headers={"traceparent": f"00-{TRACE}-{PARENT}-01", "X-Request-Id": "text-1"})
    lines = wait_log(d, lambda ls: any("id=text-1" in l for l in ls))
    line = next((l for l in lines if "id=text-1" in l), "")
    check(" vitd info: access 127.0.0.1 POST /classify 200 images=1 " in line and line.endswith(f"id=text-1 trace={TRACE}"),
          "text access line as before, trace= on a traced request", line)
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
