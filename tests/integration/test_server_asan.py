#!/usr/bin/python3
# asan: yes
"""test_server_asan.py: 1000 mixed requests (good, corrupt, multi-image, attention, oversized,
wrong paths, aborted uploads) against vitd (--max-delay-us 0: batches close as soon as a worker
is free) from 8 concurrent clients, then SIGTERM.  Run by the
suite twice: on the normal build and on the ASan+UBSan build (VITD_BUILD=build-asan), where any
sanitizer report, leak included, fails it."""
import concurrent.futures as cf
import os
import socket
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from vitd_testlib import DATA, Daemon, check, multipart, read, summary  # noqa: E402

JPG = read(os.path.join(DATA, "server", "photo.jpg"))
PNG = read(os.path.join(DATA, "sneaker.png"))


def main():
    d = Daemon("--max-batch", "8", "--max-delay-us", "0", "--max-body-mb", "1", "--max-queue", "64", "--log-level", os.environ.get("LOGLEVEL", "warn"),
               env={"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "detect_leaks=1") + ":log_path=stderr"})
    if not check(d.wait_ready(120), "daemon ready", d.logtext()[-3000:]):
        return summary()
    body_multi, ct_multi = multipart([("image", "a", PNG), ("image", "b", b"\xff\xd8\xff\x00junk"), ("note", "", b"x")])

    def one(i):
        k = i % 10
        try:
            if k == 0:
                return d.classify([JPG])[0]
            if k == 1:
                return d.json("POST", "/classify?top_k=3", PNG, {"Content-Type": "image/png"})[0]
            if k == 2:
                return d.json("POST", "/classify?attention=rollout", body_multi, {"Content-Type": ct_multi})[0]
            if k == 3:
                return d.classify([PNG, JPG], "?attention=cls")[0]
            if k == 4:
                return d.json("POST", "/classify", JPG[:5000], {"Content-Type": "image/jpeg"})[0]
            if k == 5:
                return d.json("POST", "/classify", body_multi[:-30], {"Content-Type": ct_multi})[0]
            if k == 6:
                return d.json("GET", "/metrics" if i % 20 else "/v1/models")[0]
            if k == 7:
                return d.json("GET", "/nope")[0]
            if k == 8:
                s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
                s.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 2000\r\n\r\n" + JPG[:500])
                s.close()                       # aborted upload
                return 0
            return d.json("POST", "/classify", os.urandom(200), {"Content-Type": "application/octet-stream",
                                                                 "X-Request-Timeout-Ms": "5000"})[0]
        except OSError as e:
            return str(e)

    with cf.ThreadPoolExecutor(8) as ex:
        sts = list(ex.map(one, range(1000)))
    bad = [s for s in sts if not isinstance(s, int)]
    check(not bad and sts.count(200) >= 500, f"1000 mixed requests answered ({sts.count(200)} x 200)", bad[:5])
    st, _, _ = d.json("GET", "/healthz")
    check(st == 200, "daemon alive after 1000 mixed requests")
    rc = d.stop()
    log = d.logtext()
    san = [l for l in log.splitlines() if "Sanitizer" in l or "runtime error" in l or "leak" in l.lower()]
    check(rc == 0 and not san and "drain timeout" not in log, f"clean drain and exit {rc}, no sanitizer report", "\n".join(san[:20]) or log[-2000:])
    return summary()


if __name__ == "__main__":
    sys.exit(main())
