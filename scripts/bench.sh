#!/usr/bin/env bash
# The benchmark: rt-cleanup against `docker container prune`, a bare Docker client, the sqlite3
# CLI and a bare SQLite client, on a private Docker daemon of its own; and a nothing-to-do pass on
# each engine side by side. See docs/benchmark.md for the figures.
#
#   scripts/bench.sh                   # everything, growth included (about 15 minutes after the
#                                      # release build, and a few minutes more the first time, to
#                                      # make the state files it keeps in /tmp/rtc-bench-files)
#   scripts/bench.sh --parts scan      # extra arguments go to the first run of examples/bench.rs
#   scripts/bench.sh --parts backlog --backlog-sizes 300000:3   # one part, other sizes
#   scripts/bench.sh --parts engines   # only the nothing-to-do pass on each engine: Debian 12's
#                                      # Docker 20.10 and Podman 4.3, Debian 13's Docker 26 and
#                                      # Podman 5.4, and, with RT_CLEANUP_BENCH_UNSTABLE=1,
#                                      # Debian unstable's Docker and Podman
#   scripts/bench.sh --parts orphans   # a pass with and without --orphans report
#   scripts/bench.sh --parts history   # rt-cleanup history against the sqlite3 CLI on a log of
#                                      # 10,000,000 rows (made once, about 1.3 GB, kept in
#                                      # /tmp/rtc-bench-files): the log's last day, and one game
#   scripts/bench.sh --parts space     # a dry run with and without --measure-space over 100
#                                      # containers with 8 MiB each in their writable layer, in
#                                      # 1 file, then in 1,024
#
# It starts its own dockerd (scripts/test-daemon.sh with RT_CLEANUP_TEST_ROOT, default
# /tmp/rtc-bench-docker) so that no other daemon's load or tests disturb the figures and the
# benchmark disturbs no one, and, when the engines part runs, the other engines of its own: a
# Podman service (scripts/test-podman.sh with RT_CLEANUP_TEST_PODMAN_ROOT, default
# /tmp/rtc-bench-podman), Debian 13's Docker and Podman (/tmp/rtc-bench-docker26,
# /tmp/rtc-bench-podman5) and, when asked for, Debian unstable's (/tmp/rtc-bench-docker-unstable,
# /tmp/rtc-bench-podman-unstable), fetched by scripts/fetch-engine.sh;
# builds the release binary and the bench program; runs the bench (start-up, engines, the scan
# of 1,000,000 records in three shapes, each a dry run with its text summary and with
# --output json against sqlite3 and sqlite3 -json, removal at N = 300, 100, 1000 with WAL state
# files, the backlog of 100,000 records in both journal modes, the orphans, history on
# 10,000,000 log rows, the cost of --measure-space), then the removal at N = 300 again with rollback-journal state files,
# then how the scan and the backlog grow (scan 100,000 and 3,000,000 records, backlog 10,000 and
# 300,000); and stops the daemons it started.
set -euo pipefail
cd "$(dirname "$0")/.."

export RT_CLEANUP_TEST_ROOT=${RT_CLEANUP_BENCH_ROOT:-/tmp/rtc-bench-docker}
export RT_CLEANUP_TEST_PODMAN_ROOT=${RT_CLEANUP_BENCH_PODMAN_ROOT:-/tmp/rtc-bench-podman}
export RT_CLEANUP_TEST_DOCKER26_ROOT=/tmp/rtc-bench-docker26
export RT_CLEANUP_TEST_PODMAN5_ROOT=/tmp/rtc-bench-podman5
export RT_CLEANUP_TEST_DOCKER_UNSTABLE_ROOT=/tmp/rtc-bench-docker-unstable
export RT_CLEANUP_TEST_PODMAN_UNSTABLE_ROOT=/tmp/rtc-bench-podman-unstable
# Always the private daemons: a daemon given for the tests may be busy with them.
unset RT_CLEANUP_TEST_DOCKER_HOST RT_CLEANUP_TEST_PODMAN_HOST RT_CLEANUP_TEST_PODMAN_STARTED \
  RT_CLEANUP_TEST_DOCKER26_HOST RT_CLEANUP_TEST_PODMAN5_HOST RT_CLEANUP_TEST_DOCKER_UNSTABLE_HOST \
  RT_CLEANUP_TEST_PODMAN_UNSTABLE_HOST RT_CLEANUP_TEST_DOCKER26_STARTED \
  RT_CLEANUP_TEST_PODMAN5_STARTED RT_CLEANUP_TEST_DOCKER_UNSTABLE_STARTED \
  RT_CLEANUP_TEST_PODMAN_UNSTABLE_STARTED RT_CLEANUP_BENCH_ENGINE_HOSTS

scripts/ensure-packages.sh /usr/bin/time=time sqlite3=sqlite3

# The engines of the engines part besides Debian 12's Docker: the script and release of each.
engines=("test-podman.sh debian12" "test-daemon.sh debian13" "test-podman.sh debian13")
if [ -n "${RT_CLEANUP_BENCH_UNSTABLE:-}" ]; then
  engines+=("test-daemon.sh unstable" "test-podman.sh unstable")
fi

# shellcheck disable=SC2317 # called by the EXIT trap
stop_daemons() {
  [ "${RT_CLEANUP_TEST_PODMAN_UNSTABLE_STARTED:-}" != yes ] ||
    scripts/test-podman.sh stop unstable || true
  [ "${RT_CLEANUP_TEST_DOCKER_UNSTABLE_STARTED:-}" != yes ] ||
    scripts/test-daemon.sh stop unstable || true
  [ "${RT_CLEANUP_TEST_PODMAN5_STARTED:-}" != yes ] || scripts/test-podman.sh stop debian13 || true
  [ "${RT_CLEANUP_TEST_DOCKER26_STARTED:-}" != yes ] || scripts/test-daemon.sh stop debian13 || true
  [ "${RT_CLEANUP_TEST_PODMAN_STARTED:-}" != yes ] || scripts/test-podman.sh stop || true
  scripts/test-daemon.sh stop
}
trap stop_daemons EXIT
eval "$(scripts/test-daemon.sh start)"
# The other engines only for the engines part, which runs by default and when asked for.
if [ $# -eq 0 ] || [[ " $* " == *engines* ]]; then
  for engine in "${engines[@]}"; do
    read -r script release <<<"$engine"
    eval "$("scripts/$script" start "$release")"
  done
  hosts=()
  for variable in RT_CLEANUP_TEST_PODMAN_HOST RT_CLEANUP_TEST_DOCKER26_HOST \
    RT_CLEANUP_TEST_PODMAN5_HOST RT_CLEANUP_TEST_DOCKER_UNSTABLE_HOST \
    RT_CLEANUP_TEST_PODMAN_UNSTABLE_HOST; do
    [ -z "${!variable:-}" ] || hosts+=("${!variable}")
  done
  RT_CLEANUP_BENCH_ENGINE_HOSTS=$(IFS=,; echo "${hosts[*]}")
  export RT_CLEANUP_BENCH_ENGINE_HOSTS
fi

echo "== machine"
echo "cpus: $(nproc) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'))"
echo "memory: $(free -h | awk '/^Mem:/ {print $2}')"
echo "kernel: $(uname -r)"
echo "docker: $(DOCKER_HOST="$RT_CLEANUP_TEST_DOCKER_HOST" docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')," \
  "storage driver $(DOCKER_HOST="$RT_CLEANUP_TEST_DOCKER_HOST" docker info --format '{{.Driver}}')"
echo "disk: $(df -hT "${TMPDIR:-/tmp}" | awk 'NR==2 {print $1, $2, $3}') for ${TMPDIR:-/tmp} (state files) and $RT_CLEANUP_TEST_ROOT"
echo "sqlite3: $(sqlite3 --version | cut -d' ' -f1)"
engine_hosts=${RT_CLEANUP_BENCH_ENGINE_HOSTS:-}
for host in ${engine_hosts//,/ }; do
  echo "engine at $host: $(DOCKER_HOST="$host" docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')," \
    "storage driver $(DOCKER_HOST="$host" docker info --format '{{.Driver}}')"
done
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

cargo build --release --locked --bin rt-cleanup --example bench

target/release/examples/bench --journal wal "$@"
if [ $# -eq 0 ]; then
  target/release/examples/bench --journal rollback --parts removal --sizes 300:3
  echo "== growth"
  # How the scan grows with the file, at 10,000 expired records (the 100,000 shape is timed at
  # 1,000,000 records only).
  target/release/examples/bench --parts scan --scan-sizes 100000,3000000 \
    --scan-shapes stopped90,stopped10
  target/release/examples/bench --parts backlog --backlog-sizes 10000:5,300000:3
fi
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
