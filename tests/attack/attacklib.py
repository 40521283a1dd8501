"""attacklib.py: hostile clients against a real vitd on 127.0.0.1, each mounted while a
well-behaved client measures its own latency, and the daemon's RSS sampled (stdlib only).

Every attack returns a dict of figures: requests/connections the attacker made and how the
daemon refused them (by HTTP status, or "closed" when it cut the connection), the legit
client's requests, successes, p50/p99 latency during the attack, and peak RSS.  Checks are
liveness and outcome only (the legit client is answered, each within a generous bound; the
attacker is refused with the documented status; peak RSS under a stated budget), never speed.

Attacks (the issue's classes):
  slow_headers  connections sending one header line every interval, never finishing the block
  slow_body     a complete header block, then the body a few bytes at a time
  conn_flood    more idle connections than --max-connections, opened at once
  costly_images progressive JPEGs declaring 7000x7000 with hundreds of empty scans, or with
                their DC scans padded to look complete, 16 per request; half the clients leave
                without reading the answer
  body_flood    many concurrent uploads of --max-body-mb bodies (over the in-flight budget)
  json_flood    16 MB JSON bodies of numbers (under --max-body-mb: the JSON limits refuse them)
"""
import http.client
import os
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration", "lib"))
from vitd_testlib import DATA, multipart, read  # noqa: E402

LEGIT_IMG = read(os.path.join(DATA, "sneaker.png"))
PROG = read(os.path.join(DATA, "images", "jpeg_progressive.jpg"))


# ---- hostile images ---------------------------------------------------------------------------

def _segments(p):
    """[(offset, marker, seglen)] of a JPEG's marker segments, skipping entropy-coded data"""
    out, i = [], 2
    while i + 4 <= len(p) and p[i] == 0xFF:
        m = p[i + 1]
        if m == 0xD9:
            break
        L = p[i + 2] << 8 | p[i + 3]
        out.append((i, m, L))
        i += 2 + L
        if m == 0xDA:
            while i + 1 < len(p) and not (p[i] == 0xFF and p[i + 1] != 0 and not 0xD0 <= p[i + 1] <= 0xD7):
                i += 1
    return out


def prog_bomb(w=7000, h=7000, extra_scans=300, pad=0):
    """jpeg_progressive.jpg declaring w x h, with extra_scans more copies of its first AC scan
    header (no data) before EOI, and pad bytes added to each DC scan's data"""
    p = bytearray(PROG)
    segs = _segments(p)
    ac = next((o, L) for o, m, L in segs if m == 0xDA and p[o + 5 + 2 * p[o + 4]] > 0)
    out, frm = bytearray(), 0
    for o, m, L in segs:
        if m == 0xDA and p[o + 5 + 2 * p[o + 4]] == 0:
            data = o + 2 + L
            out += p[frm:data] + b"\x55" * pad
            frm = data
    out += p[frm:len(p) - 2]
    out += bytes(p[ac[0]:ac[0] + 2 + ac[1]]) * extra_scans + b"\xff\xd9"
    for o, m, L in _segments(out):
        if m in (0xC0, 0xC2):
            out[o + 5:o + 9] = struct.pack(">HH", h, w)
            break
    return bytes(out)


# ---- measurement ------------------------------------------------------------------------------

def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler(threading.Thread):
    def __init__(self, pid, interval=0.1):
        super().__init__(daemon=True)
        self.pid, self.interval, self.samples, self.stop_ev = pid, interval, [], threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            self.samples.append((time.time(), rss_kb(self.pid)))
            self.stop_ev.wait(self.interval)

    def stop(self):
        self.stop_ev.set()
        self.join()
        return max((kb for _, kb in self.samples), default=0)


def _legit_loop(port, timeout=20):
    """the well-behaved client: one image per request, one request at a time, a fresh connection
    each; prints "status seconds" per request until its stdin closes"""
    import select
    body, ct = multipart([("image", "sneaker.png", LEGIT_IMG)])
    while True:
        if select.select([sys.stdin], [], [], 0)[0] and not sys.stdin.read(1):
            return
        t0 = time.time()
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            c.request("POST", "/classify", body=body, headers={"Content-Type": ct})
            r = c.getresponse()
            r.read()
            c.close()
            st = r.status
        except OSError as e:
            st = type(e).__name__
        print(st, time.time() - t0, flush=True)
        time.sleep(0.02)


class LegitClient:
    """_legit_loop in its own process, so the attackers' threads (and Python's lock) never delay
    it: a stall of the measuring client would look like the daemon's"""
    def __init__(self, port):
        self.port, self.lat, self.status = port, [], []

    def start(self):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "legit", str(self.port)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            st, lat = line.split()
            self.status.append(int(st) if st.isdigit() else st)
            self.lat.append(float(lat))

    def stop(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join()


def pct(xs, q):
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


class Outcomes:
    """what the attacker got back, by status ("closed": the daemon cut the connection)"""
    def __init__(self):
        self.lock, self.counts = threading.Lock(), {}

    def add(self, k):
        with self.lock:
            self.counts[k] = self.counts.get(k, 0) + 1

    def total(self):
        return sum(self.counts.values())


def mount(daemon, attack, seconds, **kw):
    """run attack(port, stop_event, outcomes, **kw) in its threads while the legit client runs;
    returns the figures"""
    before = rss_kb(daemon.proc.pid)
    rss = RssSampler(daemon.proc.pid)
    rss.start()
    legit = LegitClient(daemon.port)
    legit.start()
    stop, out = threading.Event(), Outcomes()
    t0 = time.time()
    threads = attack(daemon.port, stop, out, **kw)
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    legit.stop()
    peak = rss.stop()
    time.sleep(1.5)                       # memory given back after the attack (malloc trim, munmap)
    after = rss_kb(daemon.proc.pid)
    ok = [lat for lat, st in zip(legit.lat, legit.status) if st == 200]
    return {"attack": attack.__name__, "seconds": round(time.time() - t0, 1), "attacker": dict(out.counts),
            "attacker_total": out.total(), "legit_requests": len(legit.status), "legit_ok": len(ok),
            "legit_statuses": sorted(set(map(str, legit.status))), "legit_p50_ms": round(pct(ok, 0.5) * 1e3, 1),
            "legit_p99_ms": round(pct(ok, 0.99) * 1e3, 1), "legit_max_ms": round(max(legit.lat, default=0) * 1e3, 1),
            "peak_rss_mb": round(peak / 1024, 1), "rss_before_mb": round(before / 1024, 1),
            "rss_after_mb": round(after / 1024, 1)}


def fmt(r):
    return (f"{r['attack']}: {r['seconds']}s, attacker {r['attacker_total']} -> {r['attacker']}; legit "
            f"{r['legit_ok']}/{r['legit_requests']} ok {r['legit_statuses']}, p50 {r['legit_p50_ms']} ms, "
            f"p99 {r['legit_p99_ms']} ms, max {r['legit_max_ms']} ms; RSS before {r['rss_before_mb']} MB, peak "
            f"{r['peak_rss_mb']} MB, 1.5 s after {r['rss_after_mb']} MB")


# ---- the attacks ------------------------------------------------------------------------------

def _closed_or(s, out, n=200):
    """wait for the daemon's answer on s: its status, or 'closed'"""
    try:
        got = s.recv(n)
    except OSError:
        got = b""
    if got.startswith(b"HTTP/1."):
        out.add(int(got[9:12]))
    else:
        out.add("closed")


def _spawn(fn, n, *a):
    ts = [threading.Thread(target=fn, args=a + (i,), daemon=True) for i in range(n)]
    for t in ts:
        t.start()
    return ts


# The attacker connects from 127.0.0.2 (still loopback; the daemon listens on 127.0.0.1 only) so
# the per-address cap tells it apart from the legit client on 127.0.0.1.
ATTACKER = ("127.0.0.2", 0)


def slow_headers(port, stop, out, conns=200, interval=1.0):
    def one(i):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=ATTACKER)
        except OSError:
            out.add("connect_refused")
            return
        s.settimeout(0.5)
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            k = 0
            while not stop.is_set():
                s.sendall(b"X-Slow-%d: %d\r\n" % (k, k))
                k += 1
                try:
                    if s.recv(100) == b"":
                        out.add("closed")
                        return
                except socket.timeout:
                    pass
                stop.wait(interval)
            out.add("still_open")
        except OSError:
            out.add("closed")
        finally:
            s.close()
    return _spawn(one, conns)


def slow_body(port, stop, out, conns=50, chunk=4, interval=1.0):
    def one(i):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=ATTACKER)
            s.settimeout(0.5)
            s.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                      b"Content-Length: 1000000\r\n\r\n")
            while not stop.is_set():
                s.sendall(b"\0" * chunk)
                try:
                    got = s.recv(200)
                    if got == b"" or got.startswith(b"HTTP/1."):
                        out.add(int(got[9:12]) if got else "closed")
                        return
                except socket.timeout:
                    pass
                stop.wait(interval)
            out.add("still_open")
        except OSError:
            out.add("closed")
    return _spawn(one, conns)


def conn_flood(port, stop, out, conns=300):
    """idle connections held open past --max-connections; each extra one should be refused at
    once (closed, or a 503 once it sends a request)"""
    held = []

    def run(_):
        for i in range(conns):
            if stop.is_set():
                break
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=2, source_address=ATTACKER)
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                s.settimeout(2)
                got = s.recv(200)
                if got.startswith(b"HTTP/1.1 200"):
                    out.add("served")
                    held.append(s)
                elif got.startswith(b"HTTP/1."):
                    out.add(int(got[9:12]))
                    s.close()
                else:
                    out.add("closed")
                    s.close()
            except socket.timeout:
                out.add("waited")       # the failure: left hanging instead of refused
                held.append(s)
            except OSError:
                out.add("closed")
        stop.wait()
        for s in held:
            s.close()
    return _spawn(run, 1)


def costly_images(port, stop, out, clients=4, per_request=16, kind="scans"):
    img = prog_bomb(extra_scans=300) if kind == "scans" else prog_bomb(extra_scans=80, pad=200000)
    body, ct = multipart([("image", f"b{i}.jpg", img) for i in range(per_request)])

    def one(i):
        while not stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=ATTACKER)
                s.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: " + ct.encode() +
                          b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                if i % 2:                  # leaves without reading the answer
                    s.close()
                    out.add("left")
                    stop.wait(0.05)
                    continue
                s.settimeout(30)
                _closed_or(s, out)
                s.close()
            except OSError:
                out.add("closed")
    return _spawn(one, clients)


def body_flood(port, stop, out, clients=40, mb=16):
    payload = b"\0" * (1 << 20)

    def one(i):
        while not stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=ATTACKER)
                s.settimeout(10)
                s.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                          b"Content-Length: %d\r\n\r\n" % (mb << 20))
                try:
                    for _ in range(mb):
                        s.sendall(payload)
                except OSError:
                    pass
                _closed_or(s, out)
                s.close()
            except OSError:
                out.add("closed")
    return _spawn(one, clients)


def json_flood(port, stop, out, clients=2, mb=16):
    body = b'{"images": [' + b",".join([b"12345678"] * ((mb << 20) // 9)) + b"]}"

    def one(i):
        while not stop.is_set():
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=ATTACKER)
                c.request("POST", "/classify", body=body, headers={"Content-Type": "application/json"})
                r = c.getresponse()
                r.read()
                out.add(r.status)
                c.close()
            except OSError:
                out.add("closed")
    return _spawn(one, clients)


ATTACKS = {f.__name__: f for f in (slow_headers, slow_body, conn_flood, costly_images, body_flood, json_flood)}


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "legit":
    _legit_loop(int(sys.argv[2]))
