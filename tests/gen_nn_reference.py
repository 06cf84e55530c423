#!/usr/bin/python3
"""PyTorch's reference outputs for kiln's nn engine (torchvision EfficientNet).

Run by ctest as the fixture `nn_reference` (Debian's python3-torch 1.13 and
python3-torchvision 0.14, CPU, /usr/bin/python3):

    /usr/bin/python3 tests/gen_nn_reference.py --out <dir> [--force]

The C tests (test_nn_torch*) find <dir> in $KILN_NN_REF_DIR. Everything is
deterministic (fixed seeds, 2 threads) and takes a few seconds. When
<dir>/<variant>/meta.json records the same generator hash and torch version
and every file is there, nothing is rewritten (--force rewrites).

For each variant in b0, b3, <dir>/<variant>/ holds:

  meta.json           the settings both sides use: variant, num_classes 10,
                      batch 4, size 64 (input 4x3x64x64), label_smoothing 0.1,
                      BatchNorm "eps" and "momentum" as torchvision builds them,
                      the "sgd" and "adamw" hyper-parameters, "steps" 3, and
                      the dropout / stochastic-depth probabilities torchvision
                      uses (kiln tests those separately: the comparisons below
                      run with p = 0).
  weights.safetensors torchvision's efficientnet_bX(num_classes=10).state_dict()
                      under torchvision's key names (F32; num_batches_tracked
                      I64), initialised after torch.manual_seed(0), then every
                      BatchNorm perturbed (weight ~ U(0.5, 1.5), bias ~ 0.1 N,
                      running_mean ~ 0.1 N, running_var ~ U(0.5, 1.5)) so that
                      eval mode is not the identity it is at init.
  input.safetensors   "input" F32 [4, 3, 64, 64] ~ N(0, 1); "labels" I64 [4].
  eval.safetensors    "logits" F32 [4, 10] of model.eval() on the input.
  train.safetensors   model.train() with every Dropout and StochasticDepth at
                      p = 0: "logits", "loss" [1] (CrossEntropyLoss with
                      label_smoothing 0.1, mean over the batch), "grad.<name>"
                      for every parameter after loss.backward(), and
                      "state.<buffer>" for every BatchNorm running_mean /
                      running_var / num_batches_tracked after that forward.
  sgd.safetensors     from weights.safetensors again, 3 steps of: train-mode
  adamw.safetensors   forward on the same batch, loss, backward,
                      optimizer.step(), zero_grad(), with
                      SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
                      / AdamW(lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                      weight_decay=0.05), one parameter group (weight decay on
                      every parameter): "param.<name>" and "state.<buffer>"
                      after step 3, "losses" F32 [3] (the loss of each step,
                      before its update).

Tolerances the C tests use, and why. Float32 addition is not associative and
the two sides sum in different orders: PyTorch's oneDNN convolutions block
their reductions over channels and kernel taps differently from kiln's
im2col + OpenBLAS GEMM, and split them differently over threads. With ~100
layers the rounding differences (~1e-7 relative each) compound, so:
  - logits: max relative error <= 1e-4 (relative to the largest |logit|);
  - gradients: <= 1e-3. They pass through more reductions than the forward
    pass: every BatchNorm backward sums over N*H*W per channel (twice: for
    dgamma/dbeta and inside dx), conv filter gradients sum over N*OH*OW, and
    the backward chain is as deep again as the forward one;
  - the optimizer runs compound both over 3 steps (AdamW divides by
    sqrt(v) + eps, which amplifies tiny gradient differences in elements
    whose gradient is near zero), so parameters are compared with the
    gradient tolerance and losses with the logits one.

Files are written in the safetensors format by hand (no safetensors package
in Debian): 8-byte little-endian header length, JSON header
{name: {dtype, shape, data_offsets}} padded with spaces to a multiple of 8,
then the raw little-endian data; each file is written under a temporary name
and renamed.
"""

import argparse
import hashlib
import json
import os
import struct
import sys
import time

import torch
import torchvision
from torchvision.ops import StochasticDepth

VARIANTS = ("b0", "b3")
NUM_CLASSES = 10
BATCH = 4
SIZE = 64
LABEL_SMOOTHING = 0.1
STEPS = 3
SGD = {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4}
ADAMW = {"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.05}
FILES = ("meta.json", "weights.safetensors", "input.safetensors", "eval.safetensors",
         "train.safetensors", "sgd.safetensors", "adamw.safetensors")

ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
             torch.float64: "F64", torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8"}
ST_TORCH = {v: k for k, v in ST_DTYPES.items()}


def write_safetensors(path, tensors, metadata=None):
    """Write {name: tensor} in insertion order; returns the file size."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    chunks, offset = [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        if t.dtype == torch.bfloat16:
            raw = t.view(torch.int16).numpy().tobytes()
        else:
            raw = t.numpy().tobytes()
        header[name] = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in chunks:
            f.write(raw)
    os.replace(tmp, path)
    return 8 + len(text) + offset


def read_safetensors(path):
    """{name: tensor} of a safetensors file (the reader the C side mirrors)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        raw = bytearray(data[8 + n + begin:8 + n + end])
        dtype = ST_TORCH[info["dtype"]]
        t = torch.frombuffer(raw, dtype=dtype) if raw else torch.zeros(0, dtype=dtype)
        out[name] = t.reshape(info["shape"]).clone()
    return out


def build_model(variant):
    return getattr(torchvision.models, "efficientnet_" + variant)(num_classes=NUM_CLASSES)


def drop_probabilities(model):
    dropout = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    depth = [m.p for m in model.modules() if isinstance(m, StochasticDepth)]
    return dropout, depth


def disable_drop(model):
    for m in model.modules():
        if isinstance(m, (torch.nn.Dropout, StochasticDepth)):
            m.p = 0.0


def perturb_batchnorm(model, gen):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.normal_(0.0, 0.1, generator=gen)
                m.running_mean.normal_(0.0, 0.1, generator=gen)
                m.running_var.uniform_(0.5, 1.5, generator=gen)


def bn_settings(model):
    pairs = {(m.eps, m.momentum) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    if len(pairs) != 1:
        raise SystemExit("gen_nn_reference: BatchNorm layers differ in eps/momentum: %s" % pairs)
    return pairs.pop()


def buffers(model):
    return {"state." + k: v for k, v in model.named_buffers()}


def model_from(variant, weights):
    model = build_model(variant)
    model.load_state_dict(weights)
    disable_drop(model)
    return model


def train_reference(variant, weights, x, labels, loss_fn):
    model = model_from(variant, weights).train()
    logits = model(x)
    loss = loss_fn(logits, labels)
    loss.backward()
    out = {"logits": logits, "loss": loss.reshape(1)}
    out.update({"grad." + k: p.grad for k, p in model.named_parameters()})
    out.update(buffers(model))
    return out


def optimizer_run(variant, weights, x, labels, loss_fn, make_opt):
    model = model_from(variant, weights).train()
    opt = make_opt(model.parameters())
    losses = []
    for _ in range(STEPS):
        loss = loss_fn(model(x), labels)
        losses.append(loss.item())
        loss.backward()
        opt.step()
        opt.zero_grad()
    out = {"param." + k: p for k, p in model.named_parameters()}
    out.update(buffers(model))
    out["losses"] = torch.tensor(losses, dtype=torch.float32)
    return out


def generate(variant, vdir, stamp):
    os.makedirs(vdir, exist_ok=True)
    sizes = {}

    def save(name, tensors):
        sizes[name] = (len(tensors), write_safetensors(os.path.join(vdir, name), tensors))

    torch.manual_seed(0)
    model = build_model(variant)
    dropout, depth = drop_probabilities(model)
    eps, momentum = bn_settings(model)
    perturb_batchnorm(model, torch.Generator().manual_seed(1))
    save("weights.safetensors", model.state_dict())
    # Everything below starts from the file, as the C side does.
    weights = read_safetensors(os.path.join(vdir, "weights.safetensors"))
    for k, v in model.state_dict().items():
        assert torch.equal(weights[k], v), k

    gen = torch.Generator().manual_seed(2)
    x = torch.randn(BATCH, 3, SIZE, SIZE, generator=gen)
    labels = torch.randint(0, NUM_CLASSES, (BATCH,), generator=gen)
    save("input.safetensors", {"input": x, "labels": labels})

    model = model_from(variant, weights).eval()
    with torch.no_grad():
        save("eval.safetensors", {"logits": model(x)})

    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING)
    save("train.safetensors", train_reference(variant, weights, x, labels, loss_fn))
    save("sgd.safetensors", optimizer_run(variant, weights, x, labels, loss_fn,
                                          lambda p: torch.optim.SGD(p, **SGD)))
    save("adamw.safetensors", optimizer_run(
        variant, weights, x, labels, loss_fn,
        lambda p: torch.optim.AdamW(p, lr=ADAMW["lr"], betas=tuple(ADAMW["betas"]),
                                    eps=ADAMW["eps"], weight_decay=ADAMW["weight_decay"])))

    meta = {
        "variant": variant, "num_classes": NUM_CLASSES, "batch": BATCH, "size": SIZE,
        "label_smoothing": LABEL_SMOOTHING, "eps": eps, "momentum": momentum,
        "sgd": SGD, "adamw": ADAMW, "steps": STEPS,
        "weight_decay_on": "every parameter (one parameter group)",
        "dropout": dropout[0] if dropout else 0.0,
        # Block i of n gets p = prob * i / n; the constructor's prob back from the last.
        "stochastic_depth_prob": round(max(depth) * len(depth) / (len(depth) - 1), 12),
        "note": "dropout and stochastic depth disabled for the train-mode comparison (p=0); "
                "they are tested separately in kiln",
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "generator": stamp,
    }
    tmp = os.path.join(vdir, "meta.json.tmp")
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=1)
    os.replace(tmp, os.path.join(vdir, "meta.json"))
    return sizes


def up_to_date(vdir, stamp):
    try:
        with open(os.path.join(vdir, "meta.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return False
    return (meta.get("generator") == stamp and meta.get("torch") == torch.__version__
            and all(os.path.isfile(os.path.join(vdir, name)) for name in FILES))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--force", action="store_true", help="rewrite even if up to date")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    with open(os.path.abspath(__file__), "rb") as f:
        stamp = hashlib.sha256(f.read()).hexdigest()[:16]
    for variant in args.variants.split(","):
        vdir = os.path.join(args.out, variant)
        if not args.force and up_to_date(vdir, stamp):
            print("gen_nn_reference: %s up to date in %s" % (variant, vdir))
            continue
        start = time.monotonic()
        sizes = generate(variant, vdir, stamp)
        for name, (count, size) in sizes.items():
            print("gen_nn_reference: %s/%s: %d tensors, %.2f MB"
                  % (variant, name, count, size / 1e6))
        print("gen_nn_reference: %s done in %.1f s" % (variant, time.monotonic() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
