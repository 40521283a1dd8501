#!/usr/bin/python3
"""test_server_drain.py: vitd's graceful shutdown and systemd notify protocol.  SIGTERM while
requests wait in the batcher: readiness turns 503, new connections are refused, every accepted
request is answered, exit 0.  READY=1 / WATCHDOG=1 / STOPPING=1 arrive on an abstract
$NOTIFY_SOCKET of the test's own.  A drain that cannot finish exits 0 at --drain-timeout-s."""
import concurrent.futures as cf
import http.client
import os
import signal
import socket
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from vitd_testlib import DATA, Daemon, check, read, summary  # noqa: E402

JPG = read(os.path.join(DATA, "server", "photo.jpg"))


def recv_all(sock, wait):
    msgs = []
    sock.settimeout(wait)
    try:
        while True:
            msgs.append(sock.recv(4096).decode())
            sock.settimeout(0.05)
    except OSError:
        pass
    return msgs


def main():
    name = f"@vitd-test-{os.getpid()}"
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind("\0" + name[1:])
    d = Daemon("--eager-dispatch", "0", "--max-delay-us", "1000000", "--max-batch", "64", "--drain-timeout-s", "20",
               env={"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "200000"})
    if not check(d.wait_ready(), "daemon ready", d.logtext()[-2000:]):
        return summary()
    msgs = recv_all(ns, 2)
    check(any("READY=1" in m for m in msgs), "READY=1 sent on $NOTIFY_SOCKET (abstract) after warm-up", msgs)
    time.sleep(0.3)
    msgs = recv_all(ns, 0.5)
    check(any(m.strip() == "WATCHDOG=1" for m in msgs), "WATCHDOG=1 pings with WATCHDOG_USEC set", msgs)

    keep = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
    keep.request("GET", "/healthz")
    keep.getresponse().read()

    def one(i):
        return d.json("POST", "/classify", JPG, {"Content-Type": "image/jpeg"})

    ex = cf.ThreadPoolExecutor(3)
    futs = [ex.submit(one, i) for i in range(3)]
    time.sleep(0.4)                       # the three wait in a batch that closes at 1 s
    d.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    keep.request("GET", "/readyz")
    r = keep.getresponse()
    body = r.read()
    check(r.status == 503 and b"draining" in body, "readyz 503 while draining (on a kept-alive connection)", (r.status, body))
    refused = False
    try:
        socket.create_connection(("127.0.0.1", d.port), timeout=2).close()
    except OSError:
        refused = True
    check(refused, "new connections refused while draining")
    res = [f.result() for f in futs]
    check(all(st == 200 and b.get("results", [{}])[0].get("predictions") for st, _, b in res),
          "every request accepted before SIGTERM answered 200", [st for st, _, _ in res])
    rc = d.proc.wait(20)
    check(rc == 0, "exit 0 after the drain", rc)
    msgs = recv_all(ns, 0.5)
    check(any("STOPPING=1" in m for m in msgs), "STOPPING=1 sent on drain", msgs)
    ex.shutdown()

    # a drain that cannot finish in time: exit 0 at --drain-timeout-s
    d2 = Daemon("--eager-dispatch", "0", "--max-delay-us", "8000000", "--max-batch", "64", "--drain-timeout-s", "1")
    if check(d2.wait_ready(), "second daemon ready"):
        ex = cf.ThreadPoolExecutor(1)
        fut = ex.submit(lambda: d2.json("POST", "/classify", JPG, {"Content-Type": "image/jpeg"}, timeout=15))
        time.sleep(0.3)
        t0 = time.time()
        d2.proc.send_signal(signal.SIGTERM)
        rc = d2.proc.wait(15)
        dt = time.time() - t0
        check(rc == 0 and dt < 5 and "drain timeout" in d2.logtext(), f"drain timeout 1s: exit 0 after {dt:.1f}s", (rc, d2.logtext()[-300:]))
        try:
            fut.result()
        except Exception:
            pass
        ex.shutdown()
    ns.close()
    return summary()


if __name__ == "__main__":
    sys.exit(main())
