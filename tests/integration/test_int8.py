#!/usr/bin/python3
# asan: yes
"""test_int8.py: `--precision int8` plumbed through the CLI and the daemon, on the shipped model
(models/fashion-vit) and the ten labelled images of tests/data.
CLI: `vit classify --precision int8` gives the right top-1 label wherever fp32 does (9 of 10: both
take the shirt for a T-shirt), the same top-1 as fp32 but not the same scores; `vit bench` and
`vit eval` report int8; `--precision int8 --device cuda` fails with exit 2 and a line naming
`vit calibrate` (the shipped model has no calibration); a bad --precision lists int8.  Daemon: `vitd --precision int8` answers /classify with
the right labels, /v1/models and the vitd_model_info metric say int8; `--precision int8
--device cuda` exits 1 with a clear message."""
import json
import os
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from vitd_testlib import BUILD, DATA, ROOT, VITD, Daemon, check, read, summary  # noqa: E402

VIT = os.path.join(ROOT, BUILD, "vit")
MODEL = os.path.join(ROOT, "models", "fashion-vit")
IMAGES = {"ankle_boot": "Ankle boot", "bag": "Bag", "coat": "Coat", "dress": "Dress", "pullover": "Pullover",
          "sandal": "Sandal", "shirt": "Shirt", "sneaker": "Sneaker", "trouser": "Trouser", "tshirt": "T-shirt/top"}
FILES = [os.path.join(DATA, f + ".png") for f in IMAGES]


def vit(*args):
    return subprocess.run([VIT] + list(args), capture_output=True, text=True, timeout=120, cwd=ROOT)


def classify(prec):
    r = vit("classify", "--model", MODEL, "--precision", prec, "--threads", "2", "--batch", "4", *FILES)
    try:
        return r, [json.loads(l) for l in r.stdout.splitlines()]
    except ValueError:
        return r, []


def main():
    r8, o8 = classify("int8")
    r32, o32 = classify("fp32")
    top8 = [o["predictions"][0]["label"] for o in o8 if o.get("predictions")]
    top32 = [o["predictions"][0]["label"] for o in o32 if o.get("predictions")]
    truth = list(IMAGES.values())
    right32 = [i for i in range(len(top32)) if top32[i] == truth[i]]
    check(r8.returncode == 0 and len(top8) == 10 and len(right32) >= 9 and all(top8[i] == truth[i] for i in right32),
          f"vit classify --precision int8: right top-1 label on the {len(right32)} images fp32 gets right",
          f"{top8} {r8.stderr[-300:]}")
    s8 = [o["predictions"][0]["score"] for o in o8 if o.get("predictions")]
    s32 = [o["predictions"][0]["score"] for o in o32 if o.get("predictions")]
    check(r32.returncode == 0 and top8 == top32 and len(s8) == 10 and s8 != s32
          and max(abs(a - b) for a, b in zip(s8, s32)) < 0.05,
          "int8 vs fp32: same top-1, scores close but not identical (int8 really ran)",
          f"{list(zip(s8, s32))}")

    r = vit("classify", "--model", MODEL, "--precision", "int8", "--device", "cuda", FILES[0])
    check(r.returncode == 2 and "vit calibrate" in r.stderr and r.stderr.count("\n") == 1,
          "vit classify --precision int8 --device cuda (no calibration): exit 2, one line naming vit calibrate",
          r.stderr)
    r = vit("classify", "--model", MODEL, "--precision", "int4", FILES[0])
    check(r.returncode == 2 and "int8" in r.stderr, "--precision int4 rejected, the message lists int8", r.stderr)
    r = vit("bench", "--model", MODEL, "--precision", "int8", "--batch", "2", "--iters", "2", "--warmup", "1",
            "--threads", "1")
    check(r.returncode == 0 and "images/s" in r.stdout and "int8" in r.stdout, "vit bench --precision int8 reports int8",
          r.stdout + r.stderr[-300:])
    r = vit("eval", "--model", MODEL, "--precision", "int8", "--threads", "1",
            "--data", os.path.join(ROOT, "tests", "fixtures", "fashion10-images-idx3-ubyte.gz"))
    check(r.returncode == 0 and "cpu int8" in r.stdout and "top-1" in r.stdout,
          "vit eval --precision int8 runs and says cpu int8", r.stdout[-400:] + r.stderr[-300:])
    for sub in ("classify", "eval", "bench", "run"):
        h = vit(sub, "--help")
        check("int8" in h.stdout + h.stderr, f"vit {sub} --help lists int8")

    h = subprocess.run([VITD, "--help"], capture_output=True, text=True)
    check("fp16|int8" in h.stdout, "vitd --help lists --precision int8")
    r = subprocess.run([VITD, "--model", MODEL, "--port", "0", "--precision", "int8", "--device", "cuda"],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 1 and "vit calibrate" in r.stderr,
          "vitd --precision int8 --device cuda (no calibration): exit 1, clear error naming vit calibrate",
          r.stderr[-300:])
    r = subprocess.run([VITD, "--precision", "int4"], capture_output=True, text=True, timeout=30)
    check(r.returncode == 2 and "--precision" in r.stderr, "vitd --precision int4 rejected", r.stderr[-300:])

    d = Daemon("--precision", "int8", "--threads", "1", "--workers", "1", model=MODEL)
    try:
        if not check(d.wait_ready(), "vitd --precision int8 becomes ready", d.logtext()[-2000:]):
            return summary()
        st, _, b = d.json("GET", "/v1/models")
        m = (b.get("models") or [{}])[0]
        check(st == 200 and m.get("device") == "cpu" and m.get("precision") == "int8", "/v1/models: cpu, int8", b)
        st, _, b = d.classify([read(FILES[i]) for i in (0, 7, 8)])
        labels = [(r.get("predictions") or [{}])[0].get("label") for r in b.get("results", [])]
        check(st == 200 and labels == ["Ankle boot", "Sneaker", "Trouser"], "POST /classify at int8: right labels",
              b)
        mx = d.metrics()
        check(any(k.startswith("vitd_model_info{") and 'precision="int8"' in k and 'device="cpu"' in k for k in mx),
              "vitd_model_info{precision=\"int8\"}", [k for k in mx if "model_info" in k])
    finally:
        check(d.stop() == 0, "SIGTERM -> exit 0")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
