#!/usr/bin/python3
"""train.py: train the shipped default model, a small ViT on Fashion-MNIST (TRAIN split only).

The model is a standard ViT at 224x224 input with 32x32 patches (a 7x7 grid), exported in
Hugging Face layout (config.json + model.safetensors + preprocessor_config.json), so the
serving path is: PNG 28x28 gray -> RGB -> bilinear resize to 224 -> rescale/normalize -> ViT.

Training does exactly that function, cheaply: bilinear 8x upsampling (PIL / align_corners=False
semantics, edge-clamped) followed by a 32x32 stride-32 convolution is one linear map per patch
that reads a 6x6 window (stride 4, replicate padding 1) of the 28x28 image.  We keep the 32x32
filter as the parameter and fold the interpolation into it on the fly (W6 = U^T W32 U), so the
exported weights are the real 224/32 patch embedding and the transformer sees identical
tokens.  The three channels are identical (gray replicated), so the exported 3-channel filter is
W32/3 on each.  A self-check at export runs the exported model on 224x224 upsampled inputs and
compares with the training path.

Reproducible: fixed seed, deterministic batch order.  Resumable: a checkpoint (weights,
optimizer, RNG state, step) is written every --ckpt-every steps and at each epoch end; run the
same command again to continue.  Needs Debian's python3-torch, python3-numpy and
dataset-fashion-mnist.  Typical: OMP_WAIT_POLICY=PASSIVE nice -n 5 models/fashion-vit/train.py
"""
import argparse
import gzip
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from vit_torch import Block, write_safetensors  # noqa: E402  (models/vit_torch.py: same block as the reference)

DATA = "/usr/share/datasets/fashion-mnist"
LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
          "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    nd = magic & 0xff
    dims = struct.unpack(">" + "I" * nd, data[4:4 + 4 * nd])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)


def interp_matrix(scale=8, patch=32, window=6):
    """U (patch, window): bilinear weights (align_corners=False, PIL's upsampling) of output
    pixel p inside a patch on the input pixels at offsets -1..window-2 from the patch origin."""
    U = torch.zeros(patch, window, dtype=torch.float64)
    for p in range(patch):
        src = (p + 0.5) / scale - 0.5
        f = math.floor(src)
        t = src - f
        U[p, f + 1] += 1 - t
        U[p, f + 2] += t
    return U


class FashionViT(nn.Module):
    def __init__(self, d=128, depth=6, heads=4, mlp=512, patch=32, image=224, eps=1e-6, classes=10):
        super().__init__()
        self.d, self.patch, self.image = d, patch, image
        self.grid = image // patch
        self.patch_w = nn.Parameter(torch.randn(d, patch, patch) * (1.0 / patch))  # 1-channel
        self.patch_b = nn.Parameter(torch.zeros(d))
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.randn(1, self.grid * self.grid + 1, d) * 0.02)
        self.blocks = nn.ModuleList([Block(d, heads, mlp, eps) for _ in range(depth)])
        self.norm = nn.LayerNorm(d, eps=eps)
        self.head = nn.Linear(d, classes)
        self.register_buffer("U", interp_matrix(image // 28, patch, 6).float(), persistent=False)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def tokens_from_28(self, x):  # x (B,1,28,28) normalized -> (B, 49, D)
        w6 = torch.einsum("pa,dpq,qb->dab", self.U, self.patch_w, self.U).unsqueeze(1)
        x = F.pad(x, (1, 1, 1, 1), mode="replicate")
        return F.conv2d(x, w6, self.patch_b, stride=4).flatten(2).transpose(1, 2)

    def tokens_from_224(self, x):  # x (B,3,224,224) -> (B,49,D), the exported conv
        w = (self.patch_w / 3).unsqueeze(1).expand(-1, 3, -1, -1)
        return F.conv2d(x, w, self.patch_b, stride=self.patch).flatten(2).transpose(1, 2)

    def forward_tokens(self, t):
        x = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], 1) + self.pos
        for b in self.blocks:
            x = b(x)
        return self.head(self.norm(x)[:, 0])

    def forward(self, x28):
        return self.forward_tokens(self.tokens_from_28(x28))


def augment(x, gen, shift=2):
    """x (B,28,28) uint8 -> float (B,1,28,28) in [0,1]: random h-flip, random shift +-shift px."""
    B = x.shape[0]
    x = x.float().div_(255.0)
    flip = torch.rand(B, generator=gen) < 0.5
    x = torch.where(flip[:, None, None], x.flip(-1), x)
    if shift == 0:
        return x.unsqueeze(1)
    xp = F.pad(x, (shift, shift, shift, shift))
    dx = torch.randint(0, 2 * shift + 1, (B,), generator=gen)
    dy = torch.randint(0, 2 * shift + 1, (B,), generator=gen)
    out = torch.stack([xp[i, dy[i]:dy[i] + 28, dx[i]:dx[i] + 28] for i in range(B)])
    return out.unsqueeze(1)


def export(model, outdir, mean, std, meta):
    """Write the Hugging Face model directory."""
    m = model
    D = m.d
    t = {
        "vit.embeddings.cls_token": m.cls,
        "vit.embeddings.position_embeddings": m.pos,
        "vit.embeddings.patch_embeddings.projection.weight": (m.patch_w / 3).unsqueeze(1).repeat(1, 3, 1, 1),
        "vit.embeddings.patch_embeddings.projection.bias": m.patch_b,
    }
    for i, b in enumerate(m.blocks):
        p = f"vit.encoder.layer.{i}."
        t[p + "layernorm_before.weight"] = b.ln1.weight
        t[p + "layernorm_before.bias"] = b.ln1.bias
        for j, n in enumerate(["query", "key", "value"]):
            t[p + f"attention.attention.{n}.weight"] = b.qkv.weight[j * D:(j + 1) * D]
            t[p + f"attention.attention.{n}.bias"] = b.qkv.bias[j * D:(j + 1) * D]
        t[p + "attention.output.dense.weight"] = b.proj.weight
        t[p + "attention.output.dense.bias"] = b.proj.bias
        t[p + "layernorm_after.weight"] = b.ln2.weight
        t[p + "layernorm_after.bias"] = b.ln2.bias
        t[p + "intermediate.dense.weight"] = b.fc1.weight
        t[p + "intermediate.dense.bias"] = b.fc1.bias
        t[p + "output.dense.weight"] = b.fc2.weight
        t[p + "output.dense.bias"] = b.fc2.bias
    t["vit.layernorm.weight"] = m.norm.weight
    t["vit.layernorm.bias"] = m.norm.bias
    t["classifier.weight"] = m.head.weight
    t["classifier.bias"] = m.head.bias
    os.makedirs(outdir, exist_ok=True)
    write_safetensors(os.path.join(outdir, "model.safetensors"), t,
                      {"format": "pt", "source": "models/fashion-vit/train.py"})
    cfg = {
        "architectures": ["ViTForImageClassification"],
        "model_type": "vit",
        "image_size": m.image,
        "patch_size": m.patch,
        "num_channels": 3,
        "hidden_size": D,
        "num_hidden_layers": len(m.blocks),
        "num_attention_heads": m.blocks[0].heads,
        "intermediate_size": m.blocks[0].fc1.out_features,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "layer_norm_eps": m.norm.eps,
        "qkv_bias": True,
        "id2label": {str(i): l for i, l in enumerate(LABELS)},
        "label2id": {l: i for i, l in enumerate(LABELS)},
        "vitd_training": meta,
    }
    pre = {
        "image_processor_type": "ViTImageProcessor",
        "do_resize": True,
        "size": {"height": m.image, "width": m.image},
        "resample": 2,
        "do_center_crop": False,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [mean] * 3,
        "image_std": [std] * 3,
    }
    for name, obj in (("config.json", cfg), ("preprocessor_config.json", pre)):
        with open(os.path.join(outdir, name + ".tmp"), "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
        os.replace(os.path.join(outdir, name + ".tmp"), os.path.join(outdir, name))


def read_model_dir(path):
    """state_dict for FashionViT from an exported model directory (the inverse of export)."""
    with open(os.path.join(path, "model.safetensors"), "rb") as f:
        n, = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        base = 8 + n
        t = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            a, b = info["data_offsets"]
            f.seek(base + a)
            t[name] = torch.from_numpy(np.frombuffer(f.read(b - a), dtype="<f4").copy()
                                       .reshape(info["shape"]))
    sd = {"patch_w": t["vit.embeddings.patch_embeddings.projection.weight"][:, 0] * 3,
          "patch_b": t["vit.embeddings.patch_embeddings.projection.bias"],
          "cls": t["vit.embeddings.cls_token"], "pos": t["vit.embeddings.position_embeddings"],
          "norm.weight": t["vit.layernorm.weight"], "norm.bias": t["vit.layernorm.bias"],
          "head.weight": t["classifier.weight"], "head.bias": t["classifier.bias"]}
    i = 0
    while f"vit.encoder.layer.{i}.layernorm_before.weight" in t:
        p, q = f"vit.encoder.layer.{i}.", f"blocks.{i}."
        pairs = {"ln1": "layernorm_before", "proj": "attention.output.dense", "ln2": "layernorm_after",
                 "fc1": "intermediate.dense", "fc2": "output.dense"}
        for ours, hf in pairs.items():
            for w in ("weight", "bias"):
                sd[q + ours + "." + w] = t[p + hf + "." + w]
        for w in ("weight", "bias"):
            sd[q + "qkv." + w] = torch.cat([t[p + f"attention.attention.{n}.{w}"]
                                            for n in ("query", "key", "value")])
        i += 1
    return sd


def self_check(model, x_u8, mean, std):
    """The 28x28 training path must equal the exported 224x224 path on upsampled images."""
    model.eval()
    with torch.no_grad():
        x = x_u8[:8].float().div(255.0).unsqueeze(1)
        a = model((x - mean) / std)
        x224 = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
        b = model.forward_tokens(model.tokens_from_224(((x224 - mean) / std).expand(-1, 3, -1, -1)))
    model.train()
    return (a - b).abs().max().item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--warmup-epochs", type=float, default=1.0)
    ap.add_argument("--smoothing", type=float, default=0.1)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--mlp", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shift", type=int, default=2, help="random shift augmentation, pixels")
    ap.add_argument("--init-from", default=None,
                    help="start from these weights (a checkpoint .pt or an exported model "
                         "directory such as models/fashion-vit) with a new optimizer and "
                         "schedule: a further phase of training")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ckpt", default=None, help="default: OUT/ckpt/last.pt")
    ap.add_argument("--ckpt-every", type=int, default=100, help="steps between checkpoints")
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--export-every-epoch", action="store_true", default=True)
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (timing)")
    args = ap.parse_args()
    if args.ckpt is None:
        args.ckpt = os.path.join(args.out, "ckpt", "last.pt")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    log = open(os.path.join(args.out, "train.log"), "a")

    def say(msg):
        line = time.strftime("%Y-%m-%dT%H:%M:%S ") + msg
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    xtr = torch.from_numpy(read_idx(f"{DATA}/train-images-idx3-ubyte.gz").copy())
    ytr = torch.from_numpy(read_idx(f"{DATA}/train-labels-idx1-ubyte.gz").astype(np.int64))
    mean = float(xtr.float().div(255).mean())
    std = float(xtr.float().div(255).std())
    N = xtr.shape[0]
    steps_per_epoch = N // args.batch
    total = steps_per_epoch * args.epochs
    warm = int(args.warmup_epochs * steps_per_epoch)

    model = FashionViT(args.width, args.depth, args.heads, args.mlp)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and n not in ("cls", "pos")]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and n not in ("cls", "pos"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    step = 0
    if os.path.exists(args.ckpt):
        ck = torch.load(args.ckpt)
        arch = ("width", "depth", "heads", "mlp", "batch", "seed")
        if any(ck["args"][k] != getattr(args, k) for k in arch):
            sys.exit(f"checkpoint {args.ckpt} is from a different run ({ck['args']}); move it away")
        if ck["args"]["epochs"] != args.epochs:
            # the cosine schedule is re-planned for the new length from the current step on
            say(f"schedule changed: {ck['args']['epochs']} -> {args.epochs} epochs at step {ck['step']}")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        gen.set_state(ck["gen"])
        step = ck["step"]
        say(f"resumed from {args.ckpt} at step {step}")
    elif args.init_from:
        if os.path.isdir(args.init_from):
            model.load_state_dict(read_model_dir(args.init_from))
        else:
            model.load_state_dict(torch.load(args.init_from)["model"])
        say(f"start from the weights of {args.init_from}: {vars(args)}")
    else:
        say(f"start: {vars(args)} mean={mean:.5f} std={std:.5f} params="
            f"{sum(p.numel() for p in model.parameters())}")

    def lr_at(s):
        if s < warm:
            return args.lr * (s + 1) / warm
        return 0.5 * args.lr * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm)))

    def save_ckpt():
        os.makedirs(os.path.dirname(args.ckpt), exist_ok=True)
        tmp = args.ckpt + ".tmp"
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
                    "step": step, "args": vars(args)}, tmp)
        os.replace(tmp, args.ckpt)

    model.train()
    t0 = time.time()
    run_loss = run_acc = 0.0
    run_n = 0
    while step < total:
        epoch = step // steps_per_epoch
        # the epoch's permutation depends only on (seed, epoch): resuming mid-epoch is exact
        perm = torch.randperm(N, generator=torch.Generator().manual_seed(args.seed * 1000 + epoch))
        i = step % steps_per_epoch
        idx = perm[i * args.batch:(i + 1) * args.batch]
        x = (augment(xtr[idx], gen, args.shift) - mean) / std
        y = ytr[idx]
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=args.smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        run_loss += loss.item() * len(y)
        run_acc += (logits.argmax(1) == y).sum().item()
        run_n += len(y)
        if step % 50 == 0:
            say(f"epoch {epoch + 1}/{args.epochs} step {step}/{total} lr {lr_at(step):.2e} "
                f"loss {run_loss / run_n:.4f} train_acc {100 * run_acc / run_n:.2f}% "
                f"{(time.time() - t0) / 50:.3f}s/step")
            t0 = time.time()
            run_loss = run_acc = 0.0
            run_n = 0
        if step % args.ckpt_every == 0:
            save_ckpt()
        if step % steps_per_epoch == 0 or step == total:
            save_ckpt()
            diff = self_check(model, xtr, mean, std)
            meta = {"epochs_done": step / steps_per_epoch, "epochs": args.epochs, "step": step,
                    "seed": args.seed, "lr": args.lr, "shift": args.shift,
                    "init_from": args.init_from,
                    # 3 digits: cJSON (vit finetune's config copy) keeps 15 significant digits
                    "self_check_maxdiff": float(f"{diff:.3g}")}
            export(model, args.out, mean, std, meta)
            say(f"exported after epoch {step / steps_per_epoch:.2f} to {args.out} "
                f"(28-vs-224 path max |dlogit| = {diff:.2e})")
        if args.max_steps and step >= args.max_steps:
            break
    say("done" if step >= total else f"stopped at step {step}")


if __name__ == "__main__":
    main()
