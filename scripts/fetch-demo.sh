#!/usr/bin/env bash
# The course notes' comparison, in C++: 20 requests of /delay/200 against
# http-testd, fetched by each fetcher mode; prints the four times side by side.
#   scripts/fetch-demo.sh [BUILD_DIR]     default build/ (built if missing)
#   N=20 DELAY=200 scripts/fetch-demo.sh  other counts
# Expect sequential ~ N x DELAY (4 s), the concurrent modes ~ DELAY (0.2 s).
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
n="${N:-20}"
delay="${DELAY:-200}"
if [ ! -x "$build/bin/fetcher" ] || [ ! -x "$build/bin/http-testd" ]; then
  [ -f "$build/CMakeCache.txt" ] || cmake --preset default -B "$build" >/dev/null
  cmake --build "$build" --target fetcher http-testd -j 2 >/dev/null
fi

out="$(mktemp)"
"$build/bin/http-testd" --port 0 >"$out" &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 100); do
  grep -q '^listening on ' "$out" && break
  sleep 0.05
done
addr="$(sed -n 's/^listening on //p' "$out")"
[ -n "$addr" ] || { echo "fetch-demo: http-testd did not start" >&2; exit 1; }

urls=()
for _ in $(seq "$n"); do urls+=("http://$addr/delay/$delay"); done

declare -A seconds
for mode in sequential callbacks coroutines threads; do
  line="$("$build/bin/fetcher" --mode "$mode" --concurrency "$n" --threads "$n" "${urls[@]}" | tail -1)"
  case "$line" in
    *" ok=$n failed=0 "*) ;;
    *) echo "fetch-demo: $mode: $line" >&2; exit 1 ;;
  esac
  seconds[$mode]="$(sed -n 's/.* seconds=\([0-9.]*\).*/\1/p' <<<"$line")"
done

echo "$n x /delay/$delay on http://$addr (concurrency $n)"
printf '%-12s %-12s %-12s %-12s\n' sequential callbacks coroutines threads
printf '%-12s %-12s %-12s %-12s\n' "${seconds[sequential]}s" "${seconds[callbacks]}s" \
  "${seconds[coroutines]}s" "${seconds[threads]}s"
