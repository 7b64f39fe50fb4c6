// Content hashes of build-context files with a persistent stat cache, so an unchanged large
// context is stat()ed, not re-read.
//
//   cache/context/SHA256(CONTEXT PATH).statcache   one line per file (the directory is the
//                                                  store's context_caches(), store_layout.hpp):
//       HASH SIZE MTIME_NS CTIME_NS INODE DEVICE PATH
//
// A file's cached hash is used when size, mtime, ctime, inode and device all match what lstat()
// says now. Entries for files modified in the last two seconds are not saved (a write within the
// same clock tick could leave the metadata unchanged: git's "racy" problem). The cache is a
// hint: a missing or malformed file only costs re-reading. Thread-safe.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <string>
#include <unordered_map>

namespace kiln::solver {

class ContentHasher {
 public:
  // Loads the cache kept for `context` under `cache_dir`.
  ContentHasher(const std::filesystem::path& cache_dir, const std::filesystem::path& context);

  // XXH3-128 of the regular file `path` (whose lstat is `st`), 32 hex digits. Throws kiln::Error
  // naming the file when it cannot be read.
  std::string file_hash(const std::filesystem::path& path, const struct stat& st);

  // Writes the cache back (atomically) when something changed. Errors are ignored: the cache is
  // only an optimisation.
  void save();

  size_t hits() const { return hits_; }
  size_t misses() const { return misses_; }

 private:
  struct Entry {
    std::string hash;
    int64_t size = 0, mtime_ns = 0, ctime_ns = 0;
    uint64_t inode = 0, device = 0;
  };
  std::filesystem::path file_;
  std::mutex mutex_;
  std::unordered_map<std::string, Entry> entries_;
  int64_t racy_after_ns_ = 0;
  bool dirty_ = false;
  size_t hits_ = 0, misses_ = 0;
};

}  // namespace kiln::solver
