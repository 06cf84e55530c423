#!/usr/bin/python3
"""The serving benchmark's inputs (bench/serve.sh): a kiln model package of
torchvision's EfficientNet-B0 with 2 classes (dry, wet) at 224, and the JPEGs.

The package is what `kiln train` writes for a 224 model with torchvision's
eval preprocessing: model.safetensors (torchvision's state_dict, written in the
safetensors format directly: Debian has no safetensors package),
kiln-model.json (resize 256, centre crop 224, ImageNet mean/std). The weights
are torchvision's initialisation from seed 0: the peer serves the same
architecture with its own random weights, which costs the same.

JPEGs: photo.jpg, 640x480 quality 90 (bench/make_photos.py's first image,
~110 KB, the photo peers.md measured) and photo-1080p.jpg (the same recipe at
1920x1080).

Usage: /usr/bin/python3 bench/serve_make_model.py OUT_DIR
"""
import json
import os
import struct
import sys

import numpy as np
import torch
import torchvision
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_photos  # noqa: E402


def write_safetensors(path, state, metadata):
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for k, t in state.items():
        t = t.detach().cpu().contiguous()
        if t.dtype == torch.int64:
            dtype, data = "I64", t.numpy().astype("<i8").tobytes()
        else:
            dtype, data = "F32", t.float().numpy().astype("<f4").tobytes()
        header[k] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def write_package(d):
    os.makedirs(d, exist_ok=True)
    torch.manual_seed(0)
    m = torchvision.models.efficientnet_b0(num_classes=2).eval()
    write_safetensors(os.path.join(d, "model.safetensors"), m.state_dict(),
                      {"format": "pt", "arch": "efficientnet_b0", "variant": "b0",
                       "num_classes": "2"})
    info = {"format_version": 1, "variant": "b0", "classes": ["dry", "wet"], "num_classes": 2,
            "input_size": 224,
            "preprocessing": {"resize_size": 256, "crop_size": 224, "scale": "pixels / 255",
                              "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
            "kiln_version": "bench", "provenance": {}}
    with open(os.path.join(d, "kiln-model.json"), "w") as f:
        json.dump(info, f, indent=2)


def write_photos(d):
    base = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    make_photos.photo(base, 0).save(os.path.join(d, "photo.jpg"), format="JPEG", quality=90)
    rng = np.random.default_rng(7)
    field = Image.fromarray(base).resize((1920, 1080), Image.BILINEAR)
    noisy = np.asarray(field).astype(np.int16) + rng.integers(-8, 8, (1080, 1920, 3), dtype=np.int16)
    Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(
        os.path.join(d, "photo-1080p.jpg"), format="JPEG", quality=90)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    write_package(os.path.join(out, "model"))
    write_photos(out)
    print(f"serve_make_model: package {out}/model, photo.jpg "
          f"({os.path.getsize(os.path.join(out, 'photo.jpg')) // 1024} KiB), photo-1080p.jpg "
          f"({os.path.getsize(os.path.join(out, 'photo-1080p.jpg')) // 1024} KiB)")


if __name__ == "__main__":
    main()
