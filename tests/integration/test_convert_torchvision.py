"""test_convert_torchvision.py: models/convert_torchvision.py on a tiny torchvision
VisionTransformer with random weights: the directory it writes (config, safetensors names and
shapes, preprocessing = torchvision's IMAGENET1K_V1 transforms), logits through
models/vit_torch.py and, when `vit run` exists, through our engine, against torchvision's own
forward.  Runs only where torch and torchvision import (SKIP otherwise: `make test` needs no torch).
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("VITD_BUILD", "build")
VIT = os.path.join(ROOT, BUILD, "vit")
passed = failed = skipped = 0


def check(name, ok, detail=""):
    global passed, failed
    print(f"{'PASS' if ok else 'FAIL'} {name}{' ' + detail if detail else ''}", flush=True)
    if ok:
        passed += 1
    else:
        failed += 1


def skip(name, why):
    global skipped
    print(f"SKIP {name}: {why}", flush=True)
    skipped += 1


TMP = []


def summary():
    import shutil
    for t in TMP:
        shutil.rmtree(t, ignore_errors=True)
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    sys.exit(1 if failed else 0)


try:
    import numpy as np
    import torch
    from torchvision.models import ViT_B_16_Weights
    from torchvision.models.vision_transformer import VisionTransformer
except Exception as e:  # no torch here: nothing to convert
    skip("convert_torchvision", f"torch/torchvision not importable ({type(e).__name__})")
    summary()

sys.path.insert(0, os.path.join(ROOT, "models"))
import vit_torch  # noqa: E402
from PIL import Image  # noqa: E402

torch.manual_seed(0)
torch.set_num_threads(1)
tv = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
                       mlp_dim=32, num_classes=7)
with torch.no_grad():
    for p in tv.parameters():           # torchvision zero-initialises its head: randomise all
        p.normal_(0, 0.3)
tv.eval()
tmp = tempfile.mkdtemp(prefix="vitd-convert-")
TMP.append(tmp)
pth = os.path.join(tmp, "tiny.pth")
torch.save(tv.state_dict(), pth)
labels = os.path.join(tmp, "labels.txt")
with open(labels, "w") as f:
    f.write("\n".join(f"class {i}" for i in range(7)) + "\n")
conv = [sys.executable, os.path.join(ROOT, "models", "convert_torchvision.py")]
out = os.path.join(tmp, "tiny")
r = subprocess.run(conv + [pth, "--out", out, "--arch", "tiny", "--heads", "2", "--labels", labels],
                   capture_output=True, text=True)
check("convert exits 0", r.returncode == 0, r.stderr.strip()[-300:])
if r.returncode:
    summary()

cfg = json.load(open(os.path.join(out, "config.json")))
want = {"architecture": "tiny", "image_size": 32, "patch_size": 8, "hidden_size": 16,
        "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32,
        "layer_norm_eps": 1e-6, "hidden_act": "gelu", "num_channels": 3}
bad = {k: (cfg.get(k), v) for k, v in want.items() if cfg.get(k) != v}
check("config.json dims", not bad, str(bad) if bad else "")
check("config.json labels", cfg["id2label"] == {str(i): f"class {i}" for i in range(7)})

# safetensors: every float tensor of the state dict, same name, shape and bytes
with open(os.path.join(out, "model.safetensors"), "rb") as f:
    raw = f.read()
(hlen,) = struct.unpack("<Q", raw[:8])
hdr = json.loads(raw[8:8 + hlen])
hdr.pop("__metadata__", None)
sd = tv.state_dict()
names_ok = set(hdr) == set(sd)
check("safetensors names = torchvision state dict", names_ok,
      "" if names_ok else str(set(hdr) ^ set(sd)))
offs = sorted((v["data_offsets"][0], v["data_offsets"][1]) for v in hdr.values())
contiguous = offs[0][0] == 0 and all(a[1] == b[0] for a, b in zip(offs, offs[1:])) \
    and 8 + hlen + offs[-1][1] == len(raw) and (8 + hlen) % 8 == 0
check("safetensors offsets contiguous, aligned, cover the file", contiguous)
st, _ = vit_torch.read_safetensors(os.path.join(out, "model.safetensors"))
maxd = max((st[k] - sd[k].float()).abs().max().item() for k in sd)
check("safetensors values round-trip", maxd == 0.0 and all(hdr[k]["shape"] == list(sd[k].shape) for k in sd),
      f"maxdiff={maxd}")

# logits: torchvision vs the converted directory in models/vit_torch.py
x = torch.randn(3, 3, 32, 32)
with torch.no_grad():
    ref = tv(x)
    model, info = vit_torch.load_model_dir(out)
    got = model(x)
d = (got - ref).abs().max().item() / ref.abs().max().item()
check("vit_torch logits vs torchvision", d < 1e-5, f"maxdiff_rel={d:.2e} tol=1e-5")

# the same through our engine, when `vit run` is there
help_r = subprocess.run([VIT, "run", "--help"], capture_output=True, text=True) if os.path.exists(VIT) else None
if help_r is None or "unknown command" in (help_r.stderr + help_r.stdout):
    skip("vit run logits vs torchvision", f"{VIT} has no run command yet")
else:
    xin = os.path.join(tmp, "x.npy")
    lo = os.path.join(tmp, "logits.npy")
    np.save(xin, x.numpy().astype(np.float32))
    r = subprocess.run([VIT, "run", "--model", out, "--input", xin, "--output", lo, "--threads", "1"],
                       capture_output=True, text=True)
    if r.returncode:
        check("vit run on the converted directory", False, r.stderr.strip()[-300:])
    else:
        ours = np.load(lo)
        d = float(np.abs(ours - ref.numpy()).max() / np.abs(ref.numpy()).max())
        check("vit run logits vs torchvision", ours.shape == (3, 7) and d < 1e-4,
              f"maxdiff_rel={d:.2e} tol=1e-4")

# f16 output
out16 = os.path.join(tmp, "tiny16")
r = subprocess.run(conv + [pth, "--out", out16, "--arch", "tiny", "--heads", "2", "--dtype", "f16"],
                   capture_output=True, text=True)
if r.returncode == 0:
    with torch.no_grad():
        m16, _ = vit_torch.load_model_dir(out16)
        g16 = m16(x)
    d = (g16 - ref).abs().max().item() / ref.abs().max().item()
    raw16 = open(os.path.join(out16, "model.safetensors"), "rb").read()
    h16 = json.loads(raw16[8:8 + struct.unpack("<Q", raw16[:8])[0]])
    h16.pop("__metadata__", None)
    check("f16 directory: F16 tensors, logits close",
          all(v["dtype"] == "F16" for v in h16.values()) and d < 2e-2, f"maxdiff_rel={d:.2e} tol=2e-2")
else:
    check("f16 convert exits 0", False, r.stderr[-300:])

# the vit_b_16 IMAGENET1K_V1 preset: preprocessing identical to torchvision's own transforms
outb = os.path.join(tmp, "b16")
r = subprocess.run(conv + [pth, "--out", outb, "--arch", "vit_b_16", "--heads", "2", "--imagenet-labels"],
                   capture_output=True, text=True)
check("vit_b_16 preset with --imagenet-labels refused for a 7-class head", r.returncode != 0,
      r.stderr.strip()[-120:])
r = subprocess.run(conv + [pth, "--out", outb, "--arch", "vit_b_16", "--heads", "2"],
                   capture_output=True, text=True)
pre = json.load(open(os.path.join(outb, "preprocessor_config.json"))) if r.returncode == 0 else {}
check("vit_b_16 preset: Resize(256) bilinear, CenterCrop(224), ImageNet mean/std",
      pre.get("size") == {"shortest_edge": 256} and pre.get("resample") == 2
      and pre.get("crop_size") == {"height": 224, "width": 224} and pre.get("do_center_crop") is True
      and pre.get("image_mean") == [0.485, 0.456, 0.406] and pre.get("image_std") == [0.229, 0.224, 0.225],
      json.dumps(pre)[:200])
if pre:
    img = Image.open(os.path.join(ROOT, "tests", "data", "sneaker.png")).convert("RGB").resize((300, 200))
    a = vit_torch.build_transform(outb)(img)
    b = ViT_B_16_Weights.IMAGENET1K_V1.transforms()(img)
    d = (a - b).abs().max().item()
    check("vit_torch transform == torchvision IMAGENET1K_V1 transforms", a.shape == b.shape and d < 1e-6,
          f"maxdiff={d:.2e}")

# a .pth that is not a torchvision ViT: clean error
badp = os.path.join(tmp, "bad.pth")
torch.save({"weight": torch.zeros(2)}, badp)
r = subprocess.run(conv + [badp, "--out", os.path.join(tmp, "bad")], capture_output=True, text=True)
check("non-ViT .pth: non-zero exit with a message", r.returncode not in (0,) and r.returncode < 128
      and "conv_proj" in r.stderr, r.stderr.strip()[-120:])
summary()
