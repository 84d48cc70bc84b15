#!/usr/bin/env bash
# Fetches the Docker and Podman of a newer Debian release for the tests, without installing
# anything of that release on this (Debian 12) machine, and prints the directory that holds them.
#
#   scripts/fetch-engine.sh debian13              # Debian 13 "trixie": Docker 26, Podman 5.4
#   scripts/fetch-engine.sh unstable              # Debian unstable "sid": Docker 28, Podman 5.8
#   scripts/fetch-engine.sh unstable --refresh    # download again (unstable changes under you)
#
# The directory, $RT_CLEANUP_TEST_ENGINES/<release> (default /var/cache/rt-cleanup-test-engines),
# holds:
#   root/      every package below unpacked with `dpkg-deb -x` (never installed: dpkg does not
#              know them, and nothing outside this directory changes);
#   bin/       the programs the test daemons run: dockerd, docker-proxy, containerd,
#              containerd-shim-runc-v2, runc, podman, conmon, netavark;
#   versions   the package versions, one `package version` a line.
# It is made once and reused by every later call (scripts/test.sh calls this on each run); a call
# that finds it complete downloads nothing. Several calls at once wait for one another.
#
# The packages come from `apt-get download` against a package list of the release's own
# (`apt-get update` with Dir::Etc::SourceList naming the release's `main`, and lists and caches in
# the directory being made), from $RT_CLEANUP_TEST_DEBIAN_MIRROR (default
# http://deb.debian.org/debian), checked with Debian's archive keyring. They are the engines, the
# runtime, the helpers, Podman's seccomp profile and every library (lib*) package they depend on,
# recursively, with the release's glibc.
#
# A program whose package needs a newer glibc than this machine's (runc, conmon, podman, netavark:
# glibc 2.38 or 2.39; Debian 12 has 2.36) is copied into bin/ and patched with Debian 12's
# patchelf to load the release's own loader and libraries (`--set-interpreter` root/…/
# ld-linux-x86-64.so.2, `--set-rpath` root/usr/lib/x86_64-linux-gnu, as DT_RPATH so that the
# libraries' own dependencies are found there too). Running them through that loader
# (`ld.so --library-path`) does not do: runc and podman re-execute /proc/self/exe. The others
# (dockerd, containerd and its shim need glibc 2.34) are linked into bin/ as they are.
#
# Every program is run once (`--version`) before the directory is declared complete; anything
# that fails says what, and the script exits 1: a test setup that cannot get an engine fails, it
# is never skipped.
set -euo pipefail

log() { printf 'fetch-engine: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

release=${1:-}
case "$release" in
  debian13) suite=trixie ;;
  unstable) suite=sid ;;
  *) die "usage: $0 debian13|unstable [--refresh]" ;;
esac
refresh=${2:-}
[ -z "$refresh" ] || [ "$refresh" = --refresh ] || die "usage: $0 debian13|unstable [--refresh]"

CACHE=${RT_CLEANUP_TEST_ENGINES:-/var/cache/rt-cleanup-test-engines}
MIRROR=${RT_CLEANUP_TEST_DEBIAN_MIRROR:-http://deb.debian.org/debian}
DIR="$CACHE/$release"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

# The packages of both engine families; their lib* dependencies are added below.
PACKAGES=(docker.io containerd runc podman conmon netavark golang-github-containers-common libc6)
# The programs of bin/: name, then its path inside root/.
PROGRAMS=(dockerd:usr/sbin/dockerd docker-proxy:usr/sbin/docker-proxy
  containerd:usr/bin/containerd containerd-shim-runc-v2:usr/bin/containerd-shim-runc-v2
  runc:usr/sbin/runc podman:usr/bin/podman conmon:usr/bin/conmon
  netavark:usr/lib/podman/netavark)

[ "$(id -u)" = 0 ] || die "needs root (apt-get, and the cache in $CACHE)"
"$(dirname "$0")/ensure-packages.sh" patchelf=patchelf apt-get=apt dpkg-deb=dpkg flock=util-linux
[ -r "$KEYRING" ] || die "$KEYRING is missing: apt-get install debian-archive-keyring"

mkdir -p "$CACHE"
exec 9>"$CACHE/.$release.lock"
flock 9

if [ -f "$DIR/versions" ] && [ -z "$refresh" ]; then
  echo "$DIR"
  exit 0
fi

log "fetching Debian $suite's Docker and Podman into $DIR (once; later runs reuse it)"
NEW="$DIR.new"
rm -rf "$NEW"
mkdir -p "$NEW"/{apt/lists/partial,apt/cache/archives/partial,debs,root,bin}
echo "deb [signed-by=$KEYRING] $MIRROR $suite main" >"$NEW/apt/sources.list"
# A package list of the release's own: the machine's sources, lists, caches and dpkg status are
# neither read nor written (an empty status, so that every package is downloaded as the release
# has it, whatever is installed here).
touch "$NEW/apt/status"
APT=(-o "Dir::Etc::SourceList=$NEW/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$NEW/apt/lists" -o "Dir::Cache=$NEW/apt/cache"
  -o "Dir::State::status=$NEW/apt/status" -o APT::Sandbox::User=root
  -o Acquire::Languages=none -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
  -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false
  -o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false)
apt-get -qq "${APT[@]}" update >&2 ||
  die "cannot read Debian $suite's package list from $MIRROR (apt-get update failed, above)"

# The lib* packages the engines depend on, and the lib* packages those depend on, and so on
# (only through libraries: the engines' other dependencies, such as iptables or gnupg, are not
# needed and would bring in most of the release). Virtual names, <in brackets>, are left out: a
# real package of the list provides them.
lib_depends() {
  apt-cache "${APT[@]}" depends --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances "$@" |
    sed -n 's/^ *|\{0,1\}\(Pre\)\{0,1\}Depends: \(lib[^ <>]*\)$/\2/p' | sort -u
}
libraries=()
frontier=("${PACKAGES[@]}")
while [ ${#frontier[@]} -gt 0 ]; do
  mapfile -t found < <(lib_depends "${frontier[@]}")
  frontier=()
  for library in "${found[@]}"; do
    [[ " ${libraries[*]-} ${PACKAGES[*]} " == *" $library "* ]] && continue
    libraries+=("$library")
    frontier+=("$library")
  done
done
(cd "$NEW/debs" && apt-get -qq "${APT[@]}" download "${PACKAGES[@]}" "${libraries[@]}" >&2) ||
  die "cannot download Debian $suite's ${PACKAGES[*]} and their libraries (apt-get download failed, above)"

for deb in "$NEW"/debs/*.deb; do
  dpkg-deb -x "$deb" "$NEW/root" || die "cannot unpack $deb"
  # Which package each file came from, to find a program's package below.
  dpkg-deb -c "$deb" | sed "s|^|$(basename "$deb") |" >>"$NEW/contents"
  printf '%s %s\n' "$(dpkg-deb -f "$deb" Package)" "$(dpkg-deb -f "$deb" Version)" >>"$NEW/versions.new"
done

# Programs are patched where their package needs a newer glibc than this machine has: the
# package's own "libc6 (>= X)" against the installed libc6.
here=$(dpkg-query -W -f '${Version}' libc6)
libdir=$DIR/root/usr/lib/x86_64-linux-gnu
for program in "${PROGRAMS[@]}"; do
  name=${program%%:*}
  path=${program#*:}
  [ -f "$NEW/root/$path" ] || die "Debian $suite's packages have no $path (for $name)"
  deb=$NEW/debs/$(grep -F " ./$path" "$NEW/contents" | grep -v -- ' -> ' | grep -m1 " \./$path\$" |
    cut -d' ' -f1)
  needs=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' |
    sed -n 's/^ *libc6 (>= \([^)]*\)).*/\1/p' | head -n1)
  if [ -n "$needs" ] && dpkg --compare-versions "$needs" gt "$here"; then
    cp "$NEW/root/$path" "$NEW/bin/$name"
    # The paths are those of the finished directory ($DIR), where bin/ will run from.
    patchelf --set-interpreter "$libdir/ld-linux-x86-64.so.2" --force-rpath \
      --set-rpath "$libdir" "$NEW/bin/$name" ||
      die "patchelf could not patch $name of $(basename "$deb")"
    log "$name needs glibc $needs (this machine has $here): patched to use Debian $suite's"
  else
    ln -s "$DIR/root/$path" "$NEW/bin/$name"
  fi
done

rm -rf "$DIR"
mv "$NEW" "$DIR"
for program in "${PROGRAMS[@]}"; do
  name=${program%%:*}
  case "$name" in
    docker-proxy) continue ;; # it has no --version; dockerd runs it only for published ports
    containerd-shim-runc-v2) flag=-v ;;
    *) flag=--version ;;
  esac
  if ! output=$("$DIR/bin/$name" "$flag" 2>&1); then
    rm -rf "$DIR"
    die "Debian $suite's $name does not run on this machine: $output"
  fi
done
# The downloads and package lists are not needed once unpacked.
rm -rf "$DIR/apt" "$DIR/debs" "$DIR/contents"
mv "$DIR/versions.new" "$DIR/versions"
log "Debian $suite's engines in $DIR: $(grep -E '^(docker.io|containerd|runc|podman|conmon) ' \
  "$DIR/versions" | tr '\n' ' ')"
echo "$DIR"
