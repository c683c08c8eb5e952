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
VENV="$ROOT/.venv"
REQUIREMENTS="$ROOT/scripts/requirements-sqs-local.txt"
STAMP="$VENV/.requirements-sqs-local.sha256"
RUN_DIR="$ROOT/.tools/sqs-local/run"
PID_FILE="$RUN_DIR/pid"
PORT_FILE="$RUN_DIR/port"
LOG_FILE="$RUN_DIR/moto.log"
START_TIMEOUT_SECONDS=30

log() { printf 'sqs-local: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# True when the pid file names a live process.
running_pid() {
  [ -f "$PID_FILE" ] || return 1
  local pid
  pid="$(cat "$PID_FILE")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && printf '%s' "$pid"
}

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

install() {
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

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start() {
  if pid="$(running_pid)" && [ -f "$PORT_FILE" ] && answers "$(cat "$PORT_FILE")"; then
    log "already running (pid $pid, port $(cat "$PORT_FILE"))"
    print_env
    return 0
  fi
  # A pid file without a healthy server is left over from a crash or a reboot: clean it up and start afresh.
  stop_quietly

  command -v curl >/dev/null || die "curl is required (it checks that the emulator answers)"
  install
  local port pid
  port="$(free_port)"
  mkdir -p "$RUN_DIR"
  log "starting moto_server on 127.0.0.1:$port (log: $LOG_FILE)"
  # No credentials or region of the machine are read: the tests sign with fixed dummy credentials.
  AWS_ACCESS_KEY_ID=bellhop-local AWS_SECRET_ACCESS_KEY=bellhop-local AWS_DEFAULT_REGION=us-east-1 \
    "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" </dev/null >"$LOG_FILE" 2>&1 &
  pid=$!
  printf '%s\n' "$pid" >"$PID_FILE"
  printf '%s\n' "$port" >"$PORT_FILE"

  local waited=0
  until answers "$port"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "moto_server exited during startup; its log follows"
      cat "$LOG_FILE" >&2 || true
      rm -f "$PID_FILE" "$PORT_FILE"
      exit 1
    fi
    if [ "$waited" -ge $((START_TIMEOUT_SECONDS * 4)) ]; then
      stop_quietly
      die "moto_server did not answer within ${START_TIMEOUT_SECONDS}s; see $LOG_FILE"
    fi
    sleep 0.25
    waited=$((waited + 1))
  done
  log "ready (pid $pid)"
  print_env
}

stop_quietly() {
  local pid
  if pid="$(running_pid)"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.25
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$PID_FILE" "$PORT_FILE"
}

case "${1:-}" in
  start)
    start
    ;;
  stop)
    if pid="$(running_pid)"; then
      log "stopping pid $pid"
    else
      log "not running"
    fi
    stop_quietly
    ;;
  env)
    if running_pid >/dev/null && [ -f "$PORT_FILE" ]; then
      print_env
    else
      die "not running; use: eval \"\$(bash scripts/sqs-local.sh start)\""
    fi
    ;;
  *)
    printf 'usage: %s start|stop|env\n' "$0" >&2
    exit 2
    ;;
esac
