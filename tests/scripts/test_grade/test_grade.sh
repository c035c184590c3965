#!/usr/bin/env bash
# The write-it kit on a course in miniature (tests/scripts/test_grade/course:
# one lab, two exercises worth 1 and 2 points, a solution and wrong answers
# each): check-labs --answer-key proves the answer key on the committed tree,
# grade.sh says "not yet", PASS and FAIL as it must, writes its JSON, JUnit
# and Autolab line, and handout.sh makes a repository where grade.sh gives
# 0 of 3 "not yet" and a student's answer scores. Every block's temporary
# files stay inside this test's TMPDIR, which must be empty at the end.
# Usage: test_grade.sh SOURCE_DIR
set -uo pipefail
src="$1"
t="$(mktemp -d /tmp/iolab-test-grade.XXXXXX)"
trap 'rm -rf "$t"' EXIT
export TMPDIR="$t/tmp" IOLAB_PROGRESS=0
mkdir -p "$TMPDIR"
failures=0
fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}
expect_in() { # FILE TEXT WHAT
    grep -qF -- "$2" "$1" || { fail "$3: no line with '$2' in:"; sed 's/^/    /' "$1"; }
}
expect_rc() { # GOT WANT WHAT
    [[ "$1" == "$2" ]] || fail "$3: exit $1, want $2"
}

# The course: the fixture plus the kit's scripts, committed.
c="$t/course"
cp -r "$src/tests/scripts/test_grade/course" "$c"
# (CMakeLists.txt.fixture: tests/CMakeLists.txt would add a CMakeLists.txt here to the suite.)
find "$c" -name CMakeLists.txt.fixture -exec sh -c 'mv "$1" "${1%.fixture}"' _ {} \;
mkdir -p "$c/scripts"
for s in lib.sh lab.sh check-labs.sh grade.sh handout.sh; do cp "$src/scripts/$s" "$c/scripts/"; done
git_c() { git -C "$1" -c user.name=test -c user.email=test@iolab.invalid "${@:2}"; }
git -C "$c" init -q && git_c "$c" add -A && git_c "$c" commit -qm course || exit 1
cmake -S "$c" -B "$c/build" -G Ninja >"$t/configure.log" 2>&1 || { cat "$t/configure.log"; exit 1; }
cmake --build "$c/build" >/dev/null 2>&1 || exit 1

echo "-- 1. the answer key, with the solution applied in the working tree (not committed)"
git -C "$c" apply labs/01-adder/solutions/ex-add.patch
rc=0
"$c/scripts/check-labs.sh" --build-dir "$c/build" --answer-key >"$t/key.out" 2>"$t/key.err" || rc=$?
expect_rc "$rc" 0 "check-labs --answer-key"
expect_in "$t/key.out" "01-adder | ex-add | predicted: /^check: PASS/; /^add 2 3 = 5\$/ | observed: unpatched: FAIL as it must (check: FAIL — add 2 3 printed '0', not 5); patched: check: PASS; wrong answers: 3 of 3 fail | PASS" "ex-add's answer key on HEAD (the uncommitted solution unseen)"
expect_in "$t/key.out" "01-adder | ex-add wrong/ex-add/never-returns.patch | predicted: FAIL (Mistake: loops forever instead of printing: the check must stop it and name the likely cause.) | observed: check: FAIL — no answer after 3 s (likely: add() never returns) | PASS" "a hung wrong answer, named"
expect_in "$t/key.out" "01-adder | ex-add wrong/ex-add/drops-sign.patch | predicted: FAIL (Mistake: drops the minus signs, so negative numbers add as positive ones.) | observed: check: FAIL — add -4 1 printed '5', not -3 | PASS" "a wrong answer's line"
expect_in "$t/key.out" "01-adder | ex-max | predicted: /^check: PASS/ | observed: unpatched: FAIL as it must (check: FAIL — max 2 3 printed '', not 3); patched: check: PASS; wrong answers: 2 of 2 fail | PASS" "ex-max's answer key"
expect_in "$t/key.out" "7 passed, 0 failed" "the answer key's count"
git -C "$c" apply -R labs/01-adder/solutions/ex-add.patch

echo "-- 2. grade.sh on the course as committed: 0 of 3, not yet"
rc=0
"$c/scripts/grade.sh" --build-dir "$c/build" >"$t/g0.out" 2>"$t/g0.err" || rc=$?
expect_rc "$rc" 1 "grade.sh below full marks"
expect_in "$t/g0.out" "01-adder | ex-add | 0/1 | not yet | ex_add.sh unchanged since handed out" "not yet"
expect_in "$t/g0.out" "01-adder | ex-max | 0/2 | not yet | ex_max.sh unchanged since handed out" "not yet"
expect_in "$t/g0.out" "01-adder | Score: 0/3" "the lab's score"
[[ "$(tail -n 2 "$t/g0.out")" == 'Score: 0/3
{"scores": {"ex-add": 0, "ex-max": 0}, "scoreboard": [0, 0]}' ]] || fail "the total and the Autolab line: $(tail -n 2 "$t/g0.out")"

echo "-- 3. every solution applied: 3 of 3, exit 0, the JSON and the JUnit XML"
git -C "$c" apply labs/01-adder/solutions/ex-add.patch labs/01-adder/solutions/ex-max.patch
rc=0
"$c/scripts/grade.sh" --build-dir "$c/build" --results "$t/r.json" --junit "$t/j.xml" >"$t/g1.out" 2>"$t/g1.err" || rc=$?
expect_rc "$rc" 0 "grade.sh at full marks"
expect_in "$t/g1.out" "01-adder | ex-add | 1/1 | PASS | check: PASS" "ex-add passes"
expect_in "$t/g1.out" "01-adder | ex-max | 2/2 | PASS | check: PASS" "ex-max passes"
[[ "$(tail -n 1 "$t/g1.out")" == '{"scores": {"ex-add": 1, "ex-max": 2}, "scoreboard": [3, 3]}' ]] || fail "Autolab line: $(tail -n 1 "$t/g1.out")"
python3 - "$t/r.json" "$t/j.xml" <<'PY' || fail "results JSON / JUnit XML"
import json, sys, xml.etree.ElementTree as ET
r = json.load(open(sys.argv[1]))
assert (r["score"], r["max_score"]) == (3, 3), r
assert r["labs"] == {"01-adder": {"score": 3, "max_score": 3}}, r["labs"]
assert [(e["id"], e["status"], e["points"], e["max_points"]) for e in r["exercises"]] == \
    [("ex-add", "pass", 1, 1), ("ex-max", "pass", 2, 2)], r["exercises"]
j = ET.parse(sys.argv[2]).getroot()
assert j.tag == "testsuites" and j.get("tests") == "2" and j.get("failures") == "0", j.attrib
assert [c.get("name") for c in j.iter("testcase")] == ["ex-add", "ex-max"]
PY
git -C "$c" apply -R labs/01-adder/solutions/ex-add.patch labs/01-adder/solutions/ex-max.patch

echo "-- 4. a wrong answer: that exercise 0, what is missing named, the JUnit failure"
git -C "$c" apply labs/01-adder/wrong/ex-max/min.patch
rc=0
"$c/scripts/grade.sh" --build-dir "$c/build" --exercise ex-max --junit "$t/j2.xml" >"$t/g2.out" 2>"$t/g2.err" || rc=$?
expect_rc "$rc" 1 "grade.sh with a wrong answer"
expect_in "$t/g2.out" "01-adder | ex-max | 0/2 | FAIL | check: FAIL — max 2 3 printed '2', not 3" "the wrong answer's line"
expect_in "$t/g2.out" "    max 2 3 = 2" "the check's output under the line"
expect_in "$t/j2.xml" "<failure type=\"fail\" message=\"check: FAIL — max 2 3 printed '2', not 3\"/>" "JUnit failure"
git -C "$c" apply -R labs/01-adder/wrong/ex-max/min.patch
rc=0
"$c/scripts/grade.sh" --build-dir "$c/build" --exercise nope >/dev/null 2>"$t/g3.err" || rc=$?
expect_rc "$rc" 2 "grade.sh --exercise of no exercise"

echo "-- 5. the handout: no answers, a manifest, 0 of 3 not yet; a student's answer scores"
h="$t/handout"
rc=0
"$c/scripts/handout.sh" "$h" >"$t/h.out" 2>"$t/h.err" || rc=$?
expect_rc "$rc" 0 "handout.sh"
expect_in "$t/h.out" "2 write-it exercise(s), 3 point(s)" "handout.sh's summary"
[[ ! -e "$h/labs/01-adder/solutions" && ! -e "$h/labs/01-adder/wrong" ]] || fail "the handout still has solutions or wrong answers"
[[ "$(cut -f1,2,3 "$h/.handout/manifest")" == $'ex-add\t01-adder\tlabs/01-adder/ex_add.sh\nex-max\t01-adder\tlabs/01-adder/ex_max.sh' ]] ||
    fail "manifest: $(cat "$h/.handout/manifest")"
cmp -s "$h/labs/01-adder/ex_add.sh" "$c/labs/01-adder/ex_add.sh" || fail "the handout's ex_add.sh is not the skeleton"
expect_in "$h/README.md" "| 01-adder | \`ex-max\` | 2 | \`labs/01-adder/ex_max.sh\` |" "the student README"
expect_in "$h/.github/workflows/classroom.yml" "command: scripts/grade.sh --exercise ex-max" "the Classroom step"
expect_in "$h/.github/workflows/classroom.yml" "EX-MAX_RESULTS: \"\${{steps.ex-max.outputs.result}}\"" "the Classroom reporter"
expect_in "$h/.github/workflows/classroom.yml" "runners: ex-add,ex-max" "the Classroom runners"
[[ -z "$(git -C "$h" status --porcelain)" && "$(git -C "$h" rev-list --count HEAD)" == 1 ]] || fail "the handout is not one clean commit"
rc=0
"$c/scripts/handout.sh" "$h" >/dev/null 2>&1 || rc=$?
expect_rc "$rc" 2 "handout.sh into a directory that is not empty"
if ! cmake -S "$h" -B "$h/build" -G Ninja >/dev/null 2>&1 || ! cmake --build "$h/build" >/dev/null 2>&1; then
    fail "the handout does not build"
fi
rc=0
"$h/scripts/grade.sh" >"$t/g4.out" 2>"$t/g4.err" || rc=$?
expect_rc "$rc" 1 "grade.sh in the handout"
expect_in "$t/g4.out" "01-adder | ex-add | 0/1 | not yet |" "not yet in the handout"
expect_in "$t/g4.out" "Score: 0/3" "0 of 3 in the handout"
# The student commits an answer (HEAD moves: the manifest, not HEAD, says "as handed out").
# shellcheck disable=SC2016 # the student's code, not ours to expand
sed -i 's/^    echo 0$/    echo $(($1 + $2))/' "$h/labs/01-adder/ex_add.sh"
git_c "$h" commit -qam "my add"
rc=0
"$h/scripts/grade.sh" >"$t/g5.out" 2>"$t/g5.err" || rc=$?
expect_rc "$rc" 1 "grade.sh with one of two written"
expect_in "$t/g5.out" "01-adder | ex-add | 1/1 | PASS | check: PASS" "the student's add passes"
expect_in "$t/g5.out" "Score: 1/3" "1 of 3"

left="$(find "$TMPDIR" -mindepth 1 -maxdepth 1 | head -n 3)"
[[ -z "$left" ]] || fail "left in TMPDIR: $left"
if ((failures)); then
    echo "$failures failure(s)"
    exit 1
fi
echo "test_grade: all checks passed"
