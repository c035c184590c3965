#!/usr/bin/env bash
# test.sh — installs what is missing, configures, builds and runs the whole
# test suite (ctest: unit, integration, the lab checker, the conventions).
#
#   scripts/test.sh                      default preset (g++, RelWithDebInfo, build/)
#   scripts/test.sh --sanitize           ASan + UBSan (clang++, build-sanitize/)
#   scripts/test.sh --preset NAME        any preset of CMakePresets.json
#   scripts/test.sh [...] -- ARGS...     extra ctest arguments (e.g. -L unit, -R chat)
#
# Tests run one at a time (IOLAB_TEST_JOBS=1 by default): several of them
# measure CPU use or timing of a server, which a second test on a 2-core
# machine would disturb.
#
# Exit codes: 0 every test passed, 1 a step or a test failed, 2 usage error.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

preset=default
ctest_args=()
while (($#)); do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --sanitize) preset=sanitize; shift ;;
    --preset) need_value "$@"; preset=$2; shift 2 ;;
    --) shift; ctest_args=("$@"); break ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
done

./scripts/setup.sh
# ccache (installed by setup.sh) makes a second build of the same sources
# cheap; paths below the repository are hashed relative to it, so two clones
# share the cache.
if command -v ccache >/dev/null; then
  export CMAKE_CXX_COMPILER_LAUNCHER="${CMAKE_CXX_COMPILER_LAUNCHER:-ccache}"
  export CMAKE_C_COMPILER_LAUNCHER="${CMAKE_C_COMPILER_LAUNCHER:-ccache}"
  export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$ROOT}" CCACHE_NOHASHDIR=1
fi
cmake --preset "$preset"
cmake --build --preset "$preset"
ctest --preset "$preset" -j "${IOLAB_TEST_JOBS:-1}" "${ctest_args[@]}"
