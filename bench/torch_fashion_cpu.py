#!/usr/bin/python3
"""The peer of bench/fashion_cpu.sh: torchvision's EfficientNet-B0 from scratch
on Fashion-MNIST (Debian's dataset-fashion-mnist, 60k train / 10k test), the
recipe of shared/anchors/torch_fashion.py in fp32 on the CPU: inputs upscaled
bilinearly to SIZE and normalised with the train set's mean/std, AdamW lr 2e-3
(weight decay 0.05), OneCycleLR(pct_start 0.1), batch 256 (last partial batch
dropped), cross-entropy with label smoothing 0.1, random horizontal flips.
After every epoch: accuracy on the 10k test images (eval mode).

Prints one line per epoch: "epoch E train_loss L test_acc A t S" (L: mean
training loss of the epoch; S: seconds since the first step, evaluation
included)."""
import argparse, gzip, time
import numpy as np, torch, torchvision, torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int, default=4)
p.add_argument("--size", type=int, default=32)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--data", default="/usr/share/datasets/fashion-mnist/")
p.add_argument("--per-class", type=int, default=0, help="first N training images per class (0: all)")
p.add_argument("--test-per-class", type=int, default=0, help="first N test images per class (0: all)")
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)

def idx(name, offset):
    return np.frombuffer(gzip.open(a.data + name).read(), np.uint8, offset=offset)

def inputs(images):
    x = torch.tensor(images.reshape(-1, 1, 28, 28)).float().div(255)
    x = F.interpolate(x, size=a.size, mode="bilinear", align_corners=False)
    return ((x - 0.2860) / 0.3530).expand(-1, 3, -1, -1).contiguous()

def first_per_class(images, labels, n):
    """The first n images of each class in file order, as make-fashion-zip picks them."""
    if n == 0:
        return images.reshape(-1, 784), labels
    keep = np.concatenate([np.flatnonzero(labels == c)[:n] for c in range(10)])
    keep.sort()
    return images.reshape(-1, 784)[keep], labels[keep]

def split(images, labels, n):
    x, y = first_per_class(idx(images, 16), idx(labels, 8), n)
    return inputs(x), torch.tensor(y).long()

xtr, ytr = split("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", a.per_class)
xte, yte = split("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", a.test_per_class)
model = torchvision.models.efficientnet_b0(num_classes=10)
bs = 256
steps_per_epoch = len(xtr) // bs
opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=a.epochs * steps_per_epoch,
                                            pct_start=0.1)
t0 = time.perf_counter()
for epoch in range(a.epochs):
    model.train()
    order = torch.randperm(len(xtr))
    loss_sum = 0.0
    for i in range(steps_per_epoch):
        batch = order[i * bs:(i + 1) * bs]
        x = xtr[batch]
        flip = torch.rand(bs) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
        loss = F.cross_entropy(model(x), ytr[batch], label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_sum += loss.item()
    model.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(xte), 1000):
            correct += (model(xte[i:i + 1000]).argmax(1) == yte[i:i + 1000]).sum().item()
    print(f"epoch {epoch + 1} train_loss {loss_sum / steps_per_epoch:.4f} "
          f"test_acc {correct / len(xte):.4f} t {time.perf_counter() - t0:.1f}",
          flush=True)
