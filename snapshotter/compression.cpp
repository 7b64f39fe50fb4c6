#include "kiln/snapshotter/compression.hpp"

// zlib's next_in is only const-qualified when ZLIB_CONST is defined before the include.
#define ZLIB_CONST
#include <isa-l/igzip_lib.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"

namespace kiln::snapshotter {

Compression parse_compression(std::string_view name) {
  if (name == "gzip")
    return Compression::kGzip;
  if (name == "zstd")
    return Compression::kZstd;
  if (name == "none" || name == "uncompressed")
    return Compression::kNone;
  throw Error("unknown compression " + quote(name) + ": expected gzip, zstd or none");
}

const char* compression_name(Compression compression) {
  switch (compression) {
    case Compression::kNone:
      return "none";
    case Compression::kGzip:
      return "gzip";
    case Compression::kZstd:
      return "zstd";
  }
  return "none";
}

namespace detail {

class CompressionEngine {
 public:
  virtual ~CompressionEngine() = default;
  virtual void write(const unsigned char* data, size_t size) = 0;
  virtual void finish() = 0;
};

}  // namespace detail

std::string compressor_id(const CompressionOptions& options) {
  switch (options.algorithm) {
    case Compression::kNone:
      return "none";
    case Compression::kGzip:
      return options.level == -1 ? "gzip-isal1" : "gzip-zlib" + std::to_string(options.level);
    case Compression::kZstd:
      return "zstd" + std::to_string(options.level == -1 ? ZSTD_CLEVEL_DEFAULT : options.level);
  }
  return "unknown";
}

namespace {

constexpr unsigned kMaxThreads = 256;
constexpr size_t kMinBlockSize = size_t{1} << 10;
// zlib counts input and output in 32-bit uInt; 1 GiB leaves room for deflateBound's overhead.
constexpr size_t kMaxBlockSize = size_t{1} << 30;

unsigned resolve_threads(unsigned requested) {
  unsigned n = requested != 0 ? requested : std::thread::hardware_concurrency();
  return std::clamp(n, 1u, kMaxThreads);
}

class PassThroughEngine : public detail::CompressionEngine {
 public:
  explicit PassThroughEngine(ByteSink& out) : out_(out) {}
  void write(const unsigned char* data, size_t size) override { out_.write(data, size); }
  void finish() override {}

 private:
  ByteSink& out_;
};

// The gzip member header both compressors write: no flags, mtime 0, XFL 0, OS 255 ("unknown",
// as Go's compress/gzip writes), so the bytes depend only on the input.
constexpr unsigned char kGzipHeader[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255};

// One ISA-L (Intel's igzip, Debian's libisal) deflate state producing complete gzip members at
// level 1: several times faster than zlib at a ratio close to zlib's level 6 on layer data. Each
// compressing thread owns one and reuses it (isal_deflate_reset).
class IsalMemberCompressor {
 public:
  IsalMemberCompressor() : level_buf_(ISAL_DEF_LVL1_DEFAULT) {}
  IsalMemberCompressor(const IsalMemberCompressor&) = delete;
  IsalMemberCompressor& operator=(const IsalMemberCompressor&) = delete;

  // Replaces `output` with one gzip member holding `input`.
  void compress(const std::vector<unsigned char>& input, std::vector<unsigned char>& output) {
    // A full re-initialisation, hash tables included: isal_deflate_reset keeps entries from the
    // previous member, which changes the matches found, so the bytes would depend on which
    // blocks the thread compressed before.
    isal_deflate_init(&stream_);
    std::fill(level_buf_.begin(), level_buf_.end(), 0);
    stream_.level = 1;
    stream_.level_buf = level_buf_.data();
    stream_.level_buf_size = static_cast<uint32_t>(level_buf_.size());
    stream_.gzip_flag = IGZIP_GZIP_NO_HDR;  // the header is written here; ISA-L adds the trailer
    stream_.end_of_stream = 1;
    stream_.flush = NO_FLUSH;
    // Deflate can expand incompressible data slightly: stored blocks cost 5 bytes per 64 KiB.
    output.resize(sizeof kGzipHeader + input.size() + input.size() / 64 + 1024);
    std::copy(std::begin(kGzipHeader), std::end(kGzipHeader), output.begin());
    stream_.next_in = const_cast<unsigned char*>(input.data());  // ISA-L's API is not const
    stream_.avail_in = static_cast<uint32_t>(input.size());
    stream_.next_out = output.data() + sizeof kGzipHeader;
    stream_.avail_out = static_cast<uint32_t>(output.size() - sizeof kGzipHeader);
    while (stream_.internal_state.state != ZSTATE_END) {
      int rc = isal_deflate(&stream_);
      if (rc != COMP_OK)
        throw Error("gzip: ISA-L deflate failed (" + std::to_string(rc) + ")");
      if (stream_.internal_state.state == ZSTATE_END)
        break;
      if (stream_.avail_out == 0) {
        size_t used = output.size();
        output.resize(output.size() * 2);
        stream_.next_out = output.data() + used;
        stream_.avail_out = static_cast<uint32_t>(output.size() - used);
      }
    }
    output.resize(output.size() - stream_.avail_out);
  }

 private:
  isal_zstream stream_{};
  std::vector<unsigned char> level_buf_;
};

// One zlib deflate state producing complete gzip members; each compressing thread owns one, and
// reuses it (deflateReset) because initialising allocates a few hundred KiB.
class ZlibMemberCompressor {
 public:
  explicit ZlibMemberCompressor(int level) {
    // windowBits 15 + 16 selects the gzip wrapper; memLevel 8 is zlib's default.
    int rc = deflateInit2(&stream_, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
    if (rc != Z_OK)
      throw Error("gzip: cannot initialise zlib (" + std::to_string(rc) + ")");
    // Fixed header fields so the bytes depend only on the input: mtime 0, no name or comment, and
    // OS 255 ("unknown", as Go's compress/gzip writes) rather than zlib's build-platform OS code.
    header_.time = 0;
    header_.os = 255;
  }
  ~ZlibMemberCompressor() { deflateEnd(&stream_); }
  ZlibMemberCompressor(const ZlibMemberCompressor&) = delete;
  ZlibMemberCompressor& operator=(const ZlibMemberCompressor&) = delete;

  // Replaces `output` with one gzip member holding `input`.
  void compress(const std::vector<unsigned char>& input, std::vector<unsigned char>& output) {
    check(deflateReset(&stream_), "reset");
    // Called after every reset: zlib forgets the header on deflateReset.
    check(deflateSetHeader(&stream_, &header_), "set header");
    output.resize(deflateBound(&stream_, static_cast<uLong>(input.size())));
    stream_.next_in = input.data();
    stream_.avail_in = static_cast<uInt>(input.size());
    stream_.next_out = output.data();
    stream_.avail_out = static_cast<uInt>(output.size());
    for (;;) {
      int rc = deflate(&stream_, Z_FINISH);
      if (rc == Z_STREAM_END)
        break;
      if (rc != Z_OK && rc != Z_BUF_ERROR)
        check(rc, "deflate");
      // deflateBound is an upper bound, so this is not expected; grow rather than trust it blindly.
      size_t used = output.size() - stream_.avail_out;
      output.resize(output.size() * 2);
      stream_.next_out = output.data() + used;
      stream_.avail_out = static_cast<uInt>(output.size() - used);
    }
    output.resize(output.size() - stream_.avail_out);
  }

 private:
  void check(int rc, const char* what) {
    if (rc != Z_OK) {
      throw Error(std::string("gzip: zlib ") + what +
                  " failed: " + (stream_.msg ? stream_.msg : std::to_string(rc)));
    }
  }

  z_stream stream_{};
  gz_header header_{};
};

// The member compressor a gzip stream uses: ISA-L for the default level, zlib for an explicit
// one (so --compression-level keeps zlib's meaning of 0..9).
class GzipMemberCompressor {
 public:
  explicit GzipMemberCompressor(int level) {
    if (level == kIsalLevel)
      isal_.emplace();
    else
      zlib_.emplace(level);
  }
  void compress(const std::vector<unsigned char>& input, std::vector<unsigned char>& output) {
    if (isal_)
      isal_->compress(input, output);
    else
      zlib_->compress(input, output);
  }

  static constexpr int kIsalLevel = -100;  // not a zlib level

 private:
  std::optional<IsalMemberCompressor> isal_;
  std::optional<ZlibMemberCompressor> zlib_;
};

// Parallel gzip: blocks of block_size bytes become independent gzip members, compressed on a pool
// of worker threads and written to `out` in input order by the caller's thread.
class GzipEngine : public detail::CompressionEngine {
 public:
  GzipEngine(ByteSink& out, int level, unsigned threads, size_t block_size)
      : out_(out),
        level_(level),
        threads_(threads),
        block_size_(block_size),
        max_in_flight_(2 * size_t{threads}) {
    current_ = take_block();
  }

  ~GzipEngine() override { stop_workers(); }

  void write(const unsigned char* data, size_t size) override {
    while (size > 0) {
      size_t n = std::min(size, block_size_ - current_->input.size());
      current_->input.insert(current_->input.end(), data, data + n);
      data += n;
      size -= n;
      if (current_->input.size() == block_size_)
        submit();
    }
  }

  void finish() override {
    // An empty stream still needs one member: zero bytes are not a valid gzip file.
    if (!current_->input.empty() || members_ == 0)
      submit();
    while (!pending_.empty())
      write_oldest();
    stop_workers();
  }

 private:
  struct Block {
    std::vector<unsigned char> input;
    std::vector<unsigned char> output;
    bool done = false;         // guarded by mutex_
    std::exception_ptr error;  // set by the worker before done
  };

  std::unique_ptr<Block> take_block() {
    if (!spare_.empty()) {
      auto block = std::move(spare_.back());
      spare_.pop_back();
      return block;
    }
    auto block = std::make_unique<Block>();
    block->input.reserve(block_size_);
    return block;
  }

  void submit() {
    ++members_;
    if (threads_ == 1) {
      // No pool: same member format, so the bytes equal those of the threaded path.
      if (!inline_)
        inline_.emplace(level_);
      inline_->compress(current_->input, current_->output);
      out_.write(current_->output.data(), current_->output.size());
      current_->input.clear();
      return;
    }
    // The bound on blocks in flight is what bounds memory when the producer outruns the pool.
    while (pending_.size() >= max_in_flight_)
      write_oldest();
    // Threads start as blocks arrive, so a small layer never starts more than it can use.
    if (workers_.size() < threads_) {
      try {
        workers_.emplace_back([this] { worker_loop(); });
      } catch (const std::system_error& e) {
        if (workers_.empty())
          throw Error(std::string("gzip: cannot start a thread: ") + e.what());
        // Fewer threads than asked for only costs speed; the bytes are the same.
      }
    }
    Block* block = current_.get();
    pending_.push_back(std::move(current_));
    {
      std::lock_guard lock(mutex_);
      block->done = false;
      block->error = nullptr;
      queue_.push_back(block);
    }
    work_ready_.notify_one();
    current_ = take_block();
    // Write whatever is already compressed so output streams and buffers return to spare_.
    while (!pending_.empty() && is_done(*pending_.front()))
      write_oldest();
  }

  bool is_done(const Block& block) {
    std::lock_guard lock(mutex_);
    return block.done;
  }

  void write_oldest() {
    Block& block = *pending_.front();
    {
      std::unique_lock lock(mutex_);
      block_done_.wait(lock, [&] { return block.done; });
    }
    if (block.error)
      std::rethrow_exception(block.error);
    out_.write(block.output.data(), block.output.size());
    block.input.clear();
    spare_.push_back(std::move(pending_.front()));
    pending_.pop_front();
  }

  void worker_loop() {
    std::optional<GzipMemberCompressor> compressor;
    std::unique_lock lock(mutex_);
    for (;;) {
      work_ready_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_)
        return;
      Block* block = queue_.front();
      queue_.pop_front();
      lock.unlock();
      try {
        if (!compressor)
          compressor.emplace(level_);
        compressor->compress(block->input, block->output);
      } catch (...) {
        block->error = std::current_exception();
      }
      lock.lock();
      block->done = true;
      // Only the writer thread waits on block_done_.
      block_done_.notify_one();
    }
  }

  void stop_workers() noexcept {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      queue_.clear();  // an abandoned stream's queued blocks are discarded, not compressed
    }
    work_ready_.notify_all();
    for (auto& worker : workers_)
      worker.join();
    workers_.clear();
  }

  ByteSink& out_;
  const int level_;
  const unsigned threads_;
  const size_t block_size_;
  const size_t max_in_flight_;

  // Touched only by the thread calling write()/finish().
  std::unique_ptr<Block> current_;              // being filled
  std::deque<std::unique_ptr<Block>> pending_;  // submitted, in input order, not yet written
  std::vector<std::unique_ptr<Block>> spare_;   // written blocks whose buffers are reused
  std::optional<GzipMemberCompressor> inline_;  // the compressor when threads_ == 1
  uint64_t members_ = 0;

  std::mutex mutex_;
  std::condition_variable work_ready_;  // workers: queue_ non-empty or stopping_
  std::condition_variable block_done_;  // writer: some block's done became true
  std::deque<Block*> queue_;            // guarded by mutex_; blocks no worker has taken yet
  bool stopping_ = false;               // guarded by mutex_
  std::vector<std::thread> workers_;    // declared last: joined before the members above die
};

class ZstdEngine : public detail::CompressionEngine {
 public:
  ZstdEngine(ByteSink& out, int level, unsigned threads, size_t block_size)
      : out_(out), cctx_(ZSTD_createCCtx()) {
    if (!cctx_)
      throw Error("zstd: cannot create a compression context");
    set(ZSTD_c_compressionLevel, level, "level");
    set(ZSTD_c_checksumFlag, 1, "checksum");
    // nbWorkers >= 1 even for one thread: libzstd's multithreaded format is the same for any
    // worker count, but differs from its single-threaded (nbWorkers 0) output. A libzstd built
    // without thread support rejects the parameter; then every thread count gives the
    // single-threaded bytes, which is still independent of `threads`.
    if (!ZSTD_isError(ZSTD_CCtx_setParameter(cctx_, ZSTD_c_nbWorkers, static_cast<int>(threads)))) {
      // The job size bounds memory (libzstd buffers about two jobs per worker) and, like the gzip
      // block size, is part of the output format. libzstd raises it to its 512 KiB minimum.
      set(ZSTD_c_jobSize, static_cast<int>(block_size), "job size");
    }
    buffer_.resize(ZSTD_CStreamOutSize());
  }

  ~ZstdEngine() override { ZSTD_freeCCtx(cctx_); }
  ZstdEngine(const ZstdEngine&) = delete;
  ZstdEngine& operator=(const ZstdEngine&) = delete;

  void write(const unsigned char* data, size_t size) override {
    ZSTD_inBuffer in{data, size, 0};
    // With workers, ZSTD_e_continue blocks inside libzstd when its job buffers are full, so this
    // loop waits rather than spins.
    while (in.pos < in.size)
      step(in, ZSTD_e_continue);
  }

  void finish() override {
    ZSTD_inBuffer in{nullptr, 0, 0};
    while (step(in, ZSTD_e_end) != 0) {
    }
  }

 private:
  size_t step(ZSTD_inBuffer& in, ZSTD_EndDirective mode) {
    ZSTD_outBuffer o{buffer_.data(), buffer_.size(), 0};
    size_t rc = ZSTD_compressStream2(cctx_, &o, &in, mode);
    if (ZSTD_isError(rc))
      throw Error(std::string("zstd: compression failed: ") + ZSTD_getErrorName(rc));
    if (o.pos > 0)
      out_.write(buffer_.data(), o.pos);
    return rc;
  }

  void set(ZSTD_cParameter param, int value, const char* what) {
    size_t rc = ZSTD_CCtx_setParameter(cctx_, param, value);
    if (ZSTD_isError(rc)) {
      throw Error(std::string("zstd: cannot set ") + what + " " + std::to_string(value) + ": " +
                  ZSTD_getErrorName(rc));
    }
  }

  ByteSink& out_;
  ZSTD_CCtx* cctx_;
  std::vector<unsigned char> buffer_;
};

}  // namespace

CompressingSink::CompressingSink(ByteSink& out, CompressionOptions options) {
  unsigned threads = resolve_threads(options.threads);
  if (options.algorithm != Compression::kNone &&
      (options.block_size < kMinBlockSize || options.block_size > kMaxBlockSize)) {
    throw Error("invalid compression block size " + std::to_string(options.block_size) +
                ": expected 1 KiB to 1 GiB");
  }
  switch (options.algorithm) {
    case Compression::kNone:
      engine_ = std::make_unique<PassThroughEngine>(out);
      break;
    case Compression::kGzip: {
      int level = options.level == -1 ? GzipMemberCompressor::kIsalLevel : options.level;
      if (level != GzipMemberCompressor::kIsalLevel && (level < 0 || level > 9)) {
        throw Error("invalid gzip level " + std::to_string(options.level) + ": expected 0 to 9");
      }
      engine_ = std::make_unique<GzipEngine>(out, level, threads, options.block_size);
      break;
    }
    case Compression::kZstd: {
      int level = options.level == -1 ? ZSTD_CLEVEL_DEFAULT : options.level;
      if (level < 1 || level > ZSTD_maxCLevel()) {
        throw Error("invalid zstd level " + std::to_string(options.level) + ": expected 1 to " +
                    std::to_string(ZSTD_maxCLevel()));
      }
      engine_ = std::make_unique<ZstdEngine>(out, level, threads, options.block_size);
      break;
    }
  }
  if (!engine_) {
    throw Error("invalid compression algorithm " +
                std::to_string(static_cast<int>(options.algorithm)));
  }
}

CompressingSink::~CompressingSink() = default;

void CompressingSink::write(const void* data, size_t size) {
  if (finished_)
    throw Error("compression: write after finish");
  if (size == 0)
    return;
  engine_->write(static_cast<const unsigned char*>(data), size);
}

void CompressingSink::finish() {
  if (finished_)
    throw Error("compression: finish called twice");
  finished_ = true;
  engine_->finish();
}

}  // namespace kiln::snapshotter
