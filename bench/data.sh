#!/bin/bash
# bench/data.sh — kiln's data pipeline against torchvision's, same images, same run.
#
# kiln:  `kiln prepare` (zip -> JPEG decode with DCT scaling -> shorter side 224,
#        centre crop -> shards) + one epoch of kiln_loader (RandomResizedCrop(224)
#        + flip + normalise, batches of 128) via build-bench/bench/bench_loader.
#        kiln img/s = images / (prepare wall time + loader wall time).
# torch: torchvision ImageFolder + PIL + RandomResizedCrop(224) + flip + ToTensor +
#        Normalize, DataLoader(batch 128, shuffle), one epoch over the extracted
#        folder, best of 2 (bench/torch_imagefolder.py).
# Both decode, crop, flip and normalise each image once. One core: kiln threads 1
# and torch workers 0, both under `taskset -c 0`; two cores: kiln threads 2 and
# torch workers 2, unpinned. kiln also takes the best of REPEATS runs.
#
# Usage: bench/data.sh            (from anywhere; works in the repository root)
# Env:   N=2048 images, REPEATS=2, EPOCHS=10 (the training-run table),
#        SKIP_BUILD=1 to use build-bench as it is.
# Data and results stay in bench/out/ (gitignored); photos are reused.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=/usr/bin/python3
OUT=bench/out
BUILD=build-bench
N=${N:-2048}
REPEATS=${REPEATS:-2}
EPOCHS=${EPOCHS:-10}
KILN=$BUILD/cli/kiln
LOADER=$BUILD/bench/bench_loader
RESULTS=$OUT/data-results.txt

die() { echo "bench/data.sh: $*" >&2; exit 1; }

build() {
    if [[ ${SKIP_BUILD:-0} != 1 ]]; then
        cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKILN_TESTS=OFF >/dev/null
        cmake --build "$BUILD" >"$OUT/build.log" 2>&1 ||
            { tail -20 "$OUT/build.log" >&2; die "build failed (log: $OUT/build.log)"; }
    fi
    [[ -x $KILN && -x $LOADER ]] || die "$KILN or $LOADER missing"
    "$KILN" prepare --help >/dev/null 2>&1 || die "'$KILN prepare --help' fails"
}

now() { date +%s.%N; }
# Seconds between two `now` stamps.
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", b - a }'; }
# a / b with one decimal.
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b > 0 ? a / b : 0) }'; }
# The value of key=value in a line.
field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

# One kiln run with W threads under the CPU pin in $PIN: sets PREP_S and LOAD_S.
kiln_once() {
    local w=$1 ds=$OUT/ds-$1 t0 t1 line
    rm -rf "$ds"
    sync
    t0=$(now)
    $PIN "$KILN" prepare --zip "$OUT/photos.zip" --out "$ds" --size 224 --val 0 --test 0 \
        --workers "$w" >"$OUT/prepare-$w.log" 2>&1 ||
        { cat "$OUT/prepare-$w.log" >&2; die "kiln prepare failed"; }
    t1=$(now)
    PREP_S=$(elapsed "$t0" "$t1")
    line=$($PIN "$LOADER" "$ds" --threads "$w" --batch 128 --epochs 1 --size 224) ||
        die "bench_loader failed"
    t0=$(now)
    LOAD_S=$(elapsed "$t1" "$t0")
    LOADER_LINE=$line
    [[ $(field images "$line") == "$N" ]] || die "loader saw $(field images "$line") images, not $N"
}

# Best of REPEATS kiln runs: sets K_TOTAL, K_PREP, K_LOAD (seconds).
kiln_best() {
    local w=$1 r
    K_TOTAL=""
    for ((r = 0; r < REPEATS; r++)); do
        kiln_once "$w"
        echo "  kiln threads=$w run $((r + 1)): prepare ${PREP_S} s, loader ${LOAD_S} s" \
             "(${LOADER_LINE})" >&2
        local tot
        tot=$(awk -v a="$PREP_S" -v b="$LOAD_S" 'BEGIN { printf "%.4f", a + b }')
        if [[ -z $K_TOTAL ]] || awk -v a="$tot" -v b="$K_TOTAL" 'BEGIN { exit !(a < b) }'; then
            K_TOTAL=$tot K_PREP=$PREP_S K_LOAD=$LOAD_S
        fi
    done
    rm -rf "$OUT/ds-$w"
}

# torch with W workers under $PIN: sets T_RATE (img/s).
torch_run() {
    local line
    line=$($PIN "$PY" bench/torch_imagefolder.py "$OUT/photos" --workers "$1" --repeats 2) ||
        die "torch_imagefolder.py failed"
    echo "  $line" >&2
    [[ $(field images "$line") == "$N" ]] || die "torch saw $(field images "$line") images, not $N"
    T_RATE=$(field img_s "$line")
}

# One configuration: label, kiln threads, torch workers, pin command.
measure() {
    local label=$1 kt=$2 tw=$3
    PIN=$4
    echo "== $label: kiln threads=$kt, torch workers=$tw${PIN:+, $PIN}" >&2
    kiln_best "$kt"
    torch_run "$tw"
    local k_rate ratio
    k_rate=$(div "$N" "$K_TOTAL")
    ratio=$(awk -v a="$k_rate" -v b="$T_RATE" 'BEGIN { printf "%.2f", a / b }')
    ROWS+=("$(printf '%-8s %10s %11s %7sx %18s %15s' "$label" "$k_rate" "$T_RATE" "$ratio" \
        "$(div "$N" "$K_PREP")" "$(div "$N" "$K_LOAD")")")
    RATIOS+=("$ratio")
    # A training run of EPOCHS epochs: kiln prepares once and loads every
    # epoch; torch decodes every epoch. From the times measured above.
    local kr_e ratio_e
    kr_e=$(awk -v n="$N" -v e="$EPOCHS" -v p="$K_PREP" -v l="$K_LOAD" \
        'BEGIN { printf "%.1f", n * e / (p + e * l) }')
    ratio_e=$(awk -v a="$kr_e" -v b="$T_RATE" 'BEGIN { printf "%.2f", a / b }')
    EROWS+=("$(printf '%-8s %10s %11s %7sx' "$label" "$kr_e" "$T_RATE" "$ratio_e")")
    CORES+=("$5")
    KRATES+=("$k_rate")
    TRATES+=("$T_RATE")
}

report() {
    local i
    echo "kiln data pipeline vs torchvision ImageFolder: $N JPEGs 640x480 -> 224, batch 128"
    echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
    echo "kiln img/s = images / (prepare + one loader epoch), best of $REPEATS; torch: best of 2 epochs"
    printf '%-8s %10s %11s %8s %18s %15s\n' config "kiln img/s" "torch img/s" ratio \
        "kiln prepare img/s" "kiln load img/s"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "a training run of $EPOCHS epochs (kiln: prepare once + $EPOCHS loader epochs;" \
         "torch: $EPOCHS epochs), img/s per epoch, from the times above:"
    printf '%-8s %10s %11s %8s\n' config "kiln img/s" "torch img/s" ratio
    printf '%s\n' "${EROWS[@]}"
    echo
    for i in "${!RATIOS[@]}"; do
        printf 'one epoch, per core, %s: kiln %s vs torch %s img/s/core = %sx (target >= 3x: %s)\n' \
            "${CORES[$i]}" "$(div "${KRATES[$i]}" "${CORES[$i]%% *}")" \
            "$(div "${TRATES[$i]}" "${CORES[$i]%% *}")" "${RATIOS[$i]}" \
            "$(awk -v r="${RATIOS[$i]}" 'BEGIN { print (r >= 3 ? "met" : "NOT met") }')"
    done
}

main() {
    mkdir -p "$OUT"
    build
    "$PY" bench/make_photos.py --n "$N" --out "$OUT" >&2
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews both sides)" >&2
    ROWS=() EROWS=() RATIOS=() CORES=() KRATES=() TRATES=()
    measure "1 core" 1 0 "taskset -c 0" "1 core"
    if [[ $(nproc) -ge 2 ]]; then
        measure "2 cores" 2 2 "" "2 cores"
    fi
    report | tee "$RESULTS"
}

main "$@"
