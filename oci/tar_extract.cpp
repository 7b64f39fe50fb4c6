#include "kiln/oci/tar_extract.hpp"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "kiln/base/error.hpp"
#include "kiln/oci/layer_blob.hpp"

namespace kiln::oci {
namespace fs = std::filesystem;

namespace {

// `name` relative to the archive's root: leading "/" and "./" dropped.
std::string relative(std::string_view name) {
  for (;;) {
    if (name.starts_with('/'))
      name.remove_prefix(1);
    else if (name.starts_with("./"))
      name.remove_prefix(2);
    else
      return std::string(name == "." ? std::string_view() : name);
  }
}

}  // namespace

bool is_tar(const fs::path& file) {
  std::unique_ptr<archive, decltype(&archive_read_free)> a(archive_read_new(), archive_read_free);
  if (!a)
    return false;
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  archive_entry* entry = nullptr;
  return archive_read_open_filename(a.get(), file.c_str(), 1 << 16) == ARCHIVE_OK &&
         archive_read_next_header(a.get(), &entry) == ARCHIVE_OK;
}

void extract_tar(const fs::path& archive_path, const fs::path& dir, const std::string& what,
                 const ExtractOptions& options) {
  std::unique_ptr<archive, decltype(&archive_read_free)> a(archive_read_new(), archive_read_free);
  std::unique_ptr<archive, decltype(&archive_write_free)> out(archive_write_disk_new(),
                                                              archive_write_free);
  auto fail = [&](archive* from, const std::string& fallback) {
    std::string text = from && archive_error_string(from) ? archive_error_string(from) : fallback;
    if (from && archive_errno(from) > 0 &&
        text.find(std::strerror(archive_errno(from))) == std::string::npos) {
      text += std::string(": ") + std::strerror(archive_errno(from));
    }
    throw Error(what + ": " + text);
  };
  if (!a || !out)
    fail(nullptr, "out of memory");
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  int flags = ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_SYMLINKS;
  if (options.times)
    flags |= ARCHIVE_EXTRACT_TIME;
  if (options.permissions)
    flags |= ARCHIVE_EXTRACT_PERM;
  if (options.owners)
    flags |= ARCHIVE_EXTRACT_OWNER;
  if (options.xattrs)
    flags |= ARCHIVE_EXTRACT_XATTR;
  archive_write_disk_set_options(out.get(), flags);
  if (archive_read_open_filename(a.get(), archive_path.c_str(), 1 << 16) != ARCHIVE_OK)
    fail(a.get(), "cannot open the archive");
  std::error_code ec;
  const uint64_t limit = expansion_limit(fs::file_size(archive_path, ec));
  uint64_t declared = 0;
  for (;;) {
    archive_entry* entry = nullptr;
    int r = archive_read_next_header(a.get(), &entry);
    if (r == ARCHIVE_EOF)
      break;
    if (r != ARCHIVE_OK)
      fail(a.get(), "corrupt archive");
    if (options.on_entry)
      options.on_entry(entry);
    if (archive_entry_size_is_set(entry))
      declared += static_cast<uint64_t>(std::max<la_int64_t>(archive_entry_size(entry), 0));
    if (declared > limit) {
      fail(nullptr, "its files claim more than " + std::to_string(limit) +
                        " bytes, the limit for the archive's size (a compression bomb?)");
    }
    std::string name = relative(archive_entry_pathname(entry));
    if (name.empty())
      continue;
    std::string path = (dir / name).string();
    archive_entry_set_pathname(entry, path.c_str());
    if (const char* link = archive_entry_hardlink(entry)) {
      std::string target = (dir / relative(link)).string();
      archive_entry_set_hardlink(entry, target.c_str());
    }
    if (archive_write_header(out.get(), entry) != ARCHIVE_OK)
      fail(out.get(), "cannot extract " + name);
    const void* buf;
    size_t size;
    la_int64_t offset;
    int data;
    while ((data = archive_read_data_block(a.get(), &buf, &size, &offset)) == ARCHIVE_OK) {
      if (archive_write_data_block(out.get(), buf, size, offset) != ARCHIVE_OK)
        fail(out.get(), "cannot write " + name);
    }
    if (data != ARCHIVE_EOF)
      fail(a.get(), "corrupt archive data");
    if (archive_write_finish_entry(out.get()) != ARCHIVE_OK)
      fail(out.get(), "cannot finish " + name);
  }
  // Sets the directories' deferred modes and times: its failures count too.
  if (archive_write_close(out.get()) != ARCHIVE_OK)
    fail(out.get(), "cannot finish extracting");
}

}  // namespace kiln::oci
