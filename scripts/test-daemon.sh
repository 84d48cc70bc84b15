#!/usr/bin/env bash
# Brings up the Docker daemon and the image that rt-cleanup's tests, demo and benchmark use.
#
#   scripts/test-daemon.sh start   # prints shell assignments: eval "$(scripts/test-daemon.sh start)"
#   scripts/test-daemon.sh stop    # stops the private daemon this script started, if any
#
# `start` says in RT_CLEANUP_TEST_DAEMON_STARTED whether it started the private daemon (yes) or
# reused one already running (no).
#
# With RT_CLEANUP_TEST_DOCKER_HOST set to a reachable daemon, that daemon is used as it is.
# Otherwise a private dockerd is started as root on its own socket, data root and exec root under
# $RT_CLEANUP_TEST_ROOT (default /tmp/rt-cleanup-test-docker), with no bridge and no iptables, so
# it touches no other daemon, container or network of the machine. Debian's docker.io and
# busybox-static are installed first when missing. The test image is built with `docker import`
# from busybox (no registry is reachable).
set -euo pipefail

ROOT=${RT_CLEANUP_TEST_ROOT:-/tmp/rt-cleanup-test-docker}
SOCK="$ROOT/docker.sock"
IMAGE=${RT_CLEANUP_TEST_IMAGE:-rt-cleanup-test/busybox:1}

log() { printf 'test-daemon: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }


reachable() { DOCKER_HOST="$1" timeout 10 docker version --format '{{.Server.APIVersion}}' >/dev/null 2>&1; }

start_private() {
  [ "$(id -u)" = 0 ] || die "a private dockerd needs root; or set RT_CLEANUP_TEST_DOCKER_HOST to a daemon"
  mkdir -p "$ROOT"
  if [ -S "$SOCK" ] && reachable "unix://$SOCK"; then
    log "reusing the private daemon at unix://$SOCK"
    STARTED=no
    return 0
  fi
  STARTED=yes
  rm -f "$SOCK"
  log "starting a private dockerd on unix://$SOCK (log: $ROOT/dockerd.log)"
  # --debug makes the daemon log every request path: the tests read it to check which API
  # version rt-cleanup really puts on the wire.
  setsid dockerd --debug \
    --data-root "$ROOT/data" --exec-root "$ROOT/exec" --pidfile "$ROOT/dockerd.pid" \
    --host "unix://$SOCK" --bridge=none --iptables=false --ip-masq=false \
    >"$ROOT/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 1 120); do
    reachable "unix://$SOCK" && return 0
    sleep 0.25
  done
  tail -n 20 "$ROOT/dockerd.log" >&2 || true
  die "the private dockerd did not answer within 30s (log above)"
}

build_image() {
  local host=$1
  if DOCKER_HOST="$host" docker image inspect "$IMAGE" >/dev/null 2>&1; then return 0; fi
  log "building $IMAGE with docker import from /bin/busybox"
  "$(dirname "$0")/test-image-rootfs.sh" | DOCKER_HOST="$host" docker import \
    -c 'CMD ["/bin/busybox", "sleep", "3600"]' - "$IMAGE" >/dev/null
}

case "${1:-start}" in
  start)
    "$(dirname "$0")/ensure-packages.sh" dockerd=docker.io docker=docker.io \
      /bin/busybox=busybox-static
    if [ -n "${RT_CLEANUP_TEST_DOCKER_HOST:-}" ]; then
      reachable "$RT_CLEANUP_TEST_DOCKER_HOST" ||
        die "RT_CLEANUP_TEST_DOCKER_HOST=$RT_CLEANUP_TEST_DOCKER_HOST does not answer"
      host=$RT_CLEANUP_TEST_DOCKER_HOST
      echo "export RT_CLEANUP_TEST_DOCKER_HOST='$host'"
    else
      start_private
      host="unix://$SOCK"
      echo "export RT_CLEANUP_TEST_DOCKER_HOST='$host'"
      echo "export RT_CLEANUP_TEST_DAEMON_LOG='$ROOT/dockerd.log'"
      echo "export RT_CLEANUP_TEST_DAEMON_PIDFILE='$ROOT/dockerd.pid'"
      # Whether this call started it (yes) or found it running (no): a caller stops only what
      # it started, never a daemon someone else is using.
      echo "export RT_CLEANUP_TEST_DAEMON_STARTED='$STARTED'"
    fi
    build_image "$host"
    echo "export RT_CLEANUP_TEST_IMAGE='$IMAGE'"
    ;;
  stop)
    if [ -f "$ROOT/dockerd.pid" ]; then
      pid=$(cat "$ROOT/dockerd.pid")
      kill -CONT "$pid" 2>/dev/null || true
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      log "stopped the private dockerd ($pid)"
    fi
    ;;
  *) die "usage: $0 start|stop" ;;
esac
