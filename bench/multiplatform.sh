#!/usr/bin/env bash
# One two-platform build (`--platform linux/amd64,linux/arm64`) against the two single-platform
# builds run one after the other, on the same Containerfile (COPY, and RUN steps that compress
# and loop, so arm64 runs under QEMU user emulation). Every build gets a fresh store holding only
# the two-platform busybox base image, built before the clock starts. Prints seconds and the
# ratio (sequential / multi: above 1, building both platforms at once is faster).
#   bench/multiplatform.sh [RUNS]      default 1
# Needs: a built kiln (build/cli/kiln or $KILN), busybox-static, and what
# scripts/setup-foreign-arch.sh sets up as root (the arm64 busybox, QEMU for arm64 in
# binfmt_misc). Not a pass/fail test.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
kiln=${KILN:-$src/build/cli/kiln}
runs=${1:-1}
arm64_busybox=/var/cache/kiln-test/arm64/bin/busybox
if [[ ! -f $arm64_busybox ]] || ! grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
  echo "multiplatform.sh: needs $arm64_busybox and an enabled qemu-aarch64 binfmt_misc handler:" \
    "run scripts/setup-foreign-arch.sh as root" >&2
  exit 1
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-multiplatform-XXXXXX")
trap 'rm -rf "$work"' EXIT
export SOURCE_DATE_EPOCH=1700000000

# The base image for both platforms: each platform copies its own busybox rootfs.
base=$work/busybox
mkdir -p "$base"
for arch in amd64 arm64; do
  binary=/bin/busybox
  [[ $arch == arm64 ]] && binary=$arm64_busybox
  "$src/examples/busybox/prepare.sh" "$work/prepare-$arch" "$binary" >/dev/null
  mv "$work/prepare-$arch/rootfs" "$base/rootfs-$arch"
done
cat >"$base/Containerfile" <<'CF'
FROM scratch
ARG TARGETARCH
COPY rootfs-$TARGETARCH/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CMD ["/bin/sh"]
CF

ctx=$work/ctx
mkdir -p "$ctx/src"
for i in $(seq 1 200); do head -c 20000 /dev/urandom | base64 >"$ctx/src/file$i.txt"; done
cat >"$ctx/Containerfile" <<'CF'
FROM busybox:latest
COPY src/ /app/src/
RUN cat /app/src/*.txt | gzip -6 > /app/bundle.gz && sha256sum /app/bundle.gz > /app/sum
RUN i=0; while [ $i -lt 20000 ]; do i=$((i + 1)); done; echo $i > /app/count
CMD ["/bin/sh"]
CF

# A fresh store with only the base image; prints its path.
fresh_store() {
  local store
  store=$(mktemp -d "$work/store-XXXXXX")
  KILN_ROOT=$store "$kiln" build --platform linux/amd64,linux/arm64 -t busybox:latest "$base" \
    >"$work/out" 2>&1 || { cat "$work/out" >&2; exit 1; }
  echo "$store"
}

# Wall seconds of one build of the context for PLATFORMS in a fresh store.
build_seconds() {
  local store s e
  store=$(fresh_store)
  s=$(date +%s.%N)
  KILN_ROOT=$store "$kiln" build --platform "$1" -t app:bench "$ctx" >"$work/out" 2>&1 ||
    { cat "$work/out" >&2; echo "failed: kiln build --platform $1" >&2; exit 1; }
  e=$(date +%s.%N)
  rm -rf "$store"
  echo "$e - $s" | bc -l
}

printf '%-4s %10s %10s %12s %10s %8s\n' run amd64 arm64 sequential multi ratio
for ((r = 1; r <= runs; r++)); do
  amd=$(build_seconds linux/amd64)
  arm=$(build_seconds linux/arm64)
  multi=$(build_seconds linux/amd64,linux/arm64)
  seq_total=$(echo "$amd + $arm" | bc -l)
  printf '%-4s %10.2f %10.2f %12.2f %10.2f %7.2fx\n' "$r" "$amd" "$arm" "$seq_total" "$multi" \
    "$(echo "$seq_total / $multi" | bc -l)"
done
echo "ratio = (amd64 + arm64 single-platform seconds) / two-platform seconds; arm64 runs under QEMU"
