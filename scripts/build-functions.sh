#!/usr/bin/env bash
# Builds every function in functions/ for this machine, as the binaries the tests in tests/lambda start under a
# local Lambda Runtime API, and prints the directory that holds them (one executable per package name).
#
#   bash scripts/build-functions.sh          # stdout: the binaries' directory; cargo's output goes to stderr
#
# `sam build` runs `cargo lambda build --release` for arm64. Here the build is for the machine's own architecture,
# and its profile, `lambda-test`, keeps what changes how a function behaves from the release profile and drops
# what only changes its speed and size, which a full optimised build would cost minutes for on every run:
#   kept:    panic = "abort"           a panicking handler kills the process, as it does on Lambda, instead of
#                                      being caught by lambda_runtime and reported as a handler error;
#            debug-assertions = false  as in release: no debug_assert! fires that would not fire in production;
#            overflow-checks = false   likewise for integer overflow;
#   dropped: opt-level 3, lto = "fat", codegen-units = 1 (build speed), strip (irrelevant offline).
#   added:   debug = false, incremental = false (smaller artifacts; nothing is debugged from these builds).
# `scripts/lambda-sizes.sh` builds the real release binaries (cross-compiled, fat LTO) when those are needed.
# The profile is given here on the command line so that it lives next to the one command that uses it.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=lambda-test
# Every folder under functions/ is a function (package name = folder name).
packages=()
for dir in functions/*/; do packages+=("--package=$(basename "$dir")"); done
# The hello-world baseline the benchmark compares init times with, built the same way (bench/README.md).
packages+=("--package=hello-lambda")

"${CARGO:-cargo}" build --profile "$PROFILE" \
  --config "profile.$PROFILE.inherits=\"dev\"" \
  --config "profile.$PROFILE.panic=\"abort\"" \
  --config "profile.$PROFILE.debug-assertions=false" \
  --config "profile.$PROFILE.overflow-checks=false" \
  --config "profile.$PROFILE.debug=false" \
  --config "profile.$PROFILE.incremental=false" \
  "${packages[@]}" >&2

target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
printf '%s\n' "$target_dir/$PROFILE"
