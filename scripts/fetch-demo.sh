#!/usr/bin/env bash
# fetch-demo.sh — the course notes' comparison, in C++: N requests of
# /delay/MS against http-testd, fetched by each fetcher mode (sequential,
# callbacks, coroutines, threads); prints the four times side by side.
#
# Usage: scripts/fetch-demo.sh [--build-dir DIR] [-n N] [--delay MS]
#   -n N         requests (default 20), all at once in the concurrent modes
#   --delay MS   what each response waits on the server (default 200)
#
# Expect sequential ~ N x MS (4 s), the concurrent modes ~ MS (0.2 s).
# Builds fetcher and http-testd first when they are missing. Loopback only.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
n=20
delay=200
while (($#)); do
  if lib_common_option "$@"; then shift "$LIB_SHIFT"; continue; fi
  case "$1" in
    -n) need_value "$@"; check_uint "$1" "$2"; n=$2; shift 2 ;;
    --delay) need_value "$@"; check_uint "$1" "$2"; delay=$2; shift 2 ;;
    *) usage_error "unknown option '$1'" ;;
  esac
done
((n >= 1 && n <= 1000)) || usage_error "-n must be 1..1000, got $n"

if [[ ! -x "$BUILD_DIR/bin/fetcher" || ! -x "$BUILD_DIR/bin/http-testd" ]]; then
  [[ -f "$BUILD_DIR/CMakeCache.txt" ]] || cmake --preset default -B "$BUILD_DIR" >/dev/null
  cmake --build "$BUILD_DIR" --target fetcher http-testd -j 2 >/dev/null
fi
require_bin fetcher http-testd

start_server http-testd --port 0
addr=$SERVER_ADDR

urls=()
for _ in $(seq "$n"); do urls+=("http://$addr/delay/$delay"); done

# Each mode prints one summary line last: "... ok=N http_errors=0 failed=0 ... seconds=S".
declare -A seconds
step=0
for mode in sequential callbacks coroutines threads; do
  step=$((step + 1))
  progress "$step" 4 "fetcher --mode $mode: $n x /delay/$delay"
  line=$("$BUILD_DIR/bin/fetcher" --mode "$mode" --concurrency "$n" --threads "$n" "${urls[@]}" | tail -1)
  case "$line" in
    *" ok=$n http_errors=0 failed=0 "*) ;;
    *) die "$mode: $line" ;;
  esac
  seconds[$mode]=$(sed -n 's/.* seconds=\([0-9.]*\).*/\1/p' <<<"$line")
done
progress_clear
stop_server "$SERVER_PID" || die "http-testd did not stop cleanly (exit $?)"

echo "$n x /delay/$delay on http://$addr (concurrency $n)"
printf '%-12s %-12s %-12s %-12s\n' sequential callbacks coroutines threads
printf '%-12s %-12s %-12s %-12s\n' "${seconds[sequential]}s" "${seconds[callbacks]}s" \
  "${seconds[coroutines]}s" "${seconds[threads]}s"
