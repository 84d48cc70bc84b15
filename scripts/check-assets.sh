#!/usr/bin/env bash
# Checks the generated operator assets and the install script, cheaply enough for every CI run:
#
#   scripts/check-assets.sh
#
# 1. examples/generate-assets.rs runs and writes the bash, zsh and fish completions and the man
#    pages (rt-cleanup.1, and rt-cleanup-explain.1 and rt-cleanup-history.1 for the commands);
#    every long option of `rt-cleanup --help` appears in each completion and in the main page,
#    every long option of `rt-cleanup COMMAND --help` in each completion and in that command's
#    page, each completion passes its shell's syntax check, and every page renders without
#    warnings.
# 2. scripts/install.sh --dry-run prints every step and changes nothing, and a DESTDIR install
#    puts every file where docs/operations.md says.
#
# As root on a machine without them (a fresh Debian 12 CI machine), it installs man-db, zsh and
# fish with apt-get, which the checks need.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'check-assets: %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }


"$(dirname "$0")/ensure-packages.sh" man=man-db zsh=zsh fish=fish
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log "building the binary and generating the assets"
cargo build --locked --quiet --bin rt-cleanup
binary=${CARGO_TARGET_DIR:-target}/debug/rt-cleanup
cargo run --locked --quiet --example generate-assets -- "$work/assets" >/dev/null
assets=$work/assets
commands=(explain history)
pages=(rt-cleanup.1)
for command in "${commands[@]}"; do pages+=("rt-cleanup-$command.1"); done
for file in rt-cleanup.bash _rt-cleanup rt-cleanup.fish "${pages[@]}"; do
  [ -s "$assets/$file" ] || die "the generator did not write $file"
done

# The long options of `rt-cleanup ARGS --help`, one per line.
long_options() { "$binary" "$@" --help | grep -oE -- '--[a-z][a-z-]+' | sort -u; }
# Every long option of `rt-cleanup ARGS --help` in the page PAGE and the three completions.
check_options() {
  local page=$1 options option man_text
  shift
  mapfile -t options < <(long_options "$@")
  [ ${#options[@]} -ge 5 ] || die "found only ${#options[@]} long options in $* --help: ${options[*]}"
  # roff escapes every hyphen as \- ; the rendered page is what a reader searches.
  man_text=$(MANWIDTH=200 man -l "$assets/$page" 2>/dev/null)
  for option in "${options[@]}"; do
    grep -qF -- "$option" <<<"$man_text" || missing+=("$page: $option")
    grep -qF -- "$option" "$assets/rt-cleanup.bash" || missing+=("bash: $* $option")
    grep -qF -- "$option" "$assets/_rt-cleanup" || missing+=("zsh: $* $option")
    grep -qE -- "-l '?${option#--}'? " "$assets/rt-cleanup.fish" || missing+=("fish: $* $option")
  done
  checked=$((checked + ${#options[@]}))
}
missing=()
checked=0
check_options rt-cleanup.1
for command in "${commands[@]}"; do
  check_options "rt-cleanup-$command.1" "$command"
  grep -qF -- "rt-cleanup-$command" <<<"$(MANWIDTH=200 man -l "$assets/rt-cleanup.1" 2>/dev/null)" ||
    missing+=("rt-cleanup.1: the page rt-cleanup-$command(1)")
done
[ ${#missing[@]} -eq 0 ] || die "options missing from the generated assets: ${missing[*]}"
log "all $checked long options of rt-cleanup and its commands are in their man pages and the three completions"

for page in "${pages[@]}"; do
  warnings=$(MANWIDTH=80 man --warnings -l "$assets/$page" 2>&1 >/dev/null || true)
  [ -z "$warnings" ] || die "the man page $page renders with warnings: $warnings"
done
bash -n "$assets/rt-cleanup.bash" || die "bash rejects the bash completion"
zsh -n "$assets/_rt-cleanup" || die "zsh rejects the zsh completion"
fish --no-execute "$assets/rt-cleanup.fish" || die "fish rejects the fish completion"
log "the man pages render cleanly and the completions parse"

log "scripts/install.sh --dry-run"
before=$(git status --porcelain --untracked-files=all -- . ':!target' 2>/dev/null || true)
dry_run=$(scripts/install.sh --dry-run)
after=$(git status --porcelain --untracked-files=all -- . ':!target' 2>/dev/null || true)
[ "$before" = "$after" ] || die "install.sh --dry-run changed the checkout"
for path in /usr/local/bin/rt-cleanup /etc/systemd/system/rt-cleanup.service \
  /etc/systemd/system/rt-cleanup.timer /etc/systemd/system/rt-cleanup-failure@.service \
  /usr/local/libexec/rt-cleanup/on-failure /etc/default/rt-cleanup useradd; do
  grep -qF -- "$path" <<<"$dry_run" || die "install.sh --dry-run does not mention $path"
done

log "DESTDIR=$work/stage scripts/install.sh --binary $binary"
DESTDIR="$work/stage" scripts/install.sh --binary "$binary" >/dev/null
for path in \
  usr/local/bin/rt-cleanup \
  etc/systemd/system/rt-cleanup.service \
  etc/systemd/system/rt-cleanup.timer \
  etc/systemd/system/rt-cleanup-failure@.service \
  usr/local/libexec/rt-cleanup/on-failure \
  etc/default/rt-cleanup \
  usr/local/share/bash-completion/completions/rt-cleanup \
  usr/local/share/zsh/site-functions/_rt-cleanup \
  usr/local/share/fish/vendor_completions.d/rt-cleanup.fish \
  usr/local/share/man/man1/rt-cleanup.1.gz \
  usr/local/share/man/man1/rt-cleanup-explain.1.gz \
  usr/local/share/man/man1/rt-cleanup-history.1.gz \
  usr/local/share/doc/rt-cleanup/operations.md \
  usr/local/share/doc/rt-cleanup/cron \
  usr/local/share/doc/rt-cleanup/rt-cleanup.env \
  usr/local/share/doc/rt-cleanup/summary.json; do
  [ -s "$work/stage/$path" ] || die "a DESTDIR install did not write /$path"
done
[ -x "$work/stage/usr/local/bin/rt-cleanup" ] || die "the installed binary is not executable"
MANPATH="$work/stage/usr/local/share/man" man -w rt-cleanup >/dev/null ||
  die "man does not find the installed page"
# A second install keeps the operator's settings file.
echo "RT_CLEANUP_RETENTION=3d" >"$work/stage/etc/default/rt-cleanup"
DESTDIR="$work/stage" scripts/install.sh --binary "$binary" >/dev/null
grep -qx "RT_CLEANUP_RETENTION=3d" "$work/stage/etc/default/rt-cleanup" ||
  die "a second install overwrote /etc/default/rt-cleanup"
log "OK"
