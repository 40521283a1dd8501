#!/usr/bin/python3
"""gen_train_fixtures.py: PyTorch reference for head training (engine/train/train.c).

Makes a small clustered feature set with class overlap, trains nn.Linear(D, C) from zero with
CrossEntropyLoss (mean) and torch.optim.AdamW / torch.optim.SGD over an explicit batch order
(perm, one row per epoch, also stored so the C trainer sees identical batches), and writes
float32 .npy fixtures to tests/fixtures/train/:
  x_train (N, D), y_train (N), x_test (M, D), y_test (M), perm (epochs, N),
  {adamw,sgd}_w (C, D), {adamw,sgd}_b (C),
  {adamw,sgd}_meta [test_accuracy, last_epoch_mean_loss, lr, weight_decay, momentum, epochs, batch]
and the same with the prefix fm_ for REAL features: the pooled representation of the shipped
Fashion-MNIST model (models/fashion-vit, through models/vit_torch.py) of the admin test's images
(tests/data/fmnist/{train,test}/{footwear,other,tops}: 180 train, 300 test, classes in that order).
Run with Debian's python3-torch:  /usr/bin/python3 tests/tools/gen_train_fixtures.py
"""
import glob
import os
import sys

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "train")
N, M, D, C = 480, 400, 32, 4
EPOCHS, BATCH = 8, 36       # 480 = 13*36 + 12: the short last batch is exercised too

def make_data(rng):
    centers = rng.normal(0.0, 0.4, size=(C, D))
    def sample(n):
        y = rng.integers(0, C, size=n)
        x = centers[y] + rng.normal(0.0, 1.0, size=(n, D))
        return x.astype(np.float32), y.astype(np.int64)
    return sample(N), sample(M)

def train(kind, x, y, perm, lr, wd, momentum, epochs=None, batch=None):
    epochs, batch = epochs or EPOCHS, batch or BATCH
    n, d = x.shape
    c = int(y.max()) + 1
    lin = torch.nn.Linear(d, c)
    torch.nn.init.zeros_(lin.weight)
    torch.nn.init.zeros_(lin.bias)
    if kind == "adamw":
        opt = torch.optim.AdamW(lin.parameters(), lr=lr, weight_decay=wd)  # betas/eps: defaults
    else:
        opt = torch.optim.SGD(lin.parameters(), lr=lr, momentum=momentum, weight_decay=wd)
    lossf = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    last = 0.0
    for ep in range(epochs):
        tot = 0.0
        for s in range(0, n, batch):
            idx = torch.from_numpy(perm[ep, s:s + batch].astype(np.int64))
            opt.zero_grad()
            loss = lossf(lin(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            tot += loss.item() * len(idx)
        last = tot / n
    return lin, last

def fmnist_features(root):
    """pooled features of the admin test images through the shipped model (PyTorch reference)"""
    sys.path.insert(0, os.path.join(root, "models"))
    import vit_torch
    import PIL.Image
    md = os.path.join(root, "models", "fashion-vit")
    model, _ = vit_torch.load_model_dir(md)
    tf = vit_torch.build_transform(md)
    out = {}
    for split in ("train", "test"):
        xs, ys = [], []
        for ci, c in enumerate(("footwear", "other", "tops")):
            for p in sorted(glob.glob(os.path.join(root, "tests", "data", "fmnist", split, c, "*.png"))):
                xs.append(tf(PIL.Image.open(p).convert("RGB")))
                ys.append(ci)
        with torch.no_grad():
            f, _ = model.features(torch.stack(xs))
        out[split] = (f.numpy().astype(np.float32), np.array(ys, dtype=np.int64))
    return out


def main():
    torch.manual_seed(0)
    rng = np.random.default_rng(7)
    (x, y), (xte, yte) = make_data(rng)
    perm = np.stack([rng.permutation(N) for _ in range(EPOCHS)])
    os.makedirs(OUT, exist_ok=True)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)
    np.save(os.path.join(OUT, "x_train.npy"), f32(x))
    np.save(os.path.join(OUT, "y_train.npy"), f32(y))
    np.save(os.path.join(OUT, "x_test.npy"), f32(xte))
    np.save(os.path.join(OUT, "y_test.npy"), f32(yte))
    np.save(os.path.join(OUT, "perm.npy"), f32(perm))
    for kind, lr, wd, mom in (("adamw", 0.01, 0.01, 0.0), ("sgd", 0.05, 0.001, 0.9)):
        lin, last = train(kind, x, y, perm, lr, wd, mom)
        with torch.no_grad():
            acc = (lin(torch.from_numpy(xte)).argmax(1).numpy() == yte).mean()
        np.save(os.path.join(OUT, kind + "_w.npy"), f32(lin.weight.detach().numpy()))
        np.save(os.path.join(OUT, kind + "_b.npy"), f32(lin.bias.detach().numpy()))
        np.save(os.path.join(OUT, kind + "_meta.npy"),
                f32([acc, last, lr, wd, mom, EPOCHS, BATCH]))
        print(f"{kind}: test accuracy {acc:.4f}, last epoch loss {last:.5f}")

    # real features: the shipped model on the admin test's images; AdamW and SGD as the admin API
    torch.manual_seed(0)
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    fm = fmnist_features(root)
    (x, y), (xte, yte) = fm["train"], fm["test"]
    epochs, batch = 40, 32              # 180 = 5*32 + 20: a short last batch
    perm = np.stack([rng.permutation(len(y)) for _ in range(epochs)])
    for name, a in (("x_train", x), ("y_train", y), ("x_test", xte), ("y_test", yte), ("perm", perm)):
        np.save(os.path.join(OUT, "fm_" + name + ".npy"), f32(a))
    for kind, lr, wd, mom in (("adamw", 0.003, 0.0001, 0.0), ("sgd", 0.01, 0.0001, 0.9)):
        lin, last = train(kind, x, y, perm, lr, wd, mom, epochs, batch)
        with torch.no_grad():
            acc = (lin(torch.from_numpy(xte)).argmax(1).numpy() == yte).mean()
        np.save(os.path.join(OUT, "fm_" + kind + "_w.npy"), f32(lin.weight.detach().numpy()))
        np.save(os.path.join(OUT, "fm_" + kind + "_b.npy"), f32(lin.bias.detach().numpy()))
        np.save(os.path.join(OUT, "fm_" + kind + "_meta.npy"), f32([acc, last, lr, wd, mom, epochs, batch]))
        print(f"fm {kind}: test accuracy {acc:.4f}, last epoch loss {last:.5f}")

if __name__ == "__main__":
    main()
