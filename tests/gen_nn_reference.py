#!/usr/bin/python3
"""PyTorch's reference outputs for kiln's nn engine (torchvision EfficientNet).

Run by ctest as the fixture `nn_reference` (Debian's python3-torch 1.13 and
python3-torchvision 0.14, CPU, /usr/bin/python3):

    /usr/bin/python3 tests/gen_nn_reference.py --out <dir> [--force]
    /usr/bin/python3 tests/gen_nn_reference.py --conditioning   # see below

The C tests (test_nn_torch*) find <dir> in $KILN_NN_REF_DIR. Everything is
deterministic (fixed seeds, one thread) and takes a few seconds. When
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
                      SGD(lr=3e-6, momentum=0.9, nesterov=True, weight_decay=0.1)
                      / AdamW(lr=3e-6, betas=(0.9, 0.999), eps=1e-8,
                      weight_decay=0.05), one parameter group (weight decay on
                      every parameter): "param1.<name>" after step 1,
                      "param.<name>" and "state.<buffer>" after step 3, "losses"
                      F32 [3] (the loss of each step, before its update).

Why such small learning rates. On this batch (4 images of 64x64, so the last
stages' BatchNorms see 16 values per channel) the gradients are huge: norm
~900 for b0, and up to 650 x the weights for the depthwise convolutions,
whose torchvision init is small. One SGD step at lr 1e-5 already takes the
loss from 4.5 to 1.8; at lr 0.1 (or 0.01) 3 steps blow up (4.5 -> 8.5 ->
18.1) and float32 no longer reproduces float64, so no float32 program can be
compared with torch there. At 3e-6 the loss still falls (b0 SGD 4.50, 1.89,
0.71; AdamW 4.50, 3.50, 2.67) and torch's own float32 run matches its
float64 run far inside the C tests' tolerances (`--conditioning` prints
that comparison, with the C tests' error measures). Weight decay is larger
than usual so that 3 steps move the weights by more than float32's
resolution (lr x wd x p must exceed a few ulps of p): the C test then fails
when kiln drops it.

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
  - parameters after 1 and 3 steps: 1e-3 of the tensor's update (p - p0)
    beyond float32 rounding; AdamW's elements whose first gradient is within
    the gradient tolerance of 0 only within Adam's step bound, and AdamW
    after 3 steps in RMS (test_nn_torch.c explains each); the loss before
    step 1: 1e-4, before steps 2 and 3: 1e-3 of its change since step 1.

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
SGD = {"lr": 3e-6, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}
ADAMW = {"lr": 3e-6, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.05}
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


def optimizer_run(variant, weights, x, labels, loss_fn, make_opt, dtype=torch.float32):
    """STEPS optimizer steps on one batch; parameters after step 1 and the last."""
    model = model_from(variant, weights).train().to(dtype)
    x = x.to(dtype)
    opt = make_opt(model.parameters())
    losses = []
    out = {}
    for step in range(STEPS):
        loss = loss_fn(model(x), labels)
        losses.append(loss.item())
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step == 0:
            out.update({"param1." + k: p.detach().clone() for k, p in model.named_parameters()})
    out.update({"param." + k: p for k, p in model.named_parameters()})
    out.update(buffers(model))
    out["losses"] = torch.tensor(losses, dtype=torch.float32)
    return out


def make_sgd(params):
    return torch.optim.SGD(params, **SGD)


def make_adamw(params):
    return torch.optim.AdamW(params, lr=ADAMW["lr"], betas=tuple(ADAMW["betas"]),
                             eps=ADAMW["eps"], weight_decay=ADAMW["weight_decay"])


def reference_model(variant):
    torch.manual_seed(0)
    model = build_model(variant)
    perturb_batchnorm(model, torch.Generator().manual_seed(1))
    return model


def reference_batch():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(BATCH, 3, SIZE, SIZE, generator=gen)
    labels = torch.randint(0, NUM_CLASSES, (BATCH,), generator=gen)
    return x, labels


def generate(variant, vdir, stamp):
    os.makedirs(vdir, exist_ok=True)
    sizes = {}

    def save(name, tensors):
        sizes[name] = (len(tensors), write_safetensors(os.path.join(vdir, name), tensors))

    model = reference_model(variant)
    dropout, depth = drop_probabilities(model)
    eps, momentum = bn_settings(model)
    save("weights.safetensors", model.state_dict())
    # Everything below starts from the file, as the C side does.
    weights = read_safetensors(os.path.join(vdir, "weights.safetensors"))
    for k, v in model.state_dict().items():
        assert torch.equal(weights[k], v), k

    x, labels = reference_batch()
    save("input.safetensors", {"input": x, "labels": labels})

    model = model_from(variant, weights).eval()
    with torch.no_grad():
        save("eval.safetensors", {"logits": model(x)})

    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING)
    save("train.safetensors", train_reference(variant, weights, x, labels, loss_fn))
    save("sgd.safetensors", optimizer_run(variant, weights, x, labels, loss_fn, make_sgd))
    save("adamw.safetensors", optimizer_run(variant, weights, x, labels, loss_fn, make_adamw))

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


# --- --conditioning: torch's float32 run against its float64 run ------------
#
# The error measures of test_nn_torch.c, applied to torch float32 (as "got")
# against torch float64 (as "want"): if float32 itself cannot follow the
# float64 trajectory within the C tests' tolerances, no float32 program can.

TOL_GRAD = 1e-3
ROUNDINGS = 2
ADAM_SLACK = 1e-4


def f32_ulp(x):
    _, e = torch.frexp(x.abs().float())
    return torch.pow(2.0, (e - 24).double())


def adam_step_bound(beta1, beta2, t):
    s = 0.0
    for i in range(1, t + 1):
        w = (1 - beta1) * beta1 ** (t - i) / (1 - beta1 ** t)
        u = (1 - beta2) * beta2 ** (t - i) / (1 - beta2 ** t)
        s += w * w / u
    return s ** 0.5


def update_error(p0, got, want, steps, grad=None, grad_floor=0.0):
    """(error, Adam bound ratio) of one tensor, as test_nn_torch.c's check_param."""
    p0, got, want = p0.double(), got.double(), want.double()
    update = want - p0
    d = (got - want).abs()
    ulps = ROUNDINGS * steps * f32_ulp(torch.maximum(torch.maximum(p0.abs(), want.abs()),
                                                     got.abs()))
    decided = torch.ones_like(d, dtype=torch.bool)
    over = 0.0
    if grad is not None:
        thr = TOL_GRAD * max(grad_floor, grad.abs().max().item())
        decided = grad.abs() > thr
        step = adam_step_bound(*ADAMW["betas"], steps)
        bound = 2 * ADAMW["lr"] * step * steps * (1 + ADAM_SLACK) + ulps
        over = (d / bound).max().item()
    excess = (d - ulps).clamp(min=0)[decided]
    update = update[decided]
    if excess.numel() == 0:
        return 0.0, over
    if grad is not None and steps > 1:
        num, den = excess.norm().item(), update.norm().item()
    else:
        num, den = excess.max().item(), update.abs().max().item()
    return (num / den if den > 0 else (float("inf") if num > 0 else 0.0)), over


def conditioning(variant):
    weights = {k: v.clone() for k, v in reference_model(variant).state_dict().items()}
    x, labels = reference_batch()
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING)
    grads = train_reference(variant, weights, x, labels, loss_fn)
    for name, make in (("SGD", make_sgd), ("AdamW", make_adamw)):
        r32 = optimizer_run(variant, weights, x, labels, loss_fn, make)
        r64 = optimizer_run(variant, weights, x, labels, loss_fn, make, torch.float64)
        l32, l64 = r32["losses"].tolist(), r64["losses"].tolist()
        later = max(abs(l32[s] - l64[s]) / abs(l64[s] - l64[0]) for s in range(1, STEPS))
        print("%s %s losses float32 %s float64 %s: step 1 %.3g relative, later %.3g of "
              "their change" % (variant, name, ["%.6f" % v for v in l32],
                                ["%.6f" % v for v in l64], abs(l32[0] - l64[0]) / abs(l64[0]),
                                later))
        for prefix, steps in (("param1.", 1), ("param.", 3)):
            worst, bound = (0.0, ""), (0.0, "")
            for key in (k for k in r64 if k.startswith(prefix)):
                pname = key[len(prefix):]
                g = grads["grad." + pname] if name == "AdamW" else None
                floor = 0.0
                if g is not None and pname.endswith(".bias"):
                    wkey = "grad." + pname[:-4] + "weight"
                    floor = grads[wkey].abs().max().item() if wkey in grads else 0.0
                err, over = update_error(weights[pname], r32[key].detach(),
                                         r64[key].detach(), steps, g, floor)
                worst = max(worst, (err, pname))
                bound = max(bound, (over, pname))
            print("%s %s step %d: worst %s %.3g%s" % (
                variant, name, steps, worst[1], worst[0],
                ", Adam bound %s %.3g" % (bound[1], bound[0]) if name == "AdamW" else ""))
        stats = max(((r32[k] - r64[k]).abs().max().item() / r64[k].abs().max().item(), k)
                    for k in r64 if k.startswith("state.") and r64[k].is_floating_point())
        print("%s %s running stats: worst %s %.3g" % (variant, name, stats[1], stats[0]))


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
    parser.add_argument("--out", help="output directory")
    parser.add_argument("--force", action="store_true", help="rewrite even if up to date")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--conditioning", action="store_true",
                        help="write nothing; compare torch's float32 optimizer runs with "
                             "float64 ones (minutes)")
    args = parser.parse_args()
    # One thread: with two, OpenMP's spinning barriers made a run take 20 s
    # instead of 1 whenever other processes held the machine's cores.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    if args.conditioning:
        for variant in args.variants.split(","):
            conditioning(variant)
        return 0
    if not args.out:
        parser.error("--out is required")
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
