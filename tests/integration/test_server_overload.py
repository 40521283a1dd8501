#!/usr/bin/python3
"""test_server_overload.py: vitd under overload and bad clients: a full queue answers 503 with
Retry-After and the daemon stays up and answers what it admitted; X-Request-Timeout-Ms expiring
in the queue gives 504 without compute; slow/idle clients are timed out; the connection cap holds."""
import concurrent.futures as cf
import os
import socket
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from vitd_testlib import DATA, Daemon, check, read, summary  # noqa: E402

JPG = read(os.path.join(DATA, "server", "photo.jpg"))


def main():
    # a queue of 2 images and batches that wait 1.5 s to fill: the 3rd concurrent image is refused
    d = Daemon("--device", "cpu", "--max-queue", "2", "--max-batch", "64", "--max-delay-us", "1500000", "--eager-dispatch", "0", "--request-timeout-s", "2",
               "--max-connections", "12")
    if not check(d.wait_ready(), "daemon ready", d.logtext()[-2000:]):
        return summary()

    def one(i):
        time.sleep(0.05 * i)
        return d.json("POST", "/classify", JPG, {"Content-Type": "image/jpeg"})

    with cf.ThreadPoolExecutor(6) as ex:
        rs = list(ex.map(one, range(6)))
    sts = [r[0] for r in rs]
    refused = [r for r in rs if r[0] == 503]
    ok503 = all(r[2].get("error", {}).get("code") == "queue_full" and int(r[1].get("retry-after", "0")) >= 1 for r in refused)
    check(sts.count(200) == 2 and len(refused) == 4 and ok503,
          "queue full: 2 admitted and answered 200, 4 refused with 503 + Retry-After", [(r[0], r[1].get("retry-after")) for r in rs])
    st, _, b = d.json("GET", "/healthz")
    check(st == 200, "daemon alive after overload", b)
    m = d.metrics()
    check(m.get('vitd_requests_total{path="/classify",status="503"}') == 4 and m.get("vitd_queue_depth") == 0,
          "503s counted in /metrics, queue drained", {k: v for k, v in m.items() if "requests" in k or "queue_depth" in k})

    # deadline: 300 ms while batches wait 1.5 s -> 504, dropped before compute
    infer0 = m.get("vitd_batch_size_sum", 0)
    t0 = time.time()
    st, _, b = d.json("POST", "/classify", JPG, {"Content-Type": "image/jpeg", "X-Request-Timeout-Ms": "300"})
    m2 = d.metrics()
    check(st == 504 and b.get("error", {}).get("code") == "deadline_exceeded" and m2.get("vitd_batch_size_sum", 0) == infer0,
          f"X-Request-Timeout-Ms expired in the queue -> 504, not computed ({time.time() - t0:.2f}s)", (st, b))
    st, _, b = d.json("POST", "/classify", JPG, {"Content-Type": "image/jpeg", "X-Request-Timeout-Ms": "-5"})
    check(st == 400, "bad X-Request-Timeout-Ms -> 400", b)
    st, _, b = d.json("POST", "/classify", JPG, {"Content-Type": "image/jpeg", "X-Request-Timeout-Ms": "10000"})
    check(st == 200, "deadline long enough -> 200", b)

    # slow client: headers never finished; the daemon closes it after --request-timeout-s
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    s.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
    t0 = time.time()
    try:
        got = s.recv(100)
    except ConnectionResetError:
        got = b""
    dt = time.time() - t0
    s.close()
    check(got == b"" and dt < 9, f"slow client (incomplete headers) disconnected after {dt:.1f}s", got)
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    s.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 1000\r\n\r\n" + JPG[:100])
    t0 = time.time()
    try:
        got = s.recv(100)
    except ConnectionResetError:
        got = b""
    dt = time.time() - t0
    s.close()
    check(got == b"" and dt < 9, f"slow client (body stalls) disconnected after {dt:.1f}s", got)

    # a body trickled byte by byte never looks idle; the whole upload is bounded too
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    s.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 1000\r\n\r\n")
    t0 = time.time()
    closed = False
    try:
        for i in range(40):
            s.sendall(JPG[i:i + 1])
            time.sleep(0.25)
    except OSError:
        closed = True
    dt = time.time() - t0
    s.close()
    check(closed and dt < 8, f"trickling client (1 byte / 250 ms) cut off after {dt:.1f}s", dt)

    # connection cap: of 20 connections each sending a request, at most 12 are served while all
    # stay open; the others wait unaccepted (or are closed)
    idle = [socket.create_connection(("127.0.0.1", d.port), timeout=5) for _ in range(20)]
    for s in idle:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.5)
    served = 0
    for s in idle:
        s.settimeout(0.02)
        try:
            served += s.recv(100).startswith(b"HTTP/1.1 200")
        except OSError:
            pass
    check(1 <= served <= 12, f"--max-connections 12: {served} of 20 concurrent connections served", served)
    for s in idle:
        s.close()
    time.sleep(0.3)
    st, _, b = d.json("GET", "/healthz")
    check(st == 200, "serves again once connections close", b)
    rc = d.stop()
    check(rc == 0, "SIGTERM -> exit 0", rc)

    # eager dispatch (the default): a lone request on an idle server does not wait for its batch
    # to fill, even with a 10 s --max-delay-us; its 5 s deadline would expire if it did (and the
    # same request gets 504 above with --eager-dispatch 0)
    d3 = Daemon("--device", "cpu", "--max-batch", "64", "--max-delay-us", "10000000")
    if check(d3.wait_ready(), "daemon ready (eager dispatch)", d3.logtext()[-2000:]):
        st, _, b = d3.json("POST", "/classify", JPG, {"Content-Type": "image/jpeg", "X-Request-Timeout-Ms": "5000"})
        check(st == 200 and b.get("batch_size") == 1, "eager dispatch: a lone request runs at once despite --max-delay-us 10 s", (st, b))
        check(d3.stop() == 0, "SIGTERM -> exit 0 (eager dispatch)")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
