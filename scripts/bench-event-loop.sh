#!/usr/bin/env bash
# bench-event-loop.sh — what lab 06's hand-written event loop costs, against
# the goals of its issue, in one run:
#
#   1. echo: loop-echo (a coroutine per client) and echo-epoll (the callback
#      loop of lab 03) under the same loadgen workload — 50 connections,
#      64-byte echoes, closed loop — taking turns, REPEATS times each. Figure:
#      the server's user+system CPU µs per request (from /proc/PID/stat around
#      the run), median per server, and the ratio loop-echo / echo-epoll.
#      Goal: ratio <= 1.15.
#   2. timers: loop-bench --timers 1000000 — a million call_at timers
#      scheduled and fired; figure: CPU seconds (median). Goal: < 1 s.
#   3. executor: loop-bench --executor 20000 — run_in_executor round trips
#      (submit, eventfd wake-up, result on the loop); figure: p50 µs
#      (median of the repeats). Goal: < 50 µs.
#
# Server on CPU 0, loadgen (one thread) on CPU 1 when taskset and two CPUs
# exist. Bounded: REPEATS x 2 echo runs of DURATION s, plus a few seconds.
#
# Usage: scripts/bench-event-loop.sh [--repeats N (3)] [--duration S (3)]
#                                    [--build-dir DIR]
# Exit codes: 0 measured (goals met or not: see the last lines), 1 a run
# failed, 2 usage error, 3 not built.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

REPEATS=3
DURATION=3
while (($#)); do
  if lib_common_option "$@"; then
    shift "$LIB_SHIFT"
    continue
  fi
  case "$1" in
    --repeats) need_value "$@"; check_uint --repeats "$2"; REPEATS=$2; shift 2 ;;
    --duration) need_value "$@"; check_uint --duration "$2"; DURATION=$2; shift 2 ;;
    *) usage_error "unknown option '$1' (see --help)" ;;
  esac
done
((REPEATS >= 1 && REPEATS <= 20)) || usage_error "--repeats must be 1..20"
((DURATION >= 1 && DURATION <= 60)) || usage_error "--duration must be 1..60"
require_bin loop-echo echo-epoll loadgen loop-bench

SERVER_CPU=0
CLIENT_CPU=1
if (($(nproc) < 2)); then CLIENT_CPU=0; fi
CLK_TCK=$(getconf CLK_TCK)
WORK=$(scratch_dir)

cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# One echo run: prints "CPU_US_PER_REQUEST REQUESTS".
echo_run() {
  local server=$1 json="$WORK/$1-$2.json" c0 c1 rc=0
  start_server --cpu "$SERVER_CPU" "$server" --port 0
  c0=$(cpu_ticks "$SERVER_PID")
  pin "$CLIENT_CPU" "$BUILD_DIR/bin/loadgen" "$SERVER_ADDR" -c 50 --size 64 -d "$DURATION" \
    --threads 1 -q --json "$json" >/dev/null 2>"$WORK/loadgen.err" || rc=$?
  c1=$(cpu_ticks "$SERVER_PID")
  stop_server "$SERVER_PID" || die "$server did not stop cleanly"
  ((rc == 0)) || die "loadgen against $server failed: $(head -c 300 "$WORK/loadgen.err")"
  python3 - "$json" "$c0" "$c1" "$CLK_TCK" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
req = r["requests"]
cpu_us = (int(sys.argv[3]) - int(sys.argv[2])) * 1e6 / int(sys.argv[4])
print(f"{cpu_us / req if req else 0:.3f} {req}")
PY
}

echo "== echo: 50 connections, 64-byte echoes, ${DURATION} s x ${REPEATS} each (server CPU $SERVER_CPU, loadgen CPU $CLIENT_CPU)"
: >"$WORK/loop-echo.cpu"
: >"$WORK/echo-epoll.cpu"
steps=$((4 * REPEATS))
step=0
for ((i = 1; i <= REPEATS; i++)); do
  for server in echo-epoll loop-echo; do
    step=$((step + 1))
    progress "$step" "$steps" "echo: $server, run $i of $REPEATS"
    read -r per req < <(echo_run "$server" "$i")
    progress_clear
    printf '  %-10s run %d: %8s µs CPU/request  (%s requests)\n' "$server" "$i" "$per" "$req"
    echo "$per" >>"$WORK/$server.cpu"
  done
done
EPOLL=$(median <"$WORK/echo-epoll.cpu")
LOOP=$(median <"$WORK/loop-echo.cpu")
RATIO=$(awk -v a="$LOOP" -v b="$EPOLL" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')

echo "== timers: 1,000,000 scheduled and fired (CPU $SERVER_CPU)"
: >"$WORK/timers"
for ((i = 1; i <= REPEATS; i++)); do
  step=$((step + 1))
  progress "$step" "$steps" "timers: run $i of $REPEATS"
  line=$(pin "$SERVER_CPU" "$BUILD_DIR/bin/loop-bench" --timers 1000000)
  progress_clear
  echo "  $line"
  sed -n 's/.*cpu_s=\([0-9.]*\).*/\1/p' <<<"$line" >>"$WORK/timers"
done
TIMERS=$(median <"$WORK/timers")

echo "== executor: 20,000 round trips (loop on CPU $SERVER_CPU, pool free to run anywhere)"
: >"$WORK/exec"
for ((i = 1; i <= REPEATS; i++)); do
  step=$((step + 1))
  progress "$step" "$steps" "executor: run $i of $REPEATS"
  line=$("$BUILD_DIR/bin/loop-bench" --executor 20000)
  progress_clear
  echo "  $line"
  sed -n 's/.*p50_us=\([0-9.]*\).*/\1/p' <<<"$line" >>"$WORK/exec"
done
EXEC=$(median <"$WORK/exec")

verdict() { if awk -v v="$1" -v g="$2" "BEGIN { exit !(v $3 g) }"; then echo met; else echo "NOT met"; fi; }
echo
echo "figure                                   measured     goal      verdict"
printf 'echo CPU/request loop-echo / echo-epoll %7s x   <= 1.15 x  %s  (%s vs %s µs)\n' \
  "$RATIO" "$(verdict "$RATIO" 1.15 '<=')" "$LOOP" "$EPOLL"
printf '1,000,000 timers, CPU seconds           %7s s   <  1 s     %s\n' "$TIMERS" "$(verdict "$TIMERS" 1 '<')"
printf 'executor round trip p50                 %7s µs  <  50 µs   %s\n' "$EXEC" "$(verdict "$EXEC" 50 '<')"
