#!/usr/bin/env bash
# demo.sh — the suite's main job in one command: how the cost of select, poll
# and epoll grows with the number of descriptors, and when each one wins.
#
#   scripts/demo.sh           short version of both experiments (about 2 minutes)
#   scripts/demo.sh --full    the long version (about 12 minutes)
#   scripts/demo.sh --out DIR write there instead of BUILD_DIR/demo
#   scripts/demo.sh --build-dir DIR   configure/build there (default build/)
#   scripts/demo.sh --smoke   the smallest run that writes every output (two
#                             sweep points, two servers at idle 0 and 100, one
#                             short repeat: well under a minute; for tests)
#   scripts/demo.sh --no-build  run what is built, build nothing (exit 3 when
#                             dispatch-bench is missing)
#
# Everything it writes goes under the build directory (BUILD_DIR/demo, the
# page in BUILD_DIR/report/): the committed results/ — the figures README and
# LAB 03 quote, from a quiet full run — stay as they are. Replacing them is a
# maintainer's act: scripts/demo.sh --full --out results.
#
# 1. scripts/dispatch-sweep.sh: one dispatch round of select/poll/epoll (raw
#    and through libevent) against the number of watched descriptors.
# 2. scripts/compare-multiplexing.sh: echo-select, echo-poll, echo-epoll
#    (level and --edge) and echo-uring under a fixed active load while idle
#    connections pile up (needs loadgen and the servers built).
# Then both tables, the plots' paths and three lines of conclusion computed
# from the numbers just measured, and one HTML page of it all (scripts/report.sh
# --data OUT: charts, spread, timelines; BUILD_DIR/report/report.html).
# Builds first if needed (preset default).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
OUT=""
full=0
smoke=0
build=1
while (($#)); do
  if lib_common_option "$@"; then shift "$LIB_SHIFT"; continue; fi
  case "$1" in
    --full) full=1; shift ;;
    --smoke) smoke=1; shift ;;
    --no-build) build=0; shift ;;
    --out) need_value "$@"; OUT=$2; shift 2 ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
done
((full && smoke)) && usage_error "--full and --smoke: choose one"
OUT="${OUT:-$BUILD_DIR/demo}"
BIN="$BUILD_DIR/bin"
mkdir -p "$OUT"

# ---- build (incremental: seconds when up to date) ----
tools=(python3)
((build)) && tools+=(cmake ninja)
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null || die "$tool missing: run ./scripts/setup.sh first"
done
if ((!build)); then
  echo "== not building (--no-build): the programs in $BIN"
else
  if [[ ! -f "$BUILD_DIR/build.ninja" ]]; then
    echo "== configuring (cmake --preset default -B $BUILD_DIR)"
    cmake --preset default -B "$BUILD_DIR" >/dev/null
  fi
  echo "== building (cmake --build $BUILD_DIR; -j2)"
  build_log="$(scratch_dir)/build.log"
  if ! cmake --build "$BUILD_DIR" -j 2 >"$build_log" 2>&1; then
    # A broken corner of the tree must not hide the experiments: build only
    # what the demo runs, one target at a time.
    cp "$build_log" "$OUT/build.log"
    echo "$SCRIPT: the full build failed (see $OUT/build.log); building the demo's programs only" >&2
    for t in dispatch-bench loadgen echo-select echo-poll echo-epoll echo-uring; do
      cmake --build "$BUILD_DIR" -j 2 --target "$t" >>"$OUT/build.log" 2>&1 ||
        echo "$SCRIPT: $t did not build" >&2
    done
  fi
fi
require_bin dispatch-bench

# ---- 1. the dispatch sweep ----
t_start=$SECONDS
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
progress 1 3 "dispatch-bench sweep"
echo
echo "== 1/2 dispatch-bench sweep"
if ((full)); then
  scripts/dispatch-sweep.sh --build-dir "$BUILD_DIR" --out "$OUT"
elif ((smoke)); then
  scripts/dispatch-sweep.sh --fds 100,200 --rounds 10 --runs 1 --build-dir "$BUILD_DIR" --out "$OUT"
else
  scripts/dispatch-sweep.sh --quick --build-dir "$BUILD_DIR" --out "$OUT"
fi

# ---- 2. the end-to-end comparison ----
echo
compare_ok=0
missing=()
for p in loadgen echo-select echo-poll echo-epoll; do
  [[ -x "$BIN/$p" ]] || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "== 2/2 skipped: not built yet: ${missing[*]}"
else
  echo "== 2/2 echo servers with idle connections"
  progress 2 3 "echo servers with idle connections"
  args=()
  ((full)) || args=(--idle "0 1000 10000" --repeats 2 --duration 1.5)
  ((smoke)) && args=(--idle "0 100" --repeats 1 --duration 0.5 --servers "echo-poll echo-epoll")
  if scripts/compare-multiplexing.sh "${args[@]}" --build-dir "$BUILD_DIR" --out "$OUT"; then
    compare_ok=1
  else
    echo "$SCRIPT: the comparison reported errors (see the table's errors column)" >&2
    compare_ok=1
  fi
fi

# ---- tables, plots, conclusion ----
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
progress 3 3 "tables, conclusion and the HTML report"
progress_done
echo
echo "(experiments took $((SECONDS - t_start)) s)"
echo "================================================================================"
cat "$OUT/dispatch.md"
if ((compare_ok)) && [[ -f "$OUT/multiplexing.md" ]]; then
  echo
  cat "$OUT/multiplexing.md"
fi
echo
echo "Plots:"
for f in dispatch multiplexing-rps multiplexing-p99 multiplexing-cpu; do
  [[ -f "$OUT/$f.png" ]] && echo "  $OUT/$f.png  (and .svg)"
done
echo
echo "Conclusion (computed from these runs):"
python3 - "$OUT" "$compare_ok" <<'PY' | tee "$OUT/conclusion.txt"
import csv, json, sys
out, compare_ok = sys.argv[1], sys.argv[2] == "1"
doc = json.load(open(f"{out}/dispatch.json"))
val = {(r["backend"], r["library"], r["fds"], r["active"]): r["us_per_round"]
       for r in doc["results"] if not r["skipped"]}
actives = sorted({r["active"] for r in doc["results"]})
fds = sorted({r["fds"] for r in doc["results"]})

def crossing(a):
    # The largest point where the cheaper of select/poll is within 10% of
    # epoll (or cheaper), and the first point after it where epoll is ahead.
    tie, ahead = None, None
    for n in fds:
        e = val.get(("epoll", "raw", n, a))
        sp = [val[k] for k in (("select", "raw", n, a), ("poll", "raw", n, a)) if k in val]
        if e is None or not sp:
            continue
        if min(sp) <= 1.10 * e:
            tie, ahead = n, None
        elif ahead is None:
            ahead = n
    return tie, ahead

parts = []
for a in actives:
    tie, ahead = crossing(a)
    if tie is None:
        parts.append(f"with {a} active, epoll is cheaper per round from the smallest point ({fds[0]} fds) on")
    elif ahead is None:
        parts.append(f"with {a} active, select/poll stay within 10% of epoll up to {tie} fds (no crossing measured)")
    else:
        parts.append(f"with {a} active, select/poll are within 10% of epoll up to {tie} fds and epoll wins from {ahead}")
print("1. Crossing: " + "; ".join(parts) + ".")

big = max((n for n in fds if any(("poll", "raw", n, a) in val and ("epoll", "raw", n, a) in val
                                for a in actives)), default=None)
if big is None:
    print("2. poll vs epoll: no point measured both.")
else:
    rs = [f"{val[('poll', 'raw', big, a)] / val[('epoll', 'raw', big, a)]:.1f}x with {a} active"
          for a in actives if ("poll", "raw", big, a) in val and ("epoll", "raw", big, a) in val]
    lev = [f"{b} {val[(b, 'raw', n, a)] / val[(b, 'libevent', n, a)]:.2f}"
           for b in ("select", "poll", "epoll") for n in fds for a in actives
           if (b, "raw", n, a) in val and (b, "libevent", n, a) in val]
    worst = max(lev, key=lambda s: float(s.split()[1])) if lev else "n/a"
    print(f"2. At {big} descriptors one poll round costs {' and '.join(rs)} what an epoll round costs; "
          f"raw/libevent worst ratio over the sweep: {worst}.")

if not compare_ok:
    print("3. End to end: not run (loadgen and the servers are not built yet).")
else:
    rows = list(csv.DictReader(open(f"{out}/multiplexing.csv")))
    by = {}
    for r in rows:
        by.setdefault(r["server"], {})[int(r["idle_asked"])] = r
    top = max(int(r["idle_asked"]) for r in rows)
    kept, cpu = [], []
    for s, pts in by.items():
        if 0 in pts and top in pts and float(pts[0]["requests_per_s"] or 0) > 0:
            r = pts[top]
            share = float(r["requests_per_s"]) / float(pts[0]["requests_per_s"])
            idle = r["idle"] + (" (capped)" if r["capped"] == "1" else "")
            kept.append(f"{s} {100 * share:.0f}% at {idle}")
            if pts[0]["cpu_us_per_request"] and r["cpu_us_per_request"]:
                cpu.append(f"{s} {float(pts[0]['cpu_us_per_request']):.1f}->"
                           f"{float(r['cpu_us_per_request']):.1f}")
    errors = sum(int(r["errors"]) for r in rows)
    print(f"3. End to end, 0 -> {top} idle connections: requests/s kept: " + ", ".join(kept) +
          "; server CPU µs per request: " + ", ".join(cpu) + f"; errors: {errors}.")
PY

# ---- the HTML page, from what was just measured (no new measurement) ----
echo
report_file="$BUILD_DIR/report/report.html"
if scripts/report.sh --data "$OUT" --build-dir "$BUILD_DIR" --out "$report_file" \
  --load-before "$load_before" --load-after "$load_after" >/dev/null; then
  echo "Report (one self-contained HTML file): $report_file"
  echo "  open it: xdg-open $report_file   (or file://$report_file in any browser)"
else
  echo "$SCRIPT: scripts/report.sh could not write the report" >&2
fi
echo
if [[ "$(realpath "$OUT")" == "$(realpath "$ROOT/results")" ]]; then
  echo "Written to $OUT: the committed reference results, replaced (git diff results/ shows how)."
else
  echo "Written to $OUT; the committed results/ are as they were (a maintainer replaces them"
  echo "with scripts/demo.sh --full --out results)."
fi
