#!/usr/bin/python3
"""Photo-like JPEGs for the data benchmark (bench/data.sh).

Writes N (default 2048) 640x480 JPEGs, quality 90, about 100 KB each, into two
class folders (OUT/photos/dry, OUT/photos/wet) and the same files into
OUT/photos.zip (deflated, as a zip made by a desktop archiver). The images are
the kind peers.md describes: a smooth colour field (random 48x64 pixels
upscaled bilinearly, a different roll per image) plus per-pixel noise, so the
JPEG decoder has real work on every block. Deterministic: the same N gives the
same bytes. When OUT/photos.zip exists for the same N it is left alone.

Usage: /usr/bin/python3 bench/make_photos.py [--n 2048] [--out bench/out]
"""
import argparse
import os
import sys
import time
import zipfile

import numpy as np
from PIL import Image

W, H = 640, 480
CLASSES = ("dry", "wet")
ZIP_DATE = (2020, 1, 1, 0, 0, 0)


def photo(base, i):
    """The i-th image: the base field rolled by i, upscaled, plus noise."""
    rng = np.random.default_rng(1000 + i)
    field = Image.fromarray(np.roll(base, i, axis=1)).resize((W, H), Image.BILINEAR)
    noisy = np.asarray(field).astype(np.int16) + rng.integers(-8, 8, (H, W, 3), dtype=np.int16)
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8))


def name(i):
    return f"{CLASSES[i % 2]}/{i:05d}.jpg"


def write_folder(root, n):
    base = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    for c in CLASSES:
        os.makedirs(os.path.join(root, c), exist_ok=True)
    total = 0
    for i in range(n):
        path = os.path.join(root, name(i))
        tmp = path + ".tmp"
        photo(base, i).save(tmp, format="JPEG", quality=90)
        os.replace(tmp, path)
        total += os.path.getsize(path)
    return total


def write_zip(root, n, zip_path):
    tmp = zip_path + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(n):
            info = zipfile.ZipInfo(name(i), ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with open(os.path.join(root, name(i)), "rb") as f:
                z.writestr(info, f.read())
    os.replace(tmp, zip_path)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2048, help="number of images (default 2048)")
    p.add_argument("--out", default="bench/out", help="output folder (default bench/out)")
    a = p.parse_args()
    if a.n < 2:
        p.error("--n must be >= 2 (two classes)")
    root = os.path.join(a.out, "photos")
    zip_path = os.path.join(a.out, "photos.zip")
    stamp = os.path.join(a.out, "photos.n")
    if os.path.exists(zip_path) and os.path.exists(stamp):
        with open(stamp) as f:
            if f.read().strip() == str(a.n):
                print(f"make_photos: reusing {zip_path} ({a.n} images)")
                return 0
    for c in CLASSES:  # a different N: start the folder afresh
        d = os.path.join(root, c)
        if os.path.isdir(d):
            for f in os.listdir(d):
                os.unlink(os.path.join(d, f))
    t0 = time.perf_counter()
    total = write_folder(root, a.n)
    write_zip(root, a.n, zip_path)
    with open(stamp, "w") as f:
        f.write(f"{a.n}\n")
    print(f"make_photos: {a.n} JPEGs {W}x{H} in {root} (mean {total / a.n / 1024:.0f} KiB) "
          f"and {zip_path}; {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
