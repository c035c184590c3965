#!/usr/bin/env bash
# test_report_input.sh SRC BUILD: scripts/report.sh --data DIR refuses bad CSV
# input with one line "report: FILE:LINE: what is wrong" and exit 1 (no Python
# traceback, no page), and still writes the page from the good files.
set -euo pipefail
src=$1 build=$2
out="$build/test-report-input"
rm -rf "$out"
mkdir -p "$out"
failures=0
cases=0
fail() {
  echo "test_report_input: FAIL: $*" >&2
  failures=$((failures + 1))
}

# A data directory with the committed results, then FILE replaced by stdin.
data_with() {
  local name=$1 file=$2
  rm -rf "${out:?}/$name"
  mkdir -p "$out/$name"
  cp "$src"/results/dispatch.csv "$src"/results/multiplexing.csv \
    "$src"/results/multiplexing-runs.csv "$src"/results/event-loops.csv "$out/$name/"
  cat >"$out/$name/$file"
}

# expect_refused NAME FILE LINE TEXT: report.sh on data NAME exits 1 with one
# line on stderr: "report: DIR/FILE:LINE: ...TEXT...".
expect_refused() {
  local name=$1 file=$2 line=$3 text=$4 rc=0
  cases=$((cases + 1))
  IOLAB_PROGRESS=0 bash "$src/scripts/report.sh" --data "$out/$name" --build-dir "$build" \
    --out "$out/$name.html" >"$out/$name.out" 2>"$out/$name.err" || rc=$?
  local err
  err=$(cat "$out/$name.err")
  local want="report: $out/$name/$file:$line: "
  ((rc == 1)) || fail "$name: exit $rc, want 1 (stderr: $err)"
  [[ $(wc -l <"$out/$name.err") -eq 1 ]] || fail "$name: want one line on stderr, got: $err"
  [[ "$err" == "$want"* ]] || fail "$name: want a line starting '$want', got: $err"
  [[ "$err" == *"$text"* ]] || fail "$name: want '$text' in: $err"
  grep -q Traceback "$out/$name.err" && fail "$name: a Python traceback"
  [[ -e "$out/$name.html" ]] && fail "$name: a page was written anyway"
  return 0
}

header() { head -1 "$src/results/$1"; }
row() { sed -n 2p "$src/results/$1"; }

# The case that was reported: a header without the columns, a word for a number.
printf 'server,idle\nx,notanumber\n' | data_with mux-columns multiplexing.csv
expect_refused mux-columns multiplexing.csv 1 "lacks the columns idle_asked"

for file in dispatch.csv multiplexing.csv multiplexing-runs.csv event-loops.csv; do
  base=${file%.csv}
  h=$(header "$file")
  r=$(row "$file")
  nf=$(awk -F, '{print NF; exit}' <<<"$h")
  # The key column of each file and a measured one.
  case "$file" in
    dispatch.csv) key=fds measured=us_per_round ;;
    event-loops.csv) key=size measured=cpu_us_per_request ;;
    *) key=idle_asked measured=requests_per_s ;;
  esac
  kcol=$(tr , '\n' <<<"$h" | grep -nx "$key" | cut -d: -f1)
  mcol=$(tr , '\n' <<<"$h" | grep -nx "$measured" | cut -d: -f1)
  set_field() { awk -F, -v OFS=, -v c="$1" -v v="$2" '{$c = v; print}' <<<"$r"; }

  # A word where a whole number belongs, on the third line.
  { echo "$h"; echo "$r"; set_field "$kcol" ten; } | data_with "$base-word" "$file"
  expect_refused "$base-word" "$file" 3 "column $key: 'ten' is not a whole number"
  # NaN and infinity where a measured figure belongs.
  { echo "$h"; set_field "$mcol" nan; } | data_with "$base-nan" "$file"
  expect_refused "$base-nan" "$file" 2 "column $measured: 'nan' is not a finite number"
  { echo "$h"; echo "$r"; echo "$r"; set_field "$mcol" inf; } | data_with "$base-inf" "$file"
  expect_refused "$base-inf" "$file" 4 "column $measured: 'inf' is not a finite number"
  # A row cut short, and a row with a field too many.
  { echo "$h"; echo "$r"; cut -d, -f1-2 <<<"$r"; } | data_with "$base-short" "$file"
  expect_refused "$base-short" "$file" 3 "2 fields, the header has $nf"
  { echo "$h"; echo "$r,extra"; } | data_with "$base-long" "$file"
  expect_refused "$base-long" "$file" 2 "$((nf + 1)) fields, the header has $nf"
  # An empty file, a header alone, a byte that is not UTF-8.
  data_with "$base-empty" "$file" </dev/null
  expect_refused "$base-empty" "$file" 1 "empty: no header line"
  echo "$h" | data_with "$base-header" "$file"
  expect_refused "$base-header" "$file" 2 "no rows after the header"
  { echo "$h"; echo "$r"; printf '%s\xff\n' "$r"; } | data_with "$base-binary" "$file"
  expect_refused "$base-binary" "$file" 3 "not UTF-8 text"
done

# The good files still make a page.
cases=$((cases + 1))
data_with good dispatch.csv <"$src/results/dispatch.csv"
rc=0
IOLAB_PROGRESS=0 bash "$src/scripts/report.sh" --data "$out/good" --build-dir "$build" \
  --out "$out/good.html" >"$out/good.out" 2>"$out/good.err" || rc=$?
((rc == 0)) || fail "good data: exit $rc: $(cat "$out/good.err")"
[[ -s "$out/good.html" ]] || fail "good data: no page"

((failures == 0)) || {
  echo "test_report_input: $failures check(s) failed over $cases cases" >&2
  exit 1
}
echo "test_report_input: ok: $cases cases"
