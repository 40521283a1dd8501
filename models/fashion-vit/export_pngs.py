#!/usr/bin/python3
"""export_pngs.py: write a Fashion-MNIST split (default: the 10,000 TEST images) as an
ImageFolder of 8-bit grayscale PNGs: OUT/<class>/<index>.png, one folder per class, named
after the model's labels with '/' and spaces made file-system safe ("T-shirt_top", "Ankle_boot").

    /usr/bin/python3 models/fashion-vit/export_pngs.py OUT [--split test|train] [--limit N]
    /usr/bin/python3 models/fashion-vit/export_pngs.py --samples tests/data   # one PNG per class
    /usr/bin/python3 models/fashion-vit/export_pngs.py --idx-fixture DIR     # tiny IDX pair

Reads Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist).  Needs numpy and PIL.
`--samples` writes the first test image of each class to DIR/<name>.png (tests/data/sneaker.png,
...) and `--idx-fixture` writes those same ten images, in class order, as an IDX pair
(fashion10-images-idx3-ubyte.gz + fashion10-labels-idx1-ubyte.gz) for the eval tests.
"""
import argparse
import gzip
import os
import struct
import sys

import numpy as np
from PIL import Image

DATA = "/usr/share/datasets/fashion-mnist"
LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
          "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
# file names for --samples (tests/data/<name>.png)
SAMPLE_NAMES = ["tshirt", "trouser", "pullover", "dress", "coat",
                "sandal", "shirt", "sneaker", "bag", "ankle_boot"]


def folder_name(label):
    return label.replace("/", "_").replace(" ", "_")


def read_idx(path):
    """IDX file (optionally .gz) -> numpy array of uint8 with the file's dims."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: expected {np.prod(dims)} values, found {arr.size}")
    return arr.reshape(dims)


def write_idx(path, arr):
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    data = header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()
    if path.endswith(".gz"):
        data = gzip.compress(data, mtime=0)  # reproducible bytes
    with open(path, "wb") as f:
        f.write(data)


def load_split(split):
    prefix = "t10k" if split == "test" else "train"
    images = read_idx(os.path.join(DATA, f"{prefix}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(DATA, f"{prefix}-labels-idx1-ubyte.gz"))
    assert images.shape[0] == labels.shape[0]
    return images, labels


def first_of_each_class(labels):
    return [int(np.nonzero(labels == c)[0][0]) for c in range(10)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", help="ImageFolder output directory")
    ap.add_argument("--split", choices=["test", "train"], default="test")
    ap.add_argument("--limit", type=int, default=0, help="only the first N images")
    ap.add_argument("--samples", metavar="DIR", help="write one test PNG per class to DIR/<name>.png")
    ap.add_argument("--idx-fixture", metavar="DIR", help="write the ten sample images as a tiny IDX pair")
    a = ap.parse_args()
    if not (a.out or a.samples or a.idx_fixture):
        ap.error("give OUT, --samples DIR or --idx-fixture DIR")

    images, labels = load_split("test" if (a.samples or a.idx_fixture) else a.split)
    if a.samples:
        os.makedirs(a.samples, exist_ok=True)
        for c, i in enumerate(first_of_each_class(labels)):
            p = os.path.join(a.samples, SAMPLE_NAMES[c] + ".png")
            Image.fromarray(images[i], mode="L").save(p, optimize=True)
            print(f"{p}: test index {i}, class {c} {LABELS[c]}")
    if a.idx_fixture:
        os.makedirs(a.idx_fixture, exist_ok=True)
        idx = first_of_each_class(labels)
        write_idx(os.path.join(a.idx_fixture, "fashion10-images-idx3-ubyte.gz"), images[idx])
        write_idx(os.path.join(a.idx_fixture, "fashion10-labels-idx1-ubyte.gz"), labels[idx])
        print(f"{a.idx_fixture}: fashion10 IDX pair, test indices {idx}")
    if a.out:
        n = images.shape[0] if a.limit <= 0 else min(a.limit, images.shape[0])
        for name in LABELS:
            os.makedirs(os.path.join(a.out, folder_name(name)), exist_ok=True)
        for i in range(n):
            d = os.path.join(a.out, folder_name(LABELS[labels[i]]))
            Image.fromarray(images[i], mode="L").save(os.path.join(d, f"{i:05d}.png"))
        print(f"{a.out}: {n} {a.split} images in {len(LABELS)} class folders", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
