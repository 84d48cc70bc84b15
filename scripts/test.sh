#!/usr/bin/env bash
# The test command: brings up the three test engines, runs every test against them, and stops the
# ones it started again.
#
#   * Docker: scripts/test-daemon.sh (Debian's docker.io; a private dockerd unless
#     RT_CLEANUP_TEST_DOCKER_HOST is given);
#   * Podman: scripts/test-podman.sh (Debian's podman; a private rootful `podman system service`
#     unless RT_CLEANUP_TEST_PODMAN_HOST is given): the contract's tests run on it as on Docker
#     (docs/contract.md, "Engines");
#   * Docker behind mutual TLS: scripts/test-tls-daemon.sh (a second private dockerd on
#     127.0.0.1 with --tlsverify and certificates made by openssl), for the TLS tests
#     (docs/contract.md section 4).
#
#   scripts/test.sh                 # all tests
#   scripts/test.sh contract::      # extra arguments go to `cargo test`, e.g. a filter
#
# RT_CLEANUP_TEST_KEEP_DAEMON=1 leaves the daemons this run started running. A daemon that was
# already running when the run began (another run's, or someone's kept one) is used and left
# running.
set -euo pipefail
cd "$(dirname "$0")/.."

RT_CLEANUP_TEST_RUN="run-$$-$(date +%s)"
export RT_CLEANUP_TEST_RUN

# Whatever the caller's environment says about daemons this run did not start must not make the
# cleanup stop them.
unset RT_CLEANUP_TEST_DAEMON_STARTED RT_CLEANUP_TEST_PODMAN_STARTED RT_CLEANUP_TEST_TLS_STARTED

closing=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  # Remove only what this run created, on each engine, then stop the daemons this script
  # started; the count of tests comes last, as the run's closing line.
  local host ids
  for host in "${RT_CLEANUP_TEST_DOCKER_HOST:-}" "${RT_CLEANUP_TEST_PODMAN_HOST:-}" \
    "${RT_CLEANUP_TEST_TLS_UNIX_HOST:-}"; do
    [ -n "$host" ] || continue
    ids=$(DOCKER_HOST="$host" docker ps -aq \
      --filter "label=rt-cleanup-test.run=$RT_CLEANUP_TEST_RUN" 2>/dev/null || true)
    if [ -n "$ids" ]; then
      # shellcheck disable=SC2086
      DOCKER_HOST="$host" docker rm -f $ids >/dev/null 2>&1 || true
    fi
  done
  if [ -z "${RT_CLEANUP_TEST_KEEP_DAEMON:-}" ]; then
    [ "${RT_CLEANUP_TEST_TLS_STARTED:-}" != yes ] || scripts/test-tls-daemon.sh stop || true
    [ "${RT_CLEANUP_TEST_PODMAN_STARTED:-}" != yes ] || scripts/test-podman.sh stop || true
    [ "${RT_CLEANUP_TEST_DAEMON_STARTED:-}" != yes ] || scripts/test-daemon.sh stop || true
  fi
  [ -z "$closing" ] || echo "$closing"
}
# Set before any daemon starts, so that one started before a later one fails is stopped too.
trap cleanup EXIT

# Everything the engines and the tests need, in one apt-get run on a fresh machine (each script
# below would otherwise update the package lists on its own). The metrics tests scrape through
# Debian's node_exporter, the real consumer of --metrics-file.
scripts/ensure-packages.sh prometheus-node-exporter=prometheus-node-exporter \
  dockerd=docker.io docker=docker.io /bin/busybox=busybox-static podman=podman \
  /usr/sbin/runc=runc openssl=openssl
# What each start printed is taken in even when it failed half-way (a daemon started, its image
# not built), so that the cleanup knows of every daemon started.
start() {
  local exports status=0
  exports=$("$1" start) || status=$?
  eval "$exports"
  return "$status"
}
start scripts/test-daemon.sh
start scripts/test-podman.sh
start scripts/test-tls-daemon.sh

echo "test.sh: Docker $RT_CLEANUP_TEST_DOCKER_HOST, Podman $RT_CLEANUP_TEST_PODMAN_HOST," \
  "TLS Docker $RT_CLEANUP_TEST_TLS_HOST; image $RT_CLEANUP_TEST_IMAGE, run $RT_CLEANUP_TEST_RUN"
log=$(mktemp)
status=0
cargo test --locked "$@" 2>&1 | tee "$log" || status=$?
# One closing line for the whole run: cargo prints a result line per test binary, the last one
# being the (empty) doc tests.
closing=$(awk '/^test result:/ { passed += $4; failed += $6 }
  END { printf "tests: %d passed, %d failed", passed, failed }' "$log")
rm -f "$log"
exit "$status"
