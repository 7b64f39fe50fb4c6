#include "kiln/oci/layer_blob.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>

#include <algorithm>
#include <limits>
#include <memory>

#include "kiln/base/error.hpp"

namespace kiln::oci {

uint64_t expansion_limit(uint64_t compressed_bytes) {
  if (compressed_bytes > std::numeric_limits<uint64_t>::max() / kMaxExpansionRatio)
    return std::numeric_limits<uint64_t>::max();
  return std::max(kExpansionFloor, compressed_bytes * kMaxExpansionRatio);
}

Digest uncompressed_digest(int fd, const std::string& name) {
  std::unique_ptr<archive, decltype(&archive_read_free)> a(archive_read_new(), archive_read_free);
  if (!a)
    throw Error(name + ": out of memory");
  auto error = [&] {
    const char* msg = archive_error_string(a.get());
    return Error(name + ": " + (msg ? msg : "cannot read the layer"));
  };
  // "raw": the whole (decompressed) stream as one entry, whatever it holds.
  archive_read_support_filter_all(a.get());
  archive_read_support_format_raw(a.get());
  archive_entry* entry = nullptr;
  if (archive_read_open_fd(a.get(), fd, 64 * 1024) != ARCHIVE_OK ||
      archive_read_next_header(a.get(), &entry) != ARCHIVE_OK) {
    throw error();
  }
  struct stat st {};
  uint64_t known =
      ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? static_cast<uint64_t>(st.st_size) : 0;
  Sha256 hash;
  uint64_t total = 0;
  for (;;) {
    const void* block = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    int r = archive_read_data_block(a.get(), &block, &size, &offset);
    if (r == ARCHIVE_EOF)
      break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
      throw error();
    hash.update(block, size);
    total += size;
    uint64_t read =
        static_cast<uint64_t>(std::max<la_int64_t>(archive_filter_bytes(a.get(), -1), 0));
    if (total > expansion_limit(std::max(known, read))) {
      throw Error(name + ": expands to more than " +
                  std::to_string(expansion_limit(std::max(known, read))) +
                  " bytes, the limit for its compressed size (a compression bomb?)");
    }
  }
  return hash.finish();
}

}  // namespace kiln::oci
