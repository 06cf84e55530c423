#!/usr/bin/env bash
# The main job on the embedded default, end to end on this machine:
#   1. installs what is missing (apt, npm) and builds kiln (build/, Release);
#   2. makes a zip of class folders from Debian's Fashion-MNIST (or takes --zip);
#   3. starts a local S3 server (s3rver on 127.0.0.1, standing in for MinIO) and
#      kiln-tracking (the embedded MLflow, SQLite under .kiln/tracking/), and uploads
#      the zip to s3://ml-data/ with `kiln data push` (which checks it first);
#   4. runs pipelines/kiln-train.yaml with `kiln pipeline run-local`: download from S3,
#      prepare, train (the GPU if there is one, else the CPU), evaluate, register in the
#      MLflow registry, promote to Production + alias champion when it is no worse than
#      the current Production version, upload the package to s3://ml-models/;
#   5. starts kiln-serve on the Production model, sends a test image to /predict and
#      asks for a /model/reload;
#   6. prints what happened, the URLs, and leaves the three servers running.
# Re-running it stops the servers it started before and trains again: a second run
# registers a new version. `scripts/run-local.sh --stop` stops the servers.
#
# Usage: scripts/run-local.sh [--zip your.zip] [--per-class N] [--size S] [--epochs N]
#          [--batch-size N] [--lr X] [--model b0|b1|b2|b3] [--model-name NAME]
#          [--tracking-port 5000] [--serve-port 5001] [--s3-port 9000] [--stop-after]
#        scripts/run-local.sh --stop
# Defaults: 300 Fashion-MNIST images per class at 64x64, 3 epochs (a few minutes on
# 2 cores). Everything lives under .kiln/ in the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

zip="" per_class=300 size=64 epochs=3 batch=32 lr=0.003 model=b0 model_name=fashion-mnist
tport=5000 sport=5001 s3port=9000 stop_after=0 stop_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --zip) zip="$2"; shift 2 ;;
    --per-class) per_class="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    --epochs) epochs="$2"; shift 2 ;;
    --batch-size) batch="$2"; shift 2 ;;
    --lr) lr="$2"; shift 2 ;;
    --model) model="$2"; shift 2 ;;
    --model-name) model_name="$2"; shift 2 ;;
    --tracking-port) tport="$2"; shift 2 ;;
    --serve-port) sport="$2"; shift 2 ;;
    --s3-port) s3port="$2"; shift 2 ;;
    --stop-after) stop_after=1; shift ;;
    --stop) stop_only=1; shift ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run-local: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
[ -z "$zip" ] || [ -f "$zip" ] || { echo "run-local: --zip $zip: no such file" >&2; exit 2; }

state=.kiln/run
mkdir -p "$state" .kiln/logs .kiln/data .kiln/s3

# Stop what an earlier run left running (only our own processes, by pid file).
stop_servers() {
  local f pid
  for f in "$state"/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      echo "stopped $(basename "$f" .pid) (pid $pid)"
    fi
    rm -f "$f"
  done
}
stop_servers
[ "$stop_only" = 1 ] && exit 0

port_free() {
  ! /usr/bin/python3 -c 'import socket,sys; s=socket.socket(); s.connect(("127.0.0.1", int(sys.argv[1])))' \
    "$1" 2>/dev/null
}
for p in "$tport" "$sport" "$s3port"; do
  port_free "$p" || { echo "run-local: port $p on 127.0.0.1 is taken by another program;" \
    "choose others with --tracking-port/--serve-port/--s3-port" >&2; exit 1; }
done

# Waits until URL answers 2xx (or the process died): 0 when it did.
wait_http() {
  local url=$1 pid=$2
  for _ in $(seq 300); do
    curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}
# Starts a server in the background with its pid file and log.
start_server() {
  local name=$1; shift
  "$@" >".kiln/logs/$name.log" 2>&1 &
  echo $! >"$state/$name.pid"
}
on_exit() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "run-local: failed (exit $rc); logs in .kiln/logs/, stopping the servers" >&2
    stop_servers >&2
  elif [ "$stop_after" = 1 ]; then
    stop_servers
  fi
}
trap on_exit EXIT

echo "== install and build"
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DKILN_TESTS=OFF >/dev/null
cmake --build build
kiln=build/cli/kiln

if [ -z "$zip" ]; then
  zip=.kiln/data/fashion-mnist.zip
  scripts/make-fashion-zip --out "$zip" --per-class "$per_class"
fi
object=$(basename "$zip")

echo "== servers: S3 (s3rver) on :$s3port, MLflow (kiln-tracking) on :$tport"
start_server s3rver env NODE_OPTIONS=--openssl-legacy-provider .tools/node_modules/.bin/s3rver \
  --directory .kiln/s3 --port "$s3port" --address 127.0.0.1 --silent
start_server kiln-tracking build/tracking/kiln-tracking --host 127.0.0.1 --port "$tport"

export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_ENDPOINT_URL="http://127.0.0.1:$s3port"
export MLFLOW_TRACKING_URI="http://127.0.0.1:$tport"
wait_http "$MLFLOW_TRACKING_URI/health" "$(cat $state/kiln-tracking.pid)" ||
  { echo "run-local: kiln-tracking did not start (.kiln/logs/kiln-tracking.log)" >&2; exit 1; }
for _ in $(seq 100); do
  "$kiln" s3 mb s3://ml-data --max-retries 0 >/dev/null 2>&1 && break
  sleep 0.2
done
"$kiln" s3 mb s3://ml-models --max-retries 0 >/dev/null

echo "== kiln data push: check the dataset, upload it to s3://ml-data/$object"
"$kiln" data push "$zip" "s3://ml-data/$object" --size "$size"

run_id="local-$(date -u +%Y%m%d-%H%M%S)"
echo "== kiln pipeline run-local pipelines/kiln-train.yaml (run $run_id)"
"$kiln" pipeline run-local pipelines/kiln-train.yaml --run-id "$run_id" \
  --source "s3://ml-data/$object" \
  --param "mlflow_tracking_uri=$MLFLOW_TRACKING_URI" \
  --param mlflow_experiment_name=kiln-local \
  --param "registered_model_name=$model_name" \
  --param "destination_model_name=$model_name" \
  --param "epochs=$epochs" --param "batch_size=$batch" --param "image_size=$size" \
  --param "model_variant=$model" --param "learning_rate=$lr" \
  --param "train_config=augment: {random_resized_crop: false}"
# random_resized_crop off: Fashion-MNIST's items are centred at one scale.

run_json=.kiln/pipeline-runs/$run_id/run.json
output() { # TASK PARAMETER: an output parameter of a task of this run
  /usr/bin/python3 - "$run_json" "$1" "$2" <<'PY'
import json, sys
task = next(t for t in json.load(open(sys.argv[1]))["tasks"] if t["name"] == sys.argv[2])
value = task["outputs"]["parameters"].get(sys.argv[3], "")
print(f"{value:.4f}" if isinstance(value, float) else str(value).lower())
PY
}
version=$(output register model_version)
promoted=$(output register promoted)
accuracy=$(output evaluate test_accuracy)

echo "== kiln-serve on :$sport, serving $model_name at stage Production"
start_server kiln-serve build/serving/kiln-serve --model-name "$model_name" --host 127.0.0.1 \
  --port "$sport" --cache-dir .kiln/serve-cache
serve="http://127.0.0.1:$sport"
wait_http "$serve/readyz" "$(cat $state/kiln-serve.pid)" ||
  { echo "run-local: kiln-serve is not ready (.kiln/logs/kiln-serve.log)" >&2; exit 1; }

# A test image: with the Fashion-MNIST default, the first image of its official
# test file (never trained on); with --zip, the zip's first image.
sample=.kiln/data/sample
rm -f "$sample".*
if [ "$zip" = .kiln/data/fashion-mnist.zip ]; then
  /usr/bin/python3 - "$sample.png" <<'PY'
import gzip, sys
from PIL import Image
d = "/usr/share/datasets/fashion-mnist/"
px = gzip.open(d + "t10k-images-idx3-ubyte.gz").read()[16:16 + 784]
label = gzip.open(d + "t10k-labels-idx1-ubyte.gz").read()[8]
Image.frombytes("L", (28, 28), px).save(sys.argv[1])
names = ["t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
         "bag", "ankle_boot"]
print(f"test image: Fashion-MNIST test image 0 (class {names[label]}), never trained on")
PY
else
  /usr/bin/python3 - "$zip" "$sample" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    name = next(n for n in z.namelist() if n.lower().endswith((".jpg", ".jpeg", ".png")))
    ext = ".png" if name.lower().endswith(".png") else ".jpg"
    open(sys.argv[2] + ext, "wb").write(z.read(name))
    print(f"test image: {name} from {sys.argv[1]}")
PY
fi
sample_file=$(ls "$sample".* | head -1)
echo "== curl -F file=@$sample_file $serve/predict"
curl -fsS -F "file=@$sample_file" "$serve/predict"; echo
echo "== curl -X POST $serve/model/reload"
curl -fsS -X POST "$serve/model/reload"; echo

cat <<EOF

== done
pipeline run $run_id: test accuracy $accuracy, registered $model_name version $version,
promoted to Production: $promoted (task logs and artifacts: .kiln/pipeline-runs/$run_id/)

  MLflow UI (runs, metrics, curves, registry):  $MLFLOW_TRACKING_URI/
  kiln-serve:      $serve/   ($serve/model/info, $serve/metrics)
    predict:       curl -F file=@image.jpg $serve/predict
    reload:        curl -X POST $serve/model/reload
  S3 (s3rver):     $AWS_ENDPOINT_URL  (buckets ml-data, ml-models; keys S3RVER/S3RVER)

The servers keep running (logs in .kiln/logs/). Stop them with:  scripts/run-local.sh --stop
Run this script again to train and register a new version.
EOF
