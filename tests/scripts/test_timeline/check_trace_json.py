#!/usr/bin/env python3
"""check_trace_json.py FILE...: is each FILE a Chrome Trace Event JSON file that
ui.perfetto.dev and chrome://tracing open as timeline.py meant it?

The rules checked are those of the format's documentation ("Trace Event Format",
the JSON Object Format): a top-level object whose "traceEvents" is a list of
events; every event has "ph", "pid", "tid" and "name"; "X" (complete) events
have numeric "ts" and "dur" >= 0 in microseconds; "M" (metadata) events are
process_name / thread_name / *_sort_index with their "args"; "s"/"f" (flow)
events have an "id" and "cat", each id starts once and finishes once, no
earlier than it starts, and each end binds to an enclosing slice of its thread
("bp": "e") or the next one; "args" is an object. And the viewers' nesting
rule: on one thread, complete slices nest (one ends before the next starts, or
lies wholly inside it), never overlap partly. Exit 1 on any problem."""
import json, sys

META = {"process_name": "name", "thread_name": "name", "process_sort_index": "sort_index",
        "thread_sort_index": "sort_index", "process_labels": "labels"}


def validate(doc):
    """Returns (problems, number of X slices, number of flows)."""
    p = []
    if not isinstance(doc, dict) or not isinstance(doc.get("traceEvents"), list):
        return ["no top-level object with a traceEvents list"], 0, 0
    if doc.get("displayTimeUnit", "ms") not in ("ms", "ns"):
        p.append(f"displayTimeUnit {doc['displayTimeUnit']!r} is neither ms nor ns")
    slices, flows, named = {}, {}, set()
    for k, e in enumerate(doc["traceEvents"]):
        where = f"event {k} ({e.get('ph')} {e.get('name')!r})"
        for f in ("ph", "pid", "tid", "name"):
            if f not in e:
                p.append(f"{where}: no '{f}'")
        if "args" in e and not isinstance(e["args"], dict):
            p.append(f"{where}: args is not an object")
        ph = e.get("ph")
        if ph == "X":
            ts, dur = e.get("ts"), e.get("dur")
            if not isinstance(ts, (int, float)) or not isinstance(dur, (int, float)) or dur < 0:
                p.append(f"{where}: X needs numeric ts and dur >= 0, got ts={ts!r} dur={dur!r}")
                continue
            slices.setdefault((e["pid"], e["tid"]), []).append((ts, ts + dur, e["name"]))
        elif ph == "M":
            key = META.get(e.get("name"))
            if key is None or key not in e.get("args", {}):
                p.append(f"{where}: metadata needs a known name and args.{key or '?'}")
            elif e["name"] == "thread_name":
                named.add((e["pid"], e["tid"]))
        elif ph in ("s", "f", "t"):
            if "id" not in e or "cat" not in e or not isinstance(e.get("ts"), (int, float)):
                p.append(f"{where}: a flow event needs id, cat and a numeric ts")
                continue
            flows.setdefault((e["cat"], e["id"]), []).append(e)
        else:
            p.append(f"{where}: phase {ph!r} is not used by timeline.py")
    for key, lst in slices.items():
        lst.sort(key=lambda s: (s[0], -s[1]))
        stack = []
        for a, b, n in lst:
            while stack and stack[-1][1] <= a:
                stack.pop()
            if stack and b > stack[-1][1] + 1e-6:
                p.append(f"thread {key}: slice {n!r} [{a}, {b}] overlaps {stack[-1][2]!r} "
                         f"[{stack[-1][0]}, {stack[-1][1]}] partly (slices must nest)")
            stack.append((a, b, n))
        if key not in named:
            p.append(f"thread {key} has slices but no thread_name")

    def bound(ev, enclosing):
        for a, b, _ in slices.get((ev["pid"], ev["tid"]), []):
            if (a <= ev["ts"] <= b) if enclosing else a >= ev["ts"]:
                return True
        return False

    for key, evs in flows.items():
        starts = [e for e in evs if e["ph"] == "s"]
        ends = [e for e in evs if e["ph"] == "f"]
        if len(starts) != 1 or len(ends) != 1:
            p.append(f"flow {key}: {len(starts)} starts and {len(ends)} ends (want one each)")
            continue
        s, f = starts[0], ends[0]
        if f["ts"] < s["ts"]:
            p.append(f"flow {key}: ends at {f['ts']} before it starts at {s['ts']}")
        if not bound(s, True):
            p.append(f"flow {key}: its start at {s['ts']} is in no slice of thread {s['tid']}")
        if not bound(f, f.get("bp") == "e"):
            p.append(f"flow {key}: its end at {f['ts']} binds to no slice of thread {f['tid']}")
    return p, sum(len(v) for v in slices.values()), len(flows)


if __name__ == "__main__":
    bad = 0
    for path in sys.argv[1:]:
        with open(path) as fh:
            problems, n, nf = validate(json.load(fh))
        for q in problems:
            print(f"FAIL {path}: {q}")
        print(f"{'ok  ' if not problems else 'FAIL'} {path}: {n} slices, {nf} flows")
        bad += bool(problems)
    sys.exit(1 if bad else 0)
