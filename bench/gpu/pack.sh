#!/bin/bash
# bench/gpu/pack.sh — build, here, what bench/gpu/run-device.sh runs on the
# GPU machine, and bundle it into .gpu-carry/kiln-gpu.tar.xz (git-ignored
# through .git/info/exclude), so the device tool can carry it there.
#
# The GPU machine (Ubuntu, PyTorch's CUDA 13 / cuDNN 9 / cuBLAS libraries,
# nothing installable) has no Debian -dev packages, so the binaries are
# built here (RelWithDebInfo as the default build, KILN_CUDA=ON, no
# sanitizers, linked --as-needed, debug info stripped in the bundle) and
# every shared library they need that is neither glibc/libstdc++ nor a
# CUDA library (which the machine provides) travels in the bundle's lib/.
# The peer anchor (../shared/anchors/torch_effnet.py) travels too: the
# folder beside the checkout does not.
#
# Usage: bench/gpu/pack.sh        Env: BUILD=build-gpu JOBS=2
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build-gpu}
JOBS=${JOBS:-2}
CARRY=.gpu-carry
ANCHOR=${ANCHOR:-../shared/anchors/torch_effnet.py}
BINS="test_gpu test_nn_cuda_host test_nn_cuda_ops test_nn_cuda_model test_nn_cuda_bf16
      test_nn_cuda_bf16_model test_nn_graph_check bench_nn"

grep -qx '/.gpu-carry/' .git/info/exclude 2>/dev/null || echo '/.gpu-carry/' >> .git/info/exclude
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_CUDA=ON \
      -DCMAKE_EXE_LINKER_FLAGS=-Wl,--as-needed -DCMAKE_MODULE_LINKER_FLAGS=-Wl,--as-needed >/dev/null
ninja -C "$BUILD" -j"$JOBS" kiln_cuda kiln_fake_cuda_module $BINS

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
dest=$stage/kiln-gpu
mkdir -p "$dest/bin" "$dest/lib"
for b in $BINS; do
    find "$BUILD" -type f -name "$b" -perm -u+x -exec cp {} "$dest/bin/" \;
done
# The loader looks next to the executable first.
cp "$BUILD/cli/libkiln_cuda.so" "$dest/bin/"
cp "$BUILD/tests/libkiln_fake_cuda_module.so" "$dest/bin/"
cp "$ANCHOR" "$dest/torch_effnet.py"
# Shared libraries the machine lacks: all but glibc's, the C++ runtime and CUDA's.
for f in "$dest"/bin/*; do ldd "$f"; done | awk '/=> \// {print $3}' | sort -u |
    grep -Ev '/(libc|libm|libpthread|libdl|librt|libgcc_s|libstdc\+\+|libcudart|libcublas|libcublasLt|libcudnn[a-z_]*)\.so' |
    while read -r lib; do cp -L "$lib" "$dest/lib/"; done
strip --strip-debug "$dest"/bin/* "$dest"/lib/*
git rev-parse HEAD > "$dest/REVISION"
ls -l "$dest/bin" "$dest/lib" > "$dest/MANIFEST"
mkdir -p "$CARRY"
tar -C "$stage" -cJf "$CARRY/kiln-gpu.tar.xz" kiln-gpu
echo "bench/gpu/pack.sh: $CARRY/kiln-gpu.tar.xz ($(du -h "$CARRY/kiln-gpu.tar.xz" | cut -f1)), revision $(cat "$dest/REVISION")"
cat "$dest/MANIFEST"
