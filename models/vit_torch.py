"""vit_torch.py: a plain PyTorch ViT that loads a vitd model directory, the reference "what
PyTorch says" for accuracy checks (models/fashion-vit/eval_torch.py), the load-test peer
(loadtest/peer/) and the converters' tests.

    import sys; sys.path.insert(0, "models"); import vit_torch
    model, info = vit_torch.load_model_dir("models/fashion-vit")     # eval mode, float32
    tf = vit_torch.build_transform("models/fashion-vit")             # PIL image -> (3,H,W)
    logits = model(tf(PIL.Image.open(p).convert("RGB")).unsqueeze(0))

A model directory is config.json + model.safetensors (+ preprocessor_config.json), with tensors
in any of the three naming schemes vitd reads (Hugging Face `vit.*`, timm `blocks.*`,
torchvision `encoder.layers.*`); dims come from the tensor shapes, heads and LayerNorm eps from
config.json (or the architecture name).  Preprocessing follows preprocessor_config.json (HF
keys), else timm's pretrained_cfg, else resize to image_size bilinear with mean = std = 0.5,
using torchvision transforms on PIL images (PIL's antialiased resampling).

Needs torch, torchvision, numpy (Debian python3-torch, python3-torchvision, python3-numpy).
safetensors I/O is implemented here with numpy (the safetensors package is not in Debian).
"""
import json
import math
import os
import re
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---- safetensors (https://github.com/huggingface/safetensors: u64 LE header length, JSON
# header {name: {dtype, shape, data_offsets}}, then the raw little-endian data) -------------

_NP_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64,
              "I32": np.int32, "U8": np.uint8}


def read_safetensors(path):
    """-> (dict name -> float32 torch.Tensor, metadata dict)"""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: too short for safetensors")
    (hlen,) = struct.unpack("<Q", data[:8])
    if 8 + hlen > len(data):
        raise ValueError(f"{path}: header length {hlen} past the end of the file")
    header = json.loads(data[8:8 + hlen].decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + hlen
    out = {}
    for name, t in header.items():
        a, b = t["data_offsets"]
        raw = data[base + a:base + b]
        shape = tuple(t["shape"])
        if t["dtype"] == "BF16":
            u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = u.view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=np.dtype(_NP_DTYPES[t["dtype"]]).newbyteorder("<"))
        out[name] = torch.from_numpy(arr.astype(np.float32).reshape(shape).copy())
    return out, meta


def write_safetensors(path, tensors, metadata=None, dtype="F32"):
    """tensors: dict name -> torch.Tensor or numpy array, written as dtype F32 or F16
    (contiguous, in the dict's order)."""
    npd = {"F32": "<f4", "F16": "<f2"}[dtype]
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs, off = [], 0
    for name, t in tensors.items():
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().float().numpy()
        a = np.ascontiguousarray(t, dtype=npd)
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)   # keep the data 8-byte aligned, as the reference writer does
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


# ---- the model ---------------------------------------------------------------------------

class Block(nn.Module):
    """pre-norm transformer block: x + attn(ln1(x)), then x + mlp(ln2(x)); exact-erf GELU"""

    def __init__(self, d, heads, mlp, eps):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d, eps=eps)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d, eps=eps)
        self.fc1 = nn.Linear(d, mlp)
        self.fc2 = nn.Linear(mlp, d)

    def forward(self, x):  # x (B,T,D)
        B, T, D = x.shape
        hd = D // self.heads
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        a = ((q @ k.transpose(-1, -2)) * hd ** -0.5).softmax(-1)      # (B,H,T,T)
        self.last_attn = a if getattr(self, "keep_attn", False) else None
        x = x + self.proj((a @ v).transpose(1, 2).reshape(B, T, D))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class ViT(nn.Module):
    def __init__(self, image_size, patch, d, depth, heads, mlp, classes, eps, prefix_tokens=1,
                 pooling="cls", pre_logits=0, distilled=False):
        super().__init__()
        self.image_size, self.patch, self.d = image_size, patch, d
        self.prefix_tokens, self.pooling, self.distilled = prefix_tokens, pooling, distilled
        g = image_size // patch
        self.patch_embed = nn.Conv2d(3, d, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, d)) if distilled else None
        self.pos_embed = nn.Parameter(torch.zeros(1, g * g + prefix_tokens, d))
        self.blocks = nn.ModuleList([Block(d, heads, mlp, eps) for _ in range(depth)])
        self.norm = nn.LayerNorm(d, eps=eps) if pooling == "cls" else nn.Identity()
        self.fc_norm = nn.LayerNorm(d, eps=eps) if pooling == "mean" else nn.Identity()
        self.pre_logits = nn.Linear(d, pre_logits) if pre_logits else None
        feat = pre_logits or d
        self.head = nn.Linear(feat, classes)
        self.head_dist = nn.Linear(feat, classes) if distilled else None

    def features(self, x):  # x (B,3,H,W) -> pooled (B, feat)
        t = self.patch_embed(x).flatten(2).transpose(1, 2)            # (B, N, D)
        pre = [self.cls_token.expand(t.shape[0], -1, -1)]
        if self.dist_token is not None:
            pre.append(self.dist_token.expand(t.shape[0], -1, -1))
        x = torch.cat(pre + [t], 1) + self.pos_embed
        for b in self.blocks:
            x = b(x)
        x = self.norm(x)
        if self.pooling == "mean":
            f = self.fc_norm(x[:, self.prefix_tokens:].mean(1))
        else:
            f = x[:, 0]
        if self.pre_logits is not None:
            f = torch.tanh(self.pre_logits(f))
        return f, x

    def forward(self, x):  # x (B,3,H,W) -> logits (B, classes)
        f, tokens = self.features(x)
        if self.distilled:
            return 0.5 * (self.head(f) + self.head_dist(tokens[:, 1]))
        return self.head(f)


# ---- loading ---------------------------------------------------------------------------

_HEADS_BY_WIDTH = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16}


def _read_json(path):
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return None


def _to_internal(sd):
    """Rename any of the three naming schemes to ViT's own state_dict keys."""
    if "vit.embeddings.cls_token" in sd:
        scheme = "hf"
    elif "conv_proj.weight" in sd:
        scheme = "torchvision"
    elif "patch_embed.proj.weight" in sd:
        scheme = "timm"
    else:
        raise ValueError("unknown tensor naming (expected Hugging Face, timm or torchvision)")
    out = {}
    if scheme == "hf":
        p = "vit.embeddings."
        out["cls_token"] = sd[p + "cls_token"]
        out["pos_embed"] = sd[p + "position_embeddings"]
        out["patch_embed.weight"] = sd[p + "patch_embeddings.projection.weight"]
        out["patch_embed.bias"] = sd[p + "patch_embeddings.projection.bias"]
        depth = 1 + max(int(m.group(1)) for k in sd for m in [re.match(r"vit\.encoder\.layer\.(\d+)\.", k)] if m)
        for i in range(depth):
            s, d = f"vit.encoder.layer.{i}.", f"blocks.{i}."
            a = s + "attention.attention."
            for x in ("weight", "bias"):
                out[d + "ln1." + x] = sd[s + "layernorm_before." + x]
                out[d + "qkv." + x] = torch.cat([sd[a + n + "." + x] for n in ("query", "key", "value")])
                out[d + "proj." + x] = sd[s + "attention.output.dense." + x]
                out[d + "ln2." + x] = sd[s + "layernorm_after." + x]
                out[d + "fc1." + x] = sd[s + "intermediate.dense." + x]
                out[d + "fc2." + x] = sd[s + "output.dense." + x]
        for x in ("weight", "bias"):
            out["norm." + x] = sd["vit.layernorm." + x]
            out["head." + x] = sd["classifier." + x]
    elif scheme == "torchvision":
        out["cls_token"] = sd["class_token"]
        out["pos_embed"] = sd["encoder.pos_embedding"]
        out["patch_embed.weight"] = sd["conv_proj.weight"]
        out["patch_embed.bias"] = sd["conv_proj.bias"]
        depth = 1 + max(int(m.group(1)) for k in sd for m in [re.match(r"encoder\.layers\.encoder_layer_(\d+)\.", k)] if m)
        for i in range(depth):
            s, d = f"encoder.layers.encoder_layer_{i}.", f"blocks.{i}."
            for x in ("weight", "bias"):
                out[d + "ln1." + x] = sd[s + "ln_1." + x]
                out[d + "qkv." + x] = sd[s + "self_attention.in_proj_" + x]
                out[d + "proj." + x] = sd[s + "self_attention.out_proj." + x]
                out[d + "ln2." + x] = sd[s + "ln_2." + x]
                out[d + "fc1." + x] = sd[s + "mlp.0." + x]
                out[d + "fc2." + x] = sd[s + "mlp.3." + x]
        for x in ("weight", "bias"):
            out["norm." + x] = sd["encoder.ln." + x]
            out["head." + x] = sd["heads.head." + x]
            if "heads.pre_logits." + x in sd:
                out["pre_logits." + x] = sd["heads.pre_logits." + x]
    else:  # timm
        out["cls_token"] = sd["cls_token"]
        out["pos_embed"] = sd["pos_embed"]
        out["patch_embed.weight"] = sd["patch_embed.proj.weight"]
        out["patch_embed.bias"] = sd["patch_embed.proj.bias"]
        if "dist_token" in sd:
            out["dist_token"] = sd["dist_token"]
        depth = 1 + max(int(m.group(1)) for k in sd for m in [re.match(r"blocks\.(\d+)\.", k)] if m)
        for i in range(depth):
            s, d = f"blocks.{i}.", f"blocks.{i}."
            for x in ("weight", "bias"):
                out[d + "ln1." + x] = sd[s + "norm1." + x]
                out[d + "qkv." + x] = sd[s + "attn.qkv." + x]
                out[d + "proj." + x] = sd[s + "attn.proj." + x]
                out[d + "ln2." + x] = sd[s + "norm2." + x]
                out[d + "fc1." + x] = sd[s + "mlp.fc1." + x]
                out[d + "fc2." + x] = sd[s + "mlp.fc2." + x]
        for x in ("weight", "bias"):
            for src, dst in (("norm.", "norm."), ("fc_norm.", "fc_norm."), ("head.", "head."),
                             ("pre_logits.fc.", "pre_logits."), ("head_dist.", "head_dist.")):
                if src + x in sd:
                    out[dst + x] = sd[src + x]
    return scheme, depth, out


def load_model_dir(model_dir, dtype=torch.float32):
    """-> (ViT in eval mode, info dict: scheme, image_size, patch, labels, ...)"""
    cfg = _read_json(os.path.join(model_dir, "config.json")) or {}
    sd, _ = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    scheme, depth, w = _to_internal(sd)
    d, _, patch, _ = w["patch_embed.weight"].shape
    mlp = w["blocks.0.fc1.weight"].shape[0]
    classes = w["head.weight"].shape[0]
    prefix = 2 if "dist_token" in w else 1
    n_pos = w["pos_embed"].shape[1] - prefix
    image_size = int(round(math.sqrt(n_pos))) * patch
    arch = cfg.get("architecture") or (cfg.get("architectures") or [""])[0]
    heads = cfg.get("num_attention_heads") or cfg.get("num_heads")
    if not heads:
        m = re.search(r"(tiny|small|base|large|huge)", arch)
        heads = {"tiny": 3, "small": 6, "base": 12, "large": 16, "huge": 16}[m.group(1)] if m \
            else _HEADS_BY_WIDTH.get(d)
    if not heads:
        raise ValueError(f"{model_dir}: cannot tell the number of attention heads")
    eps = cfg.get("layer_norm_eps", 1e-12 if scheme == "hf" else 1e-6)
    pooling = "mean" if "fc_norm.weight" in w else "cls"
    pre = w["pre_logits.weight"].shape[0] if "pre_logits.weight" in w else 0
    model = ViT(image_size, patch, d, depth, heads, mlp, classes, eps, prefix, pooling, pre,
                distilled=prefix == 2)
    if pooling == "mean" and "norm.weight" in w:   # timm: norm is Identity when fc_norm is used
        del w["norm.weight"], w["norm.bias"]
    missing, unexpected = model.load_state_dict(w, strict=False)
    missing = [k for k in missing if not k.startswith(("norm.", "fc_norm."))]
    if missing or unexpected:
        raise ValueError(f"{model_dir}: missing {missing}, unexpected {unexpected}")
    labels = labels_of(cfg, classes)
    model.eval().to(dtype)
    return model, {"scheme": scheme, "image_size": image_size, "patch": patch, "hidden": d,
                   "depth": depth, "heads": heads, "mlp": mlp, "classes": classes,
                   "labels": labels, "architecture": arch, "eps": eps}


def labels_of(cfg, classes):
    if "id2label" in cfg:
        return [cfg["id2label"].get(str(i), str(i)) for i in range(classes)]
    if "label_names" in cfg:
        return list(cfg["label_names"])[:classes]
    return [str(i) for i in range(classes)]


def preprocess_params(model_dir, image_size=None):
    """The preprocessing a model directory asks for, as plain values."""
    cfg = _read_json(os.path.join(model_dir, "config.json")) or {}
    pre = _read_json(os.path.join(model_dir, "preprocessor_config.json"))
    S = image_size or cfg.get("image_size") or 224
    if pre is not None:
        size = pre.get("size", S)
        if isinstance(size, int):
            resize = size if pre.get("do_center_crop", True) else (size, size)
        elif "shortest_edge" in size:
            resize = size["shortest_edge"]
        else:
            resize = (size["height"], size["width"])
        crop = pre.get("crop_size", S)
        if isinstance(crop, dict):
            crop = (crop["height"], crop["width"])
        return {"do_resize": pre.get("do_resize", True), "resize": resize,
                "resample": pre.get("resample", 2), "do_center_crop": pre.get("do_center_crop", False),
                "crop": crop, "do_rescale": pre.get("do_rescale", True),
                "rescale_factor": pre.get("rescale_factor", 1 / 255),
                "do_normalize": pre.get("do_normalize", True),
                "mean": pre.get("image_mean", [0.5] * 3), "std": pre.get("image_std", [0.5] * 3)}
    pc = cfg.get("pretrained_cfg")
    if pc is not None:   # timm: Resize(floor(H / crop_pct)), CenterCrop(H)
        H = pc.get("input_size", [3, S, S])[1]
        crop_pct = pc.get("crop_pct", 0.875)
        return {"do_resize": True, "resize": int(math.floor(H / crop_pct)),
                "resample": 3 if pc.get("interpolation", "bicubic") == "bicubic" else 2,
                "do_center_crop": True, "crop": H, "do_rescale": True, "rescale_factor": 1 / 255,
                "do_normalize": True, "mean": pc.get("mean", [0.485, 0.456, 0.406]),
                "std": pc.get("std", [0.229, 0.224, 0.225])}
    return {"do_resize": True, "resize": (S, S), "resample": 2, "do_center_crop": False, "crop": S,
            "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
            "mean": [0.5] * 3, "std": [0.5] * 3}


def build_transform(model_dir, image_size=None):
    """torchvision transform: PIL RGB image -> float tensor (3, H, W), as the directory says."""
    import torchvision.transforms as T
    from torchvision.transforms import InterpolationMode
    p = preprocess_params(model_dir, image_size)
    interp = {0: InterpolationMode.NEAREST, 2: InterpolationMode.BILINEAR,
              3: InterpolationMode.BICUBIC}[p["resample"]]
    ts = []
    if p["do_resize"]:
        ts.append(T.Resize(p["resize"], interpolation=interp))
    if p["do_center_crop"]:
        ts.append(T.CenterCrop(p["crop"]))
    ts.append(T.PILToTensor())
    scale = p["rescale_factor"] if p["do_rescale"] else 1.0
    ts.append(T.Lambda(lambda x: x.float() * scale))
    if p["do_normalize"]:
        ts.append(T.Normalize(p["mean"], p["std"]))
    return T.Compose(ts)
