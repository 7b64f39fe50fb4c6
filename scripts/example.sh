#!/usr/bin/env bash
# Runs kiln on the examples: the busybox base image (made from Debian's busybox-static) and a
# multi-stage cross-compiling build. Until image building lands (the store/exporter issue), kiln
# plans the build and prints the graph it would run (--dry-run).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
kiln=${KILN:-$src/build/cli/kiln}
"$src/examples/busybox/prepare.sh"
"$kiln" build --dry-run -t busybox:latest "$src/examples/busybox"
"$kiln" build --dry-run --platform linux/amd64 "$src/examples/go-multistage"
