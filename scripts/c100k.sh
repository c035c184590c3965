#!/usr/bin/env bash
# c100k.sh — 100,000 concurrent echo connections on this machine, across
# processes: the descriptor cap (20,000 per process here) is per process, not
# per machine.
#
# Usage: scripts/c100k.sh [--build-dir DIR] [--connections N] [--rate R]
#                         [--measure S] [--ramp S] [--servers W] [--clients P]
#                         [--pin] [--nice N] [--no-tune] [--out DIR] [--preflight-only]
#
#   --connections N   connections held open (default 100000)
#   --rate R          requests/s over all of them, open loop (default 10000):
#                     each connection sends 64 B every N/R seconds
#   --ramp S          seconds over which each client opens its share (default 5)
#   --measure S       seconds counted after the warm-up (default 22); the
#                     warm-up is the ramp + 3 s, so at least 20 s are counted
#                     after all are up when they are up in under ramp + 3 s
#   --servers W       echo-epoll processes (default: enough for the cap, 6 here)
#   --clients P       loadgen processes (default: enough for the cap, 6 here)
#   --pin             pin the servers to CPU 0 and the clients to CPU 1 (by
#                     default the scheduler spreads them: a dozen processes on
#                     two CPUs shared with other work wait less that way; the
#                     CPU split is measured per process either way)
#   --nice N          run this script and all it starts at this niceness (root
#                     may give -20..-1: ahead of other work on a shared
#                     machine; default 0). With autogroup scheduling a nice
#                     value only orders the processes of one session, so the
#                     session's autogroup gets it too, for the run only

#   --no-tune         do not raise any sysctl (see below)
#   --out DIR         keep the loadgen reports (client-N.json, merged.json)
#                     and the samples there (default: removed at exit)
#
# Server: echo-epoll --workers W (W processes on one port, each with its own
# SO_REUSEPORT socket: the kernel deals the connections out). Clients: P loadgen
# processes, each with its own source addresses from 127.0.0.2 on (so that
# every (source, destination) pair stays well inside the ephemeral range),
# each writing --json; `loadgen merge` adds them bucket by bucket. They start
# at one wall-clock instant (--start-at).
#
# Preflight: descriptors per process and in the system, ports per source
# address, memory, somaxconn and the SYN backlog; the run is refused (exit 4)
# when the machine cannot hold it. As root, sysctls below what the run needs
# (net.ipv4.tcp_max_syn_backlog, net.core.somaxconn, nf_conntrack_max) are
# raised for the run and restored at exit.
#
# Report: time until all were up, errors, requests/s, latency percentiles
# from the intended send (coordinated omission corrected), kernel memory per
# connection (Slab growth / connections: both ends' sockets, files and epoll
# items), server and client RSS per connection, and the CPU split over the
# counted window (server and client user/system time, per-CPU softirq/idle).
# Goals: all up < 10 s, 0 errors, p99 < 10 ms.
#
# Bounded: everything stops by itself after ramp + 3 + measure + 60 s at the
# latest; every process it started is stopped by pid at exit.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/scale.sh"

conns=100000
rate=10000
ramp=5
measure=22
servers=""
clients=""
pin_cpus=0
tune=1
preflight_only=0
out=""
niceness=0
while (($#)); do
  if lib_common_option "$@"; then shift "$LIB_SHIFT"; continue; fi
  case "$1" in
    --connections) need_value "$@"; check_uint "$1" "$2"; conns=$2; shift 2 ;;
    --rate) need_value "$@"; check_uint "$1" "$2"; rate=$2; shift 2 ;;
    --ramp) need_value "$@"; check_uint "$1" "$2"; ramp=$2; shift 2 ;;
    --measure) need_value "$@"; check_uint "$1" "$2"; measure=$2; shift 2 ;;
    --servers) need_value "$@"; check_uint "$1" "$2"; servers=$2; shift 2 ;;
    --clients) need_value "$@"; check_uint "$1" "$2"; clients=$2; shift 2 ;;
    --pin) pin_cpus=1; shift ;;
    --nice) need_value "$@"; [[ "$2" =~ ^-?[0-9]+$ ]] || usage_error "--nice takes -20..19, got '$2'"; niceness=$2; shift 2 ;;
    --no-tune) tune=0; shift ;;
    --preflight-only) preflight_only=1; shift ;;
    --out) need_value "$@"; out=$2; shift 2 ;;
    *) usage_error "unknown option '$1'" ;;
  esac
done
((conns >= 1 && rate >= 1 && measure >= 1)) || usage_error "--connections, --rate and --measure must be at least 1"

require_bin echo-epoll loadgen
require_cmd python3 python3
py=$SCALE_PY
loadgen="$BUILD_DIR/bin/loadgen"
# The script itself too: on a loaded machine its own forks (spawning the
# clients one by one) would otherwise stagger their start by seconds.
if ((niceness != 0)); then
  renice -n "$niceness" -p $$ >/dev/null || die "renice $niceness failed (negative values need root)"
fi
if [[ -n "$out" ]]; then
  mkdir -p "$out"
  tmp=$(cd "$out" && pwd)
else
  tmp=$(scratch_dir)
fi
warmup=$((ramp + 3))
total=$((warmup + measure))

# ---- preflight: what this machine allows ------------------------------------

nofile_soft=$(ulimit -Sn)
nofile_hard=$(ulimit -Hn)
[[ "$nofile_hard" == unlimited ]] && nofile_hard=1048576
ulimit -n "$nofile_hard"
read -r port_lo port_hi <<<"$(sysctl_get net.ipv4.ip_local_port_range)"
file_max=$(sysctl_get fs.file-max)
files_open=$(cut -f1 /proc/sys/fs/file-nr)
mem_avail_kb=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
ncpu=$(nproc)

# Per process: the connections plus ~100 descriptors of its own. A server gets
# 15 % headroom because SO_REUSEPORT spreads connections by hash, not evenly.
per_proc=$((nofile_hard - 100))
((per_proc >= 100)) || cannot_run "RLIMIT_NOFILE hard limit $nofile_hard is too small"
[[ -n "$servers" ]] || servers=$(((conns * 115 / 100 + per_proc - 1) / per_proc))
[[ -n "$clients" ]] || clients=$(((conns + per_proc - 1) / per_proc))
((servers >= 1 && clients >= 1)) || usage_error "--servers and --clients must be at least 1"
per_client=$(((conns + clients - 1) / clients))
# connect() tries one parity half of the ephemeral range first and crawls once
# it is used up: plan 45 % of the range per (source, destination) pair.
per_source=$(((port_hi - port_lo + 1) * 45 / 100))
src_per_client=$(((per_client + per_source - 1) / per_source))
nsrc=$((clients * src_per_client))
# Kernel memory: measured about 4-5 KiB per connection end (socket, file,
# dentry, epoll item); plan 12 KiB per connection for both ends, and the
# processes' own memory (loadgen and server tables) on top.
mem_need_kb=$((conns * 16))

echo "c100k: $conns connections, $rate requests/s of 64 B in total (each connection every $(awk -v c="$conns" -v r="$rate" 'BEGIN { printf "%.1f", c / r }') s), $ncpu CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "preflight:"
printf '  descriptors   per process %s soft / %s hard (raised to the hard limit); system %s open of fs.file-max %s\n' \
  "$nofile_soft" "$nofile_hard" "$files_open" "$file_max"
printf '  plan          %d echo-epoll process(es) (up to %d connections each), %d loadgen process(es) x %d connections\n' \
  "$servers" "$per_proc" "$clients" "$per_client"
printf '  ports         ip_local_port_range %d-%d: %d per (source, destination) pair, planning %d;\n' \
  "$port_lo" "$port_hi" "$((port_hi - port_lo + 1))" "$per_source"
printf '                %d source address(es) 127.0.0.2-127.0.0.%d, %d per client\n' "$nsrc" "$((nsrc + 1))" "$src_per_client"
printf '  memory        %d MiB available, the run needs about %d MiB\n' "$((mem_avail_kb / 1024))" "$((mem_need_kb / 1024))"
printf '  sockets       %s TCP in use, %s in TIME_WAIT (tcp_max_tw_buckets %s; on loopback tcp_tw_reuse=2 lets new connects reuse their ports)\n' \
  "$(awk '/^TCP:/ { print $3 }' /proc/net/sockstat)" "$(awk '/^TCP:/ { print $7 }' /proc/net/sockstat)" \
  "$(sysctl_get net.ipv4.tcp_max_tw_buckets)"
printf '  queues        somaxconn %s, tcp_max_syn_backlog %s, syncookies %s, tcp_tw_reuse %s\n' \
  "$(sysctl_get net.core.somaxconn)" "$(sysctl_get net.ipv4.tcp_max_syn_backlog)" \
  "$(sysctl_get net.ipv4.tcp_syncookies)" "$(sysctl_get net.ipv4.tcp_tw_reuse)"
if [[ -r /proc/sys/net/netfilter/nf_conntrack_max ]]; then
  printf '  conntrack     %s tracked of nf_conntrack_max %s\n' \
    "$(sysctl_get net.netfilter.nf_conntrack_count)" "$(sysctl_get net.netfilter.nf_conntrack_max)"
fi
printf '  time          ramp %d s, warm-up %d s, counted %d s, at most %d s in all\n' "$ramp" "$warmup" "$measure" "$((total + 60))"

((per_client + 100 <= nofile_hard)) || cannot_run "a loadgen would need $((per_client + 100)) descriptors, the hard limit is $nofile_hard: raise --clients"
(((conns + servers - 1) / servers + 100 <= nofile_hard)) || cannot_run "an echo-epoll would need more than $nofile_hard descriptors: raise --servers"
((files_open + 2 * conns + 1000 <= file_max)) || cannot_run "fs.file-max $file_max cannot hold $((2 * conns)) more open files"
((nsrc <= 250)) || cannot_run "$nsrc source addresses needed; 127.0.0.2-127.0.0.251 is the most this script uses"
((mem_need_kb * 2 <= mem_avail_kb)) || cannot_run "$((mem_avail_kb / 1024)) MiB available, want twice the $((mem_need_kb / 1024)) MiB the run needs"
((preflight_only)) && exit 0

# ---- temporary sysctls (restored at exit) ------------------------------------

# raise_sysctl (scale.sh): only as root, only upwards, only what the run
# needs, the old value put back at exit.
if ((tune)) && [[ $(id -u) -eq 0 ]]; then
  raise_sysctl net.ipv4.tcp_max_syn_backlog 8192
  raise_sysctl net.core.somaxconn 8192
  if [[ -r /proc/sys/net/netfilter/nf_conntrack_max ]]; then
    raise_sysctl net.netfilter.nf_conntrack_max $((conns * 3))
  fi
fi

# kernel.sched_autogroup_enabled=1: the CPU is shared between sessions
# first, and a process's nice value counts only inside its own session. The
# session's autogroup nice is what weighs against other sessions' work.
autogroup=/proc/$$/autogroup
if ((niceness < 0)) && [[ -w "$autogroup" && "$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null)" == 1 ]]; then
  old_group_nice=$(awk '{ print $NF }' "$autogroup")
  if echo "$niceness" >"$autogroup" 2>/dev/null; then
    at_exit "echo $old_group_nice > $autogroup"
    echo "  priority      this session's autogroup nice $old_group_nice -> $niceness for the run (restored at exit)"
  fi
fi

# ---- servers -----------------------------------------------------------------

server_cpu=()
client_cpu=()
if ((pin_cpus && ncpu >= 2)); then
  server_cpu=(--cpu 0)
  client_cpu=(--cpu 1)
fi
server_pids=()
server_ports=()
server_outs=()
# --max-clients counts the connections of all the workers together. Each
# worker listens with a socket of its own (SO_REUSEPORT) and the kernel
# hashes every connection to one of them: shares differ by a few hundred at
# most, well inside the headroom between per_proc and a worker's descriptors.
max_clients=$((servers * per_proc))
server_mode="echo-epoll --workers $servers (one port, a SO_REUSEPORT listening socket per worker)"
start_server "${server_cpu[@]}" echo-epoll --port 0 --workers "$servers" --max-clients "$max_clients"
server_pids+=("$SERVER_PID")
server_ports+=("$SERVER_PORT")
server_outs+=("$SERVER_OUT")
echo "server: $server_mode, --max-clients $max_clients in all, ports ${server_ports[*]}"

# ---- watch: memory, CPU, sockets, every half second ---------------------------

samples="$tmp/samples.jsonl"
start_sampler "$samples" $((total + 70)) "$(IFS=,; echo "${server_pids[*]}")" "$tmp/client.pids"
sampler=$SAMPLER_PID

# ---- clients -----------------------------------------------------------------

# Two seconds from now gives every process time to start and preflight.
instant=$(date -d '+2 seconds' +%s.%N)
start_at=(--start-at "$instant")
echo "clients: $clients loadgen processes, --start-at $instant (one wall-clock instant)"

read -r overflows_before timeouts_before <<<"$(tcpext)"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
slab_before=$(awk '/^Slab:/ { print $2 }' /proc/meminfo)
t_start=${instant:-$(date +%s.%N)}
client_pids=()
jsons=()
for ((i = 0; i < clients; i++)); do
  n=$((conns - i * per_client))
  ((n > per_client)) && n=$per_client
  ((n > 0)) || break
  first=$((2 + i * src_per_client))
  last=$((first + src_per_client - 1))
  port=${server_ports[i % ${#server_ports[@]}]}
  # This client's share of the rate, to 1/1000 (no fork per client).
  milli=$((rate * n * 1000 / conns))
  printf -v r '%d.%03d' $((milli / 1000)) $((milli % 1000))
  jsons+=("$tmp/client-$i.json")
  spawn "${client_cpu[@]}" --out "$tmp/client-$i.out" --err "$tmp/client-$i.err" \
    "$loadgen" "127.0.0.1:$port" -c "$n" --rate "$r" --size 64 --threads 1 \
    -d "$total" --warmup "$warmup" --ramp "$ramp" --timeout 10 \
    --source-addrs "127.0.0.$first-127.0.0.$last" --json "$tmp/client-$i.json" \
    --allow-errors "${start_at[@]}"
  client_pids+=("$SPAWN_PID")
done

echo "${client_pids[*]}" >"$tmp/client.pids.new"
mv "$tmp/client.pids.new" "$tmp/client.pids"

# Every client ends by itself after its duration; the deadline is the bound.
progress 1 2 "$conns connections from ${#client_pids[@]} loadgen processes, ${total} s"
deadline=$((SECONDS + total + 60))
client_rc=()
for p in "${client_pids[@]}"; do
  rc=0
  finish_by "$p" "$deadline" loadgen || rc=$?
  client_rc+=("$rc")
done
wait "$sampler" || true
unregister_pid "$sampler"

progress 2 2 "stopping the servers"
summaries="$tmp/server-summaries.txt"
: >"$summaries"
for ((i = 0; i < ${#server_pids[@]}; i++)); do
  rc=0
  stop_server "${server_pids[i]}" || rc=$?
  ((rc == 0)) || echo "$SCRIPT: echo-epoll pid ${server_pids[i]} exited with $rc" >&2
  grep '^summary:' "${server_outs[i]}" >>"$summaries" || echo "$SCRIPT: echo-epoll pid ${server_pids[i]} printed no summary" >&2
done

# ---- merge and report --------------------------------------------------------

read -r overflows_after timeouts_after <<<"$(tcpext)"
progress_clear

for ((i = 0; i < ${#client_pids[@]}; i++)); do
  if [[ ! -s "${jsons[i]}" ]]; then
    echo "$SCRIPT: loadgen $i (exit ${client_rc[i]}) wrote no report:" >&2
    tail -n 5 "$tmp/client-$i.err" "$tmp/client-$i.out" >&2
    exit 1
  fi
done
grep -h '^preflight' "$tmp"/client-*.err | sed 's/^/  loadgen /' | head -n 2 || true
echo
echo "== loadgen merge of ${#jsons[@]} reports"
"$loadgen" merge "${jsons[@]}" --json "$tmp/merged.json" --allow-errors
[[ -z "$out" ]] || echo "(reports kept in $tmp)"
echo
"$py" - "$tmp/merged.json" "$samples" "$summaries" "$conns" "$rate" "$warmup" "$slab_before" "$t_start" \
  "$((overflows_after - overflows_before)) $((timeouts_after - timeouts_before)) $load_before $(cut -d' ' -f1-3 /proc/loadavg)" \
  "${jsons[@]}" <<'PY'
import json, os, sys
merged = json.load(open(sys.argv[1]))
samples = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
summaries = [l.split() for l in open(sys.argv[3])]
conns, rate, warmup, slab_before = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
t_start = float(sys.argv[8])
overflows, timeouts, *loads = sys.argv[9].split()
parts = [json.load(open(p)) for p in sys.argv[10:]]
hz = os.sysconf("SC_CLK_TCK")

ups = [p["all_up_s"] for p in parts]
all_up = None if any(u is None for u in ups) else max(ups)
errors = merged["errors_total"] + merged["connect_failures"]
lat, unc = merged["latency_us"], merged["latency_uncorrected_us"]
print(f"{conns} connections in {len(parts)} loadgen processes:")
print(f"  all up after      " + (f"{all_up:.2f} s (slowest process; per process " +
      ", ".join(f"{u:.2f}" for u in ups) + ")" if all_up is not None else "never: not every connection came up"))
print(f"  most open at once {sum(p['max_open'] for p in parts)} (summed over the processes; per process "
      + ", ".join(str(p["max_open"]) for p in parts) + ")")
print(f"  kernel drops      {overflows} SYNs dropped at a full accept queue (ListenOverflows), "
      f"{timeouts} retransmission timeouts (TCPTimeouts), whole machine")
print(f"  machine load      {' '.join(loads[:3])} before, {' '.join(loads[3:])} after (1/5/15-minute load average; 2 CPUs)")
print(f"  errors            {merged['errors_total']} (connect failures {merged['connect_failures']}, reconnects {merged['reconnects']})"
      + "".join(f"\n    {e['kind']} {e['code']}: {e['count']} ({e['text']})" for e in merged["errors"]))
print(f"  requests          {merged['requests']} counted over {merged['duration_s']:.1f} s = {merged['requests_per_s']:.0f}/s (asked {rate}/s)")
print(f"  latency           p50 {lat['p50']:.0f} us, p90 {lat['p90']:.0f}, p99 {lat['p99']:.0f}, p99.9 {lat['p99_9']:.0f}, max {lat['max']:.0f} (from the intended send)")
print(f"  uncorrected       p50 {unc['p50']:.0f} us, p99 {unc['p99']:.0f}, max {unc['max']:.0f}")

# Memory at the peak of the slab, RSS at their peaks; both against the start.
def rss(s, side):
    return sum(v[2] for v in s[side].values())
peak_slab = max(s["slab"] for s in samples)
srv_rss0 = rss(samples[0], "server")
srv_peak = max(rss(s, "server") for s in samples)
cli_peak = max(rss(s, "client") for s in samples)
tcp_peak = max((s["tcp"].get("inuse", 0) for s in samples), default=0)
kernel = (peak_slab - slab_before) * 1024
print(f"  kernel memory     Slab +{(peak_slab - slab_before) / 1024:.0f} MiB = {kernel / conns:.0f} B per connection "
      f"(both ends: 2 sockets, 2 files, 2 epoll items; whole machine, /proc/meminfo)")
# The caches one connection uses, counted in objects (so that other caches
# shrinking or growing meanwhile, TIME_WAIT buckets included, do not count).
c0 = samples[0]["caches"]
cpeak = max(samples, key=lambda s: s["caches"].get("TCP", [0, 0])[0])["caches"]
per = {k: (cpeak[k][0] - c0.get(k, [0, 0])[0]) * cpeak[k][1] / conns for k in cpeak}
if per:
    print(f"  socket caches     {sum(per.values()):.0f} B per connection at the peak of TCP objects: " +
          ", ".join(f"{k} {v:.0f}" for k, v in per.items() if abs(v) >= 1) + " (/proc/slabinfo, active objects)")
print(f"  TCP sockets       {tcp_peak} in use at the peak (/proc/net/sockstat: both ends)")
print(f"  server RSS        {srv_rss0 / 1024:.1f} MiB at the start, {srv_peak / 1024:.1f} MiB at the peak: "
      f"{(srv_peak - srv_rss0) * 1024 / conns:.0f} B per connection")
print(f"  client RSS        {cli_peak / 1024:.1f} MiB at the peak in all loadgens: {cli_peak * 1024 / conns:.0f} B per connection")

# CPU over the counted window: the samples after the warm-up while every
# client still ran.
win = [s for s in samples if s["t"] - t_start >= warmup and len(s["client"]) >= len(parts)]
if len(win) >= 2:
    a, b = win[0], win[-1]
    secs = b["t"] - a["t"]
    def ticks(side):
        return sum(v[0] + v[1] - a[side].get(p, [0, 0])[0] - a[side].get(p, [0, 0])[1] for p, v in b[side].items())
    def pct(side, i):
        return 100.0 * sum(v[i] - a[side].get(p, [0, 0])[i] for p, v in b[side].items()) / hz / secs
    print(f"  CPU ({secs:.1f} s counted, % of one CPU)")
    print(f"    servers         user {pct('server', 0):.1f}%  system {pct('server', 1):.1f}%")
    print(f"    loadgens        user {pct('client', 0):.1f}%  system {pct('client', 1):.1f}%")
    names = ["user", "nice", "system", "idle", "iowait", "irq", "softirq"]
    for cpu in sorted(k for k in b["cpu"] if k != "cpu"):
        d = [y - x for x, y in zip(a["cpu"][cpu], b["cpu"][cpu])]
        tot = sum(d[:8]) or 1
        print(f"    {cpu:<15} " + "  ".join(f"{n} {100 * v / tot:.0f}%" for n, v in zip(names, d) if n in ("user", "system", "softirq", "idle"))
              + "  (the whole machine: other work included)")
    if merged["requests_per_s"] > 0:
        print(f"    server CPU per request: {ticks('server') / hz / secs / merged['requests_per_s'] * 1e6:.1f} us")
else:
    print("  CPU               not enough samples in the counted window")

tot = {}
for words in summaries:
    for w in words[1:]:
        k, _, v = w.partition("=")
        tot[k] = tot.get(k, 0) + int(v)
print(f"  server summary    " + " ".join(f"{k}={v}" for k, v in tot.items()) + f" ({len(summaries)} summary line(s))")

goals = [("all up < 10 s", all_up is not None and all_up < 10),
         ("0 errors", errors == 0),
         ("p99 < 10 ms", lat["p99"] < 10000),
         (">= 20 s counted after all up", all_up is not None and all_up <= warmup and merged["duration_s"] >= 20)]
for name, ok in goals:
    print(f"  goal {name:<28} {'met' if ok else 'MISSED'}")
sys.exit(0 if all(ok for _, ok in goals) else 1)
PY
