#!/usr/bin/env bash
# The main job on the embedded default, end to end on this machine:
# installs what is missing, builds kiln, makes a zip of class folders from
# Debian's Fashion-MNIST (or takes yours), and prepares the dataset.
# Usage: scripts/run-local.sh [--zip your.zip] [--per-class N] [--size S] [--workers N]
# Data lives under .kiln/ in the repository.
set -euo pipefail
cd "$(dirname "$0")/.."

zip="" per_class=300 size=64 workers=$(nproc)
while [ $# -gt 0 ]; do
  case "$1" in
    --zip) zip="$2"; shift 2 ;;
    --per-class) per_class="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "run-local: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done

scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DKILN_TESTS=OFF >/dev/null
cmake --build build
kiln=build/cli/kiln
mkdir -p .kiln/data

if [ -z "$zip" ]; then
  zip=.kiln/data/fashion-mnist.zip
  scripts/make-fashion-zip --out "$zip" --per-class "$per_class"
fi

echo "== kiln prepare"
"$kiln" prepare --zip "$zip" --out .kiln/data/dataset --size "$size" --workers "$workers"
echo
echo "dataset: .kiln/data/dataset (manifest.json lists classes, splits and skipped files)"
