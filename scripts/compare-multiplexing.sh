#!/usr/bin/env bash
# compare-multiplexing.sh — the end-to-end experiment: how select, poll,
# epoll (level and edge) and io_uring echo servers hold up as idle
# connections pile up beside a fixed active load.
#
#   scripts/compare-multiplexing.sh           idle 0 100 500 1000 5000 10000, 3 repeats, 3 s each
#   scripts/compare-multiplexing.sh --quick   idle 0 and 1000, 1 repeat, 1 s (seconds in all)
#   scripts/compare-multiplexing.sh --uring   echo-epoll and echo-uring's five steps
#                                             (labs/05-async) at idle 0 and 10000
#   options: --idle "0 1000 ..." --active K (50) --repeats N (3) --duration S (3)
#            --servers "echo-select echo-poll echo-epoll echo-epoll--edge echo-uring--simple echo-uring"
#            --server NAME (repeatable, or NAME,NAME): one more server, measured
#              beside the list above (your own: --server ex-epoll)
#            --build-dir DIR (build) --out DIR (BUILD_DIR/compare-multiplexing) --no-plots
#
# A server label NAME--OPTION runs NAME --OPTION: echo-epoll--edge is
# echo-epoll --edge, echo-uring--simple is echo-uring --simple,
# echo-uring--step=3 is echo-uring --step=3.
#
# One point = one server, I idle connections, K active ones, measured for S
# seconds. The server starts with --port 0 (pinned to CPU 0 when taskset and
# two CPUs are there; the clients to CPU 1); I connections are opened and held
# by one loadgen (--mode idle --active 0); once the server has accepted all of
# them, a second loadgen runs the K active connections (--mode idle --active K,
# closed loop, 64-byte echoes, one thread) for S seconds. Holding the idle
# connections in a separate process keeps their setup (10,000 accepts) out of
# the measured window: what is measured is the steady state the papers talk
# about. Around that window the script reads the server's user+system CPU
# time from /proc/PID/stat (CPU µs per request) and its VmRSS. Each point is
# repeated (servers taking turns) and the median of each figure is kept.
# RSS per idle connection = (median RSS at I idle - median RSS at 0 idle)
# divided by the idle connections the server held (ss; I unless some did not
# come up), for a server measured at idle 0 in the same run.
#
# echo-select (and ex-select, lab 03's write-it-yourself select server)
# cannot hold a descriptor >= FD_SETSIZE (1024): its idle count is capped at
# a round number below that (900 with K=50) and the row is marked capped=1.
#
# --server NAME adds a server to the list (after it, in the table and plots):
# lab 03's last step measures the student's ex-epoll or ex-select beside the
# references. A server named by --server must be built (exit 3 otherwise);
# one named only by the list is left out, with a warning, when it is not.
#
# Writes OUT/multiplexing-runs.csv (every repeat), OUT/multiplexing.csv
# (medians), OUT/multiplexing.md (table) and OUT/multiplexing-{rps,p99,cpu}
# .png + .svg. OUT is a directory of the build unless --out says otherwise:
# the committed results/ are written only with --out results.
# Exit codes: 0 done; 1 a point had an error, or a tool is missing;
# 2 usage error; 3 loadgen or every server not built.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

IDLE="0 100 500 1000 5000 10000"
ACTIVE=50
REPEATS=3
DURATION=3
SERVERS="echo-select echo-poll echo-epoll echo-epoll--edge echo-uring--simple echo-uring"
PLOTS=1
OUT=""
EXTRA=""

while (($#)); do
  if lib_common_option "$@"; then shift "$LIB_SHIFT"; continue; fi
  case "$1" in
    --quick) IDLE="0 1000"; REPEATS=1; DURATION=1 ;;
    --uring)
      IDLE="0 10000"
      SERVERS="echo-epoll echo-uring--simple echo-uring--step=2 echo-uring--step=3 echo-uring--step=4 echo-uring"
      ;;
    --idle|--active|--repeats|--duration|--servers|--server|--out)
      need_value "$@"
      case "$1" in
        --idle) IDLE="${2//,/ }" ;;
        --active) ACTIVE="$2" ;;
        --repeats) REPEATS="$2" ;;
        --duration) DURATION="$2" ;;
        --servers) SERVERS="${2//,/ }" ;;
        --server)
          [[ "$2" =~ ^[A-Za-z0-9_.=-]+(,[A-Za-z0-9_.=-]+)*$ ]] ||
            usage_error "--server takes NAME or NAME,NAME (a program in BUILD_DIR/bin), got '$2'"
          EXTRA="${EXTRA:+$EXTRA }${2//,/ }"
          ;;
        --out) OUT="$2" ;;
      esac
      shift
      ;;
    --no-plots) PLOTS=0 ;;
    *) usage_error "unknown argument '$1' (see --help)" ;;
  esac
  shift
done
[[ "$ACTIVE" =~ ^[1-9][0-9]*$ && "$REPEATS" =~ ^[1-9][0-9]*$ ]] ||
  usage_error "--active and --repeats take positive integers"
[[ "$DURATION" =~ ^[0-9]+(\.[0-9]+)?$ ]] || usage_error "--duration takes seconds"
for i in $IDLE; do
  [[ "$i" =~ ^[0-9]+$ ]] || usage_error "bad idle count '$i'"
done
BIN="$BUILD_DIR/bin"
OUT="${OUT:-$BUILD_DIR/compare-multiplexing}"

require_bin loadgen
LOADGEN="$BIN/loadgen"
command -v ss >/dev/null || die "ss (iproute2) is needed"

# Server on CPU 0, clients on CPU 1, when there are two CPUs to split.
PINNED=0
if command -v taskset >/dev/null && (($(nproc) >= 2)); then PINNED=1; fi
SERVER_CPU=()
CLIENT_CPU=()
if ((PINNED)); then
  SERVER_CPU=(--cpu 0)
  CLIENT_CPU=(--cpu 1)
fi

# "NAME--OPTION" is NAME started with --OPTION.
server_cmd() {
  local prog=${1%%--*}
  if [[ "$prog" == "$1" ]]; then echo "$1"; else echo "$prog ${1#"$prog"}"; fi
}
for s in $EXTRA; do
  read -r prog _ <<<"$(server_cmd "$s")"
  require_bin "$prog"  # asked for by name: not built is an error (exit 3)
  [[ " $SERVERS " == *" $s "* ]] || SERVERS="$SERVERS $s"
done
available=()
for s in $SERVERS; do
  read -r prog _ <<<"$(server_cmd "$s")"
  if [[ -x "$BIN/$prog" ]]; then
    available+=("$s")
  else
    echo "$SCRIPT: $BIN/$prog not built: $s left out" >&2
  fi
done
if ((${#available[@]} == 0)); then
  progs=()
  for s in $SERVERS; do
    read -r prog _ <<<"$(server_cmd "$s")"
    progs+=("$prog")
  done
  require_bin "${progs[@]}"  # exits 3, naming the build command
fi

hard=$(ulimit -Hn)
[[ "$hard" == unlimited ]] && hard=1048576
ulimit -n "$hard" 2>/dev/null || true
SELECT_CAP=$(( (1024 - ACTIVE - 64) / 100 * 100 ))
CLK_TCK=$(getconf CLK_TCK)

mkdir -p "$OUT"
# Per-point output files; every process is started with lib.sh's spawn, so
# whatever is still running at exit (Ctrl-C included) is stopped by pid.
WORK=$(scratch_dir)
SERVER_PID=""
HOLDER_PID=""

# utime + stime of PID in clock ticks (fields 14 and 15 of /proc/PID/stat,
# counted after the ")" that ends the command name).
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
# Connections to port $1 whose handshake is done (accepted or not yet)...
established() { ss -Htn state established "( sport = :$1 )" 2>/dev/null | wc -l; }
# ...and how many of those still wait in the listen queue for accept().
accept_queue() { ss -Htln "( sport = :$1 )" 2>/dev/null | awk '{q += $2} END {print q + 0}'; }

# Waits up to $2 seconds for PID $1 (spawned by this shell) to exit, kills it
# after that; leaves its exit status in WAIT_RC. Not to be called in $(...):
# a subshell cannot wait for its parent's children.
WAIT_RC=0
wait_pid() {
  local pid=$1 limit=$2 t=0
  while lib_alive "$pid" && ((t < limit * 10)); do sleep 0.1; t=$((t + 1)); done
  if lib_alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  WAIT_RC=0
  wait "$pid" 2>/dev/null || WAIT_RC=$?
  unregister_pid "$pid"
}

# end_noting PID SIGNAL WHAT: sends SIGNAL, waits (wait_pid), and on a
# non-zero exit adds one to the caller's `errors` and says so in its `note`.
end_noting() {
  kill -"$2" "$1" 2>/dev/null || true
  wait_pid "$1" 20
  if ((WAIT_RC != 0)); then
    errors=$((errors + 1))
    note="${note:+$note; }$3 exit $WAIT_RC"
  fi
}

RUNS_CSV="$OUT/multiplexing-runs.csv"
echo "server,idle_asked,idle,capped,active,repeat,requests,requests_per_s,p50_us,p99_us,cpu_us_per_request,rss_kib,idle_up,errors,note" >"$RUNS_CSV"

# One measurement; appends one row to RUNS_CSV.
run_point() {
  local label=$1 idle_asked=$2 rep=$3
  local idle=$idle_asked capped=0 errors=0 note="" up=0
  local -a cmd
  read -r -a cmd <<<"$(server_cmd "$label")"
  if [[ "${cmd[0]}" == echo-select || "${cmd[0]}" == ex-select ]] && ((idle > SELECT_CAP)); then
    idle=$SELECT_CAP
    capped=1
  fi
  local d="$WORK/$label-$idle_asked-$rep"
  mkdir -p "$d"

  spawn "${SERVER_CPU[@]}" --out "$d/server.out" --err "$d/server.err" \
    "$BIN/${cmd[0]}" "${cmd[@]:1}" --port 0 --max-clients $((idle + ACTIVE + 100))
  SERVER_PID=$SPAWN_PID
  local port=""
  if wait_for_line "$d/server.out" '^listening on .+:[0-9]+$' 10 "$SERVER_PID"; then
    port=$(sed -n '1s/^listening on .*:\([0-9]*\)$/\1/p' "$d/server.out")
  fi
  if [[ -z "$port" ]]; then
    progress_clear
    echo "  $label: did not announce its port: $(head -c 300 "$d/server.err")" >&2
    wait_pid "$SERVER_PID" 5
    SERVER_PID=""
    echo "$label,$idle_asked,$idle,$capped,$ACTIVE,$rep,0,0,,,,,,1,server did not start" >>"$RUNS_CSV"
    return
  fi

  if ((idle > 0)); then
    # The idle connections: opened over about a second per 2,000 (a server
    # that accepts slowly must not overflow its backlog), then held.
    local ramp
    ramp=$(awk -v n="$idle" 'BEGIN { r = n / 2000; if (r < 0.2) r = 0.2; print r }')
    spawn "${CLIENT_CPU[@]}" --out "$d/holder.out" --err "$d/holder.err" \
      "$LOADGEN" --mode idle --active 0 -c "$idle" --threads 1 --ramp "$ramp" \
      -d $((120 + ${DURATION%.*})) --json "$d/holder.json" -q "127.0.0.1:$port"
    HOLDER_PID=$SPAWN_PID
    # Up to 30 s plus 1 s per 200 connections (a server that accepts slowly).
    local deadline=$((SECONDS + 30 + idle / 200))
    while { (($(established "$port") < idle)) || (($(accept_queue "$port") > 0)); } &&
      ((SECONDS < deadline)) && lib_alive "$HOLDER_PID"; do
      sleep 0.2
    done
    up=$(established "$port")
    if ((up < idle)); then
      errors=$((errors + 1))
      note="only $up of $idle idle connections established"
    fi
    sleep 0.3  # let the accept burst settle
  fi

  local cpu0 cpu1 rss lrc=0
  cpu0=$(cpu_ticks "$SERVER_PID")
  local -a client_pin=()
  if ((PINNED)); then client_pin=(taskset -c 1); fi
  timeout $((60 + ${DURATION%.*})) "${client_pin[@]}" "$LOADGEN" --mode idle --active "$ACTIVE" -c "$ACTIVE" \
    --threads 1 -d "$DURATION" --size 64 --json "$d/load.json" -q "127.0.0.1:$port" \
    >"$d/load.out" 2>"$d/load.err" || lrc=$?
  cpu1=$(cpu_ticks "$SERVER_PID")
  rss=$(rss_kb "$SERVER_PID")
  if ((lrc != 0)); then
    errors=$((errors + 1))
    note="${note:+$note; }loadgen exit $lrc: $(tr '\n' ' ' <"$d/load.err" | head -c 200 | tr ',' ';')"
  fi

  if [[ -n "$HOLDER_PID" ]]; then
    end_noting "$HOLDER_PID" INT "idle holder"
    HOLDER_PID=""
  fi
  end_noting "$SERVER_PID" TERM server
  SERVER_PID=""

  python3 - "$d" "$cpu0" "$cpu1" "$CLK_TCK" <<'PY' >"$d/figures"
import json, os, sys
d, c0, c1, tck = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def load(name):
    p = os.path.join(d, name)
    try:
        return json.load(open(p))
    except (OSError, ValueError):
        return None
m = load("load.json")
h = load("holder.json")
errs = 0
if m is None:
    print("0 0   0")
    sys.exit(0)
errs += m["errors_total"] + m["connect_failures"]
if h is not None:
    errs += h["errors_total"] + h["connect_failures"]
req = m["requests"]
cpu_us = (c1 - c0) * 1e6 / tck
per = cpu_us / req if req else 0
print(req, "%.1f" % m["requests_per_s"], "%.1f" % m["latency_us"]["p50"],
      "%.1f" % m["latency_us"]["p99"], "%.3f" % per, errs)
PY
  local req rps p50 p99 cpu lerr
  read -r req rps p50 p99 cpu lerr <"$d/figures"
  [[ -n "$lerr" ]] || { lerr=1; note="${note:+$note; }no loadgen report"; }
  errors=$((errors + lerr))
  echo "$label,$idle_asked,$idle,$capped,$ACTIVE,$rep,$req,$rps,$p50,$p99,$cpu,$rss,$up,$errors,$note" >>"$RUNS_CSV"
  progress_clear
  printf '  %-18s idle=%-6s rep=%s  %10s req/s  p50 %8s us  p99 %8s us  cpu %7s us/req  rss %6s KiB  errors %s%s\n' \
    "$label" "$idle" "$rep" "$rps" "$p50" "$p99" "$cpu" "$rss" "$errors" "${note:+  ($note)}"
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
echo "$SCRIPT: servers: ${available[*]}; idle: $IDLE; active $ACTIVE; $REPEATS x ${DURATION}s per point (select capped at $SELECT_CAP idle)"
n_idle=$(wc -w <<<"$IDLE")
points=$((REPEATS * n_idle * ${#available[@]}))
point=0
for ((rep = 1; rep <= REPEATS; rep++)); do
  for idle in $IDLE; do
    for s in "${available[@]}"; do
      point=$((point + 1))
      progress "$point" "$points" "$s, $idle idle, repeat $rep of $REPEATS"
      run_point "$s" "$idle" "$rep"
    done
  done
done

python3 - "$OUT" "$ACTIVE" "$DURATION" "$REPEATS" "$SELECT_CAP" "$LOAD_START" "$PINNED" <<'PY'
import csv, os, platform, statistics, sys
out, active, duration, repeats, cap = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
load_start = sys.argv[6]
pinned = int(sys.argv[7]) > 0
load_end = " ".join(open("/proc/loadavg").read().split()[:3])
rows = list(csv.DictReader(open(f"{out}/multiplexing-runs.csv")))
order = []
for r in rows:
    if r["server"] not in order:
        order.append(r["server"])
idles = sorted({int(r["idle_asked"]) for r in rows})
def med(vals):
    vals = [float(v) for v in vals if v not in ("", None)]
    return statistics.median(vals) if vals else None
agg = {}
for s in order:
    for i in idles:
        rs = [r for r in rows if r["server"] == s and int(r["idle_asked"]) == i]
        if not rs:
            continue
        ok = [r for r in rs if int(r["errors"]) == 0] or rs
        agg[(s, i)] = {
            "idle": int(rs[0]["idle"]), "capped": int(rs[0]["capped"]),
            "up": med(r["idle_up"] for r in ok),
            "rps": med(r["requests_per_s"] for r in ok), "p50": med(r["p50_us"] for r in ok),
            "p99": med(r["p99_us"] for r in ok), "cpu": med(r["cpu_us_per_request"] for r in ok),
            "rss": med(r["rss_kib"] for r in ok), "errors": sum(int(r["errors"]) for r in rs),
            "repeats": len(rs),
            "notes": "; ".join(sorted({r["note"] for r in rs if r["note"]})),
        }
# RSS per idle connection: the growth over the same server's idle-0 point.
for (s, i), a in agg.items():
    base = agg.get((s, 0))
    a["per_idle"] = None
    if i > 0 and base and a["rss"] is not None and base["rss"] is not None and a["idle"] > 0:
        # Divided by the connections the server really had (ss), when short.
        up = a["up"] if a["up"] else a["idle"]
        a["per_idle"] = (a["rss"] - base["rss"]) * 1024 / up
def f(v, p=1):
    return "" if v is None else f"{v:.{p}f}"
with open(f"{out}/multiplexing.csv", "w", newline="") as fh:
    w = csv.writer(fh, lineterminator="\n")
    w.writerow(["server", "idle_asked", "idle", "capped", "active", "repeats", "requests_per_s",
                "p50_us", "p99_us", "cpu_us_per_request", "rss_kib", "rss_bytes_per_idle", "errors"])
    for (s, i), a in agg.items():
        w.writerow([s, i, a["idle"], a["capped"], active, a["repeats"], f(a["rps"]), f(a["p50"]),
                    f(a["p99"]), f(a["cpu"], 3), f(a["rss"], 0), f(a["per_idle"], 0), a["errors"]])

def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
L = ["# select vs poll vs epoll vs io_uring: echo servers with idle connections", ""]
L.append(f"Machine: {cpu_model()}, {os.cpu_count()} CPUs, Linux {platform.release()}. "
         f"{active} active connections (closed loop, 64-byte echoes, loadgen with one thread) "
         f"beside I idle ones held by a second loadgen; {duration} s per point, median of "
         f"{repeats} repeat(s); "
         + ("server pinned to CPU 0, clients to CPU 1. " if pinned else "no CPU pinning. ")
         + f"CPU = the server's user+system time per request "
         f"(/proc/PID/stat); RSS = the server's VmRSS with all connections open; "
         f"B/idle = (RSS - RSS at 0 idle) / idle connections, in bytes. "
         f"kept = requests/s as a share of the same server's at 0 idle. "
         f"Load average (1/5/15 min) at the start: {load_start}, at the end: {load_end} — "
         f"on a machine shared with other work, requests/s and p99 move with that load; "
         f"CPU µs per request, counted on the server alone, is the steadier figure.")
L.append("")
L.append("| server | idle | req/s | kept | p50 µs | p99 µs | CPU µs/req | RSS KiB | B/idle | errors |")
L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for s in order:
    base = agg.get((s, idles[0]), {}).get("rps") if idles and idles[0] == 0 else None
    for i in idles:
        a = agg.get((s, i))
        if a is None:
            continue
        idle = f"{a['idle']}" + (f" (capped, asked {i})" if a["capped"] else "")
        kept = f"{100 * a['rps'] / base:.0f}%" if base and a["rps"] is not None else ""
        L.append(f"| {s} | {idle} | {f(a['rps'], 0)} | {kept} | {f(a['p50'], 0)} | {f(a['p99'], 0)} | "
                 f"{f(a['cpu'], 2)} | {f(a['rss'], 0)} | {f(a['per_idle'], 0)} | {a['errors']} |")
notes = [(s, i, a["notes"]) for (s, i), a in agg.items() if a["notes"]]
L.append("")
L.append(f"echo-select holds at most {cap} idle connections here: a descriptor >= FD_SETSIZE (1024) "
         "cannot go into an fd_set.")
total = sum(a["errors"] for a in agg.values())
L.append(f"Errors over all points and repeats: {total}.")
for s, i, n in notes:
    L.append(f"- {s}, idle {i}: {n}")
open(f"{out}/multiplexing.md", "w").write("\n".join(L) + "\n")

# gnuplot data: one block per server; idle 0 is drawn at x=10 on the log axis.
with open(f"{out}/multiplexing.dat", "w") as fh:
    for s in order:
        title = s.replace("--", " --", 1) if "--" in s else s
        if any(agg[(s, i)]["capped"] for i in idles if (s, i) in agg):
            title += f" (capped at {cap} idle)"
        fh.write(f"\"{title}\" x idle rps p50 p99 cpu\n")
        drawn = set()
        for i in idles:
            a = agg.get((s, i))
            # A capped server repeats its capped point: draw it once.
            if a is None or a["rps"] is None or a["idle"] in drawn:
                continue
            drawn.add(a["idle"])
            x = a["idle"] if a["idle"] > 0 else 10
            fh.write(f"{x} {a['idle']} {a['rps']:.1f} {f(a['p50'])} {f(a['p99'])} {f(a['cpu'], 3)}\n")
        fh.write("\n\n")
with open(f"{out}/multiplexing.meta", "w") as fh:
    fh.write(f"{len(order)} {total}\n")
PY

read -r nservers total_errors <"$OUT/multiplexing.meta"
rm -f "$OUT/multiplexing.meta"
if ((PLOTS)); then
  if command -v gnuplot >/dev/null; then
    for what in rps p99 cpu; do
      for term in png svg; do
        gnuplot -e "datafile='$OUT/multiplexing.dat'; outfile='$OUT/multiplexing-$what.$term'; fmt='$term'; what='$what'; nservers=$nservers; active=$ACTIVE" \
          "$ROOT/scripts/plot-multiplexing.gp"
      done
    done
    echo "$SCRIPT: plots $OUT/multiplexing-{rps,p99,cpu}.{png,svg}"
  else
    echo "$SCRIPT: gnuplot not installed (scripts/setup.sh installs gnuplot-nox): no plots" >&2
  fi
fi
echo "$SCRIPT: wrote $OUT/multiplexing.csv $OUT/multiplexing.md ($RUNS_CSV: every repeat)"
if ((total_errors > 0)); then
  echo "$SCRIPT: $total_errors error(s): see the errors column and notes in $OUT/multiplexing.md" >&2
  exit 1
fi
