#!/usr/bin/env bash
# report.sh — one self-contained HTML page of what this machine measured:
# the machine's state, the dispatch sweep, the multiplexing comparison and
# (from DATA/event-loops.csv, scripts/bench-event-loop.sh) the event loops as
# SVG charts (point at a dot to read its value), the spread over repeats with
# a verdict on whether requests/s can be trusted, the timelines, and the
# conclusion computed from the data. Inline CSS and SVG only; the page fetches
# nothing (no CDN, no font, no script from elsewhere): open it anywhere.
#
#   scripts/report.sh                  measure (quick dispatch sweep, then the
#                                      echo servers at idle 0, 1000, 10000, 2
#                                      repeats of 1.5 s: a few minutes), then write
#   scripts/report.sh --from-results   write from the committed results/*.csv
#                                      without measuring (a second)
#   scripts/report.sh --data DIR       write from DIR/dispatch.csv, DIR/multiplexing
#                                      .csv and DIR/multiplexing-runs.csv (what
#                                      scripts/demo.sh just measured) without measuring
#   options: --out FILE (default BUILD_DIR/report/report.html)
#            --timelines DIR (default BUILD_DIR/timeline when it holds .svg
#            files, else DATA/timeline; scripts/timeline.sh draws them)
#            --load-before "L1 L5 L15" --load-after "L1 L5 L15" (load averages
#            taken around a measurement made elsewhere, shown in the page)
#            --build-dir DIR (default build/; the programs are in DIR/bin)
#
# When measuring, the data go to BUILD_DIR/report/data and the load average is
# read before the first and after the last measurement.
# Open the page: xdg-open build/report/report.html (or file:///... in a browser).
# Exit codes: 0 written; 1 failed (no data, a sweep failed); 2 usage error;
# 3 a program is not built.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

MODE=measure
DATA=""
OUT_FILE=""
TIMELINES=""
LOAD_BEFORE=""
LOAD_AFTER=""
while (($#)); do
  if lib_common_option "$@"; then shift "$LIB_SHIFT"; continue; fi
  case "$1" in
    --from-results) MODE=render; DATA="$ROOT/results"; shift ;;
    --data) need_value "$@"; MODE=render; DATA=$2; shift 2 ;;
    --out) need_value "$@"; OUT_FILE=$2; shift 2 ;;
    --timelines) need_value "$@"; TIMELINES=$2; shift 2 ;;
    --load-before) need_value "$@"; LOAD_BEFORE=$2; shift 2 ;;
    --load-after) need_value "$@"; LOAD_AFTER=$2; shift 2 ;;
    *) usage_error "unknown argument '$1' (see --help)" ;;
  esac
done
for v in "$LOAD_BEFORE" "$LOAD_AFTER"; do
  [[ -z "$v" || "$v" =~ ^[0-9.]+\ [0-9.]+\ [0-9.]+$ ]] ||
    usage_error "--load-before/--load-after take three numbers, got '$v'"
done
OUT_FILE=${OUT_FILE:-$BUILD_DIR/report/report.html}
command -v python3 >/dev/null || cannot_run "python3 is not installed (apt-get install python3)"

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

if [[ "$MODE" == measure ]]; then
  require_bin dispatch-bench loadgen echo-select echo-poll echo-epoll
  DATA="$BUILD_DIR/report/data"
  mkdir -p "$DATA"
  servers="echo-select echo-poll echo-epoll echo-epoll--edge"
  [[ -x "$BUILD_DIR/bin/echo-uring" ]] && servers+=" echo-uring"
  LOAD_BEFORE=$(loadavg)
  progress 1 3 "dispatch sweep (dispatch-sweep.sh --quick)"
  "$ROOT/scripts/dispatch-sweep.sh" --quick --no-plots --build-dir "$BUILD_DIR" --out "$DATA" >&2 ||
    die "scripts/dispatch-sweep.sh failed"
  progress 2 3 "echo servers with idle connections (compare-multiplexing.sh)"
  # A point with errors still writes its row (the errors column says so).
  "$ROOT/scripts/compare-multiplexing.sh" --idle "0 1000 10000" --repeats 2 --duration 1.5 \
    --servers "$servers" --no-plots --build-dir "$BUILD_DIR" --out "$DATA" >&2 ||
    echo "$SCRIPT: the comparison reported errors (see the errors column)" >&2
  LOAD_AFTER=$(loadavg)
  progress 3 3 "writing the page"
else
  [[ -d "$DATA" ]] || usage_error "no such directory: $DATA"
fi

if [[ -z "$TIMELINES" ]]; then
  TIMELINES="$BUILD_DIR/timeline"
  if ! compgen -G "$TIMELINES/*.svg" >/dev/null && compgen -G "$DATA/timeline/*.svg" >/dev/null; then
    TIMELINES="$DATA/timeline"
  fi
fi

source_text="$DATA"
[[ "$MODE" == measure ]] && source_text="a run just made ($DATA)"
# Bad data: report.py says which file, which line and what is wrong, in one
# line, and exits 1.
rc=0
python3 "$ROOT/scripts/report.py" --data "$DATA" --out "$OUT_FILE" --timelines "$TIMELINES" \
  --source "$source_text" ${LOAD_BEFORE:+--load-before "$LOAD_BEFORE"} \
  ${LOAD_AFTER:+--load-after "$LOAD_AFTER"} || rc=$?
if ((rc != 0)); then
  progress_done
  exit 1
fi
progress_done
echo "$SCRIPT: wrote $OUT_FILE (open it: xdg-open $OUT_FILE, or file://$(realpath "$OUT_FILE") in a browser)"
