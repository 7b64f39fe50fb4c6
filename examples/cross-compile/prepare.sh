#!/usr/bin/env bash
# Lays out the "prebuilt" binaries the cross-compile example picks from: bin/<arch>/busybox for
# each static busybox given, its architecture read from the ELF header. By default the host's
# /bin/busybox and the arm64 one scripts/setup-foreign-arch.sh downloads. With a directory
# argument, prepares a complete build context there (Containerfile included) instead of beside
# this script.
#   prepare.sh [DIR [BUSYBOX...]]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest=${1:-$here}
shift || true
binaries=("$@")
if [[ ${#binaries[@]} -eq 0 ]]; then
  binaries=(/bin/busybox /var/cache/kiln-test/arm64/bin/busybox)
fi

# The OCI architecture of an ELF file, from e_machine (bytes 18-19, little-endian).
oci_arch() {
  [[ $(head -c4 "$1" | od -An -tx1 | tr -d ' \n') == 7f454c46 ]] || return 1
  case $(od -An -tx1 -j18 -N2 "$1" | tr -d ' \n') in
    3e00) echo amd64 ;;
    b700) echo arm64 ;;
    f300) echo riscv64 ;;
    2800) echo arm ;;
    *) return 1 ;;
  esac
}

mkdir -p "$dest"
[[ "$dest" -ef "$here" ]] || cp "$here/Containerfile" "$dest/Containerfile"
rm -rf "${dest:?}/bin"
for busybox in "${binaries[@]}"; do
  if [[ ! -f "$busybox" ]]; then
    echo "prepare.sh: $busybox is missing (the arm64 one: scripts/setup-foreign-arch.sh)" >&2
    exit 1
  fi
  if ! arch=$(oci_arch "$busybox"); then
    echo "prepare.sh: $busybox is not an ELF binary of a known architecture" >&2
    exit 1
  fi
  mkdir -p "$dest/bin/$arch"
  install -m 0755 "$busybox" "$dest/bin/$arch/busybox"
  echo "bin/$arch/busybox <- $busybox"
done
