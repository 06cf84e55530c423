#!/bin/bash
# bench/s3.sh — copy a 1 GiB object up and down through S3 on loopback:
# kiln s3 cp against the aws CLI (botocore), same server, same run.
# Prints MB/s and peak RSS of each, and the ratios.
#
# Server: s3rver (npm, installed into .tools/ by scripts/install-deps.sh),
# data under bench/out/s3/. The aws CLI is optional (Debian: awscli); without
# it only kiln's figures are printed.
# Env: SIZE_MB=1024, SKIP_BUILD=1 to use build-bench as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=bench/out
BUILD=build-bench
SIZE_MB=${SIZE_MB:-1024}
KILN=$BUILD/cli/kiln
S3RVER=.tools/node_modules/.bin/s3rver

die() { echo "bench/s3.sh: $*" >&2; exit 1; }

[[ -x $S3RVER ]] || die "no s3rver: run scripts/install-deps.sh"
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKILN_TESTS=OFF >/dev/null
    cmake --build "$BUILD" >/dev/null
fi
mkdir -p "$OUT"
src=$OUT/s3-object.bin
if [[ ! -f $src || $(stat -c %s "$src") -ne $((SIZE_MB << 20)) ]]; then
    head -c $((SIZE_MB << 20)) /dev/urandom >"$src"
fi

rm -rf "$OUT/s3"
mkdir -p "$OUT/s3"
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
NODE_OPTIONS=--openssl-legacy-provider "$S3RVER" --directory "$OUT/s3" --port "$port" \
    --address 127.0.0.1 --silent >"$OUT/s3rver.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$OUT/s3" "$OUT/s3-down.bin"' EXIT
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_DEFAULT_REGION=us-east-1
export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
for _ in $(seq 50); do
    "$KILN" s3 mb s3://bench --max-retries 0 >/dev/null 2>&1 && break
    sleep 0.2
done

# One timed command: prints "seconds peak_rss_kb".
timed() {
    /usr/bin/time -f "%e %M" -o "$OUT/time.txt" "$@" >/dev/null 2>"$OUT/cmd.log" ||
        { cat "$OUT/cmd.log" >&2; die "failed: $*"; }
    cat "$OUT/time.txt"
}
mbps() { awk -v mb="$SIZE_MB" -v s="$1" 'BEGIN { printf "%.0f", mb * 1.048576 / s }'; }

row() { # name up_s up_rss down_s down_rss
    printf '%-8s %10s %12s %10s %12s\n' "$1" "$(mbps "$2")" "$(( $3 / 1024 ))" "$(mbps "$4")" \
        "$(( $5 / 1024 ))"
}

read -r k_up k_up_rss < <(timed "$KILN" s3 cp "$src" s3://bench/kiln.bin)
read -r k_dn k_dn_rss < <(timed "$KILN" s3 cp s3://bench/kiln.bin "$OUT/s3-down.bin")
cmp -s "$src" "$OUT/s3-down.bin" || die "kiln's download differs from the upload"

echo "S3 on loopback (s3rver 3.7.1), ${SIZE_MB} MiB object, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores"
printf '%-8s %10s %12s %10s %12s\n' client "up MB/s" "up RSS MiB" "down MB/s" "down RSS MiB"
row kiln "$k_up" "$k_up_rss" "$k_dn" "$k_dn_rss"
if command -v aws >/dev/null; then
    rm -f "$OUT/s3-down.bin"
    read -r a_up a_up_rss < <(timed aws --endpoint-url "$AWS_ENDPOINT_URL" s3 cp "$src" s3://bench/aws.bin)
    read -r a_dn a_dn_rss < <(timed aws --endpoint-url "$AWS_ENDPOINT_URL" s3 cp s3://bench/aws.bin "$OUT/s3-down.bin")
    cmp -s "$src" "$OUT/s3-down.bin" || die "aws's download differs from the upload"
    row aws "$a_up" "$a_up_rss" "$a_dn" "$a_dn_rss"
    awk -v ku="$k_up" -v au="$a_up" -v kd="$k_dn" -v ad="$a_dn" -v kr="$k_dn_rss" -v ar="$a_dn_rss" \
        'BEGIN { printf "kiln/aws speed: up %.2fx, down %.2fx; download peak RSS aws/kiln %.1fx\n", au / ku, ad / kd, ar / kr }'
else
    echo "(aws CLI not installed: apt-get install awscli to compare)"
fi
