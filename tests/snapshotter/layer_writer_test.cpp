#include "kiln/snapshotter/layer_writer.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <clocale>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"

namespace kiln::snapshotter {
namespace {

namespace fs = std::filesystem;

class StringSink : public ByteSink {
 public:
  void write(const void* data, size_t size) override {
    bytes.append(static_cast<const char*>(data), size);
  }
  std::string bytes;
};

class CountingSink : public ByteSink {
 public:
  void write(const void*, size_t size) override { bytes += size; }
  size_t bytes = 0;
};

// One entry as libarchive reads it back.
struct ReadEntry {
  std::string path;
  mode_t mode = 0;
  int64_t uid = 0, gid = 0;
  int64_t mtime = 0;
  long mtime_nsec = 0;
  bool atime_set = false, ctime_set = false;
  std::string uname, gname;
  std::string symlink, hardlink;
  std::string content;
  unsigned dev_major = 0, dev_minor = 0;
  std::map<std::string, std::string> xattrs;
};

// Reads a (possibly compressed) tar with libarchive.
std::vector<ReadEntry> read_tar(const std::string& blob) {
  archive* a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_tar(a);
  EXPECT_EQ(archive_read_open_memory(a, blob.data(), blob.size()), ARCHIVE_OK)
      << archive_error_string(a);
  std::vector<ReadEntry> out;
  archive_entry* e = nullptr;
  int rc;
  // ARCHIVE_WARN: a UTF-8 name that the test's "C" locale cannot represent; the entry still holds
  // the name's bytes.
  while ((rc = archive_read_next_header(a, &e)) == ARCHIVE_OK || rc == ARCHIVE_WARN) {
    ReadEntry r;
    r.path = archive_entry_pathname(e);
    r.mode = archive_entry_mode(e);
    r.uid = archive_entry_uid(e);
    r.gid = archive_entry_gid(e);
    r.mtime = archive_entry_mtime(e);
    r.mtime_nsec = archive_entry_mtime_nsec(e);
    r.atime_set = archive_entry_atime_is_set(e) != 0;
    r.ctime_set = archive_entry_ctime_is_set(e) != 0;
    if (const char* s = archive_entry_uname(e))
      r.uname = s;
    if (const char* s = archive_entry_gname(e))
      r.gname = s;
    if (const char* s = archive_entry_symlink(e))
      r.symlink = s;
    if (const char* s = archive_entry_hardlink(e))
      r.hardlink = s;
    r.dev_major = static_cast<unsigned>(archive_entry_rdevmajor(e));
    r.dev_minor = static_cast<unsigned>(archive_entry_rdevminor(e));
    archive_entry_xattr_reset(e);
    const char* name;
    const void* value;
    size_t size;
    while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
      r.xattrs[name] = std::string(static_cast<const char*>(value), size);
    }
    char buf[65536];
    la_ssize_t n;
    while ((n = archive_read_data(a, buf, sizeof buf)) > 0) {
      r.content.append(buf, static_cast<size_t>(n));
    }
    EXPECT_GE(n, 0) << archive_error_string(a);
    out.push_back(std::move(r));
  }
  EXPECT_EQ(rc, ARCHIVE_EOF) << archive_error_string(a);
  archive_read_free(a);
  return out;
}

std::string data_of(size_t size, uint64_t seed) {
  std::string out(size, '\0');
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    // Every other 4 KiB is text, so the data is neither trivial nor incompressible.
    out[i] = (i >> 12) % 2 ? static_cast<char>('a' + x % 8) : static_cast<char>(x >> 24);
  }
  return out;
}

// Log-like lines with 1/8 random runs: realistic for layers, and quick for zlib to compress (the
// 256 MiB test must stay fast on small machines).
std::string log_like(size_t size, uint64_t seed) {
  std::string out;
  out.reserve(size + 128);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  auto next = [&] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  while (out.size() < size) {
    if (next() % 8 == 0) {
      for (int i = 0; i < 8192; ++i)
        out.push_back(static_cast<char>(next() >> 56));
    }
    for (int i = 0; i < 100; ++i) {
      char line[128];
      int n = std::snprintf(line, sizeof line,
                            "%08zu level=info msg=\"served /api/v1/items/%u\" bytes=%u\n",
                            out.size(), static_cast<unsigned>(next() % 100000),
                            static_cast<unsigned>(next() % (1u << 20)));
      out.append(line, static_cast<size_t>(n));
    }
  }
  out.resize(size);
  return out;
}

void write_file(const fs::path& path, const std::string& content) {
  std::ofstream(path, std::ios::binary) << content;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool have_tool(const std::string& name) {
  return std::system(("command -v " + name + " >/dev/null 2>&1").c_str()) == 0;
}

std::string run_decompressor(const std::string& tool, const std::string& compressed) {
  TempDir dir;
  write_file(dir.path() / "blob", compressed);
  std::string cmd = tool + " -dc '" + (dir.path() / "blob").string() + "' > '" +
                    (dir.path() / "out").string() + "'";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  return read_file(dir.path() / "out");
}

LayerEntry dir_entry(std::string path, mode_t perm = 0755) {
  LayerEntry e;
  e.path = std::move(path);
  e.mode = S_IFDIR | perm;
  e.mtime_sec = 1700000000;
  return e;
}

LayerEntry file_entry(std::string path, std::string content, mode_t perm = 0644) {
  LayerEntry e;
  e.path = std::move(path);
  e.mode = S_IFREG | perm;
  e.content = std::move(content);
  e.mtime_sec = 1700000000;
  return e;
}

// A bit of everything, deliberately out of order.
std::vector<LayerEntry> sample_entries(const fs::path& host_file) {
  std::vector<LayerEntry> v;
  v.push_back(file_entry("usr/bin/tool", "#!/bin/sh\necho hi\n", 04755));
  v.push_back(dir_entry("usr/bin"));
  v.push_back(dir_entry("usr"));
  v.push_back(dir_entry("tmp", 01777));
  v.push_back(file_entry("usr/bin/empty", ""));
  LayerEntry from_host;
  from_host.path = "usr/share/data.bin";
  from_host.mode = S_IFREG | 02640;
  from_host.source = host_file;
  from_host.uid = 1000;
  from_host.gid = 300000;  // needs a PAX record
  from_host.mtime_sec = 1600000000;
  from_host.mtime_nsec = 123456789;
  from_host.xattrs = {{"user.z", "last"}, {"user.a", std::string("bin\0ary", 7)}};
  v.push_back(from_host);
  v.push_back(dir_entry("usr/share"));
  LayerEntry link;
  link.path = "usr/bin/link";
  link.mode = S_IFLNK | 0777;
  link.link_target = "../share/data.bin";
  v.push_back(link);
  LayerEntry hard;
  hard.path = "usr/bin/tool2";
  hard.mode = S_IFREG | 04755;
  hard.hardlink = true;
  hard.link_target = "usr/bin/tool";
  v.push_back(hard);
  LayerEntry fifo;
  fifo.path = "run-fifo";
  fifo.mode = S_IFIFO | 0600;
  v.push_back(fifo);
  LayerEntry dev;
  dev.path = "dev-null";
  dev.mode = S_IFCHR | 0666;
  dev.dev_major = 1;
  dev.dev_minor = 3;
  v.push_back(dev);
  v.push_back(file_entry(std::string(150, 'x') + "/" + std::string(120, 'y'), "long"));
  v.push_back(dir_entry(std::string(150, 'x')));
  v.push_back(file_entry("caf\xc3\xa9", "utf-8 name"));
  v.push_back(file_entry("latin\xe9", "not utf-8"));
  return v;
}

LayerOptions options_for(Compression c, unsigned threads) {
  LayerOptions o;
  o.compression.algorithm = c;
  o.compression.threads = threads;
  o.compression.block_size = 64 * 1024;
  return o;
}

std::string write_to_string(std::vector<LayerEntry> entries, const LayerOptions& options,
                            LayerResult* result = nullptr) {
  StringSink out;
  LayerResult r = write_layer(std::move(entries), options, out);
  if (result)
    *result = r;
  return out.bytes;
}

class LayerWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    host_file_ = dir_.path() / "data.bin";
    write_file(host_file_, data_of(5 * 1024 * 1024 + 321, 42));  // several compression blocks
  }
  TempDir dir_;
  fs::path host_file_;
};

TEST_F(LayerWriterTest, SameEntriesGiveSameBytesWhateverTheOrderRunOrThreads) {
  for (Compression c : {Compression::kNone, Compression::kGzip, Compression::kZstd}) {
    auto entries = sample_entries(host_file_);
    LayerResult r1;
    std::string one = write_to_string(entries, options_for(c, 1), &r1);
    std::reverse(entries.begin(), entries.end());
    LayerResult r4;
    std::string four = write_to_string(entries, options_for(c, 4), &r4);
    EXPECT_EQ(one, four) << compression_name(c);
    EXPECT_EQ(r1.digest, r4.digest);
    EXPECT_EQ(r1.diff_id, r4.diff_id);
    EXPECT_EQ(write_to_string(entries, options_for(c, 4)), one) << "second run";
  }
}

TEST_F(LayerWriterTest, DigestsSizesAndCompressorsAgree) {
  auto entries = sample_entries(host_file_);
  LayerResult plain;
  std::string tar = write_to_string(entries, options_for(Compression::kNone, 2), &plain);
  EXPECT_EQ(plain.diff_id, oci::sha256_of(tar));
  EXPECT_EQ(plain.digest, plain.diff_id);
  EXPECT_EQ(plain.size, static_cast<int64_t>(tar.size()));
  EXPECT_EQ(plain.uncompressed_size, plain.size);
  EXPECT_EQ(plain.compression, Compression::kNone);
  // Tar records are 512 bytes; the archive ends with exactly two zero blocks, no record padding.
  EXPECT_EQ(tar.size() % 512, 0u);
  EXPECT_EQ(tar.substr(tar.size() - 1024), std::string(1024, '\0'));
  EXPECT_NE(tar.substr(tar.size() - 1536, 512), std::string(512, '\0'));

  for (Compression c : {Compression::kGzip, Compression::kZstd}) {
    LayerResult r;
    std::string blob = write_to_string(entries, options_for(c, 3), &r);
    EXPECT_EQ(r.compression, c);
    EXPECT_EQ(r.diff_id, plain.diff_id) << compression_name(c);
    EXPECT_EQ(r.uncompressed_size, plain.uncompressed_size);
    EXPECT_EQ(r.digest, oci::sha256_of(blob));
    EXPECT_EQ(r.size, static_cast<int64_t>(blob.size()));
    EXPECT_LT(r.size, r.uncompressed_size);
    // libarchive's own decompressors read our output.
    EXPECT_EQ(read_tar(blob).size(), entries.size());
    const char* tool = c == Compression::kGzip ? "gzip" : "zstd";
    if (!have_tool(tool)) {
      std::cout << "[ SKIPPED  ] " << tool << " CLI not installed\n";
      continue;
    }
    std::string decompressed = run_decompressor(tool, blob);
    EXPECT_EQ(oci::sha256_of(decompressed), r.diff_id) << tool;
    EXPECT_TRUE(decompressed == tar) << tool;
  }
}

TEST_F(LayerWriterTest, EntriesAreSortedWithMetadataIntact) {
  auto read =
      read_tar(write_to_string(sample_entries(host_file_), options_for(Compression::kGzip, 2)));
  std::vector<std::string> paths;
  for (const auto& r : read)
    paths.push_back(r.path);
  std::vector<std::string> expected = {
      "caf\xc3\xa9",
      "dev-null",
      "latin\xe9",
      "run-fifo",
      "tmp/",
      "usr/",
      "usr/bin/",
      "usr/bin/empty",
      "usr/bin/link",
      "usr/bin/tool",
      "usr/bin/tool2",
      "usr/share/",
      "usr/share/data.bin",
      std::string(150, 'x') + "/",
      std::string(150, 'x') + "/" + std::string(120, 'y'),
  };
  ASSERT_EQ(paths, expected);
  std::map<std::string, ReadEntry> by_path;
  for (const auto& r : read)
    by_path[r.path] = r;

  for (const auto& r : read) {
    EXPECT_EQ(r.uname, "") << r.path;
    EXPECT_EQ(r.gname, "") << r.path;
    EXPECT_FALSE(r.atime_set) << r.path;
    EXPECT_FALSE(r.ctime_set) << r.path;
  }
  EXPECT_EQ(by_path["tmp/"].mode, S_IFDIR | 01777);
  EXPECT_EQ(by_path["usr/bin/tool"].mode, S_IFREG | 04755);
  EXPECT_EQ(by_path["usr/bin/tool"].content, "#!/bin/sh\necho hi\n");
  EXPECT_EQ(by_path["usr/bin/tool2"].hardlink, "usr/bin/tool");
  EXPECT_EQ(by_path["usr/bin/tool2"].content, "");
  EXPECT_EQ(by_path["usr/bin/empty"].mode, S_IFREG | 0644);
  EXPECT_EQ(by_path["usr/bin/empty"].content, "");
  EXPECT_EQ(by_path["usr/bin/link"].mode & S_IFMT, static_cast<mode_t>(S_IFLNK));
  EXPECT_EQ(by_path["usr/bin/link"].symlink, "../share/data.bin");
  EXPECT_EQ(by_path["run-fifo"].mode, S_IFIFO | 0600);
  EXPECT_EQ(by_path["dev-null"].mode, S_IFCHR | 0666);
  EXPECT_EQ(by_path["dev-null"].dev_major, 1u);
  EXPECT_EQ(by_path["dev-null"].dev_minor, 3u);
  EXPECT_EQ(by_path["caf\xc3\xa9"].content, "utf-8 name");
  EXPECT_EQ(by_path["latin\xe9"].content, "not utf-8");
  EXPECT_EQ(by_path[std::string(150, 'x') + "/" + std::string(120, 'y')].content, "long");

  const ReadEntry& data = by_path["usr/share/data.bin"];
  EXPECT_EQ(data.mode, S_IFREG | 02640);
  EXPECT_EQ(data.uid, 1000);
  EXPECT_EQ(data.gid, 300000);
  EXPECT_EQ(data.mtime, 1600000000);
  EXPECT_EQ(data.mtime_nsec, 123456789);
  EXPECT_TRUE(data.content == read_file(host_file_));
  std::map<std::string, std::string> xattrs = {{"user.a", std::string("bin\0ary", 7)},
                                               {"user.z", "last"}};
  EXPECT_EQ(data.xattrs, xattrs);
}

TEST_F(LayerWriterTest, PaxHeadersAreMinimalAndCarryNoHostState) {
  std::string tar = write_to_string(sample_entries(host_file_), options_for(Compression::kNone, 1));
  // Walk the raw records: every 'x' header is named .../PaxHeader/... (no process id) and holds
  // no time other than an entry's own mtime.
  int pax_headers = 0;
  size_t pos = 0;
  while (pos + 512 <= tar.size()) {
    std::string header = tar.substr(pos, 512);
    if (header == std::string(512, '\0'))
      break;
    size_t size = std::stoull(header.substr(124, 12), nullptr, 8);
    char type = header[156];
    EXPECT_TRUE(header.substr(265, 64) == std::string(64, '\0')) << "uname/gname must be empty";
    if (type == 'x') {
      ++pax_headers;
      std::string name = header.substr(0, 100).c_str();
      EXPECT_NE(name.find("PaxHeader/"), std::string::npos) << name;
      std::string body = tar.substr(pos + 512, size);
      EXPECT_EQ(body.find("atime="), std::string::npos) << body;
      EXPECT_EQ(body.find("ctime="), std::string::npos) << body;
      EXPECT_EQ(body.find("LIBARCHIVE."), std::string::npos) << body;
    }
    EXPECT_NE(type, 'g') << "no global header";
    pos += 512 + (size + 511) / 512 * 512;
  }
  // data.bin (gid, nsec, xattrs), the long directory and file paths, the two non-ASCII names.
  EXPECT_EQ(pax_headers, 5);
  EXPECT_NE(tar.find("SCHILY.xattr.user.a="), std::string::npos);
  EXPECT_NE(tar.find("mtime=1600000000.123456789"), std::string::npos);
}

TEST_F(LayerWriterTest, OutputDoesNotDependOnTheProcessLocale) {
  auto entries = sample_entries(host_file_);
  std::string c_locale = write_to_string(entries, options_for(Compression::kNone, 1));
  const char* old = std::setlocale(LC_ALL, nullptr);
  std::string saved = old ? old : "C";
  if (!std::setlocale(LC_ALL, "C.UTF-8"))
    GTEST_SKIP() << "C.UTF-8 locale unavailable";
  std::string utf8 = write_to_string(entries, options_for(Compression::kNone, 1));
  std::setlocale(LC_ALL, saved.c_str());
  EXPECT_TRUE(utf8 == c_locale);
}

// The PAX records of the entry whose data is `content`, or "" if it has none.
std::string pax_records_before(const std::string& tar, const std::string& content) {
  size_t at = tar.find(content);
  if (at == std::string::npos || at < 1536)
    return "";
  // Layout: 'x' header, records (< 512 bytes here), entry header, content.
  std::string x = tar.substr(at - 1536, 512);
  if (x[156] != 'x')
    return "";
  return tar.substr(at - 1024, 512).c_str();
}

TEST_F(LayerWriterTest, NonAsciiNamesAreKeptExactly) {
  std::vector<LayerEntry> entries = {
      file_entry("caf\xc3\xa9", "content-utf8"),
      file_entry("nfd-e\xcc\x81", "content-nfd"),
      file_entry("latin\xe9", "content-latin1"),
      file_entry("overlong-\xc0\xaf", "content-overlong"),
  };
  std::string tar = write_to_string(entries, options_for(Compression::kNone, 1));
  // Valid UTF-8: a plain path record, no hdrcharset (which GNU tar warns about).
  std::string utf8 = pax_records_before(tar, "content-utf8");
  EXPECT_NE(utf8.find("path=caf\xc3\xa9\n"), std::string::npos) << utf8;
  EXPECT_EQ(utf8.find("hdrcharset"), std::string::npos) << utf8;
  // Not normalised to NFC.
  EXPECT_NE(pax_records_before(tar, "content-nfd").find("path=nfd-e\xcc\x81\n"), std::string::npos);
  // Not UTF-8: raw bytes, flagged as such.
  std::string latin = pax_records_before(tar, "content-latin1");
  EXPECT_NE(latin.find("hdrcharset=BINARY"), std::string::npos) << latin;
  EXPECT_NE(latin.find("path=latin\xe9\n"), std::string::npos) << latin;
  EXPECT_NE(pax_records_before(tar, "content-overlong").find("path=overlong-\xc0\xaf\n"),
            std::string::npos);
}

TEST_F(LayerWriterTest, MtimesAreClampedToSourceDateEpoch) {
  std::vector<LayerEntry> entries;
  entries.push_back(file_entry("new", "n"));  // 1700000000
  entries.push_back(file_entry("old", "o"));
  entries[1].mtime_sec = 1000;
  entries[1].mtime_nsec = 5;
  entries.push_back(file_entry("edge", "e"));
  entries[2].mtime_sec = 2000;
  entries[2].mtime_nsec = 1;
  LayerOptions options = options_for(Compression::kGzip, 2);
  options.source_date_epoch = 2000;
  auto read = read_tar(write_to_string(entries, options));
  ASSERT_EQ(read.size(), 3u);
  EXPECT_EQ(read[0].path, "edge");
  EXPECT_EQ(read[0].mtime, 2000);
  EXPECT_EQ(read[0].mtime_nsec, 0);
  EXPECT_EQ(read[1].path, "new");
  EXPECT_EQ(read[1].mtime, 2000);
  EXPECT_EQ(read[2].path, "old");
  EXPECT_EQ(read[2].mtime, 1000);
  EXPECT_EQ(read[2].mtime_nsec, 5);
}

TEST_F(LayerWriterTest, EmptyLayerIsTwoZeroBlocks) {
  LayerResult r;
  std::string tar = write_to_string({}, options_for(Compression::kNone, 1), &r);
  EXPECT_EQ(tar, std::string(1024, '\0'));
  std::string gz = write_to_string({}, options_for(Compression::kGzip, 4), &r);
  EXPECT_EQ(r.diff_id, oci::sha256_of(std::string(1024, '\0')));
  EXPECT_TRUE(read_tar(gz).empty());
}

std::string error_of(std::vector<LayerEntry> entries) {
  StringSink out;
  try {
    write_layer(std::move(entries), options_for(Compression::kGzip, 2), out);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST_F(LayerWriterTest, VanishedSourceIsAnErrorNamingIt) {
  auto entries = sample_entries(host_file_);
  fs::path gone = dir_.path() / "gone.txt";
  write_file(gone, "soon gone");
  LayerEntry e;
  e.path = "etc/gone";
  e.mode = S_IFREG | 0644;
  e.source = gone;
  entries.push_back(e);
  fs::remove(gone);
  std::string message = error_of(entries);
  EXPECT_NE(message.find("etc/gone"), std::string::npos) << message;
  EXPECT_NE(message.find(gone.string()), std::string::npos) << message;
  EXPECT_NE(message.find("No such file"), std::string::npos) << message;

  // The failed layer's sink gets no end-of-archive marker: nothing looks like a complete tar.
  StringSink out;
  EXPECT_THROW(write_layer(entries, options_for(Compression::kNone, 1), out), Error);
  ASSERT_GE(out.bytes.size(), 1024u);
  EXPECT_NE(out.bytes.substr(out.bytes.size() - 512), std::string(512, '\0'));
}

TEST_F(LayerWriterTest, SourceThatChangesSizeOrIsNotAFileIsAnError) {
  // procfs files claim size 0 and then produce bytes: the same as a file that grew.
  LayerEntry grew;
  grew.path = "status";
  grew.mode = S_IFREG | 0644;
  grew.source = "/proc/self/status";
  std::string message = error_of({grew});
  EXPECT_NE(message.find("/proc/self/status grew while being read"), std::string::npos) << message;

  LayerEntry dir;
  dir.path = "d";
  dir.mode = S_IFREG | 0644;
  dir.source = dir_.path();
  message = error_of({dir});
  EXPECT_NE(message.find("is not a regular file"), std::string::npos) << message;
}

TEST_F(LayerWriterTest, InvalidEntriesAreRejectedByName) {
  for (std::string bad : {"", "/abs", "./rel", "trailing/", "a//b", "a/../b", "a/./b", ".", ".."}) {
    std::string message = error_of({file_entry(bad, "x")});
    EXPECT_NE(message.find("invalid path"), std::string::npos) << bad << ": " << message;
  }
  EXPECT_NE(error_of({file_entry("a", "1"), file_entry("a", "2")}).find("\"a\": duplicate path"),
            std::string::npos);

  LayerEntry early;
  early.path = "a-link";
  early.mode = S_IFREG | 0644;
  early.hardlink = true;
  early.link_target = "b-file";
  EXPECT_NE(error_of({early, file_entry("b-file", "x")}).find("sorts after the link"),
            std::string::npos);

  LayerEntry both = file_entry("both", "x");
  both.source = host_file_;
  EXPECT_NE(error_of({both}).find("\"both\": both source and content"), std::string::npos);

  LayerEntry sock = file_entry("sock", "");
  sock.mode = S_IFSOCK | 0644;
  sock.content.reset();
  EXPECT_NE(error_of({sock}).find("\"sock\": unsupported file type"), std::string::npos);

  LayerEntry nolink;
  nolink.path = "l";
  nolink.mode = S_IFLNK | 0777;
  EXPECT_NE(error_of({nolink}).find("invalid symlink target"), std::string::npos);

  LayerEntry dup = file_entry("x", "");
  dup.xattrs = {{"user.a", "1"}, {"user.a", "2"}};
  EXPECT_NE(error_of({dup}).find("duplicate xattr"), std::string::npos);

  LayerEntry nsec = file_entry("n", "");
  nsec.mtime_nsec = 1'000'000'000;
  EXPECT_NE(error_of({nsec}).find("mtime"), std::string::npos);
}

TEST_F(LayerWriterTest, SinkErrorsNameTheEntry) {
  class FullSink : public ByteSink {
   public:
    void write(const void*, size_t) override { throw Error("write blob: No space left on device"); }
  } full;
  LayerOptions options = options_for(Compression::kNone, 1);
  try {
    write_layer({file_entry("f", "x")}, options, full);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer entry \"f\": write blob: No space"),
              std::string::npos)
        << e.what();
  }
}

// A unix socket bound at `path` (and closed: the file stays).
void make_socket(const fs::path& path) {
  int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string name = path.string();
  ASSERT_LT(name.size(), sizeof addr.sun_path);
  std::memcpy(addr.sun_path, name.c_str(), name.size() + 1);
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ::close(s);
}

TEST_F(LayerWriterTest, EntriesFromDirectory) {
  fs::path root = dir_.path() / "tree";
  fs::create_directories(root / "bin");
  fs::create_directories(root / "etc/empty");
  write_file(root / "bin/sh", "shell");
  fs::create_hard_link(root / "bin/sh", root / "bin/bash");  // "bash" sorts first: the target
  fs::create_hard_link(root / "bin/sh", root / "zz-sh");
  write_file(root / "etc/passwd", "root:x:0:0::/root:/bin/sh\n");
  write_file(root / "etc/empty-file", "");
  fs::create_symlink("../bin/sh", root / "etc/shell");
  fs::create_symlink("/does/not/exist", root / "dangling");
  ASSERT_EQ(::chmod((root / "bin/sh").c_str(), 04755), 0);
  ASSERT_EQ(::mkfifo((root / "fifo").c_str(), 0640), 0);
  make_socket(root / "sock");
  bool xattrs = ::setxattr((root / "etc/passwd").c_str(), "user.kiln", "v1", 2, 0) == 0;
  struct timespec times[2] = {{0, UTIME_OMIT}, {1234567890, 987654321}};
  ASSERT_EQ(::utimensat(AT_FDCWD, (root / "etc/passwd").c_str(), times, AT_SYMLINK_NOFOLLOW), 0);

  auto entries = entries_from_directory(root, "/app/");
  std::vector<std::string> paths;
  for (const auto& e : entries)
    paths.push_back(e.path);
  std::vector<std::string> expected = {
      "app/bin",       "app/bin/bash",  "app/bin/sh",         "app/dangling",
      "app/etc",       "app/etc/empty", "app/etc/empty-file", "app/etc/passwd",
      "app/etc/shell", "app/fifo",      "app/zz-sh"};
  ASSERT_EQ(paths, expected) << "sorted, socket skipped, root not included";
  std::map<std::string, LayerEntry> by_path;
  for (const auto& e : entries)
    by_path[e.path] = e;
  EXPECT_FALSE(by_path["app/bin/bash"].hardlink);
  EXPECT_EQ(by_path["app/bin/bash"].source, root / "bin/bash");
  EXPECT_EQ(by_path["app/bin/bash"].mode, S_IFREG | 04755);
  EXPECT_TRUE(by_path["app/bin/sh"].hardlink);
  EXPECT_EQ(by_path["app/bin/sh"].link_target, "app/bin/bash");
  EXPECT_TRUE(by_path["app/zz-sh"].hardlink);
  EXPECT_EQ(by_path["app/zz-sh"].link_target, "app/bin/bash");
  EXPECT_EQ(by_path["app/etc/shell"].link_target, "../bin/sh");
  EXPECT_EQ(by_path["app/etc/shell"].mode & S_IFMT, static_cast<mode_t>(S_IFLNK));
  EXPECT_EQ(by_path["app/dangling"].link_target, "/does/not/exist");
  EXPECT_EQ(by_path["app/fifo"].mode, S_IFIFO | 0640);
  EXPECT_EQ(by_path["app/etc/passwd"].mtime_sec, 1234567890);
  EXPECT_EQ(by_path["app/etc/passwd"].mtime_nsec, 987654321);
  EXPECT_EQ(by_path["app/etc/passwd"].uid, ::getuid());
  if (xattrs) {
    std::vector<std::pair<std::string, std::string>> want = {{"user.kiln", "v1"}};
    EXPECT_EQ(by_path["app/etc/passwd"].xattrs, want);
  } else {
    std::cout << "[ SKIPPED  ] user xattrs unsupported on " << root << "\n";
  }

  // And the whole tree round-trips through a layer.
  auto read = read_tar(write_to_string(entries, options_for(Compression::kZstd, 2)));
  ASSERT_EQ(read.size(), entries.size());
  std::map<std::string, ReadEntry> tar;
  for (const auto& r : read)
    tar[r.path] = r;
  EXPECT_EQ(tar["app/bin/bash"].content, "shell");
  EXPECT_EQ(tar["app/bin/bash"].mode, S_IFREG | 04755);
  EXPECT_EQ(tar["app/bin/sh"].hardlink, "app/bin/bash");
  EXPECT_EQ(tar["app/zz-sh"].hardlink, "app/bin/bash");
  EXPECT_EQ(tar["app/etc/empty-file"].content, "");
  EXPECT_EQ(tar["app/etc/shell"].symlink, "../bin/sh");
  EXPECT_EQ(tar["app/etc/empty/"].mode & S_IFMT, static_cast<mode_t>(S_IFDIR));
  if (xattrs) {
    EXPECT_EQ(tar["app/etc/passwd"].xattrs["user.kiln"], "v1");
  }

  EXPECT_THROW(entries_from_directory(root / "missing"), Error);
  EXPECT_THROW(entries_from_directory(root / "etc/passwd"), Error);
  EXPECT_THROW(entries_from_directory(root, "../escape"), Error);
  EXPECT_EQ(entries_from_directory(root, "./").front().path, "bin");
}

TEST_F(LayerWriterTest, EntryFromLstatTakesMetadataButLeavesXattrsAndHardLinksToTheCaller) {
  fs::path root = dir_.path() / "files";
  fs::create_directories(root);
  write_file(root / "file", "content");
  fs::create_hard_link(root / "file", root / "other-name");
  ::setxattr((root / "file").c_str(), "user.kiln", "v1", 2, 0);  // when supported: not taken
  fs::create_symlink("a/long/target", root / "link");
  ASSERT_EQ(::mkfifo((root / "fifo").c_str(), 0600), 0);
  auto lstat_of = [](const fs::path& path) {
    struct stat st {};
    EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
    return st;
  };

  struct stat st = lstat_of(root / "file");
  LayerEntry file = entry_from_lstat(root / "file", "in/layer/file", st);
  EXPECT_EQ(file.path, "in/layer/file");
  EXPECT_EQ(file.mode, st.st_mode);
  EXPECT_EQ(file.uid, st.st_uid);
  EXPECT_EQ(file.gid, st.st_gid);
  EXPECT_EQ(file.mtime_sec, st.st_mtim.tv_sec);
  EXPECT_EQ(file.mtime_nsec, st.st_mtim.tv_nsec);
  EXPECT_EQ(file.source, root / "file");
  EXPECT_FALSE(file.hardlink);
  EXPECT_TRUE(file.xattrs.empty());

  LayerEntry link = entry_from_lstat(root / "link", "link", lstat_of(root / "link"));
  EXPECT_EQ(link.link_target, "a/long/target");
  EXPECT_TRUE(link.source.empty());
  LayerEntry fifo = entry_from_lstat(root / "fifo", "fifo", lstat_of(root / "fifo"));
  EXPECT_EQ(fifo.mode, S_IFIFO | 0600);
  EXPECT_TRUE(fifo.source.empty());
  if (fs::exists("/dev/null")) {
    LayerEntry null = entry_from_lstat("/dev/null", "dev/null", lstat_of("/dev/null"));
    EXPECT_EQ(null.dev_major, 1u);
    EXPECT_EQ(null.dev_minor, 3u);
  }

  fs::path sock = root / "sock";
  make_socket(sock);
  try {
    entry_from_lstat(sock, "sock", lstat_of(sock));
    ADD_FAILURE() << "a socket became an entry";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(sock.string()), std::string::npos) << e.what();
  }
}

int64_t status_kib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0)
      return std::stoll(line.substr(std::strlen(field)));
  }
  return -1;
}

TEST_F(LayerWriterTest, LargeFileStreamsInBoundedMemory) {
  // A 256 MiB file is generated on disk (never in memory), written as a gzip layer, and the peak
  // RSS growth must stay far below its size.
  constexpr size_t kSize = size_t{256} << 20;
  fs::path big = dir_.path() / "big.bin";
  {
    std::string chunk = log_like(4 << 20, 7);
    std::ofstream out(big, std::ios::binary);
    for (size_t done = 0; done < kSize; done += chunk.size()) {
      chunk[0] = static_cast<char>(done >> 22);  // no two chunks identical
      out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    }
  }
  // Hand memory freed by earlier tests back to the kernel and reset the high-water mark (Linux
  // >= 4.0), so that neither hides growth here.
  ::malloc_trim(0);
  bool reset = static_cast<bool>(std::ofstream("/proc/self/clear_refs") << "5");
  int64_t before = status_kib(reset ? "VmHWM:" : "VmRSS:");
  ASSERT_GT(before, 0);

  LayerEntry e;
  e.path = "big.bin";
  e.mode = S_IFREG | 0644;
  e.source = big;
  LayerOptions options;  // defaults: gzip, 1 MiB blocks, hardware_concurrency threads
  CountingSink out;
  auto start = std::chrono::steady_clock::now();
  LayerResult r = write_layer({e}, options, out);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  int64_t after = status_kib("VmHWM:");
  fs::remove(big);

  EXPECT_EQ(r.uncompressed_size, static_cast<int64_t>(kSize) + 512 + 1024);
  EXPECT_EQ(r.size, static_cast<int64_t>(out.bytes));
  std::cout << "256 MiB gzip layer: " << seconds << " s, " << kSize / 1048576.0 / seconds
            << " MB/s, peak RSS growth " << (after - before) / 1024 << " MiB\n";
  EXPECT_LT(after - before, 64 * 1024) << "KiB of peak RSS growth";
}

}  // namespace
}  // namespace kiln::snapshotter
