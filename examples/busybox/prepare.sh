#!/usr/bin/env bash
# Copies the static busybox from Debian's busybox-static package into the build context.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [[ ! -x /bin/busybox ]]; then
  echo "prepare.sh: /bin/busybox is missing: apt-get install busybox-static" >&2
  exit 1
fi
install -m 0755 /bin/busybox "$here/busybox"
