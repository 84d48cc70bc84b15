#!/usr/bin/env bash
# The chaos soak, longer than in CI (docs/fault-suite.md, "The chaos soak"): the same test that
# `scripts/test.sh` runs for 30 s per journal mode, faults::soak::the_chaos_soak_keeps_every_invariant,
# in both journal modes side by side, each for the minutes given, at `nice -n 10`; then the
# figures line of each soak (runs, kills, late answers, removals, kept leases, violations).
#
#   scripts/soak.sh                    # 10 minutes per journal mode
#   scripts/soak.sh --minutes 2
#   scripts/soak.sh --journal wal      # one journal mode: rollback_journal or wal
#   scripts/soak.sh --seed 123456789   # replays a seed's choices (RT_CLEANUP_FAULT_SEED); the
#                                      # timing, and so what they meet, differs
#
# It runs against the test daemon at RT_CLEANUP_TEST_DOCKER_HOST when one answers there, else it
# starts the private one (scripts/test-daemon.sh, which installs docker.io and busybox-static when
# missing) and stops it after, unless RT_CLEANUP_TEST_KEEP_DAEMON=1. It removes only the
# containers of its own run. The exit status is the test's: 0 when no invariant broke.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=10
journals=(rollback_journal wal)
seed=""
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes=${2:-}; shift 2 || shift ;;
    --journal) journals=("${2:-}"); shift 2 || shift ;;
    --seed) seed=${2:-}; shift 2 || shift ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d; s/^# \{0,1\}//; p}' "$0"; exit 0 ;;
    *) echo "soak.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$minutes" in
  '' | *[!0-9]* | 0) echo "soak.sh: --minutes needs a whole number of minutes, at least 1" >&2
    exit 2 ;;
esac
case "${journals[0]}" in
  rollback_journal | wal) ;;
  *) echo "soak.sh: --journal is rollback_journal or wal" >&2; exit 2 ;;
esac
case "$seed" in
  *[!0-9]*) echo "soak.sh: --seed is a number (a soak prints its seed)" >&2; exit 2 ;;
esac

RT_CLEANUP_TEST_RUN="soak-$$-$(date +%s)"
export RT_CLEANUP_TEST_RUN
unset RT_CLEANUP_TEST_DAEMON_STARTED
log=$(mktemp)
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  local ids
  if [ -n "${RT_CLEANUP_TEST_DOCKER_HOST:-}" ]; then
    ids=$(DOCKER_HOST="$RT_CLEANUP_TEST_DOCKER_HOST" docker ps -aq \
      --filter "label=rt-cleanup-test.run=$RT_CLEANUP_TEST_RUN" 2>/dev/null || true)
    if [ -n "$ids" ]; then
      # shellcheck disable=SC2086
      DOCKER_HOST="$RT_CLEANUP_TEST_DOCKER_HOST" docker rm -f $ids >/dev/null 2>&1 || true
    fi
  fi
  if [ -z "${RT_CLEANUP_TEST_KEEP_DAEMON:-}" ] &&
    [ "${RT_CLEANUP_TEST_DAEMON_STARTED:-}" = yes ]; then
    scripts/test-daemon.sh stop || true
  fi
  rm -f "$log"
}
trap cleanup EXIT

exports=$(scripts/test-daemon.sh start)
eval "$exports"

export RT_CLEANUP_SOAK_SECONDS=$((minutes * 60))
if [ -n "$seed" ]; then export RT_CLEANUP_FAULT_SEED=$seed; fi
tests=()
for journal in "${journals[@]}"; do
  tests+=("faults::soak::the_chaos_soak_keeps_every_invariant::$journal")
done
echo "soak.sh: ${#tests[@]} soak(s) of $minutes min against $RT_CLEANUP_TEST_DOCKER_HOST," \
  "run $RT_CLEANUP_TEST_RUN" >&2
cargo build --locked --tests
status=0
nice -n 10 cargo test --locked --test integration -- --exact "${tests[@]}" --nocapture \
  --test-threads=2 2>&1 | tee "$log" || status=$?
echo
echo "soak.sh: the figures of each soak"
grep '^SOAK ' "$log" || echo "soak.sh: no soak printed its figures" >&2
exit "$status"
