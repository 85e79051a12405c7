#!/usr/bin/env bash
# Builds the Lambda package: target/lambda/portico-lambda.zip holding `bootstrap`, the one binary
# every Portico function runs (PORTICO_LAMBDA_HANDLER picks the handler).
#
#   deploy/package.sh            # x86_64
#   ARCH=arm64 deploy/package.sh # Graviton
#
# Lambda's provided.al2023 runtime has glibc 2.34. With cargo-lambda installed
# (`cargo install cargo-lambda`, which links with zig against an older glibc) the package runs
# there whatever this machine's glibc; without it, the binary is built by plain cargo and this
# script refuses it if it needs a glibc newer than 2.34.
set -euo pipefail
cd "$(dirname "$0")/.."

arch="${ARCH:-x86_64}"
case "$arch" in
  x86_64) triple=x86_64-unknown-linux-gnu ;;
  arm64) triple=aarch64-unknown-linux-gnu ;;
  *) echo "ARCH must be x86_64 or arm64" >&2; exit 2 ;;
esac
target_dir="${CARGO_TARGET_DIR:-target}"
out=target/lambda
mkdir -p "$out"

if cargo lambda --version >/dev/null 2>&1; then
  cargo lambda build --release -p portico-lambda --features aws --target "$triple"
  binary="$target_dir/lambda/portico-lambda/bootstrap"
else
  if [ "$arch" != "$(uname -m | sed 's/aarch64/arm64/')" ]; then
    echo "cross-building for $arch needs cargo-lambda (cargo install cargo-lambda)" >&2
    exit 2
  fi
  cargo build --release -p portico-lambda --features aws
  binary="$target_dir/release/portico-lambda"
  newest=$(objdump -T "$binary" | grep -o 'GLIBC_[0-9.]*' | sort -t. -k2,2n -u | tail -1)
  if [ "$(printf '%s\n%s\n' "$newest" GLIBC_2.34 | sort -t. -k2,2n | tail -1)" != GLIBC_2.34 ]; then
    echo "$binary needs $newest; provided.al2023 has GLIBC_2.34: build with cargo-lambda" >&2
    exit 1
  fi
fi

staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
cp "$binary" "$staging/bootstrap"
strip "$staging/bootstrap"
rm -f "$out/portico-lambda.zip"
(cd "$staging" && python3 -m zipfile -c "$OLDPWD/$out/portico-lambda.zip" bootstrap)
ls -l "$out/portico-lambda.zip"
