#!/usr/bin/env bash
# bench-event-loop.sh — what lab 06's hand-written event loop costs, against
# the goals of its issues, in one run:
#
#   1. event loops: loop-echo (lab 06, a coroutine per client), echo-epoll
#      (lab 03's callback loop) and the loops a reader would use instead —
#      peer-libuv, peer-libevent (bufferevents), peer-asio (standalone Asio),
#      peer-asyncio with asyncio streams and protocol, and both on uvloop
#      (bench/peers/) — all driven by loadgen (closed loop, TCP_NODELAY,
#      --busy-poll 50: the client spins on a CPU of its own), taking turns
#      (in_turn of lib.sh: rotated, and reversed every second repeat, so
#      that no server always runs first or right after the same neighbour),
#      REPEATS times each, on four
#      workloads:
#        vm-1k, vm-10k, vm-100k   uvloop's published benchmark (MagicStack
#                                 vmbench): ping-pong of 1 KiB, 10 KiB and
#                                 100 KiB messages over 10 connections
#        suite                    the suite's own: 64 B over 50 connections
#      Figures per server and workload (median of the repeats): requests/s,
#      the server's user+system CPU µs per request (loadgen --server-pid:
#      /proc/PID/stat over the measured window), p99 latency. Written to
#      OUT/event-loops.csv and OUT/event-loops.md (scripts/report.sh charts
#      the CSV). Goals: loop-echo's CPU per request <= 1.10 x libuv's and
#      <= Asio's on every workload; loop-echo <= 1.15 x echo-epoll on suite.
#      A goal is judged on paired ratios: loop-echo's figure over the
#      peer's from the same repeat (a minute apart at most), the median of
#      those, so that a repeat on a slow minute weighs on both sides; the
#      spread of those ratios is printed beside it.
#      Also printed: asyncio's and uvloop's CPU per request over loop-echo's
#      (lab 06, "What your asyncio code costs").
#   2. timers: loop-bench --timers 1000000 — a million call_at timers
#      scheduled and fired; figure: CPU seconds (median). Goal: < 1 s.
#   3. executor: loop-bench --executor 20000 — run_in_executor round trips
#      (submit, eventfd wake-up, result on the loop); figure: p50 µs
#      (median of the repeats). Goal: < 50 µs.
#
# Servers on CPU 0, loadgen (one thread) on CPU 1 when taskset and two CPUs
# exist. Each run starts its server afresh and counts from 0.5 s in
# (--warmup). Bounded: servers x workloads x REPEATS runs of DURATION s plus
# about 0.3 s each to start and stop; with the defaults 9 x 4 x 5 x 3.3 s,
# about 10 minutes, plus the timers and the executor (under a minute).
#
# Usage: scripts/bench-event-loop.sh [--repeats N (5)] [--duration S (3)]
#                                    [--servers "NAME ..."] [--workloads "NAME ..."]
#                                    [--out DIR (results/)] [--build-dir DIR]
#   --servers    a subset of: loop-echo echo-epoll libuv libevent asio
#                asyncio-streams asyncio-protocol uvloop-streams uvloop-protocol
#   --workloads  a subset of: vm-1k vm-10k vm-100k suite
#   A peer that is not built (its library missing) is left out with a note.
# Exit codes: 0 measured (goals met or not: see the last lines), 1 a run
# failed, 2 usage error, 3 not built.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

REPEATS=5
DURATION=3
SERVERS="loop-echo echo-epoll libuv libevent asio asyncio-streams asyncio-protocol uvloop-streams uvloop-protocol"
WORKLOADS="vm-1k vm-10k vm-100k suite"
OUT="$ROOT/results"
while (($#)); do
  if lib_common_option "$@"; then
    shift "$LIB_SHIFT"
    continue
  fi
  case "$1" in
    --repeats) need_value "$@"; check_uint --repeats "$2"; REPEATS=$2; shift 2 ;;
    --duration) need_value "$@"; check_uint --duration "$2"; DURATION=$2; shift 2 ;;
    --servers) need_value "$@"; SERVERS=$2; shift 2 ;;
    --workloads) need_value "$@"; WORKLOADS=$2; shift 2 ;;
    --out) need_value "$@"; OUT=$2; shift 2 ;;
    *) usage_error "unknown option '$1' (see --help)" ;;
  esac
done
((REPEATS >= 1 && REPEATS <= 20)) || usage_error "--repeats must be 1..20"
((DURATION >= 1 && DURATION <= 60)) || usage_error "--duration must be 1..60"
require_bin loop-echo loadgen loop-bench

# server name -> the program and its arguments
server_cmd() {
  case "$1" in
    loop-echo | echo-epoll) echo "$1" ;;
    libuv | libevent | asio) echo "peer-$1" ;;
    asyncio-streams) echo "peer-asyncio --api streams" ;;
    asyncio-protocol) echo "peer-asyncio --api protocol" ;;
    uvloop-streams) echo "peer-asyncio --api streams --loop uvloop" ;;
    uvloop-protocol) echo "peer-asyncio --api protocol --loop uvloop" ;;
    *) return 1 ;;
  esac
}
# workload name -> "CONNECTIONS SIZE"
workload_of() {
  case "$1" in
    vm-1k) echo "10 1024" ;;
    vm-10k) echo "10 10240" ;;
    vm-100k) echo "10 102400" ;;
    suite) echo "50 64" ;;
    *) return 1 ;;
  esac
}
servers=()
for s in $SERVERS; do
  cmd=$(server_cmd "$s") || usage_error "--servers: unknown server '$s'"
  prog=${cmd%% *}
  if [[ ! -x "$BUILD_DIR/bin/$prog" ]]; then
    if [[ "$s" == loop-echo ]]; then require_bin loop-echo; fi
    echo "note: $s left out: $BUILD_DIR/bin/$prog is not built (scripts/setup.sh installs its library; then cmake --build $BUILD_DIR --target $prog)" >&2
    continue
  fi
  if [[ "$s" == uvloop-* ]] && ! /usr/bin/python3 -c 'import uvloop' 2>/dev/null; then
    echo "note: $s left out: uvloop is not installed (apt-get install python3-uvloop)" >&2
    continue
  fi
  servers+=("$s")
done
for w in $WORKLOADS; do workload_of "$w" >/dev/null || usage_error "--workloads: unknown workload '$w'"; done
((${#servers[@]} > 0)) || usage_error "no server to measure"
mkdir -p "$OUT" || die "cannot create $OUT"

SERVER_CPU=0
CLIENT_CPU=1
if (($(nproc) < 2)); then CLIENT_CPU=0; fi
WORK=$(scratch_dir)
WARMUP=0.5
((DURATION >= 2)) || WARMUP=0.3
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# One run: sets RUN to "REQ_PER_S SERVER_CPU_US_PER_REQUEST P99_US ERRORS".
# Not run in a subshell: start_server numbers its output files in a counter
# of this shell, and a subshell's increment would be lost (each run would
# reuse the first file and could read the last server's "listening on").
echo_run() {
  local server=$1 conns=$2 size=$3 json="$WORK/run.json" rc=0
  # shellcheck disable=SC2046 # the command's words
  start_server --cpu "$SERVER_CPU" $(server_cmd "$server") --port 0
  pin "$CLIENT_CPU" "$BUILD_DIR/bin/loadgen" "$SERVER_ADDR" -c "$conns" --size "$size" \
    -d "$DURATION" --warmup "$WARMUP" --threads 1 --busy-poll 50 --server-pid "$SERVER_PID" \
    -q --allow-errors --json "$json" >/dev/null 2>"$WORK/loadgen.err" || rc=$?
  stop_server "$SERVER_PID" || die "$server did not stop cleanly (exit $?): $(tail -n 3 "$SERVER_ERR")"
  ((rc == 0)) || die "loadgen against $server failed (exit $rc): $(head -c 300 "$WORK/loadgen.err")"
  RUN=$(python3 - "$json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s = r.get("server") or {}
print(f'{r["requests_per_s"]:.1f} {s.get("cpu_us_per_request", 0):.3f} '
      f'{r["latency_us"]["p99"]:.1f} {r["errors_total"]}')
PY
  )
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== event loops: ${#servers[@]} servers x workloads ($WORKLOADS), ${DURATION} s runs (first ${WARMUP} s not counted) x ${REPEATS}"
echo "   server CPU $SERVER_CPU, loadgen CPU $CLIENT_CPU (1 thread, --busy-poll 50); load average at start: $LOAD_START"
nw=$(wc -w <<<"$WORKLOADS")
steps=$((REPEATS * nw * ${#servers[@]} + 2 * REPEATS))
step=0
: >"$WORK/runs"
for ((i = 1; i <= REPEATS; i++)); do
  for w in $WORKLOADS; do
    read -r conns size <<<"$(workload_of "$w")"
    mapfile -t order < <(in_turn "$i" "${servers[@]}")
    for s in "${order[@]}"; do
      step=$((step + 1))
      progress "$step" "$steps" "$w: $s, run $i of $REPEATS"
      echo_run "$s" "$conns" "$size"
      read -r rps cpu p99 errs <<<"$RUN"
      progress_clear
      printf '  %-8s %-17s run %d: %10s req/s %9s µs CPU/req  p99 %9s µs%s\n' "$w" "$s" "$i" \
        "$rps" "$cpu" "$p99" "$( ((errs == 0)) || echo "  ($errs errors)")"
      echo "$w $s $conns $size $i $rps $cpu $p99 $errs" >>"$WORK/runs"
    done
  done
done

# Medians (and the repeats' range) per workload and server -> CSV and Markdown.
python3 - "$WORK/runs" "$OUT" "$REPEATS" "$DURATION" "$WARMUP" "$LOAD_START → $(cut -d' ' -f1-3 /proc/loadavg)" \
  "$WORKLOADS" "${servers[*]}" >"$WORK/summary" <<'PY'
import statistics, sys, time
runs_path, out, repeats, duration, warmup, load, workloads, servers = sys.argv[1:9]
workloads, servers = workloads.split(), servers.split()
rows = {}
for line in open(runs_path):
    w, s, c, size, i, rps, cpu, p99, errs = line.split()
    rows.setdefault((w, s), {"c": c, "size": size, "rps": [], "cpu": [], "p99": [], "errs": 0,
                             "by_run": {}})
    r = rows[(w, s)]
    r["rps"].append(float(rps)); r["p99"].append(float(p99))
    if float(cpu) > 0:
        r["by_run"][int(i)] = float(cpu)
    # A server that answered but shows no CPU at all was not measured (its
    # /proc/PID/stat did not move over the window): left out of the CPU
    # figures, and said so.
    if float(cpu) > 0:
        r["cpu"].append(float(cpu))
    else:
        print(f"NOTE {w} {s} run {i}: no server CPU measured; left out of its CPU median")
    r["errs"] += int(errs)
med = statistics.median
def cpu(w, s):
    return med(rows[(w, s)]["cpu"]) if (w, s) in rows and rows[(w, s)]["cpu"] else None
cols = ["workload", "connections", "size", "server", "repeats", "requests_per_s", "rps_min",
        "rps_max", "cpu_us_per_request", "cpu_min", "cpu_max", "p99_us", "errors"]
csv = [",".join(cols)]
md = ["# Event loops: echo servers under loadgen (scripts/bench-event-loop.sh)", "",
      f"Written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {repeats} runs of "
      f"{duration} s per cell (first {warmup} s not counted), servers on CPU 0, loadgen "
      f"(1 thread, --busy-poll 50) on CPU 1; load average (1, 5, 15 min) at the start → at "
      f"the end: {load}.",
      "Median of the runs; requests/s, the server's CPU µs per request (range over the runs), p99.",
      ""]
for w in workloads:
    got = [s for s in servers if (w, s) in rows and rows[(w, s)]["cpu"]]
    if not got:
        continue
    r0 = rows[(w, got[0])]
    md += [f"## {w}: {r0['c']} connections, {r0['size']} B messages", "",
           "| server | req/s | server CPU µs/req | (range) | p99 µs | × loop-echo CPU |",
           "|---|---|---|---|---|---|"]
    base = cpu(w, "loop-echo")
    for s in got:
        r = rows[(w, s)]
        m_rps, m_cpu, m_p99 = med(r["rps"]), med(r["cpu"]), med(r["p99"])
        csv.append(",".join(map(str, [w, r["c"], r["size"], s, len(r["rps"]), f"{m_rps:.1f}",
                                      f"{min(r['rps']):.1f}", f"{max(r['rps']):.1f}",
                                      f"{m_cpu:.3f}", f"{min(r['cpu']):.3f}",
                                      f"{max(r['cpu']):.3f}", f"{m_p99:.1f}", r["errs"]])))
        ratio = f"{m_cpu / base:.2f}" if base else "—"
        md.append(f"| {s} | {m_rps:,.0f} | {m_cpu:.2f} | {min(r['cpu']):.2f}–{max(r['cpu']):.2f} "
                  f"| {m_p99:,.0f} | {ratio} |")
    md.append("")
# Paired ratios: a's CPU per request over b's, repeat by repeat (both from
# the same repeat of workload w), and their median.
def paired(w, a, b):
    ra, rb = rows.get((w, a)), rows.get((w, b))
    if not ra or not rb:
        return None
    both = sorted(set(ra["by_run"]) & set(rb["by_run"]))
    ratios = [ra["by_run"][i] / rb["by_run"][i] for i in both if rb["by_run"][i] > 0]
    return (med(ratios), min(ratios), max(ratios), len(ratios)) if ratios else None
# The goals, printed for the script's table (and kept in the Markdown).
goals = []
for w in workloads:
    le = cpu(w, "loop-echo")
    for peer, limit in (("libuv", 1.10), ("asio", 1.00)):
        p = cpu(w, peer)
        pr = paired(w, "loop-echo", peer)
        if le is None or not p or not pr:
            continue
        ok = pr[0] <= limit
        goals.append(f"{w}: loop-echo / {peer} CPU per request {pr[0]:.3f} x (goal <= {limit:.2f} x) "
                     f"{'met' if ok else 'NOT met'} (paired median of {pr[3]}, range "
                     f"{pr[1]:.3f}-{pr[2]:.3f}; column medians {le:.2f} vs {p:.2f} µs)")
    if w == "suite":
        for other in ("asyncio-streams", "asyncio-protocol", "uvloop-streams", "uvloop-protocol"):
            pr = paired(w, other, "loop-echo")
            if pr:
                goals.append(f"{w}: {other} / loop-echo CPU per request {pr[0]:.2f} x (no goal; "
                             f"paired median of {pr[3]}, range {pr[1]:.2f}-{pr[2]:.2f})")
md += ["## Goals", ""] + [f"- {g}" for g in goals] + [""]
open(f"{out}/event-loops.csv", "w").write("\n".join(csv) + "\n")
open(f"{out}/event-loops.md", "w").write("\n".join(md))
le, ep = cpu("suite", "loop-echo"), cpu("suite", "echo-epoll")
pr = paired("suite", "loop-echo", "echo-epoll")
print(f"SUITE_RATIO {pr[0]:.3f} {le:.3f} {ep:.3f}" if pr else "SUITE_RATIO - - -")
for g in goals:
    print("GOAL " + g)
PY
echo "   wrote $OUT/event-loops.csv and $OUT/event-loops.md"
sed -n '/^## /,$p' "$OUT/event-loops.md" | sed -n '/^## Goals/q;p'

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
progress_done

verdict() { if awk -v v="$1" -v g="$2" "BEGIN { exit !(v $3 g) }"; then echo met; else echo "NOT met"; fi; }
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "figure                                   measured     goal      verdict"
read -r _ RATIO LOOP EPOLL < <(grep '^SUITE_RATIO' "$WORK/summary")
if [[ "$RATIO" != - ]]; then
  printf 'echo CPU/request loop-echo / echo-epoll %7s x   <= 1.15 x  %s  (paired median, suite; column medians %s vs %s µs)\n' \
    "$RATIO" "$(verdict "$RATIO" 1.15 '<=')" "$LOOP" "$EPOLL"
fi
printf '1,000,000 timers, CPU seconds           %7s s   <  1 s     %s\n' "$TIMERS" "$(verdict "$TIMERS" 1 '<')"
printf 'executor round trip p50                 %7s µs  <  50 µs   %s\n' "$EXEC" "$(verdict "$EXEC" 50 '<')"
sed -n 's/^GOAL /  /p' "$WORK/summary"
sed -n 's/^NOTE /note: /p' "$WORK/summary"
