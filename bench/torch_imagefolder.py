#!/usr/bin/python3
"""The data benchmark's peer: torchvision ImageFolder + PIL + DataLoader.

One epoch over a folder of class folders with the usual training transforms
(RandomResizedCrop(224), RandomHorizontalFlip, ToTensor, ImageNet Normalize),
DataLoader batch 128, shuffled, W worker processes (0: in the main process),
torch.set_num_threads(1). Prints the best of `--repeats` epochs (default 2):

    torch workers=W images=N best_s=S img_s=R

Usage: /usr/bin/python3 bench/torch_imagefolder.py ROOT [--workers W] [--repeats 2]
       [--batch 128] [--size 224]
"""
import argparse
import sys
import time

import torch
from torchvision import datasets, transforms as T

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def one_epoch(ds, batch, workers):
    dl = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=workers, shuffle=True,
                                     persistent_workers=False)
    t = time.perf_counter()
    n = 0
    for xb, _ in dl:
        n += xb.shape[0]
    return n, time.perf_counter() - t


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", help="folder of class folders")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--size", type=int, default=224)
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tf = T.Compose([T.RandomResizedCrop(a.size), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(MEAN, STD)])
    ds = datasets.ImageFolder(a.root, tf)
    best, n = None, 0
    for _ in range(max(1, a.repeats)):
        n, s = one_epoch(ds, a.batch, a.workers)
        best = s if best is None else min(best, s)
    print(f"torch workers={a.workers} images={n} best_s={best:.3f} img_s={n / best:.1f}",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
