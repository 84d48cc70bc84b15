#!/usr/bin/env bash
# Brings up a Podman service that rt-cleanup's contract tests run against besides Docker
# (docs/contract.md, "Engines": Podman's Docker-compatible API is a supported engine).
#
#   scripts/test-podman.sh start [RELEASE]   # prints shell assignments:
#                                            # eval "$(scripts/test-podman.sh start)"
#   scripts/test-podman.sh stop [RELEASE]    # removes its containers and stops the service it
#                                            # started
#
# RELEASE is whose Podman it is:
#   debian12  (default) Debian 12's podman 4.3 with Debian 12's runc, installed when missing;
#   debian13  Debian 13's podman 5.4 with its conmon, netavark and runc 1.1.15;
#   unstable  Debian unstable's podman 5.8 with its conmon, netavark and runc 1.3.
# The Podman of debian13 and unstable is never installed: scripts/fetch-engine.sh downloads and
# unpacks it into a cache (patched to run on Debian 12's kernel and libraries), and this script
# runs it from there. Their crun fails on this kind of host ("cgroups in hybrid mode not
# supported"), so runc runs the containers of every release.
#
# The variables printed, per release (PREFIX below):
#   debian12  RT_CLEANUP_TEST_PODMAN_HOST, …_LOG, …_PIDFILE, …_STARTED, …_IMAGE;
#   debian13  RT_CLEANUP_TEST_PODMAN5_HOST, …_LOG, …_PIDFILE, …_STARTED, …_IMAGE;
#   unstable  RT_CLEANUP_TEST_PODMAN_UNSTABLE_HOST, …_LOG, …_PIDFILE, …_STARTED, …_IMAGE.
# `…_STARTED` says whether this call started the private service (yes) or reused one already
# running (no).
#
# With the release's host variable set to a reachable service, that service is used as it is.
# Otherwise a private rootful `podman system service` is started on its own socket, with its own
# storage, run root, runc root, temp, static, volume and network directories, its own lock files
# and its own containers.conf and storage.conf, all under the release's root ($PREFIX_ROOT,
# default /tmp/rt-cleanup-test-podman, /tmp/rt-cleanup-test-podman5 or
# /tmp/rt-cleanup-test-podman-unstable), so it touches no other Podman store, container or network
# of the machine. Every start (also one that reuses a running service) writes `$ROOT/podman`, the
# one place the service's podman binary, roots, configuration and flags are written down: a
# wrapper that runs podman on this store (`$ROOT/podman ps -a`), for this script and the tests. Debian's podman and runc (debian12), docker.io (for the docker CLI the tests
# drive containers with) and busybox-static are installed first when missing. The test image has
# the same name as the Docker test image and is built the same way, with `podman import` (no
# registry is reachable).
#
# The docker CLI talks to the service as it is: Podman 4.3 and 5.4 answer /_ping with Api-Version
# 1.41, Podman 5.8 with 1.44, and the CLI negotiates down to it, so no DOCKER_API_VERSION is
# needed.
set -euo pipefail

command=${1:-start}
release=${2:-debian12}
case "$release" in
  debian12) PREFIX=RT_CLEANUP_TEST_PODMAN default_root=/tmp/rt-cleanup-test-podman ;;
  debian13) PREFIX=RT_CLEANUP_TEST_PODMAN5 default_root=/tmp/rt-cleanup-test-podman5 ;;
  unstable)
    PREFIX=RT_CLEANUP_TEST_PODMAN_UNSTABLE default_root=/tmp/rt-cleanup-test-podman-unstable ;;
  *) printf 'test-podman: unknown release %s: debian12, debian13 or unstable\n' "$release" >&2
    exit 1 ;;
esac
root_var=${PREFIX}_ROOT
ROOT=${!root_var:-$default_root}
# Absolute: the service is started from / (start_private).
[[ "$ROOT" == /* ]] || ROOT=$PWD/$ROOT
HOST_VAR=${PREFIX}_HOST
SOCK="$ROOT/podman.sock"
PIDFILE="$ROOT/podman.pid"
LOG="$ROOT/podman.log"
IMAGE=${RT_CLEANUP_TEST_IMAGE:-rt-cleanup-test/busybox:1}

log() { printf 'test-podman (%s): %s\n' "$release" "$*" >&2; }
die() { log "$*"; exit 1; }

reachable() { DOCKER_HOST="$1" timeout 10 docker version --format '{{.Server.APIVersion}}' >/dev/null 2>&1; }

# A process that has exited but is not yet reaped (PID 1 here reaps late) still answers kill -0.
alive() {
  local state
  state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# Whether a pid is still the service this script started (a stale pid file must not make `stop`
# kill whatever process has that pid now).
ours() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF "system service --time=0 unix://$SOCK"; }

# The release's programs: Debian 12's from PATH, the others' from scripts/fetch-engine.sh's cache
# (which downloads them only the first time).
if [ "$release" = debian12 ]; then
  PODMAN_PROGRAM=podman
else
  ENGINE=$("$(dirname "$0")/fetch-engine.sh" "$release")
  PODMAN_PROGRAM=$ENGINE/bin/podman
fi

# Podman as the private service and every command on its store see it: the same roots and
# configuration, given both as flags and in the files (the flags win over any system-wide
# /etc/containers configuration; the files cover what has no flag). Podman 5 warns on every
# command that cgroups v1 is deprecated, as it is on this kind of host: the warning is known.
# They are written once, into $ROOT/podman (write_cli), which this script and the tests run:
# `$ROOT/podman ps -a` is podman on this store. $ROOT/podman.program links to the release's
# podman binary, which the wrapper runs unless RT_CLEANUP_TEST_PODMAN_PROGRAM names another
# (the tests run a copy of it that they delete, to leave a container `stopped`: see
# `Containers::run_left_stopped` in tests/integration/harness/daemon.rs).
PODMAN=("$ROOT/podman")
podman_private() { "${PODMAN[@]}" "$@"; }

write_cli() {
  mkdir -p "$ROOT"
  ln -sfn "$(command -v "$PODMAN_PROGRAM")" "$ROOT/podman.program"
  local flags
  flags=$(printf ' %q' --root "$ROOT/storage" --runroot "$ROOT/runroot" --storage-driver vfs \
    --cgroup-manager cgroupfs --events-backend file --runtime runc --runtime-flag "root=$ROOT/runc")
  cat >"$ROOT/podman.new" <<EOF
#!/bin/bash
# Written by scripts/test-podman.sh ($release): podman on the store of the private service at
# unix://$SOCK, with its roots and configuration.
program=$(printf %q "$ROOT/podman.program")
[ -z "\${RT_CLEANUP_TEST_PODMAN_PROGRAM:-}" ] || program=\$RT_CLEANUP_TEST_PODMAN_PROGRAM
exec env CONTAINERS_CONF=$(printf %q "$ROOT/containers.conf") \\
  CONTAINERS_STORAGE_CONF=$(printf %q "$ROOT/storage.conf") PODMAN_IGNORE_CGROUPSV1_WARNING=1 \\
  "\$program"$flags "\$@"
EOF
  chmod 755 "$ROOT/podman.new"
  mv "$ROOT/podman.new" "$ROOT/podman"
}

write_config() {
  mkdir -p "$ROOT"/{storage,runroot,runc,tmp,static,volumes,networks}
  # - default_ulimits: Podman's defaults (nofile 1048576) exceed the hard limit of a root without
  #   CAP_SYS_RESOURCE (as in many CI sandboxes), and every start would fail with "error setting
  #   rlimit type 7".
  # - netns "none": the tests need no network, and no bridge, CNI or iptables rule is made.
  # - cgroupfs and the file events logger: no systemd (nor journald) needs to be running.
  # - runc, with its state under our root: the runtime docker.io uses too, and no state is shared
  #   with another runc user.
  # - file locks, under our temp directory ($ROOT/tmp/locks): Podman's default is one shared
  #   memory segment, /dev/shm/libpod_lock, for every rootful Podman of the machine, whatever its
  #   store or release. Sharing it, stores hand out lock numbers from one pool: a store refreshed
  #   after a reboot re-takes its containers' numbers and fails where another store holds one
  #   (the two containers then share a lock), and `podman system renumber` or `reset` on any of
  #   them frees every lock of the segment. With its own lock files, no other Podman (the host's,
  #   another release's service, scripts/bench.sh's) can touch this service's locks, nor it theirs.
  cat >"$ROOT/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
netns = "none"

[network]
network_config_dir = "$ROOT/networks"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$ROOT/events.log"
runtime = "runc"
tmp_dir = "$ROOT/tmp"
static_dir = "$ROOT/static"
volume_path = "$ROOT/volumes"
lock_type = "file"
EOF
  # A newer release's Podman runs every program of its own release: conmon, runc (its crun
  # fails here: "cgroups in hybrid mode not supported"), netavark (looked for among the helper
  # binaries even with no network), and its seccomp profile.
  if [ "$release" != debian12 ]; then
    cat >>"$ROOT/containers.conf" <<EOF
conmon_path = ["$ENGINE/bin/conmon"]
helper_binaries_dir = ["$ENGINE/bin"]

[engine.runtimes]
runc = ["$ENGINE/bin/runc"]
EOF
    sed -i "s|^netns = \"none\"\$|&\nseccomp_profile = \"$ENGINE/root/usr/share/containers/seccomp.json\"|" \
      "$ROOT/containers.conf"
  fi
  # vfs: no overlay or fuse-overlayfs needed, which a nested or sandboxed machine may not allow.
  cat >"$ROOT/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$ROOT/storage"
runroot = "$ROOT/runroot"
EOF
}

start_private() {
  [ "$(id -u)" = 0 ] || die "a private podman service needs root; or set $HOST_VAR"
  # Written on every start, also when the service is reused: it is how the tests reach the store.
  write_cli
  if [ -S "$SOCK" ] && reachable "unix://$SOCK"; then
    log "reusing the private podman service at unix://$SOCK"
    STARTED=no
    return 0
  fi
  STARTED=yes
  write_config
  rm -f "$SOCK"
  log "starting a private podman service ($("${PODMAN[@]}" --version)) on unix://$SOCK (log: $LOG)"
  # --log-level=info makes Podman log every request line ("GET /v1.41/… HTTP/1.1" …): the tests
  # read it to check which API version rt-cleanup really puts on the wire. Not debug: at debug
  # level Podman gives each container's exit command --syslog, which fails where no /dev/log
  # exists (no syslog daemon, as here), so a container that exits by itself is never cleaned up
  # and stays "stopped" instead of "exited". --time=0: the service never exits for idleness.
  # `system service` has no pid file option, so the shell that becomes the service writes its
  # own pid first. It runs in /, not in the caller's directory: every conmon it starts inherits
  # its working directory and exits at once ("Failed to get working directory", every container
  # start then fails with "conmon failed: exit status 1") once that directory is removed, as a
  # checkout or worktree the tests ran from may be while the service runs on.
  # shellcheck disable=SC2016 # $$ and $@ are the inner shell's.
  setsid bash -c 'cd / && echo $$ >"$1"; shift; exec "$@"' _ "$PIDFILE" \
    "${PODMAN[@]}" --log-level=info system service --time=0 "unix://$SOCK" \
    >"$LOG" 2>&1 </dev/null &
  for _ in $(seq 1 120); do
    reachable "unix://$SOCK" && return 0
    sleep 0.25
  done
  tail -n 20 "$LOG" >&2 || true
  die "the private podman service did not answer within 30s (log above)"
}

build_image() {
  local host=$1
  if DOCKER_HOST="$host" docker image inspect "$IMAGE" >/dev/null 2>&1; then return 0; fi
  log "building $IMAGE with podman import from /bin/busybox"
  # Podman stores it as localhost/$IMAGE; the compatibility API resolves the plain name to it.
  "$(dirname "$0")/test-image-rootfs.sh" | podman_private import --quiet \
    -c 'CMD ["/bin/busybox", "sleep", "3600"]' - "$IMAGE" >/dev/null
  DOCKER_HOST="$host" docker image inspect "$IMAGE" >/dev/null 2>&1 ||
    die "the service at $host does not see $IMAGE after the import"
}

case "$command" in
  start)
    if [ "$release" = debian12 ]; then
      "$(dirname "$0")/ensure-packages.sh" podman=podman /usr/sbin/runc=runc
    fi
    "$(dirname "$0")/ensure-packages.sh" docker=docker.io /bin/busybox=busybox-static
    given=${!HOST_VAR:-}
    if [ -n "$given" ]; then
      reachable "$given" || die "$HOST_VAR=$given does not answer"
      # Someone else's service: its image is theirs to provide (podman import has no remote form
      # through the docker CLI here), so only check it.
      DOCKER_HOST="$given" docker image inspect "$IMAGE" >/dev/null 2>&1 ||
        die "$given has no image $IMAGE"
      echo "export $HOST_VAR='$given'"
    else
      start_private
      build_image "unix://$SOCK"
      echo "export $HOST_VAR='unix://$SOCK'"
      echo "export ${PREFIX}_LOG='$LOG'"
      echo "export ${PREFIX}_PIDFILE='$PIDFILE'"
      # Whether this call started it (yes) or found it running (no).
      echo "export ${PREFIX}_STARTED='$STARTED'"
    fi
    echo "export ${PREFIX}_IMAGE='$IMAGE'"
    ;;
  stop)
    if [ -f "$PIDFILE" ]; then
      pid=$(cat "$PIDFILE")
      # Containers outlive the service (each has its own conmon): remove every container of this
      # private store first, so that nothing it started keeps running. The store is ours alone and
      # is used directly, so this works even when the service has died.
      if [ -f "$ROOT/containers.conf" ]; then
        write_cli
        podman_private rm --all --force --time 0 >/dev/null 2>&1 ||
          log "could not remove every container of the private store (see podman ps -a there)"
      fi
      if ours "$pid"; then
        kill -CONT "$pid" 2>/dev/null || true
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 60); do alive "$pid" || break; sleep 0.25; done
      fi
      if ours "$pid" && alive "$pid"; then
        log "the private podman service ($pid) did not stop within 15s"
      else
        rm -f "$PIDFILE" "$SOCK"
        log "stopped the private podman service ($pid)"
      fi
    fi
    ;;
  *) die "usage: $0 start|stop [debian12|debian13|unstable]" ;;
esac
