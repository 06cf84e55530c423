#!/usr/bin/env bash
# The main job on the embedded default, end to end on this machine:
# installs what is missing, builds kiln, makes a zip of class folders from
# Debian's Fashion-MNIST (or takes yours), uploads it to a local S3 server
# (s3rver on 127.0.0.1, standing in for MinIO) with `kiln data push`,
# downloads it as the pipeline's first step does, prepares the dataset, starts
# kiln-tracking (the embedded MLflow), trains EfficientNet-B0 on the CPU with
# the run recorded in MLflow, and evaluates the model package on the test split.
# Usage: scripts/run-local.sh [--zip your.zip] [--per-class N] [--size S] [--workers N] [--epochs N]
# Data lives under .kiln/ in the repository; the servers are stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

zip="" per_class=300 size=64 workers=$(nproc) epochs=3
while [ $# -gt 0 ]; do
  case "$1" in
    --zip) zip="$2"; shift 2 ;;
    --per-class) per_class="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    --epochs) epochs="$2"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "run-local: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done

scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DKILN_TESTS=OFF >/dev/null
cmake --build build
kiln=build/cli/kiln
mkdir -p .kiln/data .kiln/s3

if [ -z "$zip" ]; then
  zip=.kiln/data/fashion-mnist.zip
  scripts/make-fashion-zip --out "$zip" --per-class "$per_class"
fi

# A local S3 server on a free loopback port, stopped however this script ends.
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
NODE_OPTIONS=--openssl-legacy-provider .tools/node_modules/.bin/s3rver --directory .kiln/s3 \
  --port "$port" --address 127.0.0.1 --silent >.kiln/s3rver.log 2>&1 &
s3pid=$!
trap 'kill $s3pid 2>/dev/null || true' EXIT
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_ENDPOINT_URL="http://127.0.0.1:$port"
for _ in $(seq 50); do
  "$kiln" s3 mb s3://ml-data --max-retries 0 >/dev/null 2>&1 && break
  sleep 0.2
done

echo "== kiln data push (checks the dataset, then uploads it)"
"$kiln" data push "$zip" s3://ml-data/dataset.zip --size "$size" --workers "$workers"
echo "== kiln s3 cp (the pipeline's download step)"
"$kiln" s3 cp s3://ml-data/dataset.zip .kiln/data/downloaded.zip
echo "== kiln prepare"
"$kiln" prepare --zip .kiln/data/downloaded.zip --out .kiln/data/dataset --size "$size" \
  --workers "$workers"
echo "dataset: .kiln/data/dataset (manifest.json lists classes, splits and skipped files)"

# kiln-tracking (the embedded MLflow) on another free loopback port, stopped at exit; its
# store stays in .kiln/tracking/ so the runs can be browsed afterwards.
tport=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
build/tracking/kiln-tracking --port "$tport" >.kiln/tracking.log 2>&1 &
trackpid=$!
trap 'kill $s3pid $trackpid 2>/dev/null || true' EXIT
export MLFLOW_TRACKING_URI="http://127.0.0.1:$tport"
for _ in $(seq 50); do
  /usr/bin/python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1] + '/health')" \
    "$MLFLOW_TRACKING_URI" 2>/dev/null && break
  sleep 0.2
done

echo "== kiln train (CPU, $epochs epochs, recorded in MLflow)"
"$kiln" train --data .kiln/data/dataset --out .kiln/model --config examples/fashion-cpu.yaml \
  --epochs "$epochs" --experiment kiln-local
run_id=$(cat .kiln/model/mlflow-run-id)
echo "== kiln evaluate (test split, logged to MLflow run $run_id)"
"$kiln" evaluate --model .kiln/model --data .kiln/data/dataset --run-id "$run_id"
echo
echo "model package: .kiln/model (model.safetensors, kiln-model.json, MLmodel); evaluation in .kiln/model/eval-test/"
echo "browse the runs: build/tracking/kiln-tracking --port 5000, then http://127.0.0.1:5000/"
