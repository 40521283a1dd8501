#!/usr/bin/env python3
"""gpu_vs_torch.py: ViT-B/16 inference on one GPU, our CUDA engine vs PyTorch, in one run.

Same random weights for both (torchvision vit_b_16, every parameter drawn, saved as a vitd model
directory by models/convert_torchvision.py).  For each batch size (default 1, 8, 64, 256):
  ours      build/tests/gpu/bench_cuda: vit_forward end to end, FP32 input already in the
            session's pinned host buffer -> H2D copy, FP16 forward (CUDA graph), logits D2H
  eager     PyTorch eager FP16 (torchvision's MultiheadAttention fast path = SDPA), input on GPU
  compile   torch.compile(eager model) (default mode), input on GPU
  eager+io  eager with the same host->device input copy and logits copy back as ours
  ours-wmma ours with VIT_CUDA_ATTN=wmma (the older WMMA attention kernel instead of mma.sync)
  ours f16-in  ours with FP16 input (bench_cuda --f16: vit_forward_f16, the same values rounded
            to FP16 in the pinned buffer, half the bytes to copy; logits bit-identical to FP32
            input's, checked below on the 8 correctness images)
Timing: CUDA events (torch) or host clock around a synchronous call (ours), warm-up first,
median of the repeats; images/s = batch / median.  Also checks that our logits match PyTorch's
FP32 logits on 8 random images (relative max diff, top-1 agreement).

    python3 bench/gpu_vs_torch.py [--batches 1,8,64,256] [--out DIR] [--no-compile]
Writes DIR/gpu_vs_torch.json and .md, prints the table last.  Needs a CUDA GPU, torch,
torchvision, numpy; run by bench/gpu_check.sh (the device image's python3 has them).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(*a):
    print(*a, flush=True)


def make_model_dir(d):
    """random vit_b_16 -> (torch model FP32 on CPU, vitd model dir)"""
    os.makedirs(d, exist_ok=True)
    torch.manual_seed(0)
    m = torchvision.models.vit_b_16()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith(".weight") and ("ln" in name or name.startswith("encoder.ln")):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif p.dim() >= 2 and "pos_embedding" not in name and "class_token" not in name:
                fan_in = p[0].numel()
                p.copy_(torch.randn_like(p) / fan_in ** 0.5)
            else:
                p.copy_(0.1 * torch.randn_like(p))
    m.eval()
    pth = os.path.join(d, "vit_b_16_random.pth")
    torch.save(m.state_dict(), pth)
    out = os.path.join(d, "vit_b_16_random")
    subprocess.run([sys.executable, os.path.join(ROOT, "models", "convert_torchvision.py"), pth,
                    "--out", out, "--arch", "vit_b_16"], check=True)
    return m, out


def run_ours(bench, model_dir, batch, iters, env_extra=None, flags=()):
    env = dict(os.environ, **(env_extra or {}))
    r = subprocess.run([bench, "--model", model_dir, "--batch", str(batch), "--iters", str(iters),
                        "--warmup", "5", *flags], capture_output=True, text=True, timeout=600, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"bench_cuda batch {batch}: {r.stderr.strip() or r.stdout.strip()}")
    ms = float(re.search(r"median ([0-9.]+) ms", r.stdout).group(1))
    return batch / (ms / 1e3), ms


def time_cuda(fn, iters, warmup=5):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="1,8,64,256")
    ap.add_argument("--out", default=os.environ.get("OUT") or os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--bench", default=os.path.join(ROOT, os.environ.get("VITD_BUILD", "build"), "tests", "gpu", "bench_cuda"))
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    os.makedirs(args.out, exist_ok=True)
    if not torch.cuda.is_available():
        log("gpu_vs_torch: no CUDA device visible to PyTorch; nothing to compare")
        return 2
    gpu = torch.cuda.get_device_name(0)
    log(f"gpu_vs_torch: {gpu}, torch {torch.__version__}, torchvision {torchvision.__version__}")
    work = args.workdir or tempfile.mkdtemp(prefix="vitd_gpu_")
    m32, model_dir = make_model_dir(work)

    # correctness: ours (FP16) vs torch FP32 on the GPU, 8 random images
    torch.manual_seed(1)
    x = torch.randn(8, 3, 224, 224)
    xin = os.path.join(work, "x.npy")
    lout = os.path.join(work, "logits.npy")
    np.save(xin, x.numpy().astype(np.float32))
    check = {}
    r = subprocess.run([args.bench, "--model", model_dir, "--input", xin, "--output", lout],
                       capture_output=True, text=True, timeout=600)
    with torch.inference_mode():
        ref = m32.cuda()(x.cuda()).float().cpu().numpy()
    if r.returncode == 0:
        ours = np.load(lout)
        rel = float(np.abs(ours - ref).max() / np.abs(ref).max())
        top1 = int((ours.argmax(1) == ref.argmax(1)).sum())
        check = {"rel_maxdiff_vs_torch_fp32": rel, "top1_agree": f"{top1}/8"}
        log(f"check: our FP16 logits vs PyTorch FP32: rel maxdiff {rel:.3g}, top-1 agree {top1}/8")
    else:
        check = {"error": r.stderr.strip()}
        log(f"check: bench_cuda failed: {r.stderr.strip()}")
    # FP16 input: the same 8 images through vit_forward_f16 give the same logits bit for bit
    lout16 = os.path.join(work, "logits_f16.npy")
    r16 = subprocess.run([args.bench, "--model", model_dir, "--input", xin, "--output", lout16, "--f16"],
                         capture_output=True, text=True, timeout=600)
    if r.returncode == 0 and r16.returncode == 0:
        same = bool(np.array_equal(np.load(lout16).view(np.uint32), np.load(lout).view(np.uint32)))
        check["f16_input_logits_bit_identical"] = same
        log(f"check: FP16-input logits bit-identical to FP32-input logits: {same}")
    elif r16.returncode != 0:
        check["f16_input_error"] = r16.stderr.strip()
        log(f"check: bench_cuda --f16 failed: {r16.stderr.strip()}")

    m16 = m32.half().cuda().eval()
    compiled = None
    if not args.no_compile:
        torch._dynamo.config.cache_size_limit = 64
        compiled = torch.compile(m16)
    rows = []
    for B in batches:
        iters = 200 if B <= 8 else (50 if B <= 64 else 20)
        row = {"batch": B}
        for key, env, flags in (("ours", None, ()), ("ours_f16in", None, ("--f16",)),
                                ("ours_wmma", {"VIT_CUDA_ATTN": "wmma"}, ())):
            try:
                row[f"{key}_ips"], row[f"{key}_ms"] = run_ours(args.bench, model_dir, B, iters, env, flags)
            except Exception as e:  # noqa: BLE001
                row[f"{key}_error"] = str(e)
                log(f"{key} B={B}: {e}")
        xg = torch.randn(B, 3, 224, 224, device="cuda", dtype=torch.float16)
        xh = torch.randn(B, 3, 224, 224).pin_memory()
        with torch.inference_mode():
            ms = time_cuda(lambda: m16(xg), iters)
            row["eager_ips"], row["eager_ms"] = B / (ms / 1e3), ms
            ms = time_cuda(lambda: m16(xh.cuda(non_blocking=True).half()).float().cpu(), iters)
            row["eager_io_ips"], row["eager_io_ms"] = B / (ms / 1e3), ms
            if compiled is not None:
                t0 = time.time()
                try:
                    compiled(xg)
                    torch.cuda.synchronize()
                    row["compile_s"] = time.time() - t0
                    ms = time_cuda(lambda: compiled(xg), iters)
                    row["compile_ips"], row["compile_ms"] = B / (ms / 1e3), ms
                except Exception as e:  # noqa: BLE001
                    row["compile_error"] = str(e)[:300]
                    log(f"torch.compile B={B}: {e}")
        if row.get("ours_f16in_ips") and row.get("eager_ips"):
            row["ours_f16in_vs_eager"] = row["ours_f16in_ips"] / row["eager_ips"]
        log(json.dumps(row))
        rows.append(row)
        with open(os.path.join(args.out, "gpu_vs_torch.partial.json"), "w") as fh:  # survives a kill
            json.dump({"gpu": gpu, "check": check, "rows": rows}, fh, indent=1)
        del xg, xh
        torch.cuda.empty_cache()

    res = {"gpu": gpu, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "check": check, "rows": rows}
    with open(os.path.join(args.out, "gpu_vs_torch.json"), "w") as f:
        json.dump(res, f, indent=1)

    def f(v, fmt="{:.0f}"):
        return fmt.format(v) if isinstance(v, (int, float)) else "-"

    lines = [f"ViT-B/16 random weights, {gpu}, torch {torch.__version__}, {res['date']}",
             f"correctness: {check}", "",
             "| batch | ours img/s | ours ms | ours f16-in img/s | ours-wmma img/s | eager fp16 img/s | eager+io img/s | compile img/s | ours/eager | ours f16-in/eager | ours/eager+io | ours/compile |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        o = r.get("ours_ips")
        o16 = r.get("ours_f16in_ips")
        ratio = lambda k, v=o: f(v / r[k], "{:.2f}x") if v and r.get(k) else "-"  # noqa: E731
        lines.append(f"| {r['batch']} | {f(o)} | {f(r.get('ours_ms'), '{:.3f}')} | {f(o16)} | {f(r.get('ours_wmma_ips'))} | {f(r.get('eager_ips'))} | "
                     f"{f(r.get('eager_io_ips'))} | {f(r.get('compile_ips'))} | {ratio('eager_ips')} | {ratio('eager_ips', o16)} | "
                     f"{ratio('eager_io_ips')} | {ratio('compile_ips')} |")
    md = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "gpu_vs_torch.md"), "w") as fh:
        fh.write(md)
    log("")
    log(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
