#!/usr/bin/env bash
# timeline.sh — draw each system call of an echo server as a box on a time line
#
# Usage: scripts/timeline.sh [--build-dir DIR] [--out DIR] [--tracer auto|ftrace|strace]
#                            [--loadgen ARGS --name NAME] SERVER...
#        scripts/timeline.sh [--build-dir DIR] [--out DIR] --overhead RUNS SERVER...
#
# For each SERVER (a program in DIR/bin, e.g. echo-epoll), runs SERVER --port 0
# under a tracer and drives it from this script with one small fixed workload:
# 3 clients connect, wait 50 ms, then each sends 4 echoes of 32 bytes one after
# the other (client 1 sleeps 150 ms before each), timestamping every send and
# every echo received and checking each echo byte for byte. Then the server
# gets SIGTERM and the trace is drawn.
#
# The tracer (--tracer; auto picks the first that works here and says which in
# the picture's title):
#   ftrace  kernel tracepoints, in a tracefs instance of this run's own
#           (instances/iolab-timeline-PID, removed at exit; mounted first if no
#           tracefs is and we are root): raw_syscalls sys_enter/sys_exit (every
#           call with its raw arguments and return value), sched_switch (when
#           each thread is on a CPU) and sched_waking (who woke whom), only for
#           the server's threads, the client threads and loadgen (set_event_pid,
#           with event-fork for the threads they start). The traced program is
#           never stopped: durations are true to about a microsecond. Needs
#           root and tracefs.
#   strace  strace -f -ttt -T, the fallback (no root, no tracefs): it decodes
#           every argument, but stops the tracee twice per call, so every box is
#           stretched to tens of microseconds or more and a 32-byte copy looks as
#           long as a wait; there are no scheduler events (no wake-ups, no
#           on-CPU shading). Read its pictures for the order, not the lengths.
#
# What is written, per SERVER:
#   OUT/SERVER.svg   a lane per server thread, named by role (server main
#                    thread, worker (client N), glibc aio helper, io_uring
#                    worker), and per client; time on x; each system call a box:
#                    blue = waiting (phase 1: select, poll, epoll_wait,
#                    rt_sigtimedwait, io_getevents, futex waits, io_uring_enter
#                    with min_complete > 0, and a read/recv/accept that slept:
#                    under ftrace, the thread left the CPU asleep during it;
#                    under strace, it took over 1 ms), orange = copying (phase 2:
#                    read/recv/write/send that moved bytes), grey = anything else,
#                    red = EAGAIN (nothing was ready); green bar = a client's
#                    request from send to echo, joined by dashed lines to the
#                    server calls that served it (the wait in progress when it was
#                    sent, the read and the write on its descriptor, found in
#                    /proc while the clients are connected). ftrace adds: each
#                    lane shaded where its thread is on a CPU, and a purple arrow
#                    for each wake-up, from the moment a thread (a client's send,
#                    the server's send) woke another to the moment that one ran.
#                    The time axis is true time, except that a pause over 4 ms in
#                    which no traced thread ran is drawn short, with break marks
#                    and its real length; a scale bar gives the true scale. Hover
#                    any box for the call, its arguments, return value and
#                    duration. At most 600 calls are drawn (EAGAIN retries are
#                    thinned first); the title says how many were left out.
#   OUT/SERVER.json  the same data: server, tracer, lanes (name, kind, tid,
#                    on_cpu stretches, counts per class), calls (lane, side,
#                    name, start_s, dur_s, class, ret, args, fd, eagain, drawn;
#                    start_s < 0: start-up, not drawn or counted), requests
#                    (client, send_s, recv_s, server_fd, served_by = indices into
#                    calls), wakeups (waker_lane, wakee_lane, t_s, run_s,
#                    waker_call, wakee_call), signals, totals.
#   OUT/SERVER.trace.json  the same trace in Chrome's Trace Event format: open
#                    it in https://ui.perfetto.dev (Open trace file) or in
#                    chrome://tracing (Load). A thread per lane, each call a
#                    slice with its arguments and return value, each request a
#                    slice on its client's thread with flow arrows to the calls
#                    that served it, each wake-up a flow arrow.
#   OUT/index.html   every SERVER.svg of this run inline (no external file),
#                    two to a row, for reading side by side.
# Default OUT is DIR/timeline.
#
# --loadgen ARGS --name NAME: instead of the three clients, run DIR/bin/loadgen
# HOST:PORT ARGS (traced too, its threads as the client lanes) and write
# OUT/NAME.{svg,json,trace.json}; e.g. loadgen with and without --busy-poll 0,
# to see who pays for a wake-up (labs/10-measuring/LAB.md).
#
# --overhead RUNS: what the observer costs. For each SERVER, runs the workload
# RUNS times untraced, under strace and under ftrace (interleaved, so load
# changes hit all three alike) and prints a markdown table of the median round
# trip of one echo (the median over runs of each run's median), with the
# 1-minute load average; writes OUT/SERVER.overhead.json. Nothing is drawn.
#
# io_uring's in-kernel work (the copies done for a submitted recv/send) makes no
# system call, so it shows only as io_uring_enter.
#
# Exit: 0 drawn, 1 a server failed (an echo wrong, no listening line), 2 usage,
# 3 not built, 4 no tracer here (neither ftrace nor strace) or python3 missing.
# Examples:
#   scripts/timeline.sh echo-epoll
#   scripts/timeline.sh --tracer strace --out /tmp/tl echo-threaded echo-epoll
#   scripts/timeline.sh --loadgen "--mode echo -c 1 -n 40 --threads 1 --busy-poll 0" \
#       --name epoll-loadgen-sleep echo-epoll
#   scripts/timeline.sh --overhead 5 echo-epoll
set -euo pipefail
. "$(dirname "$0")/lib.sh"

out=""
tracer=auto
loadgen_args=""
loadgen_set=0
name=""
overhead=0
servers=()
while (($#)); do
  if lib_common_option "$@"; then shift "$LIB_SHIFT"; continue; fi
  case "$1" in
    --out) need_value "$@"; out=$2; shift 2 ;;
    --tracer) need_value "$@"; tracer=$2; shift 2 ;;
    --loadgen) need_value "$@"; loadgen_args=$2; loadgen_set=1; shift 2 ;;
    --name) need_value "$@"; name=$2; shift 2 ;;
    --overhead) need_value "$@"; check_uint --overhead "$2"; overhead=$2; shift 2 ;;
    -*) usage_error "unknown option '$1'" ;;
    *) servers+=("$1"); shift ;;
  esac
done
((${#servers[@]} >= 1)) || usage_error "which server? (usage: timeline.sh [--build-dir DIR] [--out DIR] [--tracer auto|ftrace|strace] SERVER...)"
for s in "${servers[@]}"; do
  [[ "$s" =~ ^[A-Za-z0-9_.-]+$ ]] || usage_error "SERVER must be a program name in the build's bin/, got '$s'"
done
case "$tracer" in auto | ftrace | strace) ;; *) usage_error "--tracer must be auto, ftrace or strace, got '$tracer'" ;; esac
if ((loadgen_set)); then
  ((${#servers[@]} == 1)) || usage_error "--loadgen traces one SERVER"
  [[ "$name" =~ ^[A-Za-z0-9_.-]+$ ]] || usage_error "--loadgen needs --name NAME (letters, digits, . _ -) for its files"
  require_bin loadgen
elif [[ -n "$name" ]]; then
  usage_error "--name goes with --loadgen"
fi
((overhead == 0 || loadgen_set == 0)) || usage_error "--overhead measures the built-in workload, not --loadgen"
require_cmd python3 python3
require_bin "${servers[@]}"
[[ -n "$out" ]] || out="$BUILD_DIR/timeline"
mkdir -p "$out" || die "cannot create $out"

# ftrace needs a mounted tracefs; mount it if we may (root) and it is not.
tracefs_ready() { [[ -d /sys/kernel/tracing/instances || -d /sys/kernel/debug/tracing/instances ]]; }
if [[ "$tracer" != strace ]] && ! tracefs_ready && ((EUID == 0)) && [[ -d /sys/kernel/tracing ]]; then
  mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
fi
if [[ "$tracer" == ftrace ]]; then
  ((EUID == 0)) || cannot_run "--tracer ftrace needs root (tracefs instances); try --tracer strace"
  tracefs_ready || cannot_run "--tracer ftrace: no tracefs at /sys/kernel/tracing (mount -t tracefs nodev /sys/kernel/tracing)"
elif [[ "$tracer" == auto ]] && ! { ((EUID == 0)) && tracefs_ready; }; then
  tracer=strace
fi
if [[ "$tracer" == strace ]] || ((overhead > 0)); then
  require_cmd strace strace
fi

if ((overhead > 0)); then
  for s in "${servers[@]}"; do
    timeout 900 python3 "$ROOT/scripts/timeline.py" --overhead "$overhead" "$BUILD_DIR/bin/$s" "$s" "$out" ||
      die "$s: the overhead runs failed (see above)"
  done
  exit 0
fi

i=0
for s in "${servers[@]}"; do
  i=$((i + 1))
  if declare -F progress >/dev/null; then progress "$i" "${#servers[@]}" "tracing $s"; fi
  if ((loadgen_set)); then
    line=$(timeout 300 python3 "$ROOT/scripts/timeline.py" --tracer "$tracer" --loadgen "$BUILD_DIR/bin/loadgen" \
      --loadgen-args "$loadgen_args" --title-extra "loadgen $loadgen_args" "$BUILD_DIR/bin/$s" "$name" "$out") ||
      die "$s: tracing failed (see above)"
    servers=("$name")
  else
    line=$(timeout 300 python3 "$ROOT/scripts/timeline.py" --tracer "$tracer" "$BUILD_DIR/bin/$s" "$s" "$out") ||
      die "$s: tracing failed (see above)"
  fi
  if declare -F progress_clear >/dev/null; then progress_clear; fi
  echo "$line"
done
if declare -F progress_done >/dev/null; then progress_done; fi

{
  echo '<!DOCTYPE html><html><head><meta charset="utf-8"><title>iolab timelines</title></head>'
  echo '<body style="font-family:sans-serif;margin:8px">'
  if ((loadgen_set)); then
    echo "<h1 style=\"font-size:18px\">System calls of ${servers[0]}: loadgen ${loadgen_args//</&lt;}</h1>"
  else
    echo '<h1 style="font-size:18px">System calls of each I/O model for the same 12 echoes</h1>'
  fi
  echo '<div style="display:grid;grid-template-columns:1fr 1fr;gap:8px">'
  for s in "${servers[@]}"; do
    echo "<div>"
    sed '1s/<svg /<svg style="width:100%;height:auto" /' "$out/$s.svg"
    echo "</div>"
  done
  echo '</div>'
  echo '</body></html>'
} >"$out/index.html"
echo "$SCRIPT: wrote $out/{$(IFS=,; echo "${servers[*]}")}.{svg,json,trace.json} and $out/index.html"
