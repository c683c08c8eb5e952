#!/usr/bin/env bash
# Runs a local SQS emulator (moto's server, in memory) for the SqsCallTimer integration test in shared/src/schedule.rs.
#
#   eval "$(bash scripts/sqs-local.sh start)"   # installs on first use, starts, prints the export line
#   bash scripts/sqs-local.sh env               # prints the export line of the running instance
#   bash scripts/sqs-local.sh stop              # stops it
#
# moto comes from PyPI (pinned in scripts/requirements-sqs-local.txt) into the project's .venv, the one
# scripts/deploy-checks.sh uses; it is reinstalled only when that file changes. It listens on loopback only.
# Stdout carries only the export line, so `eval "$(...)"` is safe; every log line goes to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SERVICE=sqs-local
VENV="$ROOT/.venv"
REQUIREMENTS="$ROOT/scripts/requirements-sqs-local.txt"
STAMP="$VENV/.requirements-sqs-local.sha256"
RUN_DIR="$ROOT/.tools/sqs-local/run"
START_TIMEOUT_SECONDS=30
# shellcheck source=lib/service.sh
. "$ROOT/scripts/lib/service.sh"

print_env() {
  printf 'export SQS_ENDPOINT=http://127.0.0.1:%s\n' "$(cat "$PORT_FILE")"
}

# Answers 0 when the server replies 200 to an SQS ListQueues call in the JSON protocol the Rust SDK speaks.
answers() {
  local port="$1"
  curl --silent --max-time 2 --output /dev/null --write-out '%{http_code}' \
    -X POST "http://127.0.0.1:$port/" \
    -H 'Content-Type: application/x-amz-json-1.0' \
    -H 'X-Amz-Target: AmazonSQS.ListQueues' \
    -d '{}' 2>/dev/null | grep -q '^200$'
}

prepare() {
  local want
  want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
  if [ -x "$VENV/bin/moto_server" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  command -v python3 >/dev/null || die "python3 (3.11+) is required"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" >&2 || die "could not create $VENV"
  log "installing $(grep -E '^[a-z]' "$REQUIREMENTS" | tr '\n' ' ')into $VENV (first run only)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS" >&2 \
    || die "could not install $REQUIREMENTS into $VENV (PyPI is needed on first use only)"
  printf '%s\n' "$want" >"$STAMP"
}

launch() {
  # No credentials or region of the machine are read: the tests sign with fixed dummy credentials.
  AWS_ACCESS_KEY_ID=bellhop-local AWS_SECRET_ACCESS_KEY=bellhop-local AWS_DEFAULT_REGION=us-east-1 \
    "$VENV/bin/moto_server" -H 127.0.0.1 -p "$1" </dev/null >"$LOG_FILE" 2>&1 &
  LAUNCHED_PID=$!
}

service_main "$@"
