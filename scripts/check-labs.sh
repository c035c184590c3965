#!/usr/bin/env bash
# check-labs.sh — run every checked exercise of labs/*/LAB.md and check its prediction.
#
# Usage: scripts/check-labs.sh [--build-dir DIR] [--lab NN] [--exercise ID] [--list]
#                              [--labs-dir DIR] [--scratch DIR] [--keep-scratch]
#                              [--answer-key [--answer-key-tree head|worktree] [--no-wrong-answers]] [--index]
#                              [--lint] [--as-student] [--hog CPU]
#
# An exercise is a fenced block of a LAB.md whose info string is
#     ```sh exercise=ID timeout=SECONDS [solution=solutions/NAME.patch targets=T1,T2] [write=1]
#           [points=P] [replaces=FILE]
# Its body is a bash script run from the repository root (stdin /dev/null,
# bounded by its timeout: default 30 s, at most 120). Its predictions are the
# lines of the next fenced block when that is an ```expect fence (in the
# sheet it sits inside <details>, after the block the student pastes):
#     /ERE/            some stdout line matches
#     !/ERE/           no stdout line matches
#     KEY in LO..HI    the last stdout line KEY=NUMBER has LO <= NUMBER <= HI
#     A/B in LO..HI    the ratio of the last A=NUMBER and B=NUMBER lines
# checked against its stdout; the block must also exit 0. A "# expect:" line
# inside the block is an error (the student would read the answer before
# predicting): the exercise fails, naming LAB.md:LINE.
# solution= names a patch relative to the lab's folder (made with `git diff`,
# applied from the repository root). The checker copies the tracked files of
# the working tree once into DIR/check-labs/src, configures that copy once
# (same build type and compiler as DIR), and for each such exercise applies
# the patch, builds only the targets, runs the block from the copy (its
# build/bin first on PATH, then DIR/bin for every other program), then
# reverts the patch.
# write=1 (it needs solution= and targets=) marks a write-it-yourself
# exercise, whose check (scripts/lab.sh's lab_check or lab_ctest) ends with a
# line "check: PASS" or "check: FAIL — what is missing". Two ways to run it:
#  - default (the student's run): the block runs on the working tree and its
#    own build, like any block, and must PASS; the observed column shows its
#    "check:" line. This is "does my code pass?".
#  - --answer-key (the maintainer's run, and the check_labs ctest): on a
#    pristine copy of the committed tree (`git archive HEAD`: uncommitted
#    changes are NOT seen; --answer-key-tree worktree copies the working
#    tree's files instead), the targets built WITHOUT the patch must FAIL the
#    block (the check detects the missing code), with the solution patch they
#    must PASS, and every wrong answer labs/NN-x/wrong/ex-NAME/*.patch (a
#    `Mistake: ...` sentence before its `diff --git`) must FAIL again; each
#    wrong answer gets a line of its own, with its Mistake sentence and the
#    check line it got. Fewer than two wrong answers: the exercise FAILS
#    ("weak exercise"). The line shows all three: "unpatched: FAIL as it must
#    (...); patched: ...; wrong answers: 2 of 2 fail".
# A block gets TMPDIR inside this script's scratch area, removed after it, so
# a block killed by its timeout leaves no /tmp/iolab-lab.* behind.
#
# A figure quoted in the prose is marked right after its number (or range):
#     the first byte comes back after about 35 ms<!-- figure: ID KEY -->
# It must lie inside exercise ID's `KEY in LO..HI` (converted between s, ms
# and us, or B, KiB and MiB, when the quoted unit and the unit in KEY's name
# differ). Each figure gets its own line after its exercise's, with the value
# that run observed; a marker with no number before it or a KEY the exercise
# does not predict fails there, one naming no exercise of any sheet fails
# before the first exercise runs. A number that is an input — a flag's
# value, a constant of the code — is marked as one instead:
#     each client sends 64 KiB<!-- input --> and waits
# Lint (a failure, reported before the first exercise runs, when no
# --exercise is given): a number with a unit (ms, µs/us, s, KiB, MiB, B, %,
# req/s) in the prose of a section (between two headings) whose exercise
# predicts `KEY in` for a KEY of that unit (…_ms, …_us, …_s, …_kib, …_mib,
# …_bytes, …_pct, …_rps), with neither marker. A "Why this range:" paragraph
# (bounds and observed spreads, not figures) is not linted.
#
# Prints one line per exercise — lab | exercise | predicted | observed | PASS/FAIL
# — and per figure, then `N passed, N failed` (exercises and figures); on a
# terminal, progress on stderr (lib.sh's `progress`, when it provides one).
# Exit 0 when none failed, 1 when some did or a selected sheet has a malformed
# block (unknown key, bad id or timeout, write=1 without solution= and
# targets=, no closing fence: reported before anything runs), 2 on bad usage,
# 3 when DIR/bin does not exist (build first).
#   --build-dir DIR   the build to test (default build/)
#   --lab NN          only the labs whose folder name starts with NN (repeatable)
#   --exercise ID     only the exercises named ID (repeatable)
#   --list            list the exercises, their predictions and the figures; run nothing
#   --labs-dir DIR    where the NN-*/LAB.md folders are (default labs/)
#   --scratch DIR     where to copy the tree for the patches (default DIR/check-labs)
#   --keep-scratch    leave the copy in place (it is removed at the end)
#   --answer-key      prove the write=1 exercises' answer key (see above)
#   --answer-key-tree head|worktree
#                     what --answer-key copies: the committed tree (default)
#                     or the working tree's tracked and untracked-unignored
#                     files, edits included (for a maintainer's uncommitted work)
#   --no-wrong-answers
#                     with --answer-key: prove the skeleton and the solution
#                     only (CI proves the wrong answers through grade.sh, in
#                     rounds: tests/scripts/test_grade/kit_proof.sh)
#   --index           print one tab-separated line per exercise (lab, id,
#                     timeout, solution, targets, write, points, replaces,
#                     LAB.md line; "-" when empty; points 1 when a write=1
#                     block names none)
#                     and run nothing: what scripts/grade.sh and
#                     scripts/handout.sh read
#   --lint            only the lint of the selected sheets: one FAIL line per
#                     unmarked number, exit 1 if there is one; runs nothing
#   --as-student      walk each selected sheet the way a student does
#                     (scripts/walk-sheet.py: every block, or each --exercise,
#                     pasted into one interactive bash under a pseudo-terminal)
#                     and fail if a block hangs, the shell dies, or something
#                     it started is still running or left in TMPDIR after it
#                     exits; the blocks' predictions are not checked
#   --hog CPU         keep CPU busy with a spinning process (pinned there with
#                     taskset) for the whole run, as a student's busy laptop
#                     would (repeatable: one hog per CPU named)
# Every exercise uses loopback only and ports from --port 0 (see scripts/lab.sh).
set -euo pipefail

. "$(dirname "$0")/lib.sh"

labs_dir="$ROOT/labs"
list_only=0
keep_scratch=0
lint_only=0
as_student=0
hog_cpus=()
scratch=""
lab_filters=()
exercise_filters=()
readonly BUILD_TIMEOUT=900

# ---- the options of the write-it kit (--answer-key, --index) --------------------
answer_key=0
answer_key_tree="head"
wrong_answers=1
index_only=0
KIT_SHIFT=0
kit_option() { # like lib_common_option: 0 and KIT_SHIFT when $1 is one of them
    case "$1" in
    --answer-key) answer_key=1; KIT_SHIFT=1 ;;
    --answer-key-tree)
        need_value "$@"
        [[ "$2" == head || "$2" == worktree ]] || usage_error "--answer-key-tree takes head or worktree, got '$2'"
        answer_key_tree="$2"; KIT_SHIFT=2 ;;
    --index) index_only=1; KIT_SHIFT=1 ;;
    --no-wrong-answers) wrong_answers=0; KIT_SHIFT=1 ;;
    *) return 1 ;;
    esac
}

while (($#)); do
    if lib_common_option "$@"; then shift "$LIB_SHIFT"; continue; fi
    if kit_option "$@"; then shift "$KIT_SHIFT"; continue; fi
    case "$1" in
    --lab) need_value "$@"; lab_filters+=("$2"); shift ;;
    --exercise) need_value "$@"; exercise_filters+=("$2"); shift ;;
    --labs-dir) need_value "$@"; labs_dir="$2"; shift ;;
    --scratch) need_value "$@"; scratch="$2"; shift ;;
    --list) list_only=1 ;;
    --keep-scratch) keep_scratch=1 ;;
    --lint) lint_only=1 ;;
    --as-student) as_student=1 ;;
    --hog)
        need_value "$@"
        [[ "$2" =~ ^[0-9]+$ ]] || usage_error "--hog takes a CPU number, got '$2'"
        hog_cpus+=("$2")
        shift
        ;;
    *) usage_error "unknown argument '$1' (--help)" ;;
    esac
    shift
done
build_dir="$BUILD_DIR"
[[ "$labs_dir" == /* ]] || labs_dir="$PWD/$labs_dir"
[[ -d "$labs_dir" ]] || usage_error "$labs_dir: no such directory"
if ((as_student)); then
    walk_sheets=()
    for sheet in "$labs_dir"/*/LAB.md; do
        lab="$(basename "$(dirname "$sheet")")"
        selected=1
        if ((${#lab_filters[@]})); then
            selected=0
            for f in "${lab_filters[@]}"; do [[ "$lab" == "$f"* ]] && selected=1; done
        fi
        ((selected)) && walk_sheets+=("$sheet")
    done
    ((${#walk_sheets[@]})) || usage_error "no sheet in $labs_dir matches --lab ${lab_filters[*]:-}"
    walk_args=(--build-dir "$BUILD_DIR")
    for f in "${exercise_filters[@]}"; do walk_args+=(--exercise "$f"); done
    walk_rc=0
    python3 "$ROOT/scripts/walk-sheet.py" "${walk_args[@]}" "${walk_sheets[@]}" || walk_rc=$?
    exit "$walk_rc"
fi

work="$(scratch_dir)"
[[ -n "$scratch" ]] || scratch="$build_dir/check-labs"
[[ "$scratch" == /* ]] || scratch="$PWD/$scratch"
scratch_made=0
remove_scratch() {
    if ((scratch_made && !keep_scratch)); then
        rm -rf "$scratch/src" "$scratch/configure.log"
        rmdir "$scratch" 2>/dev/null || true
    fi
}
at_exit remove_scratch

# ---- the copy of the tree that patches are applied to ------------------------------
# copy_tree: fill $scratch/src. With --answer-key (head): the committed tree,
# `git archive HEAD`, so a student's or maintainer's uncommitted edits never
# reach the answer key. Otherwise the working tree's tracked files and its
# untracked files that are not ignored, as they are now (edits included).
scratch_ready=0
scratch_broken=""
copy_tree() {
    rm -rf "$scratch/src"
    mkdir -p "$scratch/src"
    scratch_made=1
    if ((answer_key)) && [[ "$answer_key_tree" == head ]]; then
        echo "-- copying the committed tree (git archive HEAD) to $scratch/src" >&2
        if ! (cd "$ROOT" && git archive --format=tar HEAD) | tar -xf - -C "$scratch/src"; then
            scratch_broken="cannot copy the committed tree of $ROOT (git archive HEAD)"
            return 1
        fi
    else
        echo "-- copying the working tree's files to $scratch/src" >&2
        (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard |
            tar --null -T - --ignore-failed-read -cf - 2>/dev/null) |
            tar -xf - -C "$scratch/src"
    fi
    # A repository of its own, so that `git apply` patches paths from its
    # root (inside the parent repository it would skip them silently).
    git init -q "$scratch/src"
}
prepare_scratch() {
    ((scratch_ready)) && return 0
    [[ -n "$scratch_broken" ]] && return 1
    scratch_ready=1
    copy_tree
}
# The answer key reads the sheets, solutions and wrong answers of the committed
# tree too, when they lie inside the repository.
shown_labs_dir="$labs_dir"
if ((answer_key)) && [[ "$answer_key_tree" == head && "$labs_dir" == "$ROOT"/* ]] && ((!list_only && !index_only)); then
    prepare_scratch || die "$scratch_broken"
    rel="${labs_dir#"$ROOT"/}"
    [[ -d "$scratch/src/$rel" ]] || die "$rel is not in the committed tree (commit it, or --answer-key-tree worktree)"
    labs_dir="$scratch/src/$rel"
fi

# ---- 1. extract the exercise blocks ------------------------------------------
# One record per block in $work/index (fields separated by \037: lab, id, timeout,
# solution, targets, write, body file, LAB.md line, points, replaces), the body in
# $work/blocks/N.sh and its predictions (the ```expect fence that follows it,
# plus any inline "# expect:" line) in $work/blocks/N.expect.
extract_sheet() { # SHEET LAB FIRST_NUMBER: appends to $work/index
    awk -v lab="$2" -v dir="$work/blocks" -v start="$3" '
        function fail(msg) { printf "%s: %s:%d: %s\n", "check-labs", FILENAME, NR, msg > "/dev/stderr"; bad = 1 }
        function strip(s) { if (indent > 0 && substr(s, 1, indent) ~ /^[ \t]*$/) s = substr(s, indent + 1); return s }
        function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
        # After an exercise block: the next fence decides whether it has predictions.
        after && /^[ \t]*```/ {
            after = 0
            if ($0 ~ /^[ \t]*```expect[ \t]*$/) { in_expect = 1; next }
        }
        in_expect && /^[ \t]*```[ \t]*$/ { in_expect = 0; close(efile); next }
        in_expect { e = trim($0); if (e != "") print e > efile; next }
        !inside && /^[ \t]*```sh[ \t]+.*exercise=/ {
            match($0, /^[ \t]*/); indent = RLENGTH
            id = ""; timeout = 30; solution = ""; targets = ""; write = 0; points = ""; replaces = ""
            n = split(substr($0, indent + 6), kv, /[ \t]+/)
            for (i = 1; i <= n; i++) {
                if (kv[i] == "") continue
                eq = index(kv[i], "=")
                k = substr(kv[i], 1, eq - 1); v = substr(kv[i], eq + 1)
                if (k == "exercise") id = v
                else if (k == "timeout") timeout = v
                else if (k == "solution") solution = v
                else if (k == "targets") targets = v
                else if (k == "write") write = v
                else if (k == "points") points = v
                else if (k == "replaces") replaces = v
                else fail("unknown key \"" k "\" in the info string")
            }
            if (id !~ /^[A-Za-z0-9_.-]+$/) fail("bad exercise id \"" id "\"")
            if (timeout !~ /^[0-9]+$/ || timeout + 0 < 1 || timeout + 0 > 120) fail("timeout must be 1..120 seconds")
            if (id in seen) fail("exercise id \"" id "\" used twice")
            if (targets != "" && solution == "") fail("targets= without solution=")
            if (write != "0" && write != "1") fail("write= must be 0 or 1")
            if (points != "" && (points !~ /^[0-9]+$/ || write != "1")) fail("points= takes a whole number, on a write=1 exercise only")
            if (replaces != "" && write != "1") fail("replaces= is for a write=1 exercise only")
            if (write == "1" && (solution == "" || targets == ""))
                fail("exercise \"" id "\": write=1 needs solution= and targets= (the unpatched build must fail the check)")
            seen[id] = 1
            start++; file = dir "/" start ".sh"; efile = dir "/" start ".expect"; line = NR
            printf "" > file; printf "" > efile
            inside = 1; next
        }
        inside && /^[ \t]*```[ \t]*$/ {
            close(file); inside = 0; after = 1
            if (write == "1" && points == "") points = 1
            printf "%s\037%s\037%s\037%s\037%s\037%s\037%s\037%d\037%s\037%s\n", lab, id, timeout, solution, targets, write, file, line, points, replaces
            next
        }
        inside {
            body = strip($0)
            if (body ~ /^[ \t]*#[ \t]*expect:/) print NR > (dir "/" start ".inline")
            print body > file
        }
        END {
            if (inside) fail("exercise \"" id "\" has no closing fence")
            if (in_expect) fail("the expect fence after exercise \"" id "\" has no closing fence")
            exit bad
        }' "$1"
}
# ---- figures quoted in the prose (format B) and the lint ------------------------
# scan_figures SHEET LAB LINT: one record per <!-- figure: ID KEY --> marker on
# stdout (lab, LAB.md line, id, key, quoted low, quoted high, quoted text; low
# empty when no number precedes the marker). With LINT a file name, appends to
# it one record (lab, LAB.md line, quoted text, exercise, keys) per number
# with a unit (ms, µs/us, s, KiB, MiB, B, %, req/s) in the prose of a section
# (between headings) whose exercise predicts `KEY in LO..HI` for a KEY of that
# unit (latency_ms, rss_kib, cut_after_s, cpu_pct, epoll_rps, ...) when that
# number carries neither a figure marker nor <!-- input --> (a timeout, a
# sleep, a buffer size: a number the reader sets, not one a run measures).
scan_figures() {
    awk -v lab="$2" -v lint="$3" '
        function unit_of_key(key,   n, t, i, u) {
            if (index(key, "/")) return ""
            n = split(tolower(key), t, "_"); u = ""
            for (i = 1; i <= n; i++) {
                if (t[i] == "ms" || t[i] == "us" || t[i] == "kib" || t[i] == "mib" || t[i] == "pct" || t[i] == "rps") u = t[i]
                else if (t[i] == "s" && (i == 1 || t[i - 1] != "per")) u = "s"
                else if (t[i] == "bytes") u = "b"
            }
            return u
        }
        function canon(u) { u = tolower(u); if (u == "µs") return "us"; if (u == "%") return "pct"; if (u == "req/s") return "rps"; return u }
        function flush(   i, l, m, u) {
            for (i = 1; i <= np; i++) {
                l = prose[i]
                gsub(/`[^`]*`/, "", l)
                gsub(/[0-9][0-9,.]*([ \t]*(–|-)[ \t]*[0-9][0-9,.]*)?[ \t]*[^ \t0-9<>()]*<!-- *(figure:[^>]*|input *)-->/, "", l)
                gsub(/<!--[^>]*-->/, "", l)
                while (match(l, /(^|[^A-Za-z0-9_.])[0-9][0-9,]*(\.[0-9]+)?([ \t]*(–|-)[ \t]*[0-9][0-9,]*(\.[0-9]+)?)?[ \t]?(ms|µs|us|s|KiB|MiB|B|%|req\/s)([^A-Za-z0-9]|$)/)) {
                    m = substr(l, RSTART, RLENGTH); l = substr(l, RSTART + RLENGTH)
                    sub(/^[^0-9]/, "", m); sub(/[^A-Za-z%\/]$/, "", m)
                    match(m, /(ms|µs|us|s|KiB|MiB|B|%|req\/s)$/); u = canon(substr(m, RSTART))
                    if (u in sec_key)
                        printf "%s\037%d\037%s\037%s\037%s\n", lab, pline[i], m, sec_ex[u], sec_key[u] >> lint
                }
            }
            np = 0; split("", sec_key); split("", sec_ex)
        }
        function note_key(spec,   k, u) {
            if (!match(spec, /^[A-Za-z_][A-Za-z0-9_\/]*[ \t]+in[ \t]/)) return
            k = spec; sub(/[ \t].*$/, "", k)
            u = unit_of_key(k)
            if (u == "") return
            if (!(u in sec_key)) { sec_key[u] = k; sec_ex[u] = ex }
            else if (index("|" sec_key[u] "|", "|" k "|") == 0) sec_key[u] = sec_key[u] "|" k
        }
        function figures(line,   pre, inner, f, q, txt, t, lo, hi) {
            while (match(line, /<!-- *figure:[^>]*-->/)) {
                pre = substr(line, 1, RSTART - 1)
                inner = substr(line, RSTART, RLENGTH); line = substr(line, RSTART + RLENGTH)
                sub(/^<!-- *figure:[ \t]*/, "", inner); sub(/[ \t]*-->$/, "", inner)
                split(inner, f, /[ \t]+/)
                q = pre; sub(/[ \t]+$/, "", q); lo = ""; hi = ""; txt = ""
                if (match(q, /[0-9][0-9,.]*([ \t]*(–|-|to)[ \t]*[0-9][0-9,.]*)?[ \t]*[^ \t0-9<>()]*$/)) {
                    txt = substr(q, RSTART); t = txt
                    match(t, /^[0-9][0-9,.]*/); lo = substr(t, 1, RLENGTH); t = substr(t, RLENGTH + 1)
                    hi = lo
                    if (match(t, /[0-9][0-9,.]*/)) hi = substr(t, RSTART, RLENGTH)
                    gsub(/,/, "", lo); gsub(/,/, "", hi); sub(/\.$/, "", lo); sub(/\.$/, "", hi)
                }
                printf "%s\037%d\037%s\037%s\037%s\037%s\037%s\n", lab, NR, f[1], f[2], lo, hi, txt
            }
        }
        /^[ \t]*```/ {
            if (!fence) {
                fence = 1; expect = ($0 ~ /^[ \t]*```expect/)
                if (match($0, /exercise=[A-Za-z0-9_.-]+/)) ex = substr($0, RSTART + 9, RLENGTH - 9)
            } else fence = 0
            next
        }
        fence && expect { s = $0; sub(/^[ \t]+/, "", s); note_key(s); next }
        fence { if ($0 ~ /^[ \t]*#[ \t]*expect:/) { s = $0; sub(/^[ \t]*#[ \t]*expect:[ \t]*/, "", s); note_key(s) }; next }
        /^#+[ \t]/ { flush(); ex = ""; next }
        /^Why this range:/ { why = 1 }
        /^[ \t]*$/ { why = 0 }
        { figures($0); if (lint != "" && !why) { prose[++np] = $0; pline[np] = NR } }
        END { flush() }' "$1"
}

mkdir -p "$work/blocks"
: >"$work/index"
: >"$work/figures"
: >"$work/lint"
n=0
malformed=0
for sheet in "$labs_dir"/*/LAB.md; do
    [[ -f "$sheet" ]] || continue
    lab="$(basename "$(dirname "$sheet")")"
    # Every sheet is read (a figure may name another sheet's exercise), but
    # only the selected ones may stop the run or warn.
    selected=1
    if ((${#lab_filters[@]})); then
        selected=0
        for f in "${lab_filters[@]}"; do [[ "$lab" == "$f"* ]] && selected=1; done
    fi
    if ((selected)); then
        extract_sheet "$sheet" "$lab" "$n" >>"$work/index" || malformed=1
    else
        extract_sheet "$sheet" "$lab" "$n" >>"$work/index" 2>/dev/null || true
    fi
    lint_file=""
    ((selected)) && lint_file="$work/lint"
    scan_figures "$sheet" "$lab" "$lint_file" >>"$work/figures"
    n="$(wc -l <"$work/index")"
done
((malformed == 0)) || die "malformed exercise blocks (see above)"

# lint_lines: one verdict line (without its "| FAIL") per unmarked number.
lint_lines() {
    local llab lline ltxt lex lkeys
    while IFS=$'\037' read -r llab lline ltxt lex lkeys; do
        echo "$llab | lint LAB.md:$lline | predicted: a marker on '$ltxt' (exercise $lex measures $lkeys) | observed: none: mark it <!-- figure: $lex KEY --> (KEY one of $lkeys) or <!-- input --> (a flag's value, a constant of the code)"
    done <"$work/lint"
}
lint_failures() { # counted as failures of the run
    local l
    while IFS= read -r l; do record "$l" 1; done < <(lint_lines)
}
if ((lint_only)); then
    lint_lines | sed 's/$/ | FAIL/'
    echo "$(wc -l <"$work/lint") unmarked number(s)"
    [[ ! -s "$work/lint" ]]
    exit
fi

cp "$work/index" "$work/all-exercises"
if ((${#lab_filters[@]})); then
    for f in "$work/index" "$work/figures"; do
        awk -F '\037' -v labs="${lab_filters[*]}" '
            BEGIN { n = split(labs, a, " ") }
            { for (i = 1; i <= n; i++) if (index($1, a[i]) == 1) { print; next } }' "$f" >"$f.f"
        mv "$f.f" "$f"
    done
fi
if ((${#exercise_filters[@]})); then
    awk -F '\037' -v ids="${exercise_filters[*]}" 'BEGIN { split(ids, a, " "); for (i in a) want[a[i]] = 1 } $2 in want' \
        "$work/index" >"$work/index.f"
    mv "$work/index.f" "$work/index"
fi
if [[ ! -s "$work/index" ]]; then
    echo "$SCRIPT: no exercise found in $labs_dir/*/LAB.md (filters: ${lab_filters[*]:-} ${exercise_filters[*]:-})" >&2
    exit 2
fi

# The predictions of a block (body file $1), one per line.
expectations() {
    cat "${1%.sh}.expect"
}
joined_expectations() {
    local out=""
    while IFS= read -r e; do out+="${out:+; }$e"; done < <(expectations "$1")
    echo "${out:-(none)}"
}

if ((index_only)); then
    # "-" for an empty field: `read` with IFS=tab would merge two tabs.
    while IFS=$'\037' read -r lab id timeout solution targets write _ line points replaces; do
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$lab" "$id" "$timeout" "${solution:--}" "${targets:--}" \
            "$write" "${points:--}" "${replaces:--}" "$line"
    done <"$work/index"
    exit 0
fi

if ((list_only)); then
    while IFS=$'\037' read -r lab id timeout solution targets write file _ points replaces; do
        extra=""
        [[ -n "$solution" ]] && extra=" solution=$solution targets=$targets"
        ((write)) && extra+=" write=1"
        [[ -n "$points" ]] && extra+=" points=$points"
        [[ -n "$replaces" ]] && extra+=" replaces=$replaces"
        echo "$lab | $id | timeout=${timeout}s$extra | predicted: $(joined_expectations "$file")"
    done <"$work/index"
    while IFS=$'\037' read -r lab fline fid fkey _ _ ftxt; do
        echo "$lab | figure LAB.md:$fline | $fid $fkey | quoted: ${ftxt:-(no number)}"
    done <"$work/figures"
    exit 0
fi

if [[ ! -d "$build_dir/bin" ]]; then
    echo "$SCRIPT: not built: $build_dir/bin does not exist (cmake --preset default && cmake --build --preset default)" >&2
    exit 3
fi
for cpu in "${hog_cpus[@]}"; do
    # Stopped by pid at exit (lib.sh's register_pid).
    taskset -c "$cpu" bash -c 'while :; do :; done' </dev/null >/dev/null 2>&1 &
    register_pid "$!"
    echo "-- a CPU hog (pid $!) spins on CPU $cpu for the whole run" >&2
done

# ---- 2. checking one block's stdout against its predictions -------------------
# last_value FILE KEY: the number of the last line KEY=NUMBER, or nothing.
last_value() {
    awk -v key="$2" '
        index($0, key "=") == 1 {
            v = substr($0, length(key) + 2); sub(/[ \t].*$/, "", v)
            if (v ~ /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/) last = v
        }
        END { if (last != "") print last }' "$1"
}
# in_range VALUE LO HI: exit 0 when LO <= VALUE <= HI (floating point).
in_range() {
    awk -v v="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(v + 0 >= lo + 0 && v + 0 <= hi + 0) }'
}

# check_one SPEC STDOUT: prints what was observed; returns 0 when it holds.
check_one() {
    local spec="$1" out="$2" re key a b lo hi va vb ratio
    if [[ "$spec" =~ ^(!?)/(.*)/$ ]]; then
        # /re/: some line matches; !/re/: none does.
        local negate="${BASH_REMATCH[1]}" line
        re="${BASH_REMATCH[2]}"
        if line=$(grep -Em1 -- "$re" "$out"); then
            if [[ -n "$negate" ]]; then echo "a line matches: ${line:0:80}"; return 1; fi
            echo "matched: ${line:0:80}"
            return 0
        fi
        if [[ -n "$negate" ]]; then echo "no line matches"; return 0; fi
        echo "no line matches /$re/"
        return 1
    elif [[ "$spec" =~ ^([A-Za-z_][A-Za-z0-9_]*)/([A-Za-z_][A-Za-z0-9_]*)[[:space:]]+in[[:space:]]+(-?[0-9.]+)\.\.(-?[0-9.]+)$ ]]; then
        a="${BASH_REMATCH[1]}" b="${BASH_REMATCH[2]}" lo="${BASH_REMATCH[3]}" hi="${BASH_REMATCH[4]}"
        va="$(last_value "$out" "$a")" vb="$(last_value "$out" "$b")"
        if [[ -z "$va" || -z "$vb" ]]; then
            echo "no ${a}= or ${b}= line"
            return 1
        fi
        ratio="$(awk -v x="$va" -v y="$vb" 'BEGIN { if (y + 0 == 0) print "inf"; else printf "%.3g", x / y }')"
        echo "$a/$b=$ratio ($va/$vb)"
        [[ "$ratio" != inf ]] && in_range "$ratio" "$lo" "$hi"
        return
    elif [[ "$spec" =~ ^([A-Za-z_][A-Za-z0-9_]*)[[:space:]]+in[[:space:]]+(-?[0-9.]+)\.\.(-?[0-9.]+)$ ]]; then
        key="${BASH_REMATCH[1]}" lo="${BASH_REMATCH[2]}" hi="${BASH_REMATCH[3]}"
        va="$(last_value "$out" "$key")"
        if [[ -z "$va" ]]; then
            echo "no ${key}= line"
            return 1
        fi
        echo "$key=$va"
        in_range "$va" "$lo" "$hi"
        return
    fi
    echo "unreadable prediction '$spec'"
    return 1
}

# ---- 3. the scratch copy for solution patches ----------------------------------
# prepare_scratch (above) copies the tree once; configure_scratch configures it.
# Configured once, when the first patch with targets= needs a build.
configured=0
configure_scratch() {
    ((configured)) && return 0
    [[ -n "$scratch_broken" ]] && return 1
    configured=1
    echo "-- configuring $scratch/src/build (once per run)" >&2
    local cache="$build_dir/CMakeCache.txt" type="RelWithDebInfo" cxx="" cc="" args=()
    if [[ -f "$cache" ]]; then
        type="$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$cache")"
        cxx="$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$cache")"
        cc="$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$cache")"
        grep -q '^IOLAB_SANITIZE:BOOL=ON' "$cache" && args+=(-DIOLAB_SANITIZE=ON)
    fi
    [[ -n "$cxx" ]] && args+=("-DCMAKE_CXX_COMPILER=$cxx")
    [[ -n "$cc" ]] && args+=("-DCMAKE_C_COMPILER=$cc")
    if command -v ccache >/dev/null; then
        args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
        # Paths relative to a common parent let the copy hit the cache of the
        # main build: only the patched files really compile.
        export CCACHE_NOHASHDIR=1
        export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$(common_parent "$ROOT" "$scratch")}"
    fi
    if ! timeout "$BUILD_TIMEOUT" cmake -S "$scratch/src" -B "$scratch/src/build" -G Ninja \
        "-DCMAKE_BUILD_TYPE=${type:-RelWithDebInfo}" "${args[@]}" >"$scratch/configure.log" 2>&1; then
        scratch_broken="configure failed (see $scratch/configure.log)"
        keep_scratch=1
        return 1
    fi
}
common_parent() {
    local a="$1" b="$2"
    # "/" is every path's parent (a scratch under /tmp, the tree under /work).
    while [[ "$a" != / && "$b" != "$a" && "$b" != "$a"/* ]]; do a="$(dirname "$a")"; done
    echo "$a"
}

# ---- 4. run every exercise --------------------------------------------------------
# Each step appends what it saw to the array `observed` and returns non-zero
# when the exercise cannot pass.

# run_block FILE TIMEOUT DIR BUILD: run the block from DIR with BUILD/bin first
# on PATH (a patched run finds the patched targets there, every other program
# in the main build); check its exit status and its predictions.
run_block() {
    local file="$1" timeout="$2" dir="$3" build="$4" status=0 ok=0 spec o verdict tmp
    local seen=() unmet=()
    if [[ ! -s "${file%.sh}.expect" ]]; then
        observed+=("the block predicts nothing (no \`\`\`expect fence after it)")
        ok=1
    fi
    # TMPDIR inside this run's scratch area: lab.sh's temporary directory goes
    # with it even when the block is killed and its EXIT trap never runs.
    tmp="$(mktemp -d "$work/tmp.XXXXXX")"
    (cd "$dir" && PATH="$build_dir/bin:$PATH" IOLAB_BUILD_DIR="$build" TMPDIR="$tmp" \
        timeout --kill-after=5 "$timeout" bash "$file" </dev/null >"$work/out" 2>"$work/err") || status=$?
    rm -rf "$tmp"
    # A write-it check's verdict: the last "check:" line of its stdout.
    verdict=""
    ((write)) && verdict="$(grep -E '^check: ' "$work/out" | tail -n 1 || true)"
    if ((status == 124 || status == 137)); then
        if ((write)) && [[ -z "$verdict" ]]; then
            # lab_check/lab_ctest stop a hung check themselves and name the
            # likely cause; a block ended before they could has a step that
            # hangs outside them, or a timeout= shorter than theirs.
            observed+=("timed out after ${timeout}s with no check: line (a step outside lab_check hung, or timeout=${timeout} is shorter than the check's own --timeout)")
        else
            observed+=("timed out after ${timeout}s")
        fi
        ok=1
    elif ((status != 0)); then
        [[ "$verdict" == "check: FAIL"* ]] || observed+=("exit $status")
        ok=1
    fi
    while IFS= read -r spec; do
        if ! o="$(check_one "$spec" "$work/out")"; then
            unmet+=("$o")
            ok=1
        fi
        seen+=("$o")
    done < <(expectations "$file")
    if [[ "$verdict" == "check: FAIL"* ]]; then
        # The check's own line says what is missing; the unmet predictions
        # (/^check: PASS/ among them) would only repeat it.
        observed+=("$verdict")
    elif [[ -n "$verdict" ]]; then
        # The check passed: the predictions only when one is unmet.
        observed+=("$verdict" "${unmet[@]}")
    elif ((write && ${#unmet[@]})); then
        # A write-it block with no check line: what it missed, not all it saw.
        observed+=("${unmet[@]}")
    else
        observed+=("${seen[@]}")
    fi
    return "$ok"
}

# build_targets T1,T2: build them in the scratch copy (configured on first use).
build_targets() {
    local tlist=()
    IFS=',' read -r -a tlist <<<"$1"
    ((${#tlist[@]})) || return 0
    if ! configure_scratch; then
        observed+=("$scratch_broken")
        return 1
    fi
    if ! timeout "$BUILD_TIMEOUT" cmake --build "$scratch/src/build" --target "${tlist[@]}" \
        >"$work/build.log" 2>&1; then
        observed+=("build failed: $(grep -m1 -E 'error|Error' "$work/build.log" | cut -c1-120)")
        return 1
    fi
}

# run_unpatched FILE TIMEOUT TARGETS (write=1): the targets built without the
# solution must FAIL the block, or the check cannot tell missing code.
run_unpatched() {
    local saved=("${observed[@]}") inner
    observed=()
    echo "-- $lab/$id: building $3 without the solution (it must fail)" >&2
    if ! build_targets "$3"; then
        inner="${observed[*]}"
        observed=("${saved[@]}" "unpatched: ${inner} (the skeleton must compile)")
        return 1
    fi
    if run_block "$1" "$2" "$scratch/src" "$scratch/src/build"; then
        inner="$(joined observed)"
        observed=("${saved[@]}" "unpatched: PASS but must FAIL ($inner)")
        return 1
    fi
    inner="$(joined observed)"
    observed=("${saved[@]}" "unpatched: FAIL as it must ($inner)")
}
joined() { # NAME of an array: its elements joined with "; "
    local -n arr="$1"
    local out="" e
    for e in "${arr[@]}"; do out+="${out:+; }$e"; done
    echo "$out"
}

# run_patched FILE TIMEOUT PATCH TARGETS: apply, build, run, revert.
run_patched() {
    local file="$1" timeout="$2" patch="$3" targets="$4" ok=0
    if ! (cd "$scratch/src" && git apply "$patch") 2>"$work/apply.err"; then
        observed+=("patch does not apply: $(head -c 120 "$work/apply.err" | tr '\n' ' ')")
        return 1
    fi
    echo "-- $lab/$id: building ${targets:-nothing} with ${patch#"$labs_dir"/}" >&2
    if build_targets "$targets"; then
        run_block "$file" "$timeout" "$scratch/src" "$scratch/src/build" || ok=1
    else
        ok=1
    fi
    (cd "$scratch/src" && git apply -R "$patch") || die "cannot revert $patch in $scratch/src"
    return "$ok"
}

# mistake_of PATCH: the sentence before its first "diff --git", on one line.
mistake_of() {
    awk '/^diff --git/ { exit } { printf "%s ", $0 }' "$1" | sed -E 's/[[:space:]]+/ /g; s/^ //; s/ $//'
}

# run_wrong_answers FILE TIMEOUT TARGETS: every labs/NN-x/wrong/ex-NAME/*.patch
# must FAIL the block. Appends one verdict line per patch to `wrong_lines`
# (STATUS<TAB>LINE) and "wrong answers: K of N fail" to `observed`; returns
# non-zero when one passes or there are fewer than two.
run_wrong_answers() {
    local name wdir p mistake caught=0 count=0 ok=0 saved
    name="$(basename "$solution" .patch)"
    wdir="$labs_dir/$lab/wrong/$name"
    for p in "$wdir"/*.patch; do
        [[ -f "$p" ]] || continue
        count=$((count + 1))
        mistake="$(mistake_of "$p")"
        saved=("${observed[@]}")
        observed=()
        local st=0 what
        if [[ "$mistake" != Mistake:* ]]; then
            what="no 'Mistake: ...' sentence before its diff --git"
            st=1
        elif run_patched "$1" "$2" "$p" "$3"; then
            what="$(joined observed) — the check PASSES a wrong answer"
            st=1
        else
            what="$(joined observed)"
            caught=$((caught + 1))
        fi
        observed=("${saved[@]}")
        ((st == 0)) || ok=1
        wrong_lines+=("$st"$'\t'"$lab | $id wrong/$name/$(basename "$p") | predicted: FAIL (${mistake:-no Mistake sentence}) | observed: $what")
    done
    if ((count < 2)); then
        observed+=("weak exercise: $count wrong answer(s) in ${wdir#"$labs_dir"/}/, at least 2 needed")
        return 1
    fi
    observed+=("wrong answers: $caught of $count fail")
    return "$ok"
}

# run_student FILE TIMEOUT TARGETS (write=1, default mode): the block on the
# working tree and its build, the student's own code. A block that does not
# build its targets itself (lab_build) gets them built first.
run_student() {
    local tlist=()
    IFS=',' read -r -a tlist <<<"$3"
    if ! grep -qE '(^|[^A-Za-z_])lab_build[[:space:]]' "$1" && ((${#tlist[@]})); then
        if ! timeout "$BUILD_TIMEOUT" cmake --build "$build_dir" --target "${tlist[@]}" >"$work/build.log" 2>&1; then
            observed+=("check: FAIL — ${tlist[*]} does not compile: $(grep -m1 -E 'error' "$work/build.log" | cut -c1-120)")
            return 1
        fi
    fi
    run_block "$1" "$2" "$ROOT" "$build_dir"
}

# run_exercise: the fields of one index record are in the loop's variables.
run_exercise() {
    local inline="${file%.sh}.inline"
    if [[ -s "$inline" ]]; then
        observed+=("inline '# expect:' at $shown_labs_dir/$lab/LAB.md:$(head -n 1 "$inline"): move it into the \`\`\`expect fence after the block")
        return 1
    fi
    if [[ -z "$solution" ]]; then
        run_block "$file" "$timeout" "$ROOT" "$build_dir"
        return
    fi
    if ((write && !answer_key)); then
        run_student "$file" "$timeout" "$targets"
        return
    fi
    local patch="$labs_dir/$lab/$solution"
    if [[ ! -f "$patch" ]]; then
        observed+=("no patch $solution")
        return 1
    fi
    if ! prepare_scratch; then
        observed+=("$scratch_broken")
        return 1
    fi
    ((write)) || {
        run_patched "$file" "$timeout" "$patch" "$targets"
        return
    }
    run_unpatched "$file" "$timeout" "$targets" || return 1
    local first="${#observed[@]}" ok=0
    run_patched "$file" "$timeout" "$patch" "$targets" || ok=1
    observed[first]="patched: ${observed[first]:-}"
    ((ok == 0)) || return 1
    ((wrong_answers)) || return 0
    run_wrong_answers "$file" "$timeout" "$targets"
}

report_failure() { # the tail of the failed block's output, on stderr
    echo "   ($shown_labs_dir/$lab/LAB.md:$line) last lines of its stdout and stderr:" >&2
    tail -n 8 "$work/out" 2>/dev/null | sed 's/^/   out: /' >&2 || true
    tail -n 8 "$work/err" 2>/dev/null | sed 's/^/   err: /' >&2 || true
    if [[ -f "$work/build.log" ]]; then
        grep -m3 -E 'error' "$work/build.log" | sed 's/^/   build: /' >&2 || true
    fi
}

# ---- 5. figures quoted in the prose ----------------------------------------------
# scaled NUMBER FROM TO: NUMBER in unit FROM expressed in unit TO (s/ms/us,
# B/KiB/MiB; "" or another unit: unchanged).
scaled() {
    awk -v v="$1" -v from="$2" -v to="$3" 'BEGIN {
        f["s"] = 1e6; f["ms"] = 1e3; f["us"] = 1; f["µs"] = 1
        g["B"] = 1; g["KiB"] = 1024; g["MiB"] = 1048576
        if ((from in f) && (to in f)) v = v * f[from] / f[to]
        else if ((from in g) && (to in g)) v = v * g[from] / g[to]
        print v }'
}
key_unit() { # KEY: the unit its name carries (latency_ms -> ms), or nothing
    local t u=""
    IFS=_ read -r -a parts <<<"$1"
    for t in "${parts[@]}"; do
        case "$t" in ms | us) u="$t" ;; s) u=s ;; kib) u=KiB ;; mib) u=MiB ;; bytes) u=B ;; esac
    done
    echo "$u"
}
# check_figure LINE-FIELDS...: one verdict line for a figure of the exercise
# that just ran ($work/out holds its stdout).
check_figure() {
    local fline="$1" fid="$2" fkey="$3" lo="$4" hi="$5" txt="$6" expect="$7" spec="" o="" ok=1 unit qlo qhi
    [[ -f "$expect" ]] && spec="$(awk -v k="$fkey" '$1 == k && $2 == "in"' "$expect" | head -n 1)"
    if [[ -z "$lo" ]]; then
        o="no number right before the marker"
    elif [[ -z "$spec" ]]; then
        o="exercise $fid predicts no '$fkey in LO..HI'"
    else
        o="$(check_one "$spec" "$work/out")" || true
        unit="${txt##*[0-9]}"
        unit="${unit#"${unit%%[! ]*}"}"
        qlo="$(scaled "$lo" "$unit" "$(key_unit "$fkey")")"
        qhi="$(scaled "$hi" "$unit" "$(key_unit "$fkey")")"
        read -r _ _ range <<<"$spec"
        if in_range "$qlo" "${range%%..*}" "${range##*..}" && in_range "$qhi" "${range%%..*}" "${range##*..}"; then
            ok=0
        else
            o="quoted figure outside $spec; $o"
        fi
    fi
    record "$lab | figure LAB.md:$fline $fid $fkey | predicted: '$txt' within ${spec:-?} | observed: $o" "$ok"
}
figures_of() { # ID: check the figures quoting exercise ID
    local flab fline fid fkey lo hi txt
    while IFS=$'\037' read -r flab fline fid fkey lo hi txt; do
        [[ "$fid" == "$1" ]] || continue
        lab="$flab" check_figure "$fline" "$fid" "$fkey" "$lo" "$hi" "$txt" "${file%.sh}.expect"
    done <"$work/figures"
}
unknown_figures() { # figures naming no exercise of any sheet
    local flab fline fid fkey txt
    while IFS=$'\037' read -r flab fline fid fkey _ _ txt; do
        if ! awk -F '\037' -v id="$fid" '$2 == id { found = 1 } END { exit !found }' "$work/all-exercises"; then
            lab="$flab" record "$flab | figure LAB.md:$fline $fid $fkey | predicted: '$txt' | observed: no exercise $fid" 1
        fi
    done <"$work/figures"
}
record() { # LINE STATUS: print the verdict line, count it
    if (($2 == 0)); then
        passed=$((passed + 1))
        echo "$1 | PASS"
    else
        failed=$((failed + 1))
        echo "$1 | FAIL"
    fi
}

show_progress() { # I N WHAT: format D, once lib.sh provides it
    if declare -F progress >/dev/null; then progress "$@"; fi
}

passed=0
failed=0
total="$(wc -l <"$work/index")"
done_count=0
((${#exercise_filters[@]})) || { unknown_figures; lint_failures; }
while IFS=$'\037' read -r lab id timeout solution targets write file line points replaces <&3; do
    done_count=$((done_count + 1))
    show_progress "$done_count" "$total" "$lab/$id"
    observed=()
    wrong_lines=()
    status=0
    run_exercise || status=1
    record "$lab | $id | predicted: $(joined_expectations "$file") | observed: $(joined observed)" "$status"
    ((status == 0)) || report_failure
    for w in "${wrong_lines[@]}"; do
        record "${w#*$'\t'}" "${w%%$'\t'*}"
    done
    figures_of "$id"
    rm -f "$work/out" "$work/err" "$work/build.log"
done 3<"$work/index"
if declare -F progress_done >/dev/null; then progress_done; fi

echo "$passed passed, $failed failed"
((failed == 0))
