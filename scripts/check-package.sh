#!/usr/bin/env bash
# Builds the Debian package and checks it with its real consumers, lintian and dpkg, on this
# machine, then puts the machine back as it was:
#
#   scripts/check-package.sh            # as root; CI runs it
#
# 1. scripts/build-deb.sh builds target/debian/rt-cleanup_*.deb.
# 2. lintian reports no error and no warning. Its one warning, initial-upload-closes-no-bugs,
#    is overridden in debian/rt-cleanup.lintian-overrides, which says why. The info tags it
#    prints are expected: hardening-no-fortify-functions (Rust calls libc without glibc's
#    _FORTIFY_SOURCE wrappers, which come from C headers; its bounds checks are the
#    language's), no-md5sums-control-file (cargo-deb writes none) and
#    spelling-error-in-binary (byte strings inside dependencies, not text of ours).
# 3. dpkg -i: every file is where it should be and nothing is under /usr/local;
#    rt-cleanup --version, man rt-cleanup and the commands' pages (man rt-cleanup-explain,
#    man rt-cleanup-history) work; systemd-analyze verify prints nothing for the installed
#    units; the rt-cleanup user exists, in the docker group; the timer is not enabled;
#    /etc/default/rt-cleanup is a conffile with every setting commented out; the tmpfiles.d
#    entry, applied as at boot, makes the rt-cleanup user's plan directory, where
#    the installed binary, run as that user, can write.
# 4. A second dpkg -i of the same version (the upgrade path) keeps an edited
#    /etc/default/rt-cleanup.
# 5. dpkg -r removes the binary and the units and keeps the conffile; dpkg -P removes it.
#
# Afterwards, whether the checks passed or not, the package is purged, the rt-cleanup user and
# group are deleted (Debian's packages leave their system users behind on purge, so the
# package does too), the docker group is deleted if the package created it, and so is the plan
# directory. The script refuses to start on a machine where rt-cleanup is already installed
# in any form, since that cleanup would remove it.
#
# It works without systemd as PID 1 (in a container or CI): the maintainer scripts then skip
# what needs a running systemd (daemon-reload, tmpfiles at install), and every check here works
# on files. As root on a fresh Debian 12 machine it installs what it needs with apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGE=rt-cleanup
USER_NAME=rt-cleanup
PLAN_DIR=/var/tmp/rt-cleanup

log() { printf 'check-package: %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "installs a package: run as root"
"$(dirname "$0")/ensure-packages.sh" lintian=lintian systemd-analyze=systemd man=man-db \
  runuser=util-linux

# Anything of rt-cleanup already here belongs to someone: the cleanup below would delete it.
package_state() { dpkg-query -W -f='${db:Status-Abbrev}' "$PACKAGE" 2>/dev/null || true; }
found=()
[ -z "$(package_state)" ] || found+=("package $PACKAGE ($(package_state))")
getent passwd "$USER_NAME" >/dev/null && found+=("user $USER_NAME")
getent group "$USER_NAME" >/dev/null && found+=("group $USER_NAME")
for path in /etc/default/rt-cleanup /etc/systemd/system/rt-cleanup.service \
  /etc/systemd/system/rt-cleanup.timer /usr/local/bin/rt-cleanup "$PLAN_DIR"; do
  [ ! -e "$path" ] && [ ! -L "$path" ] || found+=("$path")
done
[ ${#found[@]} -eq 0 ] ||
  die "rt-cleanup is already on this machine (${found[*]}); this check installs and then" \
    "removes it, so run it on a machine without it"

work=$(mktemp -d)
docker_group_existed=$(getent group docker >/dev/null && echo yes || echo no)

restore() {
  local status=$?
  set +e
  log "restoring the machine"
  if [ -n "$(package_state)" ]; then
    dpkg --purge "$PACKAGE" >"$work/purge.log" 2>&1 || cat "$work/purge.log" >&2
  fi
  rm -rf "$PLAN_DIR"
  getent passwd "$USER_NAME" >/dev/null && userdel "$USER_NAME"
  getent group "$USER_NAME" >/dev/null && groupdel "$USER_NAME"
  if [ "$docker_group_existed" = no ] && getent group docker >/dev/null; then
    groupdel docker
  fi
  rm -rf "$work"
  local left=()
  [ -z "$(package_state)" ] || left+=("package $PACKAGE")
  getent passwd "$USER_NAME" >/dev/null && left+=("user $USER_NAME")
  getent group "$USER_NAME" >/dev/null && left+=("group $USER_NAME")
  if [ ${#left[@]} -ne 0 ]; then
    log "FAIL: could not restore the machine: ${left[*]} still here"
    status=1
  else
    log "restored: no $PACKAGE package, no $USER_NAME user or group"
  fi
  exit "$status"
}
trap restore EXIT

deb=$(scripts/build-deb.sh)
version=$(dpkg-deb -f "$deb" Version)
log "built $deb (version $version)"
changelog_version=$(dpkg-parsechangelog -l debian/changelog -S Version)
[ "$changelog_version" = "$version" ] ||
  die "debian/changelog is at $changelog_version but the package is $version: add an entry"

# lintian unpacks what it checks; as root it says it should not, so it runs as nobody on a
# copy that nobody can read ($work itself is private to root), with a TMPDIR of its own,
# because it leaves a cache file (mldbm-elf-*) behind in TMPDIR. It runs from that directory:
# lintian changes back to its working directory, and the checkout may be one that nobody cannot
# enter (a clone in root's home directory, mode 700: "Can't cd to ...: Permission denied").
log "lintian $(basename "$deb")"
lint_dir=$(mktemp -d)
chmod 0755 "$lint_dir"
install -m 0644 "$deb" "$lint_dir/"
install -d -m 0700 -o nobody "$lint_dir/tmp"
lint_rc=0
(cd "$lint_dir" && runuser -u nobody -- env TMPDIR="$lint_dir/tmp" lintian \
  --fail-on error,warning --display-info --pedantic "$(basename "$deb")") || lint_rc=$?
rm -rf "$lint_dir"
[ "$lint_rc" -eq 0 ] || die "lintian exited $lint_rc: errors or warnings (above)"
log "lintian: no errors, no warnings; overridden, with the reason beside it:" \
  "$(grep -v '^#' debian/rt-cleanup.lintian-overrides | sed 's/^[^:]*: //' | paste -sd ' ')"

log "dpkg -i $(basename "$deb")"
dpkg -i "$deb" </dev/null
[ "$(package_state)" = "ii " ] || die "after dpkg -i the package is '$(package_state)'"

log "checking the installed files"
expected=(
  /usr/bin/rt-cleanup
  /usr/lib/systemd/system/rt-cleanup.service
  /usr/lib/systemd/system/rt-cleanup.timer
  /usr/lib/systemd/system/rt-cleanup-failure@.service
  /usr/libexec/rt-cleanup/on-failure
  /etc/default/rt-cleanup
  /usr/lib/sysusers.d/rt-cleanup.conf
  /usr/lib/tmpfiles.d/rt-cleanup.conf
  /usr/share/man/man1/rt-cleanup.1.gz
  /usr/share/man/man1/rt-cleanup-explain.1.gz
  /usr/share/man/man1/rt-cleanup-history.1.gz
  /usr/share/bash-completion/completions/rt-cleanup
  /usr/share/zsh/vendor-completions/_rt-cleanup
  /usr/share/fish/vendor_completions.d/rt-cleanup.fish
  /usr/share/rt-cleanup/monitoring/rt-cleanup.rules.yml
  /usr/share/rt-cleanup/monitoring/rt-cleanup.rules.test.yml
  /usr/share/doc/rt-cleanup/README.md
  /usr/share/doc/rt-cleanup/copyright
  /usr/share/doc/rt-cleanup/changelog.Debian.gz
  /usr/share/doc/rt-cleanup/examples/cron
  /usr/share/doc/rt-cleanup/examples/rt-cleanup.env
  /usr/share/doc/rt-cleanup/examples/summary.json
  /usr/share/doc/rt-cleanup/examples/remote-docker-tls.conf
  /usr/share/lintian/overrides/rt-cleanup
)
# Every page of docs/, whatever pages it has by then.
for doc in docs/*.md; do expected+=("/usr/share/doc/rt-cleanup/$(basename "$doc")"); done
for path in "${expected[@]}"; do
  [ -s "$path" ] || die "$path is missing or empty"
done
for path in /usr/bin/rt-cleanup /usr/libexec/rt-cleanup/on-failure; do
  [ -x "$path" ] || die "$path is not executable"
done
if dpkg -L "$PACKAGE" | grep /usr/local; then die "the package installs under /usr/local"; fi
if grep -n /usr/local /usr/lib/systemd/system/rt-cleanup*.service \
  /usr/lib/systemd/system/rt-cleanup.timer /usr/libexec/rt-cleanup/on-failure; then
  die "the installed units or hook name /usr/local paths"
fi
grep -qx 'ExecStart=/usr/bin/rt-cleanup' /usr/lib/systemd/system/rt-cleanup.service ||
  die "rt-cleanup.service does not run /usr/bin/rt-cleanup"
grep -qx 'ExecStart=/usr/libexec/rt-cleanup/on-failure %i' \
  /usr/lib/systemd/system/rt-cleanup-failure@.service ||
  die "rt-cleanup-failure@.service does not run /usr/libexec/rt-cleanup/on-failure"
log "all ${#expected[@]} files are in place, none under /usr/local"

installed_version=$(rt-cleanup --version)
log "rt-cleanup --version: $installed_version"
[ "$installed_version" = "rt-cleanup ${version%-*}" ] ||
  die "rt-cleanup --version says '$installed_version', the package is $version"
[ "$(man -w rt-cleanup)" = /usr/share/man/man1/rt-cleanup.1.gz ] ||
  die "man -w rt-cleanup finds '$(man -w rt-cleanup 2>&1)'"
page=$(MANWIDTH=200 man -P cat rt-cleanup 2>"$work/man.err") || die "man rt-cleanup failed"
[ ! -s "$work/man.err" ] || die "man rt-cleanup printed: $(cat "$work/man.err")"
grep -q -- '--retention' <<<"$page" || die "man rt-cleanup does not show --retention"
grep -q '/usr/lib/systemd/system/rt-cleanup.service' <<<"$page" ||
  die "man rt-cleanup does not name the package's unit paths in FILES"
log "man rt-cleanup: $(grep -A1 '^NAME' <<<"$page" | tail -n 1 | sed 's/^ *//')"
for command in explain history; do
  page=$(MANWIDTH=200 man -P cat "rt-cleanup-$command" 2>"$work/man.err") ||
    die "man rt-cleanup-$command failed"
  [ ! -s "$work/man.err" ] || die "man rt-cleanup-$command printed: $(cat "$work/man.err")"
  grep -qE -- "rt-cleanup +$command" <<<"$page" ||
    die "man rt-cleanup-$command does not show its synopsis"
done
log "man rt-cleanup-explain and man rt-cleanup-history render"

# The installed units, by name, from the real unit path: verify must print nothing (it also
# checks that ExecStart= programs exist and that man:rt-cleanup(1) is found).
units=(rt-cleanup.service rt-cleanup.timer rt-cleanup-failure@rt-cleanup.service.service)
log "systemd-analyze verify ${units[*]}"
verify_rc=0
verify_output=$(systemd-analyze verify "${units[@]}" 2>&1) || verify_rc=$?
if [ -n "$verify_output" ] || [ "$verify_rc" -ne 0 ]; then
  printf '%s\n' "$verify_output" >&2
  die "systemd-analyze verify exited $verify_rc and printed the lines above"
fi
log "systemd-analyze verify: no findings"

passwd_entry=$(getent passwd "$USER_NAME") || die "dpkg -i did not create the $USER_NAME user"
IFS=: read -r _ _ uid _ _ home shell <<<"$passwd_entry"
[ "$uid" -lt 1000 ] || die "$USER_NAME is not a system user (uid $uid)"
if [ "$home" != /nonexistent ] || [ "$shell" != /usr/sbin/nologin ]; then
  die "$USER_NAME has home $home and shell $shell"
fi
groups=$(id -nG "$USER_NAME")
[[ " $groups " == *" docker "* ]] || die "$USER_NAME is not in the docker group: $groups"
log "user: $passwd_entry; groups: $groups"

enabled=$(systemctl is-enabled rt-cleanup.timer 2>&1 || true)
[ "$enabled" = disabled ] || die "systemctl is-enabled rt-cleanup.timer says '$enabled'"
[ ! -e /etc/systemd/system/timers.target.wants/rt-cleanup.timer ] ||
  die "the package enabled the timer"
log "rt-cleanup.timer: $enabled"

dpkg-query -W -f='${Conffiles}\n' "$PACKAGE" | grep -q '^ /etc/default/rt-cleanup ' ||
  die "/etc/default/rt-cleanup is not a conffile"
if grep -nv '^#' /etc/default/rt-cleanup | grep -v '^[0-9]*:$'; then
  die "/etc/default/rt-cleanup sets something (the lines above): every setting must be commented"
fi
log "/etc/default/rt-cleanup: a conffile, every setting commented out"

# The maintainer scripts apply tmpfiles.d only under a running systemd; elsewhere boot does.
# Apply it as boot would, then run the installed binary as the service user, writing into the
# directory made for it: a run on a state file that does not exist exits 2 (or 69 without
# Docker) and changes nothing, but writes the metrics file it is given.
log "systemd-tmpfiles --create rt-cleanup.conf"
systemd-tmpfiles --create rt-cleanup.conf
[ "$(stat -c '%U:%G %a' "$PLAN_DIR")" = "rt-cleanup:rt-cleanup 750" ] ||
  die "$PLAN_DIR is $(stat -c '%U:%G %a' "$PLAN_DIR"), not rt-cleanup:rt-cleanup 750"
probe=$PLAN_DIR/probe.prom
probe_rc=0
# From / as systemd starts it, not from the checkout, which the user may not be able to enter.
(cd / && runuser -u "$USER_NAME" -- rt-cleanup --retention 7d --state "$work/no-such-state.db" \
  --metrics-file "$probe") 2>"$work/probe.log" || probe_rc=$?
[ "$probe_rc" -eq 2 ] || [ "$probe_rc" -eq 69 ] ||
  die "the run as $USER_NAME exited $probe_rc: $(cat "$work/probe.log")"
grep -q "^rt_cleanup_last_run_exit_status $probe_rc\$" "$probe" ||
  die "$USER_NAME could not write $probe: $(cat "$work/probe.log")"
grep -q '^rt_cleanup_retention_seconds 604800$' "$probe" ||
  die "$probe has no rt_cleanup_retention_seconds 604800"
log "$PLAN_DIR is rt-cleanup's; rt-cleanup, run as $USER_NAME, wrote $probe there" \
  "(the run exited $probe_rc: $(tail -n 1 "$work/probe.log"))"

log "upgrade path: edit /etc/default/rt-cleanup, then dpkg -i the same package again"
echo 'RT_CLEANUP_RETENTION=3d' >>/etc/default/rt-cleanup
dpkg -i "$deb" </dev/null
[ "$(package_state)" = "ii " ] || die "after the second dpkg -i the package is '$(package_state)'"
grep -qx 'RT_CLEANUP_RETENTION=3d' /etc/default/rt-cleanup ||
  die "the second dpkg -i lost the edit of /etc/default/rt-cleanup"
if ls /etc/default/rt-cleanup.dpkg-* 2>/dev/null; then
  die "dpkg left the files above beside /etc/default/rt-cleanup"
fi
getent passwd "$USER_NAME" >/dev/null || die "the second dpkg -i lost the $USER_NAME user"
log "the edited /etc/default/rt-cleanup was kept"

log "dpkg -r $PACKAGE"
dpkg -r "$PACKAGE" </dev/null
[ "$(package_state)" = "rc " ] || die "after dpkg -r the package is '$(package_state)'"
for path in /usr/bin/rt-cleanup /usr/lib/systemd/system/rt-cleanup.service \
  /usr/lib/systemd/system/rt-cleanup.timer /usr/lib/systemd/system/rt-cleanup-failure@.service \
  /usr/libexec/rt-cleanup/on-failure /usr/share/man/man1/rt-cleanup.1.gz \
  /usr/share/man/man1/rt-cleanup-explain.1.gz /usr/share/man/man1/rt-cleanup-history.1.gz; do
  [ ! -e "$path" ] || die "dpkg -r left $path"
done
grep -qx 'RT_CLEANUP_RETENTION=3d' /etc/default/rt-cleanup ||
  die "dpkg -r did not keep the edited /etc/default/rt-cleanup"
log "dpkg -r removed the binary and the units, and kept /etc/default/rt-cleanup"
if [ "$(readlink /etc/systemd/system/rt-cleanup.timer 2>/dev/null)" = /dev/null ]; then
  log "rt-cleanup.timer is masked until the package is purged (debhelper's convention)"
fi

log "dpkg -P $PACKAGE"
dpkg -P "$PACKAGE" </dev/null
[ -z "$(package_state)" ] || [ "$(package_state)" = "un " ] ||
  die "after dpkg -P the package is '$(package_state)'"
[ ! -e /etc/default/rt-cleanup ] || die "dpkg -P left /etc/default/rt-cleanup"
if leftovers=$(find /etc/systemd/system /var/lib/systemd/deb-systemd-helper-enabled \
  /var/lib/systemd/deb-systemd-helper-masked -name 'rt-cleanup*' 2>/dev/null) &&
  [ -n "$leftovers" ]; then
  die "dpkg -P left systemd state behind: $leftovers"
fi
log "dpkg -P removed /etc/default/rt-cleanup and left no unit links or masks"
log "OK"
