# shellcheck shell=bash
# scale.sh — what scripts/c100k.sh and scripts/c1m.sh share, sourced after
# lib.sh. Sourced, never run:
#
#   . "$(dirname "$0")/lib.sh"
#   . "$(dirname "$0")/scale.sh"
#
# Functions
#   sysctl_get KEY            the value of KEY (several fields: one space apart)
#   sysctl_writable KEY       true when this process may write KEY
#   sysctl_set KEY VALUE WHY  set KEY to VALUE for this run, old value put back
#                             at exit (lib.sh at_exit: normal end, die, Ctrl-C,
#                             SIGTERM); prints one line naming WHY
#   raise_sysctl KEY MIN [WHY]
#                             sysctl_set KEY MIN when KEY is below MIN; only as
#                             root (silently nothing otherwise)
#   tcpext                    "ListenOverflows TCPTimeouts" from /proc/net/netstat
#   finish_by PID DEADLINE WHAT
#                             let PID run until it exits or $SECONDS reaches
#                             DEADLINE, then stop it (lib.sh stop_server: SIGTERM,
#                             then SIGKILL); returns its exit status
#   start_sampler OUT SECONDS SERVER_PIDS PIDFILE
#                             scale-sample.py in the background (SAMPLER_PID),
#                             first sample written before it returns
#
# A value changed with sysctl_set survives only a SIGKILL of the script: the
# line it printed says what to write back by hand.

sysctl_get() {
  tr '\t' ' ' <"/proc/sys/${1//.//}"
}

sysctl_writable() {
  [[ -w "/proc/sys/${1//.//}" ]]
}

sysctl_set() {
  local key=$1 want=$2 why=$3 file="/proc/sys/${1//.//}" old
  old=$(sysctl_get "$key")
  [[ "$old" == "$want" ]] && return 0
  if ! echo "$want" >"$file" 2>/dev/null; then
    echo "  ($key: cannot set $old -> $want)"
    return 1
  fi
  at_exit "echo '$old' > $file && echo '$SCRIPT: restored $key = $old'"
  echo "  tuned         $key $old -> $want for this run (restored at exit; by hand: sysctl -w $key='$old')${why:+: $why}"
}

raise_sysctl() {
  local key=$1 want=$2 why=${3-} old
  sysctl_writable "$key" || return 0
  old=$(sysctl_get "$key")
  ((old >= want)) && return 0
  sysctl_set "$key" "$want" "$why" || true
}

# TcpExt counters: SYNs dropped at a full accept queue, retransmission timeouts.
tcpext() {
  awk '/^TcpExt:/ { if (!n) { for (i = 2; i <= NF; i++) k[i] = $i; n = 1 } else for (i = 2; i <= NF; i++) v[k[i]] = $i }
       END { print v["ListenOverflows"] + 0, v["TCPTimeouts"] + 0 }' /proc/net/netstat
}

finish_by() {
  local pid=$1 deadline=$2 what=$3
  while lib_alive "$pid" && ((SECONDS < deadline)); do sleep 0.5; done
  if lib_alive "$pid"; then
    echo "$SCRIPT: $what (pid $pid) still running at the deadline: stopping it" >&2
  fi
  stop_server "$pid"
}

# The system's interpreter, not a version manager's shim (seconds to start
# under load, and a different pid until it execs).
SCALE_PY=/usr/bin/python3
[[ -x "$SCALE_PY" ]] || SCALE_PY=python3

start_sampler() {
  local out=$1 seconds=$2 servers=$3 pidfile=$4
  spawn --out "$out.out" --err "$out.err" "$SCALE_PY" "$ROOT/scripts/scale-sample.py" \
    "$out" "$seconds" "$servers" "$pidfile"
  SAMPLER_PID=$SPAWN_PID
  wait_for_line "$out" . 10 "$SAMPLER_PID" || die "the sampler did not start: $(cat "$out.err")"
}
