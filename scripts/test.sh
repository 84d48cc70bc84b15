#!/usr/bin/env bash
# The test command: brings up the test Docker daemon (installing Debian's docker.io and
# busybox-static when missing and starting a private dockerd when RT_CLEANUP_TEST_DOCKER_HOST is
# not given), runs every test against it, and stops the private daemon again.
#
#   scripts/test.sh                 # all tests
#   scripts/test.sh contract::      # extra arguments go to `cargo test`, e.g. a filter
set -euo pipefail
cd "$(dirname "$0")/.."

export RT_CLEANUP_TEST_RUN="run-$$-$(date +%s)"

# The metrics tests scrape through Debian's node_exporter, the real consumer of --metrics-file.
scripts/ensure-packages.sh prometheus-node-exporter=prometheus-node-exporter
eval "$(scripts/test-daemon.sh start)"
started_private=${RT_CLEANUP_TEST_DAEMON_PIDFILE:+yes}

closing=""
cleanup() {
  # Remove only what this run created, then stop the daemon if this script started it; the
  # count of tests comes last, as the run's closing line.
  local ids
  ids=$(DOCKER_HOST="$RT_CLEANUP_TEST_DOCKER_HOST" docker ps -aq \
    --filter "label=rt-cleanup-test.run=$RT_CLEANUP_TEST_RUN" 2>/dev/null || true)
  if [ -n "$ids" ]; then
    # shellcheck disable=SC2086
    DOCKER_HOST="$RT_CLEANUP_TEST_DOCKER_HOST" docker rm -f $ids >/dev/null 2>&1 || true
  fi
  if [ -n "$started_private" ] && [ -z "${RT_CLEANUP_TEST_KEEP_DAEMON:-}" ]; then
    scripts/test-daemon.sh stop
  fi
  [ -z "$closing" ] || echo "$closing"
}
trap cleanup EXIT

echo "test.sh: Docker daemon $RT_CLEANUP_TEST_DOCKER_HOST, image $RT_CLEANUP_TEST_IMAGE, run $RT_CLEANUP_TEST_RUN"
log=$(mktemp)
status=0
cargo test --locked "$@" 2>&1 | tee "$log" || status=$?
# One closing line for the whole run: cargo prints a result line per test binary, the last one
# being the (empty) doc tests.
closing=$(awk '/^test result:/ { passed += $4; failed += $6 }
  END { printf "tests: %d passed, %d failed", passed, failed }' "$log")
rm -f "$log"
exit "$status"
