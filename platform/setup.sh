#!/usr/bin/env bash
# Install kiln's platform on a cluster (seed 004's flow: minikube with GPUs, then this):
# Istio with the ingress gateway and Gateway mlops-gateway, Kubeflow Pipelines (upstream
# platform-agnostic manifests, with their MinIO), the buckets ml-data and ml-models, the
# credentials Secrets the pipeline and kiln-serving read, an MLflow tracking server, and the
# VirtualServices /minio, /mlflow, /pipeline. Idempotent: run it again after a timeout.
#
#   platform/setup.sh [--no-kfp] [--with-cronjob] [--tracking mlflow|kiln]
#                     [--kiln-image IMAGE] [--timeout SECONDS] [--dry-run]
#
#   --no-kfp         no Kubeflow Pipelines: a standalone MinIO (same Service and Secret
#                    names) and the kiln-retrain CronJob (kiln pipeline run-local nightly)
#   --with-cronjob   the CronJob as well as KFP
#   --tracking kiln  kiln-tracking (needs the kiln image) instead of upstream MLflow
#   --kiln-image     the components image for the CronJob / kiln-tracking
#                    (default kiln:<version>; scripts/build-images.sh prints the tag)
#   --dry-run        print the commands, run nothing
# Environment: MINIO_ACCESS_KEY / MINIO_SECRET_KEY (default minio / minio123, KFP's MinIO),
# MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, ISTIO_VERSION, PIPELINE_VERSION.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
manifests="$here/manifests"
ISTIO_VERSION="${ISTIO_VERSION:-1.23.2}"
PIPELINE_VERSION="${PIPELINE_VERSION:-2.4.0}"
KFP_MANIFESTS="github.com/kubeflow/pipelines/manifests/kustomize"
version="$(sed -n 's/^project(kiln VERSION \([0-9][0-9.]*\).*/\1/p' "$here/../CMakeLists.txt")"
kfp=1 cronjob=0 tracking=mlflow dry_run=0 timeout=600
kiln_image="kiln:${version:-0.1.0}"

die() { echo "setup: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --no-kfp) kfp=0; cronjob=1 ;;
    --with-cronjob) cronjob=1 ;;
    --tracking) [ $# -ge 2 ] || die "--tracking needs mlflow or kiln"; tracking="$2"; shift ;;
    --kiln-image) [ $# -ge 2 ] || die "--kiln-image needs a value"; kiln_image="$2"; shift ;;
    --timeout) [ $# -ge 2 ] || die "--timeout needs seconds"; timeout="$2"; shift ;;
    --dry-run) dry_run=1 ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done
case "$tracking" in mlflow|kiln) ;; *) die "--tracking: '$tracking' is not mlflow or kiln" ;; esac
[[ "$timeout" =~ ^[0-9]+$ ]] || die "--timeout: '$timeout' is not a number of seconds"

step() { echo; echo "=== $*"; }
run() {
  printf '+'; printf ' %q' "$@"; printf '\n'
  [ "$dry_run" -eq 1 ] || "$@"
}
# Apply a manifest with the kiln image substituted (the files name kiln:<version>).
apply_with_image() {
  echo "+ kubectl apply -f $1 (image $kiln_image)"
  [ "$dry_run" -eq 1 ] || sed "s#image: kiln:[A-Za-z0-9_.-]*#image: $kiln_image#" "$1" | kubectl apply -f -
}
# kubectl create secret ... | kubectl apply: creates or updates, never fails on "exists".
secret() { # namespace name key=value...
  local ns="$1" name="$2"; shift 2
  local args=()
  for kv in "$@"; do args+=("--from-literal=$kv"); done
  echo "+ kubectl -n $ns apply secret $name (${*%%=*} ...)"
  [ "$dry_run" -eq 1 ] || kubectl -n "$ns" create secret generic "$name" "${args[@]}" \
    --dry-run=client -o yaml | kubectl apply -f -
}

for f in namespaces gateway secrets minio-buckets minio-standalone mlflow tracking-kiln \
         retrain-cronjob; do
  [ -f "$manifests/$f.yaml" ] || die "missing $manifests/$f.yaml"
done
if [ "$dry_run" -eq 0 ]; then
  for tool in kubectl helm; do command -v "$tool" >/dev/null || die "$tool is not on PATH"; done
  kubectl cluster-info >/dev/null || die "no cluster (minikube start --driver=docker --gpus all ...)"
fi

step "Istio $ISTIO_VERSION (base, istiod, ingress gateway)"
run helm repo add istio https://istio-release.storage.googleapis.com/charts --force-update
run helm upgrade --install istio-base istio/base -n istio-system --create-namespace \
  --version "$ISTIO_VERSION" --wait --timeout "${timeout}s"
run helm upgrade --install istiod istio/istiod -n istio-system --version "$ISTIO_VERSION" \
  --wait --timeout "${timeout}s"
# Release name istio-ingressgateway: pods labelled istio=ingressgateway (the Gateway's selector).
run helm upgrade --install istio-ingressgateway istio/gateway -n istio-system \
  --version "$ISTIO_VERSION" --wait --timeout "${timeout}s"

step "namespaces"
run kubectl apply -f "$manifests/namespaces.yaml"

if [ "$kfp" -eq 1 ]; then
  step "Kubeflow Pipelines $PIPELINE_VERSION (platform-agnostic; kubeflow/pipelines#9546)"
  run kubectl apply -k "$KFP_MANIFESTS/cluster-scoped-resources?ref=$PIPELINE_VERSION"
  run kubectl wait --for condition=established --timeout=60s crd/applications.app.k8s.io
  run kubectl apply -k "$KFP_MANIFESTS/env/platform-agnostic?ref=$PIPELINE_VERSION"
  run kubectl -n kubeflow wait --for=condition=Available --timeout="${timeout}s" \
    deployment/ml-pipeline deployment/ml-pipeline-ui deployment/minio
else
  step "MinIO (standalone, no KFP)"
  run kubectl apply -f "$manifests/minio-standalone.yaml"
  run kubectl -n kubeflow wait --for=condition=Available --timeout="${timeout}s" deployment/minio
fi

step "credentials Secrets (kubeflow: the pipeline; kiln: kiln-serving)"
run kubectl apply -f "$manifests/secrets.yaml"
# Values other than the development defaults replace the manifest's.
if [ -n "${MINIO_ACCESS_KEY:-}${MINIO_SECRET_KEY:-}${MLFLOW_TRACKING_USERNAME:-}${MLFLOW_TRACKING_PASSWORD:-}" ]; then
  for ns in kubeflow kiln; do
    secret "$ns" kiln-s3-credentials "AWS_ACCESS_KEY_ID=${MINIO_ACCESS_KEY:-minio}" \
      "AWS_SECRET_ACCESS_KEY=${MINIO_SECRET_KEY:-minio123}"
    secret "$ns" kiln-mlflow-credentials "MLFLOW_TRACKING_USERNAME=${MLFLOW_TRACKING_USERNAME:-}" \
      "MLFLOW_TRACKING_PASSWORD=${MLFLOW_TRACKING_PASSWORD:-}"
  done
fi

step "buckets ml-data, ml-models"
run kubectl -n kubeflow delete job minio-buckets --ignore-not-found
run kubectl apply -f "$manifests/minio-buckets.yaml"
run kubectl -n kubeflow wait --for=condition=complete --timeout="${timeout}s" job/minio-buckets

step "tracking server ($tracking) at mlflow-server.kubeflow:5000"
if [ "$tracking" = mlflow ]; then
  run kubectl apply -f "$manifests/mlflow.yaml"
  run kubectl -n kubeflow wait --for=condition=Available --timeout="${timeout}s" deployment/mlflow-db
else
  apply_with_image "$manifests/tracking-kiln.yaml"
fi
run kubectl -n kubeflow wait --for=condition=Available --timeout="${timeout}s" deployment/mlflow-server

step "Gateway mlops-gateway and the /minio, /pipeline routes (/mlflow came with the tracking server)"
run kubectl apply -f "$manifests/gateway.yaml"

if [ "$cronjob" -eq 1 ]; then
  step "CronJob kiln-retrain (kiln pipeline run-local, nightly)"
  apply_with_image "$manifests/retrain-cronjob.yaml"
fi

step "done"
ip=""
if [ "$dry_run" -eq 0 ]; then
  ip="$(kubectl -n istio-system get svc istio-ingressgateway \
    -o jsonpath='{.status.loadBalancer.ingress[0].ip}' 2>/dev/null || true)"
fi
[ -n "$ip" ] || ip="<external-ip>"
[ "$ip" != "<external-ip>" ] || echo "No external IP yet: run 'minikube tunnel' and look at 'kubectl get svc -n istio-system'."
echo "MinIO:    http://$ip/minio/   (user ${MINIO_ACCESS_KEY:-minio})"
echo "MLflow:   http://$ip/mlflow/"
[ "$kfp" -eq 0 ] || echo "Pipeline: http://$ip/pipeline/   (kiln pipeline submit --kubeflow-host http://$ip/pipeline)"
echo "Serving:  scripts/build-images.sh --minikube, then"
echo "          helm upgrade --install kiln-serving charts/kiln-serving -n kiln --set image.tag=<tag>"
