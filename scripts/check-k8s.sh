#!/usr/bin/env bash
# Static checks of everything kiln runs on Kubernetes (no cluster, Docker engine or helm
# binary needed; what they do not prove: charts/kiln-serving/README.md):
#   - the Dockerfiles (stages, runtime-only packages, non-root USER, ENTRYPOINTs, labels; with
#     KILN_K8S_BINARIES=BUILD_DIR, the libraries the binaries link against the image's packages)
#   - bash -n and shellcheck of the image/platform scripts, and their --dry-run
#   - the kiln-serving chart rendered by tools/k8s-check/render (Go text/template + sprig +
#     helm's include/tpl/toYaml/required, as helm renders) for: the default values,
#     values-gpu-hpa.yaml, --set image.tag=v1.0.1 (an upgrade) and another release/prefix
#   - values.schema.json against the merged values of each (ajv)
#   - yamllint of the chart's values, the platform manifests and the rendered chart
#   - every rendered object and platform manifest against the Kubernetes, Istio and
#     Prometheus Operator schemas (npm kubernetes-models, @kubernetes-models/*), unknown
#     fields included
#   - the invariants (tools/k8s-check/lib/invariants.mjs) on the chart, the upgrade and the
#     platform (Secrets and image that pipelines/kiln-train.yaml uses)
#   - the same checks against tools/k8s-check/testdata/, which must FAIL: the checks can fail
# Exit status 1 when anything fails. Build output goes to $KILN_K8S_BUILD_DIR (build-k8s).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root="$PWD"
build="${KILN_K8S_BUILD_DIR:-$root/build-k8s}"
nm="$root/.tools/node_modules"
check=(node "$root/tools/k8s-check/check.mjs")
mkdir -p "$build"
failed=0
start=$(date +%s)

step() { echo "--- $* ($(( $(date +%s) - start )) s)"; }
bad() { echo "FAIL $*"; failed=1; }
# Run a check; its own output says what failed.
must() {
  local status=0
  "$@" || status=$?
  [ "$status" -eq 0 ] || { failed=1; echo "FAIL (exit $status): $*"; }
}
# A check that must fail, printing PATTERN (an extended regex): proof the check can fail.
must_fail() {
  local what="$1" pattern="$2"; shift 2
  local out status=0
  out="$("$@" 2>&1)" || status=$?
  if [ "$status" -eq 0 ]; then bad "self-test '$what': the check passed on broken input"
  elif ! grep -Eq -- "$pattern" <<<"$out"; then
    bad "self-test '$what': failed without /$pattern/:"; echo "$out" | tail -5
  else echo "ok   self-test: $what is caught"
  fi
}

step "prerequisites"
for tool in go node yamllint; do
  command -v "$tool" >/dev/null || { echo "check-k8s: $tool missing (scripts/install-deps.sh)" >&2; exit 1; }
done
for d in "$nm/kubernetes-models" "$nm/@kubernetes-models/istio" "$nm/@kubernetes-models/prometheus-operator" \
         "$nm/ajv" /usr/share/gocode/src/github.com/Masterminds/sprig /usr/share/gocode/src/gopkg.in/yaml.v3; do
  [ -d "$d" ] || { echo "check-k8s: $d missing (scripts/install-deps.sh)" >&2; exit 1; }
done

step "renderer (Go, GOPATH mode, offline)"
render="$build/k8s-render"
if ! GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$build/gocache" GOFLAGS="" \
     go build -o "$render" ./tools/k8s-check/render; then
  echo "check-k8s: cannot build the renderer" >&2; exit 1
fi
[ -z "$(gofmt -l tools/k8s-check/render)" ] || bad "gofmt: $(gofmt -l tools/k8s-check/render)"
# The renderer's own tests (helm's value merging, --set, include/tpl/toYaml/required, partials).
must env GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$build/gocache" GOFLAGS="" \
  go vet ./tools/k8s-check/render
must env GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$build/gocache" GOFLAGS="" \
  go test ./tools/k8s-check/render

step "Dockerfiles"
# KILN_K8S_BINARIES=<a plain (unsanitized) build dir>: also check that every library the
# binaries link is installed in the CPU image (.ci/run passes build-ci-nocuda).
binaries=()
[ -z "${KILN_K8S_BINARIES:-}" ] || binaries=(--binaries "$KILN_K8S_BINARIES")
must node tools/k8s-check/dockerfile.mjs containers/Dockerfile.cpu --install-deps scripts/install-deps.sh \
  --dockerignore .dockerignore "${binaries[@]}"
must node tools/k8s-check/dockerfile.mjs containers/Dockerfile.cuda --dockerignore .dockerignore

step "shell scripts"
scripts=(scripts/build-images.sh platform/setup.sh scripts/check-k8s.sh containers/check-rootfs.sh)
for s in "${scripts[@]}"; do must bash -n "$s"; done
if command -v shellcheck >/dev/null; then must shellcheck "${scripts[@]}"
else echo "skip shellcheck (not installed)"; fi
must_out() { "$@" >"$build/dry-run.log" 2>&1 || { bad "$*"; cat "$build/dry-run.log"; }; }
must_out scripts/build-images.sh --dry-run --tag 0.1.0-test
must_out scripts/build-images.sh --dry-run --cuda --push registry.local:5000 --deploy --namespace models
must_out platform/setup.sh --dry-run
must_out platform/setup.sh --dry-run --no-kfp --tracking kiln
must_fail "build-images.sh refuses the tag latest" "mutable tag" scripts/build-images.sh --dry-run --tag latest

step "render the chart"
chart="${KILN_K8S_CHART:-charts/kiln-serving}"
# name | render flags | invariant flags
configs=(
  "default||--path-prefix /dry-wet-model"
  "gpu-hpa|-f $chart/values-gpu-hpa.yaml --namespace kiln --api-versions monitoring.coreos.com/v1|--gpu --hpa --service-monitor --namespace kiln --path-prefix /dry-wet-model"
  "upgrade|--set image.tag=v1.0.1|--path-prefix /dry-wet-model"
  "config-change|--set mlflow.trackingUri=http://mlflow-server.kubeflow.svc:5000/x|--path-prefix /dry-wet-model"
  "other-release|--name dry-wet-model --namespace models --set istio.pathPrefix=/roads/v2/,model.alias=champion,serve.device=cpu|--namespace models --path-prefix /roads/v2"
)
rendered=()
for c in "${configs[@]}"; do
  IFS='|' read -r name flags inv <<<"$c"
  # shellcheck disable=SC2086 # flags are words
  if ! "$render" render "$chart" $flags --values-json "$build/$name.values.json" \
       --notes "$build/$name.NOTES.txt" >"$build/$name.yaml"; then
    bad "render $name"; continue
  fi
  rendered+=("$build/$name.yaml")
  "$render" tojson "$build/$name.yaml" >"$build/$name.json" || { bad "tojson $name"; continue; }
  must "${check[@]}" values "$chart/values.schema.json" "$build/$name.values.json" "$name"
  # shellcheck disable=SC2086
  must "${check[@]}" chart "$build/$name.json" $inv
  prefix=$(sed -n 's/.*--path-prefix \([^ ]*\).*/\1/p' <<<"$inv")
  for route in "$prefix/predict" "$prefix/model/reload"; do
    grep -q "$route" "$build/$name.NOTES.txt" || bad "$name NOTES.txt lacks $route"
  done
done
must "${check[@]}" upgrade "$build/default.json" "$build/upgrade.json" v1.0.1
must "${check[@]}" config-roll "$build/default.json" "$build/config-change.json"
must "${check[@]}" objects "$build"/{default,gpu-hpa,upgrade,other-release}.json

step "platform manifests"
"$render" tojson platform/manifests/*.yaml >"$build/platform.json" || bad "platform manifests do not parse"
"$render" tojson pipelines/kiln-train.yaml >"$build/pipeline.json" || bad "pipelines/kiln-train.yaml does not parse"
version="$(sed -n 's/^project(kiln VERSION \([0-9][0-9.]*\).*/\1/p' CMakeLists.txt)"
must "${check[@]}" objects "$build/platform.json"
must "${check[@]}" platform "$build/platform.json" --pipeline "$build/pipeline.json" --version "$version" \
  --chart-values "$build/default.values.json" --serving-namespace kiln

step "yamllint"
must yamllint -f parsable -c tools/k8s-check/yamllint.yaml "$chart/Chart.yaml" "$chart"/values*.yaml \
  platform/manifests/*.yaml "${rendered[@]}"

step "self-tests: broken inputs must fail"
t=tools/k8s-check/testdata
"$render" render "$chart" -f "$t/bad-values.yaml" --values-json "$build/bad.values.json" >/dev/null \
  || bad "render with testdata/bad-values.yaml"
must_fail "values schema: a string replicaCount" "/replicaCount must be integer" \
  "${check[@]}" values "$chart/values.schema.json" "$build/bad.values.json" bad
must_fail "values schema: image tag latest" "/image/tag must NOT be valid" \
  "${check[@]}" values "$chart/values.schema.json" "$build/bad.values.json" bad
must_fail "values schema: a misspelt key" "additional properties \(pathPrefx\)" \
  "${check[@]}" values "$chart/values.schema.json" "$build/bad.values.json" bad
must_fail "render: a grace period shorter than the drain" "shorter than preStopSleepSeconds" \
  "$render" render "$chart" --set shutdown.terminationGracePeriodSeconds=20
must_fail "render: a path prefix without /" "must start with /" \
  "$render" render "$chart" --set istio.pathPrefix=dry-wet-model
must_fail "render: a ServiceMonitor without the Prometheus Operator" "Prometheus Operator" \
  "$render" render "$chart" --set serviceMonitor.enabled=true
node -e 'const [a, b] = process.argv.slice(1).map((f) => JSON.parse(require("fs").readFileSync(f)));
  const dep = (x) => x.find((e) => e.doc.kind === "Deployment").doc.spec.template.metadata.annotations;
  dep(b)["checksum/config"] = dep(a)["checksum/config"]; console.log(JSON.stringify(b));' \
  "$build/default.json" "$build/config-change.json" >"$build/bad-config-roll.json" || bad "bad-config-roll.json"
"$render" tojson "$t/bad-objects.yaml" >"$build/bad-objects.json" || bad "tojson bad-objects.yaml"
must_fail "schema: an unknown field" "livenesProbe: unknown field" "${check[@]}" objects "$build/bad-objects.json"
must_fail "schema: a string port" "port must be integer" "${check[@]}" objects "$build/bad-objects.json"
for p in "maxUnavailable is 1" "readinessProbe: path /healthz, want /readyz" "runAsUser is 0" \
         "readOnlyRootFilesystem is not true" "capabilities.drop lacks ALL" "terminationGracePeriodSeconds 10" \
         "destination port 8080 is not a port of the Service" "gives //path"; do
  must_fail "invariant: $p" "$p" "${check[@]}" chart "$build/bad-objects.json" --path-prefix /dry-wet-model
done
"$render" tojson "$t/bad-platform.yaml" >"$build/bad-platform.json" || bad "tojson bad-platform.yaml"
for p in "no Gateway mlops-gateway" "destination port 5050 is not a port of mlflow-server" \
         "no VirtualService routes /pipeline" "kiln-s3-credentials: no key AWS_SECRET_ACCESS_KEY" \
         "concurrencyPolicy is not Forbid" "runAsNonRoot is not true"; do
  must_fail "platform: $p" "$p" "${check[@]}" platform "$build/bad-platform.json" \
    --pipeline "$build/pipeline.json" --version "$version"
done
must_fail "config roll: a ConfigMap change without a new checksum" "checksum/config did not" \
  "${check[@]}" config-roll "$build/default.json" "$build/bad-config-roll.json"
must_fail "upgrade: an unchanged image" "nothing would roll" \
  "${check[@]}" upgrade "$build/default.json" "$build/default.json" 0.1.0

step "done"
if [ "$failed" -ne 0 ]; then echo "check-k8s: FAILED"; exit 1; fi
echo "check-k8s: all static checks passed"
