#!/usr/bin/env bash
# test_reader_text.sh SRC: no Markdown file of the repository a reader opens
# (every *.md but the test fixtures) cites the project's tracker ("issue 20",
# "Issue #14", "issues 18 and 19"). Say what was measured, when and how.
set -euo pipefail
src=$1
cd "$src"
files=()
while IFS= read -r -d '' f; do
  files+=("$f")
done < <(find . \( -name .git -o -name 'build' -o -name 'build-*' -o -path ./tests \) -prune \
  -o -name '*.md' -type f -print0)
((${#files[@]} >= 10)) || {
  echo "test_reader_text: FAIL: only ${#files[@]} Markdown files found under $src" >&2
  exit 1
}
hits=$(grep -nEi '\bissues? ?#?[0-9]+' "${files[@]}" || true)
if [[ -n "$hits" ]]; then
  echo "test_reader_text: FAIL: text a reader has cites the tracker (say what was measured, when and how):" >&2
  echo "$hits" >&2
  exit 1
fi
echo "test_reader_text: ok: ${#files[@]} Markdown files, no tracker citation"
