"""vitd_testlib.py: helpers for the vitd integration tests (stdlib only): start the real daemon
on a free loopback port, HTTP requests, multipart bodies, Prometheus parsing, PASS/FAIL counting.
Every daemon started here is killed when the test process exits."""
import atexit
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import zlib

import openapi_check

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BUILD = os.environ.get("VITD_BUILD", "build")
VITD = os.path.join(ROOT, BUILD, "vitd")
TINY = os.path.join(ROOT, "tests", "fixtures", "models", "tiny-hf")
DATA = os.path.join(ROOT, "tests", "data")

_passed = 0
_failed = 0
_skipped = 0
_checked = 0          # responses checked against server/openapi.json
_procs = []
_logs = []


def check(cond, name, detail=""):
    global _passed, _failed
    if cond:
        _passed += 1
        print(f"PASS {name}", flush=True)
    else:
        _failed += 1
        print(f"FAIL {name}: {detail}", flush=True)
    return cond


def skip(name, why):
    global _skipped
    _skipped += 1
    print(f"SKIP {name}: {why}", flush=True)


def check_openapi(method, path, status, headers, body):
    """a response that does not match server/openapi.json fails the test (openapi_check.py)"""
    global _checked
    _checked += 1
    why = openapi_check.check_response(method, path, status, headers, body)
    if why:
        check(False, f"response matches server/openapi.json ({method} {path.split('?')[0]})", why)


def summary():
    if _checked:
        print(f"{_checked} responses checked against server/openapi.json", flush=True)
    s = f"{_passed} passed, {_failed} failed"
    if _skipped:
        s += f", {_skipped} skipped"
    print(s, flush=True)
    return 1 if _failed else 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read(path):
    with open(path, "rb") as f:
        return f.read()


def png_header_only(w, h):
    """A PNG whose IHDR claims w x h pixels, with an empty IDAT: checks the pixel cap."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


class Daemon:
    def __init__(self, *args, env=None, model=TINY, port=None):
        self.port = port or free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="vitd-test-", suffix=".log", delete=False)
        _logs.append(self.log.name)
        cmd = [VITD, "--model", model, "--host", "127.0.0.1", "--port", str(self.port)] + list(args)
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log, env=e, cwd=ROOT)
        _procs.append(self.proc)

    def wait_ready(self, timeout=60):
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                return False
            try:
                st, _, _ = self.request("GET", "/readyz", timeout=2)
                if st == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def request(self, method, path, body=None, headers=None, timeout=30):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            hdrs = {k.lower(): v for k, v in r.getheaders()}
            check_openapi(method, path, r.status, hdrs, data)
            return r.status, hdrs, data
        finally:
            c.close()

    def json(self, method, path, body=None, headers=None, timeout=30):
        st, h, data = self.request(method, path, body, headers, timeout)
        try:
            return st, h, json.loads(data)
        except ValueError:
            return st, h, {"_raw": data[:200]}

    def classify(self, images, query="", headers=None, timeout=30):
        body, ct = multipart([("image", "img", d) for d in images])
        hd = {"Content-Type": ct}
        hd.update(headers or {})
        return self.json("POST", "/classify" + query, body, hd, timeout)

    def metrics(self):
        st, _, data = self.request("GET", "/metrics")
        return parse_prom(data.decode())

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def logtext(self):
        with open(self.log.name, "rb") as f:
            return f.read().decode(errors="replace")


def multipart(parts, boundary=None):
    """parts: [(name, filename, bytes)] -> (body, content_type)"""
    b = boundary or "vitdtest" + uuid.uuid4().hex
    out = []
    for name, fn, data in parts:
        out.append(f"--{b}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{fn}\"\r\n"
                   f"Content-Type: application/octet-stream\r\n\r\n".encode())
        out.append(data)
        out.append(b"\r\n")
    out.append(f"--{b}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={b}"


def parse_prom(text):
    """{'name{labels}': value}"""
    m = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        k, _, v = line.rpartition(" ")
        try:
            m[k] = float(v)
        except ValueError:
            pass
    return m


@atexit.register
def _kill_all():
    for p in _procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    # daemon logs are kept only when something failed (their paths are printed then)
    for name in _logs:
        if _failed:
            print(f"daemon log kept: {name}", flush=True)
        else:
            try:
                os.unlink(name)
            except OSError:
                pass
