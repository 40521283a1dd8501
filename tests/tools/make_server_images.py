#!/usr/bin/python3
"""make_server_images.py: test images for the vitd server tests and load test, written to
tests/data/server/.  photo.jpg is a real photograph (scikit-image's `chelsea`, a cat, CC0),
re-encoded as a 451x300 baseline JPEG, quality 90; photo.png is the same photo as PNG at 160x106.
Run with Debian's python3 (PIL + scikit-image):  /usr/bin/python3 tests/tools/make_server_images.py"""
import os
from PIL import Image
from skimage import data

out = os.path.join(os.path.dirname(__file__), "..", "data", "server")
os.makedirs(out, exist_ok=True)
img = Image.fromarray(data.chelsea())
img.save(os.path.join(out, "photo.jpg"), quality=90)
img.resize((160, 106), Image.BILINEAR).save(os.path.join(out, "photo.png"))
print("wrote", sorted(os.listdir(out)))
