#!/usr/bin/env bash
# timeline.sh — draw each system call of an echo server as a box on a time line
#
# Usage: scripts/timeline.sh [--build-dir DIR] [--out DIR] SERVER...
#
# For each SERVER (a program in DIR/bin, e.g. echo-epoll), runs it as
#   strace -f -ttt -T -o TRACE SERVER --port 0
# and drives it from this script with one small fixed workload: 3 clients
# connect, wait 50 ms, then each sends 4 echoes of 32 bytes one after the
# other (client 1 sleeps 150 ms before each), timestamping every send and
# every echo received and checking each echo byte for byte. Then the server
# gets SIGTERM and the trace is drawn:
#   OUT/SERVER.svg   a lane per server thread (strace -f) and per client; time
#                    on x; each system call a box: blue = waiting (phase 1:
#                    select, poll, epoll_wait, rt_sigtimedwait, io_getevents,
#                    futex waits, io_uring_enter with min_complete > 0, and a
#                    read/recv/accept that slept, i.e. took over 1 ms), orange =
#                    copying (phase 2: read/recv/write/send that moved bytes),
#                    grey = anything else, red = EAGAIN (nothing was ready);
#                    green = a client's request from send to echo, joined by a
#                    dashed line to the wait in progress when it was sent and
#                    to the read and write on its descriptor on the server (the
#                    descriptor is found from accept's peer port). Hover any box
#                    for the call, arguments, return value and duration. Pauses
#                    over 4 ms are drawn compressed with their real length; at
#                    most 400 calls are drawn (EAGAIN retries are thinned
#                    first), the title says how many were left out.
#   OUT/SERVER.json  the same data (format E in the project's coordination
#                    notes): server, lanes (name, kind, counts per class),
#                    calls (lane, name, start_s, dur_s, class, ret, args, fd,
#                    eagain, drawn; start_s < 0: start-up, not drawn or counted),
#                    requests (client, send_s, recv_s,
#                    served_by = indices into calls), signals, totals.
#   OUT/index.html   every SERVER.svg of this run inline (no external file),
#                    two to a row, for reading side by side.
# Default OUT is DIR/timeline.
#
# Why strace: it sees every thread and every system call with its arguments,
# which is what the picture is about; its cost (tens of µs per call, the
# tracee stopped at each) stretches every box, so durations are an upper
# bound and only the order and the kind of calls are to be read. A lighter
# tracer (perf trace, bpftrace) needs root or kernel symbols the lab machines
# may not have; the workload is small enough for strace's overhead not to
# change which calls are made, only how long they take.
# io_uring's in-kernel work (the copies done for a submitted recv/send) makes
# no system call, so it shows only as io_uring_enter.
#
# Exit: 0 drawn, 1 a server failed (an echo wrong, no listening line), 2 usage,
# 3 not built, 4 strace or python3 missing.
# Examples:
#   scripts/timeline.sh echo-epoll
#   scripts/timeline.sh --out /tmp/tl echo-threaded echo-nonblocking echo-epoll echo-sigio echo-uring
set -euo pipefail
. "$(dirname "$0")/lib.sh"

out=""
servers=()
while (($#)); do
  if lib_common_option "$@"; then shift "$LIB_SHIFT"; continue; fi
  case "$1" in
    --out) need_value "$@"; out=$2; shift 2 ;;
    -*) usage_error "unknown option '$1'" ;;
    *) servers+=("$1"); shift ;;
  esac
done
((${#servers[@]} >= 1)) || usage_error "which server? (usage: timeline.sh [--build-dir DIR] [--out DIR] SERVER...)"
for s in "${servers[@]}"; do
  [[ "$s" =~ ^[A-Za-z0-9_.-]+$ ]] || usage_error "SERVER must be a program name in the build's bin/, got '$s'"
done
require_cmd strace strace
require_cmd python3 python3
require_bin "${servers[@]}"
[[ -n "$out" ]] || out="$BUILD_DIR/timeline"
mkdir -p "$out" || die "cannot create $out"

i=0
for s in "${servers[@]}"; do
  i=$((i + 1))
  if declare -F progress >/dev/null; then progress "$i" "${#servers[@]}" "tracing $s"; fi
  timeout 300 python3 "$ROOT/scripts/timeline.py" "$BUILD_DIR/bin/$s" "$s" "$out" ||
    die "$s: tracing failed (see above)"
done
if declare -F progress_done >/dev/null; then progress_done; fi

{
  echo '<!DOCTYPE html><html><head><meta charset="utf-8"><title>iolab timelines</title></head>'
  echo '<body style="font-family:sans-serif;margin:8px">'
  echo '<h1 style="font-size:18px">System calls of each I/O model for the same 12 echoes</h1>'
  echo '<div style="display:grid;grid-template-columns:1fr 1fr;gap:8px">'
  for s in "${servers[@]}"; do
    echo "<div>"
    sed '1s/<svg /<svg style="width:100%;height:auto" /' "$out/$s.svg"
    echo "</div>"
  done
  echo '</div>'
  echo '</body></html>'
} >"$out/index.html"
echo "$SCRIPT: wrote $out/{$(IFS=,; echo "${servers[*]}")}.{svg,json} and $out/index.html"
