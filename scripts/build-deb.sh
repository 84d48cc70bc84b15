#!/usr/bin/env bash
# Builds the Debian package with cargo-deb, from [package.metadata.deb] in Cargo.toml:
#
#   scripts/build-deb.sh       # prints the path of the .deb, target/debian/rt-cleanup_*.deb
#
# cargo-deb packages files as they are, so this script first writes what the package needs
# and the repository does not hold as such, into target/deb-assets/:
#
# - the man pages (gzipped: rt-cleanup.1 and a page per command) and the bash, zsh and fish
#   completions, generated from the clap
#   definition by examples/generate-assets.rs, with the package's paths in the man page;
# - the package's copies of the units, the failure hook and the cron example. The files in
#   systemd/ and examples/ stay the only source: they name the paths of scripts/install.sh
#   (/usr/local/bin, /usr/local/libexec, /usr/local/share/doc), and the copies differ only
#   in those paths, rewritten to /usr by one sed expression below.
#
# On a machine without them it installs Debian's dpkg-dev (dpkg-shlibdeps, from which cargo-deb
# computes the package's library dependencies) and cargo-deb itself, at the pinned version
# below, from crates.io.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0

log() { printf 'build-deb: %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

"$(dirname "$0")/ensure-packages.sh" dpkg-shlibdeps=dpkg-dev dpkg-deb=dpkg
if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  log "installing cargo-deb $CARGO_DEB_VERSION"
  cargo install --locked --quiet --version "$CARGO_DEB_VERSION" cargo-deb
fi

out=target/deb-assets
rm -rf "$out"
mkdir -p "$out/systemd" "$out/examples"

log "generating the man pages and the completions"
cargo run --locked --quiet --example generate-assets -- --layout=debian "$out" >/dev/null
# -n leaves the name and time out of the gzip header, so the same page gives the same bytes.
for page in rt-cleanup rt-cleanup-explain rt-cleanup-history; do
  gzip -9n <"$out/$page.1" >"$out/$page.1.gz"
done

# /usr/local/bin: in cron's PATH= goes away, since /usr/bin follows it there.
to_package() {
  sed -e 's#/usr/local/bin:##g' \
    -e 's#/usr/local/bin/#/usr/bin/#g' \
    -e 's#/usr/local/libexec/#/usr/libexec/#g' \
    -e 's#/usr/local/share/doc/#/usr/share/doc/#g' \
    "$1" >"$2"
}
for unit in rt-cleanup.service rt-cleanup.timer rt-cleanup-failure@.service; do
  to_package "systemd/$unit" "$out/systemd/$unit"
done
to_package systemd/rt-cleanup-on-failure "$out/on-failure"
to_package examples/cron "$out/examples/cron"
# A /usr/local path that the expressions above do not know would ship a unit that points at
# nothing; stop here rather than build that package.
if leftovers=$(grep -n '/usr/local' "$out/systemd/"* "$out/on-failure" "$out/examples/cron"); then
  die "paths of scripts/install.sh left in the package's copies: $leftovers"
fi

log "cargo deb --locked"
deb=$(cargo deb --locked --quiet)
[ -f "$deb" ] || die "cargo deb did not report a package file (it printed: $deb)"
log "built $deb"
echo "$deb"
