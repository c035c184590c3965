#!/usr/bin/env bash
# test_timeline.sh SRC BUILD SERVER...: run scripts/timeline.sh on SERVERs, then
# check_timeline.py asserts each model's signature in OUT/SERVER.json.
set -euo pipefail
src=$1 build=$2
shift 2
out=$(mktemp -d /tmp/iolab-test-timeline.XXXXXX)
trap 'rm -rf "$out"' EXIT
IOLAB_PROGRESS=0 bash "$src/scripts/timeline.sh" --build-dir "$build" --out "$out" "$@"
python3 "$(dirname "$0")/check_timeline.py" "$out" "$@"
