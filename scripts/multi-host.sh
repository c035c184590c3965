#!/usr/bin/env bash
# multi-host.sh — several load generator "hosts" against one server, without
# several machines: K network namespaces each run one loadgen, a server
# namespace runs echo-epoll, and veth pairs join them on a bridge that lives
# in a namespace of its own. Then the three steps of a multi-machine run:
# start every loadgen at the same instant, collect their --json reports,
# merge them (`loadgen merge`: histograms bucket by bucket, counters added).
#
# Usage: scripts/multi-host.sh [--build-dir DIR] [--hosts K] [--connections C]
#                              [--duration S] [--rate R] [--out DIR]
#
#   --hosts K         loadgen namespaces (default 4, at most 200)
#   --connections C   connections per host (default 250)
#   --duration S      seconds each loadgen runs (default 5, first second not counted)
#   --rate R          requests/s per host, open loop (default 0: closed loop)
#   --out DIR         keep host-N.json and merged.json there (default: a
#                     temporary directory, removed at exit)
#
# Addresses come from 198.18.0.0/15 (RFC 2544, for benchmarks) only inside
# the namespaces: the server is 198.18.0.1, host N is 198.18.1.N. Nothing is
# added to the root namespace; the namespaces (iolab-mh<pid>-*) are deleted at
# exit, also after a failure or Ctrl-C. Prints each host's figures, the
# merged figures, and checks that the merge equals the sum of the hosts'
# counters and histograms exactly.
#
# Needs root (network namespaces): exits 4 with the reason when it is not
# root or the kernel refuses namespaces. Bounded: duration + 60 s at most.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

hosts=4
conns=250
duration=5
rate=0
out=""
while (($#)); do
  if lib_common_option "$@"; then shift "$LIB_SHIFT"; continue; fi
  case "$1" in
    --hosts) need_value "$@"; check_uint "$1" "$2"; hosts=$2; shift 2 ;;
    --connections) need_value "$@"; check_uint "$1" "$2"; conns=$2; shift 2 ;;
    --duration) need_value "$@"; check_uint "$1" "$2"; duration=$2; shift 2 ;;
    --rate) need_value "$@"; check_uint "$1" "$2"; rate=$2; shift 2 ;;
    --out) need_value "$@"; out=$2; shift 2 ;;
    *) usage_error "unknown option '$1'" ;;
  esac
done
((hosts >= 1 && hosts <= 200)) || usage_error "--hosts must be 1..200, got $hosts"
((conns >= 1 && conns <= 15000)) || usage_error "--connections must be 1..15000, got $conns"
((duration >= 2 && duration <= 600)) || usage_error "--duration must be 2..600 seconds, got $duration"

require_bin echo-epoll loadgen
[[ $(id -u) -eq 0 ]] || cannot_run "needs root to create network namespaces (run it as root, e.g. sudo $0)"
require_cmd ip iproute2
py=/usr/bin/python3
[[ -x "$py" ]] || py=python3
if [[ -z "$out" ]]; then
  out=$(scratch_dir)
else
  mkdir -p "$out"
fi
logs=$(scratch_dir)

# ---- the network -------------------------------------------------------------

prefix="iolab-mh$$"
bridge_ns="$prefix-br"
server_ns="$prefix-srv"
namespaces=()
# Deleting a namespace deletes the veth ends in it, and with them their peers.
delete_namespaces() {
  local ns
  for ns in "${namespaces[@]}"; do
    ip netns del "$ns" 2>/dev/null || echo "$SCRIPT: could not delete namespace $ns" >&2
  done
}
at_exit delete_namespaces

new_ns() {
  ip netns add "$1" 2>"$logs/netns.err" ||
    cannot_run "cannot create network namespace $1: $(cat "$logs/netns.err")"
  namespaces+=("$1")
  ip -n "$1" link set lo up
}

# join NS ADDRESS PORTNAME: a veth pair, eth0 in NS with ADDRESS, the other
# end PORTNAME in the bridge namespace, enslaved to the bridge.
join() {
  ip -n "$1" link add eth0 type veth peer name "$3" netns "$bridge_ns"
  ip -n "$bridge_ns" link set "$3" master br0 up
  ip -n "$1" addr add "$2/15" dev eth0
  ip -n "$1" link set eth0 up
}

new_ns "$bridge_ns"
ip -n "$bridge_ns" link add br0 type bridge
ip -n "$bridge_ns" link set br0 up
new_ns "$server_ns"
join "$server_ns" 198.18.0.1 srv
host_ns=()
for ((h = 1; h <= hosts; h++)); do
  new_ns "$prefix-h$h"
  join "$prefix-h$h" "198.18.1.$h" "h$h"
  host_ns+=("$prefix-h$h")
done
echo "network: bridge in $bridge_ns; server $server_ns 198.18.0.1; hosts $prefix-h1..h$hosts 198.18.1.1-198.18.1.$hosts (/15)"

# ---- server ------------------------------------------------------------------

total=$((hosts * conns))
((total + 100 <= $(ulimit -Hn))) || cannot_run "$total connections do not fit one echo-epoll (RLIMIT_NOFILE $(ulimit -Hn)): fewer --hosts or --connections"
ulimit -n "$(ulimit -Hn)"
start_server "$(command -v ip)" netns exec "$server_ns" "$BUILD_DIR/bin/echo-epoll" \
  --host 198.18.0.1 --port 0 --max-clients $((total + 10))
server_pid=$SERVER_PID
server_out=$SERVER_OUT
target="198.18.0.1:$SERVER_PORT"
echo "server: echo-epoll in $server_ns, listening on $target"

# Each host reaches the server before the clock starts (ARP, the bridge learning).
for ns in "${host_ns[@]}"; do
  ip netns exec "$ns" "$BUILD_DIR/bin/loadgen" "$target" -c 1 -n 1 -q >/dev/null 2>&1 ||
    die "host $ns cannot reach $target"
done

# ---- 1. start at the same instant ----------------------------------------------

# Two seconds from now gives every loadgen time to start.
instant=$(date -d '+2 seconds' +%s.%N)
start_at=(--start-at "$instant")
echo "start: every loadgen --start-at $instant"
load=(--rate "$rate")
((rate > 0)) || load=()
pids=()
for ((h = 1; h <= hosts; h++)); do
  spawn --out "$logs/host-$h.out" --err "$logs/host-$h.err" \
    ip netns exec "${host_ns[h - 1]}" "$BUILD_DIR/bin/loadgen" "$target" -c "$conns" --threads 1 \
    -d "$duration" --warmup 1 "${load[@]}" --json "$out/host-$h.json" -q --allow-errors "${start_at[@]}"
  pids+=("$SPAWN_PID")
done

# ---- 2. collect ----------------------------------------------------------------

deadline=$((SECONDS + duration + 60))
failed=0
for ((h = 1; h <= hosts; h++)); do
  p=${pids[h - 1]}
  while lib_alive "$p" && ((SECONDS < deadline)); do
    progress "$h" "$hosts" "waiting for host $h's loadgen ($conns connections, ${duration} s)"
    sleep 0.2
  done
  lib_alive "$p" && kill -TERM "$p" 2>/dev/null
  rc=0
  wait "$p" || rc=$?
  unregister_pid "$p"
  progress_clear
  if [[ ! -s "$out/host-$h.json" ]]; then
    echo "$SCRIPT: host $h: loadgen exit $rc and no report:" >&2
    tail -n 5 "$logs/host-$h.err" >&2
    failed=1
  fi
done
((failed == 0)) || die "not every host reported"
rc=0
stop_server "$server_pid" || rc=$?
((rc == 0)) || echo "$SCRIPT: echo-epoll exited with $rc" >&2
summary=$(grep '^summary:' "$server_out" || true)

# ---- 3. merge ------------------------------------------------------------------

jsons=()
for ((h = 1; h <= hosts; h++)); do jsons+=("$out/host-$h.json"); done
"$BUILD_DIR/bin/loadgen" merge "${jsons[@]}" --json "$out/merged.json" --allow-errors >"$logs/merge.out"
"$py" - "$out/merged.json" "$conns" "$summary" "${jsons[@]}" <<'PY'
import json, sys
merged = json.load(open(sys.argv[1]))
conns, summary = int(sys.argv[2]), sys.argv[3]
parts = [json.load(open(p)) for p in sys.argv[4:]]

def row(name, j):
    lat = j["latency_us"]
    return (f"{name:<8} {j['connections']:>7} {j['max_open']:>7} {j['requests']:>10} {j['requests_per_s']:>11.0f} "
            f"{lat['p50']:>8.0f} {lat['p99']:>8.0f} {lat['max']:>8.0f} {j['errors_total']:>6}")

print(f"{'host':<8} {'conns':>7} {'open':>7} {'requests':>10} {'req/s':>11} {'p50 us':>8} {'p99 us':>8} {'max us':>8} {'errors':>6}")
for i, j in enumerate(parts, 1):
    print(row(f"h{i}", j))
print(row("merged", merged))
print(f"server   {summary}")

# The merge must be the sum: every counter, and every histogram bucket by bucket.
problems = []
for key in ("connections", "requests", "bytes_in", "bytes_out", "connects", "connect_failures",
            "reconnects", "errors_total", "max_open"):
    s = sum(p[key] for p in parts)
    if merged[key] != s:
        problems.append(f"{key}: merged {merged[key]} != sum {s}")
rate_sum = sum(p["requests_per_s"] for p in parts)
if abs(merged["requests_per_s"] - rate_sum) > 1e-6 * max(1.0, rate_sum):
    problems.append(f"requests_per_s: merged {merged['requests_per_s']} != sum {rate_sum}")
for name in ("latency", "latency_uncorrected", "connect"):
    want = {}
    for p in parts:
        for idx, low, count in p["histograms"][name]["buckets"]:
            want[idx] = want.get(idx, 0) + count
    got = {idx: count for idx, low, count in merged["histograms"][name]["buckets"]}
    if got != want:
        diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
        problems.append(f"histogram {name}: {len(diff)} bucket(s) differ, first {diff[:3]}")
    for key in ("count", "sum"):
        s = sum(p["histograms"][name][key] for p in parts)
        if merged["histograms"][name][key] != s:
            problems.append(f"histogram {name} {key}: merged {merged['histograms'][name][key]} != sum {s}")
    if merged["histograms"][name]["max"] != max(p["histograms"][name]["max"] for p in parts):
        problems.append(f"histogram {name} max is not the largest of the hosts'")
if problems:
    print("merge check: FAILED\n  " + "\n  ".join(problems))
    sys.exit(1)
buckets = sum(len(merged["histograms"][n]["buckets"]) for n in ("latency", "latency_uncorrected", "connect"))
print(f"merge check: the merge equals the sum of the {len(parts)} hosts exactly "
      f"(9 counters, requests/s, and {buckets} histogram buckets)")
errors = merged["errors_total"] + merged["connect_failures"]
if errors or any(p["max_open"] != conns for p in parts):
    print(f"run: {errors} error(s); hosts' connections open at most: {[p['max_open'] for p in parts]} of {conns} each")
    sys.exit(1)
PY
