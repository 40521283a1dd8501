#!/usr/bin/python3
# asan: yes
"""test_server.py: vitd end to end on the tiny fixture model: every endpoint, every status code,
multipart and raw bodies, a multi-image request with one bad image, attention shapes, top_k,
64 concurrent clients batched (mean batch size > 1 in /metrics), env-var configuration, --help."""
import base64
import concurrent.futures as cf
import gzip
import json
import math
import re
import os
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from vitd_testlib import (DATA, TINY, VITD, Daemon, check, multipart, png_header_only, read,  # noqa: E402
                          skip, summary)

JPG = read(os.path.join(DATA, "server", "photo.jpg"))
PNG = read(os.path.join(DATA, "sneaker.png"))
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"


def thin_png(w, h):
    """a complete w x h gray PNG, all zeros (compresses to a few KB)"""
    import struct
    import zlib

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    raw = (b"\0" + b"\0" * w) * h
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def err_code(body):
    e = body.get("error") if isinstance(body, dict) else None
    return e.get("code") if isinstance(e, dict) and "message" in e else None


def main():
    out = subprocess.run([VITD, "--help"], capture_output=True, text=True)
    flags = ["--model", "--host", "--port", "--max-batch", "--max-delay-us", "--max-queue", "--workers",
             "--threads", "--max-body-mb", "--max-pixels", "--drain-timeout-s", "--log-level", "--device",
             "--precision", "--max-connections", "--request-timeout-s"]
    missing = [f for f in flags if f not in out.stdout]
    check(out.returncode == 0 and not missing and "VITD_MAX_BATCH" in out.stdout and "(default: 32;" in out.stdout,
          "--help lists every flag with defaults and env names", f"missing {missing}")
    r = subprocess.run([VITD, "--max-batch", "0"], capture_output=True, text=True)
    check(r.returncode == 2 and "max-batch" in r.stderr, "bad flag value rejected", r.stderr)
    r = subprocess.run([VITD, "--model", "/nonexistent/model", "--port", "0"], capture_output=True, text=True, timeout=30)
    check(r.returncode == 1 and "cannot load model" in r.stderr, "missing model: exit 1 with a message", r.stderr[-300:])

    r = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True) if shutil.which("nvidia-smi") else None
    if r is not None and r.returncode == 0 and "GPU" in r.stdout:
        skip("--device cuda without a GPU", "a GPU is present")
    else:
        r = subprocess.run([VITD, "--model", TINY, "--port", "0", "--device", "cuda"], capture_output=True, text=True, timeout=30)
        check(r.returncode == 1 and "cuda" in r.stderr.lower(), "--device cuda without a GPU: clear error, exit 1", r.stderr[-300:])
    r = subprocess.run([VITD, "--model", TINY, "--port", "0", "--device", "cpu", "--precision", "fp16"],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 1 and "fp16" in r.stderr, "--device cpu --precision fp16: clear error, exit 1", r.stderr[-300:])
    r = subprocess.run([VITD, "--device", "tpu"], capture_output=True, text=True)
    check(r.returncode == 2 and "--device" in r.stderr, "--device tpu rejected", r.stderr)

    d = Daemon("--max-delay-us", "20000", "--max-body-mb", "1", env={"VITD_MAX_BATCH": "8", "VITD_LOG_LEVEL": "info"})
    if not check(d.wait_ready(), "daemon becomes ready", d.logtext()[-2000:]):
        return summary()

    st, _, b = d.json("GET", "/healthz")
    check(st == 200 and b.get("status") == "ok", "GET /healthz 200", b)
    st, _, b = d.json("GET", "/readyz")
    check(st == 200 and b.get("status") == "ready", "GET /readyz 200 when ready", b)
    st, _, b = d.json("GET", "/v1/models")
    m = (b.get("models") or [{}])[0]
    check(st == 200 and m.get("id") == "tiny-hf" and m.get("image_size") == 32 and len(m.get("labels", [])) == 6
          and m.get("device") == "cpu" and m.get("precision") == "fp32" and m.get("max_batch") == 8
          and m.get("input") == "fp32"
          and "mean" in m.get("preprocessing", {}), "GET /v1/models: labels, size, preprocessing, device, input type, env max batch", b)

    # classify: multipart JPEG, raw PNG, octet-stream
    st, _, b = d.classify([JPG])
    res = b.get("results", [{}])
    preds = res[0].get("predictions", [])
    ok = (st == 200 and b.get("model") == "tiny-hf" and len(res) == 1 and len(preds) == 5
          and all(p["label"] and isinstance(p["index"], int) for p in preds)
          and all(preds[i]["score"] >= preds[i + 1]["score"] for i in range(4))
          and set(b.get("timing", {})) == {"decode_ms", "queue_ms", "infer_ms", "total_ms"} and b.get("batch_size", 0) >= 1)
    check(ok, "POST /classify multipart JPEG: 5 sorted predictions, timing, batch_size", b)
    st, _, b2 = d.json("POST", "/classify", PNG, {"Content-Type": "image/png"})
    check(st == 200 and len(b2["results"][0]["predictions"]) == 5, "POST /classify raw image/png", b2)
    st, _, b3 = d.json("POST", "/classify?top_k=6", JPG, {"Content-Type": "application/octet-stream"})
    s = sum(p["score"] for p in b3.get("results", [{}])[0].get("predictions", []))
    check(st == 200 and abs(s - 1) < 1e-3, "raw octet-stream, top_k=all scores sum to 1", b3)
    st, _, b4 = d.json("POST", "/classify?top_k=2", JPG, {"Content-Type": "image/jpeg"})
    check(st == 200 and [p["index"] for p in b4["results"][0]["predictions"]] == [p["index"] for p in preds[:2]],
          "same image raw and multipart: same top-2", b4)
    st, _, b = d.json("POST", "/classify?top_k=1000", JPG, {"Content-Type": "image/jpeg"})
    check(st == 400 and err_code(b) == "bad_request", "top_k out of range -> 400", b)
    st, _, b = d.json("POST", "/classify?top_k=abc", JPG, {"Content-Type": "image/jpeg"})
    check(st == 400 and err_code(b), "top_k not a number -> 400", b)

    # attention
    for mode in ("cls", "rollout"):
        st, _, b = d.classify([JPG, PNG], f"?attention={mode}")
        att = [r.get("attention", {}) for r in b.get("results", [])]
        ok = st == 200 and len(att) == 2 and all(a.get("grid") == [4, 4] and len(a.get("values", [])) == 16
                                                 and all(math.isfinite(v) and v >= 0 for v in a["values"]) for a in att)
        if mode == "rollout":
            ok = ok and all(abs(sum(a["values"]) - 1) < 0.05 or sum(a["values"]) > 0 for a in att)
        check(ok, f"attention={mode}: grid [4,4] and 16 finite values per image", str(b)[:300])
    st, _, b = d.classify([JPG], "?attention=bogus")
    check(st == 400 and err_code(b), "attention=bogus -> 400", b)
    st, _, b = d.classify([JPG])
    check("attention" not in b["results"][0], "no attention unless asked", b)

    # JSON bodies: {"images": [base64...]} and Hugging Face's {"inputs": ..., "parameters": ...}
    jhdr = {"Content-Type": "application/json"}
    b64 = lambda x: base64.b64encode(x).decode()
    body = json.dumps({"images": [b64(JPG), b64(PNG)], "top_k": 3, "attention": "cls"}).encode()
    st, _, b = d.json("POST", "/classify", body, jhdr)
    r = b.get("results", [])
    check(st == 200 and len(r) == 2 and [p["index"] for p in r[0]["predictions"]] == [p["index"] for p in preds[:3]]
          and r[1]["predictions"][0]["index"] == b2["results"][0]["predictions"][0]["index"]
          and all(x.get("attention", {}).get("grid") == [4, 4] for x in r),
          "JSON images (base64): same top-3 as multipart, in order, top_k and attention from the body", str(b)[:300])
    body = json.dumps({"inputs": "data:image/png;base64," + base64.urlsafe_b64encode(PNG).decode().rstrip("="),
                       "parameters": {"top_k": 2}}).encode()
    st, _, b = d.json("POST", "/classify?top_k=4", body, {"Content-Type": "application/json; charset=utf-8"})
    r = b.get("results", [{}])
    check(st == 200 and len(r) == 1 and len(r[0].get("predictions", [])) == 4
          and r[0]["predictions"][0]["index"] == b2["results"][0]["predictions"][0]["index"],
          "Hugging Face shape, data: URI, URL-safe unpadded base64; the query's top_k wins", str(b)[:300])
    for what, jb, code in [("not JSON", b"{images", "bad_request"),
                           ("misspelt key", json.dumps({"image": b64(PNG)}).encode(), "bad_request"),
                           ("bad base64", json.dumps({"images": ["%%%"]}).encode(), "invalid_image"),
                           ("top_k 0 in the body", json.dumps({"images": [b64(PNG)], "top_k": 0}).encode(), "bad_request"),
                           ("attention bogus in the body", json.dumps({"images": [b64(PNG)], "attention": "x"}).encode(), "bad_request"),
                           ("too many images", json.dumps({"images": [b64(PNG)] * 65}).encode(), "too_many_images")]:
        st, _, b = d.json("POST", "/classify", jb, jhdr)
        check(st == 400 and err_code(b) == code, f"JSON body, {what} -> 400 {code}", b)
    st, _, b = d.json("POST", "/classify", json.dumps({"images": [b64(b"\x89PNG\r\n\x1a\n" + b"x" * 50)]}).encode(), jhdr)
    check(st == 400 and err_code(b) == "invalid_image", "JSON body with a corrupt image -> 400 invalid_image", b)
    st, _, b = d.json("POST", "/classify", gzip.compress(PNG), {"Content-Type": "image/png", "Content-Encoding": "gzip"})
    check(st == 415 and err_code(b) == "unsupported_media_type" and "Content-Encoding" in b["error"]["message"],
          "Content-Encoding: gzip -> 415 (not read as image bytes)", b)

    # multi-image with one bad image: per-image results in order
    st, _, b = d.classify([JPG, b"\xff\xd8\xffgarbage-not-a-jpeg" * 4, PNG])
    r = b.get("results", [])
    check(st == 200 and len(r) == 3 and "predictions" in r[0] and err_code(r[1]) == "invalid_image"
          and "predictions" in r[2] and r[2]["predictions"][0]["index"] == b2["results"][0]["predictions"][0]["index"],
          "multi-image with one corrupt image: 200, its own error, others classified in order", b)
    st, _, b = d.classify([GIF, b""])
    r = b.get("results", [])
    check(st == 415 and len(r) == 2 and err_code(r[0]) == "unsupported_media_type" and err_code(r[1]) == "invalid_image"
          and err_code(b) == "unsupported_media_type", "all images bad: status of the first error, each its own", b)

    # raw bodies under the types other tools send (SageMaker's examples: application/x-image):
    # the bytes decide the format, so each answers as image/png does
    want = d.json("POST", "/classify", PNG, {"Content-Type": "image/png"})[2].get("results")
    for ct in ("application/x-image", "image/jpg", "image/*", "IMAGE/PNG; charset=binary"):
        st, _, b = d.json("POST", "/classify", PNG, {"Content-Type": ct})
        check(st == 200 and b.get("results") == want, f"Content-Type {ct}: the PNG classified as with image/png", (st, b))

    # error statuses
    st, _, b = d.json("POST", "/classify", GIF, {"Content-Type": "image/gif"})
    check(st == 415 and err_code(b) == "unsupported_media_type", "Content-Type image/gif -> 415", b)
    st, _, b = d.json("POST", "/classify", GIF, {"Content-Type": "application/octet-stream"})
    check(st == 415 and err_code(b) == "unsupported_media_type", "GIF bytes as octet-stream -> 415 (sniffed)", b)
    st, _, b = d.json("POST", "/classify", b"", {"Content-Type": "image/jpeg"})
    check(st == 400 and err_code(b) == "bad_request", "empty body -> 400", b)
    st, _, b = d.json("POST", "/classify", JPG[: len(JPG) // 3], {"Content-Type": "image/jpeg"})
    check(st == 400 and err_code(b) == "invalid_image", "truncated JPEG -> 400", b)
    st, _, b = d.json("POST", "/classify", PNG[:40], {"Content-Type": "image/png"})
    check(st == 400 and err_code(b) == "invalid_image", "truncated PNG -> 400", b)
    st, _, b = d.json("POST", "/classify", os.urandom(3000), {"Content-Type": "application/octet-stream"})
    check(st in (400, 415) and err_code(b), "random bytes -> 400/415", b)
    st, _, b = d.json("POST", "/classify", png_header_only(10000, 10000), {"Content-Type": "image/png"})
    check(st == 413 and err_code(b) == "image_too_large", "100 Mpixel PNG header -> 413 (pixel cap)", b)
    # a 1 x 1M PNG (2 KB) squashed to 32x32 costs out_w x height, not its pixels (found by fuzzing)
    st, _, b = d.json("POST", "/classify", thin_png(1, 1000000), {"Content-Type": "image/png"})
    check(st == 413 and err_code(b) == "image_too_large" and "aspect ratio" in b.get("error", {}).get("message", ""),
          "1x1000000 PNG -> 413 (aspect ratio too extreme)", b)
    body, ct = multipart([("image", "a.jpg", JPG)])
    st, _, b = d.json("POST", "/classify", body[:-20], {"Content-Type": ct})
    check(st == 400 and err_code(b) == "bad_request", "truncated multipart -> 400", b)
    st, _, b = d.json("POST", "/classify", body, {"Content-Type": "multipart/form-data"})
    check(st == 400 and err_code(b) == "bad_request", "multipart without boundary -> 400", b)
    body2, ct2 = multipart([("file", "a.jpg", JPG)])
    st, _, b = d.json("POST", "/classify", body2, {"Content-Type": ct2})
    check(st == 400 and "image" in b.get("error", {}).get("message", ""), "multipart without an image part -> 400", b)
    body3, ct3 = multipart([("image", "a.jpg", JPG)], boundary="a'b(c)d+e_f,g-h.i/j:k=l?m")
    st, _, b = d.json("POST", "/classify", body3, {"Content-Type": f'multipart/form-data; boundary="a\'b(c)d+e_f,g-h.i/j:k=l?m"'})
    check(st == 200, "quoted boundary with special characters", b)
    st, _, b = d.json("GET", "/nope")
    check(st == 404 and err_code(b) == "not_found", "unknown path -> 404 JSON", b)
    st, h, b = d.json("GET", "/classify")
    check(st == 405 and h.get("allow") == "POST" and err_code(b) == "method_not_allowed", "GET /classify -> 405 Allow: POST", (h, b))
    st, h, b = d.json("POST", "/metrics", b"x")
    check(st == 405 and "GET" in h.get("allow", ""), "POST /metrics -> 405 Allow: GET", (h, b))

    # 413 from Content-Length, before the body is sent
    import socket
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    s.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 5000000\r\n\r\n")
    resp = s.recv(4096)
    s.close()
    check(resp.startswith(b"HTTP/1.1 413") and b"payload_too_large" in resp, "Content-Length over --max-body-mb -> 413 before the body", resp[:200])
    # 413 while streaming a chunked body (no Content-Length)
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    s.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n" % 65536 + b"\0" * 65536 + b"\r\n"
    sent = 0
    try:
        for _ in range(64):                  # up to 4 MiB, the limit is 1 MiB
            s.sendall(chunk)
            sent += 65536
    except OSError:
        pass
    resp = b""
    try:
        while b"\r\n\r\n" not in resp:
            x = s.recv(4096)
            if not x:
                break
            resp += x
    except OSError:
        pass
    s.close()
    check(resp.startswith(b"HTTP/1.1 413"), f"chunked body over the limit -> 413 while streaming (sent {sent >> 10} KiB)", resp[:200])
    st, _, b = d.json("GET", "/healthz")
    check(st == 200, "daemon alive after oversized bodies", b)

    # 64 concurrent clients: batching visible in /metrics
    m0 = d.metrics()

    def one(i):
        st, _, b = d.classify([JPG if i % 2 else PNG])
        return st

    with cf.ThreadPoolExecutor(64) as ex:
        sts = list(ex.map(one, range(192)))
    m1 = d.metrics()
    n = m1["vitd_batch_size_count"] - m0["vitd_batch_size_count"]
    tot = m1["vitd_batch_size_sum"] - m0["vitd_batch_size_sum"]
    check(all(s == 200 for s in sts) and tot == 192 and n > 0 and tot / n > 1,
          f"64 concurrent clients x3: all 200, mean batch size {tot / max(n, 1):.2f} > 1 in /metrics", (sts.count(200), n, tot))
    mx = d.metrics()
    check(mx.get('vitd_requests_total{path="/classify",status="200"}', 0) >= 192
          and mx.get('vitd_requests_total{path="other",status="404"}') == 1
          and mx.get('vitd_requests_total{path="/classify",status="415"}', 0) >= 3
          and "vitd_queue_depth" in mx and mx.get("vitd_images_classified_total", 0) >= 192
          and mx.get('vitd_inference_duration_seconds_bucket{le="+Inf"}', 0) > 0
          and mx.get('vitd_decode_duration_seconds_count', 0) >= 192
          and mx.get('vitd_queue_duration_seconds_count', 0) >= 192
          and mx.get('vitd_request_duration_seconds_count{path="/classify"}', 0) >= 192
          and mx.get('vitd_request_duration_seconds_count{path="/metrics"}', 0) >= 1
          and any(k.startswith("vitd_model_info{") and 'device="cpu"' in k and 'precision="fp32"' in k for k in mx),
          "/metrics: requests by path+status, histograms, queue depth, images, model info",
          {k: v for k, v in mx.items() if "requests_total" in k})
    # X-Request-Id: the client's when well-formed, else a fresh 16-hex-digit one; logged
    st, h1, _ = d.json("GET", "/healthz")
    st, h2, _ = d.json("GET", "/healthz")
    ids = [h1.get("x-request-id", ""), h2.get("x-request-id", "")]
    check(all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids) and ids[0] != ids[1],
          "X-Request-Id generated (16 hex digits), distinct per request", ids)
    st, h, b = d.classify([PNG], headers={"X-Request-Id": "trace-42.a:b_c"})
    check(st == 200 and h.get("x-request-id") == "trace-42.a:b_c", "a client's X-Request-Id is echoed", h)
    st, h, b = d.json("GET", "/nope", headers={"X-Request-Id": "bad id\u00e9"})
    check(st == 404 and re.fullmatch(r"[0-9a-f]{16}", h.get("x-request-id", "")), "a malformed X-Request-Id is replaced", h)
    st, h, b = d.json("GET", "/healthz", headers={"X-Request-Id": "x" * 65})
    check(re.fullmatch(r"[0-9a-f]{16}", h.get("x-request-id", "")), "an X-Request-Id over 64 characters is replaced", h)
    log = d.logtext()
    check("access 127.0.0.1 POST /classify 200 images=1" in log and "GET /nope 404" in log
          and "id=trace-42.a:b_c" in log and f"id={ids[0]}" in log,
          "access log line per request on stderr, with the request id", log[-500:])
    st, h, _ = d.json("GET", "/healthz", headers={"Origin": "https://a.example"})
    check(st == 200 and "access-control-allow-origin" not in h, "no --cors-origin: no CORS headers", h)
    rc = d.stop()
    check(rc == 0, "SIGTERM -> exit 0", rc)

    # Amazon SageMaker's container contract: `IMAGE serve`, GET /ping, POST /invocations
    # (also the CORS flag: a list of two origins)
    s = Daemon("serve", "--cors-origin", "https://a.example, https://b.example")
    check(s.wait_ready(), "vitd serve ... starts (SageMaker's `docker run IMAGE serve`)", s.logtext()[-300:])
    st, _, b = s.json("GET", "/ping")
    check(st == 200 and b.get("status") == "ready", "GET /ping -> 200 once ready", b)
    st, _, b = s.json("POST", "/invocations?top_k=2", JPG, {"Content-Type": "image/jpeg"})
    check(st == 200 and [p["index"] for p in b["results"][0]["predictions"]] == [p["index"] for p in preds[:2]],
          "POST /invocations classifies like /classify", b)
    st, _, b = s.json("GET", "/invocations")
    check(st == 405 and err_code(b) == "method_not_allowed", "GET /invocations -> 405", b)
    # a request is counted when libmicrohttpd reports it complete, which may be just after the
    # client has its reply: poll briefly
    for _ in range(100):
        mx = s.metrics()
        ok = (mx.get('vitd_requests_total{path="/invocations",status="200"}') == 1
              and mx.get('vitd_requests_total{path="/ping",status="200"}', 0) >= 1)
        if ok:
            break
        time.sleep(0.02)
    check(ok, "/ping and /invocations counted by path", mx)
    st, h, _ = s.request("OPTIONS", "/classify", headers={"Origin": "https://a.example",
                                                          "Access-Control-Request-Method": "POST"})
    check(st == 204 and h.get("access-control-allow-origin") == "https://a.example" and h.get("vary") == "Origin"
          and "POST" in h.get("access-control-allow-methods", "") and "Content-Type" in h.get("access-control-allow-headers", ""),
          "CORS preflight from a listed origin: 204 with the origin, methods and headers", h)
    st, h, b = s.json("POST", "/classify", PNG, {"Content-Type": "image/png", "Origin": "https://b.example"})
    check(st == 200 and h.get("access-control-allow-origin") == "https://b.example"
          and "X-Request-Id" in h.get("access-control-expose-headers", ""), "CORS on a POST from the second listed origin", h)
    st, h, b = s.json("OPTIONS", "/classify", headers={"Origin": "https://evil.example"})
    check(st == 405 and "access-control-allow-origin" not in h, "an origin not listed: no CORS headers, OPTIONS 405", h)
    check(s.stop() == 0, "vitd serve: SIGTERM -> exit 0")

    # --input fp16 on the CPU: batch buffers in FP16 (what CUDA reads by default), converted back
    # by the engine; the pixels are rounded to FP16 once, so the scores move by ~1e-3 at most
    r = subprocess.run([VITD, "--input", "fp8"], capture_output=True, text=True)
    check(r.returncode == 2 and "--input" in r.stderr, "--input fp8 rejected", r.stderr)
    h16 = Daemon("--input", "fp16")
    if check(h16.wait_ready(), "daemon with --input fp16 becomes ready", h16.logtext()[-2000:]):
        st, _, b = h16.json("GET", "/v1/models")
        check(st == 200 and b["models"][0].get("input") == "fp16", "--input fp16: /v1/models says fp16", b)
        st, _, b = h16.classify([JPG])
        p16 = b.get("results", [{}])[0].get("predictions", []) if st == 200 else []
        check(st == 200 and [p["index"] for p in p16] == [p["index"] for p in preds]
              and max(abs(p["score"] - q["score"]) for p, q in zip(p16, preds)) < 1e-2,
              "--input fp16: the same predictions as fp32, scores within 1e-2", (p16, preds))
        check(h16.stop() == 0, "--input fp16 daemon: SIGTERM -> exit 0")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
