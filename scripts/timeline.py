#!/usr/bin/env python3
"""timeline.py: helper of scripts/timeline.sh (see its header). stdlib only.

python3 timeline.py BINARY NAME OUTDIR [SERVER ARGS...]
Runs BINARY under strace -f -ttt -T, drives it with a fixed workload (3
clients, 4 echoes each, client 2 slow), writes OUTDIR/NAME.json (format E)
and OUTDIR/NAME.svg."""
import bisect, html, json, os, re, signal, socket, subprocess, sys, tempfile, threading, time

CLIENTS, ECHOES, SIZE, SLOW, SLOW_GAP = 3, 4, 32, 1, 0.15
MAX_DRAWN = 400           # calls drawn per SVG at most; the rest are counted
BLOCKED_S = 0.001         # a read/accept longer than this was asleep (phase 1)

WAIT_CALLS = {"select", "pselect6", "poll", "ppoll", "epoll_wait", "epoll_pwait", "epoll_pwait2",
              "rt_sigtimedwait", "rt_sigsuspend", "sigsuspend", "pause", "io_getevents",
              "io_pgetevents", "nanosleep", "clock_nanosleep"}
COPY_CALLS = {"read", "readv", "recv", "recvfrom", "recvmsg", "write", "writev", "send", "sendto",
              "sendmsg", "pread64", "pwrite64"}
BLOCKABLE = {"read", "readv", "recv", "recvfrom", "recvmsg", "accept", "accept4", "connect"}

prog, name, outdir = sys.argv[1], sys.argv[2], sys.argv[3]
extra = sys.argv[4:]
trace_file = tempfile.NamedTemporaryFile(prefix="timeline-", suffix=".strace", delete=False).name


def fail(msg):
    print(f"timeline: {name}: {msg}", file=sys.stderr)
    sys.exit(1)


# ---- run -------------------------------------------------------------------
strace = subprocess.Popen(["strace", "-f", "-ttt", "-T", "-s", "24", "-o", trace_file,
                           prog, "--port", "0", *extra],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def tracee():
    try:
        with open(f"/proc/{strace.pid}/task/{strace.pid}/children") as f:
            kids = f.read().split()
        return int(kids[0]) if kids else None
    except OSError:
        return None


def stop_all():
    t = tracee()
    if t:
        try:
            os.kill(t, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        strace.wait(timeout=60)
    except subprocess.TimeoutExpired:
        t = tracee()
        if t:
            os.kill(t, signal.SIGKILL)
        strace.kill()
        strace.wait()


line_box = []
reader = threading.Thread(target=lambda: line_box.append(strace.stdout.readline()), daemon=True)
reader.start()
reader.join(60)
m = re.search(r"listening on (\S+):(\d+)", line_box[0] if line_box else "")
if not m:
    stop_all()
    fail(f"no 'listening on HOST:PORT' line within 60 s (got {line_box[:1]!r})")
host, port = m.group(1), int(m.group(2))

requests, errors, connects = [], [], []
lock = threading.Lock()
start_gate = threading.Barrier(CLIENTS)


def client(i):
    try:
        with lock:
            connects.append(time.time())
        s = socket.create_connection((host, port), timeout=60)
        local_port = s.getsockname()[1]
        start_gate.wait(60)
        time.sleep(0.05)  # every client connected; the server is waiting
        for k in range(ECHOES):
            if i == SLOW:
                time.sleep(SLOW_GAP)
            msg = bytes([65 + i]) * (SIZE - 2) + b"%d\n" % k
            t_send = time.time()
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                chunk = s.recv(len(msg) - len(got))
                if not chunk:
                    raise ConnectionError("server closed the connection")
                got += chunk
            t_recv = time.time()
            if got != msg:
                raise ValueError(f"echo differs: sent {msg!r}, got {got!r}")
            with lock:
                requests.append({"client": i, "n": k, "port": local_port,
                                 "send_s": t_send, "recv_s": t_recv, "bytes": len(msg)})
        s.close()
    except Exception as e:  # noqa: BLE001 - reported with the client number
        with lock:
            errors.append(f"client {i}: {e}")


threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
for t in threads:
    t.start()
for t in threads:
    t.join(120)
time.sleep(0.05)
stop_all()
if errors:
    os.unlink(trace_file)
    fail("; ".join(errors))

# ---- parse -----------------------------------------------------------------
RE_LINE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")
RE_FULL = re.compile(r"^(\w+)\((.*)\)\s+=\s+(.*?)(?:\s+<(\d+\.\d+)>)?$")
RE_UNF = re.compile(r"^(\w+)\((.*?)\s*<unfinished \.\.\.>$")
RE_RES = re.compile(r"^<\.\.\. (\w+) resumed>(.*?)\)?\s+=\s+(.*?)(?:\s+<(\d+\.\d+)>)?$")
RE_SIG = re.compile(r"^--- (SIG\w+)")
calls, signals, pending, tids = [], [], {}, []
with open(trace_file, errors="replace") as f:
    for raw in f:
        m = RE_LINE.match(raw.rstrip("\n"))
        if not m:
            continue
        tid, ts, rest = int(m.group(1)), float(m.group(2)), m.group(3)
        if tid not in tids:
            tids.append(tid)
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
            signals.append({"lane": tid, "t_s": ts, "signal": mm.group(1)})
        if c:
            calls.append({"tid": tid, "name": c[0], "start_abs": c[1], "args": c[2].strip(),
                          "ret": c[3], "dur_s": c[4]})
os.unlink(trace_file)
if not calls:
    fail("strace recorded no system calls")


def ret_int(r):
    mm = re.match(r"^(-?\d+)", r)
    return int(mm.group(1)) if mm else None


def classify(c):
    n, r, d = c["name"], c["ret"], c["dur_s"]
    eagain = "EAGAIN" in r
    if n == "io_uring_enter":
        a = [x.strip() for x in c["args"].split(",")]
        waits = len(a) > 3 and "GETEVENTS" in a[3] and a[2].isdigit() and int(a[2]) > 0
        return ("wait" if waits else "other"), False
    if n in WAIT_CALLS:
        return "wait", False
    if n == "futex" and "WAIT" in c["args"]:
        return "wait", False
    if n in BLOCKABLE and not eagain and d >= BLOCKED_S:
        return "wait", False
    if n in COPY_CALLS and not eagain and (ret_int(r) or 0) >= 0 and not r.startswith("-1"):
        return "copy", False
    return "other", eagain


for c in calls:
    c["class"], c["eagain"] = classify(c)
    mm = re.match(r"^(\d+)(?:,|$)", c["args"])
    c["fd"] = int(mm.group(1)) if mm and c["name"] not in WAIT_CALLS else None

# Descriptor of each client on the server: accept's peer port (strace decodes sockaddr).
fd_of_port = {}
for c in calls:
    if c["name"] in ("accept", "accept4") and (ri := ret_int(c["ret"])) is not None and ri >= 0:
        mm = re.search(r"sin6?_port=htons\((\d+)\)", c["args"])
        if mm:
            fd_of_port[int(mm.group(1))] = (ri, c["tid"])

# t=0 is just before the first client connects: the server's start-up calls
# (loader, mmap, socket set-up) are in the JSON with negative start_s but not drawn.
t0 = min(connects) - 0.002
for c in calls:
    c["start_s"] = round(c["start_abs"] - t0, 6)
for s in signals:
    s["t_s"] = round(s["t_s"] - t0, 6)

# Join each request to the calls that served it: the wait in progress when it
# was sent (any server thread), then the first copy on its descriptor that
# ended after the send, and the next copy (the echo) on the same descriptor.
requests.sort(key=lambda r: (r["client"], r["n"]))
for r in requests:
    ts = r["send_s"]
    served = []
    fdt = fd_of_port.get(r["port"])
    r["server_fd"] = fdt[0] if fdt else None
    for i, c in enumerate(calls):
        # a readiness/completion wait (no descriptor), or a blocking call on this client's
        if c["class"] == "wait" and \
                (c["name"] in WAIT_CALLS or c["name"] == "io_uring_enter" or
                 (fdt and c["fd"] == fdt[0] and c["name"] in BLOCKABLE)) and \
                c["start_abs"] <= ts <= c["start_abs"] + c["dur_s"]:
            served.append(i)
    if fdt:
        got = 0
        for i, c in enumerate(calls):
            if c["fd"] == fdt[0] and c["name"] in COPY_CALLS | BLOCKABLE and \
                    c["start_abs"] + c["dur_s"] >= ts and c["start_abs"] <= r["recv_s"] and \
                    not c["eagain"]:
                served.append(i)
                got += 1
                if got == 2:
                    break
    r["served_by"] = sorted(set(served))
    r["send_s"], r["recv_s"] = round(r["send_s"] - t0, 6), round(r["recv_s"] - t0, 6)

# ---- lanes -----------------------------------------------------------------
lanes = []
for k, tid in enumerate(tids):
    lanes.append({"name": f"{'main' if k == 0 else 'thread'} {tid}", "kind": "server-thread",
                  "tid": tid})
for i in range(CLIENTS):
    port_i = next((r["port"] for r in requests if r["client"] == i), None)
    lanes.append({"name": f"client {i}{' (slow)' if i == SLOW else ''}", "kind": "client",
                  "port": port_i,
                  "server_fd": fd_of_port.get(port_i, (None,))[0]})
lane_of_tid = {tid: k for k, tid in enumerate(tids)}
for c in calls:
    c["lane"] = lane_of_tid[c["tid"]]
for s in signals:
    s["lane"] = lane_of_tid.get(s["lane"], 0)
for r in requests:
    r["lane"] = len(tids) + r["client"]
for ln in lanes[:len(tids)]:
    ln["counts"] = {"wait": 0, "copy": 0, "other": 0, "eagain": 0}
for c in calls:
    if c["start_s"] + c["dur_s"] < 0:
        continue  # start-up: not counted
    ln = lanes[c["lane"]]
    ln["counts"][c["class"]] += 1
    ln["counts"]["eagain"] += c["eagain"]
for k, ln in enumerate(lanes):
    if ln["kind"] == "client":
        ln["counts"] = {"requests": sum(1 for r in requests if r["lane"] == k)}

# Which calls are drawn: everything that is not an EAGAIN retry (up to
# 3 * MAX_DRAWN, never reached by this workload), then EAGAIN retries evenly
# spaced while the total stays under MAX_DRAWN.
startup = sum(1 for c in calls if c["start_s"] + c["dur_s"] < 0)
keep = [i for i, c in enumerate(calls) if not c["eagain"] and c["start_s"] + c["dur_s"] >= 0][:3 * MAX_DRAWN]
eag = [i for i, c in enumerate(calls) if c["eagain"] and c["start_s"] + c["dur_s"] >= 0]
room = MAX_DRAWN - len(keep)
if eag and room > 0:
    step = max(1, -(-len(eag) // room))
    keep += eag[::step][:room]
keep = sorted(keep)
for i in keep:
    calls[i]["drawn"] = True
cut = len(calls) - len(keep) - startup

out_calls = [{"lane": c["lane"], "name": c["name"], "start_s": c["start_s"],
              "dur_s": c["dur_s"], "class": c["class"], "ret": c["ret"], "args": c["args"],
              "fd": c["fd"], "eagain": c["eagain"], "drawn": bool(c.get("drawn"))}
             for c in calls]
end_s = max(max(c["start_s"] + c["dur_s"] for c in calls), max(r["recv_s"] for r in requests))
doc = {"server": name, "command": [os.path.basename(prog), "--port", "0", *extra],
       "tracer": "strace -f -ttt -T", "t0_unix_s": t0, "span_s": round(end_s, 6),
       "workload": {"clients": CLIENTS, "echoes_each": ECHOES, "bytes": SIZE,
                    "slow_client": SLOW, "slow_gap_s": SLOW_GAP},
       "lanes": lanes, "calls": out_calls, "requests": requests, "signals": signals,
       "totals": {k: sum(1 for c in calls if c["class"] == k and c["start_s"] + c["dur_s"] >= 0)
                  for k in ("wait", "copy", "other")}
       | {"eagain": sum(c["eagain"] for c in calls if c["start_s"] + c["dur_s"] >= 0),
          "calls": len(calls),
          "drawn": len(keep), "cut": cut, "startup": startup}}
with open(os.path.join(outdir, name + ".json"), "w") as f:
    json.dump(doc, f, indent=1)

# ---- SVG -------------------------------------------------------------------
W, LEFT, RIGHT, TOP, LANE_H = 1200, 150, 20, 74, 26
H = TOP + LANE_H * len(lanes) + 50
# Time axis: real time inside busy stretches; a stretch with no call starting
# or ending and no request sent or answered for more than GAP_S is drawn
# GAP_W wide with a break mark and its real length (the slow client's pauses
# would otherwise squeeze every burst into a pixel).
GAP_S = 0.004
pts = sorted({0.0, end_s} | {max(0.0, c["start_s"]) for c in calls if c["start_s"] + c["dur_s"] >= 0}
             | {c["start_s"] + c["dur_s"] for c in calls if c["start_s"] + c["dur_s"] >= 0}
             | {r["send_s"] for r in requests} | {r["recv_s"] for r in requests})
gaps = [(a, b) for a, b in zip(pts, pts[1:]) if b - a > GAP_S]
busy = end_s - sum(b - a for a, b in gaps)
GAP_W = max(busy, 1e-3) * 0.04
vis_span = busy + GAP_W * len(gaps)
knots = [(0.0, 0.0)]
for a, b in gaps:
    va = knots[-1][1] + (a - knots[-1][0])
    knots += [(a, va), (b, va + GAP_W)]


def V(t):
    # knots alternate: (gap start, v), (gap end, v + GAP_W); linear in between
    k = bisect.bisect_right([kt for kt, _ in knots], t) - 1
    rt, vt = knots[max(k, 0)]
    if k % 2 == 1 and k + 1 < len(knots):  # inside a gap
        nrt, nvt = knots[k + 1]
        return vt + (nvt - vt) * (t - rt) / (nrt - rt)
    return vt + (t - rt)


X = lambda t: LEFT + (W - LEFT - RIGHT) * V(t) / (vis_span * 1.01)
span = end_s
COL = {"wait": "#3b6fd0", "copy": "#e8850c", "other": "#a8a8a8", "eagain": "#d62d2d",
       "client": "#2e9e4f"}
e = lambda s: html.escape(str(s), quote=True)
o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
     f'font-family="sans-serif" font-size="11">',
     f'<rect width="{W}" height="{H}" fill="#fff"/>',
     f'<text x="8" y="16" font-size="14" font-weight="bold">{e(name)}</text>',
     f'<text x="8" y="32" fill="#444">{e(" ".join(doc["command"]))} under strace -f -ttt -T; '
     f'{CLIENTS} clients x {ECHOES} echoes of {SIZE} B, client {SLOW} waits {SLOW_GAP * 1000:.0f} ms '
     f'before each; t=0 is {e(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t0)))} UTC; '
     f'{len(calls) - startup} calls after start-up, {len(keep)} drawn{f", {cut} not drawn (EAGAIN retries thinned first)" if cut else ""}</text>']
lx = 8
for label, col in (("wait (phase 1)", COL["wait"]), ("copy (phase 2)", COL["copy"]),
                   ("other call", COL["other"]), ("EAGAIN (nothing ready)", COL["eagain"]),
                   ("request: send to echo", COL["client"])):
    o.append(f'<rect x="{lx}" y="42" width="12" height="10" fill="{col}"/>'
             f'<text x="{lx + 16}" y="51">{e(label)}</text>')
    lx += 30 + 7 * len(label)
o.append(f'<line x1="{lx}" y1="47" x2="{lx + 18}" y2="47" stroke="#2e9e4f" stroke-dasharray="3,2"/>'
         f'<text x="{lx + 22}" y="51">request joined to the calls that served it</text>')
for k, ln in enumerate(lanes):
    y = TOP + k * LANE_H
    o.append(f'<rect x="0" y="{y}" width="{W}" height="{LANE_H}" fill="{"#f4f4f4" if k % 2 else "#fff"}"/>'
             f'<text x="6" y="{y + 17}">{e(ln["name"])}</text>')
# axis
ya = TOP + LANE_H * len(lanes)
o.append(f'<line x1="{LEFT}" y1="{ya}" x2="{W - RIGHT}" y2="{ya}" stroke="#000"/>')
# A tick at the start of every busy stretch (real time since t=0), and a break
# mark with the real length of every compressed pause.
last_x = -100.0
for a in [0.0] + [b for _, b in gaps]:
    x = X(a)
    o.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{ya + 4}" stroke="#ddd"/>')
    if x - last_x > 44:
        o.append(f'<text x="{x:.1f}" y="{ya + 16}" text-anchor="middle">{a * 1000:.1f} ms</text>')
        last_x = x
for a, b in gaps:
    x1, x2 = X(a), X(b)
    o.append(f'<path d="M{x1 + 1:.1f},{ya + 5} l3,-10 M{x2 - 4:.1f},{ya + 5} l3,-10" stroke="#000"/>'
             f'<text x="{(x1 + x2) / 2:.1f}" y="{ya + 30}" text-anchor="middle" fill="#666" '
             f'font-size="9">{(b - a) * 1000:.0f}</text>')
o.append(f'<text x="{LEFT}" y="{ya + 42}" fill="#666" font-size="10">ms since t=0 at the start of '
         f'each busy stretch; pauses longer than {GAP_S * 1000:.0f} ms are compressed (the small '
         f'grey number is the pause in ms)</text>')
for i in keep:
    c = calls[i]
    y = TOP + c["lane"] * LANE_H
    x, w = X(max(0.0, c["start_s"])), max(1.0, X(c["start_s"] + c["dur_s"]) - X(max(0.0, c["start_s"])))
    col = COL["eagain"] if c["eagain"] else COL[c["class"]]
    o.append(f'<rect x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="{LANE_H - 8}" fill="{col}">'
             f'<title>{e(c["name"])}({e(c["args"][:80])}) = {e(c["ret"][:60])}; '
             f'{c["dur_s"] * 1e6:.0f} us at {c["start_s"] * 1000:.3f} ms; {c["class"]}</title></rect>')
for s in signals:
    x, y = X(s["t_s"]), TOP + s["lane"] * LANE_H
    o.append(f'<path d="M{x:.1f},{y + 1} l-3,-0 l3,5 l3,-5 z" fill="#7b2fa8">'
             f'<title>{e(s["signal"])} delivered at {s["t_s"] * 1000:.3f} ms</title></path>')
for r in requests:
    y = TOP + r["lane"] * LANE_H
    x1, x2 = X(r["send_s"]), X(r["recv_s"])
    o.append(f'<rect x="{x1:.1f}" y="{y + 6}" width="{max(1.5, x2 - x1):.1f}" height="{LANE_H - 12}" '
             f'fill="{COL["client"]}" stroke="#fff" stroke-width="0.8"><title>client {r["client"]} echo {r["n"]}: sent at '
             f'{r["send_s"] * 1000:.3f} ms, echo back after {(r["recv_s"] - r["send_s"]) * 1e6:.0f} us; '
             f'server fd {r["server_fd"]}</title></rect>')
    for i in r["served_by"]:
        if not calls[i].get("drawn"):
            continue
        c = calls[i]
        xc = X(max(c["start_s"], min(r["send_s"], c["start_s"] + c["dur_s"])))
        yc = TOP + c["lane"] * LANE_H + LANE_H / 2
        o.append(f'<line x1="{x1:.1f}" y1="{y + LANE_H / 2}" x2="{xc:.1f}" y2="{yc}" '
                 f'stroke="#2e9e4f" stroke-width="0.7" stroke-dasharray="3,2" opacity="0.8"/>')
o.append("</svg>")
with open(os.path.join(outdir, name + ".svg"), "w") as f:
    f.write("\n".join(o) + "\n")
tot = doc["totals"]
print(f"{name}: {len(tids)} server lanes + {CLIENTS} client lanes, {tot['calls']} calls "
      f"({tot['startup']} start-up, {tot['drawn']} drawn, {tot['cut']} cut), wait {tot['wait']}, copy {tot['copy']}, "
      f"other {tot['other']} (EAGAIN {tot['eagain']}), {len(requests)} requests")
