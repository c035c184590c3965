#!/usr/bin/env bash
# bench-chat.sh — chat-server with 1,000 and then 5,000 clients in one room.
#
# For each count N: starts a fresh chat-server (default limits) on loopback,
# connects N clients with chat-bench (bench/chat-bench/chat_bench.cpp), waits
# until all are welcomed, then has --talkers of them send --rate messages per
# second each for --duration seconds. Every message fans out to N-1 clients.
# Reports deliveries per second, delivery latency (p50/p99/p99.9/max from
# chat-bench's histogram, from the sender's write to the receiver's read,
# CLOCK_MONOTONIC), lost deliveries, and the server's CPU (over the talking
# phase) and RSS. chat-bench runs in one thread on the same machine: on 2
# cores its own reads are part of the latency measured. With 2 CPUs or more
# the server is pinned to CPU 0 and chat-bench to CPU 1.
#
# Bounded: each run has a timeout (connect 60 s + duration + drain 10 s), the
# server gets SIGTERM and at most 10 s more.
#
# Usage: scripts/bench-chat.sh [--build-dir DIR] [--counts "1000 5000"]
#                              [--talkers 5] [--rate 10] [--duration 10]
# --rate above 20 is over the server's flood limit (20 lines/s): the talkers'
# lines would be delayed, and the latencies would show it.
#
# Exit codes: 0 every run delivered everything, 1 a run failed or lost
# messages, 2 usage error, 3 not built.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

counts="1000 5000"
talkers=5
rate=10
duration=10
while (($#)); do
  if lib_common_option "$@"; then shift "$LIB_SHIFT"; continue; fi
  case "$1" in
    --counts) need_value "$@"; counts=$2; shift 2 ;;
    --talkers) need_value "$@"; check_uint "$1" "$2"; talkers=$2; shift 2 ;;
    --rate) need_value "$@"; rate=$2; shift 2 ;;
    --duration) need_value "$@"; check_uint "$1" "$2"; duration=$2; shift 2 ;;
    *) usage_error "unknown option '$1'" ;;
  esac
done
for n in $counts; do check_uint --counts "$n"; done
[[ "$rate" =~ ^[0-9]+([.][0-9]+)?$ ]] || usage_error "--rate must be a number, got '$rate'"
require_bin chat-server chat-bench

server_cpu=() bench_cpu=()
if (($(nproc) >= 2)) && command -v taskset >/dev/null 2>&1; then
  server_cpu=(--cpu 0)
  bench_cpu=(taskset -c 1) # under timeout: a command, not lib.sh's pin function
fi

out=$(scratch_dir)
status=0
step=0
steps=$(wc -w <<<"$counts")
for n in $counts; do
  step=$((step + 1))
  # Every limit at its default.
  start_server "${server_cpu[@]}" chat-server --port 0
  limit=$((duration + 90))
  echo "== $n clients, $talkers talkers x $rate msg/s for ${duration}s (fan-out $((n - 1)) per message)"
  rc=0
  progress "$step" "$steps" "$n chat clients, ${duration}s"
  timeout "$limit" "${bench_cpu[@]}" "$BUILD_DIR/bin/chat-bench" "$SERVER_ADDR" --clients "$n" \
    --talkers "$talkers" --rate "$rate" --duration "$duration" --drain 10 \
    --server-pid "$SERVER_PID" >"$out/bench.out" 2>"$out/bench.err" || rc=$?
  progress_clear
  if ((rc != 0)); then
    status=1
    echo "$SCRIPT: chat-bench failed (exit $rc)" >&2
    cat "$out/bench.err" >&2
  fi
  result=$(cat "$out/bench.out")
  echo "$result"
  # A readable digest of the key=value line.
  echo "$result" | tr ' ' '\n' | awk -F= '
        { v[$1] = $2 }
        END {
            if (!("delivered" in v)) exit
            printf "   deliveries/s %s   p99 %s ms (p50 %s, p99.9 %s, max %s)   lost %s\n",
                   v["deliveries_per_s"], v["p99_ms"], v["p50_ms"], v["p999_ms"], v["max_ms"],
                   v["lost"]
            printf "   server CPU %s%%   RSS %.1f MiB (peak %.1f MiB)   all connected in %s s\n",
                   v["server_cpu_pct"], v["server_rss_kb"] / 1024, v["server_hwm_kb"] / 1024,
                   v["connect_s"]
        }'
  src=0
  stop_server "$SERVER_PID" || src=$?
  ((src == 0)) || { status=1; echo "$SCRIPT: chat-server exited $src on SIGTERM" >&2; }
  tail -n1 "$SERVER_OUT" | sed 's/^/   server /'
done
exit "$status"
