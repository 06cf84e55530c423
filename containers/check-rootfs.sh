#!/usr/bin/env bash
# The CPU image without Docker: builds its root filesystem as Dockerfile.cpu's runtime stage
# does (Debian 12 minbase + exactly the runtime packages it lists, via mmdebstrap), installs a
# kiln build into /opt/kiln as the build stage does, and runs it the way the cluster will: as
# uid 10001 on a read-only root with tmpfs (emptyDir) on /tmp and the work directory:
#   - every binary starts (no missing library),
#   - kiln pipeline run-local on a small Fashion-MNIST zip (the CronJob's command) succeeds,
#   - kiln-serve serves the model it trained (/healthz, /readyz, /predict, GET / with
#     KILN_SERVING_IMAGE_VERSION) and drains on SIGTERM (unready, then exit 0).
#
#   containers/check-rootfs.sh BUILD_DIR [WORK_DIR]
# BUILD_DIR: a configured kiln build (plain, no sanitizers), e.g. build-ci-nocuda.
# WORK_DIR (default build-k8s/rootfs-check): the root filesystem is kept there between runs,
# rebuilt when the package list changes. Needs root (mmdebstrap, chroot, a mount namespace)
# and the Debian archive this machine's apt uses. Exit 0 when it passed, 1 when a check failed, 77 when this machine
# cannot do it (not root, no mmdebstrap, no mount namespace).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
[ $# -ge 1 ] || { echo "usage: $0 BUILD_DIR [WORK_DIR]" >&2; exit 2; }
build="$(cd "$1" && pwd)"
work="${2:-$root/build-k8s/rootfs-check}"
skip() { echo "check-rootfs: skipped: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root"
command -v mmdebstrap >/dev/null || skip "mmdebstrap is not installed (scripts/install-deps.sh)"
unshare -m true 2>/dev/null || skip "cannot create a mount namespace here"
mkdir -p "$work"

pkgs="$(node "$root/tools/k8s-check/dockerfile.mjs" "$root/containers/Dockerfile.cpu" --print-runtime-packages)"
rootfs="$work/rootfs"
if [ "$(cat "$work/packages" 2>/dev/null)" != "$pkgs" ]; then
  echo "check-rootfs: Debian 12 minbase + $pkgs"
  rm -rf "$rootfs"
  # The Debian archive this machine's apt uses (a deb822 .sources file or a sources.list).
  sources="$(grep -l -s -E 'debian-archive-keyring|^deb .*debian' /etc/apt/sources.list.d/*.sources \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list | head -1 || true)"
  [ -n "$sources" ] || skip "no Debian archive in /etc/apt's sources"
  # A package name Debian 12 does not have is the Dockerfile's error; a failed download is not.
  for p in ${pkgs//,/ }; do
    apt-cache show "$p" >/dev/null 2>&1 || { echo "FAIL Dockerfile.cpu: Debian has no package $p"; exit 1; }
  done
  if ! mmdebstrap --quiet --variant=minbase --include="$pkgs" bookworm "$rootfs" "$sources"; then
    rm -rf "$rootfs"
    skip "mmdebstrap could not build the root filesystem (the archive unreachable?)"
  fi
  # As the Dockerfile's runtime stage: the user, and KFP v2's artifact directories.
  chroot "$rootfs" sh -ec 'groupadd --gid 10001 kiln
    useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin kiln
    mkdir -p /minio /s3 /gcs /work && chown 10001:10001 /minio /s3 /gcs'
  echo "$pkgs" >"$work/packages"
fi
# As the Dockerfile's build stage: install, strip, the pipeline file and the example config.
rm -rf "$rootfs/opt/kiln"
cmake --install "$build" --prefix "$rootfs/opt/kiln" --strip >/dev/null
install -D -m 0644 "$root/pipelines/kiln-train.yaml" "$rootfs/opt/kiln/share/kiln/pipelines/kiln-train.yaml"
install -D -m 0644 "$root/examples/config.yaml" "$rootfs/opt/kiln/share/kiln/examples/config.yaml"
/usr/bin/python3 "$root/scripts/make-fashion-zip" --out "$work/data.zip" --per-class 12 >/dev/null

# Everything below runs in a private mount (and pid) namespace, so the mounts vanish with it.
cat >"$work/inside.sh" <<'INSIDE'
set -eu
R="$1" data="$2"
mount --bind "$R" "$R"
mount -o remount,bind,ro "$R"
mount -t proc proc "$R/proc"
mount -t tmpfs -o size=512m,mode=1777 tmpfs "$R/tmp"
mount -t tmpfs -o size=1g,mode=0755,uid=10001,gid=10001 tmpfs "$R/work"
cp "$data" "$R/work/data.zip"
as_kiln() {
  chroot --userspec=10001:10001 "$R" /usr/bin/env -i PATH=/opt/kiln/bin:/usr/bin:/bin TMPDIR=/tmp HOME=/nonexistent \
    KILN_SERVING_IMAGE_VERSION=0.1.0-rootfs "$@"
}
fail() { echo "FAIL $*"; exit 1; }
if touch "$R/write-probe" 2>/dev/null; then fail "the root filesystem is writable"; fi
for b in kiln kiln-component kiln-serve kiln-tracking; do
  ! as_kiln ldd "/opt/kiln/bin/$b" | grep "not found" || fail "$b: a library is missing"
  as_kiln "$b" --help >/dev/null 2>&1 || fail "$b --help"
done
echo "ok   rootfs: the four binaries start as uid 10001 with only the runtime packages"
as_kiln sh -c 'cd /work && kiln pipeline run-local /opt/kiln/share/kiln/pipelines/kiln-train.yaml \
  --source /work/data.zip --param epochs=1 --param image_size=32 --param batch_size=16 \
  --runs-dir /work/runs --tracking-dir /work/tracking' >"$R/tmp/run-local.log" 2>&1 \
  || { tail -20 "$R/tmp/run-local.log"; fail "kiln pipeline run-local"; }
grep -q "SUCCEEDED in" "$R/tmp/run-local.log" || fail "run-local printed no SUCCEEDED"
model="$(cd "$R" && ls -d work/runs/*/train/artifacts/model | head -1)"
[ -f "$R/$model/kiln-model.json" ] || fail "no model package after run-local"
echo "ok   rootfs: kiln pipeline run-local (the CronJob's command) on a read-only root: SUCCEEDED"
# Not through as_kiln: $! must be kiln-serve itself (chroot and env exec it).
chroot --userspec=10001:10001 "$R" /usr/bin/env -i PATH=/opt/kiln/bin:/usr/bin:/bin TMPDIR=/tmp \
  KILN_SERVING_IMAGE_VERSION=0.1.0-rootfs kiln-serve --model-dir "/$model" --host 127.0.0.1 --port 0 \
  --cache-dir /tmp/cache --shutdown-delay 1 >"$R/tmp/serve.log" 2>&1 &
pid=$!
port=""
for _ in $(seq 1 100); do
  port="$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$R/tmp/serve.log")"
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { kill "$pid" 2>/dev/null; cat "$R/tmp/serve.log"; fail "kiln-serve did not listen"; }
url="http://127.0.0.1:$port"
code() { curl -s -m 5 -o /dev/null -w '%{http_code}' "$@"; }
ok=1
[ "$(code "$url/healthz")" = 200 ] || { echo "FAIL /healthz"; ok=0; }
[ "$(code "$url/readyz")" = 200 ] || { echo "FAIL /readyz"; ok=0; }
curl -s -m 5 "$url/" | grep -q '"image_version":"0.1.0-rootfs"' || { echo "FAIL GET / image_version"; ok=0; }
curl -s -m 10 -F "file=@$R/opt/kiln/share/kiln/examples/config.yaml;type=image/jpeg" -o /dev/null \
  -w '%{http_code}' "$url/predict" | grep -q 400 || { echo "FAIL /predict of a non-image is not 400"; ok=0; }
img="$(unzip -Z1 "$data" | grep -m1 '\.png$')"
unzip -p "$data" "$img" >"$R/tmp/probe.png"
curl -s -m 10 -F "file=@$R/tmp/probe.png" "$url/predict" | grep -q '"prediction"' || { echo "FAIL /predict"; ok=0; }
kill -TERM "$pid"
sleep 0.3
[ "$(code "$url/readyz")" = 503 ] || { echo "FAIL /readyz while draining is not 503"; ok=0; }
status=0
wait "$pid" || status=$?
[ "$status" -eq 0 ] || { echo "FAIL kiln-serve exited $status after SIGTERM"; ok=0; }
[ "$ok" -eq 1 ] || { cat "$R/tmp/serve.log"; exit 1; }
echo "ok   rootfs: kiln-serve as uid 10001, read-only root: /healthz, /readyz, GET /, /predict, SIGTERM drain (503, exit 0)"
INSIDE
unshare -m -p --fork --mount-proc sh "$work/inside.sh" "$rootfs" "$work/data.zip"
