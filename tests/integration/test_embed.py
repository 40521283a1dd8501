"""test_embed.py: POST /embed and the v2 `embedding` output against PyTorch on the fixture
models of all three naming schemes (tests/fixtures/embed: an image per model and the float64
reference forward's pooled features for it, tests/tools/gen_embed_fixtures.py), plain and
L2-normalized, within 1e-4 of the largest |value|; the three request shapes of /classify
(multipart, raw body, JSON base64) give the same vectors; a bad image fails alone; bad options
are 400.  Every response is also checked against server/openapi.json."""
import base64
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from vitd_testlib import DATA, ROOT, Daemon, check, multipart, read, summary  # noqa: E402

FIX = os.path.join(ROOT, "tests", "fixtures", "embed")
MODELS = os.path.join(ROOT, "tests", "fixtures", "models")


def close(got, ref, name):
    got = np.asarray(got, dtype=np.float64).reshape(ref.shape)
    tol = 1e-4 * np.abs(ref).max()
    d = np.abs(got - ref).max()
    check(d <= tol, f"{name} maxdiff={d:.3g} tol={tol:.3g}")


def embed(d, body, ctype, query=""):
    st, h, data = d.request("POST", "/embed" + query, body, {"Content-Type": ctype})
    try:
        return st, json.loads(data)
    except ValueError:
        return st, {}


def one_model(name, first):
    img = read(os.path.join(FIX, name, "image.png"))
    ref = np.load(os.path.join(FIX, name, "features.npy")).astype(np.float64)       # (1, D)
    nref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    d = Daemon("--threads", "1", model=os.path.join(MODELS, name))
    if not check(d.wait_ready(), f"{name}: vitd ready", d.logtext()[-2000:]):
        return
    body, ct = multipart([("image", "a.png", img)])
    st, r = embed(d, body, ct)
    ok = st == 200 and r.get("dim") == ref.shape[1] and r.get("normalized") is False and len(r.get("results", [])) == 1
    check(ok, f"{name}: POST /embed multipart: 200, dim {ref.shape[1]}, not normalized", (st, str(r)[:300]))
    if ok:
        close(r["results"][0]["embedding"], ref, f"{name}: /embed vs PyTorch features")
    st, r = embed(d, body, ct, "?normalize=true")
    if check(st == 200 and r.get("normalized") is True, f"{name}: ?normalize=true", st):
        v = np.array(r["results"][0]["embedding"])
        close(v, nref, f"{name}: /embed normalized vs PyTorch features / L2 norm")
        check(abs(np.linalg.norm(v) - 1) < 1e-6, f"{name}: normalized embedding has unit norm ({np.linalg.norm(v):.8f})")
    req = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(img).decode()]}],
           "outputs": [{"name": "embedding"}, {"name": "embedding", "parameters": {"normalize": True}}][:1]}
    st, h, data = d.request("POST", f"/v2/models/{name}/infer", json.dumps(req).encode(), {"Content-Type": "application/json"})
    b = json.loads(data) if st == 200 else {}
    if check(st == 200 and b["outputs"][0]["shape"] == [1, ref.shape[1]], f"{name}: v2 embedding output", (st, data[:200])):
        close(b["outputs"][0]["data"], ref, f"{name}: v2 embedding vs PyTorch features")
    req["outputs"] = [{"name": "embedding", "parameters": {"normalize": True}}]
    st, h, data = d.request("POST", f"/v2/models/{name}/infer", json.dumps(req).encode(), {"Content-Type": "application/json"})
    if check(st == 200, f"{name}: v2 normalized embedding", (st, data[:200])):
        close(json.loads(data)["outputs"][0]["data"], nref, f"{name}: v2 normalized embedding vs PyTorch")
    if first:
        extra(d, img, ref, name)
    d.stop()


def extra(d, img, ref, name):
    """request shapes, multi-image with a bad one, options (once, on the first model)"""
    st, r1 = embed(d, img, "image/png")
    st2, r2 = embed(d, json.dumps({"images": [base64.b64encode(img).decode()], "normalize": False}).encode(),
                    "application/json")
    st3, r3 = embed(d, img, "application/x-image")
    same = (st == st2 == st3 == 200 and r1["results"][0]["embedding"] == r2["results"][0]["embedding"]
            == r3["results"][0]["embedding"])
    check(same, "raw image/png, JSON base64 and application/x-image: the same embedding", (st, st2, st3))
    st, r = embed(d, json.dumps({"inputs": base64.b64encode(img).decode(), "parameters": {"normalize": True}}).encode(),
                  "application/json")
    check(st == 200 and r.get("normalized") is True, "JSON parameters.normalize true", (st, str(r)[:200]))
    body, ct = multipart([("image", "a.png", img), ("image", "bad.jpg", b"\xff\xd8\xff\xe0junk"),
                          ("image", "b.png", read(os.path.join(DATA, "sneaker.png")))])
    st, r = embed(d, body, ct)
    res = r.get("results", [])
    check(st == 200 and len(res) == 3 and "embedding" in res[0] and res[1].get("error", {}).get("code") == "invalid_image"
          and "embedding" in res[2] and r.get("batch_size", 0) >= 1,
          "three images, the second corrupt: it fails alone, the others embed", (st, str(r)[:300]))
    if st == 200 and "embedding" in res[0]:
        close(res[0]["embedding"], ref, f"{name}: first of three images vs PyTorch")
    body, ct = multipart([("image", "bad.jpg", b"\xff\xd8\xff\xe0junk")])
    st, r = embed(d, body, ct)
    check(st == 400 and r.get("error", {}).get("code") == "invalid_image" and "results" in r,
          "only a corrupt image: 400 with its error", (st, str(r)[:200]))
    for q, why in (("?normalize=maybe", "normalize=maybe"),):
        st, r = embed(d, img, "image/png", q)
        check(st == 400 and r.get("error", {}).get("code") == "bad_request", f"{why}: 400 bad_request", (st, r))
    st, r = embed(d, json.dumps({"images": [base64.b64encode(img).decode()], "normalize": "yes"}).encode(), "application/json")
    check(st == 400 and r.get("error", {}).get("code") == "bad_request", "JSON normalize \"yes\": 400", (st, r))
    st, h, data = d.request("GET", "/embed")
    check(st == 405 and h.get("allow") == "POST", "GET /embed: 405 Allow: POST", st)
    st, r = embed(d, b"hello", "text/plain")
    check(st == 415, "text/plain body: 415", st)


def main():
    for i, name in enumerate(("tiny-hf", "tiny-timm", "tiny-tv")):
        one_model(name, i == 0)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
