#!/usr/bin/python3
"""eval_torch.py: PyTorch's accuracy for a vitd model directory on an ImageFolder of images,
the reference `vit eval` is compared with (bench/fashion_accuracy.sh).  Images are read with PIL
(.convert("RGB"): gray replicated) and preprocessed with torchvision exactly as the model
directory's preprocessor_config.json says (models/vit_torch.py: build_transform); the model is
models/vit_torch.py's plain ViT loading the same model.safetensors.

    /usr/bin/python3 models/fashion-vit/eval_torch.py --model models/fashion-vit --data PNGDIR \
        [--batch 64] [--threads 2] [--limit N] [--json OUT.json] [--predictions OUT.tsv] [--int8]

--int8: PyTorch's dynamic INT8 quantization of every nn.Linear first
(torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8): the encoder's
qkv, proj, fc1, fc2 and the head), the peer of `vit eval --precision int8`.

Class folders are matched to the model's labels as `vit eval` does (by name, ignoring case, spaces
and punctuation, or by index).  Prints top-1/top-5 and images/s.
"""
import argparse
import json
import os
import re
import sys
import time

import torch
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import vit_torch  # noqa: E402

EXTS = (".png", ".jpg", ".jpeg")


def norm(s):
    return re.sub(r"[^0-9a-z]", "", s.lower())


def match(folder, labels):
    n = norm(folder)
    hits = [i for i, l in enumerate(labels) if norm(l) == n]
    if len(hits) == 1:
        return hits[0]
    if folder.isdigit() and int(folder) < len(labels):
        return int(folder)
    raise SystemExit(f"eval_torch: folder '{folder}' matches no label of the model")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--json", help="write the summary as JSON here")
    ap.add_argument("--predictions", help="write name<TAB>true<TAB>predicted per image")
    ap.add_argument("--int8", action="store_true", help="quantize_dynamic every nn.Linear to qint8 first")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    model, info = vit_torch.load_model_dir(a.model)
    if a.int8:
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    tf = vit_torch.build_transform(a.model)
    labels = info["labels"]
    samples = []
    for d in sorted(os.listdir(a.data)):
        p = os.path.join(a.data, d)
        if d.startswith(".") or not os.path.isdir(p):
            continue
        c = match(d, labels)
        for f in sorted(os.listdir(p)):
            if not f.startswith(".") and f.lower().endswith(EXTS):
                samples.append((os.path.join(p, f), c))
    if a.limit and a.limit < len(samples):   # evenly spaced, as `vit eval --limit`
        samples = [samples[i * len(samples) // a.limit] for i in range(a.limit)]
    if not samples:
        raise SystemExit(f"eval_torch: no images under {a.data}")

    C = info["classes"]
    k = min(5, C)
    top1 = top5 = 0
    per_n = [0] * C
    per_ok = [0] * C
    pred_f = open(a.predictions, "w") if a.predictions else None
    t0 = time.time()
    with torch.no_grad():
        for s in range(0, len(samples), a.batch):
            chunk = samples[s:s + a.batch]
            x = torch.stack([tf(Image.open(p).convert("RGB")) for p, _ in chunk])
            logits = model(x)
            top = logits.topk(k, dim=1).indices
            for (p, y), t in zip(chunk, top.tolist()):
                per_n[y] += 1
                if t[0] == y:
                    top1 += 1
                    per_ok[y] += 1
                if y in t:
                    top5 += 1
                if pred_f:
                    pred_f.write(f"{p}\t{y}\t{t[0]}\n")
    secs = time.time() - t0
    if pred_f:
        pred_f.close()
    n = len(samples)
    print(f"model:  {a.model} (torch {torch.__version__}, {info['scheme']} naming)")
    print(f"data:   {a.data} ({n} images)")
    print(f"top-1:  {100 * top1 / n:.2f}% ({top1}/{n})")
    print(f"top-{k}:  {100 * top5 / n:.2f}% ({top5}/{n})")
    for c in range(C):
        if per_n[c]:
            print(f"  {c:5d}  {labels[c]:<24.24s} {per_n[c]:7d} {100 * per_ok[c] / per_n[c]:7.2f}%")
    print(f"throughput: {n / secs:.1f} images/s (PIL decode + torchvision preprocess + forward, "
          f"batch {a.batch}, {a.threads} threads)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": a.model, "data": a.data, "images": n, "top1_correct": top1,
                       "top5_correct": top5, "top1": top1 / n, "top5": top5 / n,
                       "images_per_s": n / secs, "torch": torch.__version__, "int8": a.int8,
                       "per_class": [{"index": c, "label": labels[c], "images": per_n[c],
                                      "top1_correct": per_ok[c]} for c in range(C)]}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
