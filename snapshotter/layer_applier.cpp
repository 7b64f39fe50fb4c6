#include "kiln/snapshotter/layer_applier.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <locale.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/oci/layer_blob.hpp"

namespace kiln::snapshotter {
namespace {

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kWhiteoutMetaPrefix = ".wh..wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

// fchmodat2 (Linux 6.6) is the only way to chmod a path without following a final symlink;
// glibc 2.36 does not name it yet. The number is the same on every architecture.
#ifdef SYS_fchmodat2
constexpr long kSysFchmodat2 = SYS_fchmodat2;
#else
constexpr long kSysFchmodat2 = 452;
#endif

// Deeper than this, the tree is hostile or broken; the bound keeps the ".." walk finite.
constexpr int kMaxDepth = 4096;

std::string errno_text(int err) {
  return std::strerror(err);
}

// libarchive converts PAX names (UTF-8) to the charset of the calling thread's locale. Under "C"
// that fails for every non-ASCII name: a warning each, though the raw bytes are kept. Linux names
// are bytes and layers are written in UTF-8, so read under C.UTF-8 - on this thread only
// (uselocale), never touching the process locale. Raw-byte names (GNU headers, PAX
// hdrcharset=BINARY) pass through unchanged either way.
class Utf8ThreadLocale {
 public:
  Utf8ThreadLocale() : utf8_(::newlocale(LC_CTYPE_MASK, "C.UTF-8", locale_t{})) {
    if (utf8_)
      previous_ = ::uselocale(utf8_);
  }
  ~Utf8ThreadLocale() {
    if (!utf8_)
      return;
    ::uselocale(previous_);
    ::freelocale(utf8_);
  }
  Utf8ThreadLocale(const Utf8ThreadLocale&) = delete;
  Utf8ThreadLocale& operator=(const Utf8ThreadLocale&) = delete;

 private:
  locale_t utf8_;
  locale_t previous_ = locale_t{};
};

// openat2 confined to the tree under `rootfd`: `..` stops at rootfd and absolute symlinks
// restart there, exactly as if rootfd were "/" (chroot semantics); /proc magic links are
// refused because they could jump anywhere. Returns the descriptor or -errno.
int open_in_root(int rootfd, const std::string& rel, uint64_t flags) {
  open_how how{};
  how.flags = flags | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  int fd = openat2_retrying(rootfd, rel.empty() ? "." : rel.c_str(), how);
  return fd >= 0 ? fd : -errno;
}

std::string join_range(const std::vector<std::string>& comps, size_t count) {
  std::string out;
  for (size_t i = 0; i < count; ++i) {
    if (i)
      out += '/';
    out += comps[i];
  }
  return out;
}

using DirKey = std::pair<dev_t, ino_t>;                 // a directory itself
using NameKey = std::tuple<dev_t, ino_t, std::string>;  // (directory, name) of a non-dir

// A directory entry whose mode and times are set once the whole archive is applied.
struct PendingDir {
  std::string entry;  // for messages
  std::string rel;
  size_t depth = 0;
  DirKey key;
  mode_t mode = 0;
  timespec times[2]{};
};

class Applier {
 public:
  Applier(const std::string& layer, const std::filesystem::path& root, const ApplyOptions& options)
      : prefix_("apply layer " + layer + ": "), options_(options) {
    int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
      throw Error(prefix_ + "open root " + root.string() + ": " + errno_text(errno));
    root_.reset(fd);
    struct stat st {};
    if (::fstat(root_.get(), &st) != 0)
      fail_errno("stat root");
    root_key_ = {st.st_dev, st.st_ino};
    // Probe once so that a kernel without openat2 gets a clear message instead of an entry error.
    int probe = open_in_root(root_.get(), "", O_PATH | O_DIRECTORY);
    if (probe < 0) {
      throw Error(prefix_ + "openat2: " + errno_text(-probe) + " (Linux 5.6 or later is required)");
    }
    ::close(probe);
  }

  ApplyStats run(int fd);

 private:
  [[noreturn]] void fail(const std::string& cause) const {
    if (entry_.empty())
      throw Error(prefix_ + cause);
    throw Error(prefix_ + "entry " + quote(entry_) + ": " + cause);
  }
  [[noreturn]] void fail_errno(const std::string& what, int err = errno) const {
    fail(what + ": " + errno_text(err));
  }
  void warn(const std::string& note) const {
    if (!options_.warn)
      return;
    options_.warn(entry_.empty() ? prefix_ + note
                                 : prefix_ + "entry " + quote(entry_) + ": " + note);
  }
  std::string archive_error(archive* a) const {
    const char* msg = archive_error_string(a);
    return msg ? msg : "unknown libarchive error";
  }

  std::vector<std::string> components(std::string_view path, const char* what) const;
  UniqueFd parent_dir(const std::vector<std::string>& comps, bool create);
  UniqueFd open_dir_in_root(const std::string& rel, int flags);

  void apply_entry(archive* a, archive_entry* e);
  void whiteout(const std::vector<std::string>& comps);
  void opaque(const std::vector<std::string>& dir_comps);
  void purge_lower(int dirfd, const std::string& display, int depth);
  void remove_tree(int dirfd, const std::string& name, const std::string& display, int depth);
  bool make_room(int parentfd, const std::string& name, bool entry_is_dir);

  void make_dir(archive_entry* e, int parentfd, const std::string& name,
                const std::vector<std::string>& comps);
  void make_file(archive* a, archive_entry* e, int parentfd, const std::string& name);
  void make_hardlink(const char* target, int parentfd, const std::string& name);
  void make_node(archive_entry* e, int parentfd, const std::string& name, mode_t type);
  void set_attributes(archive_entry* e, int parentfd, const std::string& name, int fd, mode_t type);
  void set_xattrs(archive_entry* e, int parentfd, const std::string& name, int fd, mode_t type);
  void finish_dirs();

  void note_ours(int parentfd, const std::string& name);
  void mark_chain(int dirfd);
  bool is_ours(const struct stat& parent, const std::string& name, const struct stat& st) const {
    if (S_ISDIR(st.st_mode))
      return dirs_.count({st.st_dev, st.st_ino}) > 0;
    return names_.count({parent.st_dev, parent.st_ino, name}) > 0;
  }
  std::vector<std::string> list_dir(int dirfd, const std::string& display) const;
  struct stat stat_fd(int fd) const {
    struct stat st {};
    if (::fstat(fd, &st) != 0)
      fail_errno("fstat");
    return st;
  }

  std::string prefix_;
  const ApplyOptions& options_;
  UniqueFd root_;
  DirKey root_key_;
  std::string entry_;  // the entry being applied, for messages; empty between entries
  ApplyStats stats_;
  // What this layer created or merged, to tell it from lower layers for whiteouts. Directories
  // by identity (they cannot be hard-linked), other files by (directory, name) so that a hard
  // link into a lower file does not make the lower name look like ours.
  std::set<DirKey> dirs_;
  std::set<NameKey> names_;
  std::set<DirKey> opaque_done_;
  std::vector<PendingDir> pending_dirs_;
};

// Splits an archive path into its components. Empty and "." components and a leading "/" are
// dropped (re-rooting absolute names); ".." is refused, see the header.
std::vector<std::string> Applier::components(std::string_view path, const char* what) const {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos)
      end = path.size();
    std::string_view comp = path.substr(start, end - start);
    if (comp == "..")
      fail(std::string(what) + " has a \"..\" component");
    if (!comp.empty() && comp != ".")
      out.emplace_back(comp);
    start = end + 1;
  }
  return out;
}

// The names in dirfd. Failing to read is an error: silently seeing nothing would let a whiteout
// or opaque marker leave lower files in place.
std::vector<std::string> Applier::list_dir(int dirfd, const std::string& display) const {
  std::vector<std::string> names;
  // fdopendir takes ownership and needs a readable descriptor; dirfd may be O_PATH.
  int fd = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    fail_errno("read directory " + quote(display.empty() ? "/" : display));
  DIR* dir = ::fdopendir(fd);
  if (!dir) {
    const int err = errno;
    ::close(fd);
    fail_errno("read directory " + quote(display.empty() ? "/" : display), err);
  }
  errno = 0;
  while (dirent* d = ::readdir(dir)) {
    std::string_view n = d->d_name;
    if (n != "." && n != "..")
      names.emplace_back(n);
    errno = 0;
  }
  const int err = errno;
  ::closedir(dir);
  if (err != 0)
    fail_errno("read directory " + quote(display.empty() ? "/" : display), err);
  return names;
}

UniqueFd Applier::open_dir_in_root(const std::string& rel, int flags) {
  int fd = open_in_root(root_.get(), rel, static_cast<uint64_t>(flags | O_DIRECTORY));
  if (fd >= 0)
    return UniqueFd(fd);
  if (fd == -ENOENT || fd == -ENOTDIR)
    return UniqueFd();
  fail_errno("open directory " + quote(rel.empty() ? "/" : rel), -fd);
}

// Returns an O_PATH descriptor of the directory holding comps.back(), resolved inside root.
// With `create`, missing directories are made (0755); without, an empty UniqueFd means "no such
// directory". A symlink among the parents that dangles inside root is an error when creating:
// making its target would mean creating where the archive did not say.
UniqueFd Applier::parent_dir(const std::vector<std::string>& comps, bool create) {
  const size_t count = comps.size() - 1;
  UniqueFd fast = open_dir_in_root(join_range(comps, count), O_PATH);
  if (fast || !create)
    return fast;

  // Slow path: find the first missing component and create from there on.
  UniqueFd cur = open_dir_in_root("", O_PATH);
  for (size_t i = 0; i < count; ++i) {
    const std::string rel = join_range(comps, i + 1);
    UniqueFd next = open_dir_in_root(rel, O_PATH);
    if (!next) {
      struct stat st {};
      if (::fstatat(cur.get(), comps[i].c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode)) {
          fail("parent " + quote(rel) +
               " is a symbolic link that leads to no directory under the root");
        }
        if (!S_ISDIR(st.st_mode))
          fail("parent " + quote(rel) + " is not a directory");
      } else if (errno != ENOENT) {
        fail_errno("stat " + quote(rel));
      } else if (::mkdirat(cur.get(), comps[i].c_str(), 0755) != 0 && errno != EEXIST) {
        fail_errno("create directory " + quote(rel));
      }
      int fd = ::openat(cur.get(), comps[i].c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0)
        fail_errno("open directory " + quote(rel));
      next.reset(fd);
      note_ours(cur.get(), comps[i]);
    }
    cur = std::move(next);
  }
  return cur;
}

// Records (parentfd, name) as created by this layer, and every directory above it up to root:
// a directory that holds an entry of this layer exists in this layer.
void Applier::note_ours(int parentfd, const std::string& name) {
  struct stat parent = stat_fd(parentfd);
  struct stat st {};
  if (::fstatat(parentfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    fail_errno("stat " + quote(name));
  }
  if (S_ISDIR(st.st_mode)) {
    dirs_.insert({st.st_dev, st.st_ino});
  } else {
    names_.insert({parent.st_dev, parent.st_ino, name});
  }
  mark_chain(parentfd);
}

// Marks dirfd and its ancestors up to root as this layer's. Stops at the first one already
// marked: marking always covers the whole chain, so its ancestors are marked too.
void Applier::mark_chain(int dirfd) {
  int fd = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0)
    fail_errno("dup");
  UniqueFd cur(fd);
  DirKey previous{};
  for (int depth = 0; depth < kMaxDepth; ++depth) {
    struct stat st = stat_fd(cur.get());
    DirKey key{st.st_dev, st.st_ino};
    // Reaching the same directory twice means we are at "/" without meeting root: stop.
    if (key == previous || !dirs_.insert(key).second || key == root_key_)
      return;
    previous = key;
    // Only fstat is done on the way up; nothing above root is ever looked at beyond identity.
    fd = ::openat(cur.get(), "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
      fail_errno("open parent directory");
    cur.reset(fd);
  }
}

// Removes `name` under dirfd and everything below it, never following a symlink (unlinkat
// removes the link itself; subdirectories are opened O_NOFOLLOW).
void Applier::remove_tree(int dirfd, const std::string& name, const std::string& display,
                          int depth) {
  if (depth > kMaxDepth)
    fail("remove " + quote(display) + ": tree too deep");
  struct stat st {};
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT)
      return;
    fail_errno("stat " + quote(display));
  }
  if (S_ISDIR(st.st_mode)) {
    int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
      fail_errno("open " + quote(display));
    UniqueFd sub(fd);
    // Rootless: a read-only lower directory of ours must become writable to be emptied.
    if ((st.st_mode & S_IRWXU) != S_IRWXU && st.st_uid == ::geteuid()) {
      ::fchmod(sub.get(), (st.st_mode & 07777) | S_IRWXU);
    }
    for (const std::string& child : list_dir(sub.get(), display)) {
      remove_tree(sub.get(), child, display + "/" + child, depth + 1);
    }
    if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
      fail_errno("remove " + quote(display));
    }
  } else if (::unlinkat(dirfd, name.c_str(), 0) != 0 && errno != ENOENT) {
    fail_errno("remove " + quote(display));
  }
}

// The changeset rule for an existing path: kept (merged) only when both it and the entry are
// directories; otherwise removed. Unlinking before re-creating also matters for regular files:
// truncating in place would rewrite every hard link sharing the inode, lower layers included.
bool Applier::make_room(int parentfd, const std::string& name, bool entry_is_dir) {
  struct stat st {};
  if (::fstatat(parentfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT)
      return false;
    fail_errno("stat existing path");
  }
  if (entry_is_dir && S_ISDIR(st.st_mode))
    return true;
  remove_tree(parentfd, name, entry_, 0);
  return false;
}

void Applier::whiteout(const std::vector<std::string>& comps) {
  const std::string& base = comps.back();
  const std::string target = base.substr(kWhiteoutPrefix.size());
  if (target.empty() || target == "." || target == "..") {
    fail("whiteout names no file (" + quote(target) + ")");
  }
  ++stats_.whiteouts;
  // Nothing to hide when the directory is missing: do not create it just to remove nothing.
  UniqueFd parent = parent_dir(comps, false);
  if (!parent)
    return;
  mark_chain(parent.get());
  struct stat pst = stat_fd(parent.get());
  struct stat st {};
  if (::fstatat(parent.get(), target.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT)
      return;
    fail_errno("stat whiteout target");
  }
  // A whiteout hides lower layers only; what this layer wrote stays (OCI layer.md).
  if (is_ours(pst, target, st))
    return;
  std::vector<std::string> shown(comps.begin(), comps.end() - 1);
  shown.push_back(target);
  remove_tree(parent.get(), target, join(shown, "/"), 0);
}

void Applier::opaque(const std::vector<std::string>& dir_comps) {
  ++stats_.whiteouts;
  const std::string rel = join_range(dir_comps, dir_comps.size());
  UniqueFd dir = open_dir_in_root(rel, O_PATH);
  if (!dir)
    return;
  // The opaque directory itself exists in this layer, even if an ancestor is opaque too.
  mark_chain(dir.get());
  struct stat st = stat_fd(dir.get());
  if (!opaque_done_.insert({st.st_dev, st.st_ino}).second)
    return;
  purge_lower(dir.get(), rel, 0);
}

// Removes every child of dirfd that is not this layer's, recursing into directories that are
// (a merged directory still hides its lower contents). Running this when the marker is read
// gives the same result wherever the marker sits in the archive: later entries are ours anyway.
void Applier::purge_lower(int dirfd, const std::string& display, int depth) {
  if (depth > kMaxDepth)
    fail("opaque directory " + quote(display) + ": tree too deep");
  struct stat dst = stat_fd(dirfd);
  for (const std::string& name : list_dir(dirfd, display)) {
    const std::string shown = display.empty() ? name : display + "/" + name;
    struct stat st {};
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT)
        continue;
      fail_errno("stat " + quote(shown));
    }
    if (!is_ours(dst, name, st)) {
      remove_tree(dirfd, name, shown, depth + 1);
    } else if (S_ISDIR(st.st_mode)) {
      int fd = ::openat(dirfd, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0)
        fail_errno("open " + quote(shown));
      UniqueFd sub(fd);
      purge_lower(sub.get(), shown, depth + 1);
    }
  }
}

// The uncompressed tar stream of a layer. A "raw" libarchive reader undoes the compression; the
// tar reader pulls from it through read(), which hashes and counts every byte on the way, so the
// diff ID and the expansion are known without a second pass or a copy of the layer.
class UncompressedStream {
 public:
  UncompressedStream(int fd, const ApplyOptions& options) : fd_(fd), options_(options) {
    struct stat st {};
    off_t at = ::lseek(fd, 0, SEEK_CUR);
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && at >= 0 && st.st_size > at)
      known_compressed_ = static_cast<uint64_t>(st.st_size - at);
  }

  uint64_t bytes() const { return bytes_; }

  // Opens the decompressing reader; returns its error text on failure.
  std::optional<std::string> open() {
    if (!raw_)
      return "out of memory";
    archive_read_support_filter_all(raw_.get());
    archive_read_support_format_raw(raw_.get());
    if (archive_read_open_fd(raw_.get(), fd_, 64 * 1024) != ARCHIVE_OK ||
        archive_read_next_header(raw_.get(), &entry_) != ARCHIVE_OK) {
      const char* msg = archive_error_string(raw_.get());
      return msg ? msg : "cannot read the layer";
    }
    return std::nullopt;
  }

  // The most the layer may expand to, given what is known of its compressed size so far.
  uint64_t limit() const {
    if (options_.max_expanded_bytes)
      return *options_.max_expanded_bytes;
    la_int64_t read = archive_filter_bytes(raw_.get(), -1);
    return oci::expansion_limit(
        std::max(known_compressed_, static_cast<uint64_t>(std::max<la_int64_t>(read, 0))));
  }

  // libarchive's read callback for the tar reader `tar`.
  static la_ssize_t read(archive* tar, void* self, const void** buffer) {
    return static_cast<UncompressedStream*>(self)->next(tar, buffer);
  }

  // Hashes what the tar reader left unread (the padding after its end marker belongs to the
  // diff ID too) and returns the diff ID; nullopt with `error` set when the rest is unreadable.
  std::optional<oci::Digest> finish(std::string& error) {
    for (;;) {
      const void* block = nullptr;
      size_t size = 0;
      int r = take_block(&block, &size);
      if (r == ARCHIVE_EOF)
        return hash_.finish();
      if (r != ARCHIVE_OK) {
        const char* msg = archive_error_string(raw_.get());
        error = msg ? msg : "cannot read the layer";
        return std::nullopt;
      }
    }
  }

 private:
  la_ssize_t next(archive* tar, const void** buffer) {
    const void* block = nullptr;
    size_t size = 0;
    int r = take_block(&block, &size);
    if (r == ARCHIVE_EOF)
      return 0;
    if (r != ARCHIVE_OK) {
      const char* msg = archive_error_string(raw_.get());
      archive_set_error(tar, EIO, "%s", msg ? msg : "cannot decompress the layer");
      return -1;
    }
    if (bytes_ > limit()) {
      archive_set_error(tar, EFBIG,
                        "the layer expands to more than %llu bytes (the limit for its compressed "
                        "size; a compression bomb?)",
                        static_cast<unsigned long long>(limit()));
      return -1;
    }
    *buffer = block;
    return static_cast<la_ssize_t>(size);
  }

  // One block of uncompressed bytes, hashed and counted.
  int take_block(const void** block, size_t* size) {
    la_int64_t offset = 0;
    int r;
    do {
      r = archive_read_data_block(raw_.get(), block, size, &offset);
    } while (r == ARCHIVE_OK && *size == 0);
    if (r == ARCHIVE_OK) {
      hash_.update(*block, *size);
      bytes_ += *size;
    }
    return r == ARCHIVE_WARN ? ARCHIVE_OK : r;
  }

  int fd_;
  const ApplyOptions& options_;
  std::unique_ptr<archive, decltype(&archive_read_free)> raw_{archive_read_new(),
                                                              archive_read_free};
  archive_entry* entry_ = nullptr;
  uint64_t known_compressed_ = 0;
  uint64_t bytes_ = 0;
  oci::Sha256 hash_;
};

ApplyStats Applier::run(int fd) {
  Utf8ThreadLocale utf8;
  UncompressedStream stream(fd, options_);
  if (std::optional<std::string> error = stream.open())
    fail("read archive: " + *error);
  std::unique_ptr<archive, decltype(&archive_read_free)> a(archive_read_new(), archive_read_free);
  if (!a)
    fail("out of memory");
  // Only tar, uncompressed (the stream above decompressed it): a layer is a tar, and every other
  // reader is attack surface we do not need.
  archive_read_support_format_tar(a.get());
  if (archive_read_open(a.get(), &stream, nullptr, &UncompressedStream::read, nullptr) !=
      ARCHIVE_OK) {
    fail("read archive: " + archive_error(a.get()));
  }
  std::string last;
  uint64_t declared = 0;  // sizes regular files claim, sparse holes included
  for (;;) {
    archive_entry* e = nullptr;
    entry_.clear();
    int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF)
      break;
    // Not `r < ARCHIVE_WARN`: a damaged header gives ARCHIVE_RETRY, which is greater.
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
      // Reading the next header also skips the previous entry's data: name it, it helps.
      fail("read archive" + (last.empty() ? std::string() : " after entry " + quote(last)) + ": " +
           archive_error(a.get()));
    }
    ++stats_.entries;
    const char* name = archive_entry_pathname(e);
    if (!name)
      name = archive_entry_pathname_utf8(e);
    if (!name)
      fail("entry " + std::to_string(stats_.entries) + " has no usable name");
    entry_ = name;
    last = entry_;
    if (r == ARCHIVE_WARN)
      warn(archive_error(a.get()));
    if (archive_entry_filetype(e) == AE_IFREG && !archive_entry_hardlink(e) &&
        archive_entry_size_is_set(e)) {
      declared += static_cast<uint64_t>(std::max<la_int64_t>(archive_entry_size(e), 0));
      if (declared > stream.limit()) {
        fail("its files claim more than " + std::to_string(stream.limit()) +
             " bytes, the limit for the layer's compressed size (a compression bomb?)");
      }
    }
    apply_entry(a.get(), e);
  }
  entry_.clear();
  std::string error;
  std::optional<oci::Digest> diff_id = stream.finish(error);
  if (!diff_id)
    fail("read archive: " + error);
  stats_.uncompressed = stream.bytes();
  stats_.diff_id = *diff_id;
  if (options_.expected_diff_id && *options_.expected_diff_id != *diff_id) {
    fail("its uncompressed content has digest " + diff_id->str() + ", but the image config says " +
         options_.expected_diff_id->str() +
         " (diff ID mismatch: the layer is not the one the image claims)");
  }
  finish_dirs();
  return stats_;
}

void Applier::apply_entry(archive* a, archive_entry* e) {
  std::vector<std::string> comps = components(entry_, "name");
  const mode_t type = archive_entry_filetype(e);
  const char* hardlink = archive_entry_hardlink(e);
  if (comps.empty()) {
    // "./" and friends: root's own attributes belong to whoever created the root.
    if (type == AE_IFDIR && !hardlink)
      return;
    fail("entry resolves to the root directory");
  }
  for (size_t i = 0; i < comps.size(); ++i) {
    const std::string& c = comps[i];
    if (c.rfind(kWhiteoutMetaPrefix, 0) == 0 && !(i + 1 == comps.size() && c == kOpaqueMarker)) {
      warn("skipped AUFS metadata");
      return;
    }
    if (i + 1 < comps.size() && c.rfind(kWhiteoutPrefix, 0) == 0) {
      fail("whiteout name " + quote(c) + " used as a directory");
    }
  }
  const std::string& base = comps.back();
  if (base == kOpaqueMarker) {
    opaque(std::vector<std::string>(comps.begin(), comps.end() - 1));
    return;
  }
  if (base.rfind(kWhiteoutPrefix, 0) == 0) {
    whiteout(comps);
    return;
  }

  if (!hardlink && (type == AE_IFCHR || type == AE_IFBLK) && !options_.allow_devices) {
    warn("skipped device node (devices are not allowed)");
    return;
  }
  if (!hardlink && type == AE_IFSOCK) {
    warn("skipped socket");
    return;
  }
  if (!hardlink && type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK && type != AE_IFCHR &&
      type != AE_IFBLK && type != AE_IFIFO) {
    fail("unsupported file type " + std::to_string(type));
  }

  UniqueFd parent = parent_dir(comps, true);
  if (hardlink) {
    make_hardlink(hardlink, parent.get(), base);
  } else if (type == AE_IFDIR) {
    make_dir(e, parent.get(), base, comps);
  } else if (type == AE_IFREG) {
    make_file(a, e, parent.get(), base);
  } else if (type == AE_IFLNK) {
    const char* target = archive_entry_symlink(e);
    if (!target || !*target)
      fail("symbolic link with an empty target");
    make_room(parent.get(), base, false);
    // The target is stored as-is: it is data, resolved later inside the container's root.
    if (::symlinkat(target, parent.get(), base.c_str()) != 0)
      fail_errno("create symbolic link");
    note_ours(parent.get(), base);
    set_attributes(e, parent.get(), base, -1, AE_IFLNK);
  } else {
    make_node(e, parent.get(), base, type);
  }
}

void Applier::make_dir(archive_entry* e, int parentfd, const std::string& name,
                       const std::vector<std::string>& comps) {
  // Until finish_dirs the owner keeps rwx, so that a read-only directory can still be filled by
  // an unprivileged caller; its real mode comes at the end.
  if (!make_room(parentfd, name, true) && ::mkdirat(parentfd, name.c_str(), 0700) != 0) {
    fail_errno("create directory");
  }
  int fd = ::openat(parentfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    fail_errno("open directory");
  UniqueFd dir(fd);
  note_ours(parentfd, name);
  set_attributes(e, parentfd, name, dir.get(), AE_IFDIR);
  struct stat st = stat_fd(dir.get());
  PendingDir pending;
  pending.entry = entry_;
  pending.rel = join(comps, "/");
  pending.depth = comps.size();
  pending.key = {st.st_dev, st.st_ino};
  pending.mode = static_cast<mode_t>(archive_entry_perm(e) & 07777);
  pending.times[1] = archive_entry_mtime_is_set(e)
                         ? timespec{archive_entry_mtime(e), archive_entry_mtime_nsec(e)}
                         : timespec{0, UTIME_OMIT};
  pending.times[0] = archive_entry_atime_is_set(e)
                         ? timespec{archive_entry_atime(e), archive_entry_atime_nsec(e)}
                         : pending.times[1];
  pending_dirs_.push_back(std::move(pending));
}

void Applier::make_file(archive* a, archive_entry* e, int parentfd, const std::string& name) {
  make_room(parentfd, name, false);
  // O_EXCL | O_NOFOLLOW: the slot was just emptied; if anything appeared there, fail rather than
  // write through it.
  int fd =
      ::openat(parentfd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0)
    fail_errno("create file");
  UniqueFd file(fd);
  note_ours(parentfd, name);
  const void* buf = nullptr;
  size_t len = 0;
  la_int64_t offset = 0;
  for (;;) {
    int r = archive_read_data_block(a, &buf, &len, &offset);
    if (r == ARCHIVE_EOF)
      break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
      fail("read archive: " + archive_error(a));
    if (r == ARCHIVE_WARN)
      warn(archive_error(a));
    // Blocks come with their offset: sparse entries leave holes between them.
    const char* p = static_cast<const char*>(buf);
    while (len > 0) {
      ssize_t n = ::pwrite(file.get(), p, len, static_cast<off_t>(offset));
      if (n < 0) {
        if (errno == EINTR)
          continue;
        fail_errno("write");
      }
      p += n;
      len -= static_cast<size_t>(n);
      offset += n;
      stats_.bytes += static_cast<uint64_t>(n);
    }
  }
  // A sparse file may end in a hole, which no data block covers.
  if (archive_entry_size_is_set(e) && ::ftruncate(file.get(), archive_entry_size(e)) != 0) {
    fail_errno("set file size");
  }
  set_attributes(e, parentfd, name, file.get(), AE_IFREG);
}

void Applier::make_hardlink(const char* target, int parentfd, const std::string& name) {
  std::vector<std::string> tcomps = components(target, "hard link target");
  if (tcomps.empty())
    fail("hard link to the root directory");
  const std::string shown = quote(join(tcomps, "/"));
  UniqueFd tparent = parent_dir(tcomps, false);
  if (!tparent)
    fail("hard link target " + shown + " does not exist under the root");
  const std::string& tname = tcomps.back();
  struct stat st {};
  if (::fstatat(tparent.get(), tname.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT)
      fail("hard link target " + shown + " does not exist under the root");
    fail_errno("stat hard link target " + shown);
  }
  if (!S_ISREG(st.st_mode))
    fail("hard link target " + shown + " is not a regular file");
  struct stat tp = stat_fd(tparent.get());
  struct stat np = stat_fd(parentfd);
  if (tp.st_dev == np.st_dev && tp.st_ino == np.st_ino && tname == name)
    return;  // itself
  make_room(parentfd, name, false);
  // No AT_SYMLINK_FOLLOW: should the target be swapped for a symlink after the check above, the
  // link is to that symlink, inside root, never to what it points at.
  if (::linkat(tparent.get(), tname.c_str(), parentfd, name.c_str(), 0) != 0) {
    fail_errno("create hard link to " + shown);
  }
  note_ours(parentfd, name);
}

void Applier::make_node(archive_entry* e, int parentfd, const std::string& name, mode_t type) {
  make_room(parentfd, name, false);
  dev_t dev = 0;
  if (type != AE_IFIFO) {
    dev = ::makedev(static_cast<unsigned>(archive_entry_rdevmajor(e)),
                    static_cast<unsigned>(archive_entry_rdevminor(e)));
  }
  const mode_t kind = type == AE_IFCHR ? S_IFCHR : type == AE_IFBLK ? S_IFBLK : S_IFIFO;
  if (::mknodat(parentfd, name.c_str(), kind | 0600, dev) != 0)
    fail_errno("create node");
  note_ours(parentfd, name);
  set_attributes(e, parentfd, name, -1, type);
}

// Ownership, then xattrs (chown drops security.capability), then mode (chown drops setuid and
// setgid), then times (any change above would touch ctime only, but keep mtime last anyway).
// `fd` is an open descriptor of the file when there is one (regular files, directories).
void Applier::set_attributes(archive_entry* e, int parentfd, const std::string& name, int fd,
                             mode_t type) {
  if (options_.preserve_ownership) {
    const la_int64_t uid = archive_entry_uid(e);
    const la_int64_t gid = archive_entry_gid(e);
    // (uid_t)-1 means "leave unchanged" to chown: refuse it with the other impossible values.
    constexpr la_int64_t kMaxId = std::numeric_limits<uint32_t>::max() - 1;
    if (uid < 0 || uid > kMaxId || gid < 0 || gid > kMaxId) {
      fail("uid/gid " + std::to_string(uid) + "/" + std::to_string(gid) + " out of range");
    }
    int r = fd >= 0 ? ::fchown(fd, static_cast<uid_t>(uid), static_cast<gid_t>(gid))
                    : ::fchownat(parentfd, name.c_str(), static_cast<uid_t>(uid),
                                 static_cast<gid_t>(gid), AT_SYMLINK_NOFOLLOW);
    if (r != 0)
      fail_errno("set owner " + std::to_string(uid) + ":" + std::to_string(gid));
  }
  set_xattrs(e, parentfd, name, fd, type);

  const mode_t perm = static_cast<mode_t>(archive_entry_perm(e) & 07777);
  if (type == AE_IFDIR) {
    if (::fchmod(fd, perm | S_IRWXU) != 0)
      fail_errno("set mode");
    return;  // final mode and times: finish_dirs
  }
  if (type != AE_IFLNK) {
    int r = 0;
    if (fd >= 0) {
      r = ::fchmod(fd, perm);
    } else {
      r = static_cast<int>(
          ::syscall(kSysFchmodat2, parentfd, name.c_str(), perm, AT_SYMLINK_NOFOLLOW));
      // Before Linux 6.6: the node was just made by mknodat in a directory resolved inside root,
      // so following is harmless (it is not a symlink).
      if (r != 0 && errno == ENOSYS)
        r = ::fchmodat(parentfd, name.c_str(), perm, 0);
    }
    if (r != 0)
      fail_errno("set mode");
  }

  timespec times[2];
  times[1] = archive_entry_mtime_is_set(e)
                 ? timespec{archive_entry_mtime(e), archive_entry_mtime_nsec(e)}
                 : timespec{0, UTIME_OMIT};
  times[0] = archive_entry_atime_is_set(e)
                 ? timespec{archive_entry_atime(e), archive_entry_atime_nsec(e)}
                 : times[1];
  int r = fd >= 0 ? ::futimens(fd, times)
                  : ::utimensat(parentfd, name.c_str(), times, AT_SYMLINK_NOFOLLOW);
  if (r != 0)
    fail_errno("set times");
}

void Applier::set_xattrs(archive_entry* e, int parentfd, const std::string& name, int fd,
                         mode_t type) {
  if (archive_entry_xattr_reset(e) == 0)
    return;
  // Without a descriptor (symlinks, nodes) there is no setxattrat in glibc 2.36; go through the
  // parent's /proc magic link, which lsetxattr does not follow for the final component.
  const std::string via_proc = "/proc/self/fd/" + std::to_string(parentfd) + "/" + name;
  // libarchive's own writer stores every xattr twice (LIBARCHIVE.xattr.* and SCHILY.xattr.*)
  // and its reader reports both: set each name once (the last value wins).
  std::map<std::string, std::string> xattrs;
  const char* name_ptr = nullptr;
  const void* value_ptr = nullptr;
  size_t size = 0;
  while (archive_entry_xattr_next(e, &name_ptr, &value_ptr, &size) == ARCHIVE_OK) {
    if (!name_ptr || !*name_ptr)
      continue;
    xattrs[name_ptr].assign(static_cast<const char*>(value_ptr), value_ptr ? size : 0);
  }
  for (const auto& [key, value] : xattrs) {
    int r = fd >= 0 ? ::fsetxattr(fd, key.c_str(), value.data(), value.size(), 0)
                    : ::lsetxattr(via_proc.c_str(), key.c_str(), value.data(), value.size(), 0);
    if (r == 0)
      continue;
    const int err = errno;
    const bool user = key.rfind("user.", 0) == 0;
    // Filesystems without the namespace, and user.* on file types that cannot carry it (only
    // regular files and directories can), are not the layer's fault.
    if (err == ENOTSUP || err == EOPNOTSUPP ||
        (err == EPERM && user && type != AE_IFREG && type != AE_IFDIR)) {
      warn("xattr " + key + " not set: " + errno_text(err));
      continue;
    }
    fail_errno("set xattr " + key, err);
  }
}

// Directory modes and times last: creating children would change the mtime again, and a
// read-only mode would refuse them. Deepest first, so that an unprivileged caller can still
// reach the deeper ones through a parent that becomes unsearchable.
void Applier::finish_dirs() {
  std::stable_sort(pending_dirs_.begin(), pending_dirs_.end(),
                   [](const PendingDir& x, const PendingDir& y) { return x.depth > y.depth; });
  for (const PendingDir& d : pending_dirs_) {
    entry_ = d.entry;
    int fd = open_in_root(root_.get(), d.rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    // Gone or replaced by a later entry: its attributes no longer apply.
    if (fd == -ENOENT || fd == -ENOTDIR || fd == -ELOOP)
      continue;
    if (fd < 0)
      fail_errno("open directory", -fd);
    UniqueFd dir(fd);
    struct stat st = stat_fd(dir.get());
    // Same path, other directory (a parent was replaced by a symlink later on): not ours to set.
    if (DirKey{st.st_dev, st.st_ino} != d.key)
      continue;
    if (::fchmod(dir.get(), d.mode) != 0)
      fail_errno("set mode");
    if (::futimens(dir.get(), d.times) != 0)
      fail_errno("set times");
  }
  entry_.clear();
}

}  // namespace

ApplyStats apply_layer_fd(int fd, const std::string& name, const std::filesystem::path& root,
                          const ApplyOptions& options) {
  Applier applier(name, root, options);
  return applier.run(fd);
}

ApplyStats apply_layer(const std::filesystem::path& layer, const std::filesystem::path& root,
                       const ApplyOptions& options) {
  int fd = ::open(layer.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw Error("apply layer " + layer.string() + ": open: " + errno_text(errno));
  UniqueFd file(fd);
  return apply_layer_fd(file.get(), layer.string(), root, options);
}

}  // namespace kiln::snapshotter
