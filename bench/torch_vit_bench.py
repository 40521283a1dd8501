#!/usr/bin/python3
"""torch_vit_bench.py: the PyTorch side of bench/cpu_vs_torch.sh.

    make-model OUT_DIR            torchvision vit_b_16 with EVERY parameter random (fixed seed;
                                  torchvision zero-initialises its head, so that is randomised
                                  too), saved as OUT_DIR/vit_b_16.pth and converted to a vitd
                                  model directory OUT_DIR/model by models/convert_torchvision.py
    check OUT_DIR X.npy LOGITS.npy
                                  PyTorch logits on X vs vitd's (`vit run`): prints the max
                                  difference relative to the largest |logit|
    time OUT_DIR --batch B [--iters K] [--threads N] [--mode trace-freeze|eager|optimize]
                                  images/s of PyTorch in that mode (inference_mode, set_num_threads,
                                  warm-up first); prints "<number> images/s"
    duel OUT_DIR --vit build/vit --batch B [--rounds R] [--iters K] [--threads N]
                                  on a shared machine: PyTorch (trace+freeze, and trace+freeze+
                                  optimize_for_inference, each built once) and `vit bench` timed in
                                  turns, R rounds, so all see the same background load; prints the
                                  best images/s of each:  "vitd X", "torch-trace-freeze Y",
                                  "torch-optimize Z"
    int8-check OUT_DIR X.npy FP32.npy INT8.npy
                                  accuracy of INT8 vs FP32 on the same input: vitd's (`vit run
                                  --precision fp32|int8` logits in FP32.npy / INT8.npy) and
                                  PyTorch's dynamic quantization (quantize_dynamic(model,
                                  {nn.Linear}, dtype=torch.qint8)) vs PyTorch FP32: max and mean
                                  relative difference of the logits, top-1 agreement
    duel-int8 OUT_DIR --vit build/vit --batch B [--rounds R] [--iters K] [--threads N]
                                  like duel, for INT8: vitd fp32, vitd int8, PyTorch dynamic-quantized
                                  (eager, and traced+frozen) and PyTorch FP32 trace+freeze, in turns;
                                  prints "vitd-fp32 X", "vitd-int8 Y", "torch-qint8-eager Z", ...

Debian's python3-torch 1.13 + python3-torchvision 0.14 (run with /usr/bin/python3).  Set
OMP_WAIT_POLICY=PASSIVE in the environment (the caller does): PyTorch's default OpenMP spinning
fights OpenBLAS's threads on 2 cores and makes it 2-5x slower.
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))


def build_model():
    torch.manual_seed(1234)
    m = torchvision.models.vit_b_16(weights=None)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() >= 2:  # Linear / conv weights: the usual fan-in scale
                fan_in = p[0].numel()
                p.normal_(0.0, 1.0 / fan_in ** 0.5)
            elif "ln" in name and name.endswith("weight"):
                p.uniform_(0.8, 1.2)
            else:  # biases, LayerNorm biases, class token, position embedding
                p.normal_(0.0, 0.02 if "embedding" in name or "class_token" in name else 0.05)
    return m.eval()


def load_model(out_dir):
    m = torchvision.models.vit_b_16(weights=None)
    m.load_state_dict(torch.load(os.path.join(out_dir, "vit_b_16.pth"), map_location="cpu"))
    return m.eval()


def cmd_make_model(a):
    os.makedirs(a.out_dir, exist_ok=True)
    pth = os.path.join(a.out_dir, "vit_b_16.pth")
    torch.save(build_model().state_dict(), pth)
    subprocess.check_call([sys.executable, os.path.join(HERE, "..", "models", "convert_torchvision.py"),
                           pth, "--out", os.path.join(a.out_dir, "model"), "--arch", "vit_b_16"])


def cmd_check(a):
    torch.set_num_threads(2)
    m = load_model(a.out_dir)
    x = torch.from_numpy(np.load(a.x))
    with torch.inference_mode():
        ref = m.double()(x.double()).numpy()
    got = np.load(a.logits).astype(np.float64)
    rel = float(np.abs(got - ref).max() / np.abs(ref).max())
    same = bool((got.argmax(1) == ref.argmax(1)).all())
    print(f"max |vitd - torch(float64)| / max|logit| = {rel:.3g}, top-1 equal: {same}")
    return 0 if rel < 1e-4 and same else 1


def cmd_time(a):
    torch.set_num_threads(a.threads)
    m = load_model(a.out_dir)
    x = torch.randn(a.batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        if a.mode == "trace-freeze":
            f = torch.jit.freeze(torch.jit.trace(m, x))
        elif a.mode == "optimize":
            f = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(m, x)))
        else:
            f = m
        for _ in range(a.warmup):
            f(x)
        t = time.perf_counter()
        for _ in range(a.iters):
            f(x)
        dt = time.perf_counter() - t
    print(f"{a.iters * a.batch / dt:.3f} images/s")
    print(f"torch {torch.__version__} {a.mode}, batch {a.batch}, {a.iters} iters, {a.threads} threads: "
          f"{dt / a.iters / a.batch * 1e3:.2f} ms/image")


def quantize_dynamic(m):
    """PyTorch's dynamic INT8 quantization of every nn.Linear (fbgemm on x86), and how many
    Linears it replaced.  torchvision's attention keeps its in_proj as a bare parameter and its
    out_proj as a NonDynamicallyQuantizableLinear, so only the MLP Linears and the head are
    quantized there."""
    q = torch.ao.quantization.quantize_dynamic(m, {torch.nn.Linear}, dtype=torch.qint8)
    n = sum(1 for mod in q.modules() if type(mod).__name__ == "Linear" and "quantized" in type(mod).__module__)
    return q, n


def rel_diff(got, ref):
    d = np.abs(got - ref)
    return float(d.max() / np.abs(ref).max()), float(d.mean() / np.abs(ref).mean())


def cmd_int8_check(a):
    torch.set_num_threads(2)
    m = load_model(a.out_dir)
    x = torch.from_numpy(np.load(a.x))
    with torch.inference_mode():
        r32 = m(x).numpy().astype(np.float64)
        q, nq = quantize_dynamic(m)
        r8 = q(x).numpy().astype(np.float64)
    o32, o8 = np.load(a.fp32).astype(np.float64), np.load(a.int8).astype(np.float64)
    B = x.shape[0]
    for name, got, ref in (("vitd int8 vs vitd fp32", o8, o32),
                           (f"PyTorch qint8 ({nq} Linears quantized) vs PyTorch fp32", r8, r32),
                           ("vitd fp32 vs PyTorch fp32", o32, r32)):
        mx, mean = rel_diff(got, ref)
        agree = int((got.argmax(1) == ref.argmax(1)).sum())
        print(f"{name}: max rel {mx:.4f}, mean rel {mean:.4f}, top-1 agree {agree}/{B}")


def duel(a, x, engines, vitd_args):
    """Warm the PyTorch engines up, then a.rounds rounds in turns: each engine a.iters forwards of
    x, then `vit bench` once per entry of vitd_args (name -> extra flags).  Best images/s of each
    name, and the detail line of each vit bench."""
    best = {name: 0.0 for name in list(engines) + list(vitd_args)}
    detail = {}
    for f in engines.values():
        for _ in range(a.warmup):
            f(x)
    for _ in range(a.rounds):
        for name, f in engines.items():
            t = time.perf_counter()
            for _ in range(a.iters):
                f(x)
            best[name] = max(best[name], a.iters * a.batch / (time.perf_counter() - t))
        for name, extra in vitd_args.items():
            out = subprocess.run([a.vit, "bench", "--model", os.path.join(a.out_dir, "model"),
                                  "--batch", str(a.batch), "--iters", str(a.iters), "--warmup", "1",
                                  "--threads", str(a.threads)] + extra,
                                 check=True, capture_output=True, text=True)
            best[name] = max(best[name], float(out.stdout.split()[0]))
            lines = out.stdout.splitlines()
            detail[name] = lines[1] if len(lines) > 1 else ""
    return best, detail


def cmd_duel_int8(a):
    torch.set_num_threads(a.threads)
    m = load_model(a.out_dir)
    x = torch.randn(a.batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        q, nq = quantize_dynamic(load_model(a.out_dir))
        engines = {"torch-qint8-eager": q}
        try:
            engines["torch-qint8-trace"] = torch.jit.freeze(torch.jit.trace(q, x))
        except Exception as e:  # noqa: BLE001 - report and go on with eager
            print(f"# torch-qint8-trace unavailable: {e}", file=sys.stderr)
        engines["torch-fp32-trace-freeze"] = torch.jit.freeze(torch.jit.trace(m, x))
        best, detail = duel(a, x, engines, {p: ["--precision", p.split("-")[1], "--device", "cpu"]
                                            for p in ("vitd-fp32", "vitd-int8")})
    for k in ("vitd-fp32", "vitd-int8", "torch-qint8-eager", "torch-qint8-trace", "torch-fp32-trace-freeze"):
        if k in best:
            print(f"{k} {best[k]:.3f}")
    print(f"torch-qint8-linears {nq}")
    for name, d in detail.items():
        print(f"{name}-detail {d}")


def cmd_duel(a):
    torch.set_num_threads(a.threads)
    m = load_model(a.out_dir)
    x = torch.randn(a.batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        engines = {"torch-trace-freeze": torch.jit.freeze(torch.jit.trace(m, x)),
                   "torch-optimize": torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(m, x)))}
        best, detail = duel(a, x, engines, {"vitd": []})
    for k in ("vitd", "torch-trace-freeze", "torch-optimize"):
        print(f"{k} {best[k]:.3f}")
    print(f"vitd-detail {detail['vitd']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("make-model"); p.add_argument("out_dir")
    p = sub.add_parser("check"); p.add_argument("out_dir"); p.add_argument("x"); p.add_argument("logits")
    p = sub.add_parser("time"); p.add_argument("out_dir")
    p.add_argument("--batch", type=int, required=True); p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2); p.add_argument("--threads", type=int, default=2)
    p.add_argument("--mode", choices=["trace-freeze", "eager", "optimize"], default="trace-freeze")
    p = sub.add_parser("duel"); p.add_argument("out_dir"); p.add_argument("--vit", required=True)
    p.add_argument("--batch", type=int, required=True); p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--iters", type=int, default=4); p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p = sub.add_parser("int8-check"); p.add_argument("out_dir"); p.add_argument("x")
    p.add_argument("fp32"); p.add_argument("int8")
    p = sub.add_parser("duel-int8"); p.add_argument("out_dir"); p.add_argument("--vit", required=True)
    p.add_argument("--batch", type=int, required=True); p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--iters", type=int, default=4); p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    return {"make-model": cmd_make_model, "check": cmd_check, "time": cmd_time,
            "duel": cmd_duel, "int8-check": cmd_int8_check, "duel-int8": cmd_duel_int8}[a.cmd](a) or 0


if __name__ == "__main__":
    sys.exit(main())
