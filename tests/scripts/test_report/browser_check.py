#!/usr/bin/env python3
"""browser_check.py PAGE.html --screenshot OUT.png [--dom-json OUT.json] [--timeout S]

Loads PAGE in headless Chromium (Debian's `chromium`) from file://, driving it
through the DevTools protocol over --remote-debugging-pipe (the browser reads
commands on fd 3 and writes replies and events on fd 4, each message a JSON
text ended by a NUL byte). Python standard library only.

Fails (exit 1, one line per problem) when the page
  - logs a console error or assertion (Runtime.consoleAPICalled) or the browser
    logs an error about it (Log.entryAdded: e.g. a blocked resource, a CSP
    violation);
  - throws an uncaught exception (Runtime.exceptionThrown);
  - asks for anything but its own file:// URL or a data: URL
    (Network.requestWillBeSent / Fetch.requestPaused). Such a request is
    failed before it leaves the browser (Fetch.failRequest), and every
    request goes to a proxy at 127.0.0.1:9 anyway, so nothing reaches the
    network even if interception missed it;
  - does not finish loading within --timeout seconds;
  - gives a blank screenshot.
Writes the screenshot (Page.captureScreenshot, the whole page up to 12000 px,
or the band --region TOP:HEIGHT) to OUT.png and,
with --dom-json, what the page shows: its section ids, every element with
data-chart and the values of its points (circle.pt data-*), the timelines,
the verdict. Exit codes: 0 clean page; 1 a problem above; 2 usage error;
4 chromium is not installed or did not start."""
import argparse
import base64
import fcntl
import json
import os
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib

DOM_QUERY = r"""
(() => {
  const pts = (el) => Array.from(el.querySelectorAll('.pt')).map(p => ({
    series: p.getAttribute('data-series'), x: p.getAttribute('data-x'),
    y: p.getAttribute('data-y'), lo: p.getAttribute('data-lo'), hi: p.getAttribute('data-hi'),
    title: (p.querySelector('title') || {}).textContent || null,
    visible: p.getBoundingClientRect().width > 0 }));
  const tl = document.getElementById('timelines');
  const verdict = document.getElementById('verdict');
  return {
    title: document.title,
    sections: Array.from(document.querySelectorAll('section[id]')).map(s => s.id),
    charts: Array.from(document.querySelectorAll('[data-chart]')).map(c => {
      // Hover the last point (a bubbling mouseover, as the mouse would): what
      // the chart's readout line says afterwards.
      const all = c.querySelectorAll('.pt'), last = all[all.length - 1];
      if (last) last.dispatchEvent(new MouseEvent('mouseover', { bubbles: true }));
      const r = c.querySelector('.readout');
      return { id: c.getAttribute('data-chart'), declared: c.getAttribute('data-points'),
               svg: !!c.querySelector('svg'), points: pts(c),
               hovered_readout: r ? r.textContent : null }; }),
    timelines: tl ? { declared: tl.getAttribute('data-timelines'),
      drawn: Array.from(tl.querySelectorAll('.timeline')).map(t => ({
        server: t.getAttribute('data-server'), svg: !!t.querySelector('svg'),
        boxes: t.querySelectorAll('svg rect').length })),
      text: tl.textContent.slice(0, 400) } : null,
    verdict: verdict ? { kind: verdict.getAttribute('data-verdict'), text: verdict.textContent } : null,
    machine: (document.getElementById('machine') || {}).textContent || null,
    conclusion: Array.from(document.querySelectorAll('#conclusion li')).map(l => l.textContent)
  };
})()
"""


class Browser:
    def __init__(self, exe, profile, timeout):
        self.timeout = timeout
        to_browser_r, self.to_browser = os.pipe()
        self.from_browser, from_browser_w = os.pipe()

        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
                "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
        self.log = open(os.path.join(profile, "chromium.log"), "wb")
        # bash puts the pipe ends on the browser's fds 3 and 4 (and closes the
        # originals) before it becomes the browser.
        # (moved to fds >= 10 first: neither may already be 3 or 4).
        r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD_CLOEXEC, 10)
        w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_browser_r)
        os.close(from_browser_w)
        wrap = ["bash", "-c", f'exec "$@" 3<&{r} 4>&{w} {r}<&- {w}>&-', "chromium"]
        self.proc = subprocess.Popen(wrap + args, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, pass_fds=(r, w))
        os.close(r)
        os.close(w)
        self.buf = b""
        self.next_id = 0
        self.events = []

    def close(self):
        try:
            if self.proc.poll() is None:
                try:
                    self.send("Browser.close", timeout=5)
                except Exception:
                    pass
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            for fd in (self.to_browser, self.from_browser):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self.log.close()

    def _read(self, deadline):
        """One message, or None when the deadline passes first."""
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.from_browser], [], [], left)
            if not r:
                return None
            chunk = os.read(self.from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe (it exited: see chromium.log)")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def post(self, method, params=None, session=None):
        self.next_id += 1
        m = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            m["sessionId"] = session
        data = json.dumps(m).encode() + b"\0"
        while data:
            n = os.write(self.to_browser, data)
            data = data[n:]
        return self.next_id

    def send(self, method, params=None, session=None, timeout=None):
        mid = self.post(method, params, session)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            m = self._read(deadline)
            if m is None:
                raise TimeoutError(f"no reply to {method} within {timeout or self.timeout} s")
            if m.get("id") == mid:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error'].get('message')}")
                return m.get("result", {})
            self.events.append(m)

    def pump(self, until, seconds):
        """Collects events for up to `seconds`, stopping early once until(event) is true."""
        deadline = time.monotonic() + seconds
        while True:
            m = self._read(deadline)
            if m is None:
                return False
            self.events.append(m)
            if until(m):
                return True


def png_check(data):
    """(width, height, distinct byte values of the decoded rows) of a PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, w, h = 8, b"", 0, 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    return w, h, len(set(raw[:4_000_000]))


def main():
    ap = argparse.ArgumentParser(prog="browser_check.py")
    ap.add_argument("page")
    ap.add_argument("--screenshot", required=True)
    ap.add_argument("--dom-json")
    ap.add_argument("--timeout", type=float, default=20)
    ap.add_argument("--region", help="TOP:HEIGHT: screenshot only that band of the page (CSS px)")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    a = ap.parse_args()
    if not os.path.isfile(a.page):
        print(f"browser_check: no such page: {a.page}", file=sys.stderr)
        return 2
    if not os.access(a.chromium, os.X_OK):
        print(f"browser_check: {a.chromium} not found (apt-get install chromium; scripts/setup.sh "
              "installs it)", file=sys.stderr)
        return 4
    url = "file://" + os.path.realpath(a.page)
    problems = []
    profile = tempfile.mkdtemp(prefix="iolab-chromium-")
    b = Browser(a.chromium, profile, a.timeout)
    try:
        try:
            b.send("Browser.getVersion")
        except (RuntimeError, TimeoutError) as e:
            tail = open(os.path.join(profile, "chromium.log"), errors="replace").read()[-800:]
            print(f"browser_check: chromium did not answer on the DevTools pipe: {e}\n{tail}",
                  file=sys.stderr)
            return 4
        target = b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        s = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for dom in ("Runtime", "Log", "Network", "Page"):
            b.send(f"{dom}.enable", session=s)
        b.send("Fetch.enable", {"patterns": [{"urlPattern": "*"}]}, session=s)
        b.send("Emulation.setDeviceMetricsOverride",
               {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=s)
        b.post("Page.navigate", {"url": url}, session=s)

        requests, paused_done = [], set()

        def allowed(u):
            return u == url or u.split("#")[0] == url or u.startswith("data:")

        def handle(m):
            """Answers paused requests as they come; True on the load event."""
            if m.get("method") == "Fetch.requestPaused":
                p = m["params"]
                rid, u = p["requestId"], p["request"]["url"]
                if rid not in paused_done:
                    paused_done.add(rid)
                    if allowed(u):
                        b.post("Fetch.continueRequest", {"requestId": rid}, session=s)
                    else:
                        requests.append(u)
                        b.post("Fetch.failRequest", {"requestId": rid, "errorReason": "BlockedByClient"},
                               session=s)
            return m.get("method") == "Page.loadEventFired"

        for m in list(b.events):
            handle(m)
        loaded = any(m.get("method") == "Page.loadEventFired" for m in b.events) or \
            b.pump(handle, a.timeout)
        if not loaded:
            problems.append(f"the page did not finish loading within {a.timeout:g} s")
        # Late console messages and timers: a short quiet spell after load.
        b.pump(lambda m: handle(m) and False, 0.5)

        dom = b.send("Runtime.evaluate", {"expression": DOM_QUERY, "returnByValue": True},
                     session=s)
        if "exceptionDetails" in dom:
            problems.append(f"the DOM query threw: {dom['exceptionDetails'].get('text')}")
            dom_value = None
        else:
            dom_value = dom["result"].get("value")
        metrics = b.send("Page.getLayoutMetrics", session=s)
        size = metrics.get("cssContentSize") or metrics.get("contentSize")
        top, height = 0, min(size["height"], 12000)
        if a.region:
            top, height = (float(v) for v in a.region.split(":"))
        shot = b.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": top, "width": min(size["width"], 1280),
                     "height": height, "scale": 1}}, session=s, timeout=60)
        png = base64.b64decode(shot["data"])
        os.makedirs(os.path.dirname(os.path.abspath(a.screenshot)), exist_ok=True)
        with open(a.screenshot, "wb") as f:
            f.write(png)
        try:
            w, h, distinct = png_check(png)
            if distinct < 16:
                problems.append(f"the screenshot {a.screenshot} ({w}x{h}) looks blank "
                                f"({distinct} distinct byte values)")
        except (ValueError, zlib.error, struct.error) as e:
            problems.append(f"the screenshot is not a readable PNG: {e}")
            w = h = 0
        b.pump(lambda m: handle(m) and False, 0.2)

        for m in b.events:
            meth, p = m.get("method"), m.get("params", {})
            if meth == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                text = " ".join(str(x.get("value", x.get("description", ""))) for x in p.get("args", []))
                problems.append(f"console.{p['type']}: {text}")
            elif meth == "Runtime.consoleAPICalled" and p.get("type") == "warning":
                print(f"browser_check: note: console.warn: "
                      + " ".join(str(x.get("value", "")) for x in p.get("args", [])))
            elif meth == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                desc = (d.get("exception") or {}).get("description") or d.get("text")
                problems.append(f"uncaught exception at line {d.get('lineNumber', '?')}: {desc}")
            elif meth == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                e = p["entry"]
                problems.append(f"browser log error ({e.get('source')}): {e.get('text')} "
                                f"{e.get('url', '')}".rstrip())
            elif meth == "Network.requestWillBeSent":
                u = p.get("request", {}).get("url", "")
                if not allowed(u) and u not in requests:
                    requests.append(u)
        for u in requests:
            problems.append(f"external request: {u} (only {url} and data: URLs are allowed)")
        if a.dom_json:
            with open(a.dom_json, "w") as f:
                json.dump({"url": url, "screenshot": {"file": a.screenshot, "width": w, "height": h},
                           "dom": dom_value}, f, indent=1)
    except (RuntimeError, TimeoutError, KeyError) as e:
        problems.append(f"DevTools session failed: {e}")
    finally:
        b.close()
        shutil.rmtree(profile, ignore_errors=True)
    for p in problems:
        print(f"browser_check: {a.page}: {p}")
    if problems:
        return 1
    print(f"browser_check: {a.page}: clean (no console error, no exception, no external request); "
          f"screenshot {a.screenshot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
