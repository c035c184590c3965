#!/usr/bin/env bash
# c1m.sh — a million echo connections held open on one machine, both ends on
# loopback: what it takes (every kernel limit on the way, raised for the run
# and put back) and what it costs (kernel and user memory per connection).
#
# Usage: scripts/c1m.sh [--build-dir DIR] [--connections N] [--active A]
#                       [--rate R] [--ramp S] [--measure S] [--dry-run]
#
#   --connections N   connections held open (default 1000000)
#   --active A        of those, how many run the echo workload (default N/100,
#                     at least 1); the others are held idle
#   --rate R          requests/s of 64 B over the active ones, open loop,
#                     latency from the intended send (default 2000)
#   --ramp S          seconds over which the connections are opened (default
#                     N/20000, at least 5)
#   --measure S       seconds counted once all are up (default 20); the first
#                     1.5 x ramp + 5 s are not counted (connecting takes longer
#                     than asked when the CPUs cannot keep up; the report says
#                     when the counted window overlapped it)
#   --dry-run         print the plan (processes, source addresses, every limit:
#                     now, for the run, why) and the checks, change nothing
#
# The plan: echo-epoll --workers W (SO_REUSEPORT, one listening socket each)
# and one loadgen --mode idle --processes P, each process under the hard
# RLIMIT_NOFILE (one descriptor per connection; root may raise the hard limit
# only with CAP_SYS_RESOURCE, so without it the script counts processes), each
# loadgen process on source addresses of its own from 127.0.0.2 on so that no
# (source, destination) pair needs more ports than connect() finds quickly.
#
# Refuses (exit 4) before starting anything when MemAvailable is below what the
# run needs (computed from the measured memory per connection, below), when a
# limit must be raised and this is not root or the sysctl is not writable, or
# when the plan needs more processes or addresses than it may use.
#
# Report: time until all were up, errors, kernel memory per connection (Slab,
# SUnreclaim and sockstat's TCP pages at the peak against the start), user
# memory per connection (RSS of the servers and of the loadgens), p99 at the
# fixed rate over the active connections, and how far it got.
#
# Bounded: each phase has a deadline (server start 30 s, the run 1.5 x ramp + 5 +
# measure + 120 s, the stop 60 s); every process it started is stopped by pid
# and every sysctl it changed is put back at exit (normal end, error, Ctrl-C,
# SIGTERM). Exit 0 when all N were up with 0 errors, 1 otherwise.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/scale.sh"

conns=1000000
active=""
rate=2000
ramp=""
measure=20
dry_run=0
while (($#)); do
  if lib_common_option "$@"; then shift "$LIB_SHIFT"; continue; fi
  case "$1" in
    --connections)
      need_value "$@"; check_uint "$1" "$2"
      ((${#2} <= 12)) || usage_error "--connections $2 is beyond any machine"
      conns=$((10#$2)); shift 2 ;;
    --active) need_value "$@"; check_uint "$1" "$2"; active=$((10#$2)); shift 2 ;;
    --rate) need_value "$@"; check_uint "$1" "$2"; rate=$((10#$2)); shift 2 ;;
    --ramp) need_value "$@"; check_uint "$1" "$2"; ramp=$((10#$2)); shift 2 ;;
    --measure) need_value "$@"; check_uint "$1" "$2"; measure=$((10#$2)); shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    *) usage_error "unknown option '$1'" ;;
  esac
done
((conns >= 1 && rate >= 1 && measure >= 1)) || usage_error "--connections, --rate and --measure must be at least 1"
[[ -n "$active" ]] || active=$((conns / 100 > 0 ? conns / 100 : 1))
((active >= 1 && active <= conns)) || usage_error "--active must be 1..--connections"
[[ -n "$ramp" ]] || ramp=$((conns / 20000 > 5 ? conns / 20000 : 5))
warmup=$((ramp * 3 / 2 + 5))
total=$((warmup + measure))

progress_step() {
  if declare -F progress >/dev/null; then progress "$1" 7 "$2"; fi
}
progress_step 1 "preflight"

# ---- what one connection costs (measured here, see docs/SCALING.md) ---------
#
# Kernel: both ends of a loopback connection (2 TCP sockets, 2 socket inodes,
# 2 files and dentries, 2 epoll items): Slab grew 9,869-10,231 B per
# connection in the runs of this script from 100,000 to 1,000,000 connections
# (10,134-10,285 B in c100k.sh's); planned 11 KiB. User: echo-epoll 216-222 B,
# loadgen 396-477 B per connection; planned 1 KiB. On top of the need: a quarter for what the estimate misses, and 1 GiB
# left to everything else on the machine.
kernel_plan_b=11264
user_plan_b=1024
reserve_kb=1048576

mem_avail_kb=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
need_kb=$((conns * (kernel_plan_b + user_plan_b) / 1024))
want_kb=$((need_kb * 5 / 4 + reserve_kb))

# ---- the plan: processes and addresses ---------------------------------------

nofile_hard=$(ulimit -Hn)
[[ "$nofile_hard" == unlimited ]] && nofile_hard=1048576
nr_open=$(sysctl_get fs.nr_open)
# A process may raise its own hard limit only with CAP_SYS_RESOURCE (up to
# fs.nr_open). Probe in a subshell: it changes nothing here.
nofile_goal=65536
((nofile_goal <= nr_open)) || nofile_goal=$nr_open
nofile_raise=0
if ((nofile_hard < nofile_goal)) && (ulimit -Hn "$nofile_goal") 2>/dev/null; then
  nofile_raise=1
  nofile_run=$nofile_goal
else
  nofile_run=$nofile_hard
fi
# Each process keeps ~200 descriptors for itself (listening sockets, epoll,
# pipes, log files); the rest is for connections.
per_proc=$((nofile_run - 200))
((per_proc >= 100)) || cannot_run "RLIMIT_NOFILE hard limit $nofile_run leaves no room for connections"
# Servers: SO_REUSEPORT deals connections by a hash, not evenly; 10 % headroom
# is many standard deviations at these counts.
servers=$(((conns * 110 / 100 + per_proc - 1) / per_proc))
clients=$(((conns + per_proc - 1) / per_proc))
per_client=$(((conns + clients - 1) / clients))

# Ports: connect() looks for a free port per (source, destination) pair in one
# parity half of ip_local_port_range first, and crawls once that is full: plan
# 45 % of the range per pair. Widen the range only when one address per
# loadgen process would not do.
read -r port_lo port_hi <<<"$(sysctl_get net.ipv4.ip_local_port_range)"
run_lo=$port_lo
run_hi=$port_hi
if ((per_client > (port_hi - port_lo + 1) * 45 / 100)); then
  run_lo=10240
  run_hi=65535
fi
per_source=$(((run_hi - run_lo + 1) * 45 / 100))
src_per_client=$(((per_client + per_source - 1) / per_source))
nsrc=$((clients * src_per_client))

# ---- the limits: now, for the run, why ------------------------------------------

files_open=$(cut -f1 /proc/sys/fs/file-nr)
limits=()     # "KEY|VALUE FOR THE RUN|WHY" for every limit that must change
limit_lines=()
plan_limit() {
  local key=$1 now=$2 run=$3 why=$4 mark="enough"
  if [[ "$now" != "$run" ]]; then
    mark="RAISE"
    limits+=("$key|$run|$why")
  fi
  limit_lines+=("$(printf '  %-32s %-22s %-22s %s' "$key" "$now" "$mark${run:+ -> $run}" "$why")")
}
at_least() { # KEY MIN WHY: the run value is MIN when the key is below it
  local now
  now=$(sysctl_get "$1")
  if ((now >= $2)); then plan_limit "$1" "$now" "$now" "$3"; else plan_limit "$1" "$now" "$2" "$3"; fi
}
at_least fs.file-max $((files_open + 2 * conns + 65536)) \
  "open files on the whole machine: a socket is a file, 2 per loopback connection"
if ((nofile_raise)); then
  at_least fs.nr_open "$nofile_run" "the ceiling of RLIMIT_NOFILE a process may be given"
else
  plan_limit fs.nr_open "$nr_open" "$nr_open" \
    "the ceiling of RLIMIT_NOFILE; unused: the hard limit stays, connections are spread over processes"
fi
plan_limit net.ipv4.ip_local_port_range "$port_lo $port_hi" "$run_lo $run_hi" \
  "ephemeral ports per (source, destination) pair: $per_client connections per loadgen process"
at_least net.core.somaxconn 8192 "accept queue per listening socket (listen backlog is capped by it)"
at_least net.ipv4.tcp_max_syn_backlog 8192 "half-open connections per listener while the server catches up"
at_least fs.epoll.max_user_watches $((2 * conns + 65536)) \
  "epoll registrations per user: the server and loadgen each watch every connection"
# tcp_mem (pages, whole machine): above its second value the kernel trims
# socket buffers, above its third it refuses them ("TCP: out of memory").
# Only queued data counts: an idle socket holds none (sockstat's TCP mem stayed
# 0 with 200,000 idle sockets here), an echoing one a few pages for a moment.
# Keep the pressure threshold above 8 pages per active connection.
read -r tm_lo tm_pr tm_hi <<<"$(sysctl_get net.ipv4.tcp_mem)"
tm_want=$((active * 8 + 65536))
tm_why="socket buffer pages, whole machine: only queued data counts (idle sockets hold none)"
if ((tm_pr < tm_want)); then
  plan_limit net.ipv4.tcp_mem "$tm_lo $tm_pr $tm_hi" "$tm_lo $tm_want $((tm_hi > tm_want * 3 / 2 ? tm_hi : tm_want * 3 / 2))" "$tm_why"
else
  plan_limit net.ipv4.tcp_mem "$tm_lo $tm_pr $tm_hi" "$tm_lo $tm_pr $tm_hi" "$tm_why"
fi
if [[ -r /proc/sys/net/netfilter/nf_conntrack_max ]]; then
  at_least net.netfilter.nf_conntrack_max $((conns * 2 + 65536)) \
    "tracked connections, when a firewall rule hooks conntrack (a full table drops SYNs)"
fi

load_now=$(cut -d' ' -f1-3 /proc/loadavg)
echo "c1m: $conns connections ($active of them echo $rate requests/s of 64 B in all), $(nproc) CPUs, load average $load_now"
echo "plan:"
printf '  descriptors   RLIMIT_NOFILE hard %s (fs.nr_open %s)%s: up to %d connections per process\n' "$nofile_hard" "$nr_open" \
  "$( ((nofile_raise)) && echo ", raised to $nofile_run for this script and what it starts" || echo ", not raisable here (needs CAP_SYS_RESOURCE): more processes instead")" "$per_proc"
printf '  server        echo-epoll --workers %d --max-clients %d (one port, a SO_REUSEPORT socket per worker, room for %d each)\n' "$servers" "$((servers * per_proc))" "$per_proc"
printf '  clients       loadgen --mode idle --processes %d: %d connections each, %d active, %s requests/s in all\n' \
  "$clients" "$per_client" "$active" "$rate"
printf '  addresses     %d source address(es) 127.0.0.2-127.0.0.%d, %d per process; ports %d-%d, planning %d per (source, destination)\n' \
  "$nsrc" "$((nsrc + 1))" "$src_per_client" "$run_lo" "$run_hi" "$per_source"
printf '  memory        MemAvailable %d MiB; the run needs about %d MiB (%d B kernel + %d B user per connection), wants %d MiB with margin and reserve\n' \
  "$((mem_avail_kb / 1024))" "$((need_kb / 1024))" "$kernel_plan_b" "$user_plan_b" "$((want_kb / 1024))"
printf '  time          ramp %d s, not counted %d s, counted %d s; at most %d s in all\n' "$ramp" "$warmup" "$measure" "$((30 + total + 120 + 60))"
echo "limits (now, for the run, why):"
printf '%s\n' "${limit_lines[@]}"

# ---- refusals, before anything starts -----------------------------------------

((want_kb <= mem_avail_kb)) ||
  cannot_run "not enough memory: $conns connections need about $((need_kb / 1024)) MiB ($((kernel_plan_b + user_plan_b)) B each: the measured cost, about 10.8 KB, rounded up) plus margin and reserve, $((want_kb / 1024)) MiB; MemAvailable is $((mem_avail_kb / 1024)) MiB"
((clients <= 64)) ||
  cannot_run "$clients loadgen processes needed (loadgen --processes takes at most 64) at $per_proc connections each"
((servers <= 256)) || cannot_run "$servers echo-epoll workers needed (--workers takes at most 256)"
((nsrc <= 250)) || cannot_run "$nsrc source addresses needed; 127.0.0.2-127.0.0.251 is the most this script uses"
if ((${#limits[@]})); then
  denied=()
  for l in "${limits[@]}"; do
    key=${l%%|*}
    if [[ $(id -u) -ne 0 ]] || ! sysctl_writable "$key"; then denied+=("$key"); fi
  done
  ((${#denied[@]} == 0)) ||
    cannot_run "no permission: ${denied[*]} must be raised for $conns connections and $( [[ $(id -u) -eq 0 ]] && echo "is not writable here" || echo "this is not root")"
fi
if ((dry_run)); then
  echo "dry run: nothing changed"
  exit 0
fi

require_bin echo-epoll loadgen
require_cmd python3 python3

# ---- raise the limits (put back at exit) ------------------------------------------

progress_step 2 "raising limits"
echo "for this run:"
for l in "${limits[@]}"; do
  IFS='|' read -r key value why <<<"$l"
  sysctl_set "$key" "$value" "$why" || die "could not set $key to $value"
done
if ((nofile_raise)); then
  ulimit -Hn "$nofile_run"
fi
ulimit -Sn "$nofile_run"
tmp=$(scratch_dir)

# ---- the server ------------------------------------------------------------------

progress_step 3 "starting $servers echo-epoll workers"
START_TIMEOUT=30 start_server echo-epoll --port 0 --workers "$servers" --max-clients "$((servers * per_proc))"
server_pid=$SERVER_PID
server_out=$SERVER_OUT
echo "server: echo-epoll pid $server_pid, $SERVER_ADDR, $servers workers"

samples="$tmp/samples.jsonl"
start_sampler "$samples" $((total + 150)) "$server_pid" "$tmp/client.pids"

# ---- the clients -----------------------------------------------------------------

read -r overflows_before timeouts_before <<<"$(tcpext)"
# Three seconds from now: time for the processes to fork and check their limits.
instant=$(date -d '+3 seconds' +%s.%N)
spawn --out "$tmp/loadgen.out" --err "$tmp/loadgen.err" "$BUILD_DIR/bin/loadgen" \
  "127.0.0.1:$SERVER_PORT" --mode idle -c "$conns" --active "$active" --rate "$rate" --size 64 \
  --processes "$clients" --source-addrs "127.0.0.2-127.0.0.$((nsrc + 1))" \
  -d "$total" --warmup "$warmup" --ramp "$ramp" --timeout 10 --start-at "$instant" \
  --json "$tmp/merged.json" --allow-errors
client_pid=$SPAWN_PID
echo "$client_pid" >"$tmp/client.pids.new"
mv "$tmp/client.pids.new" "$tmp/client.pids"
echo "clients: loadgen pid $client_pid, $clients processes, --start-at $instant"

# Connecting, then holding: progress from the sampler's socket count (both
# ends: 2 per connection); the deadline bounds both phases.
deadline=$((SECONDS + 3 + total + 120))
phase=4
while lib_alive "$client_pid" && ((SECONDS < deadline)); do
  inuse=$(tail -n 1 "$samples" | sed -n 's/.*"inuse": \([0-9]*\).*/\1/p')
  if ((phase == 4 && ${inuse:-0} >= 2 * conns)); then phase=5; fi
  if ((phase == 4)); then
    progress_step 4 "connecting: $((${inuse:-0} / 2)) of $conns up"
  else
    progress_step 5 "holding $conns, measuring"
  fi
  sleep 1
done
client_rc=0
finish_by "$client_pid" "$deadline" loadgen || client_rc=$?
wait "$SAMPLER_PID" || true
unregister_pid "$SAMPLER_PID"

progress_step 6 "stopping the server"
server_rc=0
STOP_TIMEOUT=60 stop_server "$server_pid" || server_rc=$?
((server_rc == 0)) || echo "$SCRIPT: echo-epoll pid $server_pid exited with $server_rc" >&2
read -r overflows_after timeouts_after <<<"$(tcpext)"
if declare -F progress_done >/dev/null; then progress_done; fi

# ---- report ----------------------------------------------------------------------

if [[ ! -s "$tmp/merged.json" ]]; then
  echo "$SCRIPT: loadgen (exit $client_rc) wrote no report:" >&2
  tail -n 5 "$tmp/loadgen.err" "$tmp/loadgen.out" >&2
fi
grep -h '^preflight' "$tmp/loadgen.err" | head -n 1 | sed 's/^/  loadgen /' || true
tail -n 8 "$tmp/loadgen.out"
echo
rc=0
"$SCALE_PY" "$ROOT/scripts/c1m-report.py" "$tmp/merged.json" "$samples" "$server_out" "$conns" "$active" "$rate" \
  "$((overflows_after - overflows_before))" "$((timeouts_after - timeouts_before))" "$load_now" "$(cut -d' ' -f1-3 /proc/loadavg)" "$warmup" ||
  rc=$?
echo "  script             $SECONDS s in all (started $(date -u -d "@$((EPOCHSECONDS - SECONDS))" +%Y-%m-%dT%H:%M:%SZ))"
exit "$rc"
