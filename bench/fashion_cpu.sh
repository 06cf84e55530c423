#!/bin/bash
# bench/fashion_cpu.sh — accuracy and time of a real training run: kiln against
# torchvision, the same recipe on the same data, on the CPU, in the same run.
#
# Data: Debian's Fashion-MNIST, all 60k training images and the 10k official
# test images. kiln gets them as a user would: a zip that arrives split
# (scripts/make-fashion-zip: train/<class>/ from the training file, val/<class>/
# = the official test file; PNG, lossless) -> kiln prepare --size SIZE
# --normalization dataset -> kiln train with bench/configs/fashion-full.yaml
# (the recipe of shared/anchors/torch_fashion.py: B0 from scratch, AdamW 2e-3,
# weight decay 0.05, OneCycleLR pct 0.1, batch 256, label smoothing 0.1, flips).
# kiln evaluates the val split after every epoch, which here is the 10k test
# set, as the torch script does with its test set.
# torch: bench/torch_fashion_cpu.py, the same recipe over the same files.
# The two sides run one after the other with THREADS threads each.
#
# Usage: bench/fashion_cpu.sh        Env: EPOCHS=4 SIZE=32 THREADS=2
#        PER_CLASS=6000 VAL_PER_CLASS=1000 (smaller for a rough run),
#        SEED=42 (kiln's --seed; torch gets SEED too), SKIP_TORCH=1, SKIP_KILN=1,
#        SKIP_BUILD=1.
# Results: a table on stdout, appended to bench/out/fashion-cpu-results.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=/usr/bin/python3
OUT=bench/out
BUILD=${BUILD:-build-bench}
EPOCHS=${EPOCHS:-4}
SIZE=${SIZE:-32}
THREADS=${THREADS:-2}
PER_CLASS=${PER_CLASS:-6000}
VAL_PER_CLASS=${VAL_PER_CLASS:-1000}
SEED=${SEED:-42}
RESULTS=$OUT/fashion-cpu-results.txt
WORK=$OUT/fashion-full
KILN=$BUILD/cli/kiln

die() { echo "bench/fashion_cpu.sh: $*" >&2; exit 1; }

mkdir -p "$OUT" "$WORK"
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKILN_TESTS=OFF >/dev/null
    cmake --build "$BUILD" --target kiln_cli >"$OUT/build-fashion.log" 2>&1 ||
        { tail -20 "$OUT/build-fashion.log" >&2; die "build failed (log: $OUT/build-fashion.log)"; }
fi
[[ -x $KILN ]] || die "$KILN missing"

zip=$WORK/fashion-${PER_CLASS}-${VAL_PER_CLASS}.zip
[[ -f $zip ]] || scripts/make-fashion-zip --out "$zip" --per-class "$PER_CLASS" \
    --val-per-class "$VAL_PER_CLASS" --png-fraction 1 >/dev/null
rm -rf "$WORK/ds" "$WORK/model" "$WORK/kiln.log" "$WORK/torch.log"
[[ ${SKIP_KILN:-0} == 1 ]] || "$KILN" prepare --zip "$zip" --out "$WORK/ds" --size "$SIZE" --normalization dataset \
    --workers "$THREADS" >/dev/null

# kiln: one log line per epoch (not a terminal); seconds since the start.
kiln_wall=""
if [[ ${SKIP_KILN:-0} != 1 ]]; then
    echo "kiln: B0 ${SIZE}x${SIZE}, $EPOCHS epochs, $PER_CLASS/class train, $VAL_PER_CLASS/class test, seed $SEED"
    start=$(date +%s.%N)
    "$KILN" train --data "$WORK/ds" --out "$WORK/model" --config bench/configs/fashion-full.yaml \
        --epochs "$EPOCHS" --threads "$THREADS" --warmup-epochs 0 --device cpu --seed "$SEED" 2>&1 |
        while IFS= read -r line; do
            if [[ $line == *"epoch "*"val loss"* ]]; then
                printf '%s t %.1f\n' "$line" "$(echo "$(date +%s.%N) - $start" | bc)"
            fi
        done | tee "$WORK/kiln.log"
    kiln_wall=$(echo "$(date +%s.%N) - $start" | bc)
fi

torch_wall=""
if [[ ${SKIP_TORCH:-0} != 1 ]]; then
    echo "torch: torchvision B0, the same recipe"
    start=$(date +%s.%N)
    limit=()
    ((PER_CLASS < 6000)) && limit+=(--per-class "$PER_CLASS")
    ((VAL_PER_CLASS < 1000)) && limit+=(--test-per-class "$VAL_PER_CLASS")
    $PY bench/torch_fashion_cpu.py --epochs "$EPOCHS" --size "$SIZE" --threads "$THREADS" \
        --seed "$SEED" "${limit[@]}" |
        tee "$WORK/torch.log"
    torch_wall=$(echo "$(date +%s.%N) - $start" | bc)
fi

# Table: per epoch, kiln's val (= test) accuracy and time next to torch's.
{
    echo "== $(date -u +%FT%TZ) B0 ${SIZE}x${SIZE} epochs=$EPOCHS threads=$THREADS seed=$SEED train=$((PER_CLASS * 10)) test=$((VAL_PER_CLASS * 10)) load=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "| epoch | kiln test acc | kiln s | torch test acc | torch s |"
    echo "|---|---|---|---|---|"
    for ((e = 1; e <= EPOCHS; e++)); do
        k=$(grep -m1 "epoch $e/" "$WORK/kiln.log" 2>/dev/null || true)
        ka=$(sed -n 's/.*val loss [0-9.]* acc \([0-9.]*\).*/\1/p' <<<"$k")
        kt=$(sed -n 's/.* t \([0-9.]*\)$/\1/p' <<<"$k")
        t=$(grep -m1 "^epoch $e " "$WORK/torch.log" 2>/dev/null || true)
        ta=$(sed -n 's/.*test_acc \([0-9.]*\).*/\1/p' <<<"$t")
        tt=$(sed -n 's/.* t \([0-9.]*\)$/\1/p' <<<"$t")
        echo "| $e | ${ka:--} | ${kt:--} | ${ta:--} | ${tt:--} |"
    done
    printf "wall (whole process): kiln %s s (prepare not included), torch %s s\n" \
        "$( [[ -n $kiln_wall ]] && printf %.0f "$kiln_wall" || echo -)" \
        "$( [[ -n $torch_wall ]] && printf %.0f "$torch_wall" || echo -)"
} | tee -a "$RESULTS"
