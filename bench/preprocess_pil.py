#!/usr/bin/python3
"""preprocess_pil.py: the peer for bench/preprocess_vs_pil.sh: PIL + torchvision preprocessing,
one thread, the way a PyTorch user writes it:
    Image.open -> ImageOps.exif_transpose -> (alpha over white) -> convert("RGB")
    -> Resize(256) -> CenterCrop(224) -> ToTensor -> Normalize(ImageNet)
from bytes already in memory, like a server receiving an upload.

    preprocess_pil.py ITERS IMAGE...   prints one line per image: NAME WALL_MS CPU_MS
    preprocess_pil.py --diff DIR IMAGE...  compares DIR/NAME.{exact,pil-exact,fast}.npy (ours) with
                                       PIL's tensor: NAME then mean and max |diff| of each
"""
import io
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402
import torchvision.transforms as T  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

torch.set_num_threads(1)
TF = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
WHITE = {}


def load(data):
    im = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        im = im.convert("RGBA")
        bg = WHITE.get(im.size) or WHITE.setdefault(im.size, Image.new("RGBA", im.size, (255, 255, 255, 255)))
        im = Image.alpha_composite(bg, im)
    return TF(im.convert("RGB"))


def diff(d, paths):
    import numpy as np
    for path in paths:
        name = os.path.basename(path)
        ref = load(open(path, "rb").read()).numpy()
        out = [name]
        for kind in ("exact", "pil-exact", "fast"):
            a = np.load(os.path.join(d, f"{name}.{kind}.npy"))[0]
            e = np.abs(a - ref)
            out += [f"{e.mean():.4f}", f"{e.max():.3f}"]
        print(" ".join(out), flush=True)


def main():
    if sys.argv[1] == "--diff":
        return diff(sys.argv[2], sys.argv[3:])
    iters = int(sys.argv[1])
    for path in sys.argv[2:]:
        data = open(path, "rb").read()
        load(data)  # warm-up
        t0, c0 = time.perf_counter(), time.thread_time()
        for _ in range(iters):
            x = load(data)
        wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
        assert tuple(x.shape) == (3, 224, 224)
        print(f"{os.path.basename(path)} {wall * 1e3 / iters:.3f} {cpu * 1e3 / iters:.3f}", flush=True)


if __name__ == "__main__":
    main()
