#!/usr/bin/env bash
# Fuzzes common/http (response parser + URL parser) with libFuzzer for a
# bounded time.
#   scripts/fuzz.sh [SECONDS]      default 60
# Configures its own build directory (build-fuzz/, clang, -DIOLAB_FUZZ=ON),
# builds the target, seeds a corpus with sample responses, and runs. Exit 0
# when the time ran out without a finding; a crash leaves crash-* files in
# build-fuzz/fuzz/ and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: SECONDS must be a number" >&2; exit 2; }

build=build-fuzz
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DIOLAB_FUZZ=ON >/dev/null
cmake --build "$build" --target fuzz_http_parser -j 2

corpus="$build/fuzz/corpus"
mkdir -p "$corpus"
seed() { printf '%b' "$2" > "$corpus/seed-$1"; }
# The first byte is the options byte of the target (see fuzz/http_parser_fuzz.cpp).
seed cl '\x00HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 204 No\r\n\r\n'
seed chunked '\x22HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nT: 1\r\n\r\n'
seed close '\x10HTTP/1.0 200 OK\r\nServer: x\r\n\r\nbody until close'
seed head '\x01HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n'
seed interim '\x48HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n'
seed tight '\x04HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nTransfer-Encoding: gzip, chunked\r\n\r\n64\r\n'
seed url '\x00http://[::1]:8080/a/../b?q=1#f'

echo "fuzzing common/http for ${seconds}s ..."
"$build/fuzz/fuzz_http_parser" -max_total_time="$seconds" -max_len=4096 -timeout=10 \
  -rss_limit_mb=2048 -print_final_stats=1 "$corpus" 2>&1 | tail -25
rc=${PIPESTATUS[0]}
if [ "$rc" -eq 0 ]; then
  echo "fuzz.sh: ${seconds}s without a finding"
else
  echo "fuzz.sh: libFuzzer stopped with exit code $rc (see crash-* files)" >&2
fi
exit "$rc"
