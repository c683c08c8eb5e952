#!/usr/bin/env bash
# The benchmark in one command: builds what it needs, installs the Socket.IO peer from its lockfile, prints what the
# run is measured on, then runs the load generator against every server (arguments are passed to it), and then the
# cloud path: the Management API fan-out (`bench cloud-fanout`), each function's duration per action on DynamoDB Local
# (`bench cloud-durations`) and the functions' init times (`bench init`).
#
#   bash bench/run.sh                 # the full run: release profile, 5,000 connections, 3 repetitions, cloud path
#   bash bench/run.sh --quick         # the quick mode scripts/test.sh runs: debug builds, 200 connections
#   bash bench/run.sh --reps 5 --rates 100,400   # any option of `bench --help` (the comparison's)
#   bash bench/run.sh cloud [--quick] # the cloud path only
#
# The quick mode reuses the debug binaries the test command builds anyway: its figures say nothing about speed (an
# unoptimised hub), it checks that the benchmark still runs and that no delivery is lost, duplicated or reordered.
# It never builds the functions: their init times are measured on the `lambda-test` builds scripts/test.sh names in
# BELLHOP_FUNCTION_BIN_DIR, and skipped (saying so) without them.
set -euo pipefail
cd "$(dirname "$0")/.."

parts=all
if [ "${1:-}" = cloud ]; then parts=cloud; shift; fi
profile=release
for arg in "$@"; do
  if [ "$arg" = "--quick" ]; then profile=dev; fi
done

# The functions (every folder of functions/) and the hello-world baseline their init is compared with.
function_packages=(--package=hello-lambda)
for dir in functions/*/; do function_packages+=("--package=$(basename "$dir")"); done

if [ "$profile" = release ]; then
  # The root release profile is the Lambdas' (fat LTO, one codegen unit): slow to build, and what ships.
  # Separate invocations: built together, the generator's features would be unified into the harness's and the
  # functions' dependencies and rebuild them differently from `cargo build --release -p local` and from the
  # functions' own build.
  cargo build --release -p local
  cargo build --release -p bench
  # The functions for this machine (not the arm64 cross build `sam build` makes), with the baseline in the same
  # invocation so that both link the same dependency builds.
  cargo build --release "${function_packages[@]}"
  bin=target/release
  function_dir=target/release
else
  cargo build -p local
  cargo build -p bench
  bin=target/debug
  function_dir="${BELLHOP_FUNCTION_BIN_DIR:-}"
fi

# `npm ci` only when the lockfile changed since the last install.
lock_sum=$(sha256sum bench/socketio/package-lock.json | cut -d' ' -f1)
stamp=bench/socketio/node_modules/.installed-from-lock
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
  (cd bench/socketio && npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock_sum" > "$stamp"
fi

# Each server holds one socket per connection, and so does the generator.
ulimit -n 65536 2>/dev/null || true

echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(awk '/MemTotal/ {printf "%.0f GB", $2/1048576}' /proc/meminfo), $(uname -sr)"
echo "tools:   $(rustc --version), node $(node --version), socket.io $(node -p "require('./bench/socketio/node_modules/socket.io/package.json').version")"
echo "profile: $profile; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
status=0
if [ "$parts" = all ]; then
  "$bin/bench" --bellhop "$bin/local" --socketio bench/socketio "$@" || status=$?
fi

quick=()
if [ "$profile" = dev ]; then quick=(--quick); fi
"$bin/bench" cloud-fanout --bellhop "$bin/local" "${quick[@]}" || status=$?
# The durations need DynamoDB Local: the one named by DYNAMODB_ENDPOINT (scripts/test.sh's), else one started here
# and stopped when this script ends.
if [ -z "${DYNAMODB_ENDPOINT:-}" ]; then
  if bash scripts/dynamodb-local.sh env >/dev/null 2>&1; then
    eval "$(bash scripts/dynamodb-local.sh env)"
  else
    eval "$(bash scripts/dynamodb-local.sh start)"
    trap 'bash scripts/dynamodb-local.sh stop' EXIT
  fi
fi
"$bin/bench" cloud-durations "${quick[@]}" || status=$?
if [ -n "$function_dir" ] && [ -x "$function_dir/hello-lambda" ]; then
  "$bin/bench" init --bin-dir "$function_dir" "${quick[@]}" || status=$?
else
  echo "init times: skipped (no function binaries with hello-lambda; scripts/test.sh sets BELLHOP_FUNCTION_BIN_DIR," \
    "a full run builds them with the release profile)"
fi
exit "$status"
