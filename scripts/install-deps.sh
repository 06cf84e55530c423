#!/usr/bin/env bash
# Install the Debian packages kiln needs to build, test and run its local
# pipeline. Idempotent: only missing packages are installed.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libzip-dev libdeflate-dev libjpeg62-turbo-dev libpng-dev libyaml-dev libcjson-dev libexif-dev libssl-dev
  libcurl4-openssl-dev libxml2-dev libmicrohttpd-dev libsqlite3-dev libopenblas-dev
  libcmocka-dev clang libclang-rt-14-dev
  python3 python3-pil python3-botocore openssl dataset-fashion-mnist
  python3-torch python3-torchvision chromium
  python3-fastapi python3-uvicorn python3-multipart wrk
  golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev yamllint shellcheck
  mmdebstrap curl unzip
)
# Node.js runs the S3 server the tests talk to (s3rver, from npm).
command -v npm >/dev/null || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
else
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: run as root or install sudo" >&2; exit 1; }
    sudo="sudo"
  fi
  echo "install-deps: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The tests' S3 server, kept inside the checkout (.tools/, git-ignored).
tools="$(cd "$(dirname "$0")/.." && pwd)/.tools"
# The MLflow client no one here wrote (npm `mlflow`) drives kiln-tracking in
# the compatibility test.
# kubernetes-models, @kubernetes-models/{istio,prometheus-operator} and ajv: the static
# Kubernetes checks (scripts/check-k8s.sh).
if [ ! -x "$tools/node_modules/.bin/s3rver" ] || [ ! -d "$tools/node_modules/mlflow" ] \
   || [ ! -d "$tools/node_modules/@kubernetes-models/prometheus-operator" ]; then
  echo "install-deps: installing s3rver, mlflow and the Kubernetes schema packages into .tools/ (npm)"
  mkdir -p "$tools"
  npm install --silent --no-audit --no-fund --prefix "$tools" s3rver@3.7.1 mlflow@2.0.7 \
    kubernetes-models@5.1.0 @kubernetes-models/istio@3.0.1 @kubernetes-models/prometheus-operator@6.0.0 \
    ajv@8.20.0 >/dev/null
fi
echo "install-deps: done"
