#!/usr/bin/env bash
# Brings up a Docker daemon and the image that rt-cleanup's tests, demo and benchmark use.
#
#   scripts/test-daemon.sh start [RELEASE]   # prints shell assignments:
#                                            # eval "$(scripts/test-daemon.sh start)"
#   scripts/test-daemon.sh stop [RELEASE]    # stops the private daemon this script started, if any
#
# RELEASE is whose Docker it is:
#   debian12  (default) Debian 12's docker.io 20.10, installed when missing;
#   debian13  Debian 13's docker.io 26.1 with its containerd 1.7 and runc 1.1.15;
#   unstable  Debian unstable's docker.io 28.5 with its containerd 2.1 and runc 1.3.
# The Docker of debian13 and unstable is never installed: scripts/fetch-engine.sh downloads and
# unpacks it into a cache, and this script runs it from there.
#
# The variables printed, per release (PREFIX below):
#   debian12  RT_CLEANUP_TEST_DOCKER_HOST, RT_CLEANUP_TEST_DAEMON_LOG, …_DAEMON_PIDFILE,
#             …_DAEMON_STARTED, RT_CLEANUP_TEST_IMAGE (the names the tests have always used);
#   debian13  RT_CLEANUP_TEST_DOCKER26_HOST, …_LOG, …_PIDFILE, …_STARTED, …_IMAGE;
#   unstable  RT_CLEANUP_TEST_DOCKER_UNSTABLE_HOST, …_LOG, …_PIDFILE, …_STARTED, …_IMAGE.
# `…_STARTED` says whether this call started the private daemon (yes) or reused one already
# running (no).
#
# With the release's host variable set to a reachable daemon, that daemon is used as it is.
# Otherwise a private dockerd is started as root on its own socket, data root and exec root under
# the release's root ($RT_CLEANUP_TEST_ROOT, default /tmp/rt-cleanup-test-docker, for debian12;
# $RT_CLEANUP_TEST_DOCKER26_ROOT, default /tmp/rt-cleanup-test-docker26, for debian13;
# $RT_CLEANUP_TEST_DOCKER_UNSTABLE_ROOT, default /tmp/rt-cleanup-test-docker-unstable), with no
# bridge and no iptables, so it touches no other daemon, container or network of the machine.
# For debian13 and unstable, the release's containerd is started first, on its own root, state
# and socket under the same root, with its CRI plugins off, and dockerd is given it with
# --containerd; both run with the release's programs first on PATH, so that its runc and shim
# run the containers. Debian's docker.io (for the docker CLI) and busybox-static are installed
# first when missing. The test image is built with `docker import` from busybox (no registry is
# reachable).
set -euo pipefail

command=${1:-start}
release=${2:-debian12}
IMAGE=${RT_CLEANUP_TEST_IMAGE:-rt-cleanup-test/busybox:1}
case "$release" in
  debian12)
    ROOT=${RT_CLEANUP_TEST_ROOT:-/tmp/rt-cleanup-test-docker}
    HOST_VAR=RT_CLEANUP_TEST_DOCKER_HOST LOG_VAR=RT_CLEANUP_TEST_DAEMON_LOG
    PIDFILE_VAR=RT_CLEANUP_TEST_DAEMON_PIDFILE STARTED_VAR=RT_CLEANUP_TEST_DAEMON_STARTED
    IMAGE_VAR=RT_CLEANUP_TEST_IMAGE
    ;;
  debian13 | unstable)
    if [ "$release" = debian13 ]; then PREFIX=RT_CLEANUP_TEST_DOCKER26; else
      PREFIX=RT_CLEANUP_TEST_DOCKER_UNSTABLE; fi
    root_var=${PREFIX}_ROOT
    default_root=/tmp/rt-cleanup-test-docker26
    [ "$release" = debian13 ] || default_root=/tmp/rt-cleanup-test-docker-unstable
    ROOT=${!root_var:-$default_root}
    HOST_VAR=${PREFIX}_HOST LOG_VAR=${PREFIX}_LOG PIDFILE_VAR=${PREFIX}_PIDFILE
    STARTED_VAR=${PREFIX}_STARTED IMAGE_VAR=${PREFIX}_IMAGE
    ;;
  *) printf 'test-daemon: unknown release %s: debian12, debian13 or unstable\n' "$release" >&2
    exit 1 ;;
esac
SOCK="$ROOT/docker.sock"
CONTAINERD_CONFIG="$ROOT/containerd.toml"
CONTAINERD_PIDFILE="$ROOT/containerd.pid"

log() { printf 'test-daemon (%s): %s\n' "$release" "$*" >&2; }
die() { log "$*"; exit 1; }

reachable() { DOCKER_HOST="$1" timeout 10 docker version --format '{{.Server.APIVersion}}' >/dev/null 2>&1; }

# Whether a pid is still the containerd this script started (a stale pid file must not make
# `stop` kill whatever process has that pid now).
our_containerd() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF "containerd --config $CONTAINERD_CONFIG"; }

# The release's containerd, with everything under $ROOT/containerd. containerd 2 reads a
# `version = 3` configuration, where the CRI is three plugins; containerd 1.7 a `version = 2` one.
start_containerd() {
  local dir="$ROOT/containerd" major
  major=$(containerd --version | sed -n 's/.* \([0-9]*\)\.[0-9]*\.[0-9][^ ]* .*/\1/p')
  mkdir -p "$dir"
  if [ "${major:-1}" -ge 2 ]; then
    cat >"$CONTAINERD_CONFIG" <<EOF
version = 3
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images"]
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
[debug]
  address = "$dir/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"
EOF
  else
    cat >"$CONTAINERD_CONFIG" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
[debug]
  address = "$dir/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"
EOF
  fi
  rm -f "$dir/containerd.sock"
  log "starting the release's containerd on $dir/containerd.sock (log: $ROOT/containerd.log)"
  # shellcheck disable=SC2016 # $$ and $@ are the inner shell's.
  # From /, as a daemon should run: a process inherits its working directory, and one that
  # was removed under it (a deleted checkout) makes conmon fail "Failed to get working
  # directory" on every container start.
  (cd / && exec setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$CONTAINERD_PIDFILE" \
    containerd --config "$CONTAINERD_CONFIG" >"$ROOT/containerd.log" 2>&1 </dev/null) &
  for _ in $(seq 1 80); do
    [ -S "$dir/containerd.sock" ] && return 0
    sleep 0.25
  done
  tail -n 20 "$ROOT/containerd.log" >&2 || true
  die "the release's containerd did not listen within 20s (log above)"
}

start_private() {
  [ "$(id -u)" = 0 ] || die "a private dockerd needs root; or set $HOST_VAR to a daemon"
  mkdir -p "$ROOT"
  if [ -S "$SOCK" ] && reachable "unix://$SOCK"; then
    log "reusing the private daemon at unix://$SOCK"
    STARTED=no
    return 0
  fi
  STARTED=yes
  rm -f "$SOCK"
  local containerd=()
  if [ "$release" != debian12 ]; then
    start_containerd
    containerd=(--containerd "$ROOT/containerd/containerd.sock")
  fi
  log "starting a private dockerd ($(dockerd --version)) on unix://$SOCK (log: $ROOT/dockerd.log)"
  # --debug makes the daemon log every request path: the tests read it to check which API
  # version rt-cleanup really puts on the wire.
  # From /, as a daemon should run: a process inherits its working directory, and one that
  # was removed under it (a deleted checkout) makes conmon fail "Failed to get working
  # directory" on every container start.
  (cd / && exec setsid dockerd --debug "${containerd[@]}" \
    --data-root "$ROOT/data" --exec-root "$ROOT/exec" --pidfile "$ROOT/dockerd.pid" \
    --host "unix://$SOCK" --bridge=none --iptables=false --ip-masq=false \
    >"$ROOT/dockerd.log" 2>&1 </dev/null) &
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

stop_pid() {
  local pid=$1 what=$2
  kill -CONT "$pid" 2>/dev/null || true
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  log "stopped the private $what ($pid)"
}

case "$command" in
  start)
    "$(dirname "$0")/ensure-packages.sh" dockerd=docker.io docker=docker.io \
      /bin/busybox=busybox-static
    if [ "$release" != debian12 ]; then
      engine=$("$(dirname "$0")/fetch-engine.sh" "$release")
      export PATH="$engine/bin:$PATH"
    fi
    given=${!HOST_VAR:-}
    if [ -n "$given" ]; then
      reachable "$given" || die "$HOST_VAR=$given does not answer"
      host=$given
      echo "export $HOST_VAR='$host'"
    else
      start_private
      host="unix://$SOCK"
      echo "export $HOST_VAR='$host'"
      echo "export $LOG_VAR='$ROOT/dockerd.log'"
      echo "export $PIDFILE_VAR='$ROOT/dockerd.pid'"
      # Whether this call started it (yes) or found it running (no): a caller stops only what
      # it started, never a daemon someone else is using.
      echo "export $STARTED_VAR='$STARTED'"
    fi
    build_image "$host"
    echo "export $IMAGE_VAR='$IMAGE'"
    ;;
  stop)
    if [ -f "$ROOT/dockerd.pid" ]; then
      stop_pid "$(cat "$ROOT/dockerd.pid")" dockerd
    fi
    # The containerd of debian13 and unstable, once its dockerd has stopped the containers.
    if [ -f "$CONTAINERD_PIDFILE" ]; then
      pid=$(cat "$CONTAINERD_PIDFILE")
      if our_containerd "$pid"; then stop_pid "$pid" containerd; fi
      rm -f "$CONTAINERD_PIDFILE"
    fi
    ;;
  *) die "usage: $0 start|stop [debian12|debian13|unstable]" ;;
esac
