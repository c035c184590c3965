#!/usr/bin/env bash
# Installs everything iolab needs to build, test and benchmark, from Debian
# packages. Idempotent: when everything is present it only checks (seconds).
#
# Usage: scripts/setup.sh     (as root, or with sudo available)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
while (($#)); do
  if lib_common_option "$@"; then shift "$LIB_SHIFT"; continue; fi
  usage_error "unknown argument '$1'"
done

PACKAGES=(
  # build
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev clang-format ccache
  # libraries
  libcli11-dev catch2 libfmt-dev nlohmann-json3-dev libevent-dev liburing-dev
  # the peer event loops of bench/peers (scripts/bench-event-loop.sh)
  libuv1-dev libasio-dev python3-uvloop
  # tests, demo and benchmarks
  python3 procps iproute2 strace netcat-openbsd socat curl wrk nghttp2-client nginx-light redis-server
  gnuplot-nox shellcheck
  # the report's browser test (tests/scripts/test_report: headless, over the DevTools pipe)
  chromium
)

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || die "need root or sudo to install: ${missing[*]}"
  SUDO=(sudo)
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
