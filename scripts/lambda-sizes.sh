#!/usr/bin/env bash
# Release-builds every function for Lambda (arm64, provided.al2023) and prints each function's zipped size.
# Slow (a fat-LTO cross build of six binaries): not part of scripts/test.sh.
#
# Installs the pinned cargo-lambda from PyPI into .venv if missing; the PyPI package brings its own zig, which
# cargo-lambda uses as the cross linker, so no system toolchain beyond rustup is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_LAMBDA_VERSION=1.9.2
ZIGLANG_VERSION=0.17.1
VENV=.venv

if [ "$("$VENV/bin/cargo-lambda" lambda --version 2>/dev/null | awk '{print $2}')" != "$CARGO_LAMBDA_VERSION" ]; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "cargo-lambda==$CARGO_LAMBDA_VERSION" "ziglang==$ZIGLANG_VERSION"
fi
export PATH="$PWD/$VENV/bin:$PATH"
rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu \
  || rustup target add aarch64-unknown-linux-gnu >/dev/null

functions=()
for dir in functions/*/; do functions+=("$(basename "$dir")"); done

# --output-format zip writes <target dir>/lambda/<fn>/bootstrap.zip, the artifact Lambda receives. Set
# CARGO_TARGET_DIR to build elsewhere (the release cross build holds the target dir's lock for minutes).
LAMBDA_DIR="${CARGO_TARGET_DIR:-target}/lambda"
cargo lambda build --release --arm64 --output-format zip "${functions[@]/#/--package=}" >&2

printf '%-12s %12s %12s\n' function bootstrap zipped
total=0
for fn in "${functions[@]}"; do
  zip="$LAMBDA_DIR/$fn/bootstrap.zip"
  [ -f "$zip" ] || { echo "missing $zip" >&2; exit 1; }
  zipped=$(stat -c %s "$zip")
  raw=$(unzip -Zt "$zip" | awk '{print $3}')
  total=$((total + zipped))
  printf '%-12s %9d KiB %9d KiB\n' "$fn" $((raw / 1024)) $((zipped / 1024))
done
printf '%-12s %12s %9d KiB\n' total '' $((total / 1024))
