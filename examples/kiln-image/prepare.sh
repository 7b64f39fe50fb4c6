#!/usr/bin/env bash
# Lays out the kiln image's files as rootfs/ beside this script (or, with a directory argument,
# a complete build context there, Containerfile included): the kiln binary (KILN, default
# build/cli/kiln), pasta, every shared library they load (as ldd resolves them on this machine),
# busybox-static as the shell and its applets, CA certificates, passwd/group, and the
# directories the store and builds use.
#   prepare.sh [DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
dest=${1:-$here}
kiln=${KILN:-$src/build/cli/kiln}
for need in "$kiln" /bin/busybox; do
  [[ -x "$need" ]] || { echo "prepare.sh: $need is missing (build kiln; apt-get install busybox-static)" >&2; exit 1; }
done
programs=("$kiln")
pasta=$(command -v pasta || true)
if [[ -n "$pasta" ]]; then
  programs+=("$pasta")
else
  echo "prepare.sh: pasta (Debian's passt) is not installed: RUN steps in the image will share" \
    "the container's network" >&2
fi
mkdir -p "$dest"
if ! [[ "$dest" -ef "$here" ]]; then
  cp "$here/Containerfile" "$dest/"
fi
root="$dest/rootfs"
rm -rf "$root"
mkdir -p "$root"/{usr/bin,bin,etc/ssl/certs,tmp,var/lib/kiln,var/tmp,work,root,proc,dev,sys}
chmod 1777 "$root/tmp" "$root/var/tmp"
# Without its debug information (most of the build's binary).
strip --strip-debug -o "$root/usr/bin/kiln" "$kiln"
chmod 0755 "$root/usr/bin/kiln"
[[ -n "$pasta" ]] && install -m 0755 "$pasta" "$root/usr/bin/pasta"
# Every library the programs load, at the path the dynamic loader finds it (the loader too).
for program in "${programs[@]}"; do
  ldd "$program" | awk '/=> \//{print $3} /^[ \t]*\/.*ld-linux/{print $1}'
done | sort -u | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
# The loader's usual path (/lib64/ld-linux-x86-64.so.2, /lib/ld-linux-aarch64.so.1) as the
# binaries name it, through a merged-/usr symlink where the host has one.
for link in /lib /lib64; do
  if [[ -L "$link" && ! -e "$root$link" ]]; then
    target=$(readlink "$link")
    if [[ -d "$root/$target" ]]; then ln -s "$target" "$root$link"; fi
  fi
done
# busybox-static: /bin/sh and the applets (sed, tail, tar, ... for CI scripts).
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
  [[ -e "$root/bin/$applet" || "$applet" == busybox ]] || ln -s busybox "$root/bin/$applet"
done
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
fi
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
  >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
du -sh "$root" | awk '{print "kiln image rootfs: " $1}'
