#!/usr/bin/env bash
# trace-lab.sh — which system calls does an I/O model make for the same work?
#
# Usage: scripts/trace-lab.sh [-c CLIENTS] [-r ROUNDS] [-s BYTES] [--build-dir DIR] BINARY [ARGS...]
#
# Starts BINARY (a name in DIR/bin, default build/bin, or a path) as
#   strace -c -f BINARY --port 0 ARGS...
# reads its first line ("listening on HOST:PORT"), drives it with a fixed small
# workload — CLIENTS concurrent TCP clients (default 10), each making ROUNDS
# round trips (default 100) of BYTES random bytes (default 64), checking every
# echo byte for byte — then sends SIGTERM to the server (not to strace), and
# prints the server's summary line and strace's per-syscall table, sorted by
# the number of calls. -f follows every thread, so thread pools (echo-threaded,
# glibc's aio helpers) are counted too; io_uring's in-kernel work is not a
# system call and does not appear.
#
# Loopback only; the whole run is bounded (60 s for the workload).
# Examples:
#   scripts/trace-lab.sh echo-blocking
#   scripts/trace-lab.sh -c 20 -r 50 echo-epoll --edge
#   scripts/trace-lab.sh --build-dir build-sanitize echo-uring
set -euo pipefail
. "$(dirname "$0")/lib.sh"

clients=10 rounds=100 size=64
# Options come before BINARY; everything after it is the program's own.
while (($#)) && [[ "$1" == -* ]]; do
    if lib_common_option "$@"; then shift "$LIB_SHIFT"; continue; fi
    case "$1" in
        -c) need_value "$@"; clients=$2; shift 2 ;;
        -r) need_value "$@"; rounds=$2; shift 2 ;;
        -s) need_value "$@"; size=$2; shift 2 ;;
        --) shift; break ;;
        *) usage_error "unknown option '$1'" ;;
    esac
done
(($# >= 1)) || usage_error "which program? (usage: trace-lab.sh [-c N] [-r N] [-s N] [--build-dir DIR] BINARY [ARGS...])"
for n in "$clients" "$rounds" "$size"; do
    [[ "$n" =~ ^[0-9]+$ && "$n" -ge 1 && "$n" -le 100000 ]] || usage_error "counts must be 1..100000, got '$n'"
done

prog="$1"
shift
if [[ "$prog" != */* ]]; then
    require_bin "$prog"
    prog="$BUILD_DIR/bin/$prog"
fi
[[ -x "$prog" ]] || die "$prog: no such program"
require_cmd strace strace

# python3 starts strace, finds the traced server (strace's child) by
# its pid and stops it itself, and removes its own temporary file.
progress 1 1 "$(basename "$prog"): $clients clients x $rounds round trips under strace -c"
rc=0
# The table is printed once the run is over (after the progress line is erased).
report=$(python3 - "$prog" "$clients" "$rounds" "$size" "$@" <<'PY'
import os, signal, socket, subprocess, sys, tempfile, threading, time

prog, clients, rounds, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
extra = sys.argv[5:]
name = os.path.basename(prog)
out_file = tempfile.NamedTemporaryFile(prefix="trace-lab-", suffix=".txt", delete=False).name

strace = subprocess.Popen(
    ["strace", "-c", "-f", "-S", "calls", "-o", out_file, prog, "--port", "0", *extra],
    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

def fail(msg):
    print(f"trace-lab: {name}: {msg}", file=sys.stderr)
    tracee = find_tracee()
    if tracee:
        os.kill(tracee, signal.SIGKILL)
    strace.kill()
    sys.exit(1)

def find_tracee():
    # strace forks the program: its only child.
    try:
        with open(f"/proc/{strace.pid}/task/{strace.pid}/children") as f:
            kids = f.read().split()
        return int(kids[0]) if kids else None
    except OSError:
        return None

line = strace.stdout.readline().strip()
if not line.startswith("listening on "):
    fail(f"expected 'listening on HOST:PORT', got {line!r}; stderr: {strace.stderr.read()[-500:]}")
host, port = line[len("listening on "):].rsplit(":", 1)
host = host.strip("[]")
tracee = find_tracee()
if tracee is None:
    fail("cannot find the traced process")

errors = []
deadline = time.monotonic() + 60

def client(i):
    try:
        s = socket.create_connection((host, int(port)), timeout=30)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for r in range(rounds):
            payload = os.urandom(size)
            s.sendall(payload)
            got = b""
            while len(got) < size:
                if time.monotonic() > deadline:
                    raise TimeoutError("workload took more than 60 s")
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError(f"server closed after {len(got)} of {size} bytes")
                got += chunk
            if got != payload:
                raise ValueError(f"round {r}: echo differs")
        s.close()
    except Exception as e:  # collected, reported below
        errors.append(f"client {i}: {e!r}")

start = time.monotonic()
threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join(max(0.1, deadline - time.monotonic() + 5))
elapsed = time.monotonic() - start
time.sleep(0.2)  # let the server see the last FINs before it is stopped

os.kill(tracee, signal.SIGTERM)
try:
    rest, err = strace.communicate(timeout=30)
except subprocess.TimeoutExpired:
    fail("did not exit within 30 s of SIGTERM")
summary = [l for l in rest.splitlines() if l.startswith("summary:")]
print(f"== {name} {' '.join(extra)}: {clients} clients x {rounds} round trips x {size} B "
      f"in {elapsed:.2f} s (under strace)")
print(summary[0] if summary else "(no summary line!)")
if errors:
    print(f"{len(errors)} client error(s): " + "; ".join(errors[:3]))
with open(out_file) as f:
    print(f.read().rstrip())
os.unlink(out_file)
sys.exit(1 if errors or not summary or strace.returncode != 0 else 0)
PY
) || rc=$?
progress_clear
[[ -z "$report" ]] || printf '%s\n' "$report"
exit "$rc"
