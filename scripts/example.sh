#!/usr/bin/env bash
# Builds the examples offline: the busybox base image (made from Debian's busybox-static), an
# image FROM it, and a multi-stage C build (toolchain stage from the host's gcc packages, static
# binary shipped in a scratch image) that RUNs the compiler in kiln's sandbox. The store is
# $KILN_ROOT (default for root: /var/lib/kiln).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
kiln=${KILN:-$src/build/cli/kiln}
"$src/examples/busybox/prepare.sh"
"$kiln" build -t busybox:latest "$src/examples/busybox"
"$kiln" build -t hello:latest -o "type=oci,dest=$src/build/hello-oci" "$src/examples/hello"
"$src/examples/c-multistage/prepare.sh"
"$kiln" build -t hello-c:latest -o "type=local,dest=$src/build/hello-c-rootfs" "$src/examples/c-multistage"
"$src/build/hello-c-rootfs/hello"
"$kiln" images
