#!/usr/bin/env python3
"""timeline.py: helper of scripts/timeline.sh (see its header). stdlib only.

python3 timeline.py [--tracer auto|ftrace|strace] [--loadgen BIN --loadgen-args ARGS]
                    [--title-extra TEXT] BINARY NAME OUTDIR [SERVER ARGS...]
    runs BINARY --port 0 under the tracer, drives it (3 python clients x 4
    echoes, client 1 slow; or BIN, loadgen, with ARGS), writes OUTDIR/NAME.json
    (the data), OUTDIR/NAME.svg (the picture) and OUTDIR/NAME.trace.json (Chrome
    Trace Event format, for ui.perfetto.dev and chrome://tracing).
python3 timeline.py --overhead RUNS BINARY NAME OUTDIR
    runs the same workload RUNS times untraced, under strace and under ftrace
    (interleaved), prints a markdown table of the median round-trip times and
    writes it to OUTDIR/NAME.overhead.json.

Tracers:
  ftrace  kernel tracepoints in a tracefs instance of our own
          (instances/iolab-timeline-PID): raw_syscalls:sys_enter/sys_exit,
          sched:sched_switch and sched:sched_waking, filtered by set_event_pid
          (the server, its threads via options/event-fork, the client threads,
          loadgen), clock mono. Needs root and a mounted tracefs. The traced
          task is not stopped: each event costs well under a microsecond.
  strace  strace -f -ttt -T: every call decoded, but the tracee is stopped
          twice per call, which stretches every box; no scheduler events.
"""
import argparse, atexit, bisect, errno, html, json, math, os, re, shlex, signal, socket, statistics, struct, \
    subprocess, sys, tempfile, threading, time

CLIENTS, ECHOES, SIZE, SLOW, SLOW_GAP = 3, 4, 32, 1, 0.15
MAX_DRAWN = 600           # calls drawn per SVG at most; the rest are counted
BLOCKED_S = 0.001         # strace: a read/accept longer than this was asleep (phase 1)

WAIT_CALLS = {"select", "pselect6", "poll", "ppoll", "epoll_wait", "epoll_pwait", "epoll_pwait2",
              "rt_sigtimedwait", "rt_sigsuspend", "sigsuspend", "pause", "io_getevents",
              "io_pgetevents", "nanosleep", "clock_nanosleep"}
COPY_CALLS = {"read", "readv", "recv", "recvfrom", "recvmsg", "write", "writev", "send", "sendto",
              "sendmsg", "pread64", "pwrite64"}
SEND_CALLS = {"write", "writev", "send", "sendto", "sendmsg"}
BLOCKABLE = {"read", "readv", "recv", "recvfrom", "recvmsg", "accept", "accept4", "connect"}

ap = argparse.ArgumentParser(prog="timeline.py")
ap.add_argument("--tracer", default="auto", choices=["auto", "ftrace", "strace"])
ap.add_argument("--loadgen")
ap.add_argument("--loadgen-args", default="")
ap.add_argument("--title-extra", default="")
ap.add_argument("--overhead", type=int, default=0)
ap.add_argument("binary")
ap.add_argument("name")
ap.add_argument("outdir")
ap.add_argument("extra", nargs=argparse.REMAINDER)
opt = ap.parse_args()
prog, name, outdir, extra = opt.binary, opt.name, opt.outdir, opt.extra


# SIGTERM (timeout, Ctrl-C's cousin) still runs the atexit clean-up: processes, tracefs instance
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))


def fail(msg, code=1):
    print(f"timeline: {name}: {msg}", file=sys.stderr)
    sys.exit(code)


# ---- tracers -----------------------------------------------------------------
class Unavailable(Exception):
    pass


class Ftrace:
    """A tracefs instance of our own, filtered by pid; removed at exit."""
    name = "ftrace"
    clock = staticmethod(time.monotonic)       # trace_clock mono = CLOCK_MONOTONIC
    EVENTS = ("raw_syscalls/sys_enter", "raw_syscalls/sys_exit", "sched/sched_switch",
              "sched/sched_waking")

    def __init__(self):
        root = next((r for r in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
                     if os.path.isdir(os.path.join(r, "instances"))), None)
        if root is None:
            raise Unavailable("no tracefs mounted (/sys/kernel/tracing/instances missing)")
        self.dir = os.path.join(root, "instances", f"iolab-timeline-{os.getpid()}")
        try:
            os.mkdir(self.dir)
        except OSError as e:
            raise Unavailable(f"cannot create a tracefs instance {self.dir}: {e.strerror}")
        atexit.register(self.close)
        try:
            self.w("tracing_on", "0")
            # per CPU; echo-nonblocking's busy loop makes about a million calls a second
            for kb in ("131072", "65536", "16384"):
                try:
                    self.w("buffer_size_kb", kb)
                    break
                except OSError:
                    continue
            self.w("trace_clock", "mono")
            self.w("options/event-fork", "1")
            self.w("options/record-tgid", "1")
            self.w("options/irq-info", "1")  # the context flags: a wake-up from an interrupt
            for ev in self.EVENTS:
                if not os.path.exists(os.path.join(self.dir, "events", ev)):
                    raise Unavailable(f"tracepoint {ev} missing")
        except OSError as e:
            raise Unavailable(f"cannot configure {self.dir}: {e.strerror}")
        self.enabled = False

    def w(self, f, v, mode="w"):
        # O_APPEND adds to set_event_pid, O_TRUNC replaces; no seek (tracefs refuses it)
        fd = os.open(os.path.join(self.dir, f),
                     os.O_WRONLY | (os.O_APPEND if mode == "a" else os.O_TRUNC))
        try:
            os.write(fd, (v + "\n").encode())
        finally:
            os.close(fd)

    def add_pid(self, pid):
        self.w("set_event_pid", str(pid), "a")
        if not self.enabled:       # an empty pid list would trace every task
            for ev in self.EVENTS:
                self.w(f"events/{ev}/enable", "1")
            self.w("tracing_on", "1")
            self.enabled = True

    def stop(self):
        self.w("tracing_on", "0")

    def read(self):
        lost = 0
        for cpu in os.listdir(os.path.join(self.dir, "per_cpu")):
            with open(os.path.join(self.dir, "per_cpu", cpu, "stats")) as fh:
                for ln in fh:
                    if ln.startswith(("overrun:", "dropped events:")):
                        lost += int(ln.split(":")[1])
        with open(os.path.join(self.dir, "trace"), errors="replace") as fh:
            return fh.read(), lost

    def close(self):
        if not os.path.isdir(self.dir):
            return
        try:
            self.w("tracing_on", "0")
            self.w("events/enable", "0")
            self.w("set_event_pid", "", "w")
        except OSError:
            pass
        for _ in range(50):
            try:
                os.rmdir(self.dir)
                return
            except OSError:
                time.sleep(0.1)
        print(f"timeline: could not remove {self.dir}", file=sys.stderr)


class Strace:
    name = "strace"
    clock = staticmethod(time.time)            # strace -ttt prints wall-clock time

    def __init__(self):
        self.file = tempfile.NamedTemporaryFile(prefix="iolab-timeline-", suffix=".strace",
                                                delete=False).name
        atexit.register(lambda: os.path.exists(self.file) and os.unlink(self.file))


class NoTracer:
    name = "none"
    clock = staticmethod(time.monotonic)


def pick_tracer(want):
    if want in ("auto", "ftrace"):
        try:
            return Ftrace()
        except Unavailable as e:
            if want == "ftrace":
                fail(f"--tracer ftrace: {e}", 4)
            print(f"timeline: {name}: {e}; falling back to strace", file=sys.stderr)
    return Strace()


# ---- processes -----------------------------------------------------------------
class Proc:
    """A program started under the tracer; .pid is the program's own pid."""

    def __init__(self, tracer, cmd):
        self.tracer = tracer
        if isinstance(tracer, Strace):
            self.p = subprocess.Popen(["strace", "-f", "-ttt", "-T", "-s", "24", "-o", tracer.file,
                                       *cmd], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      text=True)
            self.pid = None
        elif isinstance(tracer, Ftrace):
            # the shell waits for a line, then execs the program in its own pid: the
            # pid is in set_event_pid before the program's first instruction
            self.p = subprocess.Popen(["/bin/sh", "-c", 'read -r _ && exec "$@"', "sh", *cmd],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True)
            self.pid = self.p.pid
            tracer.add_pid(self.pid)
            self.p.stdin.write("\n")
            self.p.stdin.close()
        else:
            self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      text=True)
            self.pid = self.p.pid
        atexit.register(self.reap)

    def reap(self):
        """at exit, whatever happened: nothing we started keeps running"""
        if self.p.poll() is None:
            self.stop(timeout=5)

    def prog_pid(self):
        if self.pid is not None:
            return self.pid
        for _ in range(100):  # strace's child
            try:
                with open(f"/proc/{self.p.pid}/task/{self.p.pid}/children") as f:
                    kids = f.read().split()
                if kids:
                    self.pid = int(kids[0])
                    return self.pid
            except OSError:
                return None
            time.sleep(0.01)
        return None

    def first_line(self, timeout):
        box = []
        t = threading.Thread(target=lambda: box.append(self.p.stdout.readline()), daemon=True)
        t.start()
        t.join(timeout)
        return box[0] if box else ""

    def stop(self, sig=signal.SIGTERM, timeout=60):
        pid = self.prog_pid()
        if pid and self.p.poll() is None:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        try:
            self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.p.kill()
            self.p.wait()


def server_fds(pid, server_port):
    """{client port: server descriptor}, from /proc/PID/fd and /proc/net/tcp{,6}."""
    port_of_inode = {}
    for tab in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(tab) as f:
                next(f)
                for ln in f:
                    p = ln.split()
                    lport, rport = int(p[1].rsplit(":", 1)[1], 16), int(p[2].rsplit(":", 1)[1], 16)
                    if lport == server_port and rport:
                        port_of_inode[p[9]] = rport
        except OSError:
            pass
    out = {}
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            m = re.match(r"socket:\[(\d+)\]", link)
            if m and m.group(1) in port_of_inode:
                out[port_of_inode[m.group(1)]] = int(fd)
    except OSError:
        pass
    return out


# ---- the workload ----------------------------------------------------------------
def workload(tracer, server, host, port, want_fds=True):
    """3 clients x 4 echoes; returns (requests, client tids, connect times, fd map)."""
    clock = tracer.clock
    requests, errors, connects, tids, ports = [], [], [], {}, {}
    lock = threading.Lock()
    connected = threading.Barrier(CLIENTS + 1)
    go = threading.Event()

    def client(i):
        try:
            tids[i] = threading.get_native_id()
            if isinstance(tracer, Ftrace):
                tracer.add_pid(tids[i])
            with lock:
                connects.append(clock())
            s = socket.create_connection((host, port), timeout=60)
            # plain blocking calls from here (no poll before each recv), bounded by the kernel
            s.settimeout(None)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 60, 0))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 60, 0))
            ports[i] = s.getsockname()[1]
            connected.wait(60)
            go.wait(60)
            time.sleep(0.05)  # every client connected; the server is waiting
            for k in range(ECHOES):
                if i == SLOW:
                    time.sleep(SLOW_GAP)
                msg = bytes([65 + i]) * (SIZE - 2) + b"%d\n" % k
                t_send = clock()
                s.sendall(msg)
                got = b""
                while len(got) < len(msg):
                    chunk = s.recv(len(msg) - len(got))
                    if not chunk:
                        raise ConnectionError("server closed the connection")
                    got += chunk
                t_recv = clock()
                if got != msg:
                    raise ValueError(f"echo differs: sent {msg!r}, got {got!r}")
                with lock:
                    requests.append({"client": i, "n": k, "port": ports[i],
                                     "send_s": t_send, "recv_s": t_recv, "bytes": len(msg)})
            s.close()
        except Exception as e:  # noqa: BLE001 - reported with the client number
            with lock:
                errors.append(f"client {i}: {e}")
            go.set()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    fd_of_port = {}
    try:
        connected.wait(60)
        deadline = time.monotonic() + 2
        while want_fds and time.monotonic() < deadline:  # until the server has accepted all
            fd_of_port = server_fds(server.prog_pid(), port)
            if all(p in fd_of_port for p in ports.values()):
                break
            time.sleep(0.005)
    except threading.BrokenBarrierError:
        pass
    go.set()
    for t in threads:
        t.join(120)
    return requests, errors, connects, tids, ports, fd_of_port


def start_server(tracer):
    srv = Proc(tracer, [prog, "--port", "0", *extra])
    line = srv.first_line(60)
    m = re.search(r"listening on (\S+):(\d+)", line)
    if not m:
        srv.stop()
        fail(f"no 'listening on HOST:PORT' line within 60 s (got {line!r})")
    return srv, m.group(1), int(m.group(2))


# ---- --overhead: what the observer costs ---------------------------------------------
if opt.overhead:
    kinds = ["untraced", "strace"]
    try:
        Ftrace().close()
        kinds.append("ftrace")
    except Unavailable as e:
        print(f"timeline: {name}: ftrace not measured: {e}", file=sys.stderr)
    rtts = {k: [] for k in kinds}
    for run in range(opt.overhead):
        for k in kinds:
            tr = {"untraced": NoTracer, "strace": Strace, "ftrace": Ftrace}[k]()
            srv, host, port = start_server(tr)
            reqs, errs, *_ = workload(tr, srv, host, port, want_fds=False)
            srv.stop()
            if isinstance(tr, Ftrace):
                tr.close()
            if errs:
                fail("; ".join(errs))
            rtts[k].append(statistics.median(r["recv_s"] - r["send_s"] for r in reqs) * 1e6)
    med = {k: statistics.median(v) for k, v in rtts.items()}
    # And what each tracer draws: one timeline run each, the median box of a copy (a read
    # or write that moved a client's bytes; and, in the JSON, of a wait in progress when a
    # request came).
    boxes = {}
    for k in kinds[1:]:
        with tempfile.TemporaryDirectory(prefix="iolab-timeline-") as tmp:
            r = subprocess.run([sys.executable, os.path.abspath(__file__), "--tracer", k, prog, name,
                                tmp, *extra], stdout=subprocess.DEVNULL)
            if r.returncode != 0:
                fail(f"the {k} timeline run failed")
            with open(os.path.join(tmp, name + ".json")) as f:
                d = json.load(f)
        fds = {q["server_fd"] for q in d["requests"]}
        sv = [c for c in d["calls"] if c["side"] == "server" and c["start_s"] >= 0]
        cp = [c["dur_s"] * 1e6 for c in sv if c["class"] == "copy" and c["fd"] in fds]
        wt = [c["dur_s"] * 1e6 for c in sv if c["class"] == "wait" and any(
            c["start_s"] <= q["send_s"] <= c["start_s"] + c["dur_s"] for q in d["requests"])]
        boxes[k] = {"copy_us": statistics.median(cp) if cp else None,
                    "copy_max_us": max(cp) if cp else None,
                    "wait_us": statistics.median(wt) if wt else None}
    load = os.getloadavg()[0]
    res = {"server": name, "runs": opt.overhead, "loadavg_1min": load, "cpus": os.cpu_count(),
           "median_rtt_us": med, "per_run_median_rtt_us": rtts, "drawn_boxes": boxes}
    with open(os.path.join(outdir, name + ".overhead.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(f"{name}: median round trip of one {SIZE} B echo, {opt.overhead} runs x {CLIENTS * ECHOES} "
          f"echoes each (1-min load average {load:.1f} on {os.cpu_count()} CPUs)")
    print(f"| tracer | median round trip | vs untraced | a {SIZE} B read/write drawn as: median | longest |")
    print("|---|---:|---:|---:|---:|")
    fmt = lambda v: "—" if v is None else (f"{v:.0f} µs" if v < 1000 else f"{v / 1000:.1f} ms")  # noqa: E731
    for k in kinds:
        b = boxes.get(k, {})
        print(f"| {k} | {med[k]:.0f} µs | {med[k] / med['untraced']:.1f}x | "
              f"{fmt(b.get('copy_us'))} | {fmt(b.get('copy_max_us'))} |")
    sys.exit(0)


# ---- run -------------------------------------------------------------------------
tracer = pick_tracer(opt.tracer)
srv, host, port = start_server(tracer)
lg = None
if opt.loadgen:
    t_lg = tracer.clock()
    lg_cmd = [opt.loadgen, f"{host}:{port}", *shlex.split(opt.loadgen_args)]
    lg = Proc(tracer, lg_cmd)
    lg_out = lg.p.stdout.read()
    lg.p.wait(timeout=120)
    if lg.p.returncode != 0:
        srv.stop()
        fail(f"loadgen exited {lg.p.returncode}: {lg_out.strip()[-300:]}")
    requests, errors, connects, client_tids, ports, fd_of_port = [], [], [t_lg], {}, {}, {}
else:
    requests, errors, connects, client_tids, ports, fd_of_port = workload(tracer, srv, host, port)
    time.sleep(0.05)
server_pid = srv.prog_pid()
srv.stop()
if isinstance(tracer, Ftrace):
    tracer.stop()
if errors:
    fail("; ".join(errors))

# ---- parse -----------------------------------------------------------------------
calls, signals, sleeps, oncpu, wakes, comm_of, tgid_of = [], [], {}, {}, [], {}, {}
lost = 0
if isinstance(tracer, Strace):
    RE_LINE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")
    RE_FULL = re.compile(r"^(\w+)\((.*)\)\s+=\s+(.*?)(?:\s+<(\d+\.\d+)>)?$")
    RE_UNF = re.compile(r"^(\w+)\((.*?)\s*<unfinished \.\.\.>$")
    RE_RES = re.compile(r"^<\.\.\. (\w+) resumed>(.*?)\)?\s+=\s+(.*?)(?:\s+<(\d+\.\d+)>)?$")
    RE_SIG = re.compile(r"^--- (SIG\w+)")
    pending = {}
    with open(tracer.file, errors="replace") as f:
        for raw in f:
            m = RE_LINE.match(raw.rstrip("\n"))
            if not m:
                continue
            tid, ts, rest = int(m.group(1)), float(m.group(2)), m.group(3)
            tgid_of.setdefault(tid, server_pid)
            c = None
            if (mm := RE_FULL.match(rest)):
                c = (mm.group(1), ts, mm.group(2), mm.group(3), float(mm.group(4) or 0))
            elif (mm := RE_UNF.match(rest)):
                pending[tid] = (mm.group(1), ts, mm.group(2))
            elif (mm := RE_RES.match(rest)):
                p = pending.pop(tid, None)
                if p:
                    c = (p[0], p[1], p[2] + " " + mm.group(2), mm.group(3), float(mm.group(4) or 0))
            elif (mm := RE_SIG.match(rest)):
                signals.append({"tid": tid, "t_s": ts, "signal": mm.group(1)})
            if c:
                calls.append({"tid": tid, "name": c[0], "start_abs": c[1], "args": c[2].strip(),
                              "ret": c[3], "dur_s": c[4]})
else:
    text, lost = tracer.read()
    tracer.close()
    NR = {}
    try:
        with open("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"
                  if os.uname().machine == "x86_64" else
                  f"/usr/include/{os.uname().machine}-linux-gnu/asm/unistd.h") as f:
            for ln in f:
                if (mm := re.match(r"#define __NR_(\w+)\s+(\d+)", ln)):
                    NR[int(mm.group(2))] = mm.group(1)
    except OSError:
        pass
    FCNTL = {0: "F_DUPFD", 1: "F_GETFD", 2: "F_SETFD", 3: "F_GETFL", 4: "F_SETFL", 8: "F_SETOWN",
             9: "F_GETOWN", 10: "F_SETSIG", 11: "F_GETSIG", 15: "F_SETOWN_EX", 1030: "F_DUPFD_CLOEXEC"}
    FUTEX = {0: "FUTEX_WAIT", 1: "FUTEX_WAKE", 5: "FUTEX_WAKE_OP", 9: "FUTEX_WAIT_BITSET",
             10: "FUTEX_WAKE_BITSET"}
    ARGC = {"read": 3, "write": 3, "readv": 3, "writev": 3, "recvfrom": 6, "sendto": 6,
            "recvmsg": 3, "sendmsg": 3, "accept": 3, "accept4": 4, "connect": 3, "close": 1,
            "epoll_wait": 4, "epoll_pwait": 5, "epoll_pwait2": 5, "epoll_ctl": 4, "select": 5,
            "pselect6": 6, "poll": 3, "ppoll": 4, "futex": 6, "io_uring_enter": 6,
            "rt_sigtimedwait": 4, "rt_sigqueueinfo": 3, "fcntl": 3, "io_getevents": 5,
            "io_submit": 3, "clock_nanosleep": 4, "nanosleep": 2, "shutdown": 2, "tgkill": 3,
            "getsockopt": 5, "setsockopt": 5, "getpeername": 3, "getsockname": 3}

    def signed(v):
        return v - (1 << 64) if v >= 1 << 63 else v

    def fmt_args(nm, a):
        n = ARGC.get(nm, 6)
        out = []
        for k, v in enumerate(a[:n]):
            s = signed(v)
            if nm == "fcntl" and k == 1:
                out.append(FCNTL.get(v, str(v)))
            elif nm == "fcntl" and k == 2 and a[1] == 4:
                fl = [f for f, b in (("O_NONBLOCK", 0o4000), ("O_ASYNC", 0o20000)) if v & b]
                out.append("|".join(fl + ([f"{v & ~0o24000:#o}"] if v & ~0o24000 else [])) or "0")
            elif nm == "futex" and k == 1:
                out.append(FUTEX.get(v & 127, str(v & 127)) + ("_PRIVATE" if v & 128 else ""))
            elif nm == "io_uring_enter" and k == 3:
                out.append("IORING_ENTER_GETEVENTS" if v & 1 else str(v))
            elif v == 0xffffffff and k > 0:
                out.append("-1")
            elif -4096 < s < 1 << 20:
                out.append(str(s))
            else:
                out.append(f"{v:#x}")
        return ", ".join(out)

    RE_EV = re.compile(r"^\s*(.*?)-(\d+)\s+\(\s*([-\d]+)\)\s+\[(\d+)\]\s+(?:(\S+)\s+)?(\d+\.\d+):\s+(\w+):\s*(.*)$")
    RE_ENTER = re.compile(r"NR (-?\d+) \(([0-9a-f, ]*)\)")
    RE_EXIT = re.compile(r"NR (-?\d+) = (-?\d+)")
    RE_SW = re.compile(r"prev_comm=(.*) prev_pid=(\d+) prev_prio=\d+ prev_state=(\S+) ==> "
                       r"next_comm=(.*) next_pid=(\d+)")
    RE_WK = re.compile(r"comm=(.*) pid=(\d+) prio=")
    pending, last_switch = {}, {}
    for ln in text.splitlines():
        if ln.startswith("#"):
            continue
        m = RE_EV.match(ln)
        if not m:
            if "LOST" in ln:
                lost += 1
            continue
        comm, tid, tg, flags, ts, ev, rest = m.group(1), int(m.group(2)), m.group(3), \
            m.group(5) or "", float(m.group(6)), m.group(7), m.group(8)
        if ev == "sys_enter" and (mm := RE_ENTER.match(rest)):
            comm_of[tid] = comm
            if tg.lstrip("-").isdigit() and int(tg) > 0:
                tgid_of[tid] = int(tg)
            nr = int(mm.group(1))
            a = [int(x, 16) for x in mm.group(2).split(",") if x.strip()]
            pending[tid] = (nr, ts, a)
        elif ev == "sys_exit" and (mm := RE_EXIT.match(rest)):
            nr, r = int(mm.group(1)), int(mm.group(2))
            p = pending.pop(tid, None)
            if not p or p[0] != nr:
                continue
            nm = NR.get(nr, f"syscall_{nr}")
            if -4096 < r < 0:
                ret = f"-1 {errno.errorcode.get(-r, str(-r))} ({os.strerror(-r)})"
            else:
                ret = str(r)
            calls.append({"tid": tid, "name": nm, "start_abs": p[1], "args": fmt_args(nm, p[2]),
                          "ret": ret, "dur_s": round(ts - p[1], 6)})
        elif ev == "sched_switch" and (mm := RE_SW.match(rest)):
            prev, state, nxt = int(mm.group(2)), mm.group(3), int(mm.group(5))
            comm_of.setdefault(nxt, mm.group(4))
            # prev leaves the CPU: its on-CPU stretch ends; asleep unless preempted (R)
            oncpu.setdefault(prev, []).append(("off", ts))
            if not state.startswith("R"):
                sleeps.setdefault(prev, []).append(ts)
            oncpu.setdefault(nxt, []).append(("on", ts))
        elif ev == "sched_waking" and (mm := RE_WK.match(rest)):
            # in a hard interrupt (a timer expiring, flags h/H/z) the task that happened to
            # be running did not cause the wake-up; a softirq (s) in a task is the network
            # receive path that its own send ran, on loopback: it did
            hard = len(flags) > 2 and flags[2] in "hHz"
            wakes.append({"waker_tid": None if hard else tid,
                          "waker_comm": "interrupt" if hard else comm,
                          "wakee_tid": int(mm.group(2)), "t_abs": ts})
    if not calls:
        fail("ftrace recorded no system calls (is another tracer using the events?)")

if not calls:
    fail("strace recorded no system calls")

# ---- who is who: lanes ---------------------------------------------------------------
lg_pid = lg.prog_pid() if lg else None
tid_order = []
for c in sorted(calls, key=lambda c: c["start_abs"]):
    if c["tid"] not in tid_order:
        tid_order.append(c["tid"])
client_tid_set = set(client_tids.values())


def process_of(tid):
    if tid in client_tid_set:
        return "client"
    tg = tgid_of.get(tid)
    if lg_pid and (tg == lg_pid or tid == lg_pid):
        return "loadgen"
    if tg == server_pid or tid == server_pid or isinstance(tracer, Strace):
        return "server"
    return None


server_tids = sorted((t for t in tid_order if process_of(t) == "server"),
                     key=lambda t: (t != server_pid, tid_order.index(t)))
lg_tids = sorted((t for t in tid_order if process_of(t) == "loadgen"),
                 key=lambda t: (t != lg_pid, tid_order.index(t)))
calls = [c for c in calls if process_of(c["tid"])]


def ret_int(r):
    mm = re.match(r"^(-?\d+)", r)
    return int(mm.group(1)) if mm else None


for c in calls:
    mm = re.match(r"^(\d+)(?:,|$)", c["args"])
    c["fd"] = int(mm.group(1)) if mm and c["name"] not in WAIT_CALLS else None


def slept(c):
    """ftrace: the thread left the CPU asleep during the call; strace: it took over 1 ms."""
    if isinstance(tracer, Strace):
        return c["dur_s"] >= BLOCKED_S
    lst = sleeps.get(c["tid"], [])
    k = bisect.bisect_left(lst, c["start_abs"])
    return k < len(lst) and lst[k] <= c["start_abs"] + c["dur_s"]


def classify(c):
    n, r = c["name"], c["ret"]
    eagain = "EAGAIN" in r
    if n == "io_uring_enter":
        a = [x.strip() for x in c["args"].split(",")]
        waits = len(a) > 3 and "GETEVENTS" in a[3] and a[2].isdigit() and int(a[2]) > 0
        return ("wait" if waits else "other"), False
    if n in WAIT_CALLS:
        if r == "0" and n not in ("nanosleep", "clock_nanosleep") and not slept(c):
            c["spin"] = True   # a poll with a zero timeout that found nothing: no wait at all
            return "other", False
        return "wait", False
    if n == "futex" and "WAIT" in c["args"]:
        return "wait", False
    if n in BLOCKABLE and not eagain and slept(c):
        return "wait", False
    if n in COPY_CALLS and not eagain and (ret_int(r) or 0) >= 0 and not r.startswith("-1"):
        return "copy", False
    return "other", eagain


for c in calls:
    c["class"], c["eagain"] = classify(c)
for v in sleeps.values():
    v.sort()

# t=0 is just before the first client connects: the server's start-up calls
# (loader, mmap, socket set-up) are in the JSON with negative start_s but not drawn.
t0 = min(connects) - 0.002
if lg:  # loadgen: t=0 just before its first connect (its own start-up is not drawn)
    t0 = min([c["start_abs"] for c in calls if c["name"] == "connect" and c["tid"] in lg_tids] or
             [t0 + 0.002]) - 0.00005
for c in calls:
    c["start_s"] = round(c["start_abs"] - t0, 6)
for s in signals:
    s["t_s"] = round(s["t_s"] - t0, 6)
calls.sort(key=lambda c: c["start_abs"])
view_end = None  # loadgen: the picture ends just after its last data call (not its report)
if lg:
    data = [c["start_abs"] + c["dur_s"] for c in calls if c["tid"] in lg_tids and
            c["name"] in ("sendto", "recvfrom", "sendmsg", "recvmsg") and c["start_abs"] >= t0]
    view_end = max(data) + 0.0002 if data else None


def live(c):
    """the workload part: not the start-up (nor, with loadgen, what comes after it)"""
    return c["start_s"] + c["dur_s"] >= 0 and (view_end is None or c["start_abs"] <= view_end)


# Join each request to the calls that served it: the wait in progress when it
# was sent (any server thread), then the first copy on its descriptor that
# ended after the send, and the next copy (the echo) on the same descriptor.
requests.sort(key=lambda r: (r["client"], r["n"]))
server_set = set(server_tids)
for r in requests:
    ts = r["send_s"]
    served = []
    fd = fd_of_port.get(r["port"])
    r["server_fd"] = fd
    for i, c in enumerate(calls):
        if c["tid"] in server_set and c["class"] == "wait" and \
                (c["name"] in WAIT_CALLS or c["name"] == "io_uring_enter" or
                 (fd is not None and c["fd"] == fd and c["name"] in BLOCKABLE)) and \
                c["start_abs"] <= ts <= c["start_abs"] + c["dur_s"]:
            served.append(i)
    if fd is not None:
        got = 0
        for i, c in enumerate(calls):
            if c["tid"] in server_set and c["fd"] == fd and c["name"] in COPY_CALLS | BLOCKABLE and \
                    c["start_abs"] + c["dur_s"] >= ts and c["start_abs"] <= r["recv_s"] and \
                    not c["eagain"]:
                served.append(i)
                got += 1
                if got == 2:
                    break
    r["served_by"] = sorted(set(served))
    r["send_s"], r["recv_s"] = round(r["send_s"] - t0, 6), round(r["recv_s"] - t0, 6)

# Lanes: server threads (main first), then the clients (python threads or loadgen's threads).
lanes = []
fd_client = {fd: i for i, fd in ((i, fd_of_port.get(p)) for i, p in ports.items()) if fd is not None}


aio_server = any(c["name"] == "rt_sigqueueinfo" and c["tid"] in server_tids for c in calls)


def role(tid, k):
    if k == 0:
        return "server main thread"
    mine = [c for c in calls if c["tid"] == tid and live(c)]
    if comm_of.get(tid, "").startswith("iou-"):
        return "io_uring worker"
    if any(c["name"] == "rt_sigqueueinfo" for c in mine):
        return "glibc aio helper"
    served = sorted({fd_client[c["fd"]] for c in mine if c["fd"] in fd_client})
    if not served and any(c["name"] == "shutdown" for c in mine):
        return "stop-signal watcher"  # common/signals.hpp: wakes the blocked accept at SIGTERM
    if len(served) == 1:
        return f"worker (client {served[0]})"
    if not served and aio_server:
        # glibc keeps a helper that finished its request waiting a second
        # for the next one (aio_init's idle time): in the window it may do
        # nothing but wait, and has no signal to send.
        return "glibc aio helper"
    return "worker" if served else "thread"


for k, tid in enumerate(server_tids):
    lanes.append({"name": f"{role(tid, k)} {tid}", "kind": "server-thread", "tid": tid,
                  "process": "server"})
if lg:
    for k, tid in enumerate(lg_tids):
        lanes.append({"name": f"loadgen {'main' if k == 0 else 'worker'} {tid}", "kind": "client",
                      "tid": tid, "process": "loadgen"})
else:
    for i in range(CLIENTS):
        lanes.append({"name": f"client {i}{' (slow)' if i == SLOW else ''}", "kind": "client",
                      "port": ports.get(i), "server_fd": fd_of_port.get(ports.get(i)),
                      "tid": client_tids.get(i), "process": "client"})
lane_of_tid = {ln["tid"]: k for k, ln in enumerate(lanes) if ln.get("tid") is not None}
calls = [c for c in calls if c["tid"] in lane_of_tid]
for c in calls:
    c["lane"] = lane_of_tid[c["tid"]]
    c["side"] = lanes[c["lane"]]["process"]
for s in signals:
    s["lane"] = lane_of_tid.get(s.pop("tid"), 0)
for r in requests:
    r["lane"] = len(server_tids) + r["client"]
for ln in lanes:
    ln["counts"] = {"wait": 0, "copy": 0, "other": 0, "eagain": 0}
for c in calls:
    if live(c):
        ln = lanes[c["lane"]]
        ln["counts"][c["class"]] += 1
        ln["counts"]["eagain"] += c["eagain"]
for k, ln in enumerate(lanes):
    if ln["process"] == "client":
        ln["counts"]["requests"] = sum(1 for r in requests if r["lane"] == k)

# On-CPU stretches (ftrace): from each switch-in to the next switch-out of the same thread.
end_abs = view_end or max(max(c["start_abs"] + c["dur_s"] for c in calls),
                          max((r["recv_s"] + t0 for r in requests), default=0))
for ln in lanes:
    ev = sorted(oncpu.get(ln.get("tid"), []), key=lambda e: e[1])
    spans, on_at = [], None
    if ev and ev[0][0] == "off":  # running since its first traced call (or the event)
        on_at = min([ev[0][1]] + [c["start_abs"] for c in calls if c["tid"] == ln.get("tid")][:1])
    for kind, ts in ev:
        if kind == "on":
            on_at = ts if on_at is None else on_at
        elif on_at is not None:
            spans.append((on_at, ts))
            on_at = None
    if on_at is not None:
        spans.append((on_at, max(on_at, end_abs)))
    ln["on_cpu"] = [[round(max(a - t0, 0.0), 6), round(min(b, end_abs) - t0, 6)] for a, b in spans
                    if b - t0 >= 0 and a <= end_abs]

# Wake-ups (ftrace): a traced thread woken by another traced thread of the other side, or
# inside one program (an aio helper waking the main thread); the woken thread ran at its
# next switch-in. The call each side was in is looked up.
calls_of = {}
for i, c in enumerate(calls):
    calls_of.setdefault(c["lane"], []).append(i)


def call_at(lane, t_abs):
    for i in calls_of.get(lane, []):
        c = calls[i]
        if c["start_abs"] <= t_abs <= c["start_abs"] + c["dur_s"]:
            return i
    return None


edges = []
for w in wakes:
    a, b = lane_of_tid.get(w["waker_tid"]) if w["waker_tid"] else None, lane_of_tid.get(w["wakee_tid"])
    if b is None or w["t_abs"] < t0 or w["t_abs"] > end_abs:
        continue
    if a is not None and lanes[a]["process"] == "client" and lanes[b]["process"] == "client":
        continue  # the python clients waking each other (their interpreter lock): not the server's
    ons = [ts for kind, ts in oncpu.get(w["wakee_tid"], []) if kind == "on" and ts >= w["t_abs"]]
    run = min(ons) if ons else None
    edges.append({"waker_lane": a, "waker": w["waker_comm"] if a is None else lanes[a]["name"],
                  "wakee_lane": b, "t_s": round(w["t_abs"] - t0, 6),
                  "run_s": round(run - t0, 6) if run is not None else None,
                  "waker_call": call_at(a, w["t_abs"]) if a is not None else None,
                  "wakee_call": call_at(b, w["t_abs"])})

drawn_n = MAX_DRAWN
startup = sum(1 for c in calls if not live(c))
nothing = lambda c: c["eagain"] or c.get("spin", False)  # noqa: E731 - retries, thinned first
keep = [i for i, c in enumerate(calls) if not nothing(c) and live(c)][:3 * drawn_n]
eag = [i for i, c in enumerate(calls) if nothing(c) and live(c)]
room = drawn_n - len(keep)
if eag and room > 0:
    step = max(1, -(-len(eag) // room))
    keep += eag[::step][:room]
keep = sorted(keep)
for i in keep:
    calls[i]["drawn"] = True
cut = len(calls) - len(keep) - startup

if isinstance(tracer, Strace):
    tracer_desc = "strace -f -ttt -T (the tracee is stopped at every call: boxes stretched)"
else:
    tracer_desc = ("ftrace: kernel tracepoints raw_syscalls:sys_enter/sys_exit, sched_switch, "
                   "sched_waking (true durations, µs resolution)")
out_calls = [{"lane": c["lane"], "side": c["side"], "name": c["name"], "start_s": c["start_s"],
              "dur_s": c["dur_s"], "class": c["class"], "ret": c["ret"], "args": c["args"],
              "fd": c["fd"], "eagain": c["eagain"], "empty_poll": c.get("spin", False),
              "slept": slept(c) if tracer.name == "ftrace" else None,
              "drawn": bool(c.get("drawn"))}
             for c in calls]
end_s = round(end_abs - t0, 6)
server_live = [c for c in calls if live(c) and c["side"] == "server"]
doc = {"server": name, "command": [os.path.basename(prog), "--port", "0", *extra],
       "tracer": tracer.name, "tracer_detail": tracer_desc, "lost_events": lost,
       "t0_s": t0, "clock": "CLOCK_MONOTONIC" if tracer.name == "ftrace" else "wall clock",
       "span_s": end_s,
       "workload": ({"loadgen": [os.path.basename(opt.loadgen), "HOST:PORT",
                                 *shlex.split(opt.loadgen_args)]} if lg else
                    {"clients": CLIENTS, "echoes_each": ECHOES, "bytes": SIZE,
                     "slow_client": SLOW, "slow_gap_s": SLOW_GAP}),
       "lanes": lanes, "calls": out_calls, "requests": requests, "signals": signals,
       "wakeups": edges,
       "totals": {k: sum(1 for c in server_live if c["class"] == k) for k in ("wait", "copy", "other")}
       | {"eagain": sum(c["eagain"] for c in server_live), "calls": len(calls),
          "server_calls": len(server_live), "drawn": len(keep), "cut": cut, "startup": startup}}
with open(os.path.join(outdir, name + ".json"), "w") as f:
    json.dump(doc, f, indent=1)

# ---- Chrome Trace Event JSON (Perfetto) ---------------------------------------------------
US = lambda s: round(s * 1e6, 3)  # noqa: E731
pid_of = {"server": server_pid or 1, "client": os.getpid(), "loadgen": lg_pid or 2}
ev = [{"ph": "M", "name": "process_name", "pid": pid_of["server"], "tid": 0,
       "args": {"name": f"{name} (server, pid {server_pid})"}},
      {"ph": "M", "name": "process_sort_index", "pid": pid_of["server"], "tid": 0,
       "args": {"sort_index": 0}}]
if lg:
    ev.append({"ph": "M", "name": "process_name", "pid": pid_of["loadgen"], "tid": 0,
               "args": {"name": f"loadgen (pid {lg_pid})"}})
else:
    ev.append({"ph": "M", "name": "process_name", "pid": pid_of["client"], "tid": 0,
               "args": {"name": "clients (timeline.py threads)"}})
tid_of_lane = []
for k, ln in enumerate(lanes):
    tid = ln.get("tid") or (900000 + k)
    tid_of_lane.append(tid)
    ev.append({"ph": "M", "name": "thread_name", "pid": pid_of[ln["process"]], "tid": tid,
               "args": {"name": ln["name"]}})
    ev.append({"ph": "M", "name": "thread_sort_index", "pid": pid_of[ln["process"]], "tid": tid,
               "args": {"sort_index": k}})
slices = {}  # lane -> [(start_us, end_us)]
for i, c in enumerate(calls):
    if not live(c):
        continue
    ln = lanes[c["lane"]]
    ts, dur = US(max(c["start_s"], 0.0)), US(c["start_s"] + c["dur_s"] - max(c["start_s"], 0.0))
    slices.setdefault(c["lane"], []).append((ts, ts + dur))
    ev.append({"ph": "X", "name": c["name"], "cat": c["class"], "ts": ts, "dur": dur,
               "pid": pid_of[ln["process"]], "tid": tid_of_lane[c["lane"]],
               "args": {"args": c["args"], "ret": c["ret"], "fd": c["fd"], "class": c["class"],
                        "eagain": c["eagain"]}})
flow_id = 0
for r in requests:
    ln = lanes[r["lane"]]
    a, b = US(r["send_s"]), US(r["recv_s"])
    for s0, s1 in slices.get(r["lane"], []):  # enclose the client's own calls it overlaps
        if s0 < b and s1 > a:
            a, b = min(a, s0), max(b, s1)
    ev.append({"ph": "X", "name": f"echo {r['n']}", "cat": "request", "ts": a, "dur": round(b - a, 3),
               "pid": pid_of["client"], "tid": tid_of_lane[r["lane"]],
               "args": {"client": r["client"], "bytes": r["bytes"], "server_fd": r["server_fd"],
                        "round_trip_us": US(r["recv_s"] - r["send_s"])}})
    for i in r["served_by"]:
        c = calls[i]
        if not live(c):
            continue
        flow_id += 1
        # Where the request enters the serving call: at the send, or at the
        # call's start if it began later. Not before the send even when the
        # call seems to end before it: strace stamps each process at its own
        # syscall boundaries, a microsecond apart at times, and a flow may
        # not end before it starts.
        t_in = US(max(c["start_s"], r["send_s"]))
        ev.append({"ph": "s", "id": flow_id, "name": "request", "cat": "request",
                   "ts": US(r["send_s"]), "pid": pid_of["client"], "tid": tid_of_lane[r["lane"]]})
        ev.append({"ph": "f", "bp": "e", "id": flow_id, "name": "request", "cat": "request",
                   "ts": t_in, "pid": pid_of[lanes[c["lane"]]["process"]], "tid": tid_of_lane[c["lane"]]})
for e_ in edges:
    if e_["waker_lane"] is None or e_["waker_call"] is None or e_["wakee_call"] is None:
        continue
    flow_id += 1
    wl, bl = lanes[e_["waker_lane"]], lanes[e_["wakee_lane"]]
    ev.append({"ph": "s", "id": flow_id, "name": "wake-up", "cat": "wakeup", "ts": US(e_["t_s"]),
               "pid": pid_of[wl["process"]], "tid": tid_of_lane[e_["waker_lane"]]})
    ev.append({"ph": "f", "bp": "e", "id": flow_id, "name": "wake-up", "cat": "wakeup",
               "ts": US(e_["t_s"]), "pid": pid_of[bl["process"]], "tid": tid_of_lane[e_["wakee_lane"]]})
with open(os.path.join(outdir, name + ".trace.json"), "w") as f:
    json.dump({"traceEvents": ev, "displayTimeUnit": "ns",
               "otherData": {"server": name, "tracer": tracer_desc,
                             "t0": f"{t0:.6f} s ({doc['clock']})"}}, f)

# ---- SVG -------------------------------------------------------------------------------
W, LEFT, RIGHT, TOP, LANE_H = 1200, 190, 20, 92, 28
H = TOP + LANE_H * len(lanes) + 64
FONT = 11
text_w = lambda s, size=FONT: 0.62 * size * len(s)  # noqa: E731 - sans-serif, digits and letters
# Time axis: true inside busy stretches; a stretch where no traced thread is on a CPU, no
# call starts or ends and no request is sent or answered, longer than GAP_S, is drawn
# GAP_W wide with a break mark and its real length.
GAP_S = 0.004
live_calls = [c for c in calls if live(c)]
pts = sorted({0.0, end_s} | {max(0.0, c["start_s"]) for c in live_calls}
             | {min(end_s, c["start_s"] + c["dur_s"]) for c in live_calls}
             | {r["send_s"] for r in requests} | {r["recv_s"] for r in requests}
             | {max(0.0, t) for ln in lanes for sp in ln["on_cpu"] for t in sp}
             | {e_["t_s"] for e_ in edges} | {min(end_s, e_["run_s"]) for e_ in edges if e_["run_s"] is not None})
busy_iv = sorted((max(0.0, a), b) for ln in lanes for a, b in ln["on_cpu"])
gaps = []
for a, b in zip(pts, pts[1:]):
    if b - a <= GAP_S:
        continue
    k = bisect.bisect_right([x for x, _ in busy_iv], b)  # someone on CPU inside (a, b)?
    if any(x < b and y > a for x, y in busy_iv[:k]):
        continue
    gaps.append((a, b))
busy = end_s - sum(b - a for a, b in gaps)
GAP_W = max(busy, 1e-3) * 0.03
vis_span = busy + GAP_W * len(gaps)
knots = [(0.0, 0.0)]
for a, b in gaps:
    va = knots[-1][1] + (a - knots[-1][0])
    knots += [(a, va), (b, va + GAP_W)]
knot_t = [kt for kt, _ in knots]


def V(t):
    # knots alternate: (gap start, v), (gap end, v + GAP_W); linear in between
    k = bisect.bisect_right(knot_t, t) - 1
    rt, vt = knots[max(k, 0)]
    if k % 2 == 1 and k + 1 < len(knots):  # inside a gap
        nrt, nvt = knots[k + 1]
        return vt + (nvt - vt) * (t - rt) / (nrt - rt)
    return vt + (t - rt)


PX = (W - LEFT - RIGHT) / (vis_span * 1.01)   # pixels per second of busy time
X = lambda t: LEFT + PX * V(t)  # noqa: E731
COL = {"wait": "#3b6fd0", "copy": "#e8850c", "other": "#a8a8a8", "eagain": "#d62d2d",
       "client": "#2e9e4f", "cpu": "#f3dfa2", "wake": "#8a2be2"}
e = lambda s: html.escape(str(s), quote=True)  # noqa: E731
if lg:
    wl = f"loadgen {opt.loadgen_args}"
else:
    wl = (f"{CLIENTS} clients x {ECHOES} echoes of {SIZE} B, client {SLOW} waits "
          f"{SLOW_GAP * 1000:.0f} ms before each")
title = f"{name}{' — ' + opt.title_extra if opt.title_extra else ''} — traced by {tracer.name}"
o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
     f'font-family="sans-serif" font-size="{FONT}">',
     '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" '
     f'markerHeight="6" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{COL["wake"]}"/>'
     '</marker></defs>',
     f'<rect width="{W}" height="{H}" fill="#fff"/>',
     f'<text x="8" y="16" font-size="14" font-weight="bold">{e(title)}</text>',
     f'<text x="8" y="32" fill="#444">{e(" ".join(doc["command"]))}; {e(wl)}; '
     f'{len(server_live)} server calls after start-up; {len(keep)} calls drawn'
     f'{f", {cut} not drawn (retries that found nothing thinned first)" if cut else ""}'
     f'{f"; {lost} events LOST" if lost else ""}</text>',
     f'<text x="8" y="47" fill="#444">tracer: {e(tracer_desc)}</text>']
lx, ly = 8, 58
legend = [("wait (phase 1)", COL["wait"]), ("copy (phase 2)", COL["copy"]), ("other call", COL["other"]),
          ("nothing ready (EAGAIN, empty poll)", COL["eagain"])]
if requests:
    legend.append(("request: send to echo", COL["client"]))
if tracer.name == "ftrace":
    legend.append(("on a CPU (lane shaded)", COL["cpu"]))
for label, col in legend:
    o.append(f'<rect x="{lx}" y="{ly}" width="12" height="10" fill="{col}"/>'
             f'<text x="{lx + 16}" y="{ly + 9}">{e(label)}</text>')
    lx += 28 + text_w(label)
lx, ly = 8, 74  # second row: the lines
if requests:
    o.append(f'<line x1="{lx}" y1="{ly + 5}" x2="{lx + 18}" y2="{ly + 5}" stroke="#2e9e4f" '
             f'stroke-dasharray="3,2"/><text x="{lx + 22}" y="{ly + 9}">request joined to the calls '
             f'that served it</text>')
    lx += 30 + text_w("request joined to the calls that served it")
if tracer.name == "ftrace":
    o.append(f'<line x1="{lx}" y1="{ly + 5}" x2="{lx + 22}" y2="{ly + 5}" stroke="{COL["wake"]}" '
             f'marker-end="url(#arrow)"/><text x="{lx + 26}" y="{ly + 9}">wake-up: waker to when '
             f'the woken thread ran</text>')
# scale bar: a round length of true time
for sb in (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5, 1.0):
    if sb * PX >= 40:
        break
sb_txt = f"{sb * 1e6:.0f} µs" if sb < 1e-3 else f"{sb * 1e3:.0f} ms"
o.append(f'<line x1="{W - RIGHT - sb * PX:.1f}" y1="{TOP - 8}" x2="{W - RIGHT}" y2="{TOP - 8}" '
         f'stroke="#000" stroke-width="2"/><text x="{W - RIGHT - sb * PX - 4:.1f}" y="{TOP - 4}" '
         f'text-anchor="end">{sb_txt} of true time</text>')
for k, ln in enumerate(lanes):
    y = TOP + k * LANE_H
    o.append(f'<rect x="0" y="{y}" width="{W}" height="{LANE_H}" fill="{"#f4f4f4" if k % 2 else "#fff"}"/>'
             f'<text x="6" y="{y + 18}">{e(ln["name"])}</text>')
    for a, b in ln["on_cpu"]:
        x1, x2 = X(max(0.0, a)), X(b)
        o.append(f'<rect x="{x1:.1f}" y="{y + 1}" width="{max(0.6, x2 - x1):.1f}" height="{LANE_H - 2}" '
                 f'fill="{COL["cpu"]}"><title>on a CPU {a * 1000:.3f}–{b * 1000:.3f} ms '
                 f'({(b - a) * 1e6:.0f} µs)</title></rect>')
ya = TOP + LANE_H * len(lanes)
o.append(f'<line x1="{LEFT}" y1="{ya}" x2="{W - RIGHT}" y2="{ya}" stroke="#000"/>')
# A tick at the start of every busy stretch (true time since t=0), and a break mark with
# the length of every compressed pause; a label is left out where it would overlap the last.
# Between them, inside each busy stretch, ticks at round multiples of true time at least
# 90 px apart. Labels are placed left to right and one that would overlap is left out.
for step in (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5, 1, 2, 5):
    if step * PX >= 90:
        break
dec = max(1, math.ceil(-math.log10(step * 1000) - 1e-9))
ticks = {0.0: True} | {b: True for _, b in gaps}
bounds = [0.0] + [x for g in gaps for x in g] + [end_s]
for a, b in zip(bounds[::2], bounds[1::2]):  # the busy stretches
    k = math.floor(a / step) + 1
    while k * step < b - step / 4:
        ticks.setdefault(round(k * step, 9), False)
        k += 1
last_end = -1e9
for a in sorted(ticks):
    x = X(a)
    o.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{ya + 4}" stroke="#ddd"/>')
    lab = f"{a * 1000:.{dec if not ticks[a] else max(dec, 1)}f} ms"
    half = text_w(lab) / 2
    if x - half >= last_end + 6 and x + half <= W:
        o.append(f'<text class="tick" x="{x:.1f}" y="{ya + 16}" text-anchor="middle">{lab}</text>')
        last_end = x + half
last_end = -1e9
for a, b in gaps:
    x1, x2 = X(a), X(b)
    o.append(f'<path d="M{x1 + 1:.1f},{ya + 5} l3,-10 M{x2 - 4:.1f},{ya + 5} l3,-10" stroke="#000"/>')
    lab = f"{(b - a) * 1000:.0f}"
    xm, half = (x1 + x2) / 2, text_w(lab, 9) / 2
    if xm - half >= last_end + 3:
        o.append(f'<text class="pause" x="{xm:.1f}" y="{ya + 30}" text-anchor="middle" fill="#666" '
                 f'font-size="9">{lab}</text>')
        last_end = xm + half
o.append(f'<text x="{LEFT}" y="{ya + 44}" fill="#666" font-size="10">ms since t=0 at the start of '
         f'each busy stretch. The axis is true time, except that a pause longer than '
         f'{GAP_S * 1000:.0f} ms in which no traced thread ran</text>'
         f'<text x="{LEFT}" y="{ya + 56}" fill="#666" font-size="10">is compressed: break marks, and '
         f'the small grey number is the pause in ms.</text>')
for i in keep:
    c = calls[i]
    y = TOP + c["lane"] * LANE_H
    x = X(max(0.0, c["start_s"]))
    w = max(1.0, X(min(end_s, c["start_s"] + c["dur_s"])) - x)
    col = COL["eagain"] if nothing(c) else COL[c["class"]]
    o.append(f'<rect x="{x:.1f}" y="{y + 7}" width="{w:.1f}" height="{LANE_H - 14}" fill="{col}">'
             f'<title>{e(c["name"])}({e(c["args"][:80])}) = {e(c["ret"][:60])}; '
             f'{c["dur_s"] * 1e6:.0f} µs at {c["start_s"] * 1000:.3f} ms; {c["class"]}</title></rect>')
for s in signals:
    x, y = X(s["t_s"]), TOP + s["lane"] * LANE_H
    o.append(f'<path d="M{x:.1f},{y + 1} l-3,-0 l3,5 l3,-5 z" fill="#a0522d">'
             f'<title>{e(s["signal"])} delivered at {s["t_s"] * 1000:.3f} ms</title></path>')
for r in requests:
    y = TOP + r["lane"] * LANE_H
    x1, x2 = X(r["send_s"]), X(r["recv_s"])
    o.append(f'<rect x="{x1:.1f}" y="{y + LANE_H - 6}" width="{max(1.5, x2 - x1):.1f}" height="5" '
             f'fill="{COL["client"]}"><title>client {r["client"]} echo {r["n"]}: sent at '
             f'{r["send_s"] * 1000:.3f} ms, echo back after {(r["recv_s"] - r["send_s"]) * 1e6:.0f} µs; '
             f'server fd {r["server_fd"]}</title></rect>')
    for i in r["served_by"]:
        if not calls[i].get("drawn"):
            continue
        c = calls[i]
        xc = X(max(c["start_s"], min(r["send_s"], c["start_s"] + c["dur_s"])))
        yc = TOP + c["lane"] * LANE_H + LANE_H / 2
        o.append(f'<line x1="{x1:.1f}" y1="{y + LANE_H - 4}" x2="{xc:.1f}" y2="{yc}" '
                 f'stroke="#2e9e4f" stroke-width="0.7" stroke-dasharray="3,2" opacity="0.8"/>')
for e_ in edges:
    if e_["waker_lane"] is None or e_["run_s"] is None or e_["waker_lane"] == e_["wakee_lane"]:
        continue
    x1, x2 = X(e_["t_s"]), X(min(end_s, e_["run_s"]))
    y1 = TOP + e_["waker_lane"] * LANE_H + LANE_H / 2
    y2 = TOP + e_["wakee_lane"] * LANE_H + (4 if e_["wakee_lane"] > e_["waker_lane"] else LANE_H - 4)
    o.append(f'<line x1="{x1:.1f}" y1="{y1}" x2="{max(x2, x1 + 0.5):.1f}" y2="{y2}" stroke="{COL["wake"]}" '
             f'stroke-width="1" marker-end="url(#arrow)"><title>{e(e_["waker"])} woke '
             f'{e(lanes[e_["wakee_lane"]]["name"])} at {e_["t_s"] * 1000:.3f} ms; it ran '
             f'{(e_["run_s"] - e_["t_s"]) * 1e6:.0f} µs later</title></line>')
o.append("</svg>")
with open(os.path.join(outdir, name + ".svg"), "w") as f:
    f.write("\n".join(o) + "\n")
tot = doc["totals"]
cross = sum(1 for e_ in edges if e_["waker_lane"] is not None and
            lanes[e_["waker_lane"]]["process"] != lanes[e_["wakee_lane"]]["process"])
print(f"{name}: {tracer.name}: {len(server_tids)} server lanes + {len(lanes) - len(server_tids)} client lanes, "
      f"{len(server_live)} server calls ({tot['startup']} start-up, {tot['drawn']} drawn, {tot['cut']} cut), "
      f"wait {tot['wait']}, copy {tot['copy']}, other {tot['other']} (EAGAIN {tot['eagain']}), "
      f"{len(requests)} requests, {cross} wake-ups across processes{f', {lost} events lost' if lost else ''}")
