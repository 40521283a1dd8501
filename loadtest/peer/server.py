#!/usr/bin/python3
"""peer/server.py: the image-classification server most teams would write instead of vitd:
FastAPI + uvicorn + PyTorch eager, one image per forward, preprocessing with PIL + torchvision
transforms.  It loads the same model directory (models/vit_torch.py reads our safetensors and
config by hand) and answers POST /classify like vitd (multipart `image` parts; top_k).

    /usr/bin/python3 loadtest/peer/server.py --model models/fashion-vit --port 8090 [--threads 2]

Debian packages: python3-fastapi, uvicorn, python3-multipart, python3-torch, python3-torchvision."""
import argparse
import io
import os
import sys
import time

import torch
import uvicorn
from fastapi import FastAPI, File, HTTPException, UploadFile
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models"))
import vit_torch  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="models/fashion-vit")
ap.add_argument("--host", default="127.0.0.1")
ap.add_argument("--port", type=int, default=8090)
ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch intra-op threads")
args = ap.parse_args()

torch.set_num_threads(args.threads)
model, info = vit_torch.load_model_dir(args.model)
model.eval()
transform = vit_torch.build_transform(args.model)
labels = info.get("labels") if isinstance(info, dict) else None
name = os.path.basename(os.path.normpath(args.model))
with torch.inference_mode():   # warm-up
    size = transform(Image.new("RGB", (64, 64))).shape
    model(torch.zeros((1,) + tuple(size)))

app = FastAPI()


@app.get("/readyz")
def readyz():
    return {"status": "ready"}


@app.post("/classify")
def classify(image: list[UploadFile] = File(...), top_k: int = 5):
    t0 = time.perf_counter()
    results = []
    for up in image:
        try:
            img = Image.open(io.BytesIO(up.file.read())).convert("RGB")
        except Exception as e:
            raise HTTPException(status_code=400, detail=f"cannot decode image: {e}")
        x = transform(img).unsqueeze(0)
        with torch.inference_mode():
            probs = model(x).softmax(-1)[0]
        k = min(top_k, probs.numel())
        sc, ix = probs.topk(k)
        results.append({"predictions": [{"label": labels[i] if labels else str(i), "index": int(i), "score": float(s)}
                                        for s, i in zip(sc.tolist(), ix.tolist())]})
    return {"model": name, "results": results, "timing": {"total_ms": (time.perf_counter() - t0) * 1e3}}


if __name__ == "__main__":
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
