#!/usr/bin/env bash
# test_timeline.sh SRC BUILD TRACER SERVER...: run scripts/timeline.sh --tracer
# TRACER (auto, ftrace or strace) on SERVERs, then check_timeline.py asserts each
# model's signature in OUT/SERVER.json, the picture's axis and the Chrome trace.
# With auto, as root with a tracefs, the run must have used ftrace.
set -euo pipefail
src=$1 build=$2 tracer=$3
shift 3
out=$(mktemp -d /tmp/iolab-test-timeline.XXXXXX)
trap 'rm -rf "$out"' EXIT
IOLAB_PROGRESS=0 bash "$src/scripts/timeline.sh" --build-dir "$build" --out "$out" --tracer "$tracer" "$@"
expect=$tracer
if [[ "$tracer" == auto ]]; then
  if ((EUID == 0)) && [[ -d /sys/kernel/tracing/instances || -d /sys/kernel/debug/tracing/instances ]]; then
    expect=ftrace
  else
    expect=strace
  fi
fi
EXPECT_TRACER=$expect python3 "$(dirname "$0")/check_timeline.py" "$out" "$@"
# Lab 10's picture: loadgen --busy-poll 0 against echo-epoll, where each echo must
# wake loadgen (needs ftrace: strace records no wake-ups).
if [[ "$expect" == ftrace && -x "$build/bin/loadgen" && -x "$build/bin/echo-epoll" ]]; then
  IOLAB_PROGRESS=0 bash "$src/scripts/timeline.sh" --build-dir "$build" --out "$out" --tracer ftrace \
    --loadgen "--mode echo -c 1 -n 20 --threads 1 --size 32 --busy-poll 0 -q" --name epoll-loadgen-sleep echo-epoll
  python3 "$(dirname "$0")/check_timeline.py" "$out" epoll-loadgen-sleep
fi
