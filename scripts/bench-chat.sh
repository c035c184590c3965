#!/usr/bin/env bash
# bench-chat.sh — chat-server with 1,000 and then 5,000 clients in one room.
#
# For each count N: starts a fresh chat-server (default limits) on loopback,
# connects N clients with chat-bench (bench/chat-bench/chat_bench.cpp), waits
# until all are welcomed, then has --talkers of them send --rate messages per
# second each for --duration seconds. Every message fans out to N-1 clients.
# Reports deliveries per second, delivery latency (p50/p99/p99.9/max, from
# the sender's write to the receiver's read, CLOCK_MONOTONIC), lost
# deliveries, and the server's CPU (over the talking phase) and RSS.
# chat-bench runs in one thread on the same machine: on 2 cores its own reads
# are part of the latency measured.
#
# Bounded: each run has a timeout (connect 60 s + duration + drain 10 s), the
# server gets SIGTERM and at most 10 s more.
#
# Usage: scripts/bench-chat.sh [--build DIR] [--counts "1000 5000"]
#                              [--talkers 5] [--rate 10] [--duration 10]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build="$root/build"
counts="1000 5000"
talkers=5
rate=10
duration=10
while [[ $# -gt 0 ]]; do
    case "$1" in
        --build) build=$2; shift 2 ;;
        --counts) counts=$2; shift 2 ;;
        --talkers) talkers=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "bench-chat: unknown option $1" >&2; exit 2 ;;
    esac
done

for prog in chat-server chat-bench; do
    [[ -x "$build/bin/$prog" ]] || {
        echo "bench-chat: $build/bin/$prog not built (cmake --build $build --target $prog)" >&2
        exit 2
    }
done

tmp=$(mktemp -d /tmp/bench-chat.XXXXXX)
server_pid=""
stop_server() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    if [[ -n "$server_pid" ]]; then wait "$server_pid" 2>/dev/null || true; fi
    server_pid=""
}
trap 'stop_server; rm -rf "$tmp"' EXIT

status=0
for n in $counts; do
    # The server: every limit at its default (rate limit 20/s per client, so
    # --rate above 20 would be flood-controlled, and the bench would say so).
    "$build/bin/chat-server" --port 0 >"$tmp/server.out" 2>"$tmp/server.err" &
    server_pid=$!
    port=""
    for _ in $(seq 100); do
        line=$(head -n1 "$tmp/server.out" 2>/dev/null || true)
        if [[ "$line" == listening\ on\ * ]]; then port=${line##*:}; break; fi
        sleep 0.05
    done
    [[ -n "$port" ]] || { echo "bench-chat: chat-server did not start" >&2; cat "$tmp/server.err" >&2; exit 1; }

    limit=$(awk -v d="$duration" 'BEGIN { printf "%d", d + 90 }')
    echo "== $n clients, $talkers talkers x $rate msg/s for ${duration}s (fan-out $((n - 1)) per message)"
    if timeout "$limit" "$build/bin/chat-bench" "127.0.0.1:$port" --clients "$n" \
        --talkers "$talkers" --rate "$rate" --duration "$duration" --drain 10 \
        --server-pid "$server_pid" >"$tmp/bench.out" 2>"$tmp/bench.err"; then
        :
    else
        status=1
        echo "bench-chat: chat-bench failed (exit $?)" >&2
        cat "$tmp/bench.err" >&2
    fi
    result=$(cat "$tmp/bench.out")
    echo "$result"
    # A readable digest of the key=value line.
    echo "$result" | tr ' ' '\n' | awk -F= '
        { v[$1] = $2 }
        END {
            if (!("delivered" in v)) exit
            printf "   deliveries/s %s   p99 %s ms (p50 %s, max %s)   lost %s\n",
                   v["deliveries_per_s"], v["p99_ms"], v["p50_ms"], v["max_ms"], v["lost"]
            printf "   server CPU %s%%   RSS %.1f MiB (peak %.1f MiB)   all connected in %s s\n",
                   v["server_cpu_pct"], v["server_rss_kb"] / 1024, v["server_hwm_kb"] / 1024,
                   v["connect_s"]
        }'
    stop_server
    tail -n1 "$tmp/server.out" | sed 's/^/   server /'
done
exit $status
