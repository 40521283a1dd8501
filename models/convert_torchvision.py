#!/usr/bin/python3
"""convert_torchvision.py: a torchvision ViT checkpoint (.pth state dict, e.g. vit_b_16-c867db91.pth
from ViT_B_16_Weights.IMAGENET1K_V1) -> a vitd model directory:

    config.json               architecture (vit_b_16 ...), dims, layer_norm_eps 1e-6, id2label
    model.safetensors         the state dict under torchvision's own tensor names, F32 (or F16)
    preprocessor_config.json  the weights' transforms: IMAGENET1K_V1 is Resize(256) bilinear,
                              CenterCrop(224), ImageNet mean/std (HF keys, which vitd reads)

    /usr/bin/python3 models/convert_torchvision.py vit_b_16-c867db91.pth --out models/vit_b_16 \
        [--arch vit_b_16] [--weights IMAGENET1K_V1] [--labels imagenet_classes.txt | --imagenet-labels]
        [--dtype f32|f16] [--resize N --crop N --interpolation bilinear|bicubic]

--labels FILE takes one label per line (line i = class i); --imagenet-labels uses the ImageNet
category names that torchvision ships (no network).  Without either, labels are "0".."C-1".
Dims come from the tensor shapes; the number of heads from --heads or the architecture name.
Needs torch (to read the .pth) and numpy; safetensors is written by hand (models/vit_torch.py).
"""
import argparse
import json
import math
import os
import re
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vit_torch  # noqa: E402

HEADS = {"vit_b_16": 12, "vit_b_32": 12, "vit_l_16": 16, "vit_l_32": 16, "vit_h_14": 16}
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
# torchvision's weight presets: (resize, crop, interpolation) of their ImageClassification transform
PRESETS = {
    ("vit_b_16", "IMAGENET1K_V1"): (256, 224, "bilinear"),
    ("vit_b_16", "IMAGENET1K_SWAG_E2E_V1"): (384, 384, "bicubic"),
    ("vit_b_16", "IMAGENET1K_SWAG_LINEAR_V1"): (224, 224, "bicubic"),
    ("vit_b_32", "IMAGENET1K_V1"): (256, 224, "bilinear"),
    ("vit_l_16", "IMAGENET1K_V1"): (242, 224, "bilinear"),
    ("vit_l_16", "IMAGENET1K_SWAG_E2E_V1"): (512, 512, "bicubic"),
    ("vit_l_16", "IMAGENET1K_SWAG_LINEAR_V1"): (224, 224, "bicubic"),
    ("vit_l_32", "IMAGENET1K_V1"): (256, 224, "bilinear"),
    ("vit_h_14", "IMAGENET1K_SWAG_E2E_V1"): (518, 518, "bicubic"),
    ("vit_h_14", "IMAGENET1K_SWAG_LINEAR_V1"): (224, 224, "bicubic"),
}


def load_state_dict(path):
    sd = torch.load(path, map_location="cpu")
    for key in ("model", "state_dict", "model_state_dict"):   # training checkpoints wrap it
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict) or "conv_proj.weight" not in sd:
        raise SystemExit(f"{path}: not a torchvision VisionTransformer state dict "
                         "(no conv_proj.weight)")
    return {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pth")
    ap.add_argument("--out", required=True, help="model directory to write")
    ap.add_argument("--arch", default="vit_b_16", help="vit_b_16, vit_b_32, vit_l_16, vit_l_32, vit_h_14")
    ap.add_argument("--weights", default=None,
                    help="torchvision weights name for the preprocessing preset (default IMAGENET1K_V1, "
                         "or SWAG_E2E for vit_h_14)")
    ap.add_argument("--heads", type=int, default=0, help="attention heads (default: from --arch)")
    ap.add_argument("--labels", help="text file, one label per line")
    ap.add_argument("--imagenet-labels", action="store_true",
                    help="use torchvision's ImageNet-1k category names")
    ap.add_argument("--dtype", choices=["f32", "f16"], default="f32")
    ap.add_argument("--resize", type=int, help="override the preset's Resize(N)")
    ap.add_argument("--crop", type=int, help="override the preset's CenterCrop(N)")
    ap.add_argument("--interpolation", choices=["bilinear", "bicubic"])
    a = ap.parse_args()

    sd = load_state_dict(a.pth)
    D, C3, P, _ = sd["conv_proj.weight"].shape
    if C3 != 3:
        raise SystemExit(f"conv_proj.weight has {C3} input channels, expected 3")
    layers = 1 + max(int(m.group(1)) for k in sd for m in [re.match(r"encoder\.layers\.encoder_layer_(\d+)\.", k)] if m)
    mlp = sd["encoder.layers.encoder_layer_0.mlp.0.weight"].shape[0]
    classes = sd["heads.head.weight"].shape[0]
    tokens = sd["encoder.pos_embedding"].shape[1]
    grid = int(round(math.sqrt(tokens - 1)))
    if grid * grid != tokens - 1:
        raise SystemExit(f"encoder.pos_embedding has {tokens} tokens, not 1 + a square grid")
    image_size = grid * P
    heads = a.heads or HEADS.get(a.arch)
    if not heads:
        raise SystemExit(f"unknown --arch {a.arch}: give --heads")
    if D % heads:
        raise SystemExit(f"hidden size {D} is not a multiple of {heads} heads")
    if "heads.pre_logits.weight" in sd:
        print("warning: the checkpoint has a representation layer (heads.pre_logits, tanh)",
              file=sys.stderr)

    if a.labels:
        with open(a.labels) as f:
            labels = [ln.strip() for ln in f if ln.strip()]
        if len(labels) != classes:
            raise SystemExit(f"{a.labels}: {len(labels)} labels, the head has {classes} classes")
    elif a.imagenet_labels:
        from torchvision.models._meta import _IMAGENET_CATEGORIES
        labels = list(_IMAGENET_CATEGORIES)
        if len(labels) != classes:
            raise SystemExit(f"--imagenet-labels: 1000 labels, the head has {classes} classes")
    else:
        labels = [str(i) for i in range(classes)]

    weights = a.weights or ("IMAGENET1K_SWAG_E2E_V1" if a.arch == "vit_h_14" else "IMAGENET1K_V1")
    resize, crop, interp = PRESETS.get((a.arch, weights), (int(image_size * 256 / 224), image_size, "bilinear"))
    resize = a.resize or resize
    crop = a.crop or crop
    interp = a.interpolation or interp
    if crop != image_size:
        print(f"note: crop {crop} differs from the trained size {image_size}; vitd interpolates "
              "the position embeddings", file=sys.stderr)

    os.makedirs(a.out, exist_ok=True)
    config = {
        "architecture": a.arch,
        "model_type": "vit",
        "source": f"torchvision {a.arch} {weights}, converted by models/convert_torchvision.py "
                  f"from {os.path.basename(a.pth)}",
        "image_size": image_size,
        "patch_size": P,
        "num_channels": 3,
        "hidden_size": D,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": mlp,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-6,
        "qkv_bias": True,
        "num_labels": classes,
        "id2label": {str(i): l for i, l in enumerate(labels)},
    }
    pre = {
        "image_processor_type": "ViTImageProcessor",
        "do_resize": True,
        "size": {"shortest_edge": resize},
        "resample": 3 if interp == "bicubic" else 2,
        "do_center_crop": True,
        "crop_size": {"height": crop, "width": crop},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": IMAGENET_MEAN,
        "image_std": IMAGENET_STD,
    }
    tensors = {k: v for k, v in sd.items() if torch.is_tensor(v) and v.is_floating_point()}
    vit_torch.write_safetensors(os.path.join(a.out, "model.safetensors"), tensors,
                                {"format": "pt", "source": "torchvision"},
                                dtype="F16" if a.dtype == "f16" else "F32")
    for name, obj in (("config.json", config), ("preprocessor_config.json", pre)):
        with open(os.path.join(a.out, name), "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
    n = sum(t.numel() for t in tensors.values())
    print(f"{a.out}: {a.arch} {image_size}px patch {P}, {layers} layers, width {D}, {heads} heads, "
          f"mlp {mlp}, {classes} classes, {n} parameters ({a.dtype}); preprocessing Resize({resize}) "
          f"{interp}, CenterCrop({crop})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
