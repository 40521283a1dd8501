#!/usr/bin/python3
"""test_hostile_small.py: the smaller defences against hostile clients, each on a real daemon on
127.0.0.1: the access log escapes control characters of the path; labels must be UTF-8 without
control characters (NUL included); conflicting framing headers are 400; trailing data after a
JSON body and unknown keys in "parameters" are 400; an oversized body sent without
Expect: 100-continue still gets its 413 (read and discarded, then closed); a connection past
--max-connections is answered 503 at once; the global budget of
request bodies in flight answers 503 + Retry-After; the decode budgets answer 413/422 over HTTP;
/readyz turns 503 while images miss their deadlines and recovers by itself; the metrics count
rejected and cancelled work by reason."""
# asan: yes
import base64
import http.client
import json
import os
import socket
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "attack"))
from vitd_testlib import DATA, Daemon, check, multipart, read, summary  # noqa: E402
import attacklib as A  # noqa: E402

PNG = read(os.path.join(DATA, "sneaker.png"))
JPG = read(os.path.join(DATA, "server", "photo.jpg"))
TOKEN = "s3cret-admin-token-0123456789"
AUTH = {"Authorization": "Bearer " + TOKEN}


def raw(port, data, n=4096, timeout=10):
    """send bytes, read the answer until the daemon closes or timeout; (status or None, text)"""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        got = b""
        while True:
            try:
                b = s.recv(n)
            except (socket.timeout, ConnectionResetError):
                break
            if not b:
                break
            got += b
            if b"\r\n\r\n" in got and len(got) > 200:
                break
    finally:
        s.close()
    st = int(got[9:12]) if got.startswith(b"HTTP/1.") else None
    return st, got.decode(errors="replace")


def err_code(text):
    body = text.split("\r\n\r\n", 1)[-1]
    try:
        return json.loads(body).get("error", {}).get("code")
    except ValueError:
        return None


def test_framing_and_json(d):
    st, t = raw(d.port, b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 5\r\n"
                        b"Content-Length: 7\r\n\r\nhello")
    check(st == 400, "two different Content-Length headers: 400", t[:120])
    st, t = raw(d.port, b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 5\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    check(st == 400, "Content-Length with Transfer-Encoding: 400", t[:120])
    b64 = base64.b64encode(PNG).decode()
    st, _, b = d.json("POST", "/classify", json.dumps({"images": [b64]}) + " garbage",
                      {"Content-Type": "application/json"})
    check(st == 400 and b.get("error", {}).get("code") == "bad_request", "JSON body + trailing garbage: 400", b)
    st, _, b = d.json("POST", "/classify", json.dumps({"images": [b64]}) * 2, {"Content-Type": "application/json"})
    check(st == 400, "two JSON documents: 400", b)
    st, _, b = d.json("POST", "/classify", json.dumps({"inputs": b64, "parameters": {"top_k": 2, "topk": 3}}),
                      {"Content-Type": "application/json"})
    check(st == 400 and "parameters" in b.get("error", {}).get("message", ""), "unknown key in parameters: 400", b)
    st, _, b = d.json("POST", "/classify", json.dumps({"inputs": b64, "parameters": {"top_k": 2}}),
                      {"Content-Type": "application/json"})
    check(st == 200, "known parameters: 200", b)
    deep = '{"images": [' + "[" * 50 + "]" * 50 + "]}"
    st, _, b = d.json("POST", "/classify", deep, {"Content-Type": "application/json"})
    check(st == 400 and "deeper" in b.get("error", {}).get("message", ""), "JSON nested 52 deep: 400 before parsing", b)


def test_lingering_413(d):
    # --max-body-mb 2: a 3 MB body without Expect: http.client sends it all, then reads the 413
    body = b"\0" * (3 << 20)
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=20)
    try:
        c.request("POST", "/classify", body=body, headers={"Content-Type": "image/png"})
        r = c.getresponse()
        data = r.read()
        st, code = r.status, json.loads(data).get("error", {}).get("code")
    except (OSError, ValueError) as e:
        st, code = type(e).__name__, None
    finally:
        c.close()
    check(st == 413 and code == "payload_too_large", "3 MB body without Expect: the client reads its 413 (no broken pipe)",
          (st, code))
    # with Expect: 100-continue the 413 comes before any body byte
    st, t = raw(d.port, b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 3145728\r\n"
                        b"Expect: 100-continue\r\n\r\n")
    check(st == 413, "3 MB body with Expect: 100-continue: 413 before the body", t[:80])


def test_body_budget(d):
    # --max-inflight-body-mb 3: one upload holds 2 MB of budget (from its Content-Length) while
    # it trickles; a second 1.5 MB upload is refused at once with 503 + Retry-After
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    s.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n"
              % (2 << 20) + b"\0" * 1000)
    time.sleep(0.3)
    st, t = raw(d.port, b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n"
                        % (3 << 19), timeout=5)
    check(st == 503 and err_code(t) == "body_budget" and "retry-after:" in t.lower(),
          "bodies in flight over --max-inflight-body-mb: 503 body_budget + Retry-After", t[:200])
    s.close()
    time.sleep(0.3)
    st, _, b = d.classify([PNG])
    check(st == 200, "budget released when the upload's connection closed: 200", b)


def test_decode_budgets(d):
    bomb = A.prog_bomb(extra_scans=300)
    st, _, b = d.classify([bomb])
    check(st == 422 and b.get("error", {}).get("code") == "image_refused", "300-scan progressive JPEG: 422 image_refused",
          b)
    padded = A.prog_bomb(extra_scans=80, pad=200000)
    st, _, b = d.classify([padded])
    check(st == 413 and b.get("error", {}).get("code") == "decode_cost_exceeded",
          "7000x7000 progressive with 80 scans: 413 decode_cost_exceeded", b)
    sof = bytearray(read(os.path.join(DATA, "images", "jpeg_baseline.jpg")))
    for o, m, L in A._segments(sof):
        if m == 0xC0:
            sof[o + 5:o + 9] = bytes([763 >> 8, 763 & 255, 65500 >> 8, 65500 & 255])
    st, _, b = d.classify([bytes(sof)])
    check(st == 400 and b.get("error", {}).get("code") == "invalid_image", "baseline JPEG with SOF 65500x763: 400", b)
    st, _, b = d.classify([PNG, PNG])
    check(st == 200 and all("predictions" in r for r in b.get("results", [])), "two small images within budget: 200", b)


def test_labels(d):
    def post(label_q):
        return d.json("POST", "/admin/examples?label=" + label_q, PNG, dict(AUTH, **{"Content-Type": "image/png"}))
    for q, what in (("%FF%FE", "not UTF-8"), ("a%00b", "NUL inside"), ("a%0Ab", "newline"), ("%C2%85", "C1 control"),
                    ("%C0%AF", "overlong")):
        st, _, b = post(q)
        check(st == 400, f"label {what}: 400", (st, b))
    st, _, b = post("%C3%A9t%C3%A9")
    check(st == 200, "label in UTF-8 (ete): 200", (st, b))


def test_log_escape(d):
    raw(d.port, b"GET /nothing%0D%0A2026-01-01T00:00:00Z%20vitd%20info:%20forged%1B[2J HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)
    log = d.logtext()
    line = [x for x in log.splitlines() if "/nothing" in x]
    check(len(line) == 1 and "\\x0D\\x0A" in line[0] and "\\x1B" in line[0] and "\x1b" not in log and
          not any(x.startswith("2026-01-01T00:00:00Z vitd info: forged") for x in log.splitlines()),
          "access log: the path's CR LF and ESC escaped, no forged line", line)


def test_readyz_saturation():
    d = Daemon("--device", "cpu", "--max-batch", "64", "--max-delay-us", "1500000", "--eager-dispatch", "0")
    if not check(d.wait_ready(), "daemon ready (saturation)", d.logtext()[-2000:]):
        return
    st, _, b = d.json("POST", "/classify", JPG, {"Content-Type": "image/jpeg", "X-Request-Timeout-Ms": "200"})
    st2, _, b2 = d.json("GET", "/readyz")
    check(st == 504 and st2 == 503 and b2.get("error", {}).get("code") == "saturated",
          "an image missed its deadline waiting: /readyz 503 saturated", (st, st2, b2))
    t0 = time.time()
    while time.time() - t0 < 15 and d.json("GET", "/readyz")[0] != 200:
        time.sleep(0.2)
    check(d.json("GET", "/readyz")[0] == 200, f"/readyz back to 200 by itself ({time.time() - t0:.1f}s)")
    st, _, _ = d.json("GET", "/healthz")
    check(st == 200, "/healthz stays 200 throughout")
    m = d.metrics()
    check(m.get('vitd_cancelled_total{reason="deadline"}', 0) >= 1, "metrics: cancelled by deadline counted",
          {k: v for k, v in m.items() if "cancelled" in k})
    d.stop()


def test_connection_cap():
    d = Daemon("--device", "cpu", "--max-connections", "4", "--max-connections-per-ip", "0")
    if not check(d.wait_ready(), "daemon ready (connection cap)", d.logtext()[-2000:]):
        return
    held = [socket.create_connection(("127.0.0.1", d.port), timeout=5) for _ in range(4)]
    time.sleep(0.2)
    t0 = time.time()
    st, t = raw(d.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5)
    check(st == 503 and err_code(t) == "too_many_connections" and "connection: close" in t.lower(),
          f"5th connection past --max-connections 4: 503 at once ({time.time() - t0:.2f}s), then closed", t[:160])
    for s in held:
        s.close()
    time.sleep(0.3)
    st, _, b = d.json("GET", "/healthz")
    check(st == 200, "served again once connections closed", b)
    d.stop()


def main():
    tmp = tempfile.mkdtemp(prefix="vitd-hostile-")
    tok = os.path.join(tmp, "token")
    with open(tok, "w") as f:
        f.write(TOKEN)
    os.chmod(tok, 0o600)
    d = Daemon("--device", "cpu", "--max-body-mb", "2", "--max-inflight-body-mb", "3", "--admin-token-file", tok,
               "--state-dir", os.path.join(tmp, "state"), "--max-image-cost-m", "1000")
    if not check(d.wait_ready(), "daemon ready", d.logtext()[-2000:]):
        return summary()
    test_framing_and_json(d)
    test_lingering_413(d)
    test_body_budget(d)
    test_decode_budgets(d)
    test_labels(d)
    test_log_escape(d)
    m = d.metrics()
    reasons = {k.split('"')[1]: v for k, v in m.items() if k.startswith("vitd_rejected_total")}
    check(reasons.get("framing", 0) >= 2 and reasons.get("body_too_large", 0) >= 2 and reasons.get("body_budget", 0) >= 1
          and reasons.get("json_limit", 0) >= 1 and reasons.get("decode_cost", 0) >= 1 and reasons.get("scan_policy", 0) >= 1,
          "metrics: rejected work by reason", reasons)
    check(d.stop() == 0, "SIGTERM -> exit 0")
    test_readyz_saturation()
    test_connection_cap()
    return summary()


if __name__ == "__main__":
    sys.exit(main())
