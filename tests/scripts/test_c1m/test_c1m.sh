#!/usr/bin/env bash
# test_c1m.sh SOURCE_DIR BUILD_DIR — scripts/c1m.sh without a big run:
#   1. usage errors: exit 2, one line naming the option;
#   2. an absurd --connections: exit 4 on memory, with the figures, before
#      anything starts (no "server:" line) and without changing any sysctl;
#   3. --dry-run at 50,000: the plan's processes, addresses and ports are
#      recomputed here from the hard RLIMIT_NOFILE and the port range; as root
#      exit 0 and nothing changed; not as root exit 4 naming what it may not
#      raise (the port range, which 50,000 connections need widened);
#   4. as root, the same dry run as user nobody (setpriv): the permission
#      refusal, exit 4.
# Exit 0 when every check passed; each failure is printed.
set -uo pipefail
src=$1
build=$2
c1m="$src/scripts/c1m.sh"
failures=0
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}
keys=(fs.file-max fs.nr_open net.ipv4.ip_local_port_range net.core.somaxconn net.ipv4.tcp_max_syn_backlog
  fs.epoll.max_user_watches net.ipv4.tcp_mem)
[[ -r /proc/sys/net/netfilter/nf_conntrack_max ]] && keys+=(net.netfilter.nf_conntrack_max)
snapshot() {
  local k
  for k in "${keys[@]}"; do echo "$k=$(tr '\t' ' ' <"/proc/sys/${k//.//}")"; done
}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

run() { # NAME ARGS...: stdout and stderr into files, exit code in RC
  local name=$1
  shift
  RC=0
  "$c1m" --build-dir "$build" "$@" >"$out/$name.out" 2>"$out/$name.err" || RC=$?
}

# 1. usage errors
run usage1 --connections abc
[[ $RC == 2 ]] || fail "--connections abc: exit $RC, want 2"
grep -qx 'c1m: --connections must be a whole number, got .abc.' "$out/usage1.err" ||
  fail "--connections abc: stderr '$(cat "$out/usage1.err")'"
run usage2 --connections 10 --active 11
[[ $RC == 2 ]] || fail "--active 11 of 10: exit $RC, want 2"
[[ $(wc -l <"$out/usage2.err") == 1 ]] || fail "--active 11 of 10: want one line, got '$(cat "$out/usage2.err")'"

# 2. memory: 10^11 connections need about a petabyte
before=$(snapshot)
run memory --connections 100000000000
after=$(snapshot)
[[ $RC == 4 ]] || fail "10^11 connections: exit $RC, want 4"
grep -Eq '^c1m: not enough memory: 100000000000 connections need about [0-9]+ MiB .*MemAvailable is [0-9]+ MiB$' "$out/memory.err" ||
  fail "10^11 connections: stderr '$(cat "$out/memory.err")'"
grep -q '^server:' "$out/memory.out" && fail "10^11 connections: a server was started"
[[ "$before" == "$after" ]] || fail "10^11 connections changed a sysctl: $(diff <(echo "$before") <(echo "$after"))"

# 3. the plan at 50,000
n=50000
hard=$(ulimit -Hn)
[[ $hard == unlimited ]] && hard=1048576
per=$((hard - 200))
clients=$(((n + per - 1) / per))
servers=$(((n * 110 / 100 + per - 1) / per))
per_client=$(((n + clients - 1) / clients))
read -r lo hi </proc/sys/net/ipv4/ip_local_port_range
widen=0
((per_client > (hi - lo + 1) * 45 / 100)) && widen=1
before=$(snapshot)
run plan --connections $n --dry-run
after=$(snapshot)
[[ "$before" == "$after" ]] || fail "--dry-run changed a sysctl: $(diff <(echo "$before") <(echo "$after"))"
grep -q '^server:\|^for this run:' "$out/plan.out" && fail "--dry-run started something"
if ! { ((hard < 65536)) && (ulimit -Hn 65536) 2>/dev/null; }; then
  # The hard limit stays (no CAP_SYS_RESOURCE, or high enough already): the
  # plan counts processes under it.
  grep -q "echo-epoll --workers $servers --max-clients $((servers * per)) .*room for $per each" "$out/plan.out" ||
    fail "plan: want $servers workers of $per: $(grep 'server ' "$out/plan.out")"
  grep -q "loadgen --mode idle --processes $clients: $per_client connections each, 500 active" "$out/plan.out" ||
    fail "plan: want $clients loadgen processes of $per_client: $(grep 'clients ' "$out/plan.out")"
fi
if ((widen)); then
  grep -Eq '^  net.ipv4.ip_local_port_range +[0-9]+ [0-9]+ +RAISE -> 10240 65535 ' "$out/plan.out" ||
    fail "plan: the port range should be widened for $per_client per process: $(grep port_range "$out/plan.out")"
fi
grep -Eq '^  memory +MemAvailable [0-9]+ MiB; the run needs about 585 MiB \(11264 B kernel \+ 1024 B user' "$out/plan.out" ||
  fail "plan: memory line '$(grep '^  memory' "$out/plan.out")'"
raises=$(grep -c ' RAISE -> ' "$out/plan.out")
if [[ $(id -u) == 0 ]]; then
  [[ $RC == 0 ]] || fail "--dry-run as root: exit $RC, want 0 ($(cat "$out/plan.err"))"
  grep -qx 'dry run: nothing changed' "$out/plan.out" || fail "--dry-run: no 'dry run: nothing changed' line"
elif ((raises > 0)); then
  [[ $RC == 4 ]] || fail "--dry-run not as root with $raises limits to raise: exit $RC, want 4"
  grep -q '^c1m: no permission: .* this is not root$' "$out/plan.err" || fail "not root: stderr '$(cat "$out/plan.err")'"
fi

# 4. as root: the permission refusal, as user nobody
if [[ $(id -u) == 0 ]] && ((raises > 0)) && command -v setpriv >/dev/null; then
  RC=0
  setpriv --reuid=65534 --regid=65534 --clear-groups "$c1m" --build-dir "$build" --connections $n --dry-run \
    >"$out/nobody.out" 2>"$out/nobody.err" || RC=$?
  if grep -q 'Permission denied' "$out/nobody.err"; then
    echo "skipped: user nobody cannot read $c1m here"
  else
    [[ $RC == 4 ]] || fail "as nobody: exit $RC, want 4 ($(cat "$out/nobody.err"))"
    grep -q '^c1m: no permission: .*net.ipv4.ip_local_port_range.* this is not root$' "$out/nobody.err" ||
      ((!widen)) || fail "as nobody: stderr '$(cat "$out/nobody.err")'"
  fi
fi

if ((failures)); then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed (hard RLIMIT_NOFILE $hard: $servers workers, $clients loadgen processes for $n)"
