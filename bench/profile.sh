#!/usr/bin/env bash
# Where one server's CPU goes while it broadcasts at a fixed rate: `perf stat` (CPU time, context switches, system
# calls) and `perf record` (kernel versus user space, hottest symbols) attached to the server process the generator
# started, during one long step of 1,000 connections in rooms of 50.
#
#   bash bench/profile.sh bellhop-sqlite 400     # or bellhop-memory, socketio; the rate in message:send per second
#
# Needs the release builds of bench/run.sh and perf (Debian: linux-perf). Writes to target/bench-profile/.
set -euo pipefail
cd "$(dirname "$0")/.."
server=${1:-bellhop-sqlite}
rate=${2:-400}
out=target/bench-profile
mkdir -p "$out"

target/release/bench --servers "$server" --connections 1000 --room-size 50 --reps 1 --rates "$rate" \
  --fixed-rates "$rate" --step-secs 25 --emits 1 --threads >"$out/$server.table" 2>"$out/$server.log" &
bench=$!
pid=
for _ in $(seq 100); do
  pid=$(pgrep -P "$bench" | head -n1 || true)
  [ -n "$pid" ] && break
  sleep 0.1
done
[ -n "$pid" ] || { echo "the generator started no server" >&2; exit 1; }

# Connecting 1,000 clients, joining and one emit take a few seconds; the window below falls inside the 25 s step.
sleep 12
window=8
perf stat -e task-clock,context-switches,raw_syscalls:sys_enter -p "$pid" -- sleep "$window" 2>"$out/$server.stat"
perf record -e cpu-clock -F 999 -g -p "$pid" -o "$out/$server.perf.data" -- sleep 4 2>/dev/null
wait "$bench" || true

deliveries=$((rate * 49 * window))
echo "== $server at $rate msg/s: perf stat over ${window} s (about $deliveries deliveries, $((rate * window)) messages)"
grep -E "task-clock|context-switches|sys_enter" "$out/$server.stat"
awk -v d="$deliveries" -v m="$((rate * window))" '/raw_syscalls:sys_enter/ {gsub(",", "", $1); printf "   %.2f syscalls per delivery, %.1f per message\n", $1 / d, $1 / m}
  /context-switches/ {gsub(",", "", $1); printf "   %.1f context switches per message\n", $1 / m}' "$out/$server.stat"
echo "== CPU samples by object (kernel, the server binary, libc...)"
perf report -i "$out/$server.perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -8
echo "== hottest symbols"
perf report -i "$out/$server.perf.data" --no-children --sort sym --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -25
echo "== per thread, from the generator's --threads"
grep -E "thread|msg/s:" "$out/$server.log"
