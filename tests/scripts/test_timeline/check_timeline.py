#!/usr/bin/env python3
"""check_timeline.py OUT SERVER...: each model's signature, from OUT/SERVER.json.

No timing thresholds: a check looks at which calls were made, in which thread
(lane), and whether a call was in progress (start <= t <= end) when a client
sent a request. Prints one line per check; exits 1 if any failed."""
import json, os, sys

out, servers = sys.argv[1], sys.argv[2:]
failed = 0
MUX = {"select", "pselect6", "poll", "ppoll", "epoll_wait", "epoll_pwait", "epoll_pwait2"}
SOCK_COPY = {"read", "readv", "recv", "recvfrom", "recvmsg", "write", "writev", "send", "sendto",
             "sendmsg"}


def check(server, what, ok, detail=""):
    global failed
    print(f"{'ok  ' if ok else 'FAIL'} {server}: {what}{' (' + detail + ')' if detail else ''}")
    failed += not ok


for s in servers:
    with open(os.path.join(out, s + ".json")) as f:
        d = json.load(f)
    calls = [c for c in d["calls"] if c["start_s"] + c["dur_s"] >= 0]  # the workload part
    reqs = d["requests"]
    server_lanes = [k for k, ln in enumerate(d["lanes"]) if ln["kind"] == "server-thread"]
    check(s, "12 requests echoed and every lane has counts", len(reqs) == 12 and
          all("counts" in ln for ln in d["lanes"]), f"{len(reqs)} requests")
    check(s, "totals add up", sum(d["totals"][k] for k in ("wait", "copy", "other")) == len(calls))
    fds = {r["client"]: r["server_fd"] for r in reqs}

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
    payload = [c for c in calls if c["name"] in SOCK_COPY and
               any(f', "{ch * 8}' in c["args"] for ch in "ABC")]
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
    n = d["totals"]
    print(f"     {s}: {len(server_lanes)} server lanes, {n['calls'] - n['startup']} calls, "
          f"{n['drawn']} drawn, wait {n['wait']}, copy {n['copy']}, other {n['other']}, EAGAIN {n['eagain']}")
sys.exit(1 if failed else 0)
