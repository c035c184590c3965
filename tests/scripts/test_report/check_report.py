#!/usr/bin/env python3
"""check_report.py DOM.json DATA_DIR TIMELINE_DIR: what the browser showed of
scripts/report.sh's page (browser_check.py --dom-json) against the data the
page was written from, read here independently of report.py:
  - the sections machine, dispatch, multiplexing, spread, timelines, conclusion;
  - one dispatch chart per active count in DATA/dispatch.csv, with one point per
    measured row (series "BACKEND LIBRARY", x = fds, y = us_per_round);
  - the three multiplexing charts, one point per row of DATA/multiplexing.csv
    with a value (series = server, x = idle_asked, y = the column);
  - with DATA/event-loops.csv, its two charts (series = server, x = size);
  - every point laid out (non-zero size) with a hover title naming its series,
    and hovering one puts that title in the chart's readout line (the page's
    inline script);
  - one drawn timeline per TIMELINE_DIR/*.svg (or the page says there are none);
  - the verdict, recomputed from DATA/multiplexing-runs.csv with the rule the
    page states (a point is noisy when its repeats spread over 20% of the
    median requests/s; the run is noisy when over 25% of its points are);
  - the machine section names this kernel release and core count.
Prints one line per check; exit 1 if any failed."""
import csv
import glob
import json
import os
import platform
import statistics
import sys

dom_file, data, tdir = sys.argv[1:4]
with open(dom_file) as f:
    dom = json.load(f)["dom"]
failed = 0


def check(what, ok, detail=""):
    global failed
    print(f"{'ok  ' if ok else 'FAIL'} {what}{' (' + detail + ')' if detail and not ok else ''}")
    failed += not ok


def rows(name):
    with open(os.path.join(data, name), newline="") as f:
        return list(csv.DictReader(f))


def close(a, b):
    return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(b)))


if dom is None:
    print("FAIL the page's DOM could not be read")
    sys.exit(1)
want = ["machine", "dispatch", "multiplexing", "spread", "timelines", "conclusion"]
check("sections " + ", ".join(want), all(s in dom["sections"] for s in want), f"got {dom['sections']}")
charts = {c["id"]: c for c in dom["charts"]}


def check_chart(cid, expected):
    """expected: {(series, x): y}"""
    c = charts.get(cid)
    check(f"chart {cid} present with an svg", c is not None and c["svg"],
          f"charts on the page: {sorted(charts)}")
    if c is None:
        return
    got = {}
    for p in c["points"]:
        got[(p["series"], float(p["x"]))] = p["y"]
    check(f"chart {cid}: {len(expected)} points, one per data row", len(c["points"]) == len(expected)
          and str(len(expected)) == c["declared"],
          f"{len(c['points'])} points drawn, {c['declared']} declared, {len(expected)} rows")
    missing = [k for k in expected if k not in got]
    check(f"chart {cid}: every data row has its point", not missing, f"missing {missing[:5]}")
    wrong = [(k, got[k], v) for k, v in expected.items() if k in got and not close(got[k], v)]
    check(f"chart {cid}: each point carries its row's value", not wrong, f"(point, shown, data): {wrong[:5]}")
    last = c["points"][-1] if c["points"] else {}
    check(f"chart {cid}: hovering a point shows its value below the chart",
          last.get("title") is not None and c.get("hovered_readout") == last["title"],
          f"readout {c.get('hovered_readout')!r}, point title {last.get('title')!r}")
    bad = [p for p in c["points"] if not p["visible"] or not p["title"] or p["series"] not in p["title"]]
    check(f"chart {cid}: every point laid out with a hover title naming its series", not bad,
          f"{len(bad)} without: {bad[:2]}")


disp = [r for r in rows("dispatch.csv") if r["skipped"] != "1" and r["us_per_round"]]
for a in sorted({int(r["active"]) for r in disp}):
    check_chart(f"dispatch-active-{a}", {(f"{r['backend']} {r['library']}", float(r["fds"])):
                                         float(r["us_per_round"]) for r in disp if int(r["active"]) == a})
mux = rows("multiplexing.csv")
for col in ("requests_per_s", "cpu_us_per_request", "p99_us"):
    check_chart(f"multiplexing-{col}", {(r["server"], float(r["idle_asked"])): float(r[col])
                                        for r in mux if r[col]})
# scripts/bench-event-loop.sh's table, when committed: two charts, x = message size.
ev_charts = set()
if os.path.exists(os.path.join(data, "event-loops.csv")):
    ev = rows("event-loops.csv")
    for col in ("cpu_us_per_request", "requests_per_s"):
        ev_charts.add(f"event-loops-{col}")
        check_chart(f"event-loops-{col}", {(r["server"], float(r["size"])): float(r[col])
                                           for r in ev if r[col]})
extra = sorted(set(charts) - {f"dispatch-active-{a}" for a in {int(r["active"]) for r in disp}}
               - {f"multiplexing-{c}" for c in ("requests_per_s", "cpu_us_per_request", "p99_us")}
               - ev_charts)
check("no chart beyond those", not extra, f"unexpected {extra}")

svgs = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(tdir, "*.svg")))
tl = dom["timelines"]
if svgs:
    drawn = sorted(t["server"] for t in tl["drawn"] if t["svg"] and t["boxes"] > 0)
    check(f"timelines: the {len(svgs)} drawings of {tdir} embedded, each with boxes", drawn == svgs,
          f"drawn {drawn}, files {svgs}")
else:
    check("timelines: the page says there are none", "No timelines" in tl["text"], tl["text"][:200])

spreads = []
by = {}
for r in rows("multiplexing-runs.csv"):
    by.setdefault((r["server"], r["idle_asked"]), []).append(r)
for rs in by.values():
    ok = [r for r in rs if r["errors"] in ("0", "")] or rs
    v = [float(r["requests_per_s"]) for r in ok if r["requests_per_s"]]
    if len(v) > 1 and statistics.median(v) > 0:
        spreads.append((max(v) - min(v)) / statistics.median(v))
if not spreads:
    expect = "unknown"
else:
    expect = "noisy" if sum(s > 0.20 for s in spreads) / len(spreads) > 0.25 else "quiet"
got = (dom["verdict"] or {}).get("kind")
check(f"verdict is '{expect}' as the repeats say", got == expect, f"page says {got}")

m = dom["machine"] or ""
check("machine section names this kernel and core count",
      platform.release() in m and f"{os.cpu_count()} (online" in m, m[:300])
check("conclusion has at least three computed lines", len(dom["conclusion"]) >= 3,
      f"{dom['conclusion']}")
sys.exit(1 if failed else 0)
