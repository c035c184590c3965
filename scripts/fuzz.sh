#!/usr/bin/env bash
# fuzz.sh — runs the libFuzzer targets of fuzz/ for a bounded time.
#
# Usage: scripts/fuzz.sh [--build-dir DIR] [--cpu N] TARGET SECONDS
#   TARGET     http_parser, line_framer, url, chat, or all (each in turn,
#              SECONDS each)
#   SECONDS    how long each target runs (libFuzzer -max_total_time)
#   --cpu N    pin the fuzzer to CPU N (taskset), so that a run on a shared
#              machine keeps one CPU's worth of executions
#   --build-dir DIR
#              where the fuzz build lives (default build-fuzz/: its own
#              configuration, clang, -DIOLAB_FUZZ=ON)
#
# It configures and builds the target, then runs it with fuzz/corpus/TARGET as
# its seed and a scratch directory for new inputs. Inputs that reach new
# coverage are merged back into fuzz/corpus/TARGET (libFuzzer -merge=1 keeps
# the corpus minimal); the test suite replays that directory. Prints
# libFuzzer's last status line (cov: edges, ft: features, corp: inputs) and
# the number of inputs run. One input may take 30 s (-timeout): a loaded
# machine slows a run down without making it fail.
#
# Exit codes: 0 the time ran out without a finding; 1 a finding (its
# crash-*/leak-*/timeout-* file is left in BUILD/fuzz/findings/TARGET/);
# 2 usage error; 4 clang is missing.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

targets=(http_parser line_framer url chat)
BUILD_DIR="$ROOT/build-fuzz"
cpu=""
args=()
while (($#)); do
  if lib_common_option "$@"; then
    shift "$LIB_SHIFT"
    continue
  fi
  case "$1" in
    --cpu) need_value "$@"; check_uint --cpu "$2"; cpu=$2; shift 2 ;;
    -*) usage_error "unknown option '$1' (see --help)" ;;
    *) args+=("$1"); shift ;;
  esac
done
((${#args[@]} == 2)) || usage_error "expected TARGET SECONDS (see --help)"
which=${args[0]}
seconds=${args[1]}
check_uint SECONDS "$seconds"
((seconds > 0)) || usage_error "SECONDS must be at least 1"
if [[ "$which" == all ]]; then
  run=("${targets[@]}")
else
  found=0
  for t in "${targets[@]}"; do [[ "$t" == "$which" ]] && found=1; done
  ((found)) || usage_error "unknown target '$which' (one of: ${targets[*]} all)"
  run=("$which")
fi
require_cmd clang++ clang
require_cmd cmake cmake

cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DIOLAB_FUZZ=ON >/dev/null
steps=$((${#run[@]} + 1))
progress 1 "$steps" "building ${run[*]/#/fuzz_}"
progress_done # ninja prints as it goes: the step stays as a header
cmake --build "$BUILD_DIR" --target "${run[@]/#/fuzz_}"

runner=()
[[ -n "$cpu" ]] && command -v taskset >/dev/null && runner=(taskset -c "$cpu")

status=0
step=1
for t in "${run[@]}"; do
  step=$((step + 1))
  corpus="$ROOT/fuzz/corpus/$t"
  work="$BUILD_DIR/fuzz/work/$t"
  findings="$BUILD_DIR/fuzz/findings/$t"
  log="$BUILD_DIR/fuzz/$t.log"
  mkdir -p "$corpus" "$work" "$findings"
  echo "== fuzz_$t for ${seconds}s${cpu:+ on CPU $cpu}"
  progress "$step" "$steps" "fuzz_$t for ${seconds}s"
  rc=0
  "${runner[@]}" "$BUILD_DIR/fuzz/fuzz_$t" -max_total_time="$seconds" -max_len=4096 \
    -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$findings/" \
    "$work" "$corpus" >"$log" 2>&1 || rc=$?
  progress_clear
  grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE)' "$log" | tail -1 || true
  grep -E '^stat::number_of_executed_units' "$log" || true
  if ((rc != 0)); then
    echo "$SCRIPT: fuzz_$t stopped with exit code $rc; see $log and $findings/" >&2
    status=1
    continue
  fi
  # Keep only the inputs that add coverage: merge the working corpus into the
  # committed one, minimised. Named regression inputs (regress-*: past
  # findings) stay whatever the merge keeps.
  merged=$(scratch_dir)
  "$BUILD_DIR/fuzz/fuzz_$t" -merge=1 "$merged" "$corpus" "$work" >/dev/null 2>&1
  find "$corpus" -type f ! -name 'regress-*' -delete
  cp "$merged"/* "$corpus"/ 2>/dev/null || true
  echo "$SCRIPT: fuzz_$t ${seconds}s without a finding; corpus $(find "$corpus" -type f | wc -l) files"
done
exit "$status"
