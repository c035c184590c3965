#!/usr/bin/env python3
# scale-sample.py — the sampler of scripts/c100k.sh and scripts/c1m.sh (see scale.sh).
#
# Usage: scale-sample.py OUT.jsonl SECONDS SERVER_PID,... CLIENT_PIDFILE [INTERVAL]
#
# Samples until every client pid is gone (or SECONDS have passed): Slab and
# SUnreclaim, MemAvailable, the servers' (and their children's) and the
# clients' RSS and CPU ticks, per-CPU /proc/stat, sockets (sockstat, TCP "mem"
# in pages), tracked connections. It starts before the clients (its first
# sample is the baseline); their pids arrive in a file once they are all
# started. One JSON object a line.
import json, os, sys, time
interval = float(sys.argv[5]) if len(sys.argv) > 5 else 0.5
out, limit, pidfile = sys.argv[1], float(sys.argv[2]), sys.argv[4]
servers = [int(p) for p in sys.argv[3].split(",")]
clients = None

def family(pid):
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return pids

def proc(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            return None
        with open(f"/proc/{pid}/status") as f:
            rss = next((int(l.split()[1]) for l in f if l.startswith("VmRSS:")), 0)
        return int(fields[11]), int(fields[12]), rss
    except (OSError, IndexError, ValueError):
        return None

def meminfo():
    with open("/proc/meminfo") as f:
        return {l.split(":")[0]: int(l.split()[1]) for l in f}

def cpus():
    with open("/proc/stat") as f:
        return {l.split()[0]: [int(x) for x in l.split()[1:]] for l in f if l.startswith("cpu")}

CACHES = ("TCP", "sock_inode_cache", "filp", "dentry", "eventpoll_epi", "eventpoll_pwq",
          "request_sock_TCP", "tcp_bind_bucket", "tcp_bind2_bucket")

def slabinfo():
    # Active objects x object size of the caches a connection uses.
    out = {}
    try:
        with open("/proc/slabinfo") as f:
            for l in f:
                w = l.split()
                if w and w[0] in CACHES:
                    out[w[0]] = [int(w[1]), int(w[3])]
    except OSError:
        pass
    return out

def tcp():
    with open("/proc/net/sockstat") as f:
        for l in f:
            if l.startswith("TCP:"):
                w = l.split()
                return dict(zip(w[1::2], map(int, w[2::2])))
    return {}

def conntrack():
    try:
        with open("/proc/sys/net/netfilter/nf_conntrack_count") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None

start = time.time()
with open(out, "w") as f:
    while time.time() - start < limit:
        m = meminfo()
        s = {"t": time.time(), "slab": m["Slab"], "sunreclaim": m.get("SUnreclaim", 0),
             "avail": m.get("MemAvailable", 0), "caches": slabinfo(), "cpu": cpus(), "tcp": tcp(),
             "conntrack": conntrack()}
        # Per pid, so that a process that has exited does not make a sum drop.
        if clients is None and os.path.exists(pidfile):
            with open(pidfile) as pf:
                clients = [int(p) for p in pf.read().split()]
        for name, pids in (("server", servers), ("client", clients or [])):
            s[name] = {}
            for top in pids:
                for p in family(top):
                    v = proc(p)
                    if v:
                        s[name][str(p)] = v
        f.write(json.dumps(s) + "\n")
        f.flush()
        if clients is not None and not s["client"]:
            break
        time.sleep(interval)
