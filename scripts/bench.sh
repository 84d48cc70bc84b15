#!/usr/bin/env bash
# The benchmark: rt-cleanup against `docker container prune`, a bare Docker client, the sqlite3
# CLI and a bare SQLite client, on a private Docker daemon of its own; and a nothing-to-do pass on
# Docker and on Podman side by side. See docs/benchmark.md for the figures.
#
#   scripts/bench.sh                   # everything, growth included (about 15 minutes after the
#                                      # release build, and a few minutes more the first time, to
#                                      # make the state files it keeps in /tmp/rtc-bench-files)
#   scripts/bench.sh --parts scan      # extra arguments go to the first run of examples/bench.rs
#   scripts/bench.sh --parts backlog --backlog-sizes 300000:3   # one part, other sizes
#   scripts/bench.sh --parts engines   # only the nothing-to-do pass on Docker and on Podman
#   scripts/bench.sh --parts orphans   # a pass with and without --orphans report
#
# It starts its own dockerd (scripts/test-daemon.sh with RT_CLEANUP_TEST_ROOT, default
# /tmp/rtc-bench-docker) so that no other daemon's load or tests disturb the figures and the
# benchmark disturbs no one, and, when the engines part runs, its own Podman service
# (scripts/test-podman.sh with RT_CLEANUP_TEST_PODMAN_ROOT, default /tmp/rtc-bench-podman);
# builds the release binary and the bench program; runs the bench (start-up, engines, the scan
# of 1,000,000 records in two shapes, removal at N = 300, 100, 1000 with WAL state files, the
# backlog of 100,000 records in both journal modes), then the removal at N = 300 again with
# rollback-journal state files, then how the scan and the backlog grow (scan 100,000 and
# 3,000,000 records, backlog 10,000 and 300,000); and stops the daemons it started.
set -euo pipefail
cd "$(dirname "$0")/.."

export RT_CLEANUP_TEST_ROOT=${RT_CLEANUP_BENCH_ROOT:-/tmp/rtc-bench-docker}
export RT_CLEANUP_TEST_PODMAN_ROOT=${RT_CLEANUP_BENCH_PODMAN_ROOT:-/tmp/rtc-bench-podman}
# Always the private daemons: a daemon given for the tests may be busy with them.
unset RT_CLEANUP_TEST_DOCKER_HOST RT_CLEANUP_TEST_PODMAN_HOST RT_CLEANUP_TEST_PODMAN_STARTED

scripts/ensure-packages.sh /usr/bin/time=time sqlite3=sqlite3

# shellcheck disable=SC2317 # called by the EXIT trap
stop_daemons() {
  [ "${RT_CLEANUP_TEST_PODMAN_STARTED:-}" != yes ] || scripts/test-podman.sh stop || true
  scripts/test-daemon.sh stop
}
trap stop_daemons EXIT
eval "$(scripts/test-daemon.sh start)"
# Podman only for the engines part, which runs by default and when asked for.
if [ $# -eq 0 ] || [[ " $* " == *engines* ]]; then
  eval "$(scripts/test-podman.sh start)"
fi

echo "== machine"
echo "cpus: $(nproc) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'))"
echo "memory: $(free -h | awk '/^Mem:/ {print $2}')"
echo "kernel: $(uname -r)"
echo "docker: $(DOCKER_HOST="$RT_CLEANUP_TEST_DOCKER_HOST" docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')," \
  "storage driver $(DOCKER_HOST="$RT_CLEANUP_TEST_DOCKER_HOST" docker info --format '{{.Driver}}')"
echo "disk: $(df -hT "${TMPDIR:-/tmp}" | awk 'NR==2 {print $1, $2, $3}') for ${TMPDIR:-/tmp} (state files) and $RT_CLEANUP_TEST_ROOT"
echo "sqlite3: $(sqlite3 --version | cut -d' ' -f1)"
if [ -n "${RT_CLEANUP_TEST_PODMAN_HOST:-}" ]; then
  echo "podman: $(DOCKER_HOST="$RT_CLEANUP_TEST_PODMAN_HOST" docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})'), storage driver vfs"
fi
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

cargo build --release --locked --bin rt-cleanup --example bench

target/release/examples/bench --journal wal "$@"
if [ $# -eq 0 ]; then
  target/release/examples/bench --journal rollback --parts removal --sizes 300:3
  echo "== growth"
  target/release/examples/bench --parts scan --scan-sizes 100000,3000000
  target/release/examples/bench --parts backlog --backlog-sizes 10000:5,300000:3
fi
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
