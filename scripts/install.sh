#!/usr/bin/env bash
# Installs rt-cleanup on this machine (or into a staging tree for a package):
#
#   scripts/install.sh                   # build --release and install as root
#   scripts/install.sh --dry-run         # print every step, change nothing
#   scripts/install.sh --binary PATH     # install a binary built elsewhere instead of building
#   DESTDIR=/tmp/stage scripts/install.sh  # stage for a package: no user, no systemctl
#
# What goes where (all of it under $DESTDIR when that is set):
#   /usr/local/bin/rt-cleanup                                 the binary
#   /etc/systemd/system/rt-cleanup.service, rt-cleanup.timer,
#     rt-cleanup-failure@.service                             the units
#   /usr/local/libexec/rt-cleanup/on-failure                  the OnFailure= handler's script
#   /etc/default/rt-cleanup                                   the settings, only if absent
#   /usr/local/share/bash-completion/completions/rt-cleanup   bash completion
#   /usr/local/share/zsh/site-functions/_rt-cleanup           zsh completion
#   /usr/local/share/fish/vendor_completions.d/rt-cleanup.fish  fish completion
#   /usr/local/share/man/man1/rt-cleanup.1.gz                 the man page, and a page per
#   /usr/local/share/man/man1/rt-cleanup-{explain,history}.1.gz   command
#   /usr/local/share/doc/rt-cleanup/                          operations.md and the examples
#
# Without DESTDIR it also creates the rt-cleanup system user (member of docker and of the group
# that owns /var/lib/rtmanager, when those exist) and reloads systemd. It never enables the
# timer: RT_CLEANUP_RETENTION must be set in /etc/default/rt-cleanup first, and the script
# prints the command to run then. Re-running it upgrades in place and keeps the settings file.
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=
binary=
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) dry_run=yes ;;
    --binary)
      [ $# -ge 2 ] || { echo "install.sh: --binary needs a path" >&2; exit 2; }
      binary=$2
      shift
      ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *) echo "install.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

DESTDIR=${DESTDIR:-}
PREFIX=/usr/local
USER_NAME=rt-cleanup
STATE_DIR=/var/lib/rtmanager

# Prints a step; runs it unless this is a dry run.
step() {
  printf '+'
  printf ' %q' "$@"
  printf '\n'
  [ -n "$dry_run" ] || "$@"
}

if [ -z "$dry_run" ] && [ -z "$DESTDIR" ] && [ "$(id -u)" != 0 ]; then
  echo "install.sh: installing into / needs root (or set DESTDIR, or use --dry-run)" >&2
  exit 1
fi

assets=target/assets
if [ -z "$binary" ]; then
  step cargo build --release --locked --bin rt-cleanup
  binary=target/release/rt-cleanup
fi
# The completions and the man page are generated from the clap definition, so they always
# match the binary's --help.
step cargo run --locked --quiet --example generate-assets -- "$assets"

step install -D -m 0755 "$binary" "$DESTDIR$PREFIX/bin/rt-cleanup"
for unit in rt-cleanup.service rt-cleanup.timer rt-cleanup-failure@.service; do
  step install -D -m 0644 "systemd/$unit" "$DESTDIR/etc/systemd/system/$unit"
done
step install -D -m 0755 systemd/rt-cleanup-on-failure \
  "$DESTDIR$PREFIX/libexec/rt-cleanup/on-failure"

# The settings file belongs to the operator once it exists: never overwrite it.
if [ -e "$DESTDIR/etc/default/rt-cleanup" ]; then
  echo "# keeping the existing $DESTDIR/etc/default/rt-cleanup"
else
  step install -D -m 0644 examples/rt-cleanup.env "$DESTDIR/etc/default/rt-cleanup"
fi

step install -D -m 0644 "$assets/rt-cleanup.bash" \
  "$DESTDIR$PREFIX/share/bash-completion/completions/rt-cleanup"
step install -D -m 0644 "$assets/_rt-cleanup" "$DESTDIR$PREFIX/share/zsh/site-functions/_rt-cleanup"
step install -D -m 0644 "$assets/rt-cleanup.fish" \
  "$DESTDIR$PREFIX/share/fish/vendor_completions.d/rt-cleanup.fish"
step install -d -m 0755 "$DESTDIR$PREFIX/share/man/man1"
# The main page and one page per command (rt-cleanup-explain.1, rt-cleanup-history.1).
for page in rt-cleanup rt-cleanup-explain rt-cleanup-history; do
  man_page="$DESTDIR$PREFIX/share/man/man1/$page.1.gz"
  printf '+ %s\n' "gzip -9n < $assets/$page.1 > $man_page"
  if [ -z "$dry_run" ]; then
    gzip -9n <"$assets/$page.1" >"$man_page"
    chmod 0644 "$man_page"
  fi
done
for doc in docs/operations.md examples/cron examples/rt-cleanup.env examples/summary.json; do
  step install -D -m 0644 "$doc" "$DESTDIR$PREFIX/share/doc/rt-cleanup/$(basename "$doc")"
done

if [ -n "$DESTDIR" ]; then
  echo "# DESTDIR is set: the package's maintainer scripts create the $USER_NAME user" \
    "(a system user in the docker group) and run systemctl daemon-reload"
  exit 0
fi

# A system user with no home and no login shell; its own group is its primary group.
if id "$USER_NAME" >/dev/null 2>&1; then
  echo "# user $USER_NAME exists"
else
  step useradd --system --user-group --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin --comment "rt-cleanup (removes stopped game containers)" \
    "$USER_NAME"
fi
if getent group docker >/dev/null; then
  step usermod --append --groups docker "$USER_NAME"
else
  echo "# WARNING: no docker group yet (is Docker installed?); the unit's" \
    "SupplementaryGroups=docker needs it"
fi
# The state file is shared with the runtime manager through its group: rt-cleanup joins the
# group that owns the state directory (unless that is root, which is never granted).
if [ -d "$STATE_DIR" ]; then
  state_group=$(stat -c %G "$STATE_DIR")
  if [ "$state_group" != root ]; then
    step usermod --append --groups "$state_group" "$USER_NAME"
  else
    echo "# WARNING: $STATE_DIR belongs to group root; give it a group that the runtime" \
      "manager and $USER_NAME share (docs/operations.md)"
  fi
fi

if [ -d /run/systemd/system ]; then
  step systemctl daemon-reload
fi

cat <<EOF
# Next steps:
#   1. Set RT_CLEANUP_RETENTION (and review the rest) in /etc/default/rt-cleanup, with
#      RT_CLEANUP_DRY_RUN=true for a first audit run.
#   2. systemctl start rt-cleanup.service && journalctl -u rt-cleanup.service -n 50
#   3. When the audit looks right, remove RT_CLEANUP_DRY_RUN and enable the schedule:
#      systemctl enable --now rt-cleanup.timer
EOF
