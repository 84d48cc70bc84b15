#!/usr/bin/env bash
# Writes to stdout, as a tar stream, the root filesystem of the tests' image: Debian's static
# busybox as /bin/busybox, with sh and sleep linked to it. Every test daemon (Docker, Podman, the
# TLS dockerd) imports it, since no registry is reachable:
#
#   scripts/test-image-rootfs.sh | docker import -c 'CMD ["/bin/busybox", "sleep", "3600"]' - IMAGE
set -euo pipefail
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/bin"
cp /bin/busybox "$dir/bin/busybox"
ln -s busybox "$dir/bin/sh"
ln -s busybox "$dir/bin/sleep"
tar -C "$dir" -c .
