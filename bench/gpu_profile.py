#!/usr/bin/env python3
"""gpu_profile.py: where one ViT forward spends its GPU time, kernel by kernel (Nsight Compute).

    bench/gpu_profile.py --model DIR --batch B [--ncu PATH] [--forwards N] [--env K=V ...]

Runs build/tests/gpu/bench_cuda under `ncu --metrics gpu__time_duration.sum` (each kernel timed
alone, without overlap, at the GPU's own clocks, caches not flushed) with VIT_CUDA_WARMUP=0 and
VIT_CUDA_GEMM_TUNE=0 (no warm-up or tuning launches: the only kernels are N identical forwards,
the eager run then graph replays; the im2col kernel, once per forward, counts them), groups the
kernels by (name, grid, block) and prints a table per forward: calls, us, share of the sum.  The
sum is not the forward's wall time (launch gaps and overlap are missing) but the split shows
what to work on.  Needs a GPU and ncu (it is in the CUDA toolkit).
"""
import argparse
import csv
import io
import os
import shutil
import subprocess
import sys
from collections import defaultdict


def short(name):
    """cuBLASLt's kernel names are long templates: keep the head and the tile part."""
    base = name.split("(")[0].strip()
    if base.startswith("void "):
        base = base[5:]
    return base if len(base) <= 90 else base[:60] + "..." + base[-27:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--forwards", type=int, default=3, help="forwards profiled (the first is the eager run)")
    ap.add_argument("--ncu", default=shutil.which("ncu") or "/usr/local/cuda/bin/ncu")
    ap.add_argument("--bench", default="build/tests/gpu/bench_cuda")
    ap.add_argument("--env", action="append", default=[], help="K=V for the engine (e.g. VIT_CUDA_ATTN=wmma)")
    a = ap.parse_args()
    env = dict(os.environ, VIT_CUDA_WARMUP="0", VIT_CUDA_GEMM_TUNE="0")
    for kv in a.env:
        k, _, v = kv.partition("=")
        env[k] = v
    cmd = [a.ncu, "--metrics", "gpu__time_duration.sum", "--cache-control", "none",
           "--clock-control", "none", "--csv", "--print-units", "base",
           a.bench, "--model", a.model, "--batch", str(a.batch), "--warmup", "0",
           "--iters", str(a.forwards)]
    print("gpu_profile:", " ".join(cmd), " ".join(a.env), flush=True)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = p.stdout.splitlines()
    try:
        start = next(i for i, l in enumerate(lines) if l.startswith('"ID"'))
    except StopIteration:
        sys.stderr.write(p.stdout[-4000:] + p.stderr[-4000:])
        sys.exit("gpu_profile: no ncu CSV in the output")
    rows = list(csv.DictReader(io.StringIO("\n".join(l for l in lines[start:] if l.startswith('"')))))
    agg = defaultdict(lambda: [0, 0.0])
    for r in rows:
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        key = (short(r["Kernel Name"]), r["Grid Size"], r["Block Size"])
        agg[key][0] += 1
        agg[key][1] += float(r["Metric Value"].replace(",", ""))  # ns
    total = sum(v[1] for v in agg.values())
    # forwards seen = calls of the patch-embedding im2col (once per forward)
    n = sum(c for (name, _, _), (c, _) in agg.items() if name.startswith("im2col")) or a.forwards
    print(f"\n{len(rows)} kernels profiled over {n} forwards of batch {a.batch}; "
          f"sum of kernel times per forward {total / n / 1e3:.1f} us\n")
    print("| kernel | grid | block | calls/fwd | us/fwd | share |")
    print("|---|---|---|---|---|---|")
    for (name, grid, block), (c, t) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
        print(f"| {name} | {grid} | {block} | {c / n:g} | {t / n / 1e3:.1f} | {100 * t / total:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
