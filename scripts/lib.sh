# shellcheck shell=bash
# shellcheck disable=SC2034 # LIB_SHIFT, SERVER_* and friends are read by the sourcing script
# lib.sh — what every script under scripts/ shares. Sourced, never run:
#
#   . "$(dirname "$0")/lib.sh"
#
# It gives a script its name and the repository root, the one spelling of the
# build directory option, usage and error exits with fixed codes, and a way to
# start and stop servers and helpers by pid with everything cleaned up at exit.
#
# Variables
#   SCRIPT      the script's name without .sh, used in every message
#   ROOT        the repository root (absolute)
#   BUILD_DIR   $ROOT/build unless --build-dir DIR was given (absolute)
#
# Exit codes shared by every script
#   0 done   1 failed (die)   2 usage error (usage_error)   3 not built (require_bin)
#   4 this machine cannot run it (cannot_run: not root, a tool or kernel feature missing)
#
# Functions
#   usage                     print the script's header comment (its --help)
#   lib_common_option "$@"    handle -h/--help and --build-dir DIR; sets LIB_SHIFT
#   need_value "$@"           usage error unless option $1 has a value in $2
#   check_uint NAME VALUE     usage error unless VALUE is a whole number
#   die MSG / usage_error MSG / cannot_run MSG
#   require_bin NAME...       exit 3 naming the build command unless all are built
#   require_cmd CMD PACKAGE   exit 4 naming the Debian package unless CMD exists
#   spawn [--cpu N] [--out F] [--err F] CMD...
#                             start CMD in the background, SPAWN_PID, stopped at exit
#   start_server [--cpu N] NAME ARGS...
#                             start $BUILD_DIR/bin/NAME (or a path), wait for its
#                             "listening on HOST:PORT" line; sets SERVER_PID,
#                             SERVER_HOST, SERVER_PORT, SERVER_ADDR (HOST:PORT as
#                             printed), SERVER_OUT, SERVER_ERR (its output files)
#   stop_server PID           SIGTERM, up to STOP_TIMEOUT (10) s, then SIGKILL;
#                             returns the process's exit status (use `|| rc=$?`)
#   register_pid PID / unregister_pid PID
#   scratch_dir               print a new temporary directory, removed at exit
#   at_exit 'COMMAND'         run COMMAND at exit (last registered runs first)
#   pin CPU CMD...            run CMD on CPU with taskset when available
#   wait_for_line FILE REGEX SECONDS [PID]
#   rss_kb PID                resident set of PID in KiB (0 when gone)
#   progress I N "what"       show "[I/N] what (elapsed Ns)" on stderr, rewriting
#                             one line; only when stderr is a terminal and
#                             IOLAB_PROGRESS is not 0 (elapsed: since the script
#                             started)
#   progress_done             end the progress line (no-op when none is shown)
#   progress_clear            erase the progress line before printing an ordinary
#                             line (the next progress call draws it again)
#
# At exit (normal, die, Ctrl-C or SIGTERM) every registered pid still running
# gets SIGTERM, then SIGKILL after 5 s; then the at_exit commands run; then the
# scratch directories are removed. A script sets no EXIT trap of its own.

if [[ -n "${IOLAB_LIB_LOADED:-}" ]]; then
  return 0
fi
IOLAB_LIB_LOADED=1

SCRIPT=$(basename -- "$0" .sh)
LIB_SCRIPT_PATH=$0
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR="$ROOT/build"
STOP_TIMEOUT=${STOP_TIMEOUT:-10}
LIB_SHIFT=0
LIB_PIDS=()
LIB_EXIT_CMDS=()
LIB_TMP=$(mktemp -d "/tmp/iolab-$SCRIPT.XXXXXX")
LIB_START_S=$EPOCHSECONDS
LIB_PROGRESS_SHOWN=0

# ---- messages and exits ------------------------------------------------------

usage() {
  # The comment lines right after the shebang, up to the first line that is not
  # a comment; "# " is taken off, shellcheck directives are left out.
  awk 'NR == 1 && /^#!/ { next }
       /^#/ { if ($0 ~ /^# *shellcheck /) next; sub(/^# ?/, ""); print; next }
       { exit }' "$LIB_SCRIPT_PATH"
}

die() {
  progress_done
  echo "$SCRIPT: $*" >&2
  exit 1
}

usage_error() {
  progress_done
  echo "$SCRIPT: $*" >&2
  exit 2
}

cannot_run() {
  progress_done
  echo "$SCRIPT: $*" >&2
  exit 4
}

# ---- options -----------------------------------------------------------------

# Handles the options every script shares. Returns 0 and sets LIB_SHIFT to the
# number of words used when $1 is one of them, 1 otherwise:
#   while (($#)); do
#     if lib_common_option "$@"; then shift "$LIB_SHIFT"; continue; fi
#     case "$1" in ... *) usage_error "unknown option '$1'" ;; esac
#   done
lib_common_option() {
  case "${1-}" in
    -h | --help)
      usage
      exit 0
      ;;
    --build-dir)
      need_value "$@"
      BUILD_DIR=$2
      [[ "$BUILD_DIR" == /* ]] || BUILD_DIR="$PWD/$BUILD_DIR"
      LIB_SHIFT=2
      return 0
      ;;
  esac
  return 1
}

need_value() {
  [[ $# -ge 2 && -n "$2" ]] || usage_error "$1 needs a value"
}

check_uint() {
  [[ "$2" =~ ^[0-9]+$ ]] || usage_error "$1 must be a whole number, got '$2'"
}

# ---- what must be there ------------------------------------------------------

require_bin() {
  local missing=() name
  for name in "$@"; do
    [[ -x "$BUILD_DIR/bin/$name" ]] || missing+=("$name")
  done
  ((${#missing[@]} == 0)) && return 0
  local how="cmake --build $BUILD_DIR --target ${missing[*]}"
  [[ -f "$BUILD_DIR/CMakeCache.txt" ]] || how="cmake --preset default -B $BUILD_DIR && $how"
  echo "$SCRIPT: not built: ${missing[*]} in $BUILD_DIR/bin ($how)" >&2
  exit 3
}

require_cmd() {
  command -v "$1" >/dev/null 2>&1 || cannot_run "$1 is not installed (apt-get install $2)"
}

# ---- processes ---------------------------------------------------------------

register_pid() {
  LIB_PIDS+=("$1")
}

unregister_pid() {
  local kept=() p
  for p in "${LIB_PIDS[@]}"; do
    [[ "$p" == "$1" ]] || kept+=("$p")
  done
  LIB_PIDS=("${kept[@]}")
}

# True while PID exists and has not exited (an exited child not yet reaped
# is a zombie: kill -0 still succeeds on it).
lib_alive() {
  kill -0 "$1" 2>/dev/null || return 1
  local state
  state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ "$state" != Z ]]
}

# Starts CMD in the background with its output in files (default: the
# scratch area), pinned to a CPU when asked. The shell forks and the child
# execs CMD (taskset execs in turn), so SPAWN_PID is CMD's own pid.
spawn() {
  local cpu="" out=/dev/null err=/dev/null
  while (($#)); do
    case "$1" in
      --cpu) cpu=$2; shift 2 ;;
      --out) out=$2; shift 2 ;;
      --err) err=$2; shift 2 ;;
      *) break ;;
    esac
  done
  if [[ -n "$cpu" ]] && command -v taskset >/dev/null 2>&1; then
    taskset -c "$cpu" "$@" >"$out" 2>"$err" &
  else
    "$@" >"$out" 2>"$err" &
  fi
  SPAWN_PID=$!
  register_pid "$SPAWN_PID"
}

wait_for_line() {
  local file=$1 regex=$2 seconds=$3 pid=${4-} i
  for ((i = 0; i < seconds * 20; i++)); do
    grep -Eq -- "$regex" "$file" 2>/dev/null && return 0
    if [[ -n "$pid" ]] && ! lib_alive "$pid"; then
      grep -Eq -- "$regex" "$file" 2>/dev/null && return 0
      return 1
    fi
    sleep 0.05
  done
  return 1
}

LIB_SERVERS=0
start_server() {
  local on_cpu=()
  if [[ "${1-}" == --cpu ]]; then
    on_cpu=(--cpu "$2")
    shift 2
  fi
  local name=$1
  shift
  local bin="$BUILD_DIR/bin/$name"
  [[ "$name" == */* ]] && bin=$name
  [[ -x "$bin" ]] || require_bin "$name"
  LIB_SERVERS=$((LIB_SERVERS + 1))
  SERVER_OUT="$LIB_TMP/server-$LIB_SERVERS.out"
  SERVER_ERR="$LIB_TMP/server-$LIB_SERVERS.err"
  spawn "${on_cpu[@]}" --out "$SERVER_OUT" --err "$SERVER_ERR" "$bin" "$@"
  SERVER_PID=$SPAWN_PID
  if ! wait_for_line "$SERVER_OUT" '^listening on .+:[0-9]+$' "${START_TIMEOUT:-10}" "$SERVER_PID"; then
    echo "$SCRIPT: $(basename "$bin") did not print 'listening on HOST:PORT' within ${START_TIMEOUT:-10} s:" >&2
    tail -n 5 "$SERVER_ERR" "$SERVER_OUT" >&2 2>/dev/null || true
    exit 1
  fi
  SERVER_ADDR=$(sed -n '1s/^listening on //p' "$SERVER_OUT")
  SERVER_PORT=${SERVER_ADDR##*:}
  SERVER_HOST=${SERVER_ADDR%:*}
  SERVER_HOST=${SERVER_HOST#[}
  SERVER_HOST=${SERVER_HOST%]}
}

# SIGTERM, then up to STOP_TIMEOUT seconds, then SIGKILL. Returns the exit
# status (143 = killed by SIGTERM without handling it, 137 = SIGKILL).
stop_server() {
  local pid=$1 i rc=0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT * 20; i++)); do
    lib_alive "$pid" || break
    sleep 0.05
  done
  if lib_alive "$pid"; then
    echo "$SCRIPT: pid $pid did not stop within $STOP_TIMEOUT s of SIGTERM: SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || rc=$?
  unregister_pid "$pid"
  return "$rc"
}

pin() {
  local cpu=$1
  shift
  if command -v taskset >/dev/null 2>&1; then
    taskset -c "$cpu" "$@"
  else
    "$@"
  fi
}

rss_kb() {
  awk '/^VmRSS:/ { print $2; found = 1 } END { if (!found) print 0 }' "/proc/$1/status" 2>/dev/null || echo 0
}

# in_turn I ITEM...: the order of run I (1, 2, ...) of a benchmark whose
# tools or servers take turns, one per line: rotated by one every second
# run, and every even run the other way round. So the first place moves
# from run to run, and no item always runs right after the same neighbour
# (a rotation alone keeps each item behind the same one).
in_turn() {
  local i=$1 k
  shift
  local items=("$@") order=()
  local n=${#items[@]}
  for ((k = 0; k < n; k++)); do order+=("${items[$(((k + (i - 1) / 2) % n))]}"); done
  if ((i % 2 == 0)); then
    for ((k = n - 1; k >= 0; k--)); do printf '%s\n' "${order[$k]}"; done
  else
    printf '%s\n' "${order[@]}"
  fi
}

# ---- progress on stderr (format D) -------------------------------------------

# progress I N "what": step I of N has begun. The line is rewritten in place
# (carriage return, clear to end of line), so a terminal shows one line that
# moves on; nothing at all is written when stderr is not a terminal (a log, a
# pipe, ctest) or when IOLAB_PROGRESS=0.
progress() {
  [[ "${IOLAB_PROGRESS:-1}" != 0 && -t 2 ]] || return 0
  printf '\r\033[K[%s/%s] %s (elapsed %ss)' "$1" "$2" "$3" "$((EPOCHSECONDS - LIB_START_S))" >&2
  LIB_PROGRESS_SHOWN=1
}

# Ends the progress line so that what follows starts on a line of its own.
progress_done() {
  ((LIB_PROGRESS_SHOWN)) || return 0
  printf '\n' >&2
  LIB_PROGRESS_SHOWN=0
}

# Erases the progress line, cursor at its start, so that a line printed next
# (on stdout or stderr) does not run into it; the next progress call redraws.
progress_clear() {
  ((LIB_PROGRESS_SHOWN)) || return 0
  printf '\r\033[K' >&2
  LIB_PROGRESS_SHOWN=0
}

# ---- scratch space and exit --------------------------------------------------

# A fresh directory inside this run's temporary area, which goes at exit;
# works inside $(...) too, since nothing needs registering.
scratch_dir() {
  mktemp -d "$LIB_TMP/scratch.XXXXXX"
}

at_exit() {
  LIB_EXIT_CMDS+=("$1")
}

lib_cleanup() {
  local rc=$? p i alive
  trap - EXIT INT TERM
  set +e # clean up as much as possible, whatever fails
  progress_done
  if ((${#LIB_PIDS[@]})); then
    for p in "${LIB_PIDS[@]}"; do
      lib_alive "$p" && kill -TERM "$p" 2>/dev/null
    done
    for ((i = 0; i < 100; i++)); do
      alive=0
      for p in "${LIB_PIDS[@]}"; do
        lib_alive "$p" && alive=1
      done
      ((alive)) || break
      sleep 0.05
    done
    for p in "${LIB_PIDS[@]}"; do
      lib_alive "$p" && kill -KILL "$p" 2>/dev/null
      wait "$p" 2>/dev/null
    done
  fi
  for ((i = ${#LIB_EXIT_CMDS[@]} - 1; i >= 0; i--)); do
    eval "${LIB_EXIT_CMDS[i]}" || echo "$SCRIPT: at exit: '${LIB_EXIT_CMDS[i]}' failed" >&2
  done
  rm -rf "$LIB_TMP"
  exit "$rc"
}

trap lib_cleanup EXIT
# Ctrl-C and SIGTERM end the script through the EXIT trap (128 + signal).
trap 'exit 130' INT
trap 'exit 143' TERM
