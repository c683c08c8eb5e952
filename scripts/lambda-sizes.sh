#!/usr/bin/env bash
# Release-builds every function in functions/ for Lambda (arm64, provided.al2023), zips each bootstrap the way
# `sam package`/`sam deploy` does, and prints a table: function, bootstrap bytes, zip bytes.
# Slow (a fat-LTO cross build of every function, minutes per binary on two cores): not part of the test command.
#
# Installs the pinned cargo-lambda from PyPI into .venv if missing; the PyPI package brings its own zig, which
# cargo-lambda uses as the cross linker, so no system toolchain beyond rustup is needed. The zipping uses SAM CLI's
# own `make_zip`, so aws-sam-cli from scripts/requirements-deploy.txt is installed too if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_LAMBDA_VERSION=1.9.2
ZIGLANG_VERSION=0.17.1
VENV=.venv
PY="$VENV/bin/python"

[ -x "$PY" ] || python3 -m venv "$VENV"
if [ "$("$VENV/bin/cargo-lambda" lambda --version 2>/dev/null | awk '{print $2}')" != "$CARGO_LAMBDA_VERSION" ]; then
  "$PY" -m pip install --quiet --disable-pip-version-check \
    "cargo-lambda==$CARGO_LAMBDA_VERSION" "ziglang==$ZIGLANG_VERSION"
fi
if ! "$PY" -c 'import samcli.lib.package.utils' 2>/dev/null; then
  "$PY" -m pip install --quiet --disable-pip-version-check -r scripts/requirements-deploy.txt
fi
export PATH="$PWD/$VENV/bin:$PATH"
rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu \
  || rustup target add aarch64-unknown-linux-gnu >/dev/null

# Every folder under functions/ is a function (package name = folder name), so a new function is measured without
# editing this script.
functions=()
for dir in functions/*/; do functions+=("$(basename "$dir")"); done

# A separate target dir: the release cross build holds its target dir's lock for many minutes, and the shared
# target/ is what everyone's `cargo test` and `cargo clippy` use. cargo-lambda puts each binary at
# <lambda dir>/<fn>/bootstrap.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/lambda}"
LAMBDA_DIR="$CARGO_TARGET_DIR/lambda"
cargo lambda build --release --arm64 --lambda-dir "$LAMBDA_DIR" "${functions[@]/#/--package=}" >&2

# SAM's rust-cargolambda build copies the bootstrap alone into .aws-sam/build/<Function>/, and `sam package` zips
# that folder with samcli's make_zip (deflate at zlib's default level, mode 0755, fixed 1980 timestamps). Calling
# the same function here makes the zip byte for byte what Lambda receives.
ZIP_DIR="$CARGO_TARGET_DIR/lambda-zips"
rm -rf "$ZIP_DIR"
mkdir -p "$ZIP_DIR"
printf '%-14s %16s %12s\n' function 'bootstrap bytes' 'zip bytes'
total_raw=0
total_zip=0
for fn in "${functions[@]}"; do
  bootstrap="$LAMBDA_DIR/$fn/bootstrap"
  [ -f "$bootstrap" ] || { echo "missing $bootstrap" >&2; exit 1; }
  mkdir -p "$ZIP_DIR/$fn"
  cp "$bootstrap" "$ZIP_DIR/$fn/bootstrap"
  "$PY" -c 'import sys; from samcli.lib.package.utils import make_zip; make_zip(sys.argv[1], sys.argv[2])' \
    "$ZIP_DIR/$fn" "$ZIP_DIR/$fn"
  raw=$(stat -c %s "$bootstrap")
  zipped=$(stat -c %s "$ZIP_DIR/$fn.zip")
  total_raw=$((total_raw + raw))
  total_zip=$((total_zip + zipped))
  printf '%-14s %16d %12d\n' "$fn" "$raw" "$zipped"
done
printf '%-14s %16d %12d\n' total "$total_raw" "$total_zip"
