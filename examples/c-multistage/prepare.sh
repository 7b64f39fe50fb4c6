#!/usr/bin/env bash
# Lays out a C toolchain from the host's own Debian packages (gcc-12, binutils, libc6-dev and what
# they load), offline, as toolchain/ beside this script: the build stage of the Containerfile
# copies it onto the busybox base image. With a directory argument, prepares a complete build
# context there instead (Containerfile and hello.c included).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest=${1:-$here}
required=(gcc-12 cpp-12 gcc-12-base binutils binutils-common binutils-x86-64-linux-gnu libbinutils
  libctf0 libctf-nobfd0 libjansson4 libc6 libc6-dev libcrypt1 libcrypt-dev libgcc-12-dev libgcc-s1
  libgmp10 libisl23 libmpc3 libmpfr6 zlib1g libzstd1 linux-libc-dev)
optional=(libgprofng0 libsframe0 libsframe1 libstdc++6 libgomp1 libitm1 libatomic1 libquadmath0
  libcc1-0)
packages=()
for p in "${required[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || { echo "prepare.sh: package $p is missing: apt-get install gcc" >&2; exit 1; }
  packages+=("$p")
done
for p in "${optional[@]}"; do
  if dpkg -s "$p" >/dev/null 2>&1; then packages+=("$p"); fi
done
mkdir -p "$dest"
if ! [[ "$dest" -ef "$here" ]]; then
  cp "$here/Containerfile" "$here/hello.c" "$dest/"
fi
rm -rf "$dest/toolchain"
mkdir -p "$dest/toolchain"
# Every file and file symlink of the packages, paths kept. Directory symlinks of the host's merged
# /usr (/lib -> usr/lib) are left out: the paths below them become real directories.
for p in "${packages[@]}"; do
  dpkg -L "$p" | while read -r f; do
    if [[ ( -f "$f" || -L "$f" ) && ! -d "$f" && "$f" != /usr/share/doc/* && "$f" != /usr/share/man/* ]]; then
      printf '%s\0' "${f#/}"
    fi
  done
done | (cd / && tar --null --no-recursion -cf - -T -) | tar -xf - -C "$dest/toolchain"
ln -sf gcc-12 "$dest/toolchain/usr/bin/gcc"
ln -sf gcc-12 "$dest/toolchain/usr/bin/cc"
du -sh "$dest/toolchain" | awk '{print "toolchain: " $1}'
