#!/usr/bin/python3
"""gen_embed_fixtures.py: reference embeddings for POST /embed and the v2 "embedding" output.

For the fixture models of the three naming schemes (tiny-hf, tiny-timm, tiny-tv under
tests/fixtures/models/), writes tests/fixtures/embed/<model>/:
  image.png      a random RGB image whose size makes the model's preprocessing exact without
                 resampling (tiny-hf 32x32 resized to 32x32, tiny-timm 36x36 (shortest edge 36)
                 centre-cropped to 32x32, tiny-tv 24x24): decode -> rescale -> normalize only
  features.npy   (1, feature_dim) float32: the pooled pre-head features of PyTorch's float64
                 reference forward (gen_model_fixtures.reference_forward) on that image
  logits.npy     (1, classes) float32: the logits of the same forward
The weights are the fixtures' own: gen_model_fixtures.py is re-run into a temporary directory
(it is deterministic) and every model.safetensors it writes must equal the committed one byte
for byte, else this stops.  Needs Debian's python3-torch, python3-torchvision, python3-pil.
Run from the repository root:  /usr/bin/python3 tests/tools/gen_embed_fixtures.py
"""
import filecmp
import io
import os
import sys
import tempfile

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_model_fixtures as gm  # noqa: E402

MODELS = os.path.join(HERE, "..", "fixtures", "models")
OUT = os.path.join(HERE, "..", "fixtures", "embed")
# name: (image side, crop offset, out side, mean, std) as each fixture's preprocessing says
PREP = {
    "tiny-hf": (32, 0, 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "tiny-timm": (36, 2, 32, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "tiny-tv": (24, 0, 24, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


def capture_params():
    """Re-run the fixture generator into a temp dir; return {name: (p, L, H, eps, pooling)}."""
    got, current = {}, {"name": None}
    real_forward, real_build, real_tv = gm.reference_forward, gm.build, gm.build_torchvision

    def forward(p, x, L, H, eps, pooling="cls"):
        if current["name"] not in got:
            got[current["name"]] = ({k: v.clone() for k, v in p.items()}, L, H, eps, pooling)
        return real_forward(p, x, L, H, eps, pooling)

    def build(name, *a, **k):
        current["name"] = name
        return real_build(name, *a, **k)

    def build_tv(name, *a, **k):
        current["name"] = name
        return real_tv(name, *a, **k)

    with tempfile.TemporaryDirectory() as tmp:
        gm.OUT, gm.reference_forward, gm.build, gm.build_torchvision = tmp, forward, build, build_tv
        with io.StringIO() as quiet:
            stdout, sys.stdout = sys.stdout, quiet
            try:
                gm.main()
            finally:
                sys.stdout = stdout
        for name in PREP:
            a = os.path.join(tmp, name, "model.safetensors")
            b = os.path.join(MODELS, name, "model.safetensors")
            if not filecmp.cmp(a, b, shallow=False):
                sys.exit("%s: regenerated weights differ from the committed fixture" % name)
    return got


def main():
    params = capture_params()
    rng = np.random.default_rng(20261206)
    for name, (side, off, out, mean, std) in PREP.items():
        p, L, H, eps, pooling = params[name]
        img = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        Image.fromarray(img, "RGB").save(os.path.join(d, "image.png"), optimize=True)
        x = img.astype(np.float64)[off:off + out, off:off + out] / 255.0
        x = (x - np.array(mean)) / np.array(std)
        x = torch.from_numpy(x.transpose(2, 0, 1).copy()).unsqueeze(0)   # (1,3,out,out)
        ref = gm.reference_forward(p, x, L, H, eps, pooling)
        np.save(os.path.join(d, "features.npy"), ref["features"].numpy().astype(np.float32))
        np.save(os.path.join(d, "logits.npy"), ref["logits"].numpy().astype(np.float32))
        print("%s: image %dx%d, features %s" % (name, side, side, tuple(ref["features"].shape)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
