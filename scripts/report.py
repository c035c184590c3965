#!/usr/bin/env python3
"""report.py — the HTML renderer behind scripts/report.sh (run that, not this).

    report.py --data DIR --out FILE [--timelines DIR] [--source TEXT]
              [--load-before "1 5 15"] [--load-after "1 5 15"]

Reads DIR/dispatch.csv (+ dispatch.json for the min/max of each point when
present), DIR/multiplexing.csv and DIR/multiplexing-runs.csv, embeds every
TIMELINES/*.svg, and writes one self-contained HTML file: inline CSS, inline
SVG, a few lines of inline script, nothing fetched from anywhere.
Every chart point is an SVG element of class "pt" carrying its values in
data-series, data-x, data-y (and data-lo/data-hi: the smallest and largest
repeat), with a <title> that the browser shows on hover.
Python standard library only."""
import argparse
import csv
import glob
import html
import io
import json
import math
import os
import platform
import re
import statistics
import sys
import time

# How far apart the repeats of one point may lie, (max - min) / median of
# requests/s, before the point is called noisy; and the share of noisy points
# above which requests/s of the whole run are not to be trusted.
NOISY_SPREAD = 0.20
NOISY_SHARE = 0.25

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#7f7f7f", "#bcbd22"]


def esc(s):
    return html.escape(str(s), quote=True)


def fnum(v, digits=3):
    """A number for people: whole numbers as such, 1000 and over rounded with
    thousands separators, smaller ones with up to `digits` decimals."""
    if v is None:
        return ""
    if abs(v) >= 1000 or float(v).is_integer():
        return f"{v:,.0f}"
    return f"{v:.{digits}f}".rstrip("0").rstrip(".")


def fattr(v):
    """A number for a data-* attribute: plain, exact to 6 decimals."""
    if v is None:
        return ""
    r = round(float(v), 6)
    return str(int(r)) if r.is_integer() else repr(r)


class DataError(Exception):
    """Bad input: the message is one line naming the file, the line and what is wrong."""


def _number(v):
    try:
        x = float(v)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


# What a column must hold: a test of the text and how to say it. Empty
# measured figures are allowed (a point without that figure); the keys of a
# point are not. The charts draw dispatch.csv on log axes: no zero there.
WHOLE = (lambda v: v.isascii() and v.isdigit(), "a whole number")
POSITIVE_WHOLE = (lambda v: v.isascii() and v.isdigit() and int(v) > 0, "a whole number above 0")
COUNT = (lambda v: v == "" or (v.isascii() and v.isdigit()), "a whole number or empty")
NUMBER = (lambda v: v == "" or (_number(v) is not None and _number(v) >= 0),
          "a finite number of 0 or more, or empty")
POSITIVE = (lambda v: v == "" or (_number(v) is not None and _number(v) > 0),
            "a finite number above 0, or empty")
FLAG = (lambda v: v in ("0", "1"), "0 or 1")
TEXT = (lambda v: v != "", "not empty")

# The columns the report reads from each file; others are carried along unread.
DISPATCH_COLUMNS = {"backend": TEXT, "library": TEXT, "fds": POSITIVE_WHOLE,
                    "active": WHOLE, "us_per_round": POSITIVE, "skipped": FLAG}
MUX_COLUMNS = {"server": TEXT, "idle_asked": WHOLE, "idle": WHOLE, "capped": FLAG,
               "repeats": COUNT, "requests_per_s": NUMBER, "p99_us": NUMBER,
               "cpu_us_per_request": NUMBER, "errors": COUNT}
EVENT_LOOP_COLUMNS = {"workload": TEXT, "connections": POSITIVE_WHOLE, "size": POSITIVE_WHOLE,
                      "server": TEXT, "requests_per_s": NUMBER, "rps_min": NUMBER,
                      "rps_max": NUMBER, "cpu_us_per_request": NUMBER, "cpu_min": NUMBER,
                      "cpu_max": NUMBER}
RUNS_COLUMNS = {"server": TEXT, "idle_asked": WHOLE, "requests_per_s": NUMBER, "p99_us": NUMBER,
                "cpu_us_per_request": NUMBER, "errors": COUNT}


def read_csv(path, columns):
    """The rows of a CSV file as dicts, None when there is no such file. Every
    column of `columns` must be in the header and hold its kind in each row;
    otherwise DataError names the file, the line and what is wrong."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(f"{path}: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x})") from None
    line = 1
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = reader.fieldnames
        if not header:
            raise DataError(f"{path}:1: empty: no header line")
        missing = [c for c in columns if c not in header]
        if missing:
            raise DataError(f"{path}:1: the header ({','.join(header)}) lacks the "
                            f"column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        rows = []
        for r in reader:
            line = reader.line_num
            if None in r:
                raise DataError(f"{path}:{line}: {len(header) + len(r[None])} fields, the "
                                f"header has {len(header)}")
            for c, (ok, what) in columns.items():
                v = r[c]
                if v is None:
                    have = sum(1 for x in r.values() if x is not None)
                    raise DataError(f"{path}:{line}: {have} fields, the header has "
                                    f"{len(header)} (no {c})")
                if not ok(v):
                    raise DataError(f"{path}:{line}: column {c}: {v!r} is not {what}")
            rows.append(r)
    except csv.Error as e:
        raise DataError(f"{path}:{line + 1}: {e}") from None
    if not rows:
        raise DataError(f"{path}:2: no rows after the header")
    return rows


def num(s):
    try:
        return float(s) if s not in (None, "") else None
    except ValueError:
        return None


# ---- the machine ---------------------------------------------------------------


def read_first(path):
    try:
        with open(path, errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def machine_now():
    m = {"kernel": " ".join(platform.uname()[i] for i in (0, 2, 3)), "cpu": None,
         "cores": os.cpu_count(), "online": read_first("/sys/devices/system/cpu/online")}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    m["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    govs = {}
    for p in sorted(glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor")):
        g = read_first(p)
        if g:
            govs.setdefault(g, []).append(p.split("/")[5])
    m["governor"] = "; ".join(f"{g} ({', '.join(c)})" for g, c in govs.items()) if govs else None
    m["affinity"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return m


def recorded_loads(data):
    """(start, end) load averages the sweep scripts wrote into their .md files."""
    found = []
    for name in ("dispatch.md", "multiplexing.md"):
        text = read_first(os.path.join(data, name)) or ""
        nums = re.findall(r"[Ll]oad average \(1/5/15 min\)(.{0,160})", text)
        for tail in nums:
            triples = re.findall(r"\d+\.\d+ \d+\.\d+ \d+\.\d+", tail)
            if triples:
                found.append((name, triples[0], triples[1] if len(triples) > 1 else None))
    return found


# ---- charts --------------------------------------------------------------------


def nice_ticks(lo, hi, n=5):
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    t = math.floor(lo / step) * step
    out = [round(t, 10)]
    while out[-1] < hi - step * 1e-9:  # the last tick at or above hi
        t += step
        out.append(round(t, 10))
    return out


def log_ticks(lo, hi):
    out = []
    for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            v = m * 10 ** k
            if lo <= v <= hi:
                out.append(v)
    return out


def chart(cid, title, series, xlabel, ylabel, xlog=False, ylog=False, categories=None,
          unit=""):
    """series: [{name, dash, points: [{x, y, lo, hi, label}]}]. categories: the
    x values in order, drawn evenly spaced (then x is looked up in it)."""
    # The legend sits right of the plot, as wide as its longest name needs (12px sans-serif,
    # at most 0.62 em a character): no name is cut. The page's CSS scales the whole chart
    # to half the page's width.
    longest = max((len(s["name"]) for s in series), default=0)
    W, H, L, T, B = 640, 340, 70, 20, 46
    R = max(110, round(54 + 0.62 * 12 * longest))
    pw, ph = W - L - R, H - T - B
    pts = [p for s in series for p in s["points"] if p["y"] is not None]
    if not pts:
        return (f'<div class="chart" data-chart="{esc(cid)}" data-points="0"><h3>{esc(title)}</h3>'
                f'<p class="missing">No data points.</p></div>')
    ys = [p["y"] for p in pts] + [p[k] for p in pts for k in ("lo", "hi") if p.get(k) is not None]
    if ylog:
        ylo, yhi = min(v for v in ys if v > 0), max(ys)
        ylo, yhi = 10 ** math.floor(math.log10(ylo)), 10 ** math.ceil(math.log10(yhi))
        yt = log_ticks(ylo, yhi)

        def Y(v):
            return T + ph - (math.log10(v) - math.log10(ylo)) / (math.log10(yhi) - math.log10(ylo)) * ph
    else:
        yt = nice_ticks(0, max(ys) * 1.05)
        ylo, yhi = yt[0], yt[-1]

        def Y(v):
            return T + ph - (v - ylo) / (yhi - ylo) * ph
    if categories is not None:
        def X(v):
            i = categories.index(v)
            return L + (i + 0.5) * pw / len(categories)
        xt = categories
    else:
        xs = [p["x"] for p in pts]
        if xlog:
            xlo, xhi = min(xs), max(xs)
            xlo, xhi = 10 ** math.floor(math.log10(xlo)), 10 ** math.ceil(math.log10(xhi))
            xt = log_ticks(xlo, xhi)

            def X(v):
                return L + (math.log10(v) - math.log10(xlo)) / (math.log10(xhi) - math.log10(xlo)) * pw
        else:
            xt = nice_ticks(min(xs), max(xs))

            def X(v):
                return L + (v - xt[0]) / (xt[-1] - xt[0]) * pw
    o = [f'<div class="chart" data-chart="{esc(cid)}" data-points="{len(pts)}">',
         f'<h3>{esc(title)}</h3>',
         f'<svg class="plot" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
         f'aria-label="{esc(title)}">',
         f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" class="frame"/>']
    for v in yt:
        y = Y(v)
        o.append(f'<line x1="{L}" x2="{L + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                 f'<text x="{L - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{fnum(v)}</text>')
    for v in xt:
        x = X(v)
        o.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{T}" y2="{T + ph}" class="grid"/>'
                 f'<text x="{x:.1f}" y="{T + ph + 16}" class="tick" text-anchor="middle">{fnum(v)}</text>')
    o.append(f'<text x="{L + pw / 2}" y="{H - 10}" class="axis" text-anchor="middle">{esc(xlabel)}</text>')
    o.append(f'<text transform="translate(16 {T + ph / 2}) rotate(-90)" class="axis" '
             f'text-anchor="middle">{esc(ylabel)}</text>')
    for k, s in enumerate(series):
        color = PALETTE[k % len(PALETTE)]
        sp = [p for p in s["points"] if p["y"] is not None]
        dash = ' stroke-dasharray="6 4"' if s.get("dash") else ""
        if len(sp) > 1:
            path = " ".join(f'{"M" if i == 0 else "L"}{X(p["x"]):.1f},{Y(p["y"]):.1f}'
                            for i, p in enumerate(sp))
            o.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="1.8"{dash}/>')
        ly = T + 8 + k * 18
        o.append(f'<line x1="{L + pw + 12}" x2="{L + pw + 36}" y1="{ly}" y2="{ly}" stroke="{color}" '
                 f'stroke-width="2"{dash}/><text x="{L + pw + 42}" y="{ly + 4}" class="legend">'
                 f'{esc(s["name"])}</text>')
        for p in sp:
            x, y = X(p["x"]), Y(p["y"])
            spread = ""
            if p.get("lo") is not None and p.get("hi") is not None:
                o.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{Y(p["lo"]):.1f}" y2="{Y(p["hi"]):.1f}" '
                         f'stroke="{color}" class="bar"/>')
                spread = f'; repeats from {fnum(p["lo"])} to {fnum(p["hi"])}'
            tip = f'{s["name"]}: {p.get("label") or xlabel + " " + fnum(p["x"])} → {fnum(p["y"])}{unit}{spread}'
            attrs = (f'class="pt" data-series="{esc(s["name"])}" data-x="{fattr(p["x"])}" '
                     f'data-y="{fattr(p["y"])}"')
            if p.get("lo") is not None:
                attrs += f' data-lo="{fattr(p["lo"])}" data-hi="{fattr(p["hi"])}"'
            o.append(f'<circle {attrs} cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{color}">'
                     f'<title>{esc(tip)}</title></circle>')
    o.append("</svg>")
    o.append('<p class="readout">Point at a dot to read its value.</p></div>')
    return "\n".join(o)


# ---- the data ------------------------------------------------------------------


def dispatch_charts(data):
    rows = read_csv(os.path.join(data, "dispatch.csv"), DISPATCH_COLUMNS)
    if rows is None:
        return None, None
    minmax = {}
    try:
        with open(os.path.join(data, "dispatch.json")) as f:
            for r in json.load(f)["results"]:
                if not r.get("skipped") and "us_per_round_min" in r:
                    minmax[(r["backend"], r["library"], r["fds"], r["active"])] = (
                        r["us_per_round_min"], r["us_per_round_max"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # the min/max bars are optional: without them, none are drawn
    val = {}
    for r in rows:
        v = num(r["us_per_round"])
        if r.get("skipped") == "1" or v is None:
            continue
        val[(r["backend"], r["library"], int(r["fds"]), int(r["active"]))] = v
    actives = sorted({k[3] for k in val})
    out = []
    for a in actives:
        series = []
        for b in ("select", "poll", "epoll"):
            for lib in ("raw", "libevent"):
                keys = sorted((k for k in val if k[0] == b and k[1] == lib and k[3] == a),
                              key=lambda k: k[2])
                if not keys:
                    continue
                series.append({"name": f"{b} {lib}", "dash": lib == "libevent", "points": [
                    {"x": k[2], "y": val[k], "lo": minmax.get(k, (None, None))[0],
                     "hi": minmax.get(k, (None, None))[1], "label": f"{k[2]} descriptors"}
                    for k in keys]})
        out.append(chart(f"dispatch-active-{a}", f"One dispatch round, {a} active descriptor"
                         f"{'s' if a != 1 else ''}: CPU µs against watched descriptors (log-log)",
                         series, "watched descriptors", "CPU µs per round", xlog=True, ylog=True,
                         unit=" µs"))
    return out, val


def mux_data(data):
    med = read_csv(os.path.join(data, "multiplexing.csv"), MUX_COLUMNS)
    runs = read_csv(os.path.join(data, "multiplexing-runs.csv"), RUNS_COLUMNS) or []
    if med is None:
        return None
    order = []
    for r in med:
        if r["server"] not in order:
            order.append(r["server"])
    idles = sorted({int(r["idle_asked"]) for r in med})
    reps = {}
    for r in runs:
        reps.setdefault((r["server"], int(r["idle_asked"])), []).append(r)
    return {"med": med, "order": order, "idles": idles, "reps": reps}


def event_loop_charts(data):
    """results/event-loops.csv (scripts/bench-event-loop.sh): lab 06's loop-echo
    against the peer event loops, per workload. None when the file is absent."""
    rows = read_csv(os.path.join(data, "event-loops.csv"), EVENT_LOOP_COLUMNS)
    if rows is None:
        return None
    # x: the message size (each workload has its own: 64 B suite, 1/10/100
    # KiB vmbench), evenly spaced; the tooltip names the workload.
    servers = []
    for r in rows:
        if r["server"] not in servers:
            servers.append(r["server"])
    sizes = sorted({int(r["size"]) for r in rows if num(r.get("size")) is not None})
    size = {r["workload"]: f'{r["workload"]} ({r["connections"]} conns, {r["size"]} B)' for r in rows}
    out = []
    for col, lo, hi, title, ylabel, unit, ylog in (
            ("cpu_us_per_request", "cpu_min", "cpu_max",
             "Event loops: the server's CPU µs per request (log scale)", "CPU µs per request",
             " µs", True),
            ("requests_per_s", "rps_min", "rps_max", "Event loops: requests/s", "requests/s",
             " req/s", False)):
        series = []
        for sv in servers:
            pts = []
            for r in rows:
                if r["server"] != sv or num(r.get(col)) is None:
                    continue
                pts.append({"x": int(r["size"]), "y": num(r[col]), "lo": num(r.get(lo)),
                            "hi": num(r.get(hi)),
                            "label": f'{size[r["workload"]]}, median of {r.get("repeats", "?")}'})
            pts.sort(key=lambda p: p["x"])  # the line runs from small messages to large
            series.append({"name": sv, "dash": sv.startswith(("asyncio", "uvloop")),
                           "points": pts})
        out.append(chart(f"event-loops-{col}", title, series, "message size, bytes", ylabel,
                         ylog=ylog, categories=sizes, unit=unit))
    return out


def repeat_values(m, server, idle, col):
    rs = m["reps"].get((server, idle), [])
    ok = [r for r in rs if r.get("errors") in ("0", "")] or rs
    return [v for v in (num(r.get(col)) for r in ok) if v is not None]


def mux_charts(m):
    out = []
    for col, title, ylabel, unit in (
            ("requests_per_s", "End to end: requests/s with 50 active connections as idle ones pile up",
             "requests/s", " req/s"),
            ("cpu_us_per_request", "End to end: the server's CPU µs per request", "CPU µs per request",
             " µs"),
            ("p99_us", "End to end: p99 latency", "p99 µs", " µs")):
        series = []
        for s in m["order"]:
            pts = []
            for r in m["med"]:
                if r["server"] != s:
                    continue
                i = int(r["idle_asked"])
                v = num(r.get(col))
                rv = repeat_values(m, s, i, col)
                held = r["idle"] + (f" held (capped, asked {i})" if r.get("capped") == "1" else " idle")
                pts.append({"x": i, "y": v, "lo": min(rv) if len(rv) > 1 else None,
                            "hi": max(rv) if len(rv) > 1 else None,
                            "label": f"{held}, median of {r.get('repeats', '?')}"})
            series.append({"name": s, "points": pts})
        out.append(chart(f"multiplexing-{col}", title, series, "idle connections asked",
                         ylabel, categories=m["idles"], unit=unit))
    return out


def spread_table(m):
    """Per point: the repeats' spread of requests/s and of CPU µs/request."""
    rows, spreads, cpu_spreads = [], [], []
    for s in m["order"]:
        for i in m["idles"]:
            rv = repeat_values(m, s, i, "requests_per_s")
            cv = repeat_values(m, s, i, "cpu_us_per_request")
            if not rv:
                continue
            sp = (max(rv) - min(rv)) / statistics.median(rv) if len(rv) > 1 and statistics.median(rv) > 0 else None
            cp = (max(cv) - min(cv)) / statistics.median(cv) if len(cv) > 1 and statistics.median(cv) > 0 else None
            if sp is not None:
                spreads.append(sp)
            if cp is not None:
                cpu_spreads.append(cp)
            rows.append((s, i, len(rv), statistics.median(rv), min(rv), max(rv), sp, cp))
    return rows, spreads, cpu_spreads


def verdict(spreads, cpu_spreads):
    if not spreads:
        return "unknown", ("Each point was measured once (or the per-repeat file is missing): the "
                           "spread between repeats, and so the noise, cannot be judged. Run with "
                           "--repeats 3 or more.")
    noisy = [s for s in spreads if s > NOISY_SPREAD]
    share = len(noisy) / len(spreads)
    msp = statistics.median(spreads)
    cmsp = statistics.median(cpu_spreads) if cpu_spreads else None
    cpu_txt = ""
    if cmsp is not None:
        cpu_txt = f" The server's CPU µs per request spread by a median {100 * cmsp:.0f}% between repeats"
        if cmsp <= NOISY_SPREAD:
            cpu_txt += ": steady enough, compare that figure instead."
        elif cmsp < msp:
            cpu_txt += (f": less than requests/s, but over {100 * NOISY_SPREAD:.0f}% too — "
                        "read it as a trend only.")
        else:
            cpu_txt += "."
    head = (f"{len(noisy)} of {len(spreads)} points ({100 * share:.0f}%) had repeats more than "
            f"{100 * NOISY_SPREAD:.0f}% apart (max − min over the median of requests/s); the median "
            f"point's spread was {100 * msp:.0f}%.")
    if share > NOISY_SHARE:
        return "noisy", (head + f" More than {100 * NOISY_SHARE:.0f}% of the points are that unsteady: "
                         "the machine was too noisy to trust requests/s (other work shared the CPUs, "
                         "see the load average). Differences in requests/s smaller than the spread "
                         "mean nothing here; measure again on a quiet machine." + cpu_txt)
    return "quiet", (head + f" At most {100 * NOISY_SHARE:.0f}% of the points are that unsteady: "
                     "requests/s can be compared, within the spread shown by each point's bar." + cpu_txt)


def conclusion(dval, m, noisy):
    out = []
    if dval:
        fds = sorted({k[2] for k in dval})
        actives = sorted({k[3] for k in dval})
        parts = []
        for a in actives:
            tie = ahead = None
            for n in fds:
                e = dval.get(("epoll", "raw", n, a))
                sp = [dval[k] for k in (("select", "raw", n, a), ("poll", "raw", n, a)) if k in dval]
                if e is None or not sp:
                    continue
                if min(sp) <= 1.10 * e:
                    tie, ahead = n, None
                elif ahead is None:
                    ahead = n
            if tie is None:
                parts.append(f"with {a} active, epoll costs less per round than select and poll "
                             f"from the smallest point measured ({fds[0]} descriptors)")
            elif ahead is None:
                parts.append(f"with {a} active, the cheaper of select and poll stays within 10% of "
                             f"epoll up to {tie} descriptors: no crossing in this sweep")
            else:
                parts.append(f"with {a} active, the cheaper of select and poll is within 10% of epoll "
                             f"up to {tie} descriptors and epoll is ahead from {ahead}")
        out.append("Where epoll starts to win: " + "; ".join(parts) + ".")
        both = [n for n in fds if any(("poll", "raw", n, a) in dval and ("epoll", "raw", n, a) in dval
                                      for a in actives)]
        if both:
            n = max(both)
            rs = [f"{dval[('poll', 'raw', n, a)] / dval[('epoll', 'raw', n, a)]:.1f}× with {a} active"
                  for a in actives if ("poll", "raw", n, a) in dval and ("epoll", "raw", n, a) in dval]
            out.append(f"At {n} watched descriptors one poll round costs {' and '.join(rs)} what one "
                       "epoll round costs: poll hands the kernel the whole list every time, epoll "
                       "only reports what is ready.")
    if m:
        top = max(m["idles"])
        kept, cpu = [], []
        for s in m["order"]:
            pts = {int(r["idle_asked"]): r for r in m["med"] if r["server"] == s}
            if (0 in pts and top in pts and (num(pts[0]["requests_per_s"]) or 0) > 0
                    and num(pts[top]["requests_per_s"]) is not None):
                share = num(pts[top]["requests_per_s"]) / num(pts[0]["requests_per_s"])
                cap = " (capped)" if pts[top].get("capped") == "1" else ""
                kept.append(f"{s} {100 * share:.0f}% at {pts[top]['idle']}{cap}")
                c0, c1 = num(pts[0]["cpu_us_per_request"]), num(pts[top]["cpu_us_per_request"])
                if c0 and c1:
                    cpu.append(f"{s} {c0:.1f} → {c1:.1f} ({c1 / c0:.1f}×)")
        errors = sum(int(r.get("errors") or 0) for r in m["med"])
        if kept:
            out.append(f"End to end, from 0 to {top} idle connections, requests/s kept: "
                       + ", ".join(kept) + ".")
        if cpu:
            out.append("The server's CPU µs per request over the same range: " + ", ".join(cpu)
                       + f". Errors over the whole run: {errors}.")
        if noisy == "noisy":
            out.append("Caution: the spread between repeats was too large to trust requests/s "
                       "(see the verdict above): the shares kept above are not a ranking; "
                       "measure again on a quiet machine (scripts/report.sh).")
    return out


# ---- timelines -----------------------------------------------------------------

TIMELINE_ORDER = ["echo-threaded", "echo-nonblocking", "echo-select", "echo-poll", "echo-epoll",
                  "echo-sigio", "echo-aio", "echo-uring", "loop-echo"]


def timelines(tdir):
    if not tdir or not os.path.isdir(tdir):
        return [], f"no timeline directory ({tdir or 'none given'})"
    files = sorted(glob.glob(os.path.join(tdir, "*.svg")),
                   key=lambda p: (TIMELINE_ORDER.index(os.path.basename(p)[:-4])
                                  if os.path.basename(p)[:-4] in TIMELINE_ORDER else 99, p))
    out = []
    for p in files:
        try:
            with open(p, encoding="utf-8") as f:
                svg = f.read()
        except UnicodeDecodeError as e:
            raise DataError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        except OSError as e:
            raise DataError(f"{p}: {e.strerror}") from None
        svg = re.sub(r"^\s*<\?xml[^>]*\?>\s*", "", svg)
        svg = re.sub(r"<!DOCTYPE[^>]*>\s*", "", svg)
        # Nothing that could run or fetch: the drawings are plain shapes and text.
        if re.search(r"<script|<foreignObject|\bhref\s*=|\bon[a-z]+\s*=", svg, re.I):
            out.append((os.path.basename(p)[:-4], None))
            continue
        svg = re.sub(r"<svg\b", '<svg class="timeline-svg"', svg, count=1)
        out.append((os.path.basename(p)[:-4], svg))
    return out, None if files else f"{tdir} holds no .svg"


# ---- the page ------------------------------------------------------------------

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1240px;
padding:16px 24px 48px;color:#222;background:#fafafa}
h1{font-size:26px;margin:8px 0 4px}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:36px}
h3{font-size:14px;margin:14px 0 4px;max-width:580px}
section h2{margin-top:14px}
section{background:#fff;border:1px solid #e4e4e4;border-radius:6px;padding:4px 18px 14px;margin:18px 0}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f2f2f2}
tr.noisy td{background:#fff0ef}
#machine td{text-align:left}td:first-child,th:first-child{text-align:left}
.chart{display:inline-block;vertical-align:top;margin:4px 14px 10px 0;width:calc(50% - 16px);min-width:420px}
svg.plot{width:100%;height:auto;background:#fff}
.frame{fill:#fff;stroke:#999}.grid{stroke:#eee}.tick{font-size:11px;fill:#555}.axis{font-size:12px;fill:#333}
.legend{font-size:12px;fill:#222}.bar{stroke-width:1.2;opacity:.55}
circle.pt{cursor:pointer;stroke:#fff;stroke-width:1}circle.pt:hover,circle.pt.on{r:7;stroke:#000}
.readout{font-size:13px;color:#333;min-height:2.6em;margin:2px 0 0 70px;max-width:500px}
.verdict{padding:8px 12px;border-radius:4px;font-weight:600}
.verdict.noisy{background:#fde2e1;border:1px solid #e0a19e}.verdict.quiet{background:#e2f4e4;border:1px solid #9fd1a6}
.verdict.unknown{background:#fff4d6;border:1px solid #e4c66e}
.timeline{margin:10px 0 18px;overflow-x:auto}.timeline-svg{max-width:100%;height:auto;border:1px solid #ddd;box-sizing:border-box}
.missing{color:#8a4b00;font-style:italic}.small{font-size:13px;color:#555}
code{background:#f0f0f0;padding:0 3px;border-radius:3px}
"""

SCRIPT = """
document.addEventListener('mouseover', function (e) {
  var p = e.target.closest ? e.target.closest('circle.pt') : null;
  if (!p) return;
  var chart = p.closest('.chart'), out = chart && chart.querySelector('.readout');
  var t = p.querySelector('title');
  if (out && t) out.textContent = t.textContent;
  var on = chart && chart.querySelector('circle.pt.on');
  if (on) on.classList.remove('on');
  p.classList.add('on');
});
"""


def main():
    try:
        return write_report()
    except DataError as e:
        print(f"report: {e}", file=sys.stderr)
        return 1


def write_report():
    ap = argparse.ArgumentParser(prog="report.py")
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--timelines")
    ap.add_argument("--source", default="")
    ap.add_argument("--load-before")
    ap.add_argument("--load-after")
    a = ap.parse_args()

    d_charts, dval = dispatch_charts(a.data)
    m = mux_data(a.data)
    if d_charts is None and m is None:
        print(f"report: neither {a.data}/dispatch.csv nor {a.data}/multiplexing.csv exists",
              file=sys.stderr)
        return 1
    now = machine_now()
    loads = recorded_loads(a.data)
    page = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
            # The page may use nothing but itself: no request can leave it.
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            'style-src \'unsafe-inline\'; script-src \'unsafe-inline\'; img-src data:">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            "<title>iolab report: select, poll, epoll and io_uring on this machine</title>",
            f"<style>{CSS}</style></head><body>",
            "<h1>iolab report: select, poll, epoll and io_uring on this machine</h1>",
            f'<p class="small">Written {esc(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))} '
            f'by scripts/report.sh from {esc(a.source or a.data)}. One file, nothing fetched: open '
            'it anywhere. Point at a dot in a chart to read its value; a vertical bar through a dot '
            'spans its repeats (smallest to largest).</p>']

    # machine
    page.append('<section id="machine"><h2>The machine</h2><table>')
    rows = [("kernel", now["kernel"]), ("CPU model", now["cpu"] or "not readable"),
            ("cores", f'{now["cores"]} (online {now["online"] or "?"}; this process may use '
                      f'{now["affinity"] if now["affinity"] is not None else "?"})'),
            ("frequency governor", now["governor"] or
             "not readable (no /sys/devices/system/cpu/cpu*/cpufreq: a virtual machine or no cpufreq driver)")]
    if a.load_before or a.load_after:
        rows.append(("load average 1/5/15 min, before the measurements", a.load_before or "not recorded"))
        rows.append(("load average 1/5/15 min, after the measurements", a.load_after or "not recorded"))
    for name, start, end in loads:
        rows.append((f"load average 1/5/15 min recorded by {name[:-3]} (start → end)",
                     f"{start} → {end or 'not recorded'}"))
    if not (a.load_before or a.load_after or loads):
        rows.append(("load average", "not recorded with these data"))
    rows.append(("load average now (when this page was written)",
                 " ".join((read_first("/proc/loadavg") or "? ? ?").split()[:3])))
    try:
        with open(os.path.join(a.data, "dispatch.json")) as f:
            dm = json.load(f)["machine"]
        rows.append(("machine recorded with the dispatch sweep",
                     f'{dm.get("cpu")}, {dm.get("cpus")} CPUs, {dm.get("kernel")}, libevent '
                     f'{dm.get("libevent")}, RLIMIT_NOFILE {dm.get("rlimit_nofile")}'))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    for k, v in rows:
        page.append(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>")
    page.append("</table></section>")

    # dispatch
    page.append('<section id="dispatch"><h2>1. The dispatch sweep (scripts/dispatch-sweep.sh)</h2>')
    if d_charts is None:
        page.append(f'<p class="missing">No dispatch.csv in {esc(a.data)}: the sweep was not run.</p>')
    else:
        page.append("<p>The CPU time one round of the event loop takes — one wait call plus handling "
                    "what it reported — as the number of watched descriptors grows. raw = our own loop "
                    "on the system call; libevent = libevent's event_base forced to that backend "
                    "(dashed). Median of the runs; the bar spans the fastest and slowest run.</p>")
        page.extend(d_charts)
    page.append("</section>")

    # multiplexing
    noisy = "unknown"
    page.append('<section id="multiplexing"><h2>2. Echo servers with idle connections '
                '(scripts/compare-multiplexing.sh)</h2>')
    if m is None:
        page.append(f'<p class="missing">No multiplexing.csv in {esc(a.data)}: the comparison was '
                    'not run.</p></section>')
    else:
        page.append("<p>50 active connections echo 64-byte messages in a closed loop while a second "
                    "client holds the idle ones. Each dot is the median of the repeats; its bar spans "
                    "them. echo-select cannot hold a descriptor of 1024 or more, so its idle count is "
                    "capped (the tooltip says so).</p>")
        page.extend(mux_charts(m))
        page.append("</section>")
        rows_, spreads, cpu_spreads = spread_table(m)
        noisy, text = verdict(spreads, cpu_spreads)
        page.append('<section id="spread"><h2>3. Spread over repeats, and can requests/s be trusted?</h2>')
        page.append(f'<p id="verdict" class="verdict {noisy}" data-verdict="{noisy}">{esc(text)}</p>')
        page.append("<p class=\"small\">Spread = (largest − smallest) / median over a point's repeats. "
                    f"A point is noisy above {100 * NOISY_SPREAD:.0f}%; the run is too noisy to trust "
                    f"requests/s when more than {100 * NOISY_SHARE:.0f}% of its points are.</p>")
        page.append("<table><tr><th>server</th><th>idle asked</th><th>repeats</th><th>median req/s</th>"
                    "<th>smallest</th><th>largest</th><th>spread req/s</th><th>spread CPU µs/req</th></tr>")
        for s, i, n, md, lo, hi, sp, cp in rows_:
            cls = ' class="noisy"' if sp is not None and sp > NOISY_SPREAD else ""
            page.append(f"<tr{cls}><td>{esc(s)}</td><td>{i}</td><td>{n}</td><td>{md:.0f}</td>"
                        f"<td>{lo:.0f}</td><td>{hi:.0f}</td>"
                        f"<td>{'—' if sp is None else f'{100 * sp:.0f}%'}</td>"
                        f"<td>{'—' if cp is None else f'{100 * cp:.0f}%'}</td></tr>")
        page.append("</table></section>")

    # event loops (lab 06's loop-echo against libuv, libevent, Asio, asyncio, uvloop)
    ev = event_loop_charts(a.data)
    page.append('<section id="event-loops"><h2>Event loops: lab 06\'s loop-echo against the '
                'loops a reader would use instead (scripts/bench-event-loop.sh)</h2>')
    if ev is None:
        page.append(f'<p class="missing">No event-loops.csv in {esc(a.data)}: run '
                    '<code>scripts/bench-event-loop.sh --out DIR</code> (about 7 minutes).</p>')
    else:
        page.append("<p>Echo servers under loadgen (closed loop, TCP_NODELAY), server on one CPU, "
                    "loadgen on the other. vm-1k/10k/100k: uvloop's published benchmark (ping-pong "
                    "of 1, 10 and 100 KiB messages over 10 connections); suite: 64 B over 50 "
                    "connections. Python servers dashed. Each dot is the median of the repeats; "
                    "its bar spans them.</p>")
        page.extend(ev)
    page.append("</section>")

    # timelines
    tl, why = timelines(a.timelines)
    page.append(f'<section id="timelines" data-timelines="{len([t for t in tl if t[1]])}">'
                "<h2>4. Timelines: each system call of a small fixed workload (scripts/timeline.sh)</h2>")
    if not tl:
        page.append(f'<p class="missing">No timelines: {esc(why)}. Draw them with '
                    "<code>scripts/timeline.sh echo-threaded echo-nonblocking echo-select echo-poll "
                    "echo-epoll echo-sigio echo-aio echo-uring loop-echo</code> and write this report "
                    "again.</p>")
    else:
        page.append(f"<p>From {esc(a.timelines)}. Blue = waiting (phase 1), orange = copying "
                    "(phase 2), green = a client's request from send to echo. Hover a box for the call.</p>")
        for name, svg in tl:
            if svg is None:
                page.append(f'<p class="missing">{esc(name)}.svg left out: it contains a script, a '
                            "link or an event handler.</p>")
            else:
                page.append(f'<div class="timeline" data-server="{esc(name)}">{svg}</div>')
    page.append("</section>")

    # conclusion
    page.append('<section id="conclusion"><h2>5. Conclusion, computed from these data</h2><ol>')
    for line in conclusion(dval, m, noisy):
        page.append(f"<li>{esc(line)}</li>")
    page.append("</ol></section>")
    page.append(f"<script>{SCRIPT}</script></body></html>")

    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = a.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(page) + "\n")
    os.replace(tmp, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
