#!/usr/bin/env bash
# Build kiln's container images and tag them with an immutable version.
#
#   scripts/build-images.sh [--cuda] [--minikube] [--push REGISTRY] [--tag TAG]
#                           [--deploy [--namespace NS] [--release NAME]] [--dry-run]
#
# Images (containers/Dockerfile.cpu, or containers/Dockerfile.cuda with --cuda):
#   kiln:<tag>          the pipeline's steps (kiln-component), the kiln CLI, kiln-tracking
#   kiln-serving:<tag>  kiln-serve only
# <tag> defaults to <version>-<git sha> (version from CMakeLists.txt; "-dirty.<UTC time>" when
# the tree has uncommitted changes; "-cuda" is appended with --cuda). The components image is also tagged
# kiln:<version>[-cuda], the image pipelines/kiln-train.yaml names by default, and the serving
# image kiln-serving:<version>[-cuda], the chart's default tag.
#
# --minikube builds into minikube's Docker daemon (eval "$(minikube docker-env)", as seed 004's
# setup does), so pods use the images without a registry. --push REGISTRY tags them
# REGISTRY/kiln:<tag> and pushes. --deploy then rolls kiln-serving to the new image (seed 004's
# update_serving_component.sh): helm upgrade --install --reuse-values --set image.tag=<tag>
# --wait, release kiln-serving in namespace kiln unless --release / --namespace say otherwise.
# The pipeline takes the new components image with
#   kiln pipeline submit --training-image kiln:<tag> ...
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cuda=0 minikube=0 push="" tag="" dry_run=0 deploy=0 namespace=kiln release=kiln-serving

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "build-images: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --cuda) cuda=1 ;;
    --minikube) minikube=1 ;;
    --push) [ $# -ge 2 ] || die "--push needs a registry"; push="$2"; shift ;;
    --tag) [ $# -ge 2 ] || die "--tag needs a value"; tag="$2"; shift ;;
    --dry-run) dry_run=1 ;;
    --deploy) deploy=1 ;;
    --namespace) [ $# -ge 2 ] || die "--namespace needs a value"; namespace="$2"; shift ;;
    --release) [ $# -ge 2 ] || die "--release needs a value"; release="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done

version="$(sed -n 's/^project(kiln VERSION \([0-9][0-9.]*\).*/\1/p' "$root/CMakeLists.txt")"
[ -n "$version" ] || die "no 'project(kiln VERSION x.y.z' line in CMakeLists.txt"
revision="$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
dirty=""
if [ "$revision" != unknown ] && ! git -C "$root" diff --quiet HEAD -- 2>/dev/null; then
  # A dirty tree gets a time stamp too: the same tag never names two different builds.
  dirty="-dirty.$(date -u +%Y%m%d%H%M%S)"
fi
flavour=""
[ "$cuda" -eq 1 ] && flavour="-cuda"
if [ -z "$tag" ]; then
  tag="${version}-${revision}${dirty}${flavour}"
fi
# A Docker tag: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}. "latest" is refused: tags are immutable.
[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "'$tag' is not a valid image tag"
[ "$tag" != latest ] || die "refusing the mutable tag 'latest'; use a version"

dockerfile="$root/containers/Dockerfile.cpu"
[ "$cuda" -eq 1 ] && dockerfile="$root/containers/Dockerfile.cuda"
prefix=""
[ -n "$push" ] && prefix="${push%/}/"

run() {
  printf '+'; printf ' %q' "$@"; printf '\n'
  [ "$dry_run" -eq 1 ] || "$@"
}

if [ "$minikube" -eq 1 ] && [ "$dry_run" -eq 0 ]; then
  command -v minikube >/dev/null || die "--minikube: minikube is not on PATH"
  # Point docker at minikube's daemon for this script only.
  eval "$(minikube docker-env --shell bash)"
fi
[ "$dry_run" -eq 1 ] || command -v docker >/dev/null || die "docker is not on PATH"
if [ "$deploy" -eq 1 ] && [ "$dry_run" -eq 0 ]; then
  command -v helm >/dev/null || die "--deploy: helm is not on PATH"
fi

created="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
build() { # target image
  run docker build --file "$dockerfile" --target "$1" \
    --build-arg "KILN_VERSION=$tag" --build-arg "KILN_REVISION=$revision" \
    --build-arg "KILN_CREATED=$created" \
    --tag "${prefix}$2:$tag" "$root"
}

build components kiln
build serving kiln-serving
# The names the compiled pipeline (KILN_KFP_DEFAULT_IMAGE, kiln:<version>) and the chart
# (image.tag defaults to its appVersion) use when no tag is given.
run docker tag "${prefix}kiln:$tag" "${prefix}kiln:${version}${flavour}"
run docker tag "${prefix}kiln-serving:$tag" "${prefix}kiln-serving:${version}${flavour}"

if [ -n "$push" ]; then
  run docker push "${prefix}kiln:$tag"
  run docker push "${prefix}kiln-serving:$tag"
  run docker push "${prefix}kiln:${version}${flavour}"
  run docker push "${prefix}kiln-serving:${version}${flavour}"
fi

if [ "$deploy" -eq 1 ]; then
  # maxSurge 1 / maxUnavailable 0: one new pod at a time, each old one drains (chart README).
  run helm upgrade --install "$release" "$root/charts/kiln-serving" --namespace "$namespace" \
    --reuse-values --set "image.repository=${prefix}kiln-serving" --set "image.tag=$tag" \
    --wait --timeout 10m
fi

echo "build-images: built ${prefix}kiln:$tag and ${prefix}kiln-serving:$tag"
echo "  roll out:  helm upgrade --install $release $root/charts/kiln-serving -n $namespace --reuse-values --set image.repository=${prefix}kiln-serving --set image.tag=$tag"
echo "  pipeline:  kiln pipeline submit --training-image ${prefix}kiln:$tag ..."
