#!/usr/bin/env python3
"""check_timeline.py OUT SERVER...: each model's signature, from OUT/SERVER.json.

No absolute timing thresholds: a check looks at which calls were made, in which
thread (lane), and whether a call was in progress (start <= t <= end) when a
client sent a request. Under the ftrace tracer (true durations, scheduler
events) it also checks ratios and wake-ups: a copy is far shorter than a wait,
a client's send wakes the server out of its model's wait, a server's send wakes
a client that slept in recv. And, for every tracer: the axis labels of
OUT/SERVER.svg do not overlap, the lanes are named by role, and
OUT/SERVER.trace.json is valid Chrome Trace Event JSON (check_trace_json.py).
Prints one line per check; exits 1 if any failed."""
import json, os, re, statistics, sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_trace_json import validate  # noqa: E402

out, servers = sys.argv[1], sys.argv[2:]
failed = 0
MUX = {"select", "pselect6", "poll", "ppoll", "epoll_wait", "epoll_pwait", "epoll_pwait2"}
SOCK_COPY = {"read", "readv", "recv", "recvfrom", "recvmsg", "write", "writev", "send", "sendto",
             "sendmsg"}


def check(server, what, ok, detail=""):
    global failed
    print(f"{'ok  ' if ok else 'FAIL'} {server}: {what}{' (' + detail + ')' if detail else ''}")
    failed += not ok


def check_loadgen_sleep(s, d):
    """loadgen --busy-poll 0 against echo-epoll, one connection: nobody polls, so each
    round trip costs a wake-up on one side or the other (who pays for a wake-up): the
    server's send wakes loadgen asleep in epoll_wait, or loadgen's send wakes the server.
    Which side sleeps depends on which is quicker; when loadgen did sleep, the server woke it."""
    lanes, allc = d["lanes"], d["calls"]
    n = int(re.search(r"-n (\d+)", " ".join(d["workload"]["loadgen"])).group(1))

    def edges(waker_kind, wakee_kind):
        return [e for e in d["wakeups"] if e["waker_lane"] is not None and e["waker_call"] is not None
                and e["wakee_call"] is not None and lanes[e["waker_lane"]]["kind"] == waker_kind
                and lanes[e["wakee_lane"]]["kind"] == wakee_kind
                and allc[e["waker_call"]]["name"] == "sendto"
                and allc[e["wakee_call"]]["name"].startswith("epoll_")]
    s2l, l2s = edges("server-thread", "client"), edges("client", "server-thread")
    check(s, "traced by ftrace", d["tracer"] == "ftrace", d["tracer"])
    check(s, f"about a wake-up per request: the server's sendto woke loadgen's epoll_wait or "
          f"loadgen's sendto woke the server's, together at least half of {n}",
          len(s2l) + len(l2s) >= n / 2 and len(s2l) >= 1,
          f"server woke loadgen {len(s2l)} times, loadgen woke the server {len(l2s)} times")
    slept = {i for i, c in enumerate(allc) if lanes[c["lane"]]["process"] == "loadgen"
             and c["name"].startswith("epoll_") and c["slept"] and c["start_s"] >= 0
             and lanes[c["lane"]]["name"].startswith("loadgen worker")}
    by_server = {e["wakee_call"] for e in s2l}
    # the kernel may run the receive path in its softirq thread (or an interrupt): no traced
    # waker then, which is allowed; so is loadgen's own main thread (telling it to stop);
    # the server waking it from anything but its send is not
    other = [(e["waker"], e["t_s"]) for e in d["wakeups"] if e["wakee_call"] in slept
             and e["waker_lane"] is not None and lanes[e["waker_lane"]]["process"] != "loadgen"
             and e["wakee_call"] not in by_server]
    check(s, "each time loadgen's worker slept in epoll_wait, the server's send woke it (or the "
          "kernel's receive path, untraced), never another of the server's calls",
          not other and len(slept & by_server) >= 1,
          f"{len(slept)} sleeps, {len(slept & by_server)} woken by the server's send; "
          f"other wakers: {other[:3]}")
    with open(os.path.join(out, s + ".trace.json")) as f:
        problems, n_slices, n_flows = validate(json.load(f))
    check(s, f"{s}.trace.json is a valid Chrome trace ({n_slices} slices, {n_flows} flows)",
          not problems and n_flows >= len(s2l) + len(l2s), "; ".join(problems[:5]))


for s in servers:
    with open(os.path.join(out, s + ".json")) as f:
        d = json.load(f)
    if "loadgen" in d["workload"]:
        check_loadgen_sleep(s, d)
        continue
    lanes = d["lanes"]
    # the workload part of the server's calls (the clients' own calls are traced by ftrace too)
    all_live = [c for c in d["calls"] if c["start_s"] + c["dur_s"] >= 0]
    calls = [c for c in all_live if lanes[c["lane"]]["kind"] == "server-thread"]
    reqs = d["requests"]
    ftrace = d["tracer"] == "ftrace"
    server_lanes = [k for k, ln in enumerate(lanes) if ln["kind"] == "server-thread"]
    want = os.environ.get("EXPECT_TRACER")
    check(s, f"traced by {d['tracer']}" + (f" (expected {want})" if want else ""),
          not want or d["tracer"] == want)
    check(s, "12 requests echoed and every lane has counts", len(reqs) == 12 and
          all("counts" in ln for ln in lanes), f"{len(reqs)} requests")
    check(s, "totals add up", sum(d["totals"][k] for k in ("wait", "copy", "other")) == len(calls))
    fds = {r["client"]: r["server_fd"] for r in reqs}
    check(s, "each client's descriptor on the server is known (from /proc)",
          len(fds) == 3 and all(isinstance(v, int) for v in fds.values()), str(fds))
    names = [ln["name"] for ln in lanes]
    check(s, "lanes named by role: the server's main thread first, then 'client 0..2'",
          names[0].startswith("server main thread") and
          [n.split(" (")[0] for n in names[len(server_lanes):]] == ["client 0", "client 1", "client 2"]
          and all(not n.startswith("thread") for n in names), str(names))
    if ftrace:
        check(s, "ftrace lost no events", d["lost_events"] == 0, f"{d['lost_events']} lost")

    # --- the picture: axis labels never overlap (their positions, a conservative width) ---
    with open(os.path.join(out, s + ".svg")) as f:
        svg = f.read()
    for cls, size in (("tick", 11), ("pause", 9)):
        labs = [(float(x), t) for x, t in
                re.findall(rf'<text class="{cls}" x="([-\d.]+)"[^>]*>([^<]*)</text>', svg)]
        boxes = sorted((x - 0.64 * size * len(t) / 2, x + 0.64 * size * len(t) / 2) for x, t in labs)
        over = [(a, b) for a, b in zip(boxes, boxes[1:]) if b[0] < a[1]]
        check(s, f"{len(labs)} {cls} labels on the axis, none overlapping",
              not over and (bool(labs) or cls == "pause"), f"overlaps at {over[:3]}" if over else "")
    # --- the Chrome trace (Perfetto) ---
    with open(os.path.join(out, s + ".trace.json")) as f:
        problems, n_slices, n_flows = validate(json.load(f))
    check(s, f"{s}.trace.json is a valid Chrome trace ({n_slices} slices, {n_flows} flows)",
          not problems and n_slices >= len(calls) and n_flows >= 1, "; ".join(problems[:5]))

    def spans_send(pred):
        # calls satisfying pred that were in progress when some request was sent
        return [c for c in calls if pred(c) and any(
            c["start_s"] <= r["send_s"] <= c["start_s"] + c["dur_s"] for r in reqs)]

    def data_reads(fd=None):
        return [c for c in calls if c["name"] in ("read", "recv", "recvfrom", "recvmsg", "readv")
                and c["ret"].split(" ")[0].isdigit() and int(c["ret"].split(" ")[0]) > 0
                and (fd is None or c["fd"] == fd)]

    mux_calls = [c for c in calls if c["name"] in MUX]
    # Calls that moved a client's bytes: the workload's messages start with 30
    # copies of 'A', 'B' or 'C' (client 0, 1, 2), which strace shows in the
    # buffer argument. (Descriptor numbers alone are not enough: the sanitizers
    # write to a pipe of their own.)
    # (strace shows the bytes, ftrace does not: the calls on the clients' descriptors that
    # moved bytes, the descriptors taken from /proc while the clients were connected)
    # Only while the descriptor is the client's (accept returned it, close not
    # yet called): once closed, its number is free for the sanitizers' own
    # pipes, whose 16-byte writes are no client's bytes.
    def first_ret(c):
        r = c["ret"].split(" ")[0]
        return int(r) if r.lstrip("-").isdigit() else None

    def owned(c):
        opened = [a["start_s"] for a in calls if a["name"] in ("accept", "accept4")
                  and first_ret(a) == c["fd"] and a["start_s"] <= c["start_s"]]
        if not opened:  # before its accept: only if the trace shows none at all
            return not any(a["name"] in ("accept", "accept4") and first_ret(a) == c["fd"]
                           for a in calls)
        since = max(opened)
        return not any(x["name"] == "close" and x["fd"] == c["fd"] and
                       since <= x["start_s"] < c["start_s"] for x in calls)

    payload = [c for c in calls if c["name"] in SOCK_COPY and c["fd"] in fds.values() and
               c["ret"].split(" ")[0].isdigit() and int(c["ret"].split(" ")[0]) > 0 and
               owned(c)]
    if not ftrace:
        shown = [c for c in payload if any(f', "{ch * 8}' in c["args"] for ch in "ABC")]
        other = [f'{c["name"]}({c["args"][:40]}) = {c["ret"]}' for c in payload if c not in shown]
        check(s, "strace shows the clients' bytes in those calls", len(shown) == len(payload),
              f"{len(shown)} of {len(payload)}" + (f"; not: {other[:2]}" if other else ""))
    if s in ("echo-threaded", "echo-blocking"):
        lanes_of = {i: {c["lane"] for c in data_reads(fd)} for i, fd in fds.items()}
        check(s, "each client's descriptor is read in one thread of its own, not the main one",
              all(len(v) == 1 and 0 not in v for v in lanes_of.values()) and
              len({min(v) for v in lanes_of.values() if v}) == len(fds), str(lanes_of))
        # The slow client pauses before each of its sends, so its thread has long
        # been asleep in read(); the others are printed, not asserted (a fast
        # client may send before its thread is back in read: a race, not a rule).
        slow = d["workload"]["slow_client"]
        for i, fd in fds.items():
            blocked = [c for c in calls if c["fd"] == fd and c["name"] in ("read", "recv", "recvfrom")
                       and any(c["start_s"] <= r["send_s"] <= c["start_s"] + c["dur_s"]
                               for r in reqs if r["client"] == i)]
            if i == slow:
                check(s, f"slow client {i}: a read on its descriptor {fd} was already blocked "
                      "when it sent", len(blocked) >= 1, f"{len(blocked)} such reads")
            else:
                print(f"info {s}: client {i}: {len(blocked)} reads on descriptor {fd} blocked when it sent")
        serving = {min(v) for v in lanes_of.values() if v}
        check(s, "no select/poll/epoll in the threads that serve clients",
              not [c for c in mux_calls if c["lane"] in serving])
    elif s == "echo-nonblocking":
        eag = [c for c in calls if c["eagain"]]
        reads = data_reads()
        check(s, "one thread, no readiness call at all", len(server_lanes) == 1 and not mux_calls)
        check(s, "busy loop: at least 5 EAGAIN retries per read that got data",
              len(eag) >= 5 * max(1, len(reads)), f"{len(eag)} EAGAIN, {len(reads)} data reads")
    elif s in ("echo-select", "echo-poll", "echo-epoll", "loop-echo"):
        want = {"echo-select": {"select", "pselect6"}, "echo-poll": {"poll", "ppoll"}}.get(
            s, {"epoll_wait", "epoll_pwait", "epoll_pwait2"})
        waits = [c for c in calls if c["name"] in want]
        check(s, f"one thread reads every client ({'/'.join(sorted(want))} in it)",
              {c["lane"] for c in data_reads()} == {0} and waits and {c["lane"] for c in waits} == {0})
        check(s, "requests arrive while the server sits in the readiness call",
              len(spans_send(lambda c: c["name"] in want)) >= 1)
        # one wait, then the copies it made possible: between consecutive waits
        # that returned events there is at least a read and a write of data
        seq = sorted((c for c in calls if c["lane"] == 0), key=lambda c: c["start_s"])
        runs, cur = [], None
        for c in seq:
            if c["name"] in want:
                if cur is not None:
                    runs.append(cur)
                cur = 0
            elif cur is not None and c["name"] in SOCK_COPY and c["ret"].split(" ")[0].isdigit() \
                    and int(c["ret"].split(" ")[0]) > 0:
                cur += 1
        check(s, "a wait followed by several copies (read + write) before the next wait",
              any(n >= 2 for n in runs), f"copies after each wait: {runs[:12]}")
        check(s, "each echo's bytes are copied by a read and a write (at least 24 such calls)",
              len(payload) >= 24, f"{len(payload)} calls carry client bytes")
        check(s, "no EAGAIN busy loop (fewer EAGAINs than requests)",
              sum(c["eagain"] for c in calls) < len(reqs))
    elif s == "echo-sigio":
        sig = [c for c in calls if c["name"] == "rt_sigtimedwait"]
        check(s, "waits for signals with rt_sigtimedwait, no select/poll/epoll",
              len(sig) >= 1 and not mux_calls, f"{len(sig)} rt_sigtimedwait")
        check(s, "requests arrive while the server waits for a signal",
              len(spans_send(lambda c: c["name"] == "rt_sigtimedwait")) >= 1)
        check(s, "descriptors armed with F_SETSIG or O_ASYNC",
              any(c["name"] == "fcntl" and ("F_SETSIG" in c["args"] or "O_ASYNC" in c["args"])
                  for c in d["calls"]))
    elif s == "echo-aio":
        sig = [c for c in calls if c["name"] == "rt_sigtimedwait"]
        readers = {c["lane"] for c in data_reads() if c["fd"] in fds.values()}
        check(s, "client data is read by helper threads, not the thread that waits",
              readers and 0 not in readers and sig and {c["lane"] for c in sig} == {0},
              f"reader lanes {sorted(readers)}")
        check(s, "helpers report completions as queued signals (rt_sigqueueinfo)",
              any(c["name"] == "rt_sigqueueinfo" and c["lane"] != 0 for c in calls))
        check(s, "requests arrive while the main thread waits for a completion signal",
              len(spans_send(lambda c: c["name"] == "rt_sigtimedwait")) >= 1)
    elif s == "echo-uring":
        ring = [c for c in calls if c["name"] == "io_uring_enter" and c["class"] == "wait"]
        check(s, "io_uring_enter waits for completions, no select/poll/epoll",
              len(ring) >= 1 and not mux_calls, f"{len(ring)} waiting io_uring_enter")
        check(s, "requests arrive while the server waits in io_uring_enter",
              len(spans_send(lambda c: c["name"] == "io_uring_enter")) >= 1)
        check(s, "no read/recv/write/send carries a client's bytes: the kernel copies",
              not payload, f"{len(payload)} calls carry client bytes")
    else:
        check(s, "a known model", False, "no signature for this server")

    # --- durations: a copy is thin, a wait is long (true only without strace's stops) ---
    copy_us = [c["dur_s"] * 1e6 for c in payload]
    waited = [c["dur_s"] * 1e6 for c in spans_send(lambda c: c["class"] == "wait")]
    model_wait = {"echo-select": {"select", "pselect6"}, "echo-poll": {"poll", "ppoll"},
                  "echo-epoll": {"epoll_wait", "epoll_pwait", "epoll_pwait2"},
                  "loop-echo": {"epoll_wait", "epoll_pwait", "epoll_pwait2"}}.get(s)
    all_waits = [c["dur_s"] * 1e6 for c in calls if model_wait and c["name"] in model_wait]
    med = lambda v: statistics.median(v) if v else float("nan")  # noqa: E731
    ratio = f"median copy {med(copy_us):.1f} us ({len(copy_us)}), median wait a request " \
            f"arrived in {med(waited):.0f} us ({len(waited)})"
    if ftrace and copy_us and waited:
        check(s, "a copy is thin: median copy under 1/5 of the median wait a request arrived in",
              med(copy_us) * 5 < med(waited), ratio)
        if all_waits:
            check(s, f"median read/write far below the median {'/'.join(sorted(model_wait))} "
                  "(under 1/5 of it)", med(copy_us) * 5 < med(all_waits),
                  f"{med(copy_us):.1f} us vs {med(all_waits):.0f} us over {len(all_waits)} waits")
    else:
        print(f"info {s}: {ratio}")

    # --- wake-ups (ftrace only: strace records no scheduler events) ---
    if ftrace:
        allc = d["calls"]
        edges = [e for e in d["wakeups"] if e["waker_lane"] is not None]
        c2s = [e for e in edges if lanes[e["waker_lane"]]["kind"] == "client"
               and lanes[e["wakee_lane"]]["kind"] == "server-thread"]
        s2c = [e for e in edges if lanes[e["waker_lane"]]["kind"] == "server-thread"
               and lanes[e["wakee_lane"]]["kind"] == "client"]
        name_of = lambda i: allc[i]["name"] if i is not None else "?"  # noqa: E731
        woke_from = {"echo-threaded": {"read", "recvfrom", "recv"}, "echo-aio": {"read"},
                     "echo-sigio": {"rt_sigtimedwait"}, "echo-uring": {"io_uring_enter"}}.get(
            s, model_wait or set())
        by_send = [e for e in c2s if name_of(e["waker_call"]) in SOCK_COPY and
                   name_of(e["wakee_call"]) in woke_from]
        if s == "echo-nonblocking":
            check(s, "the busy loop is never woken by a client: it never sleeps",
                  not c2s, f"{len(c2s)} wake-ups of the server by a client")
        else:
            check(s, f"a client's send woke the server out of {'/'.join(sorted(woke_from))}",
                  len(by_send) >= 1, f"{len(by_send)} such wake-ups of {len(c2s)} client->server")
        # a client that slept in recv for its echo is woken by the server's send; it did
        # not sleep if the echo came before it got to recv (then no edge at all)
        slept = [c for c in all_live if lanes[c["lane"]]["kind"] == "client" and
                 c["name"] in ("recvfrom", "recv", "read") and c["class"] == "wait"]
        to_recv = [e for e in s2c if name_of(e["wakee_call"]) in ("recvfrom", "recv", "read")]
        bad = [(name_of(e["waker_call"]), name_of(e["wakee_call"])) for e in to_recv
               if name_of(e["waker_call"]) not in SOCK_COPY | {"io_uring_enter"}]
        check(s, "every wake-up of a client asleep in recv by the server comes from a send "
              "(write/sendto/io_uring_enter)", not bad,
              f"{len(to_recv)} such wake-ups; not a send: {bad[:3]}")
        check(s, "wake-up arrows drawn", svg.count('marker-end="url(#arrow)"') >= len(c2s) + len(s2c))
        print(f"info {s}: {len(slept)} client recvs slept, {len(s2c)} woken by the server's send")
    n = d["totals"]
    print(f"     {s}: {len(server_lanes)} server lanes, {n['server_calls']} calls, "
          f"{n['drawn']} drawn, wait {n['wait']}, copy {n['copy']}, other {n['other']}, EAGAIN {n['eagain']}")
sys.exit(1 if failed else 0)
