#!/usr/bin/env bash
# bench-loadgen.sh — is loadgen at least as fast as wrk?
#
# Starts nginx on loopback (its own prefix, pid and logs in a temp dir, a free
# port, run as a non-daemon child and killed by pid at the end) and runs wrk
# and loadgen against it in turn, with the same connections and threads,
# several alternating runs. Prints each run, the median req/s of each tool and
# the ratio loadgen / wrk. Goal: >= 1.0.
#
# Usage: scripts/bench-loadgen.sh [--build DIR] [--runs N] [--duration S]
#                                 [--connections C] [--threads T] [--nginx-workers W]
# Needs nginx (nginx-light) and wrk. Loopback only.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build="$root/build"
runs=5
duration=5
connections=100
threads=1
workers=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --build) build=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --connections) connections=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --nginx-workers) workers=$2; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "bench-loadgen: unknown option $1" >&2; exit 2 ;;
    esac
done

loadgen="$build/bin/loadgen"
[[ -x "$loadgen" ]] || { echo "bench-loadgen: $loadgen not built (cmake --build $build --target loadgen)" >&2; exit 2; }
nginx_bin=$(command -v nginx || true)
[[ -n "$nginx_bin" ]] || nginx_bin=/usr/sbin/nginx
[[ -x "$nginx_bin" ]] || { echo "bench-loadgen: nginx not found (apt-get install nginx-light)" >&2; exit 2; }
command -v wrk >/dev/null || { echo "bench-loadgen: wrk not found (apt-get install wrk)" >&2; exit 2; }

tmp=$(mktemp -d /tmp/bench-loadgen.XXXXXX)
nginx_pid=""
cleanup() {
    if [[ -n "$nginx_pid" ]] && kill -0 "$nginx_pid" 2>/dev/null; then
        kill -TERM "$nginx_pid" 2>/dev/null || true   # the master stops its workers
        for _ in $(seq 50); do kill -0 "$nginx_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$nginx_pid" 2>/dev/null || true
        wait "$nginx_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# A free port: bind to port 0 and read what the kernel gave.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -e "s|@PORT@|$port|g" -e "s|@PREFIX@|$tmp|g" -e "s|@WORKERS@|$workers|g" \
    "$here/nginx-bench.conf" > "$tmp/nginx.conf"
"$nginx_bin" -p "$tmp" -c "$tmp/nginx.conf" -e "$tmp/error.log" >"$tmp/nginx.out" 2>&1 &
nginx_pid=$!
url="http://127.0.0.1:$port/"
for _ in $(seq 50); do
    if "$loadgen" --mode http --url "$url" -c 1 --threads 1 -n 1 -q >/dev/null 2>&1; then break; fi
    kill -0 "$nginx_pid" 2>/dev/null || { echo "bench-loadgen: nginx exited:" >&2; cat "$tmp/error.log" "$tmp/nginx.out" >&2; exit 1; }
    sleep 0.1
done

echo "nginx $("$nginx_bin" -v 2>&1 | sed 's/.*\///') on $url ($workers worker), $(nproc) cores"
echo "each run: $connections connections, $threads threads, ${duration}s; $runs runs per tool, alternating; load average $(cut -d" " -f1-3 /proc/loadavg)"

wrk_rates=()
lg_rates=()
for i in $(seq "$runs"); do
    w=$(wrk -t"$threads" -c"$connections" -d"${duration}s" "$url" | awk '/^Requests\/sec:/ {print $2}')
    wrk_rates+=("$w")
    l=$("$loadgen" --mode http --url "$url" -c "$connections" --threads "$threads" -d "$duration" -q \
        | awk '/^Requests\/sec:/ {print $2}')
    lg_rates+=("$l")
    printf 'run %d: wrk %12.0f req/s   loadgen %12.0f req/s\n' "$i" "$w" "$l"
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
mw=$(median "${wrk_rates[@]}")
ml=$(median "${lg_rates[@]}")
ratio=$(awk -v l="$ml" -v w="$mw" 'BEGIN {printf "%.2f", l / w}')
printf 'median: wrk %.0f req/s, loadgen %.0f req/s, ratio loadgen/wrk %sx (goal >= 1.0x)\n' "$mw" "$ml" "$ratio"
