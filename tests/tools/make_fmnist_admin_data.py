#!/usr/bin/python3
"""make_fmnist_admin_data.py: the Fashion-MNIST images of the admin API test
(tests/integration/test_admin.py), as small 28x28 grayscale PNGs committed to the repo so the
test needs neither the dataset package nor torch:

  tests/data/fmnist/train/<coarse>/<index>.png  60 TRAIN-split images per coarse label
  tests/data/fmnist/test/<coarse>/<index>.png   300 TEST-split images, 30 per fine class

Coarse labels: tops = T-shirt/top, Pullover, Coat, Shirt; footwear = Sandal, Sneaker, Ankle boot;
other = Trouser, Dress, Bag.  The 60 training images of a coarse label are spread evenly over
its fine classes (15 x 4, 20 x 3), chosen with a fixed seed; the file name is the index in its
split.  Reads Debian's dataset-fashion-mnist through models/fashion-vit/export_pngs.py.

    /usr/bin/python3 tests/tools/make_fmnist_admin_data.py
"""
import importlib.util
import os
import shutil

import numpy as np
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "tests", "data", "fmnist")
COARSE = {"tops": [0, 2, 4, 6], "footwear": [5, 7, 9], "other": [1, 3, 8]}
TRAIN_PER_COARSE, TEST_PER_FINE = 60, 30


def main():
    spec = importlib.util.spec_from_file_location(
        "export_pngs", os.path.join(ROOT, "models", "fashion-vit", "export_pngs.py"))
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    rng = np.random.default_rng(2024)
    shutil.rmtree(OUT, ignore_errors=True)
    for split in ("train", "test"):
        images, labels = ex.load_split(split)
        for coarse, fine in COARSE.items():
            d = os.path.join(OUT, split, coarse)
            os.makedirs(d)
            for c in fine:
                pool = np.nonzero(labels == c)[0]
                k = TRAIN_PER_COARSE // len(fine) if split == "train" else TEST_PER_FINE
                pick = np.sort(rng.choice(pool, size=k, replace=False))
                for i in pick:
                    Image.fromarray(images[i], mode="L").save(
                        os.path.join(d, f"{int(i):05d}.png"), optimize=True)
        n = sum(len(os.listdir(os.path.join(OUT, split, c))) for c in COARSE)
        print(f"{split}: {n} images in {OUT}/{split}")


if __name__ == "__main__":
    main()
