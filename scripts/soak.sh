#!/usr/bin/env bash
# soak.sh — every server of the suite at once, for minutes, under normal load
# and hostile clients; checks that nothing is lost and nothing grows.
#
# Usage: scripts/soak.sh [--minutes N | --seconds N] [--out DIR] [--build-dir DIR]
#
#   --minutes N      length of the load phase (default 5)
#   --seconds N      the same in seconds (for short runs; at least 20)
#   --out DIR        where soak.csv, soak.png and the loadgen reports go
#                    (default BUILD_DIR/soak)
#   --build-dir DIR  the build tree whose bin/ holds the programs (default build)
#
# Servers: echo-threaded, echo-nonblocking, echo-select, echo-poll, echo-epoll,
# echo-sigio, echo-aio, echo-uring, loop-echo, chat-server, http-testd — those
# built; a missing one is named and skipped. (echo-blocking serves one client
# at a time, so a single hostile client stalls it by design: not soaked.)
# Servers share CPU 1, clients CPU 0, all niced.
#
# Well-behaved load: loadgen --verify (echo, 512-byte requests, open loop) for
# the echo servers, loadgen --mode http for http-testd, chat-bench for
# chat-server. Hostile, bounded in count and time: connections reset right
# after connect (every server), non-readers that send and never read (every
# server), slowloris and malformed requests (http-testd), a line flood
# (chat-server).
#
# Every second each server's descriptors (/proc/PID/fd), RSS and CPU % go to
# soak.csv; soak.png plots them (gnuplot, when installed).
#
# Goals, per server, checked in the final table:
#   requests  requests completed (loadgen); chat: messages delivered (chat-bench)
#   errors  errors seen by the well-behaved clients: 0
#   lost    echo: --verify mismatches plus bytes sent and never echoed back
#           (beyond the one request per connection on its way when the run
#           stops); chat: messages chat-bench saw undelivered: 0
#   rss     RSS at the end of the load within 10% (or --rss-slack-kib, default
#           1024) of RSS after warm-up (the first fifth of the run, at least 5 s)
#   fds     descriptors with no client connected: the same after the load (up
#           to 30 s after, for sessions still finishing) as before it (within
#           10%, at least 1)
#   exit    SIGTERM ends it with exit status 0 and its summary line
# Exit codes: 0 every goal met, 1 a goal missed or a failure, 2 usage error,
# 3 loadgen (or every server) not built.

set -euo pipefail
. "$(dirname "$0")/lib.sh"

seconds=300
out=""
rss_slack_kib=1024
while (($#)); do
  if lib_common_option "$@"; then
    shift "$LIB_SHIFT"
    continue
  fi
  case "$1" in
    --minutes)
      need_value "$@"
      check_uint --minutes "$2"
      seconds=$(($2 * 60))
      shift 2
      ;;
    --seconds)
      need_value "$@"
      check_uint --seconds "$2"
      seconds=$2
      shift 2
      ;;
    --out)
      need_value "$@"
      out=$2
      shift 2
      ;;
    --rss-slack-kib)
      need_value "$@"
      check_uint --rss-slack-kib "$2"
      rss_slack_kib=$2
      shift 2
      ;;
    *) usage_error "unknown option '$1'" ;;
  esac
done
((seconds >= 20)) || usage_error "the run must last at least 20 seconds, got $seconds"
[[ -n "$out" ]] || out="$BUILD_DIR/soak"
mkdir -p "$out"
out=$(cd "$out" && pwd)
require_bin loadgen
require_cmd python3 python3
# The interpreter itself, not a wrapper (a pyenv shim is a bash script that
# takes seconds to start on a busy machine).
python=$(python3 -c 'import sys; print(sys.executable)')

warmup=$((seconds / 5))
((warmup >= 5)) || warmup=5
tmp=$(scratch_dir)

# ---- helpers written to the scratch area -------------------------------------

# Hostile clients. One process per (kind, server); each loop is bounded by a
# deadline and by a count, and every socket has a timeout.
cat >"$tmp/hostile.py" <<'PY'
import os, socket, struct, sys, threading, time

# hostile.py HOST PORT STOPFILE MAX_SECONDS KIND...: one thread per kind, each
# until STOPFILE exists or MAX_SECONDS have passed.
host, port, stop_file, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
deadline = time.monotonic() + seconds
MAX_ROUNDS = 100000


def running():
    return time.monotonic() < deadline and not os.path.exists(stop_file)


def conn(timeout=2.0):
    s = socket.create_connection((host, port), timeout=timeout)
    s.settimeout(timeout)
    return s


def reset(s):
    # SO_LINGER {on, 0}: close() sends RST instead of FIN.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def pause(t):
    end = time.monotonic() + t
    while running() and time.monotonic() < end:
        time.sleep(min(0.05, t))


def attack(kind):
    rounds = 0
    while running() and rounds < MAX_ROUNDS:
        rounds += 1
        try:
            if kind == "reset":
                # Connect and reset at once, 20 times a second.
                reset(conn())
                pause(0.05)
            elif kind == "nonreader":
                # Four connections that send 256 KiB each and never read, held
                # 3 s, then reset: the server must block on us, not grow.
                socks = [conn() for _ in range(4)]
                for s in socks:
                    s.setblocking(False)
                    sent, chunk = 0, b"x" * 4096
                    while sent < 256 * 1024:
                        try:
                            sent += s.send(chunk)
                        except BlockingIOError:
                            break
                pause(3)
                for s in socks:
                    reset(s)
            elif kind == "slowloris":
                # Eight connections dripping one header byte every 0.5 s.
                socks = [conn() for _ in range(8)]
                req = b"GET /bytes/1 HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 30
                for b in req:
                    if not running():
                        break
                    for s in list(socks):
                        try:
                            s.send(bytes([b]))
                        except OSError:
                            socks.remove(s)  # the server gave up on it: fine
                    if not socks:
                        break
                    pause(0.5)
                for s in socks:
                    s.close()
            elif kind == "badhttp":
                # Malformed or ambiguous requests, one per connection, 10 a second.
                bad = [b"GARBAGE\r\n\r\n",
                       b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
                       b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n",
                       b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
                       b"GET / HTTP/1.1\r\n\r\n",
                       b"GET / HTTP/3.0\r\nHost: x\r\n\r\n",
                       b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                       b"\x00\xff\r\n\r\n"]
                s = conn()
                s.sendall(bad[rounds % len(bad)])
                try:
                    s.recv(4096)
                except OSError:
                    pass
                s.close()
                pause(0.1)
            elif kind == "flood":
                # A chat client that sends 300 lines at once (15 s of them at
                # --rate-limit 20), reading nothing, then resets; again every
                # 2 s. Flood control delays its lines rather than dropping
                # them, so its session ends when the last one is processed.
                s = conn()
                s.sendall(b"".join(b"flood line %d\n" % i for i in range(300)))
                pause(2)
                reset(s)
            else:
                raise SystemExit("hostile.py: unknown kind " + kind)
        except OSError:
            pause(0.2)  # refused, reset or timed out: the server defends itself


threads = [threading.Thread(target=attack, args=(k,)) for k in sys.argv[5:]]
for t in threads:
    t.start()
for t in threads:
    t.join()
PY

# The sampler: every second, one row per server.
cat >"$tmp/sample.py" <<'PY'
import os, sys, time

# sample.py CSV STOPFILE T0 NAME=PID...: t_s is seconds since T0 (Unix time).
csv, stop, t0 = sys.argv[1], sys.argv[2], float(sys.argv[3])
procs = [a.split("=") for a in sys.argv[4:]]
tick = os.sysconf("SC_CLK_TCK")
last = {}
with open(csv, "w") as f:
    f.write("t_s,server,pid,fds,rss_kb,cpu_pct\n")
    while not os.path.exists(stop):
        now = time.monotonic()
        for name, pid in procs:
            try:
                fds = len(os.listdir("/proc/%s/fd" % pid))
                with open("/proc/%s/status" % pid) as st:
                    rss = next(int(l.split()[1]) for l in st if l.startswith("VmRSS:"))
                with open("/proc/%s/stat" % pid) as st:
                    fields = st.read().rsplit(")", 1)[1].split()
                cpu = int(fields[11]) + int(fields[12])
            except (OSError, StopIteration, ValueError):
                continue
            pct = 0.0
            if pid in last:
                pct = 100.0 * (cpu - last[pid][0]) / tick / max(now - last[pid][1], 1e-3)
            last[pid] = (cpu, now)
            f.write("%.1f,%s,%s,%d,%d,%.1f\n" % (time.time() - t0, name, pid, fds, rss, pct))
        f.flush()
        time.sleep(max(0.0, 1.0 - (time.monotonic() - now)))
PY

# ---- the servers -------------------------------------------------------------

# name|arguments|load kind (echo, http or chat)
catalogue=(
  "echo-threaded||echo"
  "echo-nonblocking||echo"
  "echo-select||echo"
  "echo-poll||echo"
  "echo-epoll||echo"
  "echo-sigio||echo"
  "echo-aio||echo"
  "echo-uring||echo"
  "loop-echo||echo"
  "chat-server|--rate-limit 20|chat"
  "http-testd||http"
)
names=() kinds=() pids=() ports=() outs=()
for entry in "${catalogue[@]}"; do
  IFS='|' read -r name args kind <<<"$entry"
  if [[ ! -x "$BUILD_DIR/bin/$name" ]]; then
    echo "$SCRIPT: $name is not built (cmake --build $BUILD_DIR --target $name): skipped"
    continue
  fi
  if [[ "$kind" == chat && ! -x "$BUILD_DIR/bin/chat-bench" ]]; then
    echo "$SCRIPT: chat-bench is not built (cmake --build $BUILD_DIR --target chat-bench): chat-server skipped"
    continue
  fi
  # shellcheck disable=SC2086 # the arguments are words
  start_server --cpu 1 "$(command -v nice)" -n 5 "$BUILD_DIR/bin/$name" --port 0 $args
  names+=("$name") kinds+=("$kind") pids+=("$SERVER_PID") ports+=("$SERVER_PORT") outs+=("$SERVER_OUT")
done
((${#names[@]})) || { echo "$SCRIPT: no server is built" >&2; exit 3; }
n=${#names[@]}

# start_server ran `nice` under taskset; nice execs the server, so the pid is
# the server's own. Check it, since every figure below reads /proc/PID.
for ((i = 0; i < n; i++)); do
  comm=$(cat "/proc/${pids[i]}/comm" 2>/dev/null || echo gone)
  case "$comm" in
    nice | taskset | gone) die "${names[i]}: pid ${pids[i]} is '$comm', not the server" ;;
  esac
done

sample_args=()
for ((i = 0; i < n; i++)); do
  sample_args+=("${names[i]}=${pids[i]}")
done
csv="$out/soak.csv"
t0=$EPOCHREALTIME
spawn "$python" "$tmp/sample.py" "$csv" "$tmp/stop-sampling" "$t0" "${sample_args[@]}"
sampler=$SPAWN_PID

elapsed() { awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
sleep 1
fds_before=()
for ((i = 0; i < n; i++)); do
  fds_before+=("$(fd_count "${pids[i]}")")
done

# ---- the load ----------------------------------------------------------------

echo "$SCRIPT: ${n} servers, ${seconds} s of load (warm-up ${warmup} s), output in $out"
# The hostile clients first (one process per server, a thread per kind); they
# run until the well-behaved loads are over.
progress 1 3 "load on $n servers for ${seconds} s, hostile clients beside"
hostile_pids=()
for ((i = 0; i < n; i++)); do
  hostile=(reset nonreader)
  [[ "${kinds[i]}" == http ]] && hostile+=(slowloris badhttp)
  [[ "${kinds[i]}" == chat ]] && hostile+=(flood)
  spawn --cpu 0 --err "$out/${names[i]}.hostile.err" nice -n 10 "$python" "$tmp/hostile.py" \
    127.0.0.1 "${ports[i]}" "$tmp/stop-hostile" "$((seconds + 120))" "${hostile[@]}"
  hostile_pids+=("$SPAWN_PID")
done
sleep 1
load_start=$(elapsed)
load_pids=()
for ((i = 0; i < n; i++)); do
  port=${ports[i]} name=${names[i]} report="$out/${names[i]}.json"
  case "${kinds[i]}" in
    echo)
      spawn --cpu 0 --out "$out/$name.loadgen.txt" --err "$out/$name.loadgen.err" \
        nice -n 10 "$BUILD_DIR/bin/loadgen" "127.0.0.1:$port" -c 4 --threads 1 --rate 200 \
        --size 512 --verify -d "$seconds" --json "$report"
      ;;
    http)
      spawn --cpu 0 --out "$out/$name.loadgen.txt" --err "$out/$name.loadgen.err" \
        nice -n 10 "$BUILD_DIR/bin/loadgen" --mode http --url "http://127.0.0.1:$port/bytes/1024" \
        --url "http://127.0.0.1:$port/chunked/4096" -c 4 --threads 1 --rate 200 \
        -d "$seconds" --json "$report"
      ;;
    chat)
      spawn --cpu 0 --out "$out/$name.bench.txt" --err "$out/$name.bench.err" \
        nice -n 10 "$BUILD_DIR/bin/chat-bench" "127.0.0.1:$port" --clients 20 --talkers 2 \
        --rate 5 --duration "$seconds" --drain 5
      ;;
  esac
  load_pids+=("$SPAWN_PID")
done

# Wait for the loads (each bounded by its own duration), then give the
# servers a few seconds to let the last connections go.
for p in "${load_pids[@]}"; do
  wait "$p" 2>/dev/null || true
  unregister_pid "$p"
done
load_end=$(elapsed)
touch "$tmp/stop-hostile"
progress_clear
echo "$SCRIPT: the loads ran from ${load_start} s to ${load_end} s; stopping the hostile clients"
for p in "${hostile_pids[@]}"; do
  wait "$p" 2>/dev/null || true
  unregister_pid "$p"
done
progress 2 3 "waiting for the servers to let the last connections go"
fds_after=()
for ((i = 0; i < n; i++)); do
  for ((k = 0; k < 300; k++)); do # up to 30 s: a flooder's delayed lines, lingering closes
    ((k == 0)) || sleep 0.1
    f=$(fd_count "${pids[i]}")
    ((f <= fds_before[i])) && break
  done
  fds_after+=("$f")
done
touch "$tmp/stop-sampling"
wait "$sampler" 2>/dev/null || true
unregister_pid "$sampler"

# ---- SIGTERM -----------------------------------------------------------------

progress 3 3 "SIGTERM to each server"
exits=() summaries=()
for ((i = 0; i < n; i++)); do
  rc=0
  stop_server "${pids[i]}" || rc=$?
  exits+=("$rc")
  summaries+=("$(grep -m1 '^summary: ' "${outs[i]}" || echo 'no summary line')")
done

# ---- the plot ----------------------------------------------------------------

progress_clear
if command -v gnuplot >/dev/null 2>&1; then
  gnuplot -e "csv='$csv'; png='$out/soak.png'; servers='${names[*]}'" "$ROOT/scripts/plot-soak.gp" ||
    echo "$SCRIPT: gnuplot failed; the CSV is $csv" >&2
else
  echo "$SCRIPT: gnuplot is not installed (apt-get install gnuplot-nox): no plot, the CSV is $csv"
fi

# ---- the table ---------------------------------------------------------------

# One line per server from the reports, the CSV and the exits; python3 since
# the loadgen reports are JSON.
table_in="$tmp/table.in"
: >"$table_in"
for ((i = 0; i < n; i++)); do
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "${names[i]}" "${kinds[i]}" "${fds_before[i]}" \
    "${fds_after[i]}" "${exits[i]}" "${summaries[i]}" "$out/${names[i]}" >>"$table_in"
done
rc=0
"$python" - "$csv" "$table_in" "$load_start" "$warmup" "$seconds" "$rss_slack_kib" <<'PY' || rc=$?
import csv, json, re, statistics, sys

csv_path, table_in = sys.argv[1], sys.argv[2]
start, warmup, seconds = (float(a) for a in sys.argv[3:6])
rss_slack_kib = int(sys.argv[6])
rows = list(csv.DictReader(open(csv_path)))


def window(name, lo, hi):
    v = [int(r["rss_kb"]) for r in rows if r["server"] == name and lo <= float(r["t_s"]) <= hi]
    return int(statistics.median(v)) if v else 0


def flat(a, b, slack):
    return abs(b - a) <= max(0.10 * a, slack)


head = "%-17s %9s %6s %6s %15s %9s %5s  %s" % (
    "server", "requests", "errors", "lost", "rss_kb warm>end", "fds 0>0", "exit", "summary")
print(head)
print("-" * len(head))
missed = []
for line in open(table_in):
    name, kind, fd0, fd1, ex, summary, base = line.rstrip("\n").split("\t")
    fd0, fd1, ex = int(fd0), int(fd1), int(ex)
    requests, errors, lost, note = 0, -1, -1, ""
    try:
        if kind == "chat":
            text = open(base + ".bench.txt").read()
            f = dict(re.findall(r"(\w+)=([\d.]+)", text))
            requests, lost = int(f["delivered"]), int(f["lost"])
            errors = 0 if f["sent"] != "0" else 1
            err = open(base + ".bench.err").read().strip()
            if err:
                errors, note = errors + 1, err.splitlines()[-1]
        else:
            j = json.load(open(base + ".json"))
            requests, errors = j["requests"], j["errors_total"]
            verify = sum(e["count"] for e in j["errors"] if e["kind"] == "verify")
            # When the run stops, each connection may have one request on
            # its way: sent, counted, and not echoed yet.
            in_flight = j["connections"] * j["size"]
            unanswered = max(0, j["bytes_out"] - j["bytes_in"] - in_flight)
            lost = (unanswered + verify) if kind == "echo" else 0
            if errors:
                note = "; ".join("%s %s x%d" % (e["kind"], e["text"], e["count"]) for e in j["errors"])
    except (OSError, KeyError, ValueError) as e:
        note = "no report: %s" % e
    # RSS: the median of 5 s after the warm-up against the last 5 s of the load.
    r0 = window(name, start + warmup, start + warmup + 5)
    r1 = window(name, start + seconds - 5, start + seconds)
    ok = {
        "errors": errors == 0,
        "lost": lost == 0,
        "rss": r0 > 0 and flat(r0, r1, rss_slack_kib),
        "fds": flat(fd0, fd1, 1),
        "exit": ex == 0 and summary.startswith("summary: "),
        "requests": requests > 0,
    }
    bad = [k for k, v in ok.items() if not v]
    if bad:
        missed.append("%s: %s" % (name, ", ".join(bad)))
    print("%-17s %9d %6s %6s %15s %9s %5d  %s" % (
        name, requests, errors if errors >= 0 else "?", lost if lost >= 0 else "?",
        "%d>%d" % (r0, r1), "%d>%d" % (fd0, fd1), ex, summary))
    if note:
        print("%-17s %s" % ("", note[:200]))
if missed:
    print("goals missed: " + "; ".join(missed))
    sys.exit(1)
print("every goal met")
PY
echo "$SCRIPT: CSV $csv$([[ -f "$out/soak.png" ]] && echo ", plot $out/soak.png")"
exit "$rc"
