#!/usr/bin/env bash
# The test command: brings up the test engines, runs every test against them, and stops the ones
# it started again.
#
#   * Docker 20.10: scripts/test-daemon.sh (Debian 12's docker.io; a private dockerd unless
#     RT_CLEANUP_TEST_DOCKER_HOST is given);
#   * Podman 4.3: scripts/test-podman.sh (Debian 12's podman; a private rootful `podman system
#     service` unless RT_CLEANUP_TEST_PODMAN_HOST is given): the contract's tests run on it as on
#     Docker (docs/contract.md, "Engines");
#   * Docker 26 and Podman 5.4: the same scripts with `debian13` (Debian 13's packages, downloaded
#     once into a cache by scripts/fetch-engine.sh, never installed; RT_CLEANUP_TEST_DOCKER26_HOST
#     and RT_CLEANUP_TEST_PODMAN5_HOST name daemons of one's own instead): the contract's and the
#     orphans' tests run on them too;
#   * Docker behind mutual TLS: scripts/test-tls-daemon.sh (a second private dockerd on
#     127.0.0.1 with --tlsverify and certificates made by openssl), for the TLS tests
#     (docs/contract.md section 4);
#   * systemd-journald: scripts/test-journald.sh (Debian 12's, started when none answers), for
#     the tests of the logs in the journal (tests/integration/logs.rs).
#
#   scripts/test.sh                 # all tests
#   scripts/test.sh contract::      # extra arguments go to `cargo test`, e.g. a filter
#   scripts/test.sh --unstable      # the contract's and the orphans' tests on Debian unstable's
#                                   # Docker and Podman (scripts/fetch-engine.sh unstable), which
#                                   # a plain run leaves out (they are #[ignore]d): not in CI, as
#                                   # unstable changes under you; extra arguments after it are
#                                   # filters, e.g. `--unstable podman_unstable`
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
unset RT_CLEANUP_TEST_DAEMON_STARTED RT_CLEANUP_TEST_PODMAN_STARTED RT_CLEANUP_TEST_TLS_STARTED \
  RT_CLEANUP_TEST_JOURNALD_STARTED RT_CLEANUP_TEST_DOCKER26_STARTED RT_CLEANUP_TEST_PODMAN5_STARTED \
  RT_CLEANUP_TEST_DOCKER_UNSTABLE_STARTED RT_CLEANUP_TEST_PODMAN_UNSTABLE_STARTED

unstable=""
if [ "${1:-}" = --unstable ]; then
  unstable=yes
  shift
fi

closing=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  # Remove only what this run created, on each engine, then stop the daemons this script
  # started; the count of tests comes last, as the run's closing line.
  local host ids
  for host in "${RT_CLEANUP_TEST_DOCKER_HOST:-}" "${RT_CLEANUP_TEST_PODMAN_HOST:-}" \
    "${RT_CLEANUP_TEST_TLS_UNIX_HOST:-}" "${RT_CLEANUP_TEST_DOCKER26_HOST:-}" \
    "${RT_CLEANUP_TEST_PODMAN5_HOST:-}" "${RT_CLEANUP_TEST_DOCKER_UNSTABLE_HOST:-}" \
    "${RT_CLEANUP_TEST_PODMAN_UNSTABLE_HOST:-}"; do
    [ -n "$host" ] || continue
    ids=$(DOCKER_HOST="$host" docker ps -aq \
      --filter "label=rt-cleanup-test.run=$RT_CLEANUP_TEST_RUN" 2>/dev/null || true)
    if [ -n "$ids" ]; then
      # shellcheck disable=SC2086
      DOCKER_HOST="$host" docker rm -f $ids >/dev/null 2>&1 || true
    fi
  done
  if [ -z "${RT_CLEANUP_TEST_KEEP_DAEMON:-}" ]; then
    [ "${RT_CLEANUP_TEST_PODMAN_UNSTABLE_STARTED:-}" != yes ] ||
      scripts/test-podman.sh stop unstable || true
    [ "${RT_CLEANUP_TEST_DOCKER_UNSTABLE_STARTED:-}" != yes ] ||
      scripts/test-daemon.sh stop unstable || true
    [ "${RT_CLEANUP_TEST_PODMAN5_STARTED:-}" != yes ] || scripts/test-podman.sh stop debian13 || true
    [ "${RT_CLEANUP_TEST_DOCKER26_STARTED:-}" != yes ] || scripts/test-daemon.sh stop debian13 || true
    [ "${RT_CLEANUP_TEST_TLS_STARTED:-}" != yes ] || scripts/test-tls-daemon.sh stop || true
    [ "${RT_CLEANUP_TEST_JOURNALD_STARTED:-}" != yes ] || scripts/test-journald.sh stop || true
    [ "${RT_CLEANUP_TEST_PODMAN_STARTED:-}" != yes ] || scripts/test-podman.sh stop || true
    [ "${RT_CLEANUP_TEST_DAEMON_STARTED:-}" != yes ] || scripts/test-daemon.sh stop || true
  fi
  [ -z "$closing" ] || echo "$closing"
}
# Set before any daemon starts, so that one started before a later one fails is stopped too.
trap cleanup EXIT

# Everything the engines and the tests need, in one apt-get run on a fresh machine (each script
# below would otherwise update the package lists on its own). The metrics tests scrape through
# Debian's node_exporter, the real consumer of --metrics-file; patchelf adapts the newer releases'
# programs to this machine (scripts/fetch-engine.sh).
scripts/ensure-packages.sh prometheus-node-exporter=prometheus-node-exporter \
  dockerd=docker.io docker=docker.io /bin/busybox=busybox-static podman=podman \
  /usr/sbin/runc=runc openssl=openssl patchelf=patchelf /lib/systemd/systemd-journald=systemd \
  journalctl=systemd systemd-cat=systemd
# What each start printed is taken in even when it failed half-way (a daemon started, its image
# not built), so that the cleanup knows of every daemon started.
start() {
  local exports status=0
  exports=$("$@") || status=$?
  eval "$exports"
  return "$status"
}
log=$(mktemp)
status=0
if [ -n "$unstable" ]; then
  start scripts/test-daemon.sh start unstable
  start scripts/test-podman.sh start unstable
  echo "test.sh: Debian unstable's Docker $RT_CLEANUP_TEST_DOCKER_UNSTABLE_HOST and Podman" \
    "$RT_CLEANUP_TEST_PODMAN_UNSTABLE_HOST; image $RT_CLEANUP_TEST_DOCKER_UNSTABLE_IMAGE, run $RT_CLEANUP_TEST_RUN"
  # Only the ignored tests, which are those of Debian unstable's engines.
  cargo test --locked --test integration -- --ignored "$@" 2>&1 | tee "$log" || status=$?
else
  start scripts/test-daemon.sh start
  start scripts/test-podman.sh start
  start scripts/test-tls-daemon.sh start
  start scripts/test-journald.sh start
  start scripts/test-daemon.sh start debian13
  start scripts/test-podman.sh start debian13
  echo "test.sh: Docker $RT_CLEANUP_TEST_DOCKER_HOST, Podman $RT_CLEANUP_TEST_PODMAN_HOST," \
    "TLS Docker $RT_CLEANUP_TEST_TLS_HOST, Docker 26 $RT_CLEANUP_TEST_DOCKER26_HOST," \
    "Podman 5 $RT_CLEANUP_TEST_PODMAN5_HOST; image $RT_CLEANUP_TEST_IMAGE, run $RT_CLEANUP_TEST_RUN"
  cargo test --locked "$@" 2>&1 | tee "$log" || status=$?
fi
# One closing line for the whole run: cargo prints a result line per test binary, the last one
# being the (empty) doc tests.
closing=$(awk '/^test result:/ { passed += $4; failed += $6 }
  END { printf "tests: %d passed, %d failed", passed, failed }' "$log")
rm -f "$log"
exit "$status"
