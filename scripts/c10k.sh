#!/usr/bin/env bash
# c10k.sh — 10,000 and then 19,000 concurrent connections on one echo-epoll.
#
# For each count N: starts a fresh echo-epoll (labs/03-multiplexing) on
# loopback, opens N connections with loadgen, each sending one 64-byte
# message per second (open loop: --rate N, latency counted from the intended
# send time) for --duration seconds, the first --warmup seconds not counted.
# Reports the time until all N were up, connect-time percentiles, errors,
# latency percentiles and the peak RSS of the server (and of loadgen).
# Goals: all 10,000 up in under 1 s, zero errors, p99 under 5 ms.
#
# The per-process descriptor limit here is 20,000: at 19,000 both the server
# and loadgen run close to it (loadgen's preflight says so and stops if it
# would not fit).
#
# Usage: scripts/c10k.sh [--build-dir DIR] [--duration S] [--warmup S] [--threads T]
#                        [--counts "10000 19000"] [--server NAME] [--connect-rate R]
#
# Connections are opened at --connect-rate per second (20,000: 10,000 take
# 0.5 s; 0 opens them all at once). A burst beyond the server's accept queue
# (somaxconn, 4096 here) gets SYNs dropped whenever the server falls behind,
# and each drop costs a 1 s retransmission.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
duration=6
warmup=1
threads=2
counts="10000 19000"
server=echo-epoll
connect_rate=20000
while (($#)); do
    if lib_common_option "$@"; then shift "$LIB_SHIFT"; continue; fi
    case "$1" in
        --duration) need_value "$@"; duration=$2; shift 2 ;;
        --warmup) need_value "$@"; warmup=$2; shift 2 ;;
        --threads) need_value "$@"; check_uint "$1" "$2"; threads=$2; shift 2 ;;
        --counts) need_value "$@"; counts=$2; shift 2 ;;
        --server) need_value "$@"; server=$2; shift 2 ;;
        --connect-rate) need_value "$@"; check_uint "$1" "$2"; connect_rate=$2; shift 2 ;;
        *) usage_error "unknown option '$1'" ;;
    esac
done
for n in $counts; do check_uint "--counts" "$n"; done

require_bin loadgen "$server"
loadgen="$BUILD_DIR/bin/loadgen"
tmp=$(scratch_dir)

echo "c10k: $server vs loadgen, ${duration}s per run (first ${warmup}s not counted), $threads loadgen threads, connect rate ${connect_rate}/s, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "limits: nofile $(ulimit -n) (hard $(ulimit -Hn)), ports $(tr '\t' '-' < /proc/sys/net/ipv4/ip_local_port_range), somaxconn $(cat /proc/sys/net/core/somaxconn)"
status=0
step=0
steps=$(wc -w <<<"$counts")
for n in $counts; do
    step=$((step + 1))
    progress "$step" "$steps" "$n connections on $server (${duration}s of load)"
    start_server "$server" --port 0 --max-clients 20000
    server_pid=$SERVER_PID
    port=$SERVER_PORT
    rss_idle=$(rss_kb "$server_pid")
    # connect() picks from one parity half of the ephemeral range first and
    # crawls past it: keep each local address below 90 % of that half.
    read -r plo phi < /proc/sys/net/ipv4/ip_local_port_range
    half=$(( (phi - plo + 1) * 9 / 20 ))
    nsrc=$(( (n + half - 1) / half ))
    src=()
    (( nsrc > 1 )) && src=(--source-addrs "127.0.0.1-127.0.0.$nsrc")
    ramp=()
    if (( connect_rate > 0 )); then
        ramp=(--ramp "$(awk -v n="$n" -v r="$connect_rate" 'BEGIN {printf "%.3f", n / r}')")
    fi
    slab_before=$(awk '/^Slab:/ {print $2}' /proc/meminfo)

    spawn --out "$tmp/loadgen.out" --err "$tmp/loadgen.err" \
        "$loadgen" "127.0.0.1:$port" -c "$n" --rate "$n" --size 64 -d "$duration" --warmup "$warmup" \
        --threads "$threads" --json "$tmp/run.json" --allow-errors "${src[@]}" "${ramp[@]}"
    lg_pid=$SPAWN_PID
    peak=0
    lg_peak=0
    slab_peak=0
    while kill -0 "$lg_pid" 2>/dev/null; do
        r=$(rss_kb "$server_pid"); (( r > peak )) && peak=$r
        r=$(rss_kb "$lg_pid"); (( r > lg_peak )) && lg_peak=$r
        r=$(awk '/^Slab:/ {print $2}' /proc/meminfo); (( r > slab_peak )) && slab_peak=$r
        sleep 0.25
    done
    kernel_kb=$(( slab_peak - slab_before ))
    lg_rc=0
    wait "$lg_pid" || lg_rc=$?
    unregister_pid "$lg_pid"
    stop_server "$server_pid" || true
    progress_clear
    if [[ ! -s "$tmp/run.json" ]]; then
        echo "$SCRIPT: loadgen failed (exit $lg_rc):" >&2
        cat "$tmp/loadgen.err" "$tmp/loadgen.out" >&2
        status=1
        continue
    fi
    grep '^preflight' "$tmp/loadgen.err" | sed 's/^/  /' || true
    (( nsrc > 1 )) && echo "  (loadgen spread over $nsrc local addresses: ${src[*]})"
    python3 - "$tmp/run.json" "$n" "$peak" "$rss_idle" "$lg_peak" "$server" "$kernel_kb" <<'PY' || status=1
import json, sys
j = json.load(open(sys.argv[1]))
n, peak, idle, lg_peak, server, kernel = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], int(sys.argv[7])
lat, con = j["latency_us"], j["connect_us"]
up = j["all_up_s"]
print(f"{n} connections:")
print(f"  all up after      {up:.3f} s" if up is not None else "  all up after      never (not every connection came up)")
print(f"  connect time      p50 {con['p50']:.0f} us, p99 {con['p99']:.0f} us, max {con['max']:.0f} us")
print(f"  errors            {j['errors_total']}" + "".join(f"\n    {e['kind']} {e['code']}: {e['count']} ({e['text']})" for e in j["errors"]))
print(f"  requests          {j['requests']} in {j['duration_s']:.2f} s = {j['requests_per_s']:.0f}/s")
print(f"  latency           p50 {lat['p50']:.0f} us, p90 {lat['p90']:.0f} us, p99 {lat['p99']:.0f} us, p99.9 {lat['p99_9']:.0f} us, max {lat['max']:.0f} us (from the intended send)")
u = j["latency_uncorrected_us"]
print(f"  uncorrected       p50 {u['p50']:.0f} us, p99 {u['p99']:.0f} us")
print(f"  {server} RSS  {idle} KiB idle, {peak} KiB peak ({(peak - idle) * 1024 / n:.0f} B per connection); loadgen RSS {lg_peak} KiB")
print(f"  kernel slab       +{kernel} KiB at the peak, {kernel * 1024 / n:.0f} B per connection (sockets, files, epoll items of both ends; /proc/meminfo, other processes included)")
ok = True
if n == 10000:
    for name, good in (("all up < 1 s", up is not None and up < 1.0),
                       ("zero errors", j["errors_total"] == 0 and j["connect_failures"] == 0),
                       ("p99 < 5 ms", lat["p99"] < 5000)):
        print(f"  goal {name:<14} {'met' if good else 'MISSED'}")
        ok = ok and good
sys.exit(0 if ok else 1)
PY
done
exit $status
