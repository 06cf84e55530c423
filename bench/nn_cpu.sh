#!/bin/bash
# bench/nn_cpu.sh — kiln's EfficientNet-B0 on the CPU against PyTorch's, same run.
#
# kiln:  build-bench/bench/bench_nn --device cpu --recipe cpu (lib/nn on the
#        CPU backend, THREADS threads).
# torch: bench/torch_effnet_cpu.py (Debian python3-torch + torchvision,
#        torchvision.models.efficientnet_b0, torch.set_num_threads(THREADS)).
# Same shapes, same work on both sides (10 classes, the same batch every step):
#   train 64x64 and 224x224, batch 32: forward in train mode (dropout and
#     stochastic depth on), cross-entropy with label smoothing 0.1, backward,
#     SGD(lr 0.1, momentum 0.9, Nesterov, weight decay 1e-4) -> img/s;
#   infer 64x64 and 224x224, batch 1: one eval-mode forward -> latency (ms).
# Each figure is the median of the timed iterations after untimed warm-up ones;
# the two sides alternate case by case so both see the same machine load.
# Ratios are kiln/torch throughput and torch/kiln latency (target >= 1.0x).
#
# Usage: bench/nn_cpu.sh                 (from anywhere)
# Env:   THREADS=2, TRAIN_ITERS=10 (64x64), TRAIN224_ITERS=3, INFER_ITERS=50,
#        BUILD=build-bench (the Release build directory),
#        WAIT_IDLE=1 to wait (up to 5 min) for an idle CPU before each side —
#        on a shared machine other processes make torch's OpenMP threads
#        spin and distort both sides far more than the 10 % noise of a quiet one,
#        SKIP_BUILD=1 to use build-bench as it is.
# Results are appended to bench/out/nn-cpu-results.txt (gitignored).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=/usr/bin/python3
OUT=bench/out
BUILD=${BUILD:-build-bench}
BENCH=$BUILD/bench/bench_nn
THREADS=${THREADS:-2}
TRAIN_ITERS=${TRAIN_ITERS:-10}
TRAIN224_ITERS=${TRAIN224_ITERS:-3}
INFER_ITERS=${INFER_ITERS:-50}
RESULTS=$OUT/nn-cpu-results.txt

die() { echo "bench/nn_cpu.sh: $*" >&2; exit 1; }

mkdir -p "$OUT"
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKILN_TESTS=OFF >/dev/null
    cmake --build "$BUILD" --target bench_nn >"$OUT/build-nn.log" 2>&1 ||
        { tail -20 "$OUT/build-nn.log" >&2; die "build failed (log: $OUT/build-nn.log)"; }
fi
[[ -x $BENCH ]] || die "$BENCH missing"
$PY -c 'import torch, torchvision' 2>/dev/null ||
    die "$PY cannot import torch/torchvision (apt-get install python3-torchvision)"

# The value of key=value in a line.
field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

# With WAIT_IDLE=1: wait until vmstat shows >= 85 % idle CPU (5 min at most).
wait_idle() {
    [[ ${WAIT_IDLE:-0} == 1 ]] || return 0
    local i idle
    for ((i = 0; i < 60; i++)); do
        idle=$(vmstat 2 2 | tail -1 | awk '{ print $15 }')
        ((idle >= 85)) && return 0
        sleep 3
    done
    echo "bench/nn_cpu.sh: warning: the CPU is still busy (idle ${idle} %)" >&2
}

# One case on both sides: mode size batch iters warmup; sets K_LINE, T_LINE.
run_case() {
    local args=(--mode "$1" --variant b0 --size "$2" --batch "$3" --threads "$THREADS"
                --iters "$4" --warmup "$5")
    wait_idle
    K_LINE=$("$BENCH" --device cpu --recipe cpu "${args[@]}") || die "bench_nn ${args[*]} failed"
    echo "  $K_LINE load=$(cut -d' ' -f1 /proc/loadavg)" >&2
    wait_idle
    T_LINE=$(OMP_NUM_THREADS=$THREADS $PY bench/torch_effnet_cpu.py "${args[@]}") ||
        die "torch_effnet_cpu.py ${args[*]} failed"
    echo "  $T_LINE load=$(cut -d' ' -f1 /proc/loadavg)" >&2
}

rows=()
train_row() { # size batch iters warmup
    run_case train "$1" "$2" "$3" "$4"
    local k t
    k=$(field img_s "$K_LINE")
    t=$(field img_s "$T_LINE")
    rows+=("$(awk -v s="$1" -v b="$2" -v k="$k" -v t="$t" -v kr="$(field rss_mb "$K_LINE")" \
        -v tr="$(field rss_mb "$T_LINE")" 'BEGIN {
        printf "%-22s %12.1f %12.1f %9.2fx %9.0f %9.0f", "train " s "x" s " bs" b " img/s",
               k, t, k / t, kr, tr }')")
}
infer_row() { # size iters warmup
    run_case infer "$1" 1 "$2" "$3"
    local k t
    k=$(field median_s "$K_LINE")
    t=$(field median_s "$T_LINE")
    rows+=("$(awk -v s="$1" -v k="$k" -v t="$t" -v kr="$(field rss_mb "$K_LINE")" \
        -v tr="$(field rss_mb "$T_LINE")" 'BEGIN {
        printf "%-22s %12.2f %12.2f %9.2fx %9.0f %9.0f", "infer " s "x" s " bs1 ms",
               k * 1000, t * 1000, t / k, kr, tr }')")
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
echo "running (THREADS=$THREADS) ..." >&2
train_row 64 32 "$TRAIN_ITERS" 2
train_row 224 32 "$TRAIN224_ITERS" 1
infer_row 64 "$INFER_ITERS" 5
infer_row 224 "$INFER_ITERS" 5

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
{
    echo "EfficientNet-B0, 10 classes, CPU, $THREADS threads, $(date -u +%Y-%m-%dT%H:%MZ)," \
         "$(nproc) cores ($cpu), torch $($PY -c 'import torch; print(torch.__version__)')"
    echo "load average before: $load_start, after: $(cut -d' ' -f1-3 /proc/loadavg)"
    printf '%-22s %12s %12s %10s %9s %9s\n' case kiln torch ratio "kiln MiB" "torch MiB"
    printf '%s\n' "${rows[@]}"
    echo "(ratio: kiln/torch img/s for training, torch/kiln latency for inference; target >= 1.0x)"
    echo
} | tee -a "$RESULTS"
