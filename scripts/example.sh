#!/usr/bin/env bash
# Builds the examples offline: the busybox base image (made from Debian's busybox-static), then
# an image FROM it, written to the local store and as an OCI layout; prints what was built.
# The store is $KILN_ROOT (default for root: /var/lib/kiln).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
kiln=${KILN:-$src/build/cli/kiln}
"$src/examples/busybox/prepare.sh"
"$kiln" build -t busybox:latest "$src/examples/busybox"
"$kiln" build -t hello:latest -o "type=oci,dest=$src/build/hello-oci" "$src/examples/hello"
"$kiln" images
"$kiln" build --dry-run --platform linux/amd64 "$src/examples/go-multistage"
