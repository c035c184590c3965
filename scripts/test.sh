#!/usr/bin/env bash
# Installs what is missing, configures, builds and runs the whole test suite.
#   scripts/test.sh             default preset (g++, RelWithDebInfo, build/)
#   scripts/test.sh --sanitize  ASan + UBSan (clang++, build-sanitize/)
#   scripts/test.sh --preset NAME [-- ctest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

preset=default
ctest_args=()
while (($#)); do
  case "$1" in
    --sanitize) preset=sanitize ;;
    --preset) preset="$2"; shift ;;
    --) shift; ctest_args=("$@"); break ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done

./scripts/setup.sh
cmake --preset "$preset"
cmake --build --preset "$preset"
# Tests run one at a time by default: several of them measure CPU use or
# timing of a server, which a second test on this 2-core machine would disturb.
ctest --preset "$preset" -j "${IOLAB_TEST_JOBS:-1}" "${ctest_args[@]}"
