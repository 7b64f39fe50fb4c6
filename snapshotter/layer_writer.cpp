#include "kiln/snapshotter/layer_writer.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <locale.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <string_view>
#include <system_error>
#include <utility>

#include "internal.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"

namespace kiln::snapshotter {
namespace {

namespace fs = std::filesystem;

// Regular files are copied through a buffer of this size: large enough that per-call overhead in
// libarchive, SHA-256 and the compressor is negligible, small enough not to matter for memory.
constexpr size_t kReadChunk = size_t{1} << 20;

std::string errno_text(int err) {
  return std::strerror(err);
}

bool valid_layer_path(std::string_view path) {
  if (path.empty() || path.find('\0') != std::string_view::npos)
    return false;
  for (const std::string& part : split(path, '/')) {
    if (part.empty() || part == "." || part == "..")
      return false;
  }
  return true;
}

// A sink that hashes and counts what passes through it on the way to `next`.
class DigestingSink : public ByteSink {
 public:
  explicit DigestingSink(ByteSink& next) : next_(next) {}
  void write(const void* data, size_t size) override {
    hash_.update(data, size);
    next_.write(data, size);
    bytes_ += static_cast<int64_t>(size);
  }
  oci::Digest finish() { return hash_.finish(); }
  int64_t bytes() const { return bytes_; }

 private:
  ByteSink& next_;
  oci::Sha256 hash_;
  int64_t bytes_ = 0;
};

// Pins the calling thread's locale for its lifetime. libarchive converts names from the locale's
// codeset to UTF-8 for PAX records, so the process locale would otherwise change the bytes. With
// C.UTF-8 (built into glibc >= 2.35), valid UTF-8 names become plain PAX "path" records, as Go's
// archive/tar writes them, and any other non-ASCII name is stored as its raw bytes with
// hdrcharset=BINARY; names are never altered or normalised. "C" is the fallback where C.UTF-8 is
// missing: then every non-ASCII name takes the binary form.
class LocaleScope {
 public:
  LocaleScope() {
    locale_ = newlocale(LC_ALL_MASK, "C.UTF-8", static_cast<locale_t>(nullptr));
    if (!locale_)
      locale_ = newlocale(LC_ALL_MASK, "C", static_cast<locale_t>(nullptr));
    if (locale_)
      previous_ = uselocale(locale_);
  }
  ~LocaleScope() {
    if (locale_) {
      uselocale(previous_);
      freelocale(locale_);
    }
  }
  LocaleScope(const LocaleScope&) = delete;
  LocaleScope& operator=(const LocaleScope&) = delete;

 private:
  locale_t locale_ = nullptr;
  locale_t previous_ = nullptr;
};

struct EntryDeleter {
  void operator()(archive_entry* entry) const { archive_entry_free(entry); }
};
using EntryPtr = std::unique_ptr<archive_entry, EntryDeleter>;

// A libarchive PAX writer whose output goes to a ByteSink.
class TarWriter {
 public:
  explicit TarWriter(ByteSink& sink) : sink_(sink), archive_(archive_write_new()) {
    if (!archive_)
      throw Error("libarchive: cannot create a writer");
    try {
      configure();
    } catch (...) {
      archive_write_free(archive_);  // the destructor does not run for a throwing constructor
      throw;
    }
  }

  ~TarWriter() {
    if (!closed_) {
      // After a failure the archive must be closed, not just freed: libarchive releases its
      // output state only in close (archive_write_fail + free would leak it). Closing writes the
      // rest of the entry and the trailer, which must not reach the sink of a failed layer.
      discard_ = true;
      archive_write_close(archive_);
    }
    archive_write_free(archive_);
  }
  TarWriter(const TarWriter&) = delete;
  TarWriter& operator=(const TarWriter&) = delete;

  void write_header(archive_entry* entry) {
    // ARCHIVE_WARN only reports a name that is not valid UTF-8, which libarchive then stores as
    // raw bytes with hdrcharset=BINARY: the name is kept exactly, which is what we want.
    if (archive_write_header(archive_, entry) < ARCHIVE_WARN)
      fail("write header");
  }

  void write_data(const void* data, size_t size) {
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
      la_ssize_t n = archive_write_data(archive_, p, size);
      if (n <= 0)
        fail("write data");
      p += n;
      size -= static_cast<size_t>(n);
    }
  }

  // Writes the end-of-archive blocks.
  void close() {
    if (archive_write_close(archive_) != ARCHIVE_OK)
      fail("close");
    closed_ = true;
  }

 private:
  static la_ssize_t write_callback(archive*, void* client, const void* buffer, size_t length) {
    auto* self = static_cast<TarWriter*>(client);
    if (self->discard_)
      return static_cast<la_ssize_t>(length);
    // libarchive is C: an exception must not unwind through it. Keep it and rethrow it afterwards.
    try {
      self->sink_.write(buffer, length);
      return static_cast<la_ssize_t>(length);
    } catch (...) {
      self->error_ = std::current_exception();
      return -1;
    }
  }

  void configure() {
    // Full pax rather than pax_restricted: restricted drops sub-second mtimes from entries that
    // need no other PAX record, so whether nanoseconds survive would depend on unrelated fields.
    // Full pax still writes no PAX header for entries that have nothing to put in one, and no
    // atime/ctime because none are set.
    check(archive_write_set_format_pax(archive_), "set pax format");
    // Only SCHILY.xattr.* (what Go's archive/tar, containerd and Docker read); libarchive's default
    // adds a base64 LIBARCHIVE.xattr.* duplicate of every attribute.
    check(archive_write_set_format_option(archive_, "pax", "xattrheader", "SCHILY"),
          "set xattr header");
    // No compression filter is added, and block size 0 hands every write straight to the callback
    // without padding the end of the archive to a 10240-byte record.
    check(archive_write_set_bytes_per_block(archive_, 0), "set block size");
    check(archive_write_open(archive_, this, nullptr, &TarWriter::write_callback, nullptr), "open");
  }

  void check(int rc, const char* what) {
    if (rc != ARCHIVE_OK)
      fail(what);
  }

  [[noreturn]] void fail(const char* what) {
    if (error_)
      std::rethrow_exception(std::exchange(error_, nullptr));
    const char* message = archive_error_string(archive_);
    throw Error(std::string("libarchive ") + what + ": " + (message ? message : "unknown error"));
  }

  ByteSink& sink_;
  archive* archive_;
  std::exception_ptr error_;
  bool closed_ = false;
  bool discard_ = false;
};

void validate_entry(const LayerEntry& e) {
  if (!valid_layer_path(e.path)) {
    throw Error("invalid path: expected a relative path without empty, \".\" or \"..\" components");
  }
  const mode_t type = e.mode & S_IFMT;
  if ((e.mode & ~mode_t{S_IFMT | 07777}) != 0)
    throw Error("invalid mode bits");
  switch (type) {
    case S_IFREG:
    case S_IFDIR:
    case S_IFLNK:
    case S_IFCHR:
    case S_IFBLK:
    case S_IFIFO:
      break;
    default:
      throw Error("unsupported file type in mode " + std::to_string(e.mode));
  }
  if (e.mtime_nsec < 0 || e.mtime_nsec > 999'999'999)
    throw Error("invalid mtime nanoseconds");
  const bool has_content = e.content.has_value() || !e.source.empty();
  if (e.hardlink) {
    if (type == S_IFDIR)
      throw Error("a directory cannot be a hard link");
    if (!valid_layer_path(e.link_target))
      throw Error("invalid hard link target");
    if (has_content)
      throw Error("a hard link cannot have content");
  } else if (type == S_IFLNK) {
    if (e.link_target.empty() || e.link_target.find('\0') != std::string::npos) {
      throw Error("invalid symlink target");
    }
  } else if (!e.link_target.empty()) {
    throw Error("link target on an entry that is not a link");
  }
  if (!e.hardlink && type != S_IFREG && has_content)
    throw Error("content on a non-regular file");
  if (e.content.has_value() && !e.source.empty())
    throw Error("both source and content are set");
  if ((e.dev_major != 0 || e.dev_minor != 0) &&
      (e.hardlink || (type != S_IFCHR && type != S_IFBLK))) {
    throw Error("device numbers on an entry that is not a device");
  }
  std::vector<std::string_view> names;
  for (const auto& [name, value] : e.xattrs) {
    if (name.empty() || name.find('\0') != std::string::npos) {
      throw Error("invalid xattr name " + quote(name));
    }
    names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  auto dup = std::adjacent_find(names.begin(), names.end());
  if (dup != names.end())
    throw Error("duplicate xattr " + quote(*dup));
}

// Streams a host file into the current tar entry after writing its header.
void write_source(TarWriter& tar, archive_entry* entry, const fs::path& source,
                  std::vector<char>& buffer) {
  // O_NONBLOCK: if the path has become a FIFO, open returns at once (instead of waiting for a
  // writer) and the type check below rejects it; for regular files it changes nothing.
  UniqueFd fd = open_or_throw(source, O_RDONLY | O_NONBLOCK | O_NOCTTY);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0)
    throw Error("stat " + source.string() + ": " + errno_text(errno));
  if (!S_ISREG(st.st_mode))
    throw Error(source.string() + " is not a regular file");
  const int64_t size = st.st_size;
  archive_entry_set_size(entry, size);
  tar.write_header(entry);

  // The header has promised `size` bytes; a file that changes size now would make the tar lie
  // (libarchive silently pads a short entry with zeros), so both directions are errors.
  int64_t done = 0;
  while (done < size) {
    size_t want =
        static_cast<size_t>(std::min<int64_t>(size - done, static_cast<int64_t>(buffer.size())));
    ssize_t n = ::read(fd.get(), buffer.data(), want);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      throw Error("read " + source.string() + ": " + errno_text(errno));
    }
    if (n == 0) {
      throw Error(source.string() + " shrank while being read: expected " + std::to_string(size) +
                  " bytes, got " + std::to_string(done));
    }
    tar.write_data(buffer.data(), static_cast<size_t>(n));
    done += n;
  }
  for (;;) {
    char extra;
    ssize_t n = ::read(fd.get(), &extra, 1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      throw Error("read " + source.string() + ": " + errno_text(errno));
    if (n > 0) {
      throw Error(source.string() + " grew while being read: expected " + std::to_string(size) +
                  " bytes");
    }
    break;
  }
}

void write_entry(TarWriter& tar, const LayerEntry& e, const LayerOptions& options,
                 std::vector<char>& buffer) {
  EntryPtr entry(archive_entry_new());
  if (!entry)
    throw Error("libarchive: cannot create an entry");
  archive_entry* ae = entry.get();
  archive_entry_copy_pathname(ae, e.path.c_str());
  archive_entry_set_mode(ae, e.mode);
  archive_entry_set_uid(ae, e.uid);
  archive_entry_set_gid(ae, e.gid);
  int64_t sec = e.mtime_sec;
  int64_t nsec = e.mtime_nsec;
  if (options.source_date_epoch && (options.all_mtimes || sec > *options.source_date_epoch ||
                                    (sec == *options.source_date_epoch && nsec > 0))) {
    sec = *options.source_date_epoch;
    nsec = 0;
  }
  archive_entry_set_mtime(ae, static_cast<time_t>(sec), static_cast<long>(nsec));

  // libarchive keeps xattrs in a list it prepends to: adding in descending name order makes the
  // PAX records come out ascending, independent of the order the caller listed them in.
  std::vector<const std::pair<std::string, std::string>*> xattrs;
  for (const auto& x : e.xattrs)
    xattrs.push_back(&x);
  std::sort(xattrs.begin(), xattrs.end(), [](auto* a, auto* b) { return a->first > b->first; });
  for (const auto* x : xattrs) {
    archive_entry_xattr_add_entry(ae, x->first.c_str(), x->second.data(), x->second.size());
  }

  const mode_t type = e.mode & S_IFMT;
  if (e.hardlink) {
    archive_entry_copy_hardlink(ae, e.link_target.c_str());
    archive_entry_set_size(ae, 0);
  } else if (type == S_IFLNK) {
    archive_entry_copy_symlink(ae, e.link_target.c_str());
  } else if (type == S_IFCHR || type == S_IFBLK) {
    archive_entry_set_rdevmajor(ae, e.dev_major);
    archive_entry_set_rdevminor(ae, e.dev_minor);
  }

  if (type == S_IFREG && !e.hardlink && !e.source.empty()) {
    write_source(tar, ae, e.source, buffer);
    return;
  }
  if (type == S_IFREG && !e.hardlink) {
    archive_entry_set_size(ae, e.content ? static_cast<int64_t>(e.content->size()) : 0);
  }
  tar.write_header(ae);
  if (!e.hardlink && e.content && !e.content->empty())
    tar.write_data(e.content->data(), e.content->size());
}

void sort_and_check(std::vector<LayerEntry>& entries) {
  for (const LayerEntry& e : entries) {
    try {
      validate_entry(e);
    } catch (const Error& err) {
      throw Error("layer entry " + quote(e.path) + ": " + err.what());
    }
  }
  // std::string compares as unsigned bytes, so a directory precedes everything under it.
  std::sort(entries.begin(), entries.end(),
            [](const LayerEntry& a, const LayerEntry& b) { return a.path < b.path; });
  for (size_t i = 1; i < entries.size(); ++i) {
    if (entries[i - 1].path == entries[i].path) {
      throw Error("layer entry " + quote(entries[i].path) + ": duplicate path");
    }
  }
  auto by_path = [](const LayerEntry& e, const std::string& p) { return e.path < p; };
  for (size_t i = 0; i < entries.size(); ++i) {
    const LayerEntry& e = entries[i];
    if (!e.hardlink)
      continue;
    // A reader can only link to what it has already extracted: a target in this layer must come
    // first. A target outside the layer is left to the applier (it may be in a lower layer).
    auto it = std::lower_bound(entries.begin(), entries.end(), e.link_target, by_path);
    if (it != entries.end() && it->path == e.link_target) {
      if (static_cast<size_t>(it - entries.begin()) >= i) {
        throw Error("layer entry " + quote(e.path) + ": hard link target " + quote(e.link_target) +
                    " sorts after the link");
      }
      if ((it->mode & S_IFMT) == S_IFDIR) {
        throw Error("layer entry " + quote(e.path) + ": hard link target " + quote(e.link_target) +
                    " is a directory");
      }
    }
  }
}

// --- entries_from_directory ---

std::string normalize_prefix(const std::string& prefix) {
  std::string p = detail::relative_path(prefix);
  if (!p.empty() && !valid_layer_path(p))
    throw Error("invalid layer path prefix " + quote(prefix));
  return p;
}

// Calls fn(buffer, capacity) until it fits: the size query and the read race with other writers.
template <typename Fn>
std::optional<std::string> read_sized(Fn fn, const fs::path& path, const char* what) {
  for (;;) {
    ssize_t size = fn(nullptr, 0);
    if (size < 0) {
      if (errno == ENOTSUP || errno == ENODATA)
        return std::nullopt;
      throw Error(std::string(what) + " " + path.string() + ": " + errno_text(errno));
    }
    std::string buffer(static_cast<size_t>(size), '\0');
    if (size == 0)
      return buffer;
    ssize_t got = fn(buffer.data(), buffer.size());
    if (got < 0) {
      if (errno == ERANGE)
        continue;  // it grew in between
      if (errno == ENOTSUP || errno == ENODATA)
        return std::nullopt;
      throw Error(std::string(what) + " " + path.string() + ": " + errno_text(errno));
    }
    buffer.resize(static_cast<size_t>(got));
    return buffer;
  }
}

std::vector<std::pair<std::string, std::string>> read_xattrs(const fs::path& path) {
  std::vector<std::pair<std::string, std::string>> xattrs;
  for (const std::string& name : detail::xattr_names(path)) {
    // Only attributes that mean the same on another machine: user.* and file capabilities.
    // security.selinux and friends are host policy; trusted.* needs CAP_SYS_ADMIN to read.
    if (!starts_with(name, "user.") && name != "security.capability")
      continue;
    if (auto value = detail::xattr_value(path, name))
      xattrs.emplace_back(name, std::move(*value));  // nullopt: removed meanwhile
  }
  std::sort(xattrs.begin(), xattrs.end());
  return xattrs;
}

}  // namespace

LayerResult write_layer(std::vector<LayerEntry> entries, const LayerOptions& options,
                        ByteSink& out) {
  sort_and_check(entries);

  DigestingSink blob(out);
  CompressingSink compressor(blob, options.compression);
  DigestingSink tar_stream(compressor);
  LocaleScope locale;
  TarWriter tar(tar_stream);
  std::vector<char> buffer(kReadChunk);
  for (const LayerEntry& e : entries) {
    try {
      write_entry(tar, e, options, buffer);
    } catch (const std::exception& err) {
      throw Error("layer entry " + quote(e.path) + ": " + err.what());
    }
  }
  try {
    tar.close();
    compressor.finish();
  } catch (const std::exception& err) {
    throw Error(std::string("layer: finishing the archive: ") + err.what());
  }

  LayerResult result;
  result.diff_id = tar_stream.finish();
  result.digest = blob.finish();
  result.size = blob.bytes();
  result.uncompressed_size = tar_stream.bytes();
  result.compression = options.compression.algorithm;
  return result;
}

std::vector<LayerEntry> entries_from_directory(const fs::path& root, const std::string& prefix) {
  const std::string base = normalize_prefix(prefix);
  struct stat root_st {};
  if (::stat(root.c_str(), &root_st) != 0) {
    throw Error("stat " + root.string() + ": " + errno_text(errno));
  }
  if (!S_ISDIR(root_st.st_mode))
    throw Error(root.string() + " is not a directory");

  std::vector<detail::HostEntry> found;
  // Directories still to read: (host path, in-layer path). An explicit stack, not recursion, so a
  // deep tree cannot overflow the thread's stack.
  std::vector<std::pair<fs::path, std::string>> todo;
  todo.emplace_back(root, base);
  while (!todo.empty()) {
    auto [dir, layer_dir] = std::move(todo.back());
    todo.pop_back();
    std::error_code ec;
    fs::directory_iterator it(dir, ec);
    if (ec)
      throw Error("read directory " + dir.string() + ": " + ec.message());
    for (; it != fs::directory_iterator(); it.increment(ec)) {
      const fs::path host = it->path();
      const std::string name = host.filename().string();
      std::string layer_path = layer_dir.empty() ? name : layer_dir + "/" + name;
      struct stat st {};
      if (::lstat(host.c_str(), &st) != 0) {
        throw Error("lstat " + host.string() + ": " + errno_text(errno));
      }
      if (S_ISSOCK(st.st_mode))
        continue;  // sockets cannot be stored in a tar
      detail::HostEntry f = detail::host_entry(host, std::move(layer_path), st);
      if (S_ISDIR(st.st_mode))
        todo.emplace_back(host, f.entry.path);
      f.entry.xattrs = read_xattrs(host);
      found.push_back(std::move(f));
    }
    if (ec)
      throw Error("read directory " + dir.string() + ": " + ec.message());
  }
  return detail::sorted_with_hard_links(std::move(found));
}

LayerEntry entry_from_lstat(const fs::path& host, std::string path, const struct stat& st) {
  LayerEntry e;
  e.path = std::move(path);
  e.mode = st.st_mode;
  e.uid = st.st_uid;
  e.gid = st.st_gid;
  e.mtime_sec = st.st_mtim.tv_sec;
  e.mtime_nsec = st.st_mtim.tv_nsec;
  if (S_ISREG(st.st_mode)) {
    e.source = host;
  } else if (S_ISLNK(st.st_mode)) {
    e.link_target = detail::read_link_target(host);
  } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
    e.dev_major = major(st.st_rdev);
    e.dev_minor = minor(st.st_rdev);
  } else if (!S_ISDIR(st.st_mode) && !S_ISFIFO(st.st_mode)) {
    throw Error(host.string() + ": unsupported file type");
  }
  return e;
}

namespace detail {

HostEntry host_entry(const fs::path& host, std::string path, const struct stat& st) {
  return {entry_from_lstat(host, std::move(path), st), st.st_dev, st.st_ino, st.st_nlink};
}

std::vector<LayerEntry> sorted_with_hard_links(std::vector<HostEntry> found) {
  std::sort(found.begin(), found.end(),
            [](const HostEntry& a, const HostEntry& b) { return a.entry.path < b.entry.path; });
  // The first path (in write order) of each multiply-linked inode carries the content; the others
  // link to it, so the target always precedes its links in the tar. Only regular files: appliers
  // (ours, containerd's) accept hard links to nothing else, overlayfs whiteouts share inodes, and
  // a second copy of a symlink, fifo or device is the same thing to a reader.
  std::map<std::pair<dev_t, ino_t>, std::string> first_link;
  std::vector<LayerEntry> entries;
  entries.reserve(found.size());
  for (HostEntry& f : found) {
    LayerEntry& e = f.entry;
    if (S_ISREG(e.mode) && f.nlink > 1) {
      auto [it, inserted] = first_link.try_emplace({f.dev, f.ino}, e.path);
      if (!inserted) {
        e.hardlink = true;
        e.link_target = it->second;
        e.source.clear();
        e.xattrs.clear();  // they belong to the shared inode, already on the target
        e.dev_major = e.dev_minor = 0;
      }
    }
    entries.push_back(std::move(e));
  }
  return entries;
}

std::string relative_path(std::string_view path) {
  for (;;) {
    if (path.starts_with("/")) {
      path.remove_prefix(1);
    } else if (path.starts_with("./")) {
      path.remove_prefix(2);
    } else {
      break;
    }
  }
  while (path.ends_with("/"))
    path.remove_suffix(1);
  if (path == ".")
    path = {};
  return std::string(path);
}

std::string read_link_target(const fs::path& path) {
  std::string target(256, '\0');
  for (;;) {
    ssize_t n = ::readlink(path.c_str(), target.data(), target.size());
    if (n < 0)
      throw Error("readlink " + path.string() + ": " + errno_text(errno));
    if (static_cast<size_t>(n) < target.size()) {
      target.resize(static_cast<size_t>(n));
      return target;
    }
    target.resize(target.size() * 2);  // possibly truncated: retry with more room
  }
}

std::vector<std::string> xattr_names(const fs::path& path) {
  auto list =
      read_sized([&](char* buf, size_t size) { return ::llistxattr(path.c_str(), buf, size); },
                 path, "llistxattr");
  std::vector<std::string> names;
  if (!list)
    return names;
  for (std::string& name : split(*list, '\0')) {
    if (!name.empty())
      names.push_back(std::move(name));
  }
  return names;
}

std::optional<std::string> xattr_value(const fs::path& path, const std::string& name) {
  return read_sized(
      [&](char* buf, size_t size) { return ::lgetxattr(path.c_str(), name.c_str(), buf, size); },
      path, "lgetxattr");
}

}  // namespace detail

}  // namespace kiln::snapshotter
