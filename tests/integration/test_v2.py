# asan: yes
"""test_v2.py: the Open Inference Protocol (KServe v2 REST, Triton's binary tensor data and
classification extensions) against a real vitd on a free loopback port: every v2 endpoint,
inference with encoded images as JSON base64 and as binary BYTES, preprocessed FP32 pixel_values
(JSON nested and binary) checked against PyTorch's reference outputs of the fixture model,
binary outputs, requested outputs and their parameters, request ids, identical probabilities to
/classify, and the errors in the protocol's shape ({"error": "<message>"}).

No Open Inference Protocol client can be installed here (none in Debian; npm has no KServe or
Triton HTTP client), so the requests below are the examples the protocol documents publish,
quoted with their source, sent as they are (this model answers them with the errors the spec
prescribes) and adapted to this model's tensor names, and the answers are checked against the
response examples' structure.  Every response is also checked against server/openapi.json."""
import base64
import json
import math
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from vitd_testlib import DATA, TINY, VITD, Daemon, check, read, summary  # noqa: E402

import subprocess  # noqa: E402

REF = os.path.join(TINY, "ref")
NAME = "tiny-hf"
JSON_CT = {"Content-Type": "application/json"}

# ---- the published examples, verbatim ------------------------------------------------------

# KServe, docs/predict-api/v2/required_api.md, "Inference Request Examples"
KSERVE_REQUEST = """{
  "id" : "42",
  "inputs" : [
    {
      "name" : "input0",
      "shape" : [ 2, 2 ],
      "datatype" : "UINT32",
      "data" : [ 1, 2, 3, 4 ]
    },
    {
      "name" : "input1",
      "shape" : [ 3 ],
      "datatype" : "BOOL",
      "data" : [ true ]
    }
  ],
  "outputs" : [
    {
      "name" : "output0"
    }
  ]
}"""
# its response example (the shape every JSON answer must have; "id" echoed, outputs with
# name, shape, datatype and data)
KSERVE_RESPONSE = """{
  "id" : "42",
  "outputs" : [
    {
      "name" : "output0",
      "shape" : [ 3, 2 ],
      "datatype"  : "FP32",
      "data" : [ 1.0, 1.1, 2.0, 2.1, 3.0, 3.1 ]
    }
  ]
}"""
# Triton, docs/protocol/extension_binary_data.md, "Examples": 16 bytes for input0, 3 for input1
TRITON_BINARY_REQUEST = """{
  "model_name" : "mymodel",
  "inputs" : [
    {
      "name" : "input0",
      "shape" : [ 2, 2 ],
      "datatype" : "UINT32",
      "parameters" : {
        "binary_data_size" : 16
      }
    },
    {
      "name" : "input1",
      "shape" : [ 3 ],
      "datatype" : "BOOL",
      "parameters" : {
        "binary_data_size" : 3
      }
    }
  ],
  "outputs" : [
    {
      "name" : "output0",
      "parameters" : {
        "binary_data" : true
      }
    }
  ]
}"""
# its response example: binary_data_size in the output's parameters, no "data"
TRITON_BINARY_RESPONSE = """{
  "outputs" : [
    {
      "name" : "output0",
      "shape" : [ 3, 2 ],
      "datatype"  : "FP32",
      "parameters" : {
        "binary_data_size" : 24
      }
    }
  ]
}"""
# Triton, docs/protocol/extension_classification.md
TRITON_CLASSIFICATION_REQUEST = """{
  "id" : "42",
  "inputs" : [
    {
      "name" : "input0",
      "shape" : [ 2, 2 ],
      "datatype" : "UINT32",
      "data" : [ 1, 2, 3, 4 ]
    }
  ],
  "outputs" : [
    {
      "name" : "output0",
      "parameters" : { "classification" : 2 }
    }
  ]
}"""
# its response with labels: "<value>:<index>:<label>" strings
TRITON_CLASSIFICATION_DATA = ["3.3:1:index_1_label", "2.4:3:index_3_label"]


def load_npy(path):
    return np.load(path)


def post_infer(d, body, headers=None, path=f"/v2/models/{NAME}/infer"):
    h = dict(JSON_CT)
    h.update(headers or {})
    return d.request("POST", path, body if isinstance(body, bytes) else json.dumps(body).encode(), h)


def jbody(data):
    try:
        return json.loads(data)
    except ValueError:
        return None


def is_v2_error(st, data, want_status, want_text=""):
    b = jbody(data)
    return (st == want_status and isinstance(b, dict) and list(b) == ["error"] and isinstance(b["error"], str)
            and want_text in b["error"])


def image_input(images):
    return {"name": "image", "shape": [len(images)], "datatype": "BYTES",
            "data": [base64.b64encode(x).decode() for x in images]}


def split_binary(h, data):
    hl = int(h.get("inference-header-content-length", len(data)))
    return json.loads(data[:hl]), data[hl:]


def test_health_and_metadata(d):
    st, h, data = d.request("GET", "/v2/health/live")
    check(st == 200 and data == b"", "GET /v2/health/live: 200, empty body", (st, data[:80]))
    st, h, data = d.request("GET", "/v2/health/ready")
    check(st == 200 and data == b"", "GET /v2/health/ready: 200, empty body", (st, data[:80]))
    version = subprocess.run([VITD, "--version"], capture_output=True, text=True).stdout.split()[1]
    st, h, data = d.request("GET", "/v2")
    b = jbody(data)
    check(st == 200 and b.get("name") == "vitd" and b.get("version") == version
          and set(b.get("extensions", [])) == {"binary_tensor_data", "classification"},
          "GET /v2: name, version (= vitd --version), extensions", b)
    st, h, data = d.request("GET", f"/v2/models/{NAME}")
    b = jbody(data)
    labels = json.load(open(os.path.join(TINY, "config.json")))["id2label"]
    ok = (st == 200 and b["name"] == NAME and b["versions"] == ["1"] and b["platform"] == "vitd"
          and b["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]},
                              {"name": "pixel_values", "datatype": "FP32", "shape": [-1, 3, 32, 32]}]
          and b["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, len(labels)]},
                               {"name": "embedding", "datatype": "FP32", "shape": [-1, 32]},
                               {"name": "attention", "datatype": "FP32", "shape": [-1, 4, 4]}])
    check(ok, "GET /v2/models/{name}: inputs and outputs with datatypes and shapes", b)
    st2, _, data2 = d.request("GET", f"/v2/models/{NAME}/versions/1")
    check(st2 == 200 and jbody(data2) == b, "GET /v2/models/{name}/versions/1: the same metadata", st2)
    for path in (f"/v2/models/{NAME}/ready", f"/v2/models/{NAME}/versions/1/ready"):
        st, _, data = d.request("GET", path)
        check(st == 200 and data == b"", f"GET {path}: 200, empty body", (st, data[:80]))
    st, _, data = d.request("HEAD", f"/v2/models/{NAME}/ready")
    check(st == 200, "HEAD model ready: 200", st)
    for path, text in ((f"/v2/models/nope", "'nope' is not found"), (f"/v2/models/nope/ready", "'nope'"),
                       (f"/v2/models/{NAME}/versions/2", "version 2 is not found"),
                       (f"/v2/models/{NAME}/versions/2/ready", "version 2"), ("/v2/models/x/y/z", "no such endpoint"),
                       ("/v2/repository/index", "no such endpoint")):
        st, _, data = d.request("GET", path)
        check(is_v2_error(st, data, 404, text), f"GET {path}: 404 {{\"error\": ...}}", (st, data[:120]))
    st, h, data = d.request("POST", "/v2/health/live", b"")
    check(is_v2_error(st, data, 405) and h.get("allow") == "GET, HEAD", "POST /v2/health/live: 405 with Allow", (st, h.get("allow")))
    st, h, data = d.request("GET", f"/v2/models/{NAME}/infer")
    check(is_v2_error(st, data, 405) and h.get("allow") == "POST", "GET .../infer: 405 with Allow: POST", (st, h.get("allow")))


def test_published_examples(d):
    """the documents' own requests: this model has one input, `image` or `pixel_values`, so
    each is answered 400 in the protocol's error shape, naming what is wrong"""
    st, _, data = post_infer(d, KSERVE_REQUEST.encode())
    check(is_v2_error(st, data, 400, "expected 1 input"),
          "KServe required_api.md example request: 400 {\"error\": ...} (two inputs)", data[:200])
    binary = struct.pack("<4I", 1, 2, 3, 4) + bytes([1, 0, 1])
    hdr = TRITON_BINARY_REQUEST.encode()
    st, _, data = post_infer(d, hdr + binary, {"Content-Type": "application/octet-stream",
                                              "Inference-Header-Content-Length": str(len(hdr))})
    check(is_v2_error(st, data, 400, "expected 1 input"),
          "Triton extension_binary_data.md example request: 400 {\"error\": ...} (two inputs)", data[:200])
    st, _, data = post_infer(d, TRITON_CLASSIFICATION_REQUEST.encode())
    check(is_v2_error(st, data, 400, "unexpected inference input 'input0'"),
          "Triton extension_classification.md example request: 400 unknown input", data[:200])


def test_examples_adapted(d, png, jpg):
    """the same requests with this model's tensor names: the answers have the examples' shapes"""
    # KServe's JSON example: id echoed, one output requested
    req = json.loads(KSERVE_REQUEST)
    req["inputs"] = [image_input([png, jpg])]
    req["outputs"] = [{"name": "probabilities"}]
    st, h, data = post_infer(d, req)
    b = jbody(data)
    ex = json.loads(KSERVE_RESPONSE)
    o = b["outputs"][0] if b and b.get("outputs") else {}
    check(st == 200 and b["id"] == ex["id"] and len(b["outputs"]) == 1 and set(ex["outputs"][0]) <= set(o)
          and o["name"] == "probabilities" and o["datatype"] == "FP32" and o["shape"] == [2, 6] and len(o["data"]) == 12
          and b["model_name"] == NAME and b["model_version"] == "1" and h.get("content-type") == "application/json",
          "KServe example adapted: id echoed, output name/shape/datatype/data as in the response example", b)
    probs = np.array(o["data"], dtype=np.float32).reshape(2, 6) if o.get("data") else np.zeros((2, 6))
    check(np.allclose(probs.sum(1), 1, atol=1e-5) and (probs >= 0).all(), "probabilities: each row sums to 1", probs.sum(1))
    # identical to /classify's scores (which are rounded to 6 significant digits)
    same = True
    for i, img in enumerate((png, jpg)):
        st, _, c = d.classify([img], "?top_k=6")
        for p in c["results"][0]["predictions"]:
            same &= float("%.6g" % probs[i][p["index"]]) == p["score"]
    check(same, "v2 infer and /classify: identical probabilities for the same images")
    # Triton's binary example: raw image bytes as a binary BYTES tensor, output as binary FP32
    bin_in = b"".join(struct.pack("<I", len(x)) + x for x in (png, jpg))
    req = json.loads(TRITON_BINARY_REQUEST)
    req["inputs"] = [{"name": "image", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": len(bin_in)}}]
    req["outputs"] = [{"name": "probabilities", "parameters": {"binary_data": True}}]
    hdr = json.dumps(req).encode()
    st, h, data = post_infer(d, hdr + bin_in, {"Content-Type": "application/octet-stream",
                                              "Inference-Header-Content-Length": str(len(hdr))})
    head, rest = split_binary(h, data)
    exo = json.loads(TRITON_BINARY_RESPONSE)["outputs"][0]
    o = head["outputs"][0]
    check(st == 200 and h.get("content-type") == "application/octet-stream" and set(exo) == set(o)
          and o["parameters"] == {"binary_data_size": 48} and o["shape"] == [2, 6] and len(rest) == 48,
          "Triton binary example adapted: binary BYTES in, binary FP32 out (Inference-Header-Content-Length)", (st, head, len(rest)))
    bprobs = np.frombuffer(rest, dtype="<f4").reshape(2, 6) if len(rest) == 48 else None
    check(bprobs is not None and np.array_equal(bprobs, probs), "binary BYTES input, binary output == JSON base64 answer")
    # Triton's classification example: "score:index:label" strings, BYTES [N, k]
    req = json.loads(TRITON_CLASSIFICATION_REQUEST)
    req["inputs"] = [image_input([png, jpg])]
    req["outputs"] = [{"name": "probabilities", "parameters": {"classification": 2}}]
    st, h, data = post_infer(d, req)
    b = jbody(data)
    o = b["outputs"][0] if b and b.get("outputs") else {}
    labels = json.load(open(os.path.join(TINY, "config.json")))["id2label"]
    want = []
    for i in range(2):
        for k in np.argsort(-probs[i])[:2]:
            want.append((np.float32(probs[i][k]), int(k), labels[str(int(k))]))
    got = [s.split(":", 2) for s in o.get("data", [])]
    fmt_ok = all(len(g) == 3 for g in got) and all(len(s.split(":")) >= 3 for s in TRITON_CLASSIFICATION_DATA)
    check(st == 200 and b["id"] == "42" and o.get("datatype") == "BYTES" and o.get("shape") == [2, 2] and fmt_ok
          and [(np.float32(g[0]), int(g[1]), g[2]) for g in got] == want,
          "Triton classification example adapted: BYTES [2, 2] of \"score:index:label\", the top 2 per image", (o, want))


def test_pixels_vs_pytorch(d):
    x = load_npy(os.path.join(REF, "input.npy")).astype("<f4")          # (2,3,32,32)
    logits = load_npy(os.path.join(REF, "logits.npy")).astype(np.float64)
    feats = load_npy(os.path.join(REF, "features.npy"))
    attn = load_npy(os.path.join(REF, "attn_cls.npy"))
    roll = load_npy(os.path.join(REF, "rollout.npy"))
    e = np.exp(logits - logits.max(1, keepdims=True))
    ref_p = e / e.sum(1, keepdims=True)
    # JSON, nested [N][3][H][W]
    req = {"inputs": [{"name": "pixel_values", "shape": list(x.shape), "datatype": "FP32", "data": x.tolist()}]}
    st, h, data = post_infer(d, req)
    b = jbody(data) or {}
    outs = {o["name"]: o for o in b.get("outputs", [])}
    check(st == 200 and [o["name"] for o in b["outputs"]] == ["probabilities", "embedding", "attention"]
          and "id" not in b, "pixel_values JSON, no outputs named: all three, no id", list(outs))
    p = np.array(outs["probabilities"]["data"]).reshape(2, -1)
    f = np.array(outs["embedding"]["data"]).reshape(2, -1)
    a = np.array(outs["attention"]["data"]).reshape(2, -1)
    check(np.abs(p - ref_p).max() <= 1e-5, f"pixel_values: probabilities vs PyTorch maxdiff={np.abs(p - ref_p).max():.2g} tol=1e-05")
    check(np.abs(f - feats).max() <= 1e-4 * np.abs(feats).max(),
          f"pixel_values: embedding vs PyTorch features maxdiff={np.abs(f - feats).max():.2g} tol={1e-4 * np.abs(feats).max():.2g}")
    check(outs["attention"]["shape"] == [2, 4, 4] and np.abs(a - attn).max() <= 1e-5,
          f"pixel_values: attention [2,4,4] vs PyTorch maxdiff={np.abs(a - attn).max():.2g} tol=1e-05")
    # binary FP32 in, rollout + normalized embedding out as binary
    raw = x.tobytes()
    req = {"id": "px", "inputs": [{"name": "pixel_values", "shape": list(x.shape), "datatype": "FP32",
                                   "parameters": {"binary_data_size": len(raw)}}],
           "outputs": [{"name": "attention", "parameters": {"mode": "rollout"}},
                       {"name": "embedding", "parameters": {"normalize": True}}],
           "parameters": {"binary_data_output": True}}
    hdr = json.dumps(req).encode()
    st, h, data = post_infer(d, hdr + raw, {"Content-Type": "application/octet-stream",
                                           "Inference-Header-Content-Length": str(len(hdr))})
    head, rest = split_binary(h, data)
    ok = st == 200 and head.get("id") == "px" and [o["name"] for o in head["outputs"]] == ["attention", "embedding"]
    sizes = [o.get("parameters", {}).get("binary_data_size", -1) for o in head.get("outputs", [])]
    ok = ok and sizes == [2 * 16 * 4, 2 * 32 * 4] and len(rest) == sum(sizes)
    check(ok, "pixel_values binary in, two binary outputs in the request's order", (st, head, len(rest)))
    if ok:
        r = np.frombuffer(rest[:128], dtype="<f4").reshape(2, 16)
        fe = np.frombuffer(rest[128:], dtype="<f4").reshape(2, 32)
        nf = feats / np.linalg.norm(feats, axis=1, keepdims=True)
        check(np.abs(r - roll).max() <= 1e-5, f"binary rollout vs PyTorch maxdiff={np.abs(r - roll).max():.2g} tol=1e-05")
        check(np.abs(fe - nf).max() <= 1e-4 and np.allclose(np.linalg.norm(fe, axis=1), 1, atol=1e-6),
              f"binary normalized embedding vs PyTorch maxdiff={np.abs(fe - nf).max():.2g} tol=0.0001, unit norm")


def test_errors(d, png):
    def one(req, status, text, name, headers=None, raw=None):
        st, _, data = post_infer(d, raw if raw is not None else req, headers)
        check(is_v2_error(st, data, status, text), f"{name}: {status} {{\"error\": ...}}", (st, data[:200]))
    ok_in = image_input([png])
    st, _, data = post_infer(d, {"inputs": [ok_in]}, path="/v2/models/nope/infer")
    check(is_v2_error(st, data, 404, "Request for unknown model: 'nope' is not found"), "infer on an unknown model: 404", data[:200])
    st, _, data = post_infer(d, {"inputs": [ok_in]}, path=f"/v2/models/{NAME}/versions/3/infer")
    check(is_v2_error(st, data, 404, "version 3"), "infer on an unknown version: 404", data[:200])
    st, _, data = post_infer(d, {"inputs": [ok_in]}, path=f"/v2/models/{NAME}/versions/1/infer")
    check(st == 200 and jbody(data)["model_version"] == "1", "infer on version 1: 200", st)
    one({"inputs": [dict(ok_in, datatype="FP32")]}, 400, "datatype must be BYTES", "image as FP32 (bad datatype)")
    one({"inputs": [dict(ok_in, shape=[2])]}, 400, "exactly 2 base64 strings", "shape [2] with one element")
    one({"inputs": [dict(ok_in, shape=[1, 3])]}, 400, "shape must be [N] or [N, 1]", "shape [1, 3]")
    one({"inputs": [{"name": "pixel_values", "shape": [1, 3, 24, 24], "datatype": "FP32", "data": [0]}]}, 400,
        "shape must be [N, 3, 32, 32]", "pixel_values of the wrong size (bad shape)")
    one({"inputs": [{"name": "pixel_values", "shape": [1, 3, 32, 32], "datatype": "INT8", "data": [0]}]}, 400,
        "datatype must be FP32", "pixel_values as INT8 (bad datatype)")
    one({"inputs": [ok_in], "outputs": [{"name": "logits"}]}, 400, "unexpected inference output 'logits'", "unknown output")
    one({"inputs": [ok_in], "outputs": [{"name": "probabilities", "parameters": {"classification": 7}}]}, 400,
        "[1, 6]", "classification over the class count")
    one(None, 400, "not valid JSON", "malformed JSON", raw=b"{\"inputs\": [")
    one(None, 400, "empty request body", "empty body", raw=b"")
    one({"inputs": [ok_in]}, 400, "Inference-Header-Content-Length", "header length past the body",
        {"Inference-Header-Content-Length": "999999"})
    one({"inputs": [ok_in]}, 400, "non-negative integer", "header length not a number", {"Inference-Header-Content-Length": "x"})
    one({"inputs": [ok_in]}, 415, "Content-Type text/plain", "text/plain body", {"Content-Type": "text/plain"})
    one({"inputs": [ok_in]}, 415, "Content-Encoding gzip", "gzip body", {"Content-Encoding": "gzip"})
    one({"inputs": [image_input([png, b"\xff\xd8\xff\xe0junk"])]}, 400, "image 1:", "a corrupt second image")
    one({"inputs": [image_input([b"GIF89a" + b"\0" * 40])]}, 415, "image 0:", "a GIF")
    # the same deadlines as /classify: with batches held 100 ms (--eager-dispatch 0), a 20 ms
    # deadline expires in the queue -> 504 in the protocol's shape, nothing computed
    st, _, data = post_infer(d, {"inputs": [ok_in]}, {"X-Request-Timeout-Ms": "20"})
    check(is_v2_error(st, data, 504, "image 0: request deadline"), "X-Request-Timeout-Ms passed while queued: 504", data[:200])
    st, _, data = post_infer(d, {"inputs": [ok_in]}, {"X-Request-Timeout-Ms": "soon"})
    check(st == 400, "X-Request-Timeout-Ms not a number: 400", data[:200])
    many = image_input([png] * 65)
    one({"inputs": [many]}, 400, "batch size 65 outside [1, 64]", "65 images")


def main():
    png = read(os.path.join(DATA, "sneaker.png"))
    jpg = read(os.path.join(DATA, "server", "photo.jpg"))
    d = Daemon("--threads", "1", "--max-batch", "4", "--eager-dispatch", "0", "--max-delay-us", "100000")
    if not check(d.wait_ready(), "vitd ready", d.logtext()[-2000:]):
        return summary()
    test_health_and_metadata(d)
    test_published_examples(d)
    test_examples_adapted(d, png, jpg)
    test_pixels_vs_pytorch(d)
    test_errors(d, png)
    st, _, data = d.request("GET", "/metrics")
    text = data.decode()
    check('vitd_request_duration_seconds_count{path="/v2/models/{model}/infer"}' in text
          and 'vitd_requests_total{path="/v2/models/{model}/infer",status="400"}' in text
          and 'path="/v2/health/live"' in text, "/metrics: v2 requests under bounded path labels")
    rc = d.stop()
    check(rc == 0 and "ERROR: AddressSanitizer" not in d.logtext() and "runtime error" not in d.logtext(),
          "vitd exits 0 on SIGTERM, no sanitizer report", (rc, d.logtext()[-1500:]))
    return summary()


if __name__ == "__main__":
    sys.exit(main())
