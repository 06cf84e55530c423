#!/bin/bash
# bench/gpu/run-device.sh — on the GPU machine: every GPU test of the CUDA
# backend, then kiln's EfficientNet speed next to PyTorch's in the same run.
#
# Prepared here with bench/gpu/pack.sh (it builds and bundles the binaries
# and the libraries the machine lacks into .gpu-carry/kiln-gpu.tar.xz), then
# run from the device tool as ONE call (15 minutes of device time in all):
#
#   run(command="bash bench/gpu/run-device.sh", carry=[".gpu-carry"], timeout_s=560)
#
# Phases (each step has its own timeout, so the call always returns):
#   1. environment: nvidia-smi, where CUDA/cuDNN/cuBLAS libraries are, that
#      libkiln_cuda.so resolves every library;
#   2. tests: test_gpu, test_nn_cuda_host, test_nn_cuda_ops,
#      test_nn_cuda_model, the bf16 mixed-precision ones (test_nn_cuda_bf16,
#      test_nn_cuda_bf16_model), test_nn_cuda_ops again with TF32 — a
#      SKIPPED line counts as a failure here;
#   3. speed (SKIP_BENCH=1 leaves it out): bench_nn --device cuda --recipe
#      gpu for B0@224 bs128 training (fp32 and TF32), B3@300 bs64 training
#      (TF32), B0@224 inference bs1 and bs64, the same four in bf16 mixed
#      precision (--precision bf16, fewer iterations), then torch_effnet.py's
#      eager measurements (its --compile and data-loader parts left out for
#      time).
# Env: MEMCHECK=1 also runs test_nn_cuda_ops under compute-sanitizer;
# BF16=0 leaves the bf16 tests and figures out (for a short run).
# $OUT (what the device tool brings back): summary.txt, run.log, logs.tar.gz.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/kiln-gpu-out}
mkdir -p "$OUT"
LOG=$OUT/run.log
exec > >(tee "$LOG") 2>&1
B=/tmp/kiln-gpu
# The device tool brings back 8 files at most: the per-step logs go into
# logs.tar.gz at the end; run.log holds them all anyway.
LOGS=/tmp/kiln-gpu-logs
rm -rf "$LOGS" && mkdir -p "$LOGS"
trap 'tar -C /tmp -czf "$OUT/logs.tar.gz" kiln-gpu-logs 2>/dev/null' EXIT
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }

[[ -f .gpu-carry/kiln-gpu.tar.xz ]] || { echo "no .gpu-carry/kiln-gpu.tar.xz: run bench/gpu/pack.sh here and carry .gpu-carry"; exit 2; }
rm -rf "$B" && tar -C /tmp -xJf .gpu-carry/kiln-gpu.tar.xz || exit 2
note "bundle revision $(cat $B/REVISION)"
head=$(git rev-parse HEAD 2>/dev/null || true)
[[ -z $head || $head == "$(cat $B/REVISION)" ]] || note "WARNING: the bundle was built at another revision than this tree's $head (re-run bench/gpu/pack.sh)"

# --- 1. environment ---------------------------------------------------------
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$SUMMARY"
libdirs=""
for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcudnn.so.9; do
    hit=$( (ls /usr/lib/x86_64-linux-gnu/$lib /usr/local/cuda/lib64/$lib \
               /usr/local/cuda/targets/x86_64-linux/lib/$lib 2>/dev/null;
            find /usr /opt /lib -name "$lib" 2>/dev/null) | head -1)
    [[ -n $hit ]] || { note "MISSING $lib on this machine"; continue; }
    note "$lib: $hit"
    libdirs="$libdirs:$(dirname "$hit")"
done
export LD_LIBRARY_PATH="$B/lib$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# -r: every cuDNN/cuBLAS symbol the module calls must exist in this machine's versions.
if ldd -r "$B/bin/libkiln_cuda.so" 2>&1 | grep -E "not found|undefined symbol"; then
    note "FAIL: libkiln_cuda.so has unresolved libraries or symbols (above)"
fi
for f in "$B"/bin/test_* "$B"/bin/bench_nn; do
    ldd "$f" | grep -q "not found" && { note "FAIL: $(basename $f) misses:"; ldd "$f" | grep "not found"; }
done

# --- 2. tests ---------------------------------------------------------------
export KILN_TEST_FAKE_CUDA_MODULE=$B/bin/libkiln_fake_cuda_module.so
failed=0
run_test() { # name timeout [label wrapper...]
    local name=$1 limit=$2 label=${3:-}
    shift 2
    (($# > 0)) && shift
    local t0=$SECONDS log=$LOGS/$name${label:+-$label}.log
    timeout "$limit" "$@" "$B/bin/$name" > "$log" 2>&1
    local rc=$?
    cat "$log"
    local verdict=PASS
    if ((rc != 0)); then verdict="FAIL (exit $rc)"; fi
    if grep -q "SKIPPED" "$log"; then verdict="FAIL (skipped on the GPU machine)"; fi
    [[ $verdict == PASS ]] || failed=$((failed + 1))
    note "test $name${label:+ ($label)}: $verdict in $((SECONDS - t0)) s"
    grep -E "^\[  FAILED  \] test|^ERROR:|^SKIPPED:" "$log" | sort -u | head -20 >> "$SUMMARY"
}
run_test test_gpu 60
run_test test_nn_cuda_host 60
run_test test_nn_cuda_ops 240
run_test test_nn_cuda_model 300
# bf16 mixed precision (activations bf16 NHWC) against the cpu-bf16 oracle.
if [[ ${BF16:-1} == 1 ]]; then
    run_test test_nn_cuda_bf16 180
    run_test test_nn_cuda_bf16_model 240
fi
# Step graphs on the GPU: training and serving as CUDA graphs vs eager.
run_test test_nn_graph_check 300
# TF32 tensor cores for conv and matmul (looser tolerances, see the test).
run_test test_nn_cuda_ops 240 tf32 env KILN_CUDA_TF32=1
if [[ ${MEMCHECK:-0} == 1 ]] && command -v compute-sanitizer >/dev/null; then
    run_test test_nn_cuda_ops 400 memcheck compute-sanitizer --tool memcheck --error-exitcode 9
fi
note "tests failed: $failed"

# --- 3. speed: kiln, then PyTorch, same machine, same run ---------------------
if [[ ${SKIP_BENCH:-0} == 1 ]]; then exit $((failed > 0)); fi
# bench_nn prints one "kiln mode=... tf32=... img_s=... ms=..." line (or
# its error, which then lands in the summary as the line).
bench() { # bench_nn args
    local line
    line=$(timeout 180 "$B/bin/bench_nn" --device cuda --recipe gpu "$@" 2>&1 | tail -1)
    note "$line"
}
bench --tf32 0 --mode train --variant b0 --size 224 --batch 128
bench --tf32 1 --mode train --variant b0 --size 224 --batch 128
bench --tf32 1 --mode train --variant b3 --size 300 --batch 64 --iters 10
bench --tf32 0 --mode infer --variant b0 --size 224 --batch 1 --iters 50
bench --tf32 1 --mode infer --variant b0 --size 224 --batch 64 --iters 20
# The same as CUDA graphs (one launch per step).
bench --tf32 1 --graphs 1 --mode train --variant b0 --size 224 --batch 128
bench --tf32 0 --graphs 1 --mode infer --variant b0 --size 224 --batch 1 --iters 50
# bf16 mixed precision (tensor cores, NHWC); fewer iterations to stay in the budget.
if [[ ${BF16:-1} == 1 ]]; then
    bench --precision bf16 --mode train --variant b0 --size 224 --batch 128 --iters 10
    bench --precision bf16 --mode train --variant b3 --size 300 --batch 64 --iters 6
    bench --precision bf16 --mode infer --variant b0 --size 224 --batch 1 --iters 30
    bench --precision bf16 --mode infer --variant b0 --size 224 --batch 64 --iters 10
fi
# torch_effnet.py up to its data-loader part (which would make 2048 JPEGs).
PYTHONUNBUFFERED=1 timeout 300 python3 - "$B/torch_effnet.py" <<'PY' 2>&1 | tee "$LOGS/torch.log"
import sys
src = open(sys.argv[1]).read()
cut = src.find("# data pipeline anchor")
exec(compile(src[:cut] if cut > 0 else src, sys.argv[1], "exec"), {"__name__": "__main__"})
PY
grep -E "img/s|ms$" "$LOGS/torch.log" | sed 's/^/torch /' >> "$SUMMARY"
# kiln / torch, like for like (fp32 with TF32 convolutions is torch's default).
python3 - "$SUMMARY" <<'PY' | tee -a "$SUMMARY"
import re, sys
kiln, torch = {}, {}
for line in open(sys.argv[1]):
    if line.startswith("kiln mode="):
        f = dict(kv.split("=", 1) for kv in line.split()[1:])
        key = (f["mode"], f["variant"], f["size"], f["batch"], f["tf32"], f.get("graphs", "0"))
        kiln[key + ((f.get("precision", "fp32"),) if f.get("precision", "fp32") != "fp32" else ())] = f
    elif line.startswith("torch "):
        m = re.match(r"torch (.+?)\s+([0-9.]+) (img/s|ms)$", line.strip())
        if m:
            torch[m.group(1).strip()] = float(m.group(2))
pairs = [
    ("train b0@224 bs128: kiln fp32 / torch fp32(tf32 conv)", ("train", "b0", "224", "128", "0", "0"), "train b0@224 bs128 fp32(tf32 conv) eager", "img_s", 1),
    ("train b0@224 bs128: kiln tf32 / torch fp32(tf32 conv)", ("train", "b0", "224", "128", "1", "0"), "train b0@224 bs128 fp32(tf32 conv) eager", "img_s", 1),
    ("train b0@224 bs128: kiln tf32 graphs / torch fp32(tf32 conv)", ("train", "b0", "224", "128", "1", "1"), "train b0@224 bs128 fp32(tf32 conv) eager", "img_s", 1),
    ("train b3@300 bs64: kiln tf32 / torch fp32", ("train", "b3", "300", "64", "1", "0"), "train b3@300 bs64 fp32 eager", "img_s", 1),
    ("infer b0@224 bs1: torch / kiln latency (fp32)", ("infer", "b0", "224", "1", "0", "0"), "infer b0@224 bs1 fp32 latency", "ms", -1),
    ("infer b0@224 bs1: torch / kiln latency (fp32, graphs)", ("infer", "b0", "224", "1", "0", "1"), "infer b0@224 bs1 fp32 latency", "ms", -1),
    # kiln bf16 against torch's bf16 autocast lines, where torch_effnet.py prints them.
    ("train b0@224 bs128: kiln bf16 / torch bf16", ("train", "b0", "224", "128", "0", "0", "bf16"), "train b0@224 bs128 bf16 channels_last eager", "img_s", 1),
    ("train b3@300 bs64: kiln bf16 / torch bf16", ("train", "b3", "300", "64", "0", "0", "bf16"), "train b3@300 bs64 bf16 channels_last eager", "img_s", 1),
    ("infer b0@224 bs1: torch / kiln latency (bf16)", ("infer", "b0", "224", "1", "0", "0", "bf16"), "infer b0@224 bs1 bf16 cl latency", "ms", -1),
    ("train b0@224 bs128: kiln bf16 / kiln tf32", ("train", "b0", "224", "128", "0", "0", "bf16"), None, "img_s", 1),
]
for label, kk, tk, field, sense in pairs:
    if tk is None:  # kiln against itself: bf16 over TF32
        base = ("train", "b0", "224", "128", "1", "0")
        if kk in kiln and base in kiln:
            print(f"ratio {label}: {float(kiln[kk][field]) / float(kiln[base][field]):.2f}x")
        else:
            print(f"ratio {label}: missing (kiln figure)")
    elif kk in kiln and tk in torch:
        k = float(kiln[kk][field])
        print(f"ratio {label}: {(k / torch[tk]) if sense > 0 else (torch[tk] / k):.2f}x")
    else:
        print(f"ratio {label}: missing ({'kiln' if kk not in kiln else 'torch'} figure)")
PY
echo "==== summary"
cat "$SUMMARY"
exit $((failed > 0))
