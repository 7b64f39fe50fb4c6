// Streaming layer compression: gzip (parallel, deterministic), zstd (libzstd multithreaded) or
// none, behind the ByteSink interface so a layer is compressed while it is produced.
//
// Determinism: for a given input, algorithm, level and block size, the compressed bytes are the
// same whatever the thread count, so layer digests do not depend on the machine that built them
// (they do depend on the ISA-L/zlib/libzstd versions, as every compressor's output does).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "kiln/base/io.hpp"

namespace kiln::snapshotter {

enum class Compression { kNone, kGzip, kZstd };

// "gzip", "zstd", "none" or "uncompressed" (exact, lower case, as --compression takes them).
// Throws kiln::Error naming the text otherwise.
Compression parse_compression(std::string_view name);
// "gzip", "zstd" or "none".
const char* compression_name(Compression compression);

struct CompressionOptions;
// What decides the compressed bytes besides the input: "gzip-isal1", "gzip-zlib6", "zstd3",
// "none" (cache keys include it, so a layer cached under one compressor is not taken for
// another's output).
std::string compressor_id(const CompressionOptions& options);

struct CompressionOptions {
  Compression algorithm = Compression::kGzip;
  // -1: the algorithm's default: gzip through ISA-L (Intel's igzip) at its level 1, zstd 3.
  // Otherwise gzip takes zlib's levels 0..9 (compressed with zlib) and zstd
  // 1..ZSTD_maxCLevel() (22); other values make the CompressingSink constructor throw.
  int level = -1;
  // Compression threads; 0 means std::thread::hardware_concurrency(). At most 256 are used.
  unsigned threads = 0;
  // gzip: the size of the independently compressed blocks (1 KiB..1 GiB). Part of the output
  // format: changing it changes the compressed bytes. zstd: the libzstd job size (raised to
  // libzstd's minimum of 512 KiB), so it, too, bounds memory. Ignored by kNone.
  size_t block_size = size_t{1} << 20;
};

namespace detail {
class CompressionEngine;  // one implementation per algorithm, in compression.cpp
}  // namespace detail

// A ByteSink that compresses what it is given and writes the compressed bytes to `out`.
//
// gzip: the input is cut into block_size blocks that are compressed in parallel on a small pool of
// std::threads; each block is an independent gzip member (header mtime 0, no name, OS byte 255
// "unknown"), and the members are written to `out` in input order. Concatenated members are a
// valid gzip file (RFC 1952 §2.2) that gzip, Go's compress/gzip, zlib and libarchive all read in
// full. An empty input still gives one (empty) member, so the output is never zero bytes.
// zstd: one frame from libzstd's multithreaded mode (ZSTD_c_nbWorkers >= 1 even for one thread,
// because libzstd's single-threaded mode produces different bytes), content checksum on.
// none: bytes pass through unchanged.
//
// Memory is bounded: at most 2 blocks per thread are in flight (queued, being compressed, or
// waiting to be written in order); a writer that runs ahead blocks until the oldest block is done.
// `out` is only ever called from the thread that calls write()/finish(), so it need not be
// thread-safe, and an exception from it propagates out of write()/finish().
//
// finish() must be called exactly once after the last write(); it flushes everything to `out`.
// After an exception, or without finish(), the sink is unusable and the destructor discards pending
// data quietly (it stops and joins the threads; it never writes to `out`).
class CompressingSink : public kiln::ByteSink {
 public:
  // Throws kiln::Error for an invalid level or block size, or if the compressor cannot be set up.
  CompressingSink(kiln::ByteSink& out, CompressionOptions options);
  ~CompressingSink() override;
  CompressingSink(const CompressingSink&) = delete;
  CompressingSink& operator=(const CompressingSink&) = delete;

  void write(const void* data, size_t size) override;
  void finish();

 private:
  std::unique_ptr<detail::CompressionEngine> engine_;
  bool finished_ = false;
};

}  // namespace kiln::snapshotter
