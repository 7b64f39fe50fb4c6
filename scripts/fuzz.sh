#!/usr/bin/env bash
# Builds the Containerfile parser fuzzer with clang-16 (the ANTLR 4.9 runtime's headers need it;
# the main build stays on g++) and runs it for a bounded time, seeded with the test corpus.
# Usage: scripts/fuzz.sh [SECONDS] [BUILD_DIR]      exits non-zero on a crash
set -euo pipefail
seconds=${1:-60}
src=$(cd "$(dirname "$0")/.." && pwd)
build=${2:-$src/build-fuzz}
CXX=clang++-16 cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DKILN_BUILD_FUZZERS=ON -DKILN_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" --target kiln_parser_fuzzer
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus"
cp "$src"/tests/data/corpus/good/*.Containerfile "$src"/tests/data/corpus/bad/*.Containerfile \
  "$work/corpus/"
cd "$work"
"$build/fuzz/kiln_parser_fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$work/" corpus
