#!/usr/bin/env bash
# grade.sh — grade the write-it-yourself exercises: your code, your build, a score.
#
# Usage: scripts/grade.sh [--build-dir DIR] [--lab NN] [--exercise ID]
#                         [--results FILE] [--junit FILE] [--classroom] [--list]
#
# Every write=1 exercise of labs/*/LAB.md (the blocks that end with
# "check: PASS" or "check: FAIL — what is missing") is one graded item, worth
# the points= of its block header (1 when it names none). For each:
#   not yet   the files you write for it are as handed out (in a handout: the
#             hashes scripts/handout.sh recorded in .handout/manifest; in the
#             course's own repository: unchanged from the commit, HEAD) — the
#             check is not even run;
#   PASS      its block, run by scripts/check-labs.sh on your working tree and
#             your build (it rebuilds the exercise's targets), says check: PASS
#             and meets its predictions: the full points;
#   FAIL      anything else: 0 points, the check's line (what is missing) and
#             the last lines of the block's output under it.
# Prints one line per exercise, "Score: N/M" after each lab and a total
# "Score: N/M", then, last, one JSON line for Autolab:
#     {"scores": {"ID": N, ...}, "scoreboard": [TOTAL, LAB1, LAB2, ...]}
# Exit 0 only at full marks (every selected exercise passes), 1 below them,
# 2 on bad usage (or no exercise selected), 3 when DIR/bin does not exist.
#   --build-dir DIR   the build the checks use and rebuild (default build/)
#   --lab NN          only the labs whose folder name starts with NN (repeatable)
#   --exercise ID     only that exercise (repeatable); exit 0 = its full points
#   --results FILE    also write the results as JSON: score, max_score, per lab,
#                     per exercise (lab, id, status pass|fail|not yet, points,
#                     max_points, message, seconds)
#   --junit FILE      also write JUnit XML (one testsuite per lab, one testcase
#                     per exercise; a "not yet" or FAIL is a <failure>), the
#                     form ctest --output-junit writes, for CI test reports
#   --classroom       print a GitHub Classroom workflow (one
#                     autograding-command-grader step per exercise, each running
#                     `scripts/grade.sh --exercise ID`, max-score = its points)
#                     to stdout and run nothing; see docs/TEACHING.md
#   --list            list the graded exercises, their points and files; run nothing
set -euo pipefail

. "$(dirname "$0")/lib.sh"

lab_filters=()
exercise_filters=()
results=""
junit=""
classroom=0
list_only=0
while (($#)); do
    if lib_common_option "$@"; then shift "$LIB_SHIFT"; continue; fi
    case "$1" in
    --lab) need_value "$@"; lab_filters+=("$2"); shift ;;
    --exercise) need_value "$@"; exercise_filters+=("$2"); shift ;;
    --results) need_value "$@"; results="$2"; shift ;;
    --junit) need_value "$@"; junit="$2"; shift ;;
    --classroom) classroom=1 ;;
    --list) list_only=1 ;;
    *) usage_error "unknown argument '$1' (--help)" ;;
    esac
    shift
done
[[ -z "$results" || "$results" == /* ]] || results="$PWD/$results"
[[ -z "$junit" || "$junit" == /* ]] || junit="$PWD/$junit"
cd "$ROOT"

work="$(scratch_dir)"
manifest="$ROOT/.handout/manifest"

# ---- the graded exercises ----------------------------------------------------------
# check-labs --index: lab, id, timeout, solution, targets, write, points, replaces, line.
if ! "$ROOT/scripts/check-labs.sh" --index >"$work/index" 2>"$work/index.err"; then
    cat "$work/index.err" >&2
    die "cannot read the exercises of labs/*/LAB.md"
fi
selected() { # LAB ID: 0 when the filters keep it
    local f keep=1
    if ((${#lab_filters[@]})); then
        keep=0
        for f in "${lab_filters[@]}"; do [[ "$1" == "$f"* ]] && keep=1; done
    fi
    ((keep)) || return 1
    ((${#exercise_filters[@]})) || return 0
    for f in "${exercise_filters[@]}"; do [[ "$2" == "$f" ]] && return 0; done
    return 1
}
: >"$work/graded"
while IFS=$'\t' read -r lab id timeout solution targets write points _ _; do
    ((write == 1)) || continue
    selected "$lab" "$id" || continue
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$lab" "$id" "$points" "$timeout" "$solution" "$targets" >>"$work/graded"
done <"$work/index"
if [[ ! -s "$work/graded" ]]; then
    usage_error "no write-it exercise selected (filters: ${lab_filters[*]:-} ${exercise_filters[*]:-}; --list shows them)"
fi
if ((${#exercise_filters[@]})); then
    for f in "${exercise_filters[@]}"; do
        cut -f2 "$work/graded" | grep -qxF -- "$f" || usage_error "no write-it exercise '$f' (--list shows them)"
    done
fi

# student_files LAB ID SOLUTION: the files the student writes for an exercise,
# one a line: from the handout's manifest, else the files its solution patch
# touches.
student_files() {
    if [[ -f "$manifest" ]]; then
        awk -F '\t' -v id="$2" '$1 == id { print $3 }' "$manifest"
    elif [[ -f "labs/$1/$3" ]]; then
        sed -n 's|^+++ b/||p' "labs/$1/$3" | sort -u
    fi
}
# not_yet LAB ID SOLUTION: 0 when every student file is as handed out; sets
# not_yet_why.
not_yet() {
    local files=() f
    mapfile -t files < <(student_files "$1" "$2" "$3")
    if ((${#files[@]} == 0)); then
        not_yet_why=""
        return 1
    fi
    if [[ -f "$manifest" ]]; then
        while IFS=$'\t' read -r _ _ f sum; do
            [[ -f "$f" ]] || return 1
            [[ "$(sha256sum "$f" | cut -d' ' -f1)" == "$sum" ]] || return 1
        done < <(awk -F '\t' -v id="$2" '$1 == id' "$manifest")
    else
        git diff --quiet HEAD -- "${files[@]}" 2>/dev/null || return 1
    fi
    not_yet_why="$(printf '%s, ' "${files[@]##*/}")"
    not_yet_why="${not_yet_why%, } unchanged since handed out"
    return 0
}

if ((list_only)); then
    while IFS=$'\t' read -r lab id points _ solution _; do
        echo "$lab | $id | $points point(s) | you write: $(student_files "$lab" "$id" "$solution" | paste -sd ' ' -)"
    done <"$work/graded"
    exit 0
fi

# ---- GitHub Classroom ------------------------------------------------------------
if ((classroom)); then
    cat <<'EOF'
# The autograding workflow of a GitHub Classroom assignment made from an iolab
# handout (scripts/handout.sh; generated by scripts/grade.sh --classroom).
# One autograding-command-grader step per write-it exercise: the step runs
# `scripts/grade.sh --exercise ID`, which exits 0 (full points) only when that
# exercise's check passes; the reporter adds the points up for the teacher.
name: Autograding Tests
'on':
- push
- repository_dispatch
permissions:
  checks: write
  actions: read
  contents: read
jobs:
  run-autograding-tests:
    runs-on: ubuntu-latest
    if: github.actor != 'github-classroom[bot]'
    steps:
    - name: Checkout code
      uses: actions/checkout@v4
    - name: Install the build's packages
      run: sudo ./scripts/setup.sh
    - name: Build (an exercise that does not compile fails its own step, not this one)
      run: |
        cmake --preset default
        cmake --build --preset default -- -k 0 || true
EOF
    runners=()
    envs=()
    while IFS=$'\t' read -r lab id points timeout _ _; do
        step="$(tr -c 'A-Za-z0-9\n' '-' <<<"$id" | tr '[:upper:]' '[:lower:]')"
        runners+=("$step")
        # The reporter reads STEP-ID_RESULTS: the step's id upper-cased, hyphens kept.
        envs+=("$(tr '[:lower:]' '[:upper:]' <<<"$step")_RESULTS: \"\${{steps.$step.outputs.result}}\"")
        # Minutes: the block's own timeout plus building its targets.
        cat <<EOF
    - name: $lab $id
      id: $step
      uses: classroom-resources/autograding-command-grader@v1
      with:
        test-name: $lab $id
        setup-command: ''
        command: scripts/grade.sh --exercise $id
        timeout: $(((timeout + 59) / 60 + 10))
        max-score: $points
EOF
    done <"$work/graded"
    echo "    - name: Autograding Reporter"
    echo "      uses: classroom-resources/autograding-grading-reporter@v1"
    echo "      env:"
    for e in "${envs[@]}"; do echo "        $e"; done
    echo "      with:"
    echo "        runners: $(IFS=,; echo "${runners[*]}")"
    exit 0
fi

if [[ ! -d "$BUILD_DIR/bin" ]]; then
    echo "$SCRIPT: not built: $BUILD_DIR/bin does not exist (cmake --preset default && cmake --build --preset default)" >&2
    exit 3
fi

# ---- grading ----------------------------------------------------------------------
# One row per exercise in $work/rows: lab, id, status, points, max, seconds,
# message; the block's last output lines in $work/detail.N.
: >"$work/rows"
n=0
total="$(wc -l <"$work/graded")"
prev_lab=""
lab_score=0
lab_max=0
lab_line() {
    echo "$prev_lab | Score: $lab_score/$lab_max"
}
while IFS=$'\t' read -r lab id points timeout solution targets <&3; do
    n=$((n + 1))
    if [[ -n "$prev_lab" && "$lab" != "$prev_lab" ]]; then
        lab_line
        lab_score=0
        lab_max=0
    fi
    prev_lab="$lab"
    progress "$n" "$total" "$lab/$id"
    start_s=$EPOCHSECONDS
    : >"$work/detail.$n"
    if not_yet "$lab" "$id" "$solution"; then
        status="not yet" got=0 message="$not_yet_why"
    else
        rc=0
        IOLAB_PROGRESS=0 "$ROOT/scripts/check-labs.sh" --build-dir "$BUILD_DIR" --exercise "$id" \
            >"$work/out" 2>"$work/err" || rc=$?
        row="$(grep -F "$lab | $id | " "$work/out" | grep -E ' \| (PASS|FAIL)$' | head -n 1 || true)"
        message="${row#*| observed: }"
        message="${message% | *}"
        if [[ -z "$row" ]]; then
            status="FAIL" got=0
            message="the check did not run (check-labs exit $rc): $(grep -v '^--' "$work/err" | head -n 1)"
        elif [[ "$row" == *"| PASS" ]]; then
            # (check-labs' exit status also counts the figures the sheet's
            # prose quotes from this exercise: the sheet's business, not the
            # student's.)
            status="PASS" got="$points"
        else
            status="FAIL" got=0
            sed -n 's/^   \(out\|err\): /    /p' "$work/err" | tail -n 12 >"$work/detail.$n"
        fi
    fi
    progress_clear
    seconds=$((EPOCHSECONDS - start_s))
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$lab" "$id" "$status" "$got" "$points" "$seconds" "$message" >>"$work/rows"
    echo "$lab | $id | $got/$points | $status | $message"
    cat "$work/detail.$n"
    lab_score=$((lab_score + got))
    lab_max=$((lab_max + points))
done 3<"$work/graded"
progress_done
lab_line

# ---- the totals, the files, the Autolab line ---------------------------------------
python3 - "$work/rows" "$work" "$results" "$junit" <<'PY'
import json, sys
from xml.sax.saxutils import escape, quoteattr

rows_file, work, results, junit = sys.argv[1:5]
rows = []
with open(rows_file, encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
        lab, ex, status, got, pts, secs, msg = line.rstrip("\n").split("\t", 6)
        try:
            detail = open(f"{work}/detail.{n}", encoding="utf-8", errors="replace").read()
        except OSError:
            detail = ""
        rows.append(dict(lab=lab, id=ex, status=status.lower(), points=int(got),
                         max_points=int(pts), seconds=int(secs), message=msg, detail=detail))
labs = {}
for r in rows:
    l = labs.setdefault(r["lab"], {"score": 0, "max_score": 0})
    l["score"] += r["points"]
    l["max_score"] += r["max_points"]
score = sum(r["points"] for r in rows)
top = sum(r["max_points"] for r in rows)
print(f"Score: {score}/{top}")
if results:
    with open(results, "w", encoding="utf-8") as f:
        json.dump({"score": score, "max_score": top, "labs": labs,
                   "exercises": [{k: v for k, v in r.items() if k != "detail"} for r in rows]},
                  f, indent=2, ensure_ascii=False)
        f.write("\n")
if junit:
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<testsuites name="iolab-grade" tests="{len(rows)}" '
           f'failures="{sum(r["status"] != "pass" for r in rows)}">']
    for lab, l in labs.items():
        mine = [r for r in rows if r["lab"] == lab]
        out.append(f'  <testsuite name={quoteattr(lab)} tests="{len(mine)}" '
                   f'failures="{sum(r["status"] != "pass" for r in mine)}" '
                   f'time="{sum(r["seconds"] for r in mine)}">')
        for r in mine:
            out.append(f'    <testcase name={quoteattr(r["id"])} classname={quoteattr(lab)} '
                       f'time="{r["seconds"]}">')
            if r["status"] != "pass":
                out.append(f'      <failure type={quoteattr(r["status"])} message={quoteattr(r["message"])}/>')
            out.append(f'      <system-out>{escape(r["message"] + chr(10) + r["detail"])}</system-out>')
            out.append('    </testcase>')
        out.append('  </testsuite>')
    out.append('</testsuites>')
    with open(junit, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
# Autolab: the last line of the output.
print(json.dumps({"scores": {r["id"]: r["points"] for r in rows},
                  "scoreboard": [score] + [l["score"] for l in labs.values()]}))
sys.exit(0 if score == top else 1)
PY
