#!/usr/bin/env bash
# test_report.sh SRC BUILD [good|detects]: scripts/report.sh's page in a real browser.
#   good     report.sh --from-results, then headless Chromium loads the page
#            (browser_check.py: no console error, no exception, no request but
#            the file itself, a screenshot that is not blank) and the DOM it
#            shows is checked against the committed results (check_report.py).
#   detects  the checks can fail: a page with an external image, a
#            console.error and an uncaught exception must be refused, naming
#            all three; a DOM with a point missing and a value changed must be
#            refused by check_report.py.
# Output (page, screenshot, DOM as JSON) stays in BUILD/test-report-CASE/ for
# looking at after a failure.
set -euo pipefail
src=$1 build=$2 case=${3:-good}
here=$(cd "$(dirname "$0")" && pwd)
out="$build/test-report-$case"
rm -rf "$out"
mkdir -p "$out"
fail() {
  echo "test_report: FAIL: $*" >&2
  exit 1
}

case "$case" in
  good)
    IOLAB_PROGRESS=0 bash "$src/scripts/report.sh" --from-results --build-dir "$build" \
      --timelines "$src/results/timeline" --out "$out/report.html"
    python3 "$here/browser_check.py" "$out/report.html" --screenshot "$out/report.png" \
      --dom-json "$out/dom.json" || fail "the browser found problems on the page (above)"
    python3 "$here/check_report.py" "$out/dom.json" "$src/results" "$src/results/timeline" ||
      fail "the page does not show the data it was written from (above)"
    echo "test_report: ok: $out/report.html (screenshot $out/report.png)"
    ;;
  detects)
    cat >"$out/bad.html" <<'HTML'
<!DOCTYPE html><html><head><meta charset="utf-8"><title>bad page</title></head><body>
<p>An external image, a console error and an uncaught exception.</p>
<img src="http://198.18.0.1/x.png" alt="external">
<script>console.error("report-test: deliberate console error");</script>
<script>throw new Error("report-test: deliberate exception");</script>
</body></html>
HTML
    rc=0
    python3 "$here/browser_check.py" "$out/bad.html" --screenshot "$out/bad.png" >"$out/bad.log" 2>&1 || rc=$?
    cat "$out/bad.log"
    ((rc == 1)) || fail "browser_check.py exited $rc on a page with an external request, a console error and an exception (want 1)"
    grep -q 'external request: http://198.18.0.1/x.png' "$out/bad.log" || fail "the external request was not named"
    grep -q 'console.error: report-test: deliberate console error' "$out/bad.log" || fail "the console error was not named"
    grep -q 'uncaught exception.*report-test: deliberate exception' "$out/bad.log" || fail "the exception was not named"

    # check_report.py against a DOM that lost a point and shows a wrong value.
    IOLAB_PROGRESS=0 bash "$src/scripts/report.sh" --from-results --build-dir "$build" \
      --timelines "$src/results/timeline" --out "$out/report.html" >/dev/null
    python3 "$here/browser_check.py" "$out/report.html" --screenshot "$out/report.png" \
      --dom-json "$out/dom.json" >/dev/null || fail "the good page did not pass browser_check.py"
    python3 - "$out/dom.json" "$out/dom-bad.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
charts = d["dom"]["charts"]
charts[0]["points"].pop()
p99 = next(c for c in charts if c.get("id") == "multiplexing-p99_us")
p99["points"][0]["y"] = str(float(p99["points"][0]["y"]) * 2 + 1)
json.dump(d, open(sys.argv[2], "w"))
PY
    rc=0
    python3 "$here/check_report.py" "$out/dom-bad.json" "$src/results" "$src/results/timeline" \
      >"$out/dom-bad.log" 2>&1 || rc=$?
    grep FAIL "$out/dom-bad.log" || true
    ((rc == 1)) || fail "check_report.py exited $rc on a DOM with a point missing and a wrong value (want 1)"
    grep -q 'FAIL chart dispatch-active-.*every data row has its point' "$out/dom-bad.log" || fail "the missing point was not named"
    grep -q 'FAIL chart multiplexing-p99_us: each point carries' "$out/dom-bad.log" || fail "the wrong value was not named"
    echo "test_report: ok: both checks refuse what they must"
    ;;
  *)
    echo "test_report.sh: unknown case '$case' (good or detects)" >&2
    exit 2
    ;;
esac
