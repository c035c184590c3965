#!/usr/bin/env bash
# test_demo.sh SRC BUILD: scripts/demo.sh --smoke --no-build --build-dir BUILD
# writes its tables, plots, conclusion and page under BUILD (BUILD/demo and
# BUILD/report), and nothing in the source tree: no file there is newer than
# the start of the run (the build directories and .git aside), and, in a git
# checkout, `git status` and `git diff` are the same before and after.
set -euo pipefail
src=$(cd "$1" && pwd) build=$(cd "$2" && pwd)
fail() {
  echo "test_demo: FAIL: $*" >&2
  exit 1
}
for p in dispatch-bench loadgen echo-poll echo-epoll; do
  [[ -x "$build/bin/$p" ]] || fail "$build/bin/$p is not built"
done

git_state() {
  git -C "$src" status --porcelain=v1 -uall
  git -C "$src" diff --no-ext-diff --binary | sha256sum
}
in_git=0
git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1 && in_git=1
before=""
((in_git)) && before=$(git_state)
marker="$build/test-demo.start"
touch "$marker"
sleep 1 # a file written in the same instant as the marker is not newer than it

log="$build/test-demo.log"
rc=0
IOLAB_PROGRESS=0 bash "$src/scripts/demo.sh" --smoke --no-build --build-dir "$build" >"$log" 2>&1 || rc=$?
((rc == 0)) || fail "demo.sh exited $rc: $(tail -20 "$log")"

# Nothing in the source tree.
newer=$(find "$src" \( -path "$src/.git" -o -path "$src/build" -o -path "$src/build-*" \
  -o -path "$build" \) -prune -o -type f -newer "$marker" -print)
[[ -z "$newer" ]] || fail "demo.sh wrote in the source tree: $newer"
if ((in_git)); then
  after=$(git_state)
  [[ "$before" == "$after" ]] ||
    fail "git status changed: $(diff <(echo "$before") <(echo "$after") || true)"
fi

# Everything where it says it is: under the build directory.
for f in dispatch.csv dispatch.md dispatch.json multiplexing.csv multiplexing-runs.csv \
  multiplexing.md conclusion.txt; do
  [[ -s "$build/demo/$f" ]] || fail "no $build/demo/$f"
  [[ "$build/demo/$f" -nt "$marker" ]] || fail "$build/demo/$f was not written by this run"
done
if command -v gnuplot >/dev/null; then
  for f in dispatch multiplexing-rps multiplexing-p99 multiplexing-cpu; do
    [[ -s "$build/demo/$f.png" && -s "$build/demo/$f.svg" ]] || fail "no $build/demo/$f.png/.svg"
  done
fi
[[ "$build/report/report.html" -nt "$marker" ]] || fail "no page written at $build/report/report.html"
grep -q "^1\. Crossing" "$build/demo/conclusion.txt" || fail "conclusion.txt lacks its first line"
grep -q "Written to $build/demo; the committed results/ are as they were" "$log" ||
  fail "demo.sh does not say where it wrote: $(tail -3 "$log")"
echo "test_demo: ok: everything in $build/demo and $build/report, the source tree untouched" \
  "($( ((in_git)) && echo "git status unchanged" || echo "not a git checkout: file times checked"))"
