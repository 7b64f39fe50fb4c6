// RAII owners for file descriptors and temporary directories: nothing leaks on an error path.
#pragma once

#include <linux/openat2.h>

#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

namespace kiln {

// Owns one file descriptor; closes it on destruction. Movable, not copyable.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other)
      reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// open(2) that throws kiln::Error "open PATH: strerror" on failure. O_CLOEXEC is always added.
UniqueFd open_or_throw(const std::filesystem::path& path, int flags, unsigned mode = 0644);

// openat2(2) with `how` (a struct open_how), retried when interrupted and, a bounded number of
// times, when the kernel answers EAGAIN: RESOLVE_IN_ROOT and RESOLVE_BENEATH refuse to vouch for
// a ".." while any rename or mount happens anywhere on the machine, and ask to be retried.
// Returns the descriptor, or -1 with errno set. Only raw syscalls: async-signal-safe, for a
// sandbox child between clone and execve.
int openat2_retrying(int dirfd, const char* path, const ::open_how& how);

// Reads `fd` to its end, calling `chunk` with each piece read (at most 1 MiB at a time), retrying
// EINTR. Throws kiln::Error "read WHAT: reason".
void read_chunks(int fd, const std::string& what,
                 const std::function<void(const char* data, size_t size)>& chunk);
// Everything `fd` has left, as a string (for small files: manifests, configs, passwd).
std::string read_all(int fd, const std::string& what);
// A whole file. Throws kiln::Error "open PATH: reason" or "read PATH: reason".
std::string read_file(const std::filesystem::path& path);

// Writes all of `size` bytes, retrying short writes and EINTR; throws kiln::Error naming `what`.
void write_all(int fd, const void* data, size_t size, const std::string& what);

// Writes `bytes` to a file the user named (--iidfile, --metadata-file): created 0644 or
// truncated, written in place (a device stays a device), every write and the close checked.
// Throws kiln::Error "write PATH: reason" (disk full, /dev/full, permission).
void write_user_file(const std::filesystem::path& path, std::string_view bytes);

// A directory created under `parent` (default: $TMPDIR or /tmp) with a unique name, removed with
// everything in it on destruction unless release()d. Movable, not copyable.
class TempDir {
 public:
  explicit TempDir(const std::filesystem::path& parent = {}, const std::string& prefix = "kiln-");
  ~TempDir();
  TempDir(TempDir&& other) noexcept : path_(std::exchange(other.path_, {})) {}
  TempDir& operator=(TempDir&& other) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // Keeps the directory: the caller now owns it.
  std::filesystem::path release();

 private:
  std::filesystem::path path_;
};

}  // namespace kiln
