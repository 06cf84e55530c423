#!/usr/bin/env bash
# Build kiln with AddressSanitizer + UndefinedBehaviorSanitizer and run every
# test with ctest. Usage: scripts/test.sh [ctest args...]
#   KILN_SANITIZE=""  builds without sanitizers; KILN_CUDA=OFF skips the CUDA backend.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
sanitize="${KILN_SANITIZE-address,undefined}"
build="${KILN_TEST_BUILD_DIR:-build-test}"
cuda_flag=()
[ -n "${KILN_CUDA:-}" ] && cuda_flag=(-DKILN_CUDA="$KILN_CUDA")

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_WERROR=ON \
  -DKILN_SANITIZE="$sanitize" "${cuda_flag[@]}" >/dev/null
cmake --build "$build"
# CUDA's runtime maps memory where ASan's shadow gap is: let it.
export ASAN_OPTIONS="${ASAN_OPTIONS:-protect_shadow_gap=0:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
ctest --test-dir "$build" --output-on-failure -j"$(nproc)" "$@"
