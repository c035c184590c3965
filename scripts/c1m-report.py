#!/usr/bin/env python3
# c1m-report.py — the report of scripts/c1m.sh (run by it, not by hand):
#
#   c1m-report.py MERGED.json SAMPLES.jsonl SERVER.out N ACTIVE RATE
#                 LISTEN_OVERFLOWS TCP_TIMEOUTS "LOAD BEFORE" "LOAD AFTER" WARMUP_S
#
# MERGED.json is loadgen's merged report (may be missing when the run broke
# off); SAMPLES.jsonl the lines of scale-sample.py, the first one taken before
# any client started. Memory per connection is the growth from that first
# sample to the sample with the most TCP sockets in use, divided by the
# connections up at that moment (half the sockets: both ends are here).
# Exit 0 when all N were up and nothing failed, 1 otherwise.
import json
import os
import sys

merged_path, samples_path, server_out = sys.argv[1:4]
conns, active, rate = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
overflows, timeouts = int(sys.argv[7]), int(sys.argv[8])
load_before, load_after = sys.argv[9], sys.argv[10]
warmup = float(sys.argv[11])

try:
    with open(merged_path) as f:
        merged = json.load(f)
except (OSError, ValueError):
    merged = None
with open(samples_path) as f:
    samples = [json.loads(line) for line in f if line.strip()]
summary = ""
with open(server_out) as f:
    for line in f:
        if line.startswith("summary:"):
            summary = line.strip()

base = samples[0]
peak = max(samples, key=lambda s: s["tcp"].get("inuse", 0))
up = (peak["tcp"].get("inuse", 0) - base["tcp"].get("inuse", 0)) // 2
t0 = base["t"]


def rss(sample, side):
    return sum(v[2] for v in sample.get(side, {}).values())


def per_conn(kib):
    return kib * 1024 / up if up > 0 else float("nan")


print(f"c1m report ({conns} connections asked, load average {load_before} before, {load_after} after; 2 CPUs)")
print(f"  most up at once    {up} connections ({peak['tcp'].get('inuse', 0)} TCP sockets in use, both ends; "
      f"{peak['t'] - t0:.1f} s after the first sample)")
if merged:
    all_up = merged.get("all_up_s")
    print(f"  time to connect    " + (f"{all_up:.2f} s for all {conns} ({conns / all_up:.0f} connects/s)"
                                      if all_up else "never: not every connection came up")
          + f"; loadgen: {merged['connects']} established, {merged['connect_failures']} failed, "
          f"{merged['reconnects']} reopened, {merged['max_open']} open at most")
    print(f"  errors             {merged['errors_total']} (connect failures {merged['connect_failures']})"
          + "".join(f"\n    {e['kind']} {e['code']}: {e['count']} ({e['text']})" for e in merged["errors"]))
else:
    print("  time to connect    unknown: loadgen wrote no report")
print(f"  kernel drops       {overflows} SYNs dropped at a full accept queue (ListenOverflows), "
      f"{timeouts} retransmission timeouts (TCPTimeouts)")

slab = peak["slab"] - base["slab"]
sunr = peak.get("sunreclaim", 0) - base.get("sunreclaim", 0)
pages = peak["tcp"].get("mem", 0) - base["tcp"].get("mem", 0)
avail = base.get("avail", 0) - peak.get("avail", 0)
print(f"  kernel memory      Slab +{slab / 1024:.0f} MiB = {per_conn(slab):.0f} B per connection "
      f"(SUnreclaim +{sunr / 1024:.0f} MiB = {per_conn(sunr):.0f} B); TCP buffer pages (sockstat mem) "
      f"{base['tcp'].get('mem', 0)} -> {peak['tcp'].get('mem', 0)} = {per_conn(max(pages, 0) * 4):.1f} B per connection")
print(f"                     both ends of each connection; MemAvailable fell {avail / 1024:.0f} MiB "
      f"= {per_conn(avail):.0f} B per connection (kernel and user together)")
ct = [s.get("conntrack") for s in samples if s.get("conntrack") is not None]
if ct:
    print(f"  conntrack          {max(ct)} entries at most (0: no rule hooks conntrack, loopback is not tracked)")
srv0, srv = rss(base, "server"), rss(peak, "server")
cli = max(rss(s, "client") for s in samples)
print(f"  user memory        servers {srv0 / 1024:.1f} -> {srv / 1024:.1f} MiB RSS = {per_conn(srv - srv0):.0f} B per connection; "
      f"loadgens {cli / 1024:.1f} MiB at the peak = {per_conn(cli):.0f} B per connection")
if merged:
    lat = merged["latency_us"]
    print(f"  latency            {merged['requests']} requests over {merged['duration_s']:.1f} s = "
          f"{merged['requests_per_s']:.0f}/s (asked {rate}/s over {active} active connections): "
          f"p50 {lat['p50']:.0f} us, p99 {lat['p99']:.0f} us, p99.9 {lat['p99_9']:.0f} us, max {lat['max']:.0f} us "
          f"(from the intended send)")
    if merged.get("all_up_s") is None or merged["all_up_s"] > warmup:
        print(f"    (not all up by the end of the {warmup:.0f} s not counted: the counted window overlaps the "
              f"connecting, and so does this latency; give a longer --ramp or fewer connections)")


def cpu_split(a, b):
    # Whole machine, both CPUs together: % of the time in each state.
    names = ["user", "nice", "system", "idle", "iowait", "irq", "softirq"]
    d = [y - x for x, y in zip(a["cpu"]["cpu"], b["cpu"]["cpu"])]
    tot = sum(d[:8]) or 1
    return "  ".join(f"{n} {100 * v / tot:.0f}%" for n, v in zip(names, d) if n in ("user", "system", "softirq", "idle"))


HZ = os.sysconf("SC_CLK_TCK")


def ours(a, b):
    # CPU of the servers and of the loadgens between two samples, % of one CPU
    # (user + system; a process not yet there in a counts from 0).
    secs = (b["t"] - a["t"]) or 1
    out = []
    for side in ("server", "client"):
        ticks = sum(v[0] + v[1] - sum(a.get(side, {}).get(pid, [0, 0])[:2]) for pid, v in b.get(side, {}).items())
        out.append(f"{'servers' if side == 'server' else 'loadgens'} {100 * ticks / HZ / secs:.0f}%")
    return ", ".join(out) + " of one CPU"


print(f"  CPU, connecting    {cpu_split(base, peak)} ({peak['t'] - t0:.1f} s to the peak; whole machine); {ours(base, peak)}")
last = [s for s in samples if s["tcp"].get("inuse", 0) >= peak["tcp"].get("inuse", 0) * 0.99]
if len(last) >= 2:
    print(f"  CPU, holding       {cpu_split(last[0], last[-1])} ({last[-1]['t'] - last[0]['t']:.1f} s with all up); "
          f"{ours(last[0], last[-1])}")
print(f"  server             {summary or 'printed no summary'}")
ok = bool(merged) and merged["max_open"] >= conns and merged["errors_total"] == 0 and merged["connect_failures"] == 0
print(f"  goal {conns} established, 0 errors: {'met' if ok else 'MISSED'}")
sys.exit(0 if ok else 1)
