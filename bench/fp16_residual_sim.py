#!/usr/bin/python3
"""fp16_residual_sim.py: what an FP16 residual stream costs in accuracy, simulated on the CPU.

Runs a torchvision-layout ViT (state dict .pth, e.g. bench/torch_vit_bench.py make-model's random
vit_b_16) three ways on the same input and prints each image's max|logit diff| / max|logit| against
the FP32 forward:
  fp32     plain FP32 (the CPU backend's numbers)
  res32    the CUDA backend's roundings with the FP32 residual stream it had before 2026-11-23:
           GEMM inputs, weights, biases and outputs rounded to FP16 (FP32 accumulation),
           LayerNorm outputs FP16, attention output FP16, residual FP32
  res16    the same with the FP16 residual stream (kernels/layernorm.cuh: res = fp16(res + y),
           the stored value normalized; patch + position embedding rounded to FP16)
It does not model the device's own arithmetic (tensor-core summation order, exp2f, the GELU
epilogue); it isolates what the residual's rounding adds.  tests/gpu/test_cuda_forward allows
1e-2 of max|logit|.
    /usr/bin/python3 bench/fp16_residual_sim.py [PTH] [--images N] [--seed S]
"""
import argparse
import math

import torch

F = torch.nn.functional


def r16(x):
    return x.half().float()


def forward(sd, x, mode, heads=12):
    """x (B, 3, S, S) FP32 -> logits (B, C); mode in fp32 / res32 / res16"""
    q = (lambda t: t) if mode == "fp32" else r16
    rres = r16 if mode == "res16" else (lambda t: t)
    W = {k: (q(v) if v.dim() >= 2 or k.endswith("bias") and "ln" not in k else v) for k, v in sd.items()}
    B = x.shape[0]
    pe = q(F.conv2d(q(x), W["conv_proj.weight"], stride=16) + W["conv_proj.bias"][None, :, None, None])
    pe = pe.flatten(2).transpose(1, 2)                                   # (B, Np, D)
    tok = sd["class_token"].expand(B, -1, -1)                            # FP32 as the engine's
    res = rres(torch.cat([tok, pe], 1) + sd["encoder.pos_embedding"])    # (B, T, D)
    D = res.shape[-1]
    dh = D // heads
    L = len({k.split(".")[2] for k in sd if k.startswith("encoder.layers.")})
    y = None
    for l in range(L):
        p = "encoder.layers.encoder_layer_%d." % l
        if y is not None:
            res = rres(res + y)
        h = q(F.layer_norm(res, (D,), sd[p + "ln_1.weight"], sd[p + "ln_1.bias"], 1e-6))
        qkv = q(h @ W[p + "self_attention.in_proj_weight"].T + W[p + "self_attention.in_proj_bias"])
        qq, kk, vv = qkv.split(D, -1)
        sh = lambda t: t.reshape(B, -1, heads, dh).transpose(1, 2)       # (B, H, T, dh)
        a = torch.softmax(sh(qq) @ sh(kk).transpose(-1, -2) / math.sqrt(dh), -1)
        att = q((a @ sh(vv)).transpose(1, 2).reshape(B, -1, D))
        y = q(att @ W[p + "self_attention.out_proj.weight"].T + W[p + "self_attention.out_proj.bias"])
        res = rres(res + y)
        h = q(F.layer_norm(res, (D,), sd[p + "ln_2.weight"], sd[p + "ln_2.bias"], 1e-6))
        m = q(F.gelu(h @ W[p + "mlp.0.weight"].T + W[p + "mlp.0.bias"]))
        y = q(m @ W[p + "mlp.3.weight"].T + W[p + "mlp.3.bias"])
    cls = res[:, 0] + y[:, 0]                                            # final_layernorm: FP32 sum
    f = F.layer_norm(cls, (D,), sd["encoder.ln.weight"], sd["encoder.ln.bias"], 1e-6)
    return f @ sd["heads.head.weight"].T + sd["heads.head.bias"]          # head FP32


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pth", nargs="?", default="/tmp/vitd-bench/vit_b_16/vit_b_16.pth")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    sd = {k: v.float() for k, v in torch.load(a.pth, map_location="cpu").items()}
    g = torch.Generator().manual_seed(a.seed)
    x = torch.randn(a.images, 3, 224, 224, generator=g)
    with torch.no_grad():
        ref = forward(sd, x, "fp32").double()
        print("# %s, %d images N(0,1) seed %d; max|logit diff| / max|logit| per image vs fp32"
              % (a.pth, a.images, a.seed))
        for mode in ("res32", "res16"):
            got = forward(sd, x, mode).double()
            rel = ((got - ref).abs().amax(1) / ref.abs().amax(1)).tolist()
            top1 = (got.argmax(1) == ref.argmax(1)).float().mean().item()
            print("%-6s worst %.3g  mean %.3g  top-1 agreement %.2f  per image %s"
                  % (mode, max(rel), sum(rel) / len(rel), top1, " ".join("%.2g" % r for r in rel)))


if __name__ == "__main__":
    main()
