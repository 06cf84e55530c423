#!/usr/bin/python3
"""The PyTorch side of bench/nn_cpu.sh: torchvision EfficientNet on the CPU.

    /usr/bin/python3 bench/torch_effnet_cpu.py --mode train --size 64 --batch 32 \
        --threads 2 --iters 10 --warmup 2
    /usr/bin/python3 bench/torch_effnet_cpu.py --mode infer --size 224 --batch 1 ...

train: model.train() (dropout and stochastic depth as torchvision sets
them), forward, CrossEntropyLoss(label_smoothing=0.1), backward,
SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4).step(),
zero_grad(); the same batch every step (data loading is not measured).
infer: model.eval() under torch.inference_mode(), one forward per call.

Prints one line of key=value fields, those of bench/bench_nn.c's line that
bench/nn_cpu.sh reads (bench_nn prints a few more):

    torch mode=train variant=b0 size=64 batch=32 threads=2 iters=10
        median_s=.. min_s=.. img_s=.. rss_mb=..

median_s / min_s over the timed iterations (after `warmup` untimed ones),
img_s = batch / median_s, rss_mb the peak resident set.
"""

import argparse
import resource
import statistics
import time

import torch
import torchvision


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=("train", "infer"), required=True)
    p.add_argument("--variant", default="b0")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--classes", type=int, default=10)
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = getattr(torchvision.models, "efficientnet_" + a.variant)(num_classes=a.classes)
    x = torch.randn(a.batch, 3, a.size, a.size)
    labels = torch.randint(0, a.classes, (a.batch,))

    if a.mode == "train":
        model.train()
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                              weight_decay=1e-4)

        def once():
            loss = loss_fn(model(x), labels)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    else:
        model.eval()

        def once():
            with torch.inference_mode():
                model(x)

    for _ in range(a.warmup):
        once()
    seconds = []
    for _ in range(a.iters):
        start = time.perf_counter()
        once()
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("torch mode=%s variant=%s size=%d batch=%d threads=%d iters=%d median_s=%.6f "
          "min_s=%.6f img_s=%.3f rss_mb=%.1f"
          % (a.mode, a.variant, a.size, a.batch, a.threads, a.iters, median, min(seconds),
             a.batch / median, rss_mb))


if __name__ == "__main__":
    main()
