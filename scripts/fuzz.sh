#!/usr/bin/env bash
# Runs the libFuzzer targets of fuzz/ for a bounded time.
#   scripts/fuzz.sh TARGET SECONDS     one target: http_parser, line_framer, url, chat
#   scripts/fuzz.sh all SECONDS        each target in turn, SECONDS each
#   scripts/fuzz.sh --help
# Configures its own build directory (build-fuzz/, clang, -DIOLAB_FUZZ=ON;
# --build-dir DIR to change it), builds the target and runs it with
# fuzz/corpus/TARGET as its seed and a scratch directory for new inputs.
# Inputs that reach new coverage are merged back into fuzz/corpus/TARGET
# (libFuzzer -merge=1 keeps the corpus minimal); the test suite replays that
# directory. Prints libFuzzer's final cov:/ft: line. One input may take 30 s
# (-timeout): a loaded machine starves a run under nice.
# Exit 0 when the time ran out without a finding; a finding leaves its
# crash-*/leak-*/timeout-* file in BUILD/fuzz/findings/TARGET/ and exits 1;
# usage errors exit 2.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
targets=(http_parser line_framer url chat)

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
usage_error() { echo "fuzz.sh: $1" >&2; exit 2; }

build="$root/build-fuzz"
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) usage; exit 0 ;;
    --build-dir) [ $# -ge 2 ] || usage_error "--build-dir needs a directory"; build="$2"; shift 2 ;;
    --build-dir=*) build="${1#*=}"; shift ;;
    -*) usage_error "unknown option $1" ;;
    *) args+=("$1"); shift ;;
  esac
done
[ "${#args[@]}" -eq 2 ] || usage_error "expected TARGET SECONDS (see --help)"
which="${args[0]}"
seconds="${args[1]}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then usage_error "SECONDS must be a positive number"; fi
if [ "$which" = all ]; then
  run=("${targets[@]}")
else
  found=0
  for t in "${targets[@]}"; do [ "$t" = "$which" ] && found=1; done
  [ "$found" = 1 ] || usage_error "unknown target $which (one of: ${targets[*]} all)"
  run=("$which")
fi

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DIOLAB_FUZZ=ON >/dev/null
cmake --build "$build" --target "${run[@]/#/fuzz_}"

status=0
for t in "${run[@]}"; do
  corpus="$root/fuzz/corpus/$t"
  work="$build/fuzz/work/$t"
  findings="$build/fuzz/findings/$t"
  mkdir -p "$corpus" "$work" "$findings"
  echo "== fuzz_$t for ${seconds}s"
  set +e
  "$build/fuzz/fuzz_$t" -max_total_time="$seconds" -max_len=4096 -timeout=30 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$findings/" \
    "$work" "$corpus" >"$build/fuzz/$t.log" 2>&1
  rc=$?
  set -e
  grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE)' "$build/fuzz/$t.log" | tail -1 || true
  grep -E '^stat::number_of_executed_units' "$build/fuzz/$t.log" || true
  if [ "$rc" -ne 0 ]; then
    echo "fuzz.sh: fuzz_$t stopped with exit code $rc; see $build/fuzz/$t.log and $findings/" >&2
    status=1
    continue
  fi
  # Keep only the inputs that add coverage: merge the working corpus into the
  # committed one, minimised.
  merged="$build/fuzz/merged/$t"
  rm -rf "$merged"; mkdir -p "$merged"
  "$build/fuzz/fuzz_$t" -merge=1 "$merged" "$corpus" "$work" >/dev/null 2>&1
  # Named regression inputs (regress-*: past findings) stay whatever the
  # merge keeps.
  find "$corpus" -type f ! -name 'regress-*' -delete
  cp "$merged"/* "$corpus"/ 2>/dev/null || true
  echo "fuzz.sh: fuzz_$t ${seconds}s without a finding; corpus $(find "$corpus" -type f | wc -l) files"
done
exit "$status"
