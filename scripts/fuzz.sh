#!/usr/bin/env bash
# Builds a libFuzzer target with clang-16 (the ANTLR 4.9 runtime's headers need it; the main
# build stays on g++) and runs it for a bounded time, seeded with a corpus:
#   parser  the Containerfile parser, seeded with the test corpus
#   layer   the layer applier, seeded with hostile layers (tests/support/hostile_archives.py)
# Usage: scripts/fuzz.sh [SECONDS] [BUILD_DIR] [parser|layer]      exits non-zero on a crash
set -euo pipefail
seconds=${1:-60}
src=$(cd "$(dirname "$0")/.." && pwd)
build=${2:-$src/build-fuzz}
target=${3:-parser}
case "$target" in
  parser | layer) ;;
  *)
    echo "fuzz.sh: unknown fuzzer $target (parser or layer)" >&2
    exit 2
    ;;
esac
CXX=clang++-16 cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DKILN_BUILD_FUZZERS=ON -DKILN_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" --target "kiln_${target}_fuzzer"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus"
if [ "$target" = parser ]; then
  cp "$src"/tests/data/corpus/good/*.Containerfile "$src"/tests/data/corpus/bad/*.Containerfile \
    "$work/corpus/"
else
  # Seeds that name what the fuzzer guards: ../outside/sentinel beside the root, absolute paths,
  # symlinks and hard links out, whiteouts, devices, in each compression.
  seed() { python3 "$src/tests/support/hostile_archives.py" tar "$work/corpus/$1" "$2"; }
  hostile='[{"name":"d","type":"dir","mode":1023},{"name":"d/f","data":"x","mode":2541},
    {"name":"../outside/sentinel","data":"pwned"},{"name":"/abs","data":"a"},
    {"name":"esc","type":"symlink","linkname":"../outside"},{"name":"esc/sentinel","data":"p"},
    {"name":"up","type":"symlink","linkname":"../../../.."},{"name":"up/x","data":"u"},
    {"name":"h","type":"hardlink","linkname":"d/f"},{"name":"h2","type":"hardlink","linkname":"esc/sentinel"},
    {"name":"d/.wh.f"},{"name":"d/.wh..wh..opq"},{"name":"../.wh.outside"},
    {"name":"c","type":"chr","devmajor":1,"devminor":3},{"name":"p","type":"fifo"}]'
  for compression in none gzip zstd; do
    seed "hostile-$compression.tar" "{\"entries\":$hostile,\"compression\":\"$compression\"}"
  done
  seed plain.tar '{"entries":[{"name":"etc/hostname","data":"kiln\n"}],"compression":"none"}'
fi
cd "$work"
"$build/fuzz/kiln_${target}_fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$work/" corpus
