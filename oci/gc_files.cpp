#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>

#include "gc_internal.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"

namespace kiln::oci::detail {
namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail(const char* operation, const fs::path& path, int err) {
  throw Error(std::string(operation) + " " + path.string() + ": " + std::strerror(err));
}

uint64_t remove_at(int dirfd, const std::string& name, const fs::path& path);

// Removes everything inside the directory `name` of `dirfd`. Directories from unpacked images may
// be read-only (or mode 000) and are made accessible first.
uint64_t empty_directory_at(int dirfd, const std::string& name, const fs::path& path,
                            const struct stat& st) {
  auto open_dir = [&] {
    return UniqueFd(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  };
  UniqueFd fd = open_dir();
  if (!fd && errno == EACCES && ::fchmodat(dirfd, name.c_str(), 0700, 0) == 0)
    fd = open_dir();
  if (!fd) {
    if (errno == ENOENT)
      return 0;
    fail("open", path, errno);
  }
  if ((st.st_mode & S_IRWXU) != S_IRWXU)
    ::fchmod(fd.get(), 0700);
  std::vector<std::string> names;
  {
    int listing = ::dup(fd.get());
    std::unique_ptr<DIR, int (*)(DIR*)> dir(listing < 0 ? nullptr : ::fdopendir(listing),
                                            ::closedir);
    if (!dir) {
      int err = errno;
      if (listing >= 0)
        ::close(listing);
      fail("read", path, err);
    }
    while (const dirent* entry = ::readdir(dir.get())) {
      std::string_view child = entry->d_name;
      if (child != "." && child != "..")
        names.emplace_back(child);
    }
  }
  uint64_t freed = 0;
  for (const std::string& child : names)
    freed += remove_at(fd.get(), child, path / child);
  return freed;
}

// Removes `name` in `dirfd`: a file, a symlink (never followed) or a whole tree, and returns the
// bytes that freed (a hard-linked file frees its blocks with its last name). Whatever vanished
// meanwhile (another prune) is not an error; anything else throws kiln::Error naming the path.
uint64_t remove_at(int dirfd, const std::string& name, const fs::path& path) {
  struct stat st {};
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT)
      return 0;
    fail("stat", path, errno);
  }
  uint64_t freed = 0;
  int flags = 0;
  if (S_ISDIR(st.st_mode)) {
    freed = empty_directory_at(dirfd, name, path, st);
    flags = AT_REMOVEDIR;
  }
  if (::unlinkat(dirfd, name.c_str(), flags) != 0) {
    if (errno == ENOENT)
      return freed;
    fail("remove", path, errno);
  }
  if (S_ISDIR(st.st_mode) || st.st_nlink <= 1)
    freed += allocated_bytes(st);
  return freed;
}

}  // namespace

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool is_hex(std::string_view text, size_t length) {
  return text.size() == length && text.find_first_not_of("0123456789abcdef") == std::string::npos;
}

std::optional<struct stat> lstat_of(const fs::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0)
    return std::nullopt;
  return st;
}

bool lexists(const fs::path& path) {
  return lstat_of(path).has_value();
}

bool is_dir_nofollow(const fs::path& path) {
  std::optional<struct stat> st = lstat_of(path);
  return st && S_ISDIR(st->st_mode);
}

uint64_t allocated_bytes(const struct stat& st) {
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

int64_t touched_time(const struct stat& st) {
  return std::max<int64_t>(st.st_mtim.tv_sec, st.st_ctim.tv_sec);
}

std::vector<std::string> list_dir(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    names.push_back(it->path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::optional<uint64_t> remove_path(const fs::path& path) {
  fs::path parent = path.parent_path();
  UniqueFd dirfd(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dirfd && errno != ENOENT)
    fail("open", parent, errno);
  struct stat st {};
  if (!dirfd || ::fstatat(dirfd.get(), path.filename().c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT)
      return std::nullopt;
    fail("stat", path, errno);
  }
  return remove_at(dirfd.get(), path.filename().string(), path);
}

uint64_t disk_usage(const fs::path& path) {
  std::set<std::pair<dev_t, ino_t>> seen;
  uint64_t total = 0;
  std::function<void(const fs::path&)> visit = [&](const fs::path& p) {
    std::optional<struct stat> st = lstat_of(p);
    if (!st || !seen.insert({st->st_dev, st->st_ino}).second)
      return;
    total += allocated_bytes(*st);
    if (S_ISDIR(st->st_mode)) {
      for (const std::string& child : list_dir(p))
        visit(p / child);
    }
  };
  visit(path);
  return total;
}

bool writer_running(std::string_view name) {
  std::optional<pid_t> pid = temp_name_writer(name);
  return pid && (::kill(*pid, 0) == 0 || errno == EPERM);
}

std::optional<std::string> read_if_present(const fs::path& path) {
  try {
    return read_file(path);
  } catch (const Error&) {
    return std::nullopt;
  }
}

}  // namespace kiln::oci::detail
