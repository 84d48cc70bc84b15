#!/usr/bin/env bash
# Brings up a systemd-journald for the tests of rt-cleanup's native journal logging (the
# tests/integration/logs.rs tests that run rt-cleanup with its stderr on the journal and read
# what journald stored back with journalctl).
#
#   scripts/test-journald.sh start  # prints shell assignments: eval "$(scripts/test-journald.sh start)"
#   scripts/test-journald.sh stop   # stops the journald this script started, if any
#
# A journald that already answers (the machine's own, where systemd is PID 1, or one a
# previous start left running) is used and left running: `start` says in
# RT_CLEANUP_TEST_JOURNALD_STARTED whether it started one (yes) or reused one (no).
#
# Debian's /lib/systemd/systemd-journald runs without systemd as PID 1: it creates its sockets
# under /run/systemd/journal/ (the paths every journal client, tracing-journald included, has
# built in, so there is no private one to choose) and stores its entries under
# /run/log/journal/ (volatile: nothing asks it to move them to /var/log/journal), where
# journalctl reads them. `stop` ends it and removes the directories that it created for them
# (those that did not exist at `start`), so that the machine is left as it was. Debian's systemd package (which has journald,
# journalctl and systemd-cat) is installed first when missing.
set -euo pipefail

ROOT=${RT_CLEANUP_TEST_JOURNALD_ROOT:-/tmp/rt-cleanup-test-journald}
PIDFILE="$ROOT/journald.pid"
LOG="$ROOT/journald.log"
JOURNALD=/lib/systemd/systemd-journald
SOCKETS=/run/systemd/journal
STORE=/run/log/journal

log() { printf 'test-journald: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# A process that has exited but is not yet reaped still answers kill -0.
alive() {
  local state
  state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# The start time of a process (clock ticks since boot, field 22 of /proc/PID/stat): with the pid,
# it names the process this script started, so that a stale pid file never makes `stop` kill
# whatever process has that pid now.
started_at() { awk '{ print $22 }' "/proc/$1/stat" 2>/dev/null; }
ours() { [ -f "$ROOT/started-at" ] && [ "$(started_at "$1")" = "$(cat "$ROOT/started-at")" ]; }

# Whether a journald answers: a line sent to its stream socket is read back with journalctl.
answers() {
  local probe="rt-cleanup test-journald probe $$ $RANDOM"
  [ -S "$SOCKETS/socket" ] || return 1
  echo "$probe" | systemd-cat -t rt-cleanup-test-probe 2>/dev/null || return 1
  for _ in $(seq 1 40); do
    journalctl --no-pager -o cat -t rt-cleanup-test-probe 2>/dev/null | grep -qxF "$probe" && return 0
    sleep 0.25
  done
  return 1
}

start() {
  mkdir -p "$ROOT"
  if answers; then
    log "reusing the journald that answers on $SOCKETS"
    STARTED=no
    return 0
  fi
  [ "$(id -u)" = 0 ] || die "a journald of the tests' own needs root"
  if [ -f "$PIDFILE" ] && ours "$(cat "$PIDFILE")" && alive "$(cat "$PIDFILE")"; then
    die "the journald ($(cat "$PIDFILE")) this script started runs but does not answer; run $0 stop first"
  fi
  STARTED=yes
  # Remember the directories journald is about to create, the outermost of each, for `stop`.
  local dir
  : >"$ROOT/created"
  for dir in "$SOCKETS" "$STORE"; do
    while [ ! -e "$(dirname "$dir")" ]; do dir=$(dirname "$dir"); done
    [ -e "$dir" ] || echo "$dir" >>"$ROOT/created"
  done
  log "starting $JOURNALD (sockets in $SOCKETS, entries in $STORE; log: $LOG)"
  setsid "$JOURNALD" >"$LOG" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$PIDFILE"
  started_at "$pid" >"$ROOT/started-at"
  for _ in $(seq 1 40); do
    [ -S "$SOCKETS/socket" ] && break
    sleep 0.25
  done
  answers || {
    tail -n 20 "$LOG" >&2 || true
    die "the journald started ($pid) did not store a probe line within 10s (log above)"
  }
}

case "${1:-start}" in
  start)
    "$(dirname "$0")/ensure-packages.sh" "$JOURNALD=systemd" journalctl=systemd \
      systemd-cat=systemd
    start
    echo "export RT_CLEANUP_TEST_JOURNALD_PIDFILE='$PIDFILE'"
    # Whether this call started it (yes) or found one answering (no).
    echo "export RT_CLEANUP_TEST_JOURNALD_STARTED='$STARTED'"
    ;;
  stop)
    if [ -f "$PIDFILE" ]; then
      pid=$(cat "$PIDFILE")
      if ours "$pid" && alive "$pid"; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do alive "$pid" || break; sleep 0.25; done
        if alive "$pid"; then
          log "the journald ($pid) did not stop within 10s"
          exit 1
        fi
        log "stopped the journald ($pid)"
      else
        log "pid $pid of $PIDFILE is not the journald this script started; nothing to stop"
      fi
      rm -f "$PIDFILE" "$ROOT/started-at"
      # Only what `start` created; a journald that was reused keeps its files.
      if [ -f "$ROOT/created" ]; then
        while read -r dir; do
          case "$dir" in /run/?*) rm -rf "$dir" ;; esac
        done <"$ROOT/created"
        rm -f "$ROOT/created"
      fi
    fi
    ;;
  *) die "usage: $0 start|stop" ;;
esac
