#!/usr/bin/env bash
# kiln's step cache vs buildah's layer cache (Debian's package) on a large context: 20,000 files
# of about 1 GiB (a few hundred incompressible files, the rest small text files in nested
# directories) copied by a 10-step Containerfile on the busybox base. Times four builds per tool:
#   cold     the first build (kiln: store with only the base; buildah: empty layer cache)
#   cached   the same build again
#   touched  after `touch` of every context file (contents unchanged: both should stay cached)
#   changed  after one small file's content changed (COPY . and every later step run again)
# and then kiln's fully cached build 5 times (best time). Prints seconds, buildah/kiln ratios and
# how many steps each tool took from its cache.
#   bench/cache_vs_buildah.sh [SIZE_MIB]      default 1024
# Needs: a built kiln (build/cli/kiln or $KILN), buildah, runc, busybox-static, python3, about
# 12 GB free under $TMPDIR (buildah's vfs storage copies the root filesystem for every layer).
# Not a pass/fail test.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
kiln=${KILN:-$src/build/cli/kiln}
size_mib=${1:-1024}
work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-cache-XXXXXX")
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

# The context: 256 incompressible files sharing SIZE_MIB, and 19,744 text files of 100 bytes to
# 1 KiB in 20 x 20 directories.
ctx=$work/ctx
python3 - "$ctx" "$size_mib" <<'PY'
import os, sys
ctx, mib = sys.argv[1], int(sys.argv[2])
large, total = 256, 20000
os.makedirs(f"{ctx}/large")
for i in range(large):
    with open(f"{ctx}/large/blob{i:03}.bin", "wb") as f:
        f.write(os.urandom(mib * 1024 * 1024 // large))
for i in range(total - large):
    d = f"{ctx}/small/d{i % 20:02}/e{i // 20 % 20:02}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/f{i:05}.txt", "w") as f:
        f.write(f"small file {i}\n" * (10 + i % 90))
PY
cat >"$work/Containerfile" <<'CF'
FROM busybox:latest
ENV APP_HOME=/src LANG=C.UTF-8
LABEL org.opencontainers.image.title=cache-bench
WORKDIR /src
COPY . /src/
RUN du -s /src > /du && find /src -name '*.txt' | wc -l > /count
COPY small/d00/e00/f00000.txt /etc/bench-one.txt
EXPOSE 8080
USER nobody
CMD ["/bin/sh"]
CF
sed 's#^FROM busybox:latest#FROM localhost/busybox:latest#' "$work/Containerfile" >"$work/Containerfile.buildah"

# Wall seconds of a command; its output stays in $work/out. A failing command stops the
# benchmark with its output.
seconds() {
  local s e
  s=$(date +%s.%N)
  "$@" >"$work/out" 2>&1 || { cat "$work/out" >&2; echo "failed: $*" >&2; exit 1; }
  e=$(date +%s.%N)
  echo "$e - $s" | bc -l
}
kiln_build() { "$kiln" build --progress plain -t app:bench -f "$work/Containerfile" "$ctx"; }
buildah_build() {
  buildah "${bargs[@]}" build "${build_args[@]}" -t app-bench -f "$work/Containerfile.buildah" "$ctx"
}
# "CACHED/STEPS" from the output of the last build.
kiln_cached() { echo "$(grep -c '^#[0-9]* CACHED' "$work/out")/$(grep -c '^#[0-9]* \[' "$work/out")"; }
buildah_cached() {
  echo "$(grep -c 'Using cache' "$work/out")/$(grep -c '^STEP [0-9]*/' "$work/out")"
}

printf '%-9s %-8s %10s %10s %8s\n' scenario tool seconds ratio cached
# Builds with both tools and prints one row each.
scenario() {
  local k kc b bc_
  k=$(seconds kiln_build)
  kc=$(kiln_cached)
  b=$(seconds buildah_build)
  bc_=$(buildah_cached)
  printf '%-9s %-8s %10.2f %10s %8s\n' "$1" kiln "$k" "" "$kc"
  printf '%-9s %-8s %10.2f %9.2fx %8s\n' "$1" buildah "$b" "$(echo "$b / $k" | bc -l)" "$bc_"
}
scenario cold
scenario cached
find "$ctx" -exec touch {} +
scenario touched
echo "changed by the benchmark" >>"$ctx/small/d07/e03/f01247.txt"
scenario changed

best=
for _ in 1 2 3 4 5; do
  t=$(seconds kiln_build)
  if [[ -z $best ]] || (($(echo "$t < $best" | bc -l))); then best=$t; fi
done
printf 'kiln fully cached build, best of 5: %.3f s\n' "$best"
echo "ratio = buildah seconds / kiln seconds (higher is better for kiln)"
echo "cached = steps taken from the cache / all steps (FROM included, never counted as cached)"
