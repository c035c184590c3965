#!/usr/bin/env python3
"""walk-sheet.py — walk lab sheets the way a student does, and find what they leave behind.

Usage: scripts/walk-sheet.py [--build-dir DIR] [--exercise ID]... [--transcript FILE]
                             LAB.md...

For each sheet: start one interactive bash (--norc, under a pseudo-terminal,
at the repository root), paste every exercise block of the sheet into it one
after another (a bracketed paste, then Enter, as a terminal does), wait for
each to finish, then type `exit`. The sheet fails when
  - a block does not finish within its timeout= (+30 s): Ctrl-C is sent and
    the walk goes on;
  - the shell ends before `exit` (a block closed the terminal);
  - after the shell exited, a process it started is still running (the walk
    is their child subreaper, so nothing escapes by being orphaned): each is
    named with its command line, then killed by its pid;
  - the shell's TMPDIR (a directory of the walk's own) is not empty.
A block's own verdict (its predictions, a write-it exercise's
`check: FAIL — ...` on the skeleton) is not judged here: scripts/check-labs.sh
does that. Prints one line per block (`lab | id | done in S s` or `| HUNG`) and
one verdict line per sheet (`lab | walk | PASS` or `| FAIL: what`); exit 0 when
every sheet passed, 1 when one failed, 2 on bad usage, 3 when DIR/bin does not
exist.
  --build-dir DIR   the build the blocks use (IOLAB_BUILD_DIR; default build/)
  --exercise ID     paste only these blocks (repeatable; default: all)
  --transcript FILE append everything the terminal showed to FILE
"""

import argparse
import ctypes
import os
import pty
import re
import select
import shutil
import signal
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PR_SET_CHILD_SUBREAPER = 36
FENCE = re.compile(r"^([ \t]*)```sh[ \t]+(.*\bexercise=.*)$")
END_FENCE = re.compile(r"^[ \t]*```[ \t]*$")


def blocks_of(sheet):
    """(id, timeout, first line, body) of every exercise block of SHEET."""
    out = []
    with open(sheet, encoding="utf-8") as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent = len(m.group(1))
        info = dict(kv.split("=", 1) for kv in m.group(2).split() if "=" in kv)
        start = i + 1
        body = []
        i += 1
        while i < len(lines) and not END_FENCE.match(lines[i]):
            line = lines[i]
            if indent and line[:indent].strip() == "":
                line = line[indent:]
            body.append(line)
            i += 1
        out.append((info.get("exercise", "?"), int(info.get("timeout", "30")), start, "\n".join(body)))
        i += 1
    return out


class Terminal:
    """An interactive bash on a pseudo-terminal; everything it shows is kept."""

    def __init__(self, env, transcript):
        self.transcript = transcript
        self.buf = ""
        pid, fd = pty.fork()
        if pid == 0:
            # A terminal's shell starts with 0-2 only: nothing the walk's
            # caller left open may reach the blocks' servers.
            os.closerange(3, os.sysconf("SC_OPEN_MAX"))
            os.chdir(ROOT)
            os.execvpe("bash", ["bash", "--norc", "--noprofile", "-i"], env)
        self.pid, self.fd = pid, fd
        self.status = None

    def read(self, seconds):
        """Read what the terminal shows for up to SECONDS; False once it closed."""
        r, _, _ = select.select([self.fd], [], [], seconds)
        if not r:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:
            data = b""
        if not data:
            return False
        text = data.decode("utf-8", "replace")
        self.buf += text
        if self.transcript:
            self.transcript.write(text)
        return True

    def write(self, text):
        data = text.encode()
        while data:
            n = os.write(self.fd, data)
            data = data[n:]

    def wait_for(self, regex, seconds):
        """The match of REGEX in what the terminal showed since the last call, or None."""
        deadline = time.monotonic() + seconds
        pattern = re.compile(regex)
        while True:
            m = pattern.search(self.buf)
            if m:
                self.buf = self.buf[m.end():]
                return m
            left = deadline - time.monotonic()
            if left <= 0 or not self.read(min(left, 0.5)):
                m = pattern.search(self.buf)
                if m:
                    self.buf = self.buf[m.end():]
                return m

    def alive(self):
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = status
        return self.status is None

    def close(self, seconds):
        deadline = time.monotonic() + seconds
        while self.alive() and time.monotonic() < deadline:
            self.read(0.2)
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.status = -1
        os.close(self.fd)


def orphans():
    """pid -> command line of the processes the walk adopted (its children)."""
    me = os.getpid()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            if ppid != me:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            continue
        found[int(entry)] = cmd or stat[stat.index("(") : stat.rindex(")") + 1]
    return found


def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def walk(sheet, lab, build_dir, only, transcript):
    problems = []
    tmpdir = tempfile.mkdtemp(prefix=f"iolab-walk-{lab}.")
    env = dict(os.environ)
    env.update(
        {
            "TMPDIR": tmpdir,
            "IOLAB_BUILD_DIR": build_dir,
            "TERM": "xterm-256color",
            "PS1": "walk$ ",
            "HISTFILE": "/dev/null",
        }
    )
    env.pop("PROMPT_COMMAND", None)
    term = Terminal(env, transcript)
    if not term.wait_for(r"walk\$ ", 20):
        problems.append("no prompt from bash within 20 s")
    for number, (bid, timeout, line, body) in enumerate(blocks_of(sheet), 1):
        if only and bid not in only:
            continue
        started = time.monotonic()
        # The marker is split so that the echo of the pasted line does not match.
        marker = f"printf '%s-%s\\n' walk-block {number}"
        term.write("\x1b[200~" + body.rstrip("\n") + "\n" + marker + "\x1b[201~\r")
        if term.wait_for(rf"walk-block-{number}\r?\n", timeout + 30):
            print(f"{lab} | {bid} | done in {time.monotonic() - started:.0f} s", flush=True)
            continue
        if not term.alive() or term.status is not None:
            problems.append(f"the shell ended during block {bid} (LAB.md:{line})")
            print(f"{lab} | {bid} | the shell ended", flush=True)
            break
        problems.append(f"block {bid} (LAB.md:{line}) did not finish within {timeout + 30} s")
        print(f"{lab} | {bid} | HUNG: Ctrl-C sent", flush=True)
        term.write("\x03")
        term.wait_for(r"walk\$ ", 10)
    if term.alive():
        term.write("exit\r")
        term.close(30)
        if term.status == -1:
            problems.append("the shell did not exit within 30 s of `exit`")
    # What the shell started and left: give a clean stop a moment to finish.
    left = {}
    for _ in range(20):
        reap()
        left = orphans()
        if not left:
            break
        time.sleep(0.25)
    # Killing one may orphan its own children to the walk: repeat a few rounds.
    for _ in range(10):
        if not left:
            break
        for pid, cmd in sorted(left.items()):
            problems.append(f"still running: pid {pid} {cmd}")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
        reap()
        left = orphans()
    leftovers = sorted(os.listdir(tmpdir))
    if leftovers:
        problems.append(f"left in TMPDIR: {' '.join(leftovers)}")
    shutil.rmtree(tmpdir, ignore_errors=True)
    return problems


def main():
    ap = argparse.ArgumentParser(usage=__doc__.split("\n\n")[1].strip())
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--exercise", action="append", default=[])
    ap.add_argument("--transcript")
    ap.add_argument("sheets", nargs="+")
    try:
        args = ap.parse_args()
    except SystemExit as e:
        sys.exit(2 if e.code else 0)
    build_dir = args.build_dir if os.path.isabs(args.build_dir) else os.path.join(os.getcwd(), args.build_dir)
    if not os.path.isdir(os.path.join(build_dir, "bin")):
        print(f"walk-sheet.py: not built: {build_dir}/bin does not exist", file=sys.stderr)
        sys.exit(3)
    for sheet in args.sheets:
        if not os.path.isfile(sheet):
            print(f"walk-sheet.py: {sheet}: no such file", file=sys.stderr)
            sys.exit(2)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"walk-sheet.py: prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        sys.exit(4)
    transcript = open(args.transcript, "a", encoding="utf-8") if args.transcript else None
    failed = 0
    for sheet in args.sheets:
        lab = os.path.basename(os.path.dirname(os.path.abspath(sheet)))
        problems = walk(sheet, lab, build_dir, set(args.exercise), transcript)
        if problems:
            failed += 1
            print(f"{lab} | walk | FAIL: " + "; ".join(problems), flush=True)
        else:
            print(f"{lab} | walk | PASS", flush=True)
    if transcript:
        transcript.close()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
