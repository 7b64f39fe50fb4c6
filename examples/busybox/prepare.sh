#!/usr/bin/env bash
# Lays out the busybox base image's files from Debian's busybox-static: rootfs/bin/busybox, a
# symlink per applet (/bin/sh, /bin/ls, ...) and /tmp. With a directory argument, prepares a
# complete build context there (Containerfile included) instead of beside this script.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest=${1:-$here}
if [[ ! -x /bin/busybox ]]; then
  echo "prepare.sh: /bin/busybox is missing: apt-get install busybox-static" >&2
  exit 1
fi
mkdir -p "$dest"
[[ "$dest" -ef "$here" ]] || cp "$here/Containerfile" "$dest/Containerfile"
rm -rf "$dest/rootfs"
mkdir -p "$dest/rootfs/bin" "$dest/rootfs/tmp" "$dest/rootfs/root"
chmod 1777 "$dest/rootfs/tmp"
chmod 0700 "$dest/rootfs/root"
install -m 0755 /bin/busybox "$dest/rootfs/bin/busybox"
for applet in $(/bin/busybox --list-full); do
  [[ "$applet" == bin/busybox ]] && continue
  mkdir -p "$dest/rootfs/$(dirname "$applet")"
  ln -sf /bin/busybox "$dest/rootfs/$applet"
done
