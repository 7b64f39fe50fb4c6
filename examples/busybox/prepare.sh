#!/usr/bin/env bash
# Lays out the busybox base image's files from Debian's busybox-static: rootfs/bin/busybox, a
# symlink per applet (/bin/sh, /bin/ls, ...) and /tmp. With a directory argument, prepares a
# complete build context there (Containerfile included) instead of beside this script.
#   prepare.sh [DIR [BUSYBOX]]     BUSYBOX (or $BUSYBOX): the binary to lay out, default
#                                  /bin/busybox; e.g. the arm64 one of scripts/setup-foreign-arch.sh
# A foreign busybox lists its applets under QEMU (binfmt_misc); without QEMU, the host's
# /bin/busybox lists them, which is right when both come from the same Debian version.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest=${1:-$here}
busybox=${2:-${BUSYBOX:-/bin/busybox}}
if [[ ! -x "$busybox" ]]; then
  if [[ "$busybox" == /bin/busybox ]]; then
    echo "prepare.sh: /bin/busybox is missing: apt-get install busybox-static" >&2
  else
    echo "prepare.sh: $busybox is missing or not executable" >&2
  fi
  exit 1
fi
if ! applets=$("$busybox" --list-full 2>/dev/null); then
  if [[ ! -x /bin/busybox ]] || ! applets=$(/bin/busybox --list-full); then
    echo "prepare.sh: cannot run $busybox --list-full (a foreign binary without QEMU?)," \
      "and the host's /bin/busybox cannot list the applets instead" >&2
    exit 1
  fi
fi
mkdir -p "$dest"
[[ "$dest" -ef "$here" ]] || cp "$here/Containerfile" "$dest/Containerfile"
rm -rf "$dest/rootfs"
mkdir -p "$dest/rootfs/bin" "$dest/rootfs/tmp" "$dest/rootfs/root"
chmod 1777 "$dest/rootfs/tmp"
chmod 0700 "$dest/rootfs/root"
install -m 0755 "$busybox" "$dest/rootfs/bin/busybox"
for applet in $applets; do
  [[ "$applet" == bin/busybox ]] && continue
  mkdir -p "$dest/rootfs/$(dirname "$applet")"
  ln -sf /bin/busybox "$dest/rootfs/$applet"
done
