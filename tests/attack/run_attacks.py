#!/usr/bin/python3
"""run_attacks.py: mount every attack of attacklib.py on one real vitd (tiny-hf model, CPU) on
127.0.0.1 while a well-behaved client measures its own latency; then, with --soak S, mixed legit
+ hostile traffic for S seconds with the daemon's RSS sampled every 10 s.  Prints PASS/FAIL per
check and the figures of each attack, ends with "N passed, M failed".

  tests/attack/run_attacks.py --seconds 4                 # the short form (make test)
  tests/attack/run_attacks.py --seconds 20 --soak 600 --out bench/results/attack_soak.txt
                                                          # make test-attack

Checks per attack (liveness and outcome, no speed thresholds):
  - the legit client got answers during the attack, every one 200, each within 20 s;
  - the attacker was refused as documented (connections closed by the daemon, or the status of
    the limit: 413 / 422 / 400 / 503), never served what the limit forbids;
  - the daemon's peak RSS stayed under the budget stated in BUDGET_MB, and 1.5 s after the attack
    it is within 64 MB of where it was before (memory given back, not kept for the next one).
Soak: the RSS line is flat: the last third's mean within 25% (and 64 MB) of the first third's."""
import argparse
import os
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration", "lib"))
import attacklib as A  # noqa: E402
from vitd_testlib import Daemon, check, summary  # noqa: E402

# the daemon's limits for the run (small, so each attack hits them within seconds)
FLAGS = ["--device", "cpu", "--decoders", "2", "--http-threads", "4", "--max-connections", "128",
         "--max-connections-per-ip", "48", "--header-timeout-s", "3", "--body-grace-s", "1",
         "--min-body-rate-kb", "64", "--max-inflight-body-mb", "96", "--max-body-mb", "20",
         "--queue-timeout-ms", "10000", "--max-image-cost-m", "600", "--max-request-cost-m", "2000",
         "--request-timeout-s", "30"]
# peak RSS budget per attack, MB (the tiny model's daemon idles near 60 MB; the body budget is 96)
BUDGET_MB = {"slow_headers": 300, "slow_body": 300, "conn_flood": 300, "costly_images": 600,
             "body_flood": 400, "json_flood": 300}


def expect(name, r):
    a = r["attacker"]
    if name in ("slow_headers", "slow_body"):
        return a.get("still_open", 0) == 0 and sum(a.values()) > 0, "every slow connection closed by the daemon"
    if name == "conn_flood":
        return a.get("waited", 0) == 0 and a.get("closed", 0) + a.get(503, 0) > 0, \
            "connections past the caps refused at once (closed or 503), none left waiting"
    if name == "costly_images":
        refused = a.get(413, 0) + a.get(422, 0)
        return a.get(200, 0) == 0 and refused > 0, "every costly request refused 413/422 (none decoded)"
    if name == "body_flood":
        return a.get(503, 0) > 0, "uploads past the in-flight body budget refused 503"
    if name == "json_flood":
        return a.get(200, 0) == 0 and a.get(400, 0) > 0, "16 MB JSON of numbers refused 400 (JSON limits)"
    return False, "unknown attack"


def run_attack(d, name, seconds):
    kw = {}
    if name == "costly_images":
        kw = {"kind": "scans"}
    r = A.mount(d, A.ATTACKS[name], seconds, **kw)
    print("#", A.fmt(r), flush=True)
    ok, what = expect(name, r)
    check(ok, f"{name}: {what}", r["attacker"])
    check(r["legit_ok"] > 0 and r["legit_ok"] == r["legit_requests"] and r["legit_max_ms"] < 20000,
          f"{name}: legit client served meanwhile ({r['legit_ok']}/{r['legit_requests']}, p50 {r['legit_p50_ms']} ms, "
          f"p99 {r['legit_p99_ms']} ms)", r["legit_statuses"])
    check(r["peak_rss_mb"] < BUDGET_MB[name], f"{name}: peak RSS {r['peak_rss_mb']} MB < {BUDGET_MB[name]} MB")
    check(r["rss_after_mb"] < r["rss_before_mb"] + 64,
          f"{name}: memory given back after the attack ({r['rss_before_mb']} MB before, {r['rss_after_mb']} MB after)")
    if name == "costly_images":
        r2 = A.mount(d, A.costly_images, seconds, kind="cost")
        print("#", A.fmt(r2), flush=True)
        check(r2["attacker"].get(200, 0) == 0 and r2["attacker"].get(413, 0) > 0,
              "costly_images (padded DC scans): refused 413 by the cost budget", r2["attacker"])
        check(r2["legit_ok"] > 0 and r2["legit_ok"] == r2["legit_requests"],
              f"costly_images (padded): legit served ({r2['legit_ok']}/{r2['legit_requests']}, p99 {r2['legit_p99_ms']} ms)",
              r2["legit_statuses"])
    return r


def soak(d, seconds, out_path, cmd):
    """mixed traffic: the legit client plus, in turn, each attack at a lower rate; RSS every 10 s"""
    samples = []
    stop = threading.Event()

    def sample():
        t0 = time.time()
        while not stop.is_set():
            samples.append((round(time.time() - t0), A.rss_kb(d.proc.pid)))
            print(f"# soak t={samples[-1][0]}s rss={samples[-1][1] / 1024:.1f} MB", flush=True)
            stop.wait(10)
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t_end, results = time.time() + seconds, []
    names = list(A.ATTACKS)
    i = 0
    while time.time() < t_end:
        name = names[i % len(names)]
        i += 1
        r = A.mount(d, A.ATTACKS[name], min(30, max(1, t_end - time.time())))
        results.append(r)
    stop.set()
    th.join()
    kb = [k for _, k in samples]
    n3 = max(1, len(kb) // 3)
    first, last = sum(kb[:n3]) / n3, sum(kb[-n3:]) / n3
    flat = last <= first * 1.25 or last - first < 64 * 1024
    legit_req = sum(r["legit_requests"] for r in results)
    legit_ok = sum(r["legit_ok"] for r in results)
    check(flat, f"soak {seconds}s: RSS flat (first third {first / 1024:.1f} MB, last third {last / 1024:.1f} MB)")
    check(legit_ok == legit_req and legit_ok > 0, f"soak: legit client {legit_ok}/{legit_req} answered 200")
    check(d.proc.poll() is None, "soak: daemon alive at the end")
    if out_path:
        with open(out_path, "w") as f:
            f.write(f"# {cmd}\n# vitd {' '.join(FLAGS)} (tiny-hf model)\n")
            f.write(f"# soak {seconds}s, mixed legit + hostile; RSS every 10 s\n")
            f.write("t_s rss_mb\n")
            for t, k in samples:
                f.write(f"{t} {k / 1024:.1f}\n")
            f.write(f"# RSS first third {first / 1024:.1f} MB, last third {last / 1024:.1f} MB\n")
            f.write(f"# legit {legit_ok}/{legit_req} ok\n")
            for r in results:
                f.write("# " + A.fmt(r) + "\n")
        print(f"# soak recorded in {out_path}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=4, help="each attack's duration")
    ap.add_argument("--soak", type=float, default=0, help="seconds of mixed traffic after the attacks")
    ap.add_argument("--out", default="", help="file for the soak's RSS samples and figures")
    ap.add_argument("--only", default="", help="comma-separated attack names")
    a = ap.parse_args()
    d = Daemon(*FLAGS)
    if not check(d.wait_ready(), "daemon ready", d.logtext()[-2000:]):
        return summary()
    names = [n for n in A.ATTACKS if not a.only or n in a.only.split(",")]
    for name in names:
        run_attack(d, name, a.seconds)
        check(d.proc.poll() is None, f"{name}: daemon alive")
    m = d.metrics()
    rej = {k: v for k, v in m.items() if k.startswith("vitd_rejected_total") or k.startswith("vitd_cancelled_total")}
    print("# metrics:", {k.split('"')[1] + (" (cancelled)" if "cancelled" in k else ""): int(v)
                         for k, v in rej.items() if v}, flush=True)
    if a.soak > 0:
        soak(d, a.soak, a.out, " ".join(sys.argv))
    rc = d.stop()
    check(rc == 0, "SIGTERM -> exit 0", rc)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
