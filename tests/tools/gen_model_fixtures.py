#!/usr/bin/python3
"""gen_model_fixtures.py: build the small random ViT fixtures under tests/fixtures/models/.

Each fixture is a complete model directory (config.json, model.safetensors, and where the
scheme has one a preprocessor_config.json or labels.txt) in one of the three naming schemes
(Hugging Face, timm, torchvision), plus ref/ with reference outputs of a plain float64 PyTorch
forward on a fixed input:
  input.npy     (2, 3, H, W) float32, already preprocessed
  logits.npy    (2, classes)
  features.npy  (2, feature_dim): the pooled representation that feeds the head
  attn_cls.npy  (2, num_patches): last layer CLS->patch softmax weights, averaged over heads
  rollout.npy   (2, num_patches): attention rollout (Abnar & Zuidema 2020), CLS row, patch cols
  weights.json  checksums of every tensor as the loader must lay it out (engine/model.h)
Every parameter is random (heads, LayerNorm weights and biases, cls/pos included).
tiny-tv is the real torchvision.models.VisionTransformer; its output is asserted equal to the
plain reference.  Run from the repository root:  /usr/bin/python3 tests/tools/gen_model_fixtures.py
Needs Debian's python3-torch and python3-torchvision; the tests themselves only read the output.
"""
import json
import math
import os
import shutil
import struct
import sys
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "models")


# ---- safetensors writer -------------------------------------------------------------------

def to_bytes(t, dtype):
    """t: float tensor already representable in dtype; returns little-endian bytes."""
    t = t.detach().contiguous().cpu()
    if dtype == "F32":
        return t.to(torch.float32).numpy().astype("<f4").tobytes()
    if dtype == "F16":
        return t.to(torch.float16).numpy().astype("<f2").tobytes()
    if dtype == "BF16":
        return t.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()
    raise ValueError(dtype)


def write_safetensors(path, tensors, dtype):
    """tensors: OrderedDict name -> torch tensor; all stored with one dtype."""
    header, blobs, off = OrderedDict(), [], 0
    for name, t in tensors.items():
        b = to_bytes(t, dtype)
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def round_to(t, dtype):
    """Values exactly representable in dtype, as float32."""
    return {"F32": t.float(), "F16": t.half().float(), "BF16": t.bfloat16().float()}[dtype]


# ---- canonical random parameters (engine/model.h layout) -----------------------------------

def make_params(g, D, L, M, C, P, T, classes, qkv_bias=True, cls=True, dist=False,
                norm=True, fc_norm=False, pre_logits=False, layer_scale=False, regs=0, head_in=None):
    def rn(*shape, std=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float32) * std

    p = OrderedDict()
    p["patch_w"] = rn(D, C, P, P, std=1.0 / math.sqrt(C * P * P))
    p["patch_b"] = rn(D, std=0.1)
    if cls:
        p["cls_token"] = rn(D, std=0.5)
    if dist:
        p["dist_token"] = rn(D, std=0.5)
    if regs:
        p["reg_tokens"] = rn(regs, D, std=0.5)
    p["pos_embed"] = rn(T, D, std=0.3)
    for i in range(L):
        pre = "layers.%d." % i
        p[pre + "ln1_w"] = 1.0 + rn(D, std=0.2)
        p[pre + "ln1_b"] = rn(D, std=0.1)
        p[pre + "qkv_w"] = rn(3 * D, D, std=1.6 / math.sqrt(D))
        p[pre + "qkv_b"] = rn(3 * D, std=0.2) if qkv_bias else torch.zeros(3 * D)
        p[pre + "proj_w"] = rn(D, D, std=1.0 / math.sqrt(D))
        p[pre + "proj_b"] = rn(D, std=0.1)
        p[pre + "ln2_w"] = 1.0 + rn(D, std=0.2)
        p[pre + "ln2_b"] = rn(D, std=0.1)
        p[pre + "fc1_w"] = rn(M, D, std=1.0 / math.sqrt(D))
        p[pre + "fc1_b"] = rn(M, std=0.1)
        p[pre + "fc2_w"] = rn(D, M, std=1.0 / math.sqrt(M))
        p[pre + "fc2_b"] = rn(D, std=0.1)
        if layer_scale:
            p[pre + "ls1"] = 0.5 + rn(D, std=0.3)
            p[pre + "ls2"] = 0.5 + rn(D, std=0.3)
    if norm:
        p["norm_w"] = 1.0 + rn(D, std=0.2)
        p["norm_b"] = rn(D, std=0.1)
    if fc_norm:
        p["fc_norm_w"] = 1.0 + rn(D, std=0.2)
        p["fc_norm_b"] = rn(D, std=0.1)
    if pre_logits:
        p["pre_logits_w"] = rn(D, D, std=1.0 / math.sqrt(D))
        p["pre_logits_b"] = rn(D, std=0.1)
    F_in = 2 * D if dist else D
    p["head_w"] = rn(classes, head_in or D, std=1.0 / math.sqrt(head_in or D))
    p["head_b"] = rn(classes, std=0.3)
    if dist:
        p["head_dist_w"] = rn(classes, D, std=1.0 / math.sqrt(D))
        p["head_dist_b"] = rn(classes, std=0.3)
    assert F_in
    return p


# ---- the plain reference forward (float64) -------------------------------------------------

def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def reference_forward(p, x, L, H, eps, pooling="cls", pos_cls_only=False):
    """x (B,C,Hi,Wi) -> dict of logits, features, attn_cls, rollout (float64)."""
    p = {k: v.double() for k, v in p.items()}
    x = x.double()
    B = x.shape[0]
    D, P = p["patch_w"].shape[0], p["patch_w"].shape[2]
    t = F.conv2d(x, p["patch_w"], p["patch_b"], stride=P)      # (B,D,gh,gw)
    t = t.flatten(2).transpose(1, 2)                           # (B,N,D)
    # timm VisionTransformer._pos_embed: prefix = [cls, (dist), registers]; with no_embed_class
    # the position embeddings cover the patches only and are added before the prefix is joined
    prefix = [p[k].view(1, 1, D) for k in ("cls_token", "dist_token") if k in p]
    if "reg_tokens" in p:
        prefix.append(p["reg_tokens"].view(1, -1, D))
    npre = sum(x.shape[1] for x in prefix)
    no_embed_class = p["pos_embed"].shape[0] == t.shape[1] and npre > 0
    if pos_cls_only:
        # transformers Dinov2WithRegistersEmbeddings: position embeddings on [cls; patches], then the
        # register tokens inserted after the class token, without any
        t = torch.cat([prefix[0].expand(B, -1, D), t], dim=1) + p["pos_embed"].unsqueeze(0)
        t = torch.cat([t[:, :1], prefix[1].expand(B, -1, D), t[:, 1:]], dim=1)
        prefix, no_embed_class = [], True
    elif no_embed_class:
        t = t + p["pos_embed"].unsqueeze(0)
    if npre:
        t = torch.cat([x.expand(B, -1, D) for x in prefix] + [t], dim=1)
    if not no_embed_class:
        t = t + p["pos_embed"].unsqueeze(0)                    # (B,T,D)
    T = t.shape[1]
    hd = D // H
    attns = []
    for i in range(L):
        q = lambda n: p["layers.%d.%s" % (i, n)]
        h = layer_norm(t, q("ln1_w"), q("ln1_b"), eps)
        qkv = h @ q("qkv_w").T + q("qkv_b")                    # (B,T,3D)
        qkv = qkv.view(B, T, 3, H, hd).permute(2, 0, 3, 1, 4)  # (3,B,H,T,hd)
        a = torch.softmax(qkv[0] @ qkv[1].transpose(-1, -2) / math.sqrt(hd), dim=-1)  # (B,H,T,T)
        attns.append(a.mean(1))                                # (B,T,T)
        o = (a @ qkv[2]).transpose(1, 2).reshape(B, T, D)
        ls1 = p.get("layers.%d.ls1" % i, 1.0)                 # timm LayerScale gamma (D)
        ls2 = p.get("layers.%d.ls2" % i, 1.0)
        t = t + ls1 * (o @ q("proj_w").T + q("proj_b"))
        h = layer_norm(t, q("ln2_w"), q("ln2_b"), eps)
        h = F.gelu(h @ q("fc1_w").T + q("fc1_b"))
        t = t + ls2 * (h @ q("fc2_w").T + q("fc2_b"))
    if "norm_w" in p:
        t = layer_norm(t, p["norm_w"], p["norm_b"], eps)
    if pooling == "mean":
        f = t[:, npre:].mean(1)
    elif pooling == "cls+mean":
        # transformers Dinov2ForImageClassification: cat([cls_token, patch_tokens.mean(dim=1)]),
        # patch tokens after the class token and the registers
        f = torch.cat([t[:, 0], t[:, npre:].mean(1)], dim=1)   # (B,2D)
    elif "dist_token" in p:
        f = torch.cat([t[:, 0], t[:, 1]], dim=1)               # (B,2D)
    else:
        f = t[:, 0]
    if "fc_norm_w" in p:
        f = layer_norm(f, p["fc_norm_w"], p["fc_norm_b"], eps)
    if "pre_logits_w" in p:
        f = torch.tanh(f @ p["pre_logits_w"].T + p["pre_logits_b"])
    if "dist_token" in p:
        logits = 0.5 * ((f[:, :D] @ p["head_w"].T + p["head_b"]) +
                        (f[:, D:] @ p["head_dist_w"].T + p["head_dist_b"]))
    else:
        logits = f @ p["head_w"].T + p["head_b"]
    # attention outputs
    attn_cls = attns[-1][:, 0, npre:]
    eye = torch.eye(T, dtype=torch.float64)
    roll = eye.expand(B, T, T)
    for a in attns:
        a2 = 0.5 * a + 0.5 * eye
        a2 = a2 / a2.sum(-1, keepdim=True)
        roll = a2 @ roll
    rollout = roll[:, 0, npre:]
    return {"logits": logits, "features": f, "attn_cls": attn_cls, "rollout": rollout}


def resample_pos_embed(pos, npre, old_grid, new_grid):
    """timm's resample_abs_pos_embed: bicubic, align_corners=False, antialias=False, float32."""
    D = pos.shape[1]
    prefix, grid = pos[:npre], pos[npre:]
    grid = grid.float().reshape(1, old_grid[0], old_grid[1], D).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new_grid, mode="bicubic", antialias=False, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], D)
    return torch.cat([prefix.float(), grid], dim=0)


# ---- what the loader must produce: checksums of canonical tensors --------------------------

def checksums(p, D):
    c = OrderedDict()
    q = OrderedDict(p)
    if "head_dist_w" in q:  # DeiT: one head on [cls; dist], halved weights, averaged bias
        q["head_w"] = torch.cat([q["head_w"], q.pop("head_dist_w")], dim=1) * 0.5
        q["head_b"] = (q["head_b"] + q.pop("head_dist_b")) * 0.5
    for k in [k for k in q if k.endswith(".ls1") or k.endswith(".ls2")]:
        # LayerScale is folded into attn.proj / mlp.fc2 at load: W[o, :] *= g[o], b[o] *= g[o]
        lin = k[:-3] + ("proj" if k.endswith("ls1") else "fc2")
        g_ = q.pop(k)
        q[lin + "_w"] = q[lin + "_w"] * g_.view(-1, 1)
        q[lin + "_b"] = q[lin + "_b"] * g_
    for k, v in q.items():
        a = v.detach().double().flatten().numpy()
        w = (np.arange(a.size) % 7) + 1.0
        c[k] = {"shape": list(v.shape), "sum": float(a.sum()), "wsum": float((a * w).sum()),
                "abssum": float(np.abs(a).sum()),
                "first": [float(z) for z in a[:4]], "last": float(a[-1])}
    return c


# ---- naming schemes -------------------------------------------------------------------------

def hf_tensors(p, L, D, qkv_bias, prefix="vit."):
    """prefix "deit." gives DeiTForImageClassificationWithTeacher names when p has dist_token"""
    t = OrderedDict()
    e = prefix + "embeddings."
    t[e + "cls_token"] = p["cls_token"].view(1, 1, D)
    if "dist_token" in p:
        t[e + "distillation_token"] = p["dist_token"].view(1, 1, D)
    t[e + "position_embeddings"] = p["pos_embed"].unsqueeze(0)
    t[e + "patch_embeddings.projection.weight"] = p["patch_w"]
    t[e + "patch_embeddings.projection.bias"] = p["patch_b"]
    for i in range(L):
        s, q = prefix + "encoder.layer.%d." % i, lambda n: p["layers.%d.%s" % (i, n)]
        t[s + "layernorm_before.weight"] = q("ln1_w")
        t[s + "layernorm_before.bias"] = q("ln1_b")
        for j, n in enumerate(("query", "key", "value")):
            t[s + "attention.attention.%s.weight" % n] = q("qkv_w")[j * D:(j + 1) * D]
            if qkv_bias:
                t[s + "attention.attention.%s.bias" % n] = q("qkv_b")[j * D:(j + 1) * D]
        t[s + "attention.output.dense.weight"] = q("proj_w")
        t[s + "attention.output.dense.bias"] = q("proj_b")
        t[s + "layernorm_after.weight"] = q("ln2_w")
        t[s + "layernorm_after.bias"] = q("ln2_b")
        t[s + "intermediate.dense.weight"] = q("fc1_w")
        t[s + "intermediate.dense.bias"] = q("fc1_b")
        t[s + "output.dense.weight"] = q("fc2_w")
        t[s + "output.dense.bias"] = q("fc2_b")
    t[prefix + "layernorm.weight"] = p["norm_w"]
    t[prefix + "layernorm.bias"] = p["norm_b"]
    if "head_dist_w" in p:
        t["cls_classifier.weight"] = p["head_w"]
        t["cls_classifier.bias"] = p["head_b"]
        t["distillation_classifier.weight"] = p["head_dist_w"]
        t["distillation_classifier.bias"] = p["head_dist_b"]
    else:
        t["classifier.weight"] = p["head_w"]
        t["classifier.bias"] = p["head_b"]
    return t


def hf_dinov2_tensors(p, L, D, prefix):
    """transformers Dinov2 / Dinov2WithRegisters ...ForImageClassification state dict names"""
    t = OrderedDict()
    e = prefix + "embeddings."
    t[e + "cls_token"] = p["cls_token"].view(1, 1, D)
    t[e + "mask_token"] = torch.zeros(1, D)                  # unused by classification
    if "reg_tokens" in p:
        t[e + "register_tokens"] = p["reg_tokens"].unsqueeze(0)
    t[e + "position_embeddings"] = p["pos_embed"].unsqueeze(0)
    t[e + "patch_embeddings.projection.weight"] = p["patch_w"]
    t[e + "patch_embeddings.projection.bias"] = p["patch_b"]
    for i in range(L):
        s, q = prefix + "encoder.layer.%d." % i, lambda n: p["layers.%d.%s" % (i, n)]
        t[s + "norm1.weight"] = q("ln1_w")
        t[s + "norm1.bias"] = q("ln1_b")
        for j, n in enumerate(("query", "key", "value")):
            t[s + "attention.attention.%s.weight" % n] = q("qkv_w")[j * D:(j + 1) * D]
            t[s + "attention.attention.%s.bias" % n] = q("qkv_b")[j * D:(j + 1) * D]
        t[s + "attention.output.dense.weight"] = q("proj_w")
        t[s + "attention.output.dense.bias"] = q("proj_b")
        t[s + "layer_scale1.lambda1"] = q("ls1")
        t[s + "norm2.weight"] = q("ln2_w")
        t[s + "norm2.bias"] = q("ln2_b")
        t[s + "mlp.fc1.weight"] = q("fc1_w")
        t[s + "mlp.fc1.bias"] = q("fc1_b")
        t[s + "mlp.fc2.weight"] = q("fc2_w")
        t[s + "mlp.fc2.bias"] = q("fc2_b")
        t[s + "layer_scale2.lambda1"] = q("ls2")
    t[prefix + "layernorm.weight"] = p["norm_w"]
    t[prefix + "layernorm.bias"] = p["norm_b"]
    t["classifier.weight"] = p["head_w"]
    t["classifier.bias"] = p["head_b"]
    return t


def timm_tensors(p, L, D, qkv_bias):
    t = OrderedDict()
    if "cls_token" in p:
        t["cls_token"] = p["cls_token"].view(1, 1, D)
    if "dist_token" in p:
        t["dist_token"] = p["dist_token"].view(1, 1, D)
    if "reg_tokens" in p:
        t["reg_token"] = p["reg_tokens"].unsqueeze(0)
    t["pos_embed"] = p["pos_embed"].unsqueeze(0)
    t["patch_embed.proj.weight"] = p["patch_w"]
    t["patch_embed.proj.bias"] = p["patch_b"]
    for i in range(L):
        s, q = "blocks.%d." % i, lambda n: p["layers.%d.%s" % (i, n)]
        t[s + "norm1.weight"] = q("ln1_w")
        t[s + "norm1.bias"] = q("ln1_b")
        t[s + "attn.qkv.weight"] = q("qkv_w")
        if qkv_bias:
            t[s + "attn.qkv.bias"] = q("qkv_b")
        t[s + "attn.proj.weight"] = q("proj_w")
        t[s + "attn.proj.bias"] = q("proj_b")
        t[s + "norm2.weight"] = q("ln2_w")
        t[s + "norm2.bias"] = q("ln2_b")
        t[s + "mlp.fc1.weight"] = q("fc1_w")
        t[s + "mlp.fc1.bias"] = q("fc1_b")
        t[s + "mlp.fc2.weight"] = q("fc2_w")
        t[s + "mlp.fc2.bias"] = q("fc2_b")
        if "layers.%d.ls1" % i in p:
            t[s + "ls1.gamma"] = q("ls1")
            t[s + "ls2.gamma"] = q("ls2")
    for a, b in (("norm", "norm"), ("fc_norm", "fc_norm"), ("pre_logits.fc", "pre_logits"),
                 ("head", "head"), ("head_dist", "head_dist")):
        if b + "_w" in p:
            t[a + ".weight"] = p[b + "_w"]
            t[a + ".bias"] = p[b + "_b"]
    return t


# ---- fixture writers --------------------------------------------------------------------------

def write_refs(d, sub, x, r, extra=None):
    os.makedirs(os.path.join(d, sub), exist_ok=True)
    np.save(os.path.join(d, sub, "input.npy"), x.float().numpy())
    for k in ("logits", "features", "attn_cls", "rollout"):
        np.save(os.path.join(d, sub, k + ".npy"), r[k].float().numpy())
    for k, v in (extra or {}).items():
        np.save(os.path.join(d, sub, k + ".npy"), v)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


LABELS = ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead", "electric ray",
          "stingray", "cock"]


def loaded_layout(p, npre, T, D, pos_rows=None):
    """the loader stores the position embeddings as (npre + patches, D): timm no_embed_class
    (pos_embed over the patches only) gets zero rows for the prefix tokens, HF Dinov2 with
    registers (pos_rows 1: the class token's row only) zero rows for the registers"""
    if pos_rows == 1 and npre > 1:
        q = OrderedDict(p)
        q["pos_embed"] = torch.cat([p["pos_embed"][:1], torch.zeros(npre - 1, D), p["pos_embed"][1:]], dim=0)
        return q
    if p["pos_embed"].shape[0] != T or npre == 0 or "reg_tokens" not in p:
        return p
    q = OrderedDict(p)
    q["pos_embed"] = torch.cat([torch.zeros(npre, D), p["pos_embed"]], dim=0)
    return q


def build(name, scheme, g, D=32, L=2, H=4, M=64, C=3, P=8, img=32, classes=5, dtype="F32",
          qkv_bias=True, eps=None, dist=False, pool="cls", pre_logits=False, extra_size=None,
          layer_scale=False, regs=0):
    d = os.path.join(OUT, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    ih, iw = (img, img) if isinstance(img, int) else img   # img: a size or (h, w)
    gh, gw = ih // P, iw // P
    npre = (2 if dist else 1) + regs
    T = gh * gw if regs else npre + gh * gw   # registers: timm no_embed_class
    if scheme == "hf-dinov2":
        T = 1 + gh * gw                         # transformers Dinov2: [cls; patches]
    if eps is None:
        eps = 1e-12 if scheme == "hf" else 1e-6
    p = make_params(g, D, L, M, C, P, T, classes, qkv_bias=qkv_bias, dist=dist,
                    norm=(pool != "mean"), fc_norm=(pool == "mean"), pre_logits=pre_logits,
                    layer_scale=layer_scale, regs=regs, head_in=2 * D if pool == "cls+mean" else None)
    p = OrderedDict((k, round_to(v, dtype)) for k, v in p.items())
    labels = LABELS[:classes]
    x = torch.randn(2, C, ih, iw, generator=g)
    ref = reference_forward(p, x, L, H, eps, pooling=pool, pos_cls_only=(scheme == "hf-dinov2" and regs > 0))
    meta = {"scheme": scheme, "dtype": dtype, "image_size": ih, "patch_size": P, "hidden": D,
            "layers": L, "heads": H, "mlp": M, "classes": classes, "eps": eps,
            "qkv_bias": qkv_bias, "pooling": pool, "distilled": dist, "pre_logits": pre_logits,
            "num_prefix_tokens": npre, "feature_dim": ref["features"].shape[1],
            "num_register_tokens": regs, "layer_scale": layer_scale, "channels": C,
            "labels": labels,
            "tensors": checksums(loaded_layout(p, npre, T, D, 1 if scheme == "hf-dinov2" else None), D)}
    if ih != iw:
        meta["image_hw"] = [ih, iw]
    img_json = img if isinstance(img, int) else [ih, iw]
    if scheme == "hf":
        tensors = hf_tensors(p, L, D, qkv_bias, prefix="deit." if dist else "vit.")
        write_json(os.path.join(d, "config.json"), OrderedDict([
            ("architectures", ["DeiTForImageClassificationWithTeacher" if dist else "ViTForImageClassification"]),
            ("model_type", "deit" if dist else "vit"),
            ("image_size", img_json), ("patch_size", P), ("num_channels", C), ("hidden_size", D),
            ("num_hidden_layers", L), ("num_attention_heads", H), ("intermediate_size", M),
            ("hidden_act", "gelu"), ("layer_norm_eps", eps), ("qkv_bias", qkv_bias),
            ("hidden_dropout_prob", 0.0), ("attention_probs_dropout_prob", 0.0),
            ("id2label", {str(i): l for i, l in enumerate(labels)}),
            ("label2id", {l: i for i, l in enumerate(labels)}),
            ("torch_dtype", {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[dtype])]))
        write_json(os.path.join(d, "preprocessor_config.json"), OrderedDict([
            ("do_resize", True), ("size", {"height": ih, "width": iw}), ("resample", 2),
            ("do_rescale", True), ("rescale_factor", 1 / 255), ("do_normalize", True),
            ("image_mean", [0.5] * C), ("image_std", [0.5] * C),
            ("image_processor_type", "ViTImageProcessor")]))
    elif scheme == "hf-dinov2":
        tensors = hf_dinov2_tensors(p, L, D, "dinov2_with_registers." if regs else "dinov2.")
        write_json(os.path.join(d, "config.json"), OrderedDict([
            ("architectures", ["Dinov2WithRegistersForImageClassification" if regs else "Dinov2ForImageClassification"]),
            ("model_type", "dinov2_with_registers" if regs else "dinov2"),
            ("image_size", img_json), ("patch_size", P), ("num_channels", C), ("hidden_size", D),
            ("num_hidden_layers", L), ("num_attention_heads", H), ("mlp_ratio", M // D),
            ("hidden_act", "gelu"), ("layer_norm_eps", eps), ("qkv_bias", qkv_bias),
            ("layerscale_value", 1.0), ("use_swiglu_ffn", False)] +
            ([("num_register_tokens", regs)] if regs else []) + [
            ("id2label", {str(i): l for i, l in enumerate(labels)}),
            ("label2id", {l: i for i, l in enumerate(labels)})]))
        write_json(os.path.join(d, "preprocessor_config.json"), OrderedDict([
            ("do_resize", True), ("size", {"shortest_edge": ih + ih // 7}), ("resample", 3),
            ("do_center_crop", True), ("crop_size", {"height": ih, "width": iw}),
            ("do_rescale", True), ("rescale_factor", 1 / 255), ("do_normalize", True),
            ("image_mean", [0.485, 0.456, 0.406]), ("image_std", [0.229, 0.224, 0.225]),
            ("image_processor_type", "BitImageProcessor")]))
    elif scheme == "timm":
        tensors = timm_tensors(p, L, D, qkv_bias)
        arch = ("deit_test_distilled_patch%d_%d" if dist else "vit_test_patch%d_%d") % (P, ih)
        margs = OrderedDict([("img_size", img_json), ("patch_size", P), ("embed_dim", D),
                             ("depth", L), ("num_heads", H), ("mlp_ratio", M / D),
                             ("qkv_bias", qkv_bias)])
        if pool == "mean":
            margs["global_pool"] = "avg"
        if pre_logits:
            margs["representation_size"] = D
        if C != 3:
            margs["in_chans"] = C
        if layer_scale:
            margs["init_values"] = 1e-5
        if regs:
            margs["reg_tokens"] = regs
            margs["no_embed_class"] = True
        write_json(os.path.join(d, "config.json"), OrderedDict([
            ("architecture", arch), ("num_classes", classes), ("num_features", D),
            ("global_pool", "avg" if pool == "mean" else "token"),
            ("model_args", margs), ("label_names", labels)] +
            ([("layer_norm_eps", eps)] if eps != 1e-6 else []) + [
            ("pretrained_cfg", OrderedDict([
                ("input_size", [C, ih, iw]), ("interpolation", "bicubic"), ("crop_pct", 0.875),
                ("crop_mode", "center"),
                ("mean", [0.485, 0.456, 0.406] if C == 3 else [0.1307]),
                ("std", [0.229, 0.224, 0.225] if C == 3 else [0.3081]), ("num_classes", classes),
                ("pool_size", None), ("first_conv", "patch_embed.proj"),
                ("classifier", ["head", "head_dist"] if dist else "head")]))]))
    else:
        raise ValueError(scheme)
    write_safetensors(os.path.join(d, "model.safetensors"), tensors, dtype)
    meta["num_params"] = sum(v.numel() for k, v in tensors.items() if not k.endswith("mask_token"))  # unused
    write_refs(d, "ref", x, ref)
    if extra_size:
        g2 = extra_size // P
        pos2 = resample_pos_embed(p["pos_embed"], npre, (gh, gw), (g2, g2))   # per axis
        p2 = OrderedDict(p)
        p2["pos_embed"] = pos2
        x2 = torch.randn(2, C, extra_size, extra_size, generator=g)
        ref2 = reference_forward(p2, x2, L, H, eps, pooling=pool)
        sub = "ref_s%d" % extra_size
        write_refs(d, sub, x2, ref2, {"pos_embed": pos2.numpy()})
        meta["extra_image_size"] = extra_size
        meta["extra_ref"] = sub
    write_json(os.path.join(d, "ref", "meta.json"), meta)
    return d


def build_torchvision(name, g, D=32, L=3, H=4, M=64, P=4, img=24, classes=7):
    d = os.path.join(OUT, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    m = torchvision.models.VisionTransformer(image_size=img, patch_size=P, num_layers=L,
                                             num_heads=H, hidden_dim=D, mlp_dim=M,
                                             num_classes=classes).eval()
    # randomise EVERY parameter (torchvision zero-initialises its head)
    fresh = make_params(g, D, L, M, 3, P, 1 + (img // P) ** 2, classes)
    sd = m.state_dict()
    tvmap = {"patch_w": "conv_proj.weight", "patch_b": "conv_proj.bias",
             "cls_token": "class_token", "pos_embed": "encoder.pos_embedding",
             "norm_w": "encoder.ln.weight", "norm_b": "encoder.ln.bias",
             "head_w": "heads.head.weight", "head_b": "heads.head.bias"}
    lmap = {"ln1_w": "ln_1.weight", "ln1_b": "ln_1.bias",
            "qkv_w": "self_attention.in_proj_weight", "qkv_b": "self_attention.in_proj_bias",
            "proj_w": "self_attention.out_proj.weight", "proj_b": "self_attention.out_proj.bias",
            "ln2_w": "ln_2.weight", "ln2_b": "ln_2.bias", "fc1_w": "mlp.0.weight",
            "fc1_b": "mlp.0.bias", "fc2_w": "mlp.3.weight", "fc2_b": "mlp.3.bias"}
    for i in range(L):
        for k, v in lmap.items():
            tvmap["layers.%d.%s" % (i, k)] = "encoder.layers.encoder_layer_%d.%s" % (i, v)
    assert set(tvmap.values()) == set(sd.keys()), set(sd.keys()) ^ set(tvmap.values())
    with torch.no_grad():
        for k, tv in tvmap.items():
            sd[tv].copy_(fresh[k].view_as(sd[tv]))
    m.load_state_dict(sd)
    for k, v in m.state_dict().items():
        assert v.abs().max() > 0, "parameter %s left at zero" % k
    p = OrderedDict((k, m.state_dict()[tv].detach().clone().reshape(fresh[k].shape))
                    for k, tv in tvmap.items())
    p = OrderedDict((k, p[k]) for k in fresh.keys())
    x = torch.randn(2, 3, img, img, generator=g)
    ref = reference_forward(p, x, L, H, 1e-6)
    with torch.no_grad():
        out = m(x).double()
    err = (out - ref["logits"]).abs().max().item() / ref["logits"].abs().max().item()
    assert err < 1e-5, "torchvision module differs from the reference forward: %g" % err
    print("%s: torchvision module vs reference rel err %.2e" % (name, err))
    # features (pre-head) from the module itself, as a second check
    feats = {}
    m.heads.register_forward_hook(lambda mod, inp, out: feats.setdefault("f", inp[0]))
    with torch.no_grad():
        m(x)
    assert (feats["f"].double() - ref["features"]).abs().max() < 1e-4
    tensors = OrderedDict((k, v.detach()) for k, v in m.state_dict().items())
    write_safetensors(os.path.join(d, "model.safetensors"), tensors, "F32")
    labels = LABELS[:classes]
    write_json(os.path.join(d, "config.json"), OrderedDict([
        ("architecture", "vit_test_tv"), ("source", "torchvision"), ("image_size", img),
        ("patch_size", P), ("num_heads", H), ("num_classes", classes),
        ("layer_norm_eps", 1e-6)]))
    with open(os.path.join(d, "labels.txt"), "w") as f:
        f.write("".join(l + "\n" for l in labels))
    write_refs(d, "ref", x, ref)
    meta = {"scheme": "torchvision", "dtype": "F32", "image_size": img, "patch_size": P,
            "hidden": D, "layers": L, "heads": H, "mlp": M, "classes": classes, "eps": 1e-6,
            "qkv_bias": True, "pooling": "cls", "distilled": False, "pre_logits": False,
            "num_prefix_tokens": 1, "feature_dim": D, "labels": labels,
            "tensors": checksums(p, D), "torchvision_rel_err": err,
            "num_params": sum(v.numel() for v in tensors.values())}
    write_json(os.path.join(d, "ref", "meta.json"), meta)
    return d


def main():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1234)
    os.makedirs(OUT, exist_ok=True)
    build("tiny-hf", "hf", g, L=3, classes=6)
    build("tiny-timm", "timm", g, L=3, classes=5, extra_size=48)
    build_torchvision("tiny-tv", g)
    build("tiny-timm-avgpool", "timm", g, classes=5, pool="mean")
    build("tiny-timm-prelogits", "timm", g, classes=5, pre_logits=True)
    build("tiny-deit-distilled", "timm", g, classes=6, dist=True)
    build("tiny-hf-noqkvbias", "hf", g, classes=5, qkv_bias=False)
    build("tiny-hf-f16", "hf", g, classes=5, dtype="F16")
    build("tiny-timm-bf16", "timm", g, classes=5, dtype="BF16")
    build("tiny-hf-deit-distilled", "hf", g, classes=4, dist=True)
    # issue 20: DeiT III / timm LayerScale, timm register tokens (vit_*_reg4_*: no_embed_class)
    build("tiny-timm-layerscale", "timm", g, classes=5, layer_scale=True)
    build("tiny-timm-reg4", "timm", g, classes=5, regs=4, layer_scale=True)
    # one input channel (an MNIST-like ViT: 28x28 gray, patch 4, LayerNorm eps 1e-5)
    build("tiny-timm-gray", "timm", g, C=1, P=4, img=28, classes=5, eps=1e-5)
    build("tiny-hf-gray", "hf", g, C=1, P=4, img=28, classes=4, eps=1e-5)
    # DINOv2-like (timm vit_*_patch14_reg4_dinov2 layout): patch 14, 4 registers, LayerScale, and the
    # linear head on [cls; mean of patch tokens] (2D wide)
    build("tiny-timm-dinov2", "timm", g, P=14, img=42, classes=5, regs=4, layer_scale=True, pool="cls+mean")
    # non-square inputs, 14-pixel patches: a 2x3 grid; ref_s56 runs at 56x56 (4x4), the position
    # embeddings resampled per axis as timm's resample_abs_pos_embed
    build("tiny-timm-rect", "timm", g, P=14, img=(28, 42), classes=5, extra_size=56)
    build("tiny-hf-rect", "hf", g, P=14, img=(28, 42), classes=4)
    # transformers Dinov2 naming: LayerScale lambda1, registers (Dinov2WithRegisters), cls+mean head
    build("tiny-hf-dinov2", "hf-dinov2", g, P=14, img=28, classes=4, layer_scale=True, pool="cls+mean", eps=1e-6)
    build("tiny-hf-dinov2-reg4", "hf-dinov2", g, P=14, img=42, classes=5, regs=4, layer_scale=True,
          pool="cls+mean", eps=1e-6)
    total = 0
    for root, _, files in os.walk(OUT):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    print("fixtures in %s: %.0f KB" % (os.path.normpath(OUT), total / 1024))
    return 0


if __name__ == "__main__":
    sys.exit(main())
