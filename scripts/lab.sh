# shellcheck shell=bash
# scripts/lab.sh — helpers for the exercise blocks of labs/*/LAB.md.
#
# Source it from the repository root, first line of every exercise:
#     . scripts/lab.sh
# It puts ${IOLAB_BUILD_DIR:-build}/bin first on PATH and defines:
#   serve NAME [ARGS...]        start server NAME in the background (with --port 0
#                               unless ARGS has --port), wait for its first line
#                               "listening on HOST:PORT" (10 s at most), then set
#                               PORT, SERVER_PID, SERVER_OUT (its stdout file) and
#                               SERVER_ERR (its stderr file: the -v log)
#   spawn CMD [ARGS...]         run any command in the background, stopped at exit;
#                               sets SPAWN_PID (stdin: the caller's, so
#                               `spawn nc HOST PORT < <(echo hi; sleep 5)` works)
#   stop [PID]                  SIGTERM (default: $SERVER_PID), wait up to 10 s,
#                               then SIGKILL; returns the process's exit status
#   wait_for_line FILE REGEX SECONDS
#                               wait until a line of FILE matches the extended
#                               REGEX; returns 1 after SECONDS
#   established [PORT]          how many ESTABLISHED connections have local port
#                               PORT (default $PORT): the server's side of each
#   wait_for_conns N [SECONDS]  wait until `established` reaches N (default 10 s)
#   cpu_ticks PID               utime + stime of PID in clock ticks (1/100 s)
#   json_get FILE KEY[.KEY...]  print one value of a JSON file (loadgen --json,
#                               http-testd's /stats), e.g. json_get r.json latency_us.p50
# For the write-it-yourself exercises (your code, checked on your own build):
#   lab_build TARGET...         build the targets in the lab's build directory;
#                               on a compile error print its first lines and
#                               "check: FAIL — TARGET does not compile", return 1
#   lab_check [--timeout S] [--hang WHY] -- CMD [ARGS...]
#                               run a check program (its stdout passes through)
#                               and end with one verdict line: the program's
#                               own last "check: ..." line, or "check: FAIL —
#                               CMD exited N" when it printed none, or "check:
#                               FAIL — no answer after S s (likely: WHY)" when
#                               it had to be stopped (default 30 s); returns 0
#                               only on "check: PASS..."
#   lab_ctest LABEL [--timeout S] [--hang WHY]
#                               run the ctest tests labelled LABEL (the same
#                               integration tests the reference passes, run on
#                               your program): one line per test, the failed
#                               assertions, then "check: PASS — N of N tests
#                               pass" or "check: FAIL — K of N tests fail: ..."
# Everything started by serve or spawn is stopped, by its pid, when the shell
# that sourced this file exits; the temporary files go with it. Sourcing it
# again in the same shell (the next block pasted) keeps both lists, so the
# exit still stops what every block started.
# Nothing here sets `set -e`: pasted into an interactive shell, a failing
# command must not close the terminal. For the same reason this file does not
# source scripts/lib.sh (which is for scripts: it traps Ctrl-C to exit).

LAB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LAB_BUILD="${IOLAB_BUILD_DIR:-build}"
[[ "$LAB_BUILD" == /* ]] || LAB_BUILD="$LAB_ROOT/$LAB_BUILD"
if [[ ! -d "$LAB_BUILD/bin" ]]; then
    echo "lab.sh: $LAB_BUILD/bin does not exist: build first" \
        "(cmake --preset default && cmake --build --preset default)" >&2
fi
PATH="$LAB_BUILD/bin:$PATH"
export PATH
# Sourced again by the next block pasted into the same shell: keep the list of
# what earlier blocks started and their temporary directory, so that the EXIT
# trap below still stops all of it (a subshell, whose $BASHPID differs, gets
# its own). Processes that have ended leave the list.
if [[ "${LAB_SHELL:-}" == "$BASHPID" && -d "${LAB_TMP:-}" ]]; then
    lab_alive=()
    for lab_pid in "${LAB_PIDS[@]}"; do
        kill -0 "$lab_pid" 2>/dev/null && lab_alive+=("$lab_pid")
    done
    LAB_PIDS=("${lab_alive[@]}")
    unset lab_alive lab_pid
else
    LAB_SHELL="$BASHPID"
    LAB_TMP="$(mktemp -d "${TMPDIR:-/tmp}/iolab-lab.XXXXXX")"
    LAB_PIDS=()
fi

lab_cleanup() {
    local pid
    for pid in "${LAB_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${LAB_PIDS[@]}"; do
        # Give each up to 2 s to exit on SIGTERM, then SIGKILL it.
        local i
        for ((i = 0; i < 40; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$LAB_TMP"
}
trap lab_cleanup EXIT

serve() {
    local name="$1"
    shift
    local args=("$@") a has_port=0
    for a in "${args[@]}"; do
        [[ "$a" == --port || "$a" == --port=* ]] && has_port=1
    done
    ((has_port)) || args=(--port 0 "${args[@]}")
    SERVER_OUT="$(mktemp "$LAB_TMP/$name.out.XXXXXX")"
    SERVER_ERR="${SERVER_OUT%.out.*}.err.${SERVER_OUT##*.out.}"
    "$name" "${args[@]}" >"$SERVER_OUT" 2>"$SERVER_ERR" &
    SERVER_PID=$!
    LAB_PIDS+=("$SERVER_PID")
    PORT=""
    if ! wait_for_line "$SERVER_OUT" '^listening on ' 10; then
        echo "lab.sh: $name did not print 'listening on HOST:PORT' within 10 s; its stderr:" >&2
        cat "$SERVER_ERR" >&2
        return 1
    fi
    local line
    line="$(head -n 1 "$SERVER_OUT")"
    PORT="${line##*:}"
    export PORT SERVER_PID SERVER_OUT SERVER_ERR
}

spawn() {
    # "<&0": a background command of a non-interactive shell would otherwise
    # read /dev/null instead of the caller's redirection (spawn CMD < FILE).
    "$@" <&0 &
    SPAWN_PID=$!
    LAB_PIDS+=("$SPAWN_PID")
}

stop() {
    local pid="${1:-$SERVER_PID}" i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 200; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    local status=0
    wait "$pid" 2>/dev/null || status=$?
    return "$status"
}

wait_for_line() {
    local file="$1" regex="$2" seconds="$3" i
    for ((i = 0; i < seconds * 20; i++)); do
        grep -Eq -- "$regex" "$file" 2>/dev/null && return 0
        sleep 0.05
    done
    grep -Eq -- "$regex" "$file" 2>/dev/null
}

cpu_ticks() {
    # Fields 14 and 15 of /proc/PID/stat; the command name (field 2) may hold
    # spaces, so count from the closing parenthesis.
    local stat
    stat="$(cat "/proc/$1/stat")" || return 1
    stat="${stat##*) }"
    # shellcheck disable=SC2086 # split into fields on purpose
    set -- $stat
    echo $((${12} + ${13}))
}

json_get() {
    python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v[int(k)] if isinstance(v, list) else v[k]
print(v)
' "$1" "$2"
}

established() {
    ss -Htn state established "( sport = :${1:-$PORT} )" | wc -l
}

wait_for_conns() {
    local want="$1" deadline=$((SECONDS + ${2:-10}))
    while ((SECONDS < deadline)); do
        (($(established "$PORT") >= want)) && return 0
        sleep 0.1
    done
    (($(established "$PORT") >= want))
}

lab_build() {
    local log
    log="$(mktemp "$LAB_TMP/build.XXXXXX")"
    if cmake --build "$LAB_BUILD" --target "$@" >"$log" 2>&1; then
        return 0
    fi
    grep -E -m 12 'error|Error' "$log" | sed 's/^/  /'
    echo "check: FAIL — $* does not compile (the whole log: cmake --build $LAB_BUILD --target $*)"
    return 1
}

# The verdict of a check's output file: its last "check:" line.
lab_verdict_of() {
    grep -E '^check: ' "$1" | tail -n 1
}

lab_check() {
    local timeout=30 hang="" status=0 out verdict
    while (($#)); do
        case "$1" in
        --timeout) timeout="$2"; shift 2 ;;
        --hang) hang="$2"; shift 2 ;;
        --) shift; break ;;
        *) break ;;
        esac
    done
    out="$(mktemp "$LAB_TMP/check.XXXXXX")"
    # The program's verdict lines are held back and printed once, last.
    timeout --kill-after=2 "$timeout" "$@" >"$out" </dev/null || status=$?
    grep -Ev '^check: ' "$out"
    if ((status == 124 || status == 137)); then
        echo "check: FAIL — no answer after ${timeout} s${hang:+ (likely: $hang)}"
        return 1
    fi
    verdict="$(lab_verdict_of "$out")"
    if [[ -z "$verdict" ]]; then
        if ((status == 0)); then
            echo "check: FAIL — $1 printed no verdict"
        else
            echo "check: FAIL — $1 exited $status"
        fi
        return 1
    fi
    echo "$verdict"
    [[ "$verdict" == "check: PASS"* ]]
}

lab_ctest() {
    local label="$1" timeout=60 hang="" log total failed names line
    shift
    while (($#)); do
        case "$1" in
        --timeout) timeout="$2"; shift 2 ;;
        --hang) hang="$2"; shift 2 ;;
        *) echo "lab_ctest: unknown argument '$1'" >&2; return 2 ;;
        esac
    done
    log="$(mktemp "$LAB_TMP/ctest.XXXXXX")"
    ctest --test-dir "$LAB_BUILD" -L "^${label}\$" --timeout "$timeout" --output-on-failure >"$log" 2>&1
    # "  3/12 Test  #57: echo-epoll: ... .....   Passed    0.21 sec"
    total="$(grep -cE '^ *[0-9]+/[0-9]+ Test +#' "$log")"
    if ((total == 0)); then
        echo "check: FAIL — no test is labelled $label in $LAB_BUILD (lab_build its test target first)"
        return 1
    fi
    grep -E '^ *[0-9]+/[0-9]+ Test +#' "$log" | sed -E 's/^ *[0-9]+\/[0-9]+ Test +#[0-9]+: /  /; s/ \.{3,}/ /; s/ +[0-9.]+ sec$//'
    # Catch2's report of each failed assertion, a few lines each, 30 at most.
    grep -E -A3 'FAILED:|failed$|REQUIRE|CHECK\(' "$log" | grep -vE '^--$' | head -n 30 | sed 's/^/    /'
    failed="$(grep -E '^ *[0-9]+/[0-9]+ Test +#' "$log" | grep -cvE ' Passed ')"
    if ((failed == 0)); then
        echo "check: PASS — $total of $total tests pass"
        return 0
    fi
    names=""
    while IFS= read -r line; do
        line="$(sed -E 's/^ *[0-9]+\/[0-9]+ Test +#[0-9]+: //; s/ \.{3,}.*$//; s/ +\*+(Failed|Timeout|Exception).*$//' <<<"$line")"
        names+="${names:+; }$line"
    done < <(grep -E '^ *[0-9]+/[0-9]+ Test +#' "$log" | grep -vE ' Passed ')
    if grep -qE '^ *[0-9]+/[0-9]+ Test +#.*\*+Timeout' "$log"; then
        echo "check: FAIL — $failed of $total tests fail: $names (a test hung${hang:+; likely: $hang})"
    else
        echo "check: FAIL — $failed of $total tests fail: $names"
    fi
    return 1
}
