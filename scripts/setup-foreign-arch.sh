#!/usr/bin/env bash
# Prepares this machine for multi-platform tests and examples, from Debian's packages only:
#   - an arm64 static busybox (Debian's busybox-static:arm64, downloaded, not installed) laid out
#     as DIR/bin/busybox, DIR being $1 or /var/cache/kiln-test/arm64;
#   - binfmt_misc mounted and the qemu-aarch64 handler (qemu-user-static + binfmt-support)
#     enabled, so that arm64 RUN steps run under QEMU.
# Run as root. Safe to run again: it only does what is missing. Exits non-zero only when the
# busybox cannot be had; whether QEMU for arm64 is usable is printed at the end.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
dir=${1:-/var/cache/kiln-test/arm64}
binfmt=/proc/sys/fs/binfmt_misc
say() { echo "setup-foreign-arch: $*"; }

if [[ $(id -u) -ne 0 ]]; then
  say "must run as root (dpkg, apt-get and mount)" >&2
  exit 1
fi

# The ELF header's e_machine (bytes 18-19, little-endian): 0xb7 is aarch64.
is_arm64_elf() {
  [[ -f "$1" && $(od -An -tx1 -j18 -N2 "$1" | tr -d ' \n') == b700 ]]
}

if is_arm64_elf "$dir/bin/busybox"; then
  say "arm64 busybox already at $dir/bin/busybox"
else
  added=false
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
    added=true
  fi
  if $added || ! apt-cache show busybox-static:arm64 >/dev/null 2>&1; then
    # Sources that are unreachable from here only warn; the check below decides.
    apt-get update || say "apt-get update failed; trying with the package lists there are"
  fi
  if ! apt-cache show busybox-static:arm64 >/dev/null 2>&1; then
    say "busybox-static:arm64 is not in the package lists (apt-get update failed?)" >&2
    exit 1
  fi
  mkdir -p "$dir"
  download=$(mktemp -d "$dir/.download-XXXXXX")
  trap 'rm -rf "$download"' EXIT
  # apt downloads as _apt when it can write the directory, and warns otherwise.
  if id _apt >/dev/null 2>&1; then chown _apt "$download"; fi
  (cd "$download" && apt-get download busybox-static:arm64)
  dpkg-deb -x "$download"/busybox-static_*_arm64.deb "$download/root"
  if ! is_arm64_elf "$download/root/bin/busybox"; then
    say "the downloaded package has no arm64 bin/busybox" >&2
    exit 1
  fi
  mkdir -p "$dir/bin"
  install -m 0755 "$download/root/bin/busybox" "$dir/bin/busybox.new"
  mv "$dir/bin/busybox.new" "$dir/bin/busybox"
  say "arm64 busybox laid out at $dir/bin/busybox"
fi

if [[ ! -e "$binfmt/status" ]]; then
  if ! why=$(mount -t binfmt_misc binfmt_misc "$binfmt" 2>&1); then
    say "cannot mount binfmt_misc on $binfmt: ${why:-mount failed}"
  fi
fi
if [[ -e "$binfmt/status" ]] && command -v update-binfmts >/dev/null; then
  if update-binfmts --display qemu-aarch64 >/dev/null 2>&1; then
    if ! grep -qx enabled "$binfmt/qemu-aarch64" 2>/dev/null; then
      update-binfmts --enable qemu-aarch64 ||
        say "update-binfmts --enable qemu-aarch64 failed"
    fi
  else
    say "no qemu-aarch64 handler known to update-binfmts: apt-get install qemu-user-static binfmt-support"
  fi
elif [[ -e "$binfmt/status" ]]; then
  say "update-binfmts is missing: apt-get install qemu-user-static binfmt-support"
fi

if grep -qx enabled "$binfmt/qemu-aarch64" 2>/dev/null && grep -qx enabled "$binfmt/status"; then
  say "QEMU for arm64: usable ($binfmt/qemu-aarch64 is enabled)"
else
  say "QEMU for arm64: NOT usable ($binfmt/qemu-aarch64 is not enabled); arm64 RUN steps will fail"
fi
