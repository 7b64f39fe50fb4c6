#!/usr/bin/env bash
# Exports one layer of mixed files (COPY of a generated directory into FROM scratch) with kiln
# and with buildah (Debian's package), gzip and zstd, and prints throughput and the ratio. Also
# prints kiln's peak RSS at two sizes to show it does not grow with the layer.
#   bench/layer_export.sh [SIZES_MIB...]        default: 256 1024
# Needs: a built kiln (build/cli/kiln or $KILN), buildah, GNU time. Not a pass/fail test.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
kiln=${KILN:-$src/build/cli/kiln}
sizes=("$@")
[[ ${#sizes[@]} -gt 0 ]] || sizes=(256 1024)
work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-XXXXXX")
trap 'rm -rf "$work"' EXIT

# A context of SIZE MiB: 45% incompressible files of 1-8 MiB, 45% text, 10% in 4 KiB files.
make_context() {
  local dir=$1 mib=$2 i=0 left
  mkdir -p "$dir/data/bin" "$dir/data/text" "$dir/data/small"
  left=$((mib * 45 / 100))
  while ((left > 0)); do
    local n=$((1 + i % 8)); ((n > left)) && n=$left
    head -c $((n << 20)) /dev/urandom >"$dir/data/bin/blob$i"; left=$((left - n)); i=$((i + 1))
  done
  left=$((mib * 45 / 100)); i=0
  while ((left > 0)); do
    local n=$((1 + i % 4)); ((n > left)) && n=$left
    # yes ends on SIGPIPE when head has enough: that is the expected end, not a failure.
    { yes "kiln builds OCI images without a daemon, line $i of a log file" || true; } |
      head -c $((n << 20)) >"$dir/data/text/log$i.txt"
    left=$((left - n)); i=$((i + 1))
  done
  local small=$(((mib * 10 / 100) * 256))
  for ((i = 0; i < small; i++)); do head -c 4096 /dev/urandom >"$dir/data/small/f$i"; done
  printf 'FROM scratch\nCOPY data /data\n' >"$dir/Containerfile"
}

# Runs a command, prints "SECONDS MAXRSS_KB".
measure() {
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/stderr" || {
    cat "$work/stderr" >&2; return 1; }
  cat "$work/time"
}

printf '%-8s %-6s %-8s %10s %10s %10s %12s\n' size comp tool seconds "MB/s" ratio "peak RSS"
for mib in "${sizes[@]}"; do
  ctx=$work/ctx-$mib
  make_context "$ctx" "$mib"
  for comp in gzip zstd; do
    rm -rf "$work/kiln-root"
    read -r ks krss < <(KILN_ROOT=$work/kiln-root measure "$kiln" build --compression "$comp" "$ctx")
    rm -rf "$work/broot" "$work/brun" "$work/bout"
    bargs=(--root "$work/broot" --runroot "$work/brun" --storage-driver vfs)
    # buildah stores the layer uncompressed at build time and compresses when it writes the
    # image out, so its export is build + push; kiln compresses while it builds.
    read -r bs1 _ < <(measure buildah "${bargs[@]}" build --layers=false -t bench -f "$ctx/Containerfile" "$ctx")
    read -r bs2 _ < <(measure buildah "${bargs[@]}" push --compression-format "$comp" bench "oci:$work/bout:bench")
    bs=$(echo "$bs1 + $bs2" | bc -l)
    kmbs=$(echo "$mib * 1.048576 / $ks" | bc -l)
    bmbs=$(echo "$mib * 1.048576 / $bs" | bc -l)
    printf '%-8s %-6s %-8s %10.2f %10.1f %10s %9d KB\n' "${mib}MiB" "$comp" kiln "$ks" "$kmbs" "" "$krss"
    printf '%-8s %-6s %-8s %10.2f %10.1f %9.2fx\n' "${mib}MiB" "$comp" buildah "$bs" "$bmbs" \
      "$(echo "$bs / $ks" | bc -l)"
  done
  rm -rf "$ctx"
done
echo "ratio = buildah seconds / kiln seconds (higher is better for kiln)"
