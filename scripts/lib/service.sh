# Shared by the scripts that run a local emulator for the tests (dynamodb-local.sh, sqs-local.sh): the pid and port
# files, start with a readiness check, stop, and the start|stop|env commands. Sourced, never run.
#
# The sourcing script sets SERVICE (its name in logs), RUN_DIR and START_TIMEOUT_SECONDS, and defines:
#   prepare       checks prerequisites and installs on first use
#   launch PORT   starts the server in the background on PORT and sets LAUNCHED_PID
#   answers PORT  succeeds when the server on PORT answers a real request
#   print_env     prints the export lines for a running instance (the only thing written to stdout)
# then ends with: service_main "$@"

PID_FILE="$RUN_DIR/pid"
PORT_FILE="$RUN_DIR/port"
LOG_FILE="$RUN_DIR/$SERVICE.log"

log() { printf '%s: %s\n' "$SERVICE" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is not installed or not on PATH: $2"
}

# Prints the pid and succeeds when the pid file names a live process.
running_pid() {
  [ -f "$PID_FILE" ] || return 1
  local pid
  pid="$(cat "$PID_FILE")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && printf '%s' "$pid"
}

free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
  else
    # Without Python, pick from the ephemeral range and let the readiness check catch the rare collision.
    printf '%s\n' $((49152 + RANDOM % 16000))
  fi
}

service_start() {
  local pid port
  if pid="$(running_pid)" && [ -f "$PORT_FILE" ] && answers "$(cat "$PORT_FILE")"; then
    log "already running (pid $pid, port $(cat "$PORT_FILE"))"
    print_env
    return 0
  fi
  # A pid file without a healthy server is left over from a crash or a reboot: clean it up and start afresh.
  stop_quietly
  need curl "install curl (used to check that $SERVICE answers)"
  prepare
  port="$(free_port)"
  mkdir -p "$RUN_DIR"
  log "starting on port $port (log: $LOG_FILE)"
  launch "$port"
  pid="$LAUNCHED_PID"
  printf '%s\n' "$pid" >"$PID_FILE"
  printf '%s\n' "$port" >"$PORT_FILE"

  local waited=0
  until answers "$port"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "exited during startup; its log follows"
      cat "$LOG_FILE" >&2 || true
      rm -f "$PID_FILE" "$PORT_FILE"
      exit 1
    fi
    if [ "$waited" -ge $((START_TIMEOUT_SECONDS * 4)) ]; then
      stop_quietly
      die "did not answer within ${START_TIMEOUT_SECONDS}s; see $LOG_FILE"
    fi
    sleep 0.25
    waited=$((waited + 1))
  done
  log "ready (pid $pid)"
  print_env
}

# Stops the instance this checkout started, politely and then not, and forgets it.
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

service_main() {
  case "${1:-}" in
    start)
      service_start
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
        die "not running; use: eval \"\$(bash $0 start)\""
      fi
      ;;
    *)
      printf 'usage: %s start|stop|env\n' "$0" >&2
      exit 2
      ;;
  esac
}
