#!/usr/bin/python3
"""gen_image_fixtures.py: reference preprocessing from PIL + torchvision for the image tests.

    /usr/bin/python3 tests/tools/gen_image_fixtures.py      (after make_image_data.py)

Writes tests/fixtures/image/:
  model/preprocessor_config.json  Resize(256) bilinear, CenterCrop(224), ImageNet mean/std:
                                  the torchvision pipeline below, in Hugging Face keys
  model_timm/config.json          a timm pretrained_cfg (bicubic, crop_pct 0.9, mean = std = 0.5):
                                  timm's eval transform is Resize(floor(224 / 0.9) = 248, bicubic),
                                  CenterCrop(224), ToTensor, Normalize; references `timm FILE REF`
  manifest.txt                    `good FILE REF` / `bad FILE STATUS` per test image
  <name>.u8                       PIL's uint8 224x224x3 result (after Resize + CenterCrop, before
                                  ToTensor), every 2nd row and column: 112x112x3 bytes, HWC.
                                  The test rebuilds torchvision's tensor as (u8/255 - mean)/std,
                                  which is exactly what ToTensor + Normalize compute (checked here).
  resize_cases.txt                tiny hand-made images resized by PIL (bilinear, bicubic; down,
                                  up, mixed; crops with torchvision's offsets, padding): a float
                                  reference (PIL's own filter math on mode "F", clamped to [0,255]
                                  after each pass) and PIL's uint8 result; `_hf` cases crop with
                                  Hugging Face's offsets (floor) instead of torchvision's.
Reference rules (what users do with PIL): ImageOps.exif_transpose; alpha (or tRNS) composited
over white; 16-bit gray scaled by its high byte (PIL's own convert() clips it instead).
"""
import os

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image, ImageOps

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMG = os.path.join(ROOT, "tests", "data", "images")
FIX = os.path.join(ROOT, "tests", "fixtures", "image")
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

BAD = {  # file -> vit_status the decoder must return
    "bad_empty.jpg": "corrupt", "bad_random.bin": "format", "bad_truncated.jpg": "corrupt",
    "bad_truncated_half.jpg": "corrupt", "bad_truncated_progressive.jpg": "corrupt",
    "bad_garbage.jpg": "corrupt", "bad_noimage.jpg": "corrupt", "bad_cut.png": "corrupt",
    "bad_sig_only.png": "corrupt", "bad_crc.png": "corrupt", "bad_huge.png": "too_large",
    "bad_zero.png": "corrupt", "bad_huge.jpg": "too_large", "bad_format.gif": "format",
    "bad_format.bmp": "format", "bad_format.tiff": "format", "bad_format.webp": "format",
}

PRE = """{
  "_comment": "torchvision: Resize(256) bilinear, CenterCrop(224), ToTensor, Normalize(ImageNet)",
  "do_resize": true,
  "size": {"shortest_edge": 256},
  "resample": 2,
  "do_center_crop": true,
  "crop_size": {"height": 224, "width": 224},
  "do_rescale": true,
  "rescale_factor": 0.00392156862745098,
  "do_normalize": true,
  "image_mean": [0.485, 0.456, 0.406],
  "image_std": [0.229, 0.224, 0.225]
}
"""


TIMM_CFG = """{
  "architecture": "vit_base_patch16_224",
  "num_classes": 1000,
  "pretrained_cfg": {
    "input_size": [3, 224, 224],
    "interpolation": "bicubic",
    "crop_pct": 0.9,
    "crop_mode": "center",
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5]
  }
}
"""
# a one-channel model (config.json num_channels 1): the same torchvision pipeline on PIL's
# convert("L") of the composited RGB image, mean = std = 0.5; references `gray FILE REF` (112x112)
GRAY_PRE = PRE.replace("[0.485, 0.456, 0.406]", "[0.5]").replace("[0.229, 0.224, 0.225]", "[0.5]")
GRAY_IMAGES = ["jpeg_rocket.jpg", "png_rgba.png", "png_gray8.png", "png_gray_alpha.png", "jpeg_gray.jpg"]
TIMM_IMAGES = ["jpeg_rocket.jpg", "jpeg_exif6.jpg", "jpeg_gray.jpg", "png_rgba.png", "png_palette_trns.png"]


def to_rgb(path):
    im = Image.open(path)
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I", "I;16", "I;16B"):
        a = np.asarray(im).astype(np.uint32) >> 8
        im = Image.fromarray(a.astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        a = np.asarray(im.convert("RGBA")).astype(np.uint32)
        rgb, al = a[..., :3], a[..., 3:]
        out = (rgb * al + 255 * (255 - al) + 127) // 255
        return Image.fromarray(out.astype(np.uint8), "RGB")
    return im.convert("RGB")


def reference_gray(path):
    im = to_rgb(path).convert("L")                     # ITU-R 601-2 luminance, PIL's integer rounding
    crop = T.CenterCrop(224)(T.Resize(256)(im))
    u8 = np.asarray(crop)
    tensor = T.Normalize([0.5], [0.5])(T.ToTensor()(crop)).numpy()
    recon = (u8[None].astype(np.float32) / np.float32(255) - np.float32(0.5)) / np.float32(0.5)
    assert tensor.shape == (1, 224, 224) and np.abs(recon - tensor).max() < 1e-5, path
    return u8


def reference(path, timm=False):
    im = to_rgb(path)
    mean, std = ([0.5] * 3, [0.5] * 3) if timm else (MEAN, STD)
    resize = T.Resize(248, interpolation=T.InterpolationMode.BICUBIC) if timm else T.Resize(256)
    crop = T.CenterCrop(224)(resize(im))               # PIL uint8, as torchvision computes it
    u8 = np.asarray(crop)
    tensor = T.Normalize(mean, std)(T.ToTensor()(crop)).numpy()
    recon = (u8.transpose(2, 0, 1).astype(np.float32) / np.float32(255) - np.array(mean, np.float32)[:, None, None]) \
        / np.array(std, np.float32)[:, None, None]
    assert np.abs(recon - tensor).max() < 1e-5, path
    return u8


# ---- tiny resize cases ------------------------------------------------------------------------

def pil_float_resize(a, w, h, resample):
    """a: (H, W, 3) float -> (h, w, 3): horizontal pass, clamp, vertical pass, clamp (PIL "F" math)."""
    out = []
    for c in range(3):
        im = Image.fromarray(a[..., c].astype(np.float32), "F")
        im = im.resize((w, im.size[1]), resample)
        im = Image.fromarray(np.clip(np.asarray(im), 0, 255).astype(np.float32), "F")
        im = im.resize((w, h), resample)
        out.append(np.clip(np.asarray(im), 0, 255))
    return np.stack(out, -1)


def resize_size(w, h, se, rw, rh):
    if se:
        short, long = (w, h) if w <= h else (h, w)
        nl = int(se * long / short)
        return (se, nl) if w <= h else (nl, se)
    return rw, rh


def tiny_cases(rng):
    cases = [  # name, resample, w, h, shortest_edge, resize_w, resize_h, crop (out_w, out_h) or None
        ("bilinear_down", 2, 13, 7, 0, 5, 3, None),
        ("bilinear_up", 2, 13, 7, 0, 29, 17, None),
        ("bicubic_down", 3, 13, 7, 0, 5, 3, None),
        ("bicubic_up", 3, 13, 7, 0, 29, 17, None),
        ("bicubic_mixed", 3, 40, 9, 0, 7, 20, None),
        ("bilinear_big_down", 2, 61, 47, 0, 6, 5, None),
        ("bicubic_big_down", 3, 61, 47, 0, 6, 5, None),
        ("bilinear_crop_odd", 2, 37, 23, 10, 0, 0, (13, 7)),     # offsets round(1.5) = 2
        ("bicubic_crop_even", 3, 23, 37, 10, 0, 0, (5, 9)),      # offsets round(2.5) = 2
        ("bilinear_crop_pad", 2, 9, 6, 6, 0, 0, (8, 8)),         # crop larger: zero padding
        ("bilinear_crop_odd_hf", 2, 37, 23, 10, 0, 0, (13, 7)),  # Hugging Face: floor(1.5) = 1
        ("bicubic_crop_pad_hf", 3, 9, 6, 6, 0, 0, (9, 9)),       # HF pads (9-6): offset floor(-1.5) = -2
    ]
    lines = []
    for name, rs, w, h, se, rw, rh, crop in cases:
        a = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
        if "big" in name:  # smooth content plus an edge, like a photo
            yy, xx = np.mgrid[0:h, 0:w]
            a = np.clip(np.dstack([xx * 4, yy * 5, (xx + yy) * 2]) + (xx > w // 2)[..., None] * 60
                        + rng.integers(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
        nw, nh = resize_size(w, h, se, rw, rh)
        fl = pil_float_resize(a.astype(np.float64), nw, nh, rs)
        u8 = Image.fromarray(a, "RGB").resize((nw, nh), rs)
        flt = torch.from_numpy(fl.transpose(2, 0, 1).copy())
        hf = name.endswith("_hf")
        if crop and hf:
            # transformers.image_transforms.center_crop: top = (h - ch) // 2 (floor, also when padding)
            ow, oh = crop
            top, left = (nh - oh) // 2, (nw - ow) // 2
            def hf_crop(a):  # a: (C, H, W)
                out = np.zeros((a.shape[0], oh, ow), a.dtype)
                for i in range(oh):
                    for j in range(ow):
                        if 0 <= i + top < a.shape[1] and 0 <= j + left < a.shape[2]:
                            out[:, i, j] = a[:, i + top, j + left]
                return out
            flt = torch.from_numpy(hf_crop(flt.numpy()))
            u8 = hf_crop(np.asarray(u8).transpose(2, 0, 1)).transpose(1, 2, 0)
        elif crop:
            ow, oh = crop
            flt = TF.center_crop(flt, [oh, ow])
            u8 = TF.center_crop(u8, [oh, ow])
        else:
            ow, oh = nw, nh
        u8 = np.asarray(u8).transpose(2, 0, 1)
        fa = flt.numpy()
        lines.append(f"case {name} {rs} {w} {h} {se} {rw} {rh} {1 if crop else 0} {ow} {oh} {1 if hf else 0}")
        lines.append("in " + " ".join(str(int(v)) for v in a.reshape(-1)))
        lines.append("float " + " ".join(f"{v:.5f}" for v in fa.reshape(-1)))
        lines.append("u8 " + " ".join(str(int(v)) for v in u8.reshape(-1)))
        print(f"{name}: {w}x{h} -> {nw}x{nh} -> {ow}x{oh}  float vs PIL uint8 maxdiff "
              f"{np.abs(fa - u8).max():.3f}")
    return "\n".join(lines) + "\n"


def main():
    os.makedirs(os.path.join(FIX, "model"), exist_ok=True)
    with open(os.path.join(FIX, "model", "preprocessor_config.json"), "w") as f:
        f.write(PRE)
    os.makedirs(os.path.join(FIX, "model_gray"), exist_ok=True)
    with open(os.path.join(FIX, "model_gray", "preprocessor_config.json"), "w") as f:
        f.write(GRAY_PRE)
    with open(os.path.join(FIX, "model_gray", "config.json"), "w") as f:
        f.write('{"model_type": "vit", "num_channels": 1}\n')
    os.makedirs(os.path.join(FIX, "model_timm"), exist_ok=True)
    with open(os.path.join(FIX, "model_timm", "config.json"), "w") as f:
        f.write(TIMM_CFG)
    for f in os.listdir(FIX):
        if f.endswith(".u8"):
            os.remove(os.path.join(FIX, f))
    man = []
    for f in sorted(os.listdir(IMG)):
        if f in BAD:
            man.append(f"bad {f} {BAD[f]}")
            continue
        assert not f.startswith("bad_"), f"{f}: add it to BAD"
        u8 = reference(os.path.join(IMG, f))
        assert u8.shape == (224, 224, 3)
        ref = os.path.splitext(f)[0] + ".u8"
        with open(os.path.join(FIX, ref), "wb") as o:
            o.write(np.ascontiguousarray(u8[::2, ::2]).tobytes())
        man.append(f"good {f} {ref}")
        if f in TIMM_IMAGES:
            u8 = reference(os.path.join(IMG, f), timm=True)
            ref = os.path.splitext(f)[0] + ".timm.u8"
            with open(os.path.join(FIX, ref), "wb") as o:
                o.write(np.ascontiguousarray(u8[::2, ::2]).tobytes())
            man.append(f"timm {f} {ref}")
        if f in GRAY_IMAGES:
            u8 = reference_gray(os.path.join(IMG, f))
            ref = os.path.splitext(f)[0] + ".gray.u8"
            with open(os.path.join(FIX, ref), "wb") as o:
                o.write(np.ascontiguousarray(u8[::2, ::2]).tobytes())
            man.append(f"gray {f} {ref}")
    with open(os.path.join(FIX, "manifest.txt"), "w") as o:
        o.write("# generated by tests/tools/gen_image_fixtures.py\n" + "\n".join(man) + "\n")
    with open(os.path.join(FIX, "resize_cases.txt"), "w") as o:
        o.write(tiny_cases(np.random.default_rng(7)))
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(FIX) for f in fs)
    print(f"{len(man)} manifest entries, {total} bytes of fixtures")
    assert total < 3 << 20


if __name__ == "__main__":
    main()
