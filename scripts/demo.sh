#!/usr/bin/env bash
# The demo: a state file with one game of every kind, a few containers on Docker, then
# `rt-cleanup --dry-run` and the real pass on it, with both summaries.
#
# Uses the daemon at $DOCKER_HOST (or /var/run/docker.sock) when it answers; otherwise starts the
# same private dockerd as the tests (scripts/test-daemon.sh, needs root; it installs Debian's
# docker.io and busybox-static when missing) and stops it again at the end, unless
# RT_CLEANUP_DEMO_KEEP_DAEMON=1. Everything it creates carries the label rt-cleanup-demo=1 and is
# removed at the end; no other container is touched.
set -euo pipefail
cd "$(dirname "$0")/.."

host=${DOCKER_HOST:-unix:///var/run/docker.sock}
if command -v docker >/dev/null 2>&1 && DOCKER_HOST="$host" timeout 5 docker version >/dev/null 2>&1; then
  eval "$(RT_CLEANUP_TEST_DOCKER_HOST="$host" scripts/test-daemon.sh start)"
else
  echo "demo: no Docker daemon answers at $host; starting the private test daemon" >&2
  eval "$(scripts/test-daemon.sh start)"
fi
export DOCKER_HOST=$RT_CLEANUP_TEST_DOCKER_HOST
image=$RT_CLEANUP_TEST_IMAGE

private=${RT_CLEANUP_TEST_DAEMON_PIDFILE:+yes}
started=${RT_CLEANUP_TEST_DAEMON_STARTED:-no}
remove_demo_containers() {
  ids=$(docker ps -aq --filter label=rt-cleanup-demo=1 || true)
  # shellcheck disable=SC2086
  [ -z "$ids" ] || docker rm -f $ids >/dev/null
}
cleanup() {
  remove_demo_containers
  [ -n "$private" ] || return 0
  if [ "$started" = yes ] && [ -z "${RT_CLEANUP_DEMO_KEEP_DAEMON:-}" ]; then
    scripts/test-daemon.sh stop
  else
    echo "demo: the private dockerd at $DOCKER_HOST is still running (it was running before the" \
      "demo, or RT_CLEANUP_DEMO_KEEP_DAEMON is set); stop it with: scripts/test-daemon.sh stop" >&2
  fi
}
trap cleanup EXIT
remove_demo_containers

echo "== building rt-cleanup (release)"
cargo build --release --quiet --bin rt-cleanup --example demo-state
bin=target/release/rt-cleanup

dir=$(mktemp -d /tmp/rt-cleanup-demo.XXXXXX)
state=$dir/state.db
exited=$(docker create --network none --label rt-cleanup-demo=1 "$image")
running=$(docker run -d --network none --label rt-cleanup-demo=1 "$image")
leased=$(docker create --network none --label rt-cleanup-demo=1 "$image")
target/release/examples/demo-state create "$state" "$exited" "$running" demo-container-long-gone "$leased"

echo
echo "== rt-cleanup --retention 7d --state $state --dry-run"
status=0
"$bin" --retention 7d --state "$state" --dry-run 2>"$dir/dry-run.log" || status=$?
echo "(exit status $status: 1 means a record would fail; logs in $dir/dry-run.log)"

echo
echo "== rt-cleanup --retention 7d --state $state"
status=0
"$bin" --retention 7d --state "$state" 2>"$dir/run.log" || status=$?
echo "(exit status $status; logs in $dir/run.log)"

echo
echo "== the state file afterwards"
target/release/examples/demo-state show "$state"
echo
echo "Docker: container $(echo "$exited" | cut -c1-12) (exited) is $(docker inspect "$exited" >/dev/null 2>&1 && echo 'still there' || echo 'gone'); $(echo "$running" | cut -c1-12) (running) is $(docker inspect -f '{{.State.Status}}' "$running")."
echo "The demo containers are removed at exit; the state file stays in $dir."
