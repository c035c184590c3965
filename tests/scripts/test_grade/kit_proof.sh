#!/usr/bin/env bash
# The kit's proof over the real labs, in one handout and one build of it:
#   1. scripts/handout.sh makes the students' repository; its exercise targets
#      build; scripts/grade.sh there gives 0 of M, every exercise "not yet";
#   2. every solution patch applied (from the course's labs/): M of M, exit 0;
#   3. the wrong answers, in rounds (round k applies every exercise's k-th
#      wrong answer at once; one that does not apply beside the others gets a
#      round of its own): each exercise with a wrong answer in place scores 0
#      (FAIL, not "not yet"), the others are "not yet".
# Usage: kit_proof.sh SOURCE_DIR BUILD_DIR [--rounds N]   (work area:
# BUILD_DIR/kit-proof, removed at the end; ccache used when installed).
# --rounds N stops after N rounds of wrong answers (default: all; the
# check_labs ctest proves every wrong answer on its own anyway, through the
# same check). Prints the time of each step.
set -uo pipefail
root="$1"
build="$2"
max_rounds=0
if [[ "${3:-}" == --rounds ]]; then
    max_rounds="$4"
fi
w="$build/kit-proof"
rm -rf "$w"
mkdir -p "$w/tmp"
trap 'rm -rf "$w"' EXIT
export TMPDIR="$w/tmp" IOLAB_PROGRESS=0
start=$SECONDS
failures=0
fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}
step() { echo "-- [$((SECONDS - start)) s] $*"; }

h="$w/handout"
step "1. handout"
"$root/scripts/handout.sh" --no-git "$h" || { fail "handout.sh"; exit 1; }
# grade.sh in the handout decides "not yet" from the manifest, not from git.
mapfile -t rows < <("$h/scripts/check-labs.sh" --index 2>/dev/null | awk -F '\t' '$6 == 1')
((${#rows[@]})) || { fail "no write-it exercise in the handout"; exit 1; }
total=0
targets=()
for r in "${rows[@]}"; do
    IFS=$'\t' read -r _ _ _ _ t _ p _ <<<"$r"
    total=$((total + p))
    IFS=',' read -r -a ts <<<"$t"
    targets+=("${ts[@]}")
done
echo "${#rows[@]} exercises, $total points"

args=(-G Ninja)
type="$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt" 2>/dev/null)"
args+=("-DCMAKE_BUILD_TYPE=${type:-RelWithDebInfo}")
if command -v ccache >/dev/null; then
    args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
    export CCACHE_NOHASHDIR=1 CCACHE_BASEDIR="${CCACHE_BASEDIR:-$root}"
fi
step "configure the handout, build the exercise targets: ${targets[*]}"
cmake -S "$h" -B "$h/build" "${args[@]}" >"$w/configure.log" 2>&1 || { tail "$w/configure.log"; fail "configure"; exit 1; }
cmake --build "$h/build" --target "${targets[@]}" >"$w/build.log" 2>&1 ||
    { grep -m5 error "$w/build.log"; fail "the handout's exercise targets do not build"; exit 1; }

# Only the exercise targets are built in the handout; the other programs a
# block runs (servers, clients) come from the course's own build, after the
# handout's on PATH (check-labs and lab.sh put the handout's build/bin first).
grade() { # OUT_FILE [ARGS...]: grade.sh in the handout; sets grade_rc
    grade_rc=0
    (cd "$h" && PATH="$build/bin:$PATH" scripts/grade.sh "${@:2}") >"$1" 2>"$1.err" || grade_rc=$?
}
line_of() { # OUT ID: the exercise's grade line
    grep -E "^[^|]+ \| $2 \| " "$1" | head -n 1
}

step "grade the handout as handed out"
grade "$w/g0"
[[ "$grade_rc" == 1 ]] || fail "grade.sh as handed out: exit $grade_rc, want 1"
grep -qx "Score: 0/$total" "$w/g0" || fail "as handed out: no 'Score: 0/$total'"
for r in "${rows[@]}"; do
    IFS=$'\t' read -r _ id _ <<<"$r"
    [[ "$(line_of "$w/g0" "$id")" == *" | not yet | "* ]] || fail "as handed out, $id: $(line_of "$w/g0" "$id")"
done

step "2. every solution applied"
for r in "${rows[@]}"; do
    IFS=$'\t' read -r lab _ _ sol _ <<<"$r"
    (cd "$h" && patch -s -p1 --fuzz=0 --no-backup-if-mismatch <"$root/labs/$lab/$sol") || fail "solution $lab/$sol does not apply to the handout"
done
grade "$w/g1"
[[ "$grade_rc" == 0 ]] || fail "grade.sh with every solution: exit $grade_rc, want 0"
grep -qx "Score: $total/$total" "$w/g1" || { fail "with every solution: no 'Score: $total/$total'"; cat "$w/g1"; }
for r in "${rows[@]}"; do
    IFS=$'\t' read -r lab _ _ sol _ <<<"$r"
    (cd "$h" && patch -s -R -p1 --fuzz=0 --no-backup-if-mismatch <"$root/labs/$lab/$sol") || fail "solution $lab/$sol does not revert"
done

step "3. the wrong answers, in rounds"
# pending: "ID<TAB>LAB<TAB>PATCH" of every wrong answer not yet graded.
pending=()
for r in "${rows[@]}"; do
    IFS=$'\t' read -r lab id _ sol _ <<<"$r"
    for p in "$root/labs/$lab/wrong/$(basename "$sol" .patch)"/*.patch; do
        [[ -f "$p" ]] && pending+=("$id"$'\t'"$lab"$'\t'"$p")
    done
done
echo "${#pending[@]} wrong answers"
round=0
while ((${#pending[@]})); do
    if ((max_rounds && round >= max_rounds)); then
        echo "${#pending[@]} wrong answers left for check_labs --answer-key (--rounds $max_rounds)"
        break
    fi
    round=$((round + 1))
    applied=()
    later=()
    declare -A taken=()
    for e in "${pending[@]}"; do
        IFS=$'\t' read -r id _ p <<<"$e"
        if [[ -n "${taken[$id]:-}" ]] || ! (cd "$h" && patch -s -p1 --fuzz=0 --no-backup-if-mismatch --dry-run <"$p" >/dev/null 2>&1); then
            later+=("$e")
            continue
        fi
        (cd "$h" && patch -s -p1 --fuzz=0 --no-backup-if-mismatch <"$p") || { fail "wrong answer $p does not apply"; continue; }
        taken[$id]=1
        applied+=("$e")
    done
    if ((${#applied[@]} == 0)); then
        for e in "${later[@]}"; do fail "wrong answer ${e##*$'\t'} does not apply to the handout"; done
        break
    fi
    step "round $round: ${#applied[@]} wrong answers"
    grade "$w/g-wrong-$round"
    [[ "$grade_rc" == 1 ]] || fail "round $round: grade.sh exit $grade_rc, want 1"
    for r in "${rows[@]}"; do
        IFS=$'\t' read -r _ id _ <<<"$r"
        l="$(line_of "$w/g-wrong-$round" "$id")"
        if [[ -n "${taken[$id]:-}" ]]; then
            [[ "$l" == *" | 0/"*" | FAIL | "* ]] || fail "round $round, wrong answer of $id not caught: $l"
            echo "  $l"
        else
            [[ "$l" == *" | not yet | "* ]] || fail "round $round, $id (untouched): $l"
        fi
    done
    for e in "${applied[@]}"; do
        (cd "$h" && patch -s -R -p1 --fuzz=0 --no-backup-if-mismatch <"${e##*$'\t'}") || fail "wrong answer ${e##*$'\t'} does not revert"
    done
    unset taken
    pending=("${later[@]}")
done

step "done"
if ((failures)); then
    echo "$failures failure(s)"
    exit 1
fi
echo "kit proof: handout 0/$total not yet, solutions $total/$total, every wrong answer 0 ($round round(s)) in $((SECONDS - start)) s"
