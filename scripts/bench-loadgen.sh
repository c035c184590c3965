#!/usr/bin/env bash
# bench-loadgen.sh — does loadgen drive nginx at least as well as wrk, without
# costing the server more?
#
# Starts nginx on loopback (one worker, pinned to --nginx-cpu; its own prefix,
# pid, logs and files in a scratch directory; a free port) serving two
# workloads: a 1 KiB static file read from disk (sendfile, ETag and
# Last-Modified headers) and its `return 200` location. For each workload at
# each connection count (a row), wrk, h2load (--h1) and loadgen take turns,
# each with one thread pinned to --client-cpu, --runs times --duration
# seconds. Per run and per tool it measures:
#   req/s         the tool's own figure
#   srv us/req    nginx's worker CPU (utime + stime from /proc/PID/stat, from
#                 before the tool starts to after it exits) / requests done
#   cli us/req    the tool's CPU (getrusage of the finished child) / requests
#   csw/req       the tool's voluntary context switches / requests: how often
#                 it went to sleep waiting, and so how often nginx had to wake it
# and prints the medians per row. Goals, per row (wrk is the reference, h2load
# a second anchor shown for comparison), judged on paired ratios — for each
# run, loadgen's figure over wrk's from seconds before, then the median of
# those ratios — so that a machine that speeds up or slows down during the
# bench does not decide the verdict:
#   1. nginx's CPU per request under loadgen <= under wrk (ratio <= 1)
#   2. loadgen's requests/s >= 1.05 x wrk's
# Default time: 4 rows x 3 tools x 5 runs x 5 s = 300 s, plus start-up
# (about 5.5 minutes).
#
# Usage: scripts/bench-loadgen.sh [--build-dir DIR] [--runs 5] [--duration 5]
#                                 [--connections "50 100"] [--nginx-cpu 0] [--client-cpu 1]
#                                 [--loadgen-args "--busy-poll 0"]
# Needs nginx (nginx-light), wrk and h2load (nghttp2-client). Loopback only.
# Exit 0 when every row meets both goals, 1 when one misses (the table says
# which and why).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

runs=5
duration=5
connections="50 100"
nginx_cpu=0
client_cpu=1
loadgen_args=""
while (($#)); do
  if lib_common_option "$@"; then shift "$LIB_SHIFT"; continue; fi
  case "$1" in
    --runs) need_value "$@"; check_uint "$1" "$2"; runs=$2; shift 2 ;;
    --duration) need_value "$@"; check_uint "$1" "$2"; duration=$2; shift 2 ;;
    --connections) need_value "$@"; connections=$2; shift 2 ;;
    --nginx-cpu) need_value "$@"; check_uint "$1" "$2"; nginx_cpu=$2; shift 2 ;;
    --client-cpu) need_value "$@"; check_uint "$1" "$2"; client_cpu=$2; shift 2 ;;
    --loadgen-args) need_value "$@"; loadgen_args=$2; shift 2 ;;
    *) usage_error "unknown option '$1'" ;;
  esac
done
for c in $connections; do check_uint --connections "$c"; done
((runs > 0 && duration > 0)) || usage_error "--runs and --duration must be at least 1"
read -r -a extra <<<"$loadgen_args"

require_bin loadgen
loadgen="$BUILD_DIR/bin/loadgen"
nginx_bin=$(command -v nginx || true)
[[ -n "$nginx_bin" ]] || nginx_bin=/usr/sbin/nginx
[[ -x "$nginx_bin" ]] || cannot_run "nginx is not installed (apt-get install nginx-light)"
require_cmd wrk wrk
require_cmd h2load nghttp2-client

tmp=$(scratch_dir)
mkdir -p "$tmp/www/static"
head -c 1024 /dev/urandom >"$tmp/www/static/1k.bin"
# nginx started by root serves as an unprivileged user: let it through the
# scratch directories (mktemp makes them 0700).
chmod a+x "$(dirname "$tmp")" "$tmp"
chmod -R a+rX "$tmp/www"
# A free port: bind to port 0 and read what the kernel gave.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -e "s|@PORT@|$port|g" -e "s|@PREFIX@|$tmp|g" -e "s|@WORKERS@|1|g" \
  "$ROOT/scripts/nginx-bench.conf" >"$tmp/nginx.conf"
spawn --cpu "$nginx_cpu" --out "$tmp/nginx.out" --err "$tmp/nginx.err" \
  "$nginx_bin" -p "$tmp" -c "$tmp/nginx.conf" -e "$tmp/error.log"
nginx_pid=$SPAWN_PID
base="http://127.0.0.1:$port"
ready=0
for _ in $(seq 50); do
  if "$loadgen" --mode http --url "$base/static/1k.bin" --url "$base/" -c 1 --threads 1 -n 2 -q >/dev/null 2>&1; then
    ready=1
    break
  fi
  lib_alive "$nginx_pid" || die "nginx exited: $(cat "$tmp/error.log" "$tmp/nginx.err" 2>/dev/null)"
  sleep 0.1
done
((ready)) || die "nginx does not serve $base/static/1k.bin and $base/ with 200 within 5 s: $(tail -n 3 "$tmp/error.log" 2>/dev/null)"
# The worker (the master only forks and waits): its CPU is the server's cost.
worker=$(ps -o pid= --ppid "$nginx_pid" | awk 'NR == 1 {print $1}')
[[ -n "$worker" && -r "/proc/$worker/stat" ]] || die "cannot find nginx's worker process (children of pid $nginx_pid)"
hz=$(getconf CLK_TCK)
# The tools run under a python3 wrapper (for their rusage): pin with taskset itself.
pinc=()
if command -v taskset >/dev/null 2>&1; then pinc=(taskset -c "$client_cpu"); fi

echo "nginx $("$nginx_bin" -v 2>&1 | sed 's/.*\///') on $base (1 worker, pid $worker, on CPU $nginx_cpu), clients on CPU $client_cpu, $(nproc) cores"
echo "each run: 1 thread, ${duration}s; $runs runs per tool and row, alternating wrk, h2load, loadgen${loadgen_args:+ ($loadgen_args)}"
echo "load average at start: $(cut -d" " -f1-3 /proc/loadavg)"

# CPU ticks (utime + stime) of a process so far; the name in field 2 may hold
# spaces, so count from the last ')'.
ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

# measure OUT CMD...: runs CMD with its stdout in OUT and its stderr in
# OUT.err; sets CLI_CPU (seconds) and CLI_VCSW (the finished child's
# getrusage, all its threads) and SRV_TICKS (nginx worker CPU ticks meanwhile).
measure() {
  local out=$1 before after
  shift
  before=$(ticks "$worker")
  python3 - "$@" <<'EOF' >"$out" 2>"$out.err" || true
import resource, subprocess, sys
rc = subprocess.run(sys.argv[1:]).returncode
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{r.ru_utime + r.ru_stime} {r.ru_nvcsw} {r.ru_nivcsw} {rc}", file=sys.stderr)
EOF
  after=$(ticks "$worker")
  SRV_TICKS=$((after - before))
  read -r CLI_CPU CLI_VCSW _ _ < <(tail -n 1 "$out.err")
}

# Requests completed, from each tool's summary.
requests_of() {
  case "$1" in
    wrk) awk '/ requests in / {print $1; exit}' "$2" ;;
    h2load) awk '/^requests:/ {print $8; exit}' "$2" ;;
    loadgen) awk '/ requests in / {print $1; exit}' "$2" ;;
  esac
}
rate_of() {
  case "$1" in
    wrk | loadgen) awk '/^Requests\/sec:/ {print $2; exit}' "$2" ;;
    h2load) awk '/^finished in/ {for (i = 1; i <= NF; ++i) if ($i == "req/s,") {print $(i - 1); exit}}' "$2" ;;
  esac
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

tools=(wrk h2load loadgen)
rows=()
missed=0
nrows=$((2 * $(wc -w <<<"$connections")))
row=0
for workload in static return200; do
  if [[ $workload == static ]]; then url="$base/static/1k.bin"; label="static 1 KiB"; else url="$base/"; label="return 200"; fi
  for c in $connections; do
    row=$((row + 1))
    declare -A rate=() srv=() cli=() csw=()
    pair_rate="" pair_srv=""  # loadgen/wrk within each run: the tools ran back to back
    for i in $(seq "$runs"); do
      progress "$row" "$nrows" "$label, $c connections, run $i of $runs"
      line=$(printf '%-13s c=%-4d run %d:' "$label" "$c" "$i")
      for t in "${tools[@]}"; do
        case $t in
          wrk) measure "$tmp/$t.out" "${pinc[@]}" wrk -t1 -c"$c" -d"${duration}s" "$url" ;;
          h2load) measure "$tmp/$t.out" "${pinc[@]}" h2load --h1 -t1 -c"$c" -D"$duration" "$url" ;;
          loadgen) measure "$tmp/$t.out" "${pinc[@]}" "$loadgen" --mode http --url "$url" -c "$c" \
            --threads 1 -d "$duration" -q "${extra[@]}" ;;
        esac
        r=$(rate_of "$t" "$tmp/$t.out")
        n=$(requests_of "$t" "$tmp/$t.out")
        [[ -n "$r" && -n "$n" && "$n" -gt 0 ]] || die "$label, $c connections, run $i: no figures from $t: $(tail -n 3 "$tmp/$t.out" "$tmp/$t.out.err" | tr '\n' ' ')"
        rate[$t]+="$r "
        srv[$t]+="$(awk -v k="$SRV_TICKS" -v hz="$hz" -v n="$n" 'BEGIN {printf "%.2f", k / hz * 1e6 / n}') "
        cli[$t]+="$(awk -v s="$CLI_CPU" -v n="$n" 'BEGIN {printf "%.2f", s * 1e6 / n}') "
        csw[$t]+="$(awk -v v="$CLI_VCSW" -v n="$n" 'BEGIN {printf "%.3f", v / n}') "
        line+=$(printf '  %s %.0f req/s srv %s cli %s csw %s' "$t" "$r" \
          "$(awk '{print $NF}' <<<"${srv[$t]}")" "$(awk '{print $NF}' <<<"${cli[$t]}")" "$(awk '{print $NF}' <<<"${csw[$t]}")")
      done
      progress_done
      pair_rate+="$(awk -v l="$(awk '{print $NF}' <<<"${rate[loadgen]}")" -v w="$(awk '{print $NF}' <<<"${rate[wrk]}")" 'BEGIN {printf "%.4f", l / w}') "
      pair_srv+="$(awk -v l="$(awk '{print $NF}' <<<"${srv[loadgen]}")" -v w="$(awk '{print $NF}' <<<"${srv[wrk]}")" 'BEGIN {printf "%.4f", l / w}') "
      echo "$line"
    done
    declare -A m=()
    for t in "${tools[@]}"; do
      # shellcheck disable=SC2086 # the lists are space-separated numbers
      m[$t]="$(median ${rate[$t]}) $(median ${srv[$t]}) $(median ${cli[$t]}) $(median ${csw[$t]})"
    done
    read -r wr _ _ _ <<<"${m[wrk]}"
    read -r lr _ _ _ <<<"${m[loadgen]}"
    ratio=$(awk -v l="$lr" -v w="$wr" 'BEGIN {printf "%.2f", l / w}')
    # The goals are judged on the paired ratios: the median over the runs of
    # loadgen/wrk measured seconds apart. On a shared machine whose speed
    # drifts during the bench, the ratio of two column medians can compare a
    # run from a quiet minute with one from a busy minute; both are printed.
    # shellcheck disable=SC2086 # space-separated numbers
    prate=$(median $pair_rate)
    # shellcheck disable=SC2086
    psrv=$(median $pair_srv)
    verdict="met"
    why=""
    if awk -v r="$prate" 'BEGIN {exit !(r < 1.05)}'; then why+=" req/s ratio $(printf '%.2f' "$prate") < 1.05;"; fi
    if awk -v r="$psrv" 'BEGIN {exit !(r > 1)}'; then why+=" server CPU/request ratio $(printf '%.2f' "$psrv") > 1;"; fi
    if [[ -n "$why" ]]; then verdict="not met:${why%;}"; missed=$((missed + 1)); fi
    for t in "${tools[@]}"; do
      read -r a b cc d <<<"${m[$t]}"
      rows+=("$(printf '| %-12s | %5d | %-7s | %9.0f | %10.2f | %10.2f | %7.3f |' "$label" "$c" "$t" "$a" "$b" "$cc" "$d")")
    done
    rows+=("$(printf '| %-12s | %5d | ratio   | %8sx | loadgen/wrk of the medians; paired (median of the per-run ratios): req/s %.2fx, server CPU/request %.2fx; %s' "$label" "$c" "$ratio" "$prate" "$psrv" "$verdict")")
    unset rate srv cli csw m
  done
done

echo
echo "| workload     | conns | tool    | req/s     | srv us/req | cli us/req | csw/req |"
echo "|--------------|-------|---------|-----------|------------|------------|---------|"
printf '%s\n' "${rows[@]}"
echo "medians of $runs alternating runs of ${duration}s; srv: nginx worker CPU per request; cli: the tool's CPU per request;"
echo "csw: the tool's voluntary context switches per request (each one a sleep nginx pays to end)"
echo "load average at the end: $(cut -d" " -f1-3 /proc/loadavg)"
echo "goals per row, on the paired ratios: nginx CPU/request under loadgen <= under wrk (ratio <= 1), and loadgen/wrk requests/s >= 1.05 ($missed of $nrows rows missed)"
((missed == 0)) || exit 1
