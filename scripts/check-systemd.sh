#!/usr/bin/env bash
# Checks the systemd units in systemd/ the way CI must: `systemd-analyze verify` has to print
# nothing for the service, the timer and the failure handler, and `systemd-analyze security
# --offline=true` has to give rt-cleanup.service an overall exposure of 2.0 or less. The service
# with the drop-in for a remote daemon over TLS (systemd/remote-docker-tls.conf) is checked too:
# verify prints nothing, and its exposure is at most 2.5.
#
#   scripts/check-systemd.sh
#
# Needs systemd-analyze (Debian's systemd package) and man (man-db); as root on a machine that
# lacks them (a fresh Debian 12 CI machine), it installs them with apt-get. It needs no running
# systemd: both checks work on unit files.
#
# verify checks that every ExecStart= program exists and that every man: page of
# Documentation= is found by man(1). Rather than install anything into the real /usr/local, it
# runs with --root= on a throwaway tree that holds the units, the freshly built binary, the
# failure hook and a copy of systemd's own units (verify resolves sysinit.target and the like
# under the root too), and with MANPATH pointing at a man page generated from the clap
# definition (examples/generate-assets.rs), so it also proves that the page `man rt-cleanup`
# should find is generated.
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_EXPOSURE=2.0
# With the drop-in that opens the network to one remote daemon.
MAX_EXPOSURE_REMOTE=2.5

log() { printf 'check-systemd: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }


"$(dirname "$0")/ensure-packages.sh" systemd-analyze=systemd man=man-db
log "$(systemd-analyze --version | head -n 1)"
# --offline= arrived in systemd 250 (Debian 12 has 252). Without it, security can only inspect
# units loaded in a running manager, which CI does not have: fail and say so.
systemd-analyze security --help | grep -q -- '--offline=' ||
  die "this systemd-analyze has no 'security --offline=': systemd 250 or later is needed"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log "building the binary and the man page"
cargo build --locked --quiet --bin rt-cleanup
cargo run --locked --quiet --example generate-assets -- "$work/assets" >/dev/null
target_dir=${CARGO_TARGET_DIR:-target}

root="$work/root"
mkdir -p "$root/etc/systemd/system" "$root/usr/lib/systemd" "$root/usr/local/bin" \
  "$root/usr/local/libexec/rt-cleanup" "$work/man/man1"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
cp systemd/rt-cleanup.service systemd/rt-cleanup.timer systemd/rt-cleanup-failure@.service \
  "$root/etc/systemd/system/"
install -m 0755 "$target_dir/debug/rt-cleanup" "$root/usr/local/bin/rt-cleanup"
install -m 0755 systemd/rt-cleanup-on-failure "$root/usr/local/libexec/rt-cleanup/on-failure"
cp "$work/assets/rt-cleanup.1" "$work/man/man1/"

status=0
units=(rt-cleanup.service rt-cleanup.timer rt-cleanup-failure@rt-cleanup.service.service)
log "systemd-analyze verify ${units[*]}"
verify_rc=0
verify_output=$(MANPATH="$work/man" systemd-analyze verify --root="$root" "${units[@]}" 2>&1) ||
  verify_rc=$?
if [ -n "$verify_output" ] || [ "$verify_rc" -ne 0 ]; then
  printf '%s\n' "$verify_output"
  log "FAIL: verify exited $verify_rc and printed the lines above; it must print nothing"
  status=1
else
  log "verify: no findings"
fi

# exposure UNIT_FILE_OR_NAME LIMIT [--root=DIR]: rates the unit, prints what still adds exposure
# (the passing settings omitted) and the overall figure, and fails above the limit. With --root,
# the unit is loaded from that tree, drop-ins included.
exposure() {
  local unit=$1 limit=$2 output figure
  shift 2
  log "systemd-analyze security --offline=true ${*:+$* }$unit"
  output=$(systemd-analyze security --offline=true "$@" "$unit" 2>&1) || true
  printf '%s\n' "$output" | grep -v '^✓' || true
  figure=$(printf '%s\n' "$output" |
    sed -n 's/^.*Overall exposure level for rt-cleanup\.service: \([0-9][0-9.]*\).*$/\1/p')
  [ -n "$figure" ] || die "FAIL: no overall exposure level in the output of security"
  echo "rt-cleanup.service$label exposure: $figure (limit $limit)"
  if awk -v e="$figure" -v max="$limit" 'BEGIN { exit !(e > max) }'; then
    log "FAIL: exposure $figure is above $limit"
    status=1
  fi
}

label=""
exposure systemd/rt-cleanup.service "$MAX_EXPOSURE"

# The same unit with the remote-daemon drop-in, in a second tree.
remote="$work/root-remote"
cp -a "$root" "$remote"
install -D -m 0644 systemd/remote-docker-tls.conf \
  "$remote/etc/systemd/system/rt-cleanup.service.d/remote-docker-tls.conf"
log "systemd-analyze verify rt-cleanup.service with systemd/remote-docker-tls.conf"
verify_rc=0
verify_output=$(MANPATH="$work/man" systemd-analyze verify --root="$remote" rt-cleanup.service 2>&1) ||
  verify_rc=$?
if [ -n "$verify_output" ] || [ "$verify_rc" -ne 0 ]; then
  printf '%s\n' "$verify_output"
  log "FAIL: verify with the drop-in exited $verify_rc and printed the lines above"
  status=1
else
  log "verify with the drop-in: no findings"
fi
label=" with remote-docker-tls.conf"
exposure rt-cleanup.service "$MAX_EXPOSURE_REMOTE" --root="$remote"

[ "$status" -eq 0 ] && log "OK"
exit "$status"
