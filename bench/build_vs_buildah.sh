#!/usr/bin/env bash
# kiln build vs buildah build (Debian's package) on the same Containerfile and the same busybox
# base image, cold (empty cache) and warm (the same build again), printing times and ratios.
#   bench/build_vs_buildah.sh [RUNS]      default 1 run of each
# Needs: a built kiln (build/cli/kiln or $KILN), buildah, busybox-static. Not a pass/fail test.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
kiln=${KILN:-$src/build/cli/kiln}
runs=${1:-1}
work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-build-XXXXXX")
trap 'rm -rf "$work"' EXIT
export KILN_ROOT=$work/kiln-root SOURCE_DATE_EPOCH=1700000000

"$src/examples/busybox/prepare.sh" "$work/busybox" >/dev/null
"$kiln" build -t busybox:latest "$work/busybox" >/dev/null 2>&1
"$kiln" save --format oci-archive -o "$work/busybox.tar" busybox:latest
bargs=(--root "$work/broot" --runroot "$work/brun" --storage-driver vfs)
# Debian's crun refuses hybrid cgroup hosts; runc works (as for podman).
build_args=(--runtime runc --layers)
buildah "${bargs[@]}" pull -q "oci-archive:$work/busybox.tar" >/dev/null
buildah "${bargs[@]}" tag "$(buildah "${bargs[@]}" images -q | head -1)" localhost/busybox:latest

# A context with some source files and a Containerfile with RUN, COPY and metadata steps.
ctx=$work/ctx
mkdir -p "$ctx/src"
for i in $(seq 1 400); do head -c 20000 /dev/urandom | base64 >"$ctx/src/file$i.txt"; done
cat >"$ctx/Containerfile" <<'CF'
FROM busybox:latest
ENV APP=/app
RUN mkdir -p /app/data && for i in $(seq 1 200); do echo "line $i" > /app/data/f$i; done
COPY src/ /app/src/
RUN cat /app/src/*.txt | gzip -1 > /app/bundle.gz && rm -rf /app/src/file1*.txt
WORKDIR /app
RUN ls -la /app | wc -l > /app/count
CMD ["/bin/sh"]
CF
sed 's#^FROM busybox:latest#FROM localhost/busybox:latest#' "$ctx/Containerfile" >"$ctx/Containerfile.buildah"

# Wall seconds of a command; a failing command stops the benchmark with its output.
seconds() {
  local s e
  s=$(date +%s.%N)
  "$@" >"$work/out" 2>&1 || { cat "$work/out" >&2; echo "failed: $*" >&2; exit 1; }
  e=$(date +%s.%N)
  echo "$e - $s" | bc -l
}

printf '%-6s %-8s %10s %10s\n' run tool seconds ratio
for ((r = 1; r <= runs; r++)); do
  # Cold: kiln with a store holding only the base; buildah with its layer cache emptied.
  kc=$(seconds "$kiln" build -t app:bench "$ctx")
  buildah "${bargs[@]}" rmi -f app-bench >/dev/null 2>&1 || true
  buildah "${bargs[@]}" rm -a >/dev/null 2>&1 || true
  buildah "${bargs[@]}" rmi --prune >/dev/null 2>&1 || true
  bc_=$(seconds buildah "${bargs[@]}" build "${build_args[@]}" -t app-bench -f "$ctx/Containerfile.buildah" "$ctx")
  printf '%-6s %-8s %10.2f\n' "cold" kiln "$kc"
  printf '%-6s %-8s %10.2f %9.2fx\n' "cold" buildah "$bc_" "$(echo "$bc_ / $kc" | bc -l)"
  # Warm: the same build again (buildah reuses its cached layers; kiln has no step cache yet).
  kw=$(seconds "$kiln" build -t app:bench "$ctx")
  bw=$(seconds buildah "${bargs[@]}" build "${build_args[@]}" -t app-bench -f "$ctx/Containerfile.buildah" "$ctx")
  printf '%-6s %-8s %10.2f\n' "warm" kiln "$kw"
  printf '%-6s %-8s %10.2f %9.2fx\n' "warm" buildah "$bw" "$(echo "$bw / $kw" | bc -l)"
done
echo "ratio = buildah seconds / kiln seconds (higher is better for kiln)"
