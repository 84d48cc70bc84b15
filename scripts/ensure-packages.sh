#!/usr/bin/env bash
# Installs, from Debian, the packages of the commands or files that are missing.
#
#   scripts/ensure-packages.sh COMMAND=PACKAGE|/PATH=PACKAGE ...
#   scripts/ensure-packages.sh dockerd=docker.io /bin/busybox=busybox-static
#
# Every script of the repository that needs a tool (tests, checks, benchmark, demo) calls this,
# so that a fresh Debian machine gets what it needs and a prepared one installs nothing.
set -euo pipefail

missing=()
for spec in "$@"; do
  what=${spec%%=*}
  package=${spec#*=}
  if [[ $what == /* ]]; then
    [ -e "$what" ] && continue
  else
    command -v "$what" >/dev/null 2>&1 && continue
  fi
  [[ " ${missing[*]-} " == *" $package "* ]] || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "ensure-packages: need ${missing[*]}: run apt-get install ${missing[*]} as root" >&2
  exit 1
fi
echo "ensure-packages: installing ${missing[*]} from Debian" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2 || { echo "ensure-packages: apt-get update failed" >&2; exit 1; }
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
  { echo "ensure-packages: apt-get install ${missing[*]} failed" >&2; exit 1; }
