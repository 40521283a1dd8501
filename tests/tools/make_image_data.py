#!/usr/bin/python3
"""make_image_data.py: build the image test set in tests/data/images/ from ../shared/images and
Debian's python3-skimage data (CC0 / public domain photos).  Deterministic; re-run to rebuild.

    /usr/bin/python3 tests/tools/make_image_data.py [--shared /work/shared/images]

Good files cover JPEG baseline (4:2:0, 4:4:4), progressive, grayscale, CMYK and YCCK (Adobe), every EXIF
orientation 2..8; PNG gray 1/8/16-bit, gray+alpha, gray+tRNS, palette 4/8-bit (+tRNS), RGB 8/16,
RGBA 8/16, Adam7-interlaced, eXIf-rotated.  PIL cannot write interlaced, 16-bit RGB or low bit
depth gray PNGs, so a small PNG writer below does those.  Bad files: empty, random bytes,
truncated JPEGs, cut PNG, PNG/JPEG headers claiming 60000x60000, a zero-size PNG, a bad CRC, a
JPEG with no image, GIF, BMP, TIFF and WebP.  Total stays well under 2 MB.
"""
import argparse
import io
import os
import shutil
import struct
import subprocess
import tempfile
import zlib

import numpy as np
from PIL import Image

SK = "/usr/lib/python3/dist-packages/skimage/data"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "data", "images")


# ---- a minimal PNG writer (any color type / bit depth, optional Adam7) ----------------------

def _chunk(t, data):
    return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data) & 0xFFFFFFFF)


def _rows(a, bit_depth):
    """a: (h, w[, c]) integer array -> list of packed scanlines (without filter byte)."""
    h = a.shape[0]
    a = a.reshape(h, -1)
    if bit_depth == 16:
        return [r.astype(">u2").tobytes() for r in a]
    if bit_depth == 8:
        return [r.astype(np.uint8).tobytes() for r in a]
    per = 8 // bit_depth
    out = []
    for r in a:
        r = r.astype(np.uint8)
        pad = (-len(r)) % per
        r = np.concatenate([r, np.zeros(pad, np.uint8)]).reshape(-1, per)
        b = np.zeros(len(r), np.uint8)
        for i in range(per):
            b |= (r[:, i] << (8 - bit_depth * (i + 1))).astype(np.uint8)
        out.append(b.tobytes())
    return out


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def write_png(path, a, color_type, bit_depth, interlace=False, palette=None, trns=None, exif=None):
    h, w = a.shape[:2]
    raw = b""
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    for xs, ys, dx, dy in passes:
        sub = a[ys::dy, xs::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        for r in _rows(sub, bit_depth):
            raw += b"\x00" + r
    data = b"\x89PNG\r\n\x1a\n"
    data += _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 1 if interlace else 0))
    if exif is not None:
        data += _chunk(b"eXIf", exif)
    if palette is not None:
        data += _chunk(b"PLTE", bytes(np.asarray(palette, np.uint8).reshape(-1)))
    if trns is not None:
        data += _chunk(b"tRNS", trns)
    data += _chunk(b"IDAT", zlib.compress(raw, 9))
    data += _chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


def exif_orientation(o):
    """A minimal little-endian TIFF/EXIF block with only the Orientation tag."""
    return b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + struct.pack("<HHII", 0x0112, 3, 1, o) + b"\x00" * 4


# inverse of what ImageOps.exif_transpose applies for each orientation
STORE_OP = {2: [Image.Transpose.FLIP_LEFT_RIGHT], 3: [Image.Transpose.ROTATE_180],
            4: [Image.Transpose.FLIP_TOP_BOTTOM], 5: [Image.Transpose.TRANSPOSE],
            6: [Image.Transpose.ROTATE_90], 7: [Image.Transpose.TRANSVERSE],
            8: [Image.Transpose.ROTATE_270]}


def small(name, size):
    im = Image.open(os.path.join(SK, name))
    im.load()
    return im.resize(size, Image.Resampling.LANCZOS) if size else im


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(ROOT), "shared", "images"))
    args = ap.parse_args()
    if not os.path.isdir(args.shared):
        args.shared = "/work/shared/images"
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    P = lambda n: os.path.join(OUT, n)
    rng = np.random.default_rng(1234)

    # ---- JPEG ----
    shutil.copy(os.path.join(args.shared, "cat.jpg"), P("jpeg_baseline.jpg"))       # 451x300 q90 4:2:0
    shutil.copy(os.path.join(args.shared, "rocket.jpg"), P("jpeg_rocket.jpg"))      # 640x427
    coffee = small("coffee.png", None)
    coffee.save(P("jpeg_progressive.jpg"), quality=85, progressive=True)
    small("camera.png", None).save(P("jpeg_gray.jpg"), quality=85)
    small("chelsea.png", None).convert("CMYK").save(P("jpeg_cmyk.jpg"), quality=90)  # Adobe APP14, inverted
    # YCCK (Adobe transform 2): PIL cannot write it; a 60-line libjpeg tool re-encodes the CMYK one
    with tempfile.TemporaryDirectory() as td:
        tool = os.path.join(td, "make_ycck")
        subprocess.run(["cc", "-O1", "-o", tool, os.path.join(ROOT, "tests", "tools", "make_ycck.c"), "-ljpeg"],
                       check=True)
        subprocess.run([tool, P("jpeg_cmyk.jpg"), P("jpeg_ycck.jpg")], check=True)
    small("astronaut.png", (256, 256)).save(P("jpeg_444.jpg"), quality=90, subsampling=0)
    c300 = coffee.resize((300, 200), Image.Resampling.LANCZOS)
    for o in range(2, 9):
        im = c300
        for op in STORE_OP[o]:
            im = im.transpose(op)
        ex = Image.Exif()
        ex[0x0112] = o
        im.save(P(f"jpeg_exif{o}.jpg"), quality=85, exif=ex.tobytes())

    # ---- PNG ----
    small("color.png", None).save(P("png_rgb.png"))                                   # RGB 8
    small("logo.png", (250, 250)).save(P("png_rgba.png"))                             # RGBA 8
    small("coins.png", None).save(P("png_gray8.png"))                                 # L 8
    cam = np.asarray(Image.open(os.path.join(SK, "camera.png")), np.float64)
    cam16 = cam.reshape(256, 2, 256, 2).mean(axis=(1, 3)) * 257.0 + rng.uniform(-100, 100, (256, 256))
    write_png(P("png_gray16.png"), np.clip(np.round(cam16), 0, 65535).astype(np.uint16), 0, 16)
    horse = np.asarray(small("horse.png", (200, 164)).convert("L"))
    write_png(P("png_gray1.png"), (horse > 128).astype(np.uint8), 0, 1)
    moon = np.asarray(small("moon.png", (256, 256)))
    yy, xx = np.mgrid[0:256, 0:256]
    alpha = np.clip(255 - np.hypot(yy - 128, xx - 128) * 1.6, 0, 255).astype(np.uint8)
    Image.fromarray(np.dstack([moon, alpha]), "LA").save(P("png_gray_alpha.png"))
    write_png(P("png_gray_trns.png"), np.asarray(small("coins.png", (192, 152))), 0, 8,
              trns=struct.pack(">H", 255))  # pure white... and every 255 pixel transparent
    pal = c300.quantize(64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    trns = bytes([255] * 64)
    trns = bytes(0 if i in (3, 17, 40) else (128 if i % 5 == 0 else 255) for i in range(64))
    pal.save(P("png_palette_trns.png"), transparency=trns)
    p16 = small("chelsea.png", (160, 106)).quantize(16, dither=Image.Dither.NONE)
    write_png(P("png_palette4.png"), np.asarray(p16), 3, 4,
              palette=np.asarray(p16.getpalette()[:48], np.uint8).reshape(16, 3))
    chel = np.asarray(small("chelsea.png", (300, 200)))
    write_png(P("png_interlaced.png"), chel, 2, 8, interlace=True)
    cof = np.asarray(small("coffee.png", (200, 133)), np.float64)
    cof16 = np.clip(np.round(cof * 257 + rng.uniform(-100, 100, cof.shape)), 0, 65535).astype(np.uint16)
    write_png(P("png_rgb16.png"), cof16, 2, 16)
    a16 = np.clip(np.round(np.hypot(*np.mgrid[0:133, 0:200]) * 400), 0, 65535).astype(np.uint16)
    write_png(P("png_rgba16_interlaced.png"), np.dstack([cof16, a16]), 6, 16, interlace=True)
    write_png(P("png_exif6.png"), np.asarray(c300.transpose(Image.Transpose.ROTATE_90)), 2, 8,
              exif=exif_orientation(6))

    # ---- bad inputs ----
    open(P("bad_empty.jpg"), "wb").close()
    with open(P("bad_random.bin"), "wb") as f:
        f.write(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    shutil.copy(os.path.join(args.shared, "truncated.jpg"), P("bad_truncated.jpg"))
    cat = open(P("jpeg_baseline.jpg"), "rb").read()
    open(P("bad_truncated_half.jpg"), "wb").write(cat[: len(cat) // 2])
    prog = open(P("jpeg_progressive.jpg"), "rb").read()
    open(P("bad_truncated_progressive.jpg"), "wb").write(prog[: len(prog) * 2 // 3])
    open(P("bad_garbage.jpg"), "wb").write(b"\xff\xd8\xff" + rng.integers(0, 256, 2000, dtype=np.uint8).tobytes())
    open(P("bad_noimage.jpg"), "wb").write(b"\xff\xd8\xff\xd9")
    png = open(P("png_rgb.png"), "rb").read()
    open(P("bad_cut.png"), "wb").write(png[: len(png) * 6 // 10])
    open(P("bad_sig_only.png"), "wb").write(png[:8])
    bad = bytearray(png)
    bad[20] ^= 0x01  # inside IHDR (height): CRC no longer matches
    open(P("bad_crc.png"), "wb").write(bytes(bad))
    # header claiming 60000 x 60000 RGB, with a tiny valid zlib stream as its data
    huge = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0))
    huge += _chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + _chunk(b"IEND", b"")
    open(P("bad_huge.png"), "wb").write(huge)
    zero = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 0, 8, 2, 0, 0, 0))
    zero += _chunk(b"IDAT", zlib.compress(b"")) + _chunk(b"IEND", b"")
    open(P("bad_zero.png"), "wb").write(zero)
    j = bytearray(cat)
    i = 2
    while True:  # patch the SOF marker's height and width
        m, n = j[i + 1], j[i + 2] << 8 | j[i + 3]
        if m in (0xC0, 0xC1, 0xC2):
            j[i + 5:i + 9] = struct.pack(">HH", 60000, 60000)
            break
        i += 2 + n
    open(P("bad_huge.jpg"), "wb").write(bytes(j))
    tiny = small("chelsea.png", (64, 43))
    tiny.save(P("bad_format.gif"))
    tiny.save(P("bad_format.bmp"))
    tiny.save(P("bad_format.tiff"))
    tiny.save(P("bad_format.webp"), quality=50)

    total = sum(os.path.getsize(P(f)) for f in os.listdir(OUT))
    for f in sorted(os.listdir(OUT)):
        print(f"{os.path.getsize(P(f)):8d}  {f}")
    print(f"{total:8d}  total bytes")
    assert total < 2 << 20, "test images must stay under 2 MB"


if __name__ == "__main__":
    main()
