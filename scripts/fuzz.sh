#!/usr/bin/env bash
# Builds a libFuzzer target with clang-16 (the ANTLR 4.9 runtime's headers need it; the main
# build stays on g++) and runs it for a bounded time, seeded with a corpus.
# Usage: scripts/fuzz.sh [SECONDS] [BUILD_DIR] [TARGET]      exits non-zero on a crash
#   TARGET: parser (default; seeded with the Containerfile corpus), registry (seeded with
#   manifests, indexes, configs and WWW-Authenticate headers) or layer (the layer applier, seeded
#   with hostile layers from tests/support/hostile_archives.py).
set -euo pipefail
seconds=${1:-60}
src=$(cd "$(dirname "$0")/.." && pwd)
build=${2:-$src/build-fuzz}
target=${3:-parser}
CXX=clang++-16 cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DKILN_BUILD_FUZZERS=ON -DKILN_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" --target "kiln_${target}_fuzzer"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus"
case "$target" in
  parser)
    cp "$src"/tests/data/corpus/good/*.Containerfile "$src"/tests/data/corpus/bad/*.Containerfile \
      "$work/corpus/"
    ;;
  registry)
    # The first byte picks the reader (registry_fuzzer.cpp).
    i=0
    for seed in \
      $'\x00{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}' \
      $'\x01{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]}' \
      $'\x02{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[]},"history":[{"created_by":"x"}]}' \
      $'\x03Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull,push"' \
      $'\x04registry.example:5000/team/app:1.2@sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a' \
      $'\x05{"schemaVersion":2,"config":{"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}\n{"version":1,"records":[]}'; do
      printf '%s' "$seed" > "$work/corpus/seed$((i++))"
    done
    ;;
  layer)
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
    ;;
  *)
    echo "unknown fuzz target $target (parser, registry, layer)" >&2
    exit 2
    ;;
esac
cd "$work"
"$build/fuzz/kiln_${target}_fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$work/" corpus
