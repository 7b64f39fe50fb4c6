#include "kiln/snapshotter/compression.hpp"

#define ZLIB_CONST
#include <gtest/gtest.h>
#include <zlib.h>
#include <zstd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"

namespace kiln::snapshotter {
namespace {

class StringSink : public ByteSink {
 public:
  void write(const void* data, size_t size) override {
    bytes.append(static_cast<const char*>(data), size);
  }
  std::string bytes;
};

// Accepts `limit` bytes, then fails like a full disk.
class FailingSink : public ByteSink {
 public:
  explicit FailingSink(size_t limit) : limit_(limit) {}
  void write(const void*, size_t size) override {
    if (size > limit_)
      throw Error("write blob: No space left on device");
    limit_ -= size;
  }

 private:
  size_t limit_;
};

// Deterministic data that alternates incompressible and text-like runs, so both the literal and
// the match paths of the compressors are exercised.
std::string mixed_data(size_t size, uint64_t seed) {
  static const char* const kWords[] = {"layer ", "kiln ", "tar ", "digest ", "sha256 ", "\n"};
  std::string out;
  out.reserve(size);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  auto next = [&] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  while (out.size() < size) {
    size_t run = 1000 + next() % 20000;
    bool random = (next() & 1) != 0;
    for (size_t i = 0; i < run && out.size() < size; ++i) {
      if (random) {
        out.push_back(static_cast<char>(next() & 0xFF));
      } else {
        const char* w = kWords[next() % 6];
        for (; *w && out.size() < size; ++w)
          out.push_back(*w);
      }
    }
  }
  return out;
}

std::string compress(const std::string& input, CompressionOptions options, size_t chunk = 65536) {
  StringSink out;
  CompressingSink sink(out, options);
  for (size_t pos = 0; pos < input.size(); pos += chunk) {
    sink.write(input.data() + pos, std::min(chunk, input.size() - pos));
  }
  sink.finish();
  return out.bytes;
}

// Inflates every gzip member in turn, as gunzip does.
std::string gunzip(const std::string& data, int* members = nullptr) {
  z_stream zs{};
  EXPECT_EQ(inflateInit2(&zs, 15 + 16), Z_OK);
  std::string out;
  std::vector<unsigned char> buf(1 << 16);
  zs.next_in = reinterpret_cast<const Bytef*>(data.data());
  zs.avail_in = static_cast<uInt>(data.size());
  int count = 0;
  for (;;) {
    zs.next_out = buf.data();
    zs.avail_out = static_cast<uInt>(buf.size());
    int rc = inflate(&zs, Z_NO_FLUSH);
    out.append(reinterpret_cast<char*>(buf.data()), buf.size() - zs.avail_out);
    if (rc == Z_STREAM_END) {
      ++count;
      if (zs.avail_in == 0)
        break;
      inflateReset(&zs);
      continue;
    }
    if (rc != Z_OK) {
      ADD_FAILURE() << "inflate: " << rc;
      break;
    }
  }
  inflateEnd(&zs);
  if (members)
    *members = count;
  return out;
}

std::string unzstd(const std::string& data) {
  ZSTD_DCtx* d = ZSTD_createDCtx();
  std::string out;
  std::vector<char> buf(ZSTD_DStreamOutSize());
  ZSTD_inBuffer in{data.data(), data.size(), 0};
  size_t rc = 1;
  while (in.pos < in.size) {
    ZSTD_outBuffer o{buf.data(), buf.size(), 0};
    rc = ZSTD_decompressStream(d, &o, &in);
    if (ZSTD_isError(rc)) {
      ADD_FAILURE() << ZSTD_getErrorName(rc);
      break;
    }
    out.append(buf.data(), o.pos);
  }
  EXPECT_EQ(rc, 0u) << "truncated zstd frame";
  ZSTD_freeDCtx(d);
  return out;
}

bool have_tool(const std::string& name) {
  return std::system(("command -v " + name + " >/dev/null 2>&1").c_str()) == 0;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs "TOOL -dc" on `compressed` in a temporary directory and returns what it printed.
std::string run_decompressor(const std::string& tool, const std::string& compressed) {
  TempDir dir;
  auto in = dir.path() / "blob";
  auto out = dir.path() / "out";
  std::ofstream(in, std::ios::binary) << compressed;
  std::string cmd = tool + " -dc '" + in.string() + "' > '" + out.string() + "'";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  return read_file(out);
}

CompressionOptions gzip(unsigned threads, size_t block = 64 * 1024) {
  CompressionOptions o;
  o.algorithm = Compression::kGzip;
  o.threads = threads;
  o.block_size = block;
  return o;
}

CompressionOptions zstd(unsigned threads, size_t block = 1 << 20) {
  CompressionOptions o;
  o.algorithm = Compression::kZstd;
  o.threads = threads;
  o.block_size = block;
  return o;
}

TEST(Compression, Names) {
  EXPECT_EQ(parse_compression("gzip"), Compression::kGzip);
  EXPECT_EQ(parse_compression("zstd"), Compression::kZstd);
  EXPECT_EQ(parse_compression("none"), Compression::kNone);
  EXPECT_EQ(parse_compression("uncompressed"), Compression::kNone);
  EXPECT_THROW(parse_compression("xz"), Error);
  EXPECT_THROW(parse_compression("GZIP"), Error);
  try {
    parse_compression("lz4");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("\"lz4\""), std::string::npos) << e.what();
  }
  for (auto c : {Compression::kNone, Compression::kGzip, Compression::kZstd}) {
    EXPECT_EQ(parse_compression(compression_name(c)), c);
  }
}

TEST(Compression, InvalidOptionsThrow) {
  StringSink out;
  auto bad_level = gzip(1);
  bad_level.level = 10;
  EXPECT_THROW(CompressingSink(out, bad_level), Error);
  auto bad_zstd = zstd(1);
  bad_zstd.level = 23;
  EXPECT_THROW(CompressingSink(out, bad_zstd), Error);
  EXPECT_THROW(CompressingSink(out, gzip(1, 0)), Error);
  EXPECT_THROW(CompressingSink(out, gzip(1, size_t{2} << 30)), Error);
}

TEST(Compression, NonePassesThrough) {
  std::string data = mixed_data(100000, 1);
  CompressionOptions none;
  none.algorithm = Compression::kNone;
  EXPECT_EQ(compress(data, none), data);
  EXPECT_EQ(compress("", none), "");
}

TEST(Compression, GzipIsMultiMemberAndRoundTrips) {
  std::string data = mixed_data(3 * 1024 * 1024 + 12345, 2);
  std::string gz = compress(data, gzip(4));
  int members = 0;
  EXPECT_EQ(gunzip(gz, &members), data);
  EXPECT_EQ(members, 49);  // ceil(size / 64 KiB)
  EXPECT_LT(gz.size(), data.size());
}

TEST(Compression, GzipHeaderIsFixed) {
  std::string gz = compress("hello", gzip(1));
  ASSERT_GE(gz.size(), 10u);
  // magic, deflate, no flags (so no name), mtime 0, XFL, OS 255.
  EXPECT_EQ(gz.substr(0, 8), std::string("\x1f\x8b\x08\x00\x00\x00\x00\x00", 8));
  EXPECT_EQ(static_cast<unsigned char>(gz[9]), 255);
}

TEST(Compression, GzipBytesDoNotDependOnThreadsOrWriteSizes) {
  std::string data = mixed_data(2 * 1024 * 1024 + 7, 3);
  std::string one = compress(data, gzip(1));
  EXPECT_EQ(compress(data, gzip(4)), one);
  EXPECT_EQ(compress(data, gzip(2), 1000), one);
  EXPECT_EQ(compress(data, gzip(3), 1 << 20), one);
  EXPECT_EQ(compress(data, gzip(4), 65536 * 3 + 1), one);
  EXPECT_EQ(compress(data, gzip(4)), one) << "second run";
  // The block size is part of the format.
  EXPECT_NE(compress(data, gzip(4, 128 * 1024)), one);
}

TEST(Compression, GzipEmptyInputIsValid) {
  std::string gz = compress("", gzip(4));
  EXPECT_FALSE(gz.empty());
  EXPECT_EQ(gunzip(gz), "");
  if (have_tool("gzip")) {
    EXPECT_EQ(run_decompressor("gzip", gz), "");
  }
}

TEST(Compression, GzipCliDecompresses) {
  if (!have_tool("gzip"))
    GTEST_SKIP() << "gzip CLI not installed";
  std::string data = mixed_data(1024 * 1024 + 99, 4);
  EXPECT_EQ(run_decompressor("gzip", compress(data, gzip(3))), data);
}

TEST(Compression, ZstdRoundTripsAndIsThreadIndependent) {
  std::string data = mixed_data(3 * 1024 * 1024 + 5, 5);
  std::string one = compress(data, zstd(1));
  EXPECT_EQ(unzstd(one), data);
  EXPECT_EQ(compress(data, zstd(4)), one);
  EXPECT_EQ(compress(data, zstd(2), 777), one);
  EXPECT_EQ(compress(data, zstd(4)), one) << "second run";
  // Content checksum flag (frame header descriptor bit 2).
  ASSERT_GE(one.size(), 5u);
  EXPECT_EQ(one.substr(0, 4), std::string("\x28\xb5\x2f\xfd", 4));
  EXPECT_NE(static_cast<unsigned char>(one[4]) & 0x04, 0);
  EXPECT_EQ(unzstd(compress("", zstd(2))), "");
}

TEST(Compression, ZstdCliDecompresses) {
  if (!have_tool("zstd"))
    GTEST_SKIP() << "zstd CLI not installed";
  std::string data = mixed_data(2 * 1024 * 1024 + 1, 6);
  EXPECT_EQ(run_decompressor("zstd", compress(data, zstd(2))), data);
}

TEST(Compression, FinishOnceAndNoWritesAfter) {
  StringSink out;
  CompressingSink sink(out, gzip(2));
  sink.write("abc", 3);
  sink.finish();
  EXPECT_THROW(sink.write("x", 1), Error);
  EXPECT_THROW(sink.finish(), Error);
  EXPECT_EQ(gunzip(out.bytes), "abc");
}

TEST(Compression, UnfinishedSinkIsDiscardedQuietly) {
  std::string data = mixed_data(1024 * 1024, 7);
  for (auto options : {gzip(4), gzip(1), zstd(3)}) {
    StringSink out;
    {
      CompressingSink sink(out, options);
      sink.write(data.data(), data.size());
    }  // destroyed without finish(): threads stop, nothing throws
    EXPECT_LT(out.bytes.size(), data.size());
  }
}

TEST(Compression, SinkErrorsPropagate) {
  std::string data = mixed_data(2 * 1024 * 1024, 8);
  for (auto options : {gzip(4), gzip(1), zstd(2)}) {
    FailingSink out(1000);
    try {
      CompressingSink sink(out, options);
      sink.write(data.data(), data.size());
      sink.finish();
      FAIL() << "expected an error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("No space left"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace kiln::snapshotter
