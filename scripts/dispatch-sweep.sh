#!/usr/bin/env bash
# dispatch-sweep.sh — dispatch-bench over a sweep of watched descriptors.
#
#   scripts/dispatch-sweep.sh            100 .. the most the fd limit allows, active 1 and 100
#   scripts/dispatch-sweep.sh --quick    fewer points, fewer runs (seconds)
#   options: --fds LIST --active LIST --rounds N --runs N --out DIR --no-plots
#            --build-dir DIR (default build/; the binaries are in DIR/bin)
#
# Writes OUT/dispatch.json (dispatch-bench's own output), OUT/dispatch.csv,
# OUT/dispatch.md (tables) and OUT/dispatch.png + .svg (log-log: CPU µs per
# round against watched descriptors, one line per backend, libevent dashed).
# OUT is a directory of the build (BUILD_DIR/dispatch-sweep) unless --out says
# otherwise: the committed results/ are written only with --out results.
#
# Each pair costs two descriptors, so RLIMIT_NOFILE's hard limit bounds the
# sweep: the largest point is (hard limit - 64) / 2 rounded down to 100.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
OUT=""
ACTIVE="1,100"
FDS=""
ROUNDS=100
RUNS=15
PLOTS=1
quick=0

while (($#)); do
  if lib_common_option "$@"; then shift "$LIB_SHIFT"; continue; fi
  case "$1" in
    --quick) quick=1; ROUNDS=30; RUNS=3; shift ;;
    --no-plots) PLOTS=0; shift ;;
    --fds) need_value "$@"; FDS=$2; shift 2 ;;
    --active) need_value "$@"; ACTIVE=$2; shift 2 ;;
    --rounds) need_value "$@"; check_uint "$1" "$2"; ROUNDS=$2; shift 2 ;;
    --runs) need_value "$@"; check_uint "$1" "$2"; RUNS=$2; shift 2 ;;
    --out) need_value "$@"; OUT=$2; shift 2 ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
done

OUT="${OUT:-$BUILD_DIR/dispatch-sweep}"
require_bin dispatch-bench
bench="$BUILD_DIR/bin/dispatch-bench"
mkdir -p "$OUT"

# The soft limit up to the hard one (dispatch-bench does the same itself).
hard=$(ulimit -Hn)
[[ "$hard" == unlimited ]] && hard=1048576
ulimit -n "$hard" 2>/dev/null || true
max_pairs=$(( (hard - 64) / 2 / 100 * 100 ))
if [[ -z "$FDS" ]]; then
  if ((quick)); then
    FDS="100,500,2000,$max_pairs"
  else
    FDS="100,200,500,1000,2000,5000,$max_pairs"
  fi
fi
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

echo "$SCRIPT: fds=$FDS active=$ACTIVE rounds=$ROUNDS runs=$RUNS (RLIMIT_NOFILE hard limit $hard: at most $max_pairs pairs)"
progress 1 3 "dispatch-bench over fds $FDS, active $ACTIVE (the long part)"
progress_done # dispatch-bench prints its table as it goes: the step stays as a header
"$bench" --fds "$FDS" --active "$ACTIVE" --rounds "$ROUNDS" --runs "$RUNS" --json "$OUT/dispatch.json"

progress 2 3 "tables"
python3 - "$OUT" "$LOAD_START" <<'PY'
import csv, json, sys, collections
out = sys.argv[1]
load = f"{sys.argv[2]} at the start, {' '.join(open('/proc/loadavg').read().split()[:3])} at the end"
doc = json.load(open(f"{out}/dispatch.json"))
rows = doc["results"]
m = doc["machine"]

with open(f"{out}/dispatch.csv", "w", newline="") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["backend", "library", "fds", "active", "writes", "runs", "us_per_round",
                "us_per_event", "wall_us_per_round", "rounds_per_run", "failures", "skipped", "note"])
    for r in rows:
        w.writerow([r["backend"], r["library"], r["fds"], r["active"], r["writes"], r["runs"],
                    "%.3f" % r["us_per_round"] if not r["skipped"] else "",
                    "%.3f" % r["us_per_event"] if not r["skipped"] else "",
                    "%.3f" % r["wall_us_per_round"] if not r["skipped"] else "",
                    r.get("rounds_per_run", ""), r["failures"], int(r["skipped"]), r["note"]])

val = {}
for r in rows:
    if not r["skipped"]:
        val[(r["backend"], r["library"], r["fds"], r["active"])] = r["us_per_round"]
fds = sorted({r["fds"] for r in rows})
actives = sorted({r["active"] for r in rows})
backends = [b for b in ("select", "poll", "epoll") if any(r["backend"] == b for r in rows)]

def cell(k):
    return "%.2f" % val[k] if k in val else "—"

def ratio(a, b):
    return "%.2f" % (val[a] / val[b]) if a in val and b in val and val[b] > 0 else "—"

lines = []
p = doc["params"]
lines.append("# dispatch-bench sweep: CPU µs per dispatch round")
lines.append("")
lines.append(f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['kernel']}, libevent {m['libevent']}, "
             f"RLIMIT_NOFILE {m['rlimit_nofile']}. Method: libevent's test/bench.c — P socketpairs "
             f"(one end watched), A active, {p.get('rounds', '?')}×A chained writes per run; median "
             f"of {p['runs']} runs of the thread's CPU time per round (one wait call + handling "
             "what it reported). raw = our loop on the system call, lev = libevent's event_base "
             "forced to that backend. — = not measurable (see notes). CPU time of the "
             "benchmark's thread, so that other work on the machine does not count; load "
             f"average (1/5/15 min): {load}.")
for a in actives:
    lines.append("")
    lines.append(f"## {a} active")
    lines.append("")
    hdr = ["fds"]
    for b in backends:
        hdr += [f"{b} raw", f"{b} lev"]
    hdr += ["raw/lev " + b for b in backends]
    if "poll" in backends and "epoll" in backends:
        hdr.append("poll/epoll")
    lines.append("| " + " | ".join(hdr) + " |")
    lines.append("|" + "---:|" * len(hdr))
    for n in fds:
        c = [str(n)]
        for b in backends:
            c += [cell((b, "raw", n, a)), cell((b, "libevent", n, a))]
        c += [ratio((b, "raw", n, a), (b, "libevent", n, a)) for b in backends]
        if "poll" in backends and "epoll" in backends:
            c.append(ratio(("poll", "raw", n, a), ("epoll", "raw", n, a)))
        lines.append("| " + " | ".join(c) + " |")
notes = collections.OrderedDict()
for r in rows:
    if r["skipped"]:
        key = (r["backend"], r["library"], r["note"])
        notes.setdefault(key, []).append(r["fds"])
if notes:
    lines.append("")
    lines.append("Notes:")
    for (b, lib, note), ns in notes.items():
        ns = sorted(set(ns))
        lines.append(f"- {b} {lib}, fds {', '.join(map(str, ns))}: {note}")
fails = sum(r["failures"] for r in rows)
lines.append(f"- send/recv failures in all runs: {fails}")
open(f"{out}/dispatch.md", "w").write("\n".join(lines) + "\n")

# gnuplot data: one block per (active, backend, library), in a fixed order so
# that the plot script can address them by index.
with open(f"{out}/dispatch.dat", "w") as f:
    f.write("# blocks: for each active (in order %s), for each of select/poll/epoll, raw then libevent\n" % actives)
    for a in actives:
        for b in ("select", "poll", "epoll"):
            for lib in ("raw", "libevent"):
                f.write(f"\"{b} {'raw' if lib == 'raw' else 'libevent'}\" fds us_per_round\n")
                pts = [(n, val[(b, lib, n, a)]) for n in fds if (b, lib, n, a) in val]
                if not pts:
                    f.write("nan nan\n")  # an empty block would shift the indices
                for n, v in pts:
                    f.write(f"{n} {v:.4f}\n")
                f.write("\n\n")
with open(f"{out}/dispatch.meta", "w") as f:
    f.write(" ".join(map(str, actives)) + "\n")
PY

if ((PLOTS)); then
  progress 3 3 "plots"
  if command -v gnuplot >/dev/null; then
    actives=$(cat "$OUT/dispatch.meta")
    for term in png svg; do
      gnuplot -e "datafile='$OUT/dispatch.dat'; outfile='$OUT/dispatch.$term'; fmt='$term'; actives='$actives'" \
        "$ROOT/scripts/plot-dispatch.gp"
    done
    progress_clear
    echo "$SCRIPT: plots $OUT/dispatch.png $OUT/dispatch.svg"
  else
    progress_clear
    echo "$SCRIPT: gnuplot not installed (scripts/setup.sh installs gnuplot-nox): no plots" >&2
  fi
fi
rm -f "$OUT/dispatch.meta"
progress_clear
echo "$SCRIPT: wrote $OUT/dispatch.csv $OUT/dispatch.md"
