#!/usr/bin/env bash
# handout.sh — make the students' repository of the course: every write-it file as a skeleton.
#
# Usage: scripts/handout.sh [--with-reference] [--no-git] OUT_DIR
#
# Copies the committed tree (`git archive HEAD`: uncommitted changes are not
# handed out) to OUT_DIR, which must not exist or be empty, and turns it into
# what a student starts from:
#   - every write-it exercise (a write=1 block of labs/*/LAB.md) stays in its
#     skeleton state, as committed; its solution patch and its wrong answers
#     (labs/NN-x/solutions/ex-NAME.patch, labs/NN-x/wrong/ex-NAME/) are removed;
#   - .handout/manifest records, per exercise, the files the student writes
#     (those its solution patch touched) and their sha256 as handed out:
#     scripts/grade.sh reports an exercise whose files are unchanged as
#     "not yet" (columns: exercise id, lab, path, sha256);
#   - a reference implementation that an exercise re-creates (replaces=FILE in
#     its block header) becomes a one-line `#include` of the student's file,
#     so that its program, and the scripts and tests that run it, run the
#     student's code; a sheet's "The code" fence quoting that file
#     (<!-- code: PATH#NAME -->) becomes a pointer to the exercise; the tests
#     that start that program get the exercise's label (ex-NAME, through
#     .handout/replaced.cmake), which the test presets exclude and
#     `ctest -L ex-NAME` runs. --with-reference (a teacher's copy) keeps them;
#   - teacher-only tests (the answer-key run of check-labs, the kit's proof)
#     are not registered in a handout (their CMakeLists check .handout/);
#   - README.md starts with a short section for the student (what to write,
#     how to check it, how it is graded), and .github/workflows/classroom.yml
#     is the GitHub Classroom autograding workflow (scripts/grade.sh --classroom);
#   - OUT_DIR becomes a git repository with one commit (--no-git: not), ready
#     to push as a GitHub Classroom template.
# The handout builds (cmake --preset default && cmake --build --preset default),
# `ctest --preset default` passes in it (the exercises' own tests carry ex-
# labels) and scripts/grade.sh there gives 0 of M, every exercise "not yet".
# Exit 0 done, 1 failed, 2 bad usage (OUT_DIR missing or not empty).
set -euo pipefail

. "$(dirname "$0")/lib.sh"

with_reference=0
use_git=1
out=""
while (($#)); do
    if lib_common_option "$@"; then shift "$LIB_SHIFT"; continue; fi
    case "$1" in
    --with-reference) with_reference=1 ;;
    --no-git) use_git=0 ;;
    -*) usage_error "unknown argument '$1' (--help)" ;;
    *)
        [[ -z "$out" ]] || usage_error "one OUT_DIR only (got '$out' and '$1')"
        out="$1"
        ;;
    esac
    shift
done
[[ -n "$out" ]] || usage_error "give the directory to create (OUT_DIR; --help)"
[[ "$out" == /* ]] || out="$PWD/$out"
if [[ -e "$out" ]]; then
    [[ -d "$out" && -z "$(ls -A "$out")" ]] || usage_error "$out exists and is not an empty directory"
fi
# Inside the repository only where git ignores it (e.g. under build/).
if [[ "$out/" == "$ROOT"/* ]] && ! git -C "$ROOT" check-ignore -q "$out"; then
    usage_error "$out is inside the repository and not ignored by git; choose a directory outside it (or under build/)"
fi

work="$(scratch_dir)"
mkdir -p "$out"
(cd "$ROOT" && git archive --format=tar HEAD) | tar -xf - -C "$out" ||
    die "cannot copy the committed tree of $ROOT (git archive HEAD)"

if ! "$ROOT/scripts/check-labs.sh" --index --labs-dir "$out/labs" >"$work/index" 2>"$work/index.err"; then
    cat "$work/index.err" >&2
    die "cannot read the exercises of $out/labs/*/LAB.md"
fi

mkdir -p "$out/.handout"
: >"$out/.handout/manifest"
: >"$out/.handout/replaced.cmake"
: >"$work/replaced"
: >"$work/exercises"
count=0
while IFS=$'\t' read -r lab id _ solution _ write points replaces _; do
    ((write == 1)) || continue
    patch="$out/labs/$lab/$solution"
    [[ -f "$patch" ]] || die "exercise $id: no solution patch labs/$lab/$solution"
    name="$(basename "$solution" .patch)"
    mapfile -t files < <(sed -n 's|^+++ b/||p' "$patch" | sort -u)
    ((${#files[@]})) || die "exercise $id: labs/$lab/$solution touches no file"
    for f in "${files[@]}"; do
        [[ -f "$out/$f" ]] || die "exercise $id: $f (patched by its solution) is not in the tree"
        printf '%s\t%s\t%s\t%s\n' "$id" "$lab" "$f" "$(sha256sum "$out/$f" | cut -d' ' -f1)" >>"$out/.handout/manifest"
    done
    rm -f "$patch"
    rm -rf "$out/labs/$lab/wrong/$name"
    printf '%s\t%s\t%s\t%s\n' "$lab" "$id" "$points" "${files[*]}" >>"$work/exercises"
    count=$((count + 1))
    if [[ "$replaces" != - ]] && ((!with_reference)); then
        # The student's file of this lab that the reference becomes.
        mine=""
        for f in "${files[@]}"; do [[ "$f" == "labs/$lab/"* && "$f" == *.cpp ]] && mine="$f"; done
        [[ -n "$mine" ]] || die "exercise $id: replaces=$replaces but its solution touches no .cpp of labs/$lab"
        printf '%s\t%s\t%s\t%s\n' "$lab" "labs/$lab/$replaces" "$mine" "$name" >>"$work/replaced"
    fi
done <"$work/index"
((count)) || die "no write-it exercise (write=1) in $out/labs/*/LAB.md"
for d in "$out"/labs/*/wrong "$out"/labs/*/solutions; do
    if [[ -d "$d" ]]; then rmdir "$d" 2>/dev/null || true; fi
done

# ---- references that an exercise replaces ------------------------------------------
python3 - "$out" "$work/replaced" <<'PY'
import os, re, sys

out, replaced_file = sys.argv[1:3]
rows = [l.rstrip("\n").split("\t") for l in open(replaced_file, encoding="utf-8") if l.strip()]
cmake_lines = []
for lab, ref, mine, name in rows:
    ref_path = os.path.join(out, ref)
    if not os.path.isfile(ref_path):
        sys.exit(f"handout: replaces={os.path.basename(ref)} of {name}: {ref} does not exist")
    # The program built from the reference: iolab_add_program(NAME ... FILE ...).
    lists = open(os.path.join(out, "labs", lab, "CMakeLists.txt"), encoding="utf-8").read()
    target = None
    for m in re.finditer(r"iolab_add_program\(\s*([A-Za-z0-9_.-]+)([^)]*)\)", lists):
        if os.path.basename(ref) in m.group(2).split():
            target = m.group(1)
    if target is None:
        sys.exit(f"handout: no iolab_add_program in labs/{lab}/CMakeLists.txt builds {os.path.basename(ref)}")
    rel = os.path.relpath(os.path.join(out, mine), os.path.dirname(ref_path))
    with open(ref_path, "w", encoding="utf-8") as f:
        f.write(f"// In your copy of the course, {os.path.basename(ref)} is your {os.path.basename(mine)}:\n"
                f"// the reference implementation is left out, so that {target} (and every\n"
                f"// script and test that runs it) runs the code you write. Its tests carry\n"
                f"// the label {name}: ctest --test-dir build -L {name}\n"
                f'#include "{rel}"\n')
    cmake_lines.append(f"set(IOLAB_HANDOUT_LABEL_{target} {name})\n")
    # The sheets' "The code" fences quoting the reference would give the answer away.
    # (blank lines allowed between the marker and its fence, both indented alike)
    marker = re.compile(r"^([ \t]*)<!-- *code: *" + re.escape(ref) +
                        r"#[A-Za-z0-9_.-]+ *-->[ \t]*\n(?:[ \t]*\n)*[ \t]*```[a-z]*[ \t]*\n.*?^[ \t]*```[ \t]*\n",
                        re.M | re.S)
    for dirpath, _, names in os.walk(os.path.join(out, "labs")):
        for n in names:
            if not n.endswith(".md"):
                continue
            p = os.path.join(dirpath, n)
            text = open(p, encoding="utf-8").read()
            new = marker.sub(lambda m: f"{m.group(1)}*(In your copy this part of `{os.path.basename(ref)}` "
                                       f"is yours to write: `{mine}`, exercise `{name}`.)*\n", text)
            if new != text:
                open(p, "w", encoding="utf-8").write(new)
with open(os.path.join(out, ".handout", "replaced.cmake"), "w", encoding="utf-8") as f:
    f.write("# Written by scripts/handout.sh: the programs that run a student's code,\n"
            "# and the exercise label their tests get (tests/CMakeLists.txt).\n")
    f.writelines(cmake_lines)
PY

# ---- the student's README, the Classroom workflow ------------------------------------
total=0
{
    echo "# Your copy of iolab"
    echo
    echo "This repository is the course as handed out to you: the lab sheets"
    echo "(labs/NN-*/LAB.md), the programs they run, and the pieces you write yourself."
    echo "Build it once (see *Build and test* below, or \`./scripts/setup.sh\` first on"
    echo "a fresh machine):"
    echo
    echo "    cmake --preset default && cmake --build --preset default"
    echo
    echo "Each exercise is a \`TODO(you)\` in the file below, taught by the sheet"
    echo "section the TODO names. Write it, then paste the sheet's block for it (it"
    echo "rebuilds your program and ends with \`check: PASS\` or \`check: FAIL — what is"
    echo "missing\`), or run \`scripts/grade.sh --exercise ID\`."
    echo
    echo "| lab | exercise | points | you write |"
    echo "|---|---|---|---|"
    while IFS=$'\t' read -r lab id points files; do
        echo "| $lab | \`$id\` | $points | \`${files// /\`, \`}\` |"
        total=$((total + points))
    done <"$work/exercises"
    echo
    echo "\`scripts/grade.sh\` grades them all on your build: one line per exercise"
    echo "(\"not yet\" while its file is as handed out), \`Score: N/$total\` at the end;"
    echo "\`scripts/grade.sh --lab NN\` one lab. Your pushes are graded the same way"
    echo "(.github/workflows/classroom.yml)."
    echo
    if [[ -f "$out/README.md" ]]; then
        echo "---"
        echo
        cat "$out/README.md"
    fi
} >"$work/README.md"
mv "$work/README.md" "$out/README.md"

mkdir -p "$out/.github/workflows"
(cd "$out" && scripts/grade.sh --classroom >.github/workflows/classroom.yml) ||
    die "cannot write the Classroom workflow (scripts/grade.sh --classroom in $out)"

if ((use_git)); then
    (cd "$out" && git init -q && git add -A &&
        git -c user.name="iolab handout" -c user.email="handout@iolab.invalid" \
            commit -qm "iolab, as handed out") || die "cannot make $out a git repository (--no-git)"
fi
refs="$(wc -l <"$work/replaced")"
echo "handout: $out: $count write-it exercise(s), $total point(s); $refs reference(s) swapped for the student's code$( ((with_reference)) && echo ' (kept: --with-reference)')"
