#!/usr/bin/env bash
# bench-loadgen.sh — is loadgen at least 1.05 times as fast as wrk against nginx?
#
# Starts nginx on loopback (one worker, pinned to --nginx-cpu; its own prefix,
# pid, logs and files in a scratch directory; a free port) serving two
# workloads: a 1 KiB static file read from disk (sendfile, ETag and
# Last-Modified headers) and its `return 200` location. For each workload at
# each connection count (a row), wrk and loadgen take turns, each with one
# thread pinned to --client-cpu, --runs times --duration seconds. Prints every
# run, then per row the median requests/s of each tool and the ratio
# loadgen / wrk. Goal: >= 1.05 on every row. Default time: 4 rows x 2 tools x
# 5 runs x 5 s = 200 s, plus start-up.
#
# Each run's client CPU (user + system seconds of the tool, from bash's
# `time`) is divided by its requests: the client's CPU µs per request, median
# per row. When nginx is the bottleneck (the static file: its worker at 100%
# of its CPU whichever tool drives it) requests/s can only tie; the CPU a
# generator spends per request is then what tells the two apart.
#
# Usage: scripts/bench-loadgen.sh [--build-dir DIR] [--runs 5] [--duration 5]
#                                 [--connections "50 100"] [--nginx-cpu 0] [--client-cpu 1]
# Needs nginx (nginx-light) and wrk. Loopback only. Exit 0 when every row
# meets the goal, 1 when one misses (the table says which).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

runs=5
duration=5
connections="50 100"
nginx_cpu=0
client_cpu=1
while (($#)); do
  if lib_common_option "$@"; then shift "$LIB_SHIFT"; continue; fi
  case "$1" in
    --runs) need_value "$@"; check_uint "$1" "$2"; runs=$2; shift 2 ;;
    --duration) need_value "$@"; check_uint "$1" "$2"; duration=$2; shift 2 ;;
    --connections) need_value "$@"; connections=$2; shift 2 ;;
    --nginx-cpu) need_value "$@"; check_uint "$1" "$2"; nginx_cpu=$2; shift 2 ;;
    --client-cpu) need_value "$@"; check_uint "$1" "$2"; client_cpu=$2; shift 2 ;;
    *) usage_error "unknown option '$1'" ;;
  esac
done
for c in $connections; do check_uint --connections "$c"; done
((runs > 0 && duration > 0)) || usage_error "--runs and --duration must be at least 1"

require_bin loadgen
loadgen="$BUILD_DIR/bin/loadgen"
nginx_bin=$(command -v nginx || true)
[[ -n "$nginx_bin" ]] || nginx_bin=/usr/sbin/nginx
[[ -x "$nginx_bin" ]] || cannot_run "nginx is not installed (apt-get install nginx-light)"
require_cmd wrk wrk

tmp=$(scratch_dir)
mkdir -p "$tmp/www/static"
head -c 1024 /dev/urandom >"$tmp/www/static/1k.bin"
# nginx started by root serves as an unprivileged user: let it through the
# scratch directories (mktemp makes them 0700).
chmod a+x "$(dirname "$tmp")" "$tmp"
chmod -R a+rX "$tmp/www"
# A free port: bind to port 0 and read what the kernel gave.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -e "s|@PORT@|$port|g" -e "s|@PREFIX@|$tmp|g" -e "s|@WORKERS@|1|g" \
  "$ROOT/scripts/nginx-bench.conf" >"$tmp/nginx.conf"
spawn --cpu "$nginx_cpu" --out "$tmp/nginx.out" --err "$tmp/nginx.err" \
  "$nginx_bin" -p "$tmp" -c "$tmp/nginx.conf" -e "$tmp/error.log"
nginx_pid=$SPAWN_PID
base="http://127.0.0.1:$port"
ready=0
for _ in $(seq 50); do
  if "$loadgen" --mode http --url "$base/static/1k.bin" --url "$base/" -c 1 --threads 1 -n 2 -q >/dev/null 2>&1; then
    ready=1
    break
  fi
  lib_alive "$nginx_pid" || die "nginx exited: $(cat "$tmp/error.log" "$tmp/nginx.err" 2>/dev/null)"
  sleep 0.1
done
((ready)) || die "nginx does not serve $base/static/1k.bin and $base/ with 200 within 5 s: $(tail -n 3 "$tmp/error.log" 2>/dev/null)"

echo "nginx $("$nginx_bin" -v 2>&1 | sed 's/.*\///') on $base (1 worker on CPU $nginx_cpu), clients on CPU $client_cpu, $(nproc) cores"
echo "each run: 1 thread, ${duration}s; $runs runs per tool and row, alternating; load average $(cut -d" " -f1-3 /proc/loadavg)"

# timed OUT CMD...: runs CMD with its stdout in OUT and its stderr in
# OUT.err; CPU_S = its user+system seconds.
timed() {
  local out=$1 t TIMEFORMAT='%U %S'
  shift
  t=$({ time "$@" >"$out" 2>"$out.err"; } 2>&1)
  CPU_S=$(awk '{ print $1 + $2 }' <<<"$t")
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

rows=()
missed=0
for workload in static return200; do
  if [[ $workload == static ]]; then url="$base/static/1k.bin"; label="static 1 KiB"; else url="$base/"; label="return 200"; fi
  for c in $connections; do
    wrk_rates=()
    lg_rates=()
    wrk_cpu=()
    lg_cpu=()
    for i in $(seq "$runs"); do
      timed "$tmp/wrk.out" pin "$client_cpu" wrk -t1 -c"$c" -d"${duration}s" "$url" || true
      w=$(awk '/^Requests\/sec:/ {print $2}' "$tmp/wrk.out")
      wc=$CPU_S
      timed "$tmp/lg.out" pin "$client_cpu" "$loadgen" --mode http --url "$url" -c "$c" --threads 1 \
        -d "$duration" -q || true
      l=$(awk '/^Requests\/sec:/ {print $2}' "$tmp/lg.out")
      lc=$CPU_S
      [[ -n "$w" && -n "$l" ]] || die "$label, $c connections, run $i: no Requests/sec line (wrk '$w': $(tail -n 2 "$tmp/wrk.out.err" | tr '\n' ' '); loadgen '$l': $(tail -n 2 "$tmp/lg.out.err" | tr '\n' ' '))"
      wrk_rates+=("$w")
      lg_rates+=("$l")
      # µs of client CPU per request: CPU seconds / (requests/s x seconds)
      wrk_cpu+=("$(awk -v c="$wc" -v r="$w" -v d="$duration" 'BEGIN {printf "%.2f", c * 1e6 / (r * d)}')")
      lg_cpu+=("$(awk -v c="$lc" -v r="$l" -v d="$duration" 'BEGIN {printf "%.2f", c * 1e6 / (r * d)}')")
      printf '%-13s c=%-4d run %d: wrk %9.0f req/s %6s us/req   loadgen %9.0f req/s %6s us/req\n' \
        "$label" "$c" "$i" "$w" "${wrk_cpu[-1]}" "$l" "${lg_cpu[-1]}"
    done
    mw=$(median "${wrk_rates[@]}")
    ml=$(median "${lg_rates[@]}")
    cw=$(median "${wrk_cpu[@]}")
    cl=$(median "${lg_cpu[@]}")
    ratio=$(awk -v l="$ml" -v w="$mw" 'BEGIN {printf "%.2f", l / w}')
    cratio=$(awk -v l="$cl" -v w="$cw" 'BEGIN {printf "%.2f", w / l}')
    awk -v r="$ratio" 'BEGIN {exit !(r < 1.05)}' && missed=$((missed + 1))
    rows+=("$(printf '| %-12s | %5d | %11.0f | %13.0f | %5sx | %7.2f | %7.2f | %5sx |' \
      "$label" "$c" "$mw" "$ml" "$ratio" "$cw" "$cl" "$cratio")")
  done
done

echo
echo "| workload     | conns | wrk req/s   | loadgen req/s | ratio  | wrk us/req | loadgen us/req | CPU ratio |"
echo "|--------------|-------|-------------|---------------|--------|---------|---------|--------|"
printf '%s\n' "${rows[@]}"
echo "medians of $runs alternating runs of ${duration}s; us/req: client CPU per request; CPU ratio: wrk / loadgen (above 1: loadgen spends less)"
echo "goal: loadgen/wrk requests/s >= 1.05 on every row ($missed missed)"
((missed == 0)) || exit 1
