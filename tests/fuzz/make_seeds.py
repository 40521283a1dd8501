#!/usr/bin/python3
"""make_seeds.py: writes the fuzz harnesses' seed corpora, tests/fuzz/seeds/<target>/, small valid
(and a few nearly valid) inputs in each harness's input format (see the comment atop each
tests/fuzz/fuzz_<target>.c).  Deterministic; needs numpy and PIL (Debian python3-pil), not torch:

    /usr/bin/python3 tests/fuzz/make_seeds.py

Tiny model directories (D = 4, one layer, 2x2 patches of 2 pixels) in the three naming schemes
keep a model-loading iteration fast; images are a few dozen pixels."""
import io
import json
import os
import shutil
import struct

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(ROOT, "seeds")
rng = np.random.default_rng(7)


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ---- safetensors ---------------------------------------------------------------------------

def safetensors(tensors, meta=None, dtype="F32"):
    """tensors: list of (name, shape); random data in dtype (F32, F16 or BF16)"""
    hdr, blobs, off = {}, [], 0
    if meta is not None:
        hdr["__metadata__"] = meta
    for name, shape in tensors:
        a = rng.standard_normal(int(np.prod(shape))).astype(np.float32) * 0.1
        if dtype == "F16":
            b = a.astype(np.float16).tobytes()
        elif dtype == "BF16":
            b = (a.view(np.uint32) >> 16).astype(np.uint16).tobytes()
        else:
            b = a.tobytes()
        hdr[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


D, M, P, C, T = 4, 8, 2, 3, 5   # hidden, MLP, patch, classes, tokens (CLS + 2x2 patches)
LABELS = ["cat", "dog", "bird"]


def hf_tensors(prefix="vit.", qkv_bias=True):
    deit = prefix == "deit."
    t = [(prefix + "embeddings.patch_embeddings.projection.weight", (D, 3, P, P)),
         (prefix + "embeddings.patch_embeddings.projection.bias", (D,)),
         (prefix + "embeddings.cls_token", (1, 1, D)),
         (prefix + "embeddings.position_embeddings", (1, T + deit, D))]
    if deit:
        t.append((prefix + "embeddings.distillation_token", (1, 1, D)))
    L = prefix + "encoder.layer.0."
    t += [(L + "layernorm_before.weight", (D,)), (L + "layernorm_before.bias", (D,))]
    for q in ("query", "key", "value"):
        t.append((L + "attention.attention.%s.weight" % q, (D, D)))
        if qkv_bias:
            t.append((L + "attention.attention.%s.bias" % q, (D,)))
    t += [(L + "attention.output.dense.weight", (D, D)), (L + "attention.output.dense.bias", (D,)),
          (L + "layernorm_after.weight", (D,)), (L + "layernorm_after.bias", (D,)),
          (L + "intermediate.dense.weight", (M, D)), (L + "intermediate.dense.bias", (M,)),
          (L + "output.dense.weight", (D, M)), (L + "output.dense.bias", (D,)),
          (prefix + "layernorm.weight", (D,)), (prefix + "layernorm.bias", (D,)),
          ("classifier.weight", (C, D)), ("classifier.bias", (C,))]
    return t


def timm_tensors(dist=False):
    t = [("patch_embed.proj.weight", (D, 3, P, P)), ("patch_embed.proj.bias", (D,)),
         ("cls_token", (1, 1, D)), ("pos_embed", (1, T + dist, D)),
         ("blocks.0.norm1.weight", (D,)), ("blocks.0.norm1.bias", (D,)),
         ("blocks.0.attn.qkv.weight", (3 * D, D)), ("blocks.0.attn.qkv.bias", (3 * D,)),
         ("blocks.0.attn.proj.weight", (D, D)), ("blocks.0.attn.proj.bias", (D,)),
         ("blocks.0.norm2.weight", (D,)), ("blocks.0.norm2.bias", (D,)),
         ("blocks.0.mlp.fc1.weight", (M, D)), ("blocks.0.mlp.fc1.bias", (M,)),
         ("blocks.0.mlp.fc2.weight", (D, M)), ("blocks.0.mlp.fc2.bias", (D,)),
         ("norm.weight", (D,)), ("norm.bias", (D,)), ("head.weight", (C, D)), ("head.bias", (C,))]
    if dist:
        t += [("dist_token", (1, 1, D)), ("head_dist.weight", (C, D)), ("head_dist.bias", (C,))]
    return t


def tv_tensors():
    L = "encoder.layers.encoder_layer_0."
    return [("conv_proj.weight", (D, 3, P, P)), ("conv_proj.bias", (D,)), ("class_token", (1, 1, D)),
            ("encoder.pos_embedding", (1, T, D)), (L + "ln_1.weight", (D,)), (L + "ln_1.bias", (D,)),
            (L + "self_attention.in_proj_weight", (3 * D, D)), (L + "self_attention.in_proj_bias", (3 * D,)),
            (L + "self_attention.out_proj.weight", (D, D)), (L + "self_attention.out_proj.bias", (D,)),
            (L + "ln_2.weight", (D,)), (L + "ln_2.bias", (D,)), (L + "mlp.0.weight", (M, D)), (L + "mlp.0.bias", (M,)),
            (L + "mlp.3.weight", (D, M)), (L + "mlp.3.bias", (D,)), ("encoder.ln.weight", (D,)),
            ("encoder.ln.bias", (D,)), ("heads.head.weight", (C, D)), ("heads.head.bias", (C,))]


HF_CFG = {"architectures": ["ViTForImageClassification"], "model_type": "vit", "image_size": 4, "patch_size": P,
          "num_channels": 3, "hidden_size": D, "num_hidden_layers": 1, "num_attention_heads": 2,
          "intermediate_size": M, "hidden_act": "gelu", "layer_norm_eps": 1e-12, "qkv_bias": True,
          "id2label": {str(i): l for i, l in enumerate(LABELS)}}
HF_PP = {"image_processor_type": "ViTImageProcessor", "do_resize": True, "size": {"height": 4, "width": 4},
         "resample": 2, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
         "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
TIMM_CFG = {"architecture": "vit_fuzz_patch2_4", "num_classes": C, "label_names": LABELS,
            "model_args": {"num_heads": 2, "embed_dim": D, "depth": 1},
            "pretrained_cfg": {"input_size": [3, 4, 4], "crop_pct": 0.875, "interpolation": "bicubic",
                               "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}
TV_CFG = {"architecture": "vit_fuzz_tv", "source": "torchvision", "image_size": 4, "patch_size": P,
          "num_heads": 2}

SEP = b"\n@@@@\n"


def model(files):
    """config.json, model.safetensors, preprocessor_config.json, labels.txt (None: absent)"""
    parts = list(files)
    while parts and parts[-1] is None:
        parts.pop()
    if None in parts:
        raise ValueError("only trailing files may be absent")
    return SEP.join(p if isinstance(p, bytes) else p.encode() for p in parts)


def js(o):
    return json.dumps(o, indent=1)


def main():
    shutil.rmtree(OUT, ignore_errors=True)

    # model directories
    hf = safetensors(hf_tensors())
    put("model", "hf", model([js(HF_CFG), hf, js(HF_PP)]))
    put("model", "hf_nopp", model([js(HF_CFG), hf]))
    put("model", "hf_f16", model([js(HF_CFG), safetensors(hf_tensors(), dtype="F16"), js(HF_PP)]))
    cfg = dict(HF_CFG, qkv_bias=False)
    put("model", "hf_noqkvbias", model([js(cfg), safetensors(hf_tensors(qkv_bias=False))]))
    deit = dict(HF_CFG, architectures=["DeiTForImageClassification"])
    put("model", "hf_deit", model([js(deit), safetensors(hf_tensors("deit.")), js(dict(HF_PP, do_center_crop=True,
                                                                                    crop_size={"height": 4, "width": 4},
                                                                                    size={"shortest_edge": 5}))]))
    put("model", "timm", model([js(TIMM_CFG), safetensors(timm_tensors())]))
    put("model", "timm_bf16", model([js(TIMM_CFG), safetensors(timm_tensors(), dtype="BF16")]))
    put("model", "timm_dist", model([js(dict(TIMM_CFG, num_classes=C)), safetensors(timm_tensors(dist=True))]))
    put("model", "tv", model([js(TV_CFG), safetensors(tv_tensors())]))
    # labels.txt needs a preprocessor_config.json section before it: an empty JSON object is valid
    put("model", "tv_labels_txt", model([js(TV_CFG), safetensors(tv_tensors()), "{}", "\n".join(LABELS) + "\n"]))

    # safetensors files on their own (the tiny checkpoints and a head)
    put("safetensors", "hf", hf)
    put("safetensors", "timm_bf16", safetensors(timm_tensors()[:6], dtype="BF16"))
    put("safetensors", "f16_meta", safetensors([("a", (2, 3)), ("b", (0,)), ("c", ())], meta={"format": "pt"},
                                               dtype="F16"))
    put("safetensors", "empty", struct.pack("<Q", 2) + b"{}")

    # head files (vit_head_save's format)
    head = safetensors([("bias", (C,)), ("weight", (C, D))],
                       meta={"format": "vitd-head", "labels": json.dumps(LABELS), "version": "2", "job": "1",
                             "created": "1700000000.000", "metrics": "null"})
    put("head", "head", head)
    put("head", "head_1x1", safetensors([("bias", (1,)), ("weight", (1, 1))],
                                        meta={"format": "vitd-head", "labels": "[\"x\"]"}))
    put("safetensors", "head", head)

    # .npy
    for i, (shape, ver) in enumerate([((3, 4), (1, 0)), ((2, 1, 2), (2, 0)), ((0,), (1, 0)), ((), (1, 0))]):
        b = io.BytesIO()
        np.lib.format.write_array(b, rng.standard_normal(shape).astype("<f4"), version=ver)
        put("npy", "f4_%d" % i, b.getvalue())
    b = io.BytesIO()
    np.lib.format.write_array(b, np.arange(6, dtype="<f8").reshape(2, 3), version=(1, 0))
    put("npy", "f8", b.getvalue())

    # admin train bodies
    for i, body in enumerate([b"", b"{}", b'{"epochs": 3, "lr": 0.01, "batch_size": 8}',
                              b'{"optimizer": "sgd", "momentum": 0.9, "weight_decay": 0, "seed": 42}',
                              b'{"labels": "extend", "val_fraction": 0.2}\n', b'{"epochs": 0}', b"[1, 2]",
                              b'{"lr": 1e999}', b'{"optimizer": null}']):
        put("admin", "body_%d" % i, body)

    # IDX datasets (vit eval / finetune): images file, separator, labels file; gzip'd or not
    fx = os.path.join(ROOT, "..", "fixtures")
    import gzip
    gz_img = open(os.path.join(fx, "fashion10-images-idx3-ubyte.gz"), "rb").read()
    gz_lab = open(os.path.join(fx, "fashion10-labels-idx1-ubyte.gz"), "rb").read()
    img3, lab = gzip.decompress(gz_img), gzip.decompress(gz_lab)
    put("dataset", "fashion10_gz", gz_img + SEP + gz_lab)
    put("dataset", "fashion3", img3[:16 - 4 * 3] + struct.pack(">III", 3, 28, 28) + img3[16:16 + 3 * 784] + SEP +
        lab[:4] + struct.pack(">I", 3) + lab[8:11])
    rgb = bytes([0, 0, 8, 4]) + struct.pack(">IIII", 2, 3, 5, 3) + bytes(range(90))
    put("dataset", "rgb4d", rgb + SEP + bytes([0, 0, 8, 1]) + struct.pack(">I", 2) + bytes([1, 0]))

    # JSON bodies with base64 images (server/jsonbody.c)
    import base64
    png = open(os.path.join(ROOT, "..", "data", "sneaker.png"), "rb").read()
    b64 = base64.b64encode(png).decode()
    for i, body in enumerate([{"images": [b64], "top_k": 3}, {"inputs": b64, "parameters": {"top_k": 2}},
                              {"images": ["data:image/png;base64," + base64.urlsafe_b64encode(png).decode().rstrip("=")],
                               "attention": "cls"},
                              {"images": ["QUJD", "QQ==", " Q Q = = "]}, {"images": []}, {"imagse": ["QQ"]}]):
        put("jsonbody", "body_%d" % i, json.dumps(body))

    # multipart: Content-Type line, then the body
    png = open(os.path.join(ROOT, "..", "data", "sneaker.png"), "rb").read()
    def mp(ct, parts, bnd, epilogue=b""):
        body = b"".join(b"--" + bnd + b"\r\n" + h + b"\r\n\r\n" + d + b"\r\n" for h, d in parts)
        return ct + b"\n" + body + b"--" + bnd + b"--\r\n" + epilogue
    put("multipart", "one", mp(b"multipart/form-data; boundary=XyZ", [
        (b'Content-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png', png)], b"XyZ"))
    put("multipart", "two_quoted", mp(b'multipart/form-data; charset=utf-8; boundary="a b:c"', [
        (b'Content-Disposition: form-data; name="image"', b"\x00\x01\r\n--a b"),
        (b'content-disposition: form-data; name=image; filename="x\\"y"', b"data")], b"a b:c", b"epilogue"))
    put("multipart", "noheaders", b"multipart/form-data;boundary=q\npreamble\r\n--q\r\n\r\nraw\r\n--q--")
    put("multipart", "badct", b"image/png\n--vitdfuzz\r\nContent-Type: text/plain\r\n\r\nx\r\n--vitdfuzz--\r\n")

    # EXIF (TIFF-structured blocks) with an orientation tag of type SHORT and LONG
    def tiff(be, orient, typ=3, extra=0):
        e = ">" if be else "<"
        ent = [(0x010F, 2, 4, b"abc\0")] * extra + [(0x0112, typ, 1, orient)]
        b = (b"MM\0*" if be else b"II*\0") + struct.pack(e + "I", 8) + struct.pack(e + "H", len(ent))
        for tag, t, n, v in ent:
            val = struct.pack(e + "HH", v, 0) if t == 3 else struct.pack(e + "I", v) if t == 4 else v
            b += struct.pack(e + "HHI", tag, t, n) + val
        return b + b"\0\0\0\0"
    for i, (be, o, t, x) in enumerate([(0, 6, 3, 0), (1, 8, 3, 2), (0, 3, 4, 1), (1, 9, 3, 0)]):
        put("exif", "tiff_%d" % i, tiff(be, o, t, x))

    # images: 4 header bytes (see fuzz_image.c), then a small JPEG or PNG
    def exif_jpeg_app1(o):
        return b"Exif\0\0" + tiff(0, o)
    px = (rng.random((12, 16, 3)) * 255).astype(np.uint8)
    im = Image.fromarray(px, "RGB")
    imgs = {}
    def save(name, img, fmt, **kw):
        b = io.BytesIO()
        img.save(b, fmt, **kw)
        imgs[name] = b.getvalue()
    save("baseline.jpg", im, "JPEG", quality=80)
    save("progressive.jpg", im, "JPEG", quality=80, progressive=True)
    save("q444.jpg", im, "JPEG", quality=90, subsampling=0)
    save("q422.jpg", im.resize((40, 24)), "JPEG", quality=70, subsampling=1)
    save("gray.jpg", im.convert("L"), "JPEG")
    save("cmyk.jpg", im.convert("CMYK"), "JPEG")
    save("exif6.jpg", im, "JPEG", exif=exif_jpeg_app1(6))
    save("exif5.jpg", im.resize((33, 20)), "JPEG", exif=exif_jpeg_app1(5))
    save("big.jpg", Image.fromarray((rng.random((96, 128, 3)) * 255).astype(np.uint8)), "JPEG", quality=30)
    save("rgb.png", im, "PNG")
    save("rgba.png", Image.fromarray((rng.random((12, 16, 4)) * 255).astype(np.uint8), "RGBA"), "PNG")
    save("gray.png", im.convert("L"), "PNG")
    save("la.png", im.convert("LA"), "PNG")
    save("gray1.png", im.convert("1"), "PNG")
    save("palette.png", im.convert("P", palette=Image.ADAPTIVE, colors=16), "PNG", transparency=3)
    save("i16.png", Image.fromarray((rng.random((12, 16)) * 65535).astype(np.uint16)), "PNG")
    save("exif.png", im, "PNG", exif=tiff(1, 6))
    for n in ("sneaker.png", "bag.png"):
        imgs[n] = open(os.path.join(ROOT, "..", "data", n), "rb").read()
    # header variants: fashion-vit decode+tensor, tiny-timm load, HF default fast load, fuzzed
    heads = [bytes([0x00, 0, 0, 0]), bytes([0x05, 0, 0, 0]), bytes([0x0E, 0, 0, 0]),
             bytes([0x13, 0x03, 0x20, 0x10]), bytes([0x3F, 0x81, 0x08, 0x05]), bytes([0x17, 0x00, 0x90, 0x07])]
    for i, (name, data) in enumerate(sorted(imgs.items())):
        put("image", name, heads[i % len(heads)] + data)
        if name.endswith(".jpg") and i % 2 == 0:
            put("image", "fast_" + name, bytes([0x0C, 0, 0, 0]) + data)


if __name__ == "__main__":
    main()
