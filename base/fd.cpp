#include "kiln/base/fd.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kiln/base/cleanup.hpp"
#include "kiln/base/error.hpp"

namespace kiln {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0)
    ::close(fd_);
  fd_ = fd;
}

UniqueFd open_or_throw(const std::filesystem::path& path, int flags, unsigned mode) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0)
    throw Error("open " + path.string() + ": " + std::strerror(errno));
  return UniqueFd(fd);
}

int openat2_retrying(int dirfd, const char* path, const ::open_how& how) {
  for (int again = 0;;) {
    long fd = ::syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    if (fd >= 0)
      return static_cast<int>(fd);
    if (errno == EINTR || (errno == EAGAIN && ++again < 64))
      continue;
    return -1;
  }
}

void read_chunks(int fd, const std::string& what,
                 const std::function<void(const char* data, size_t size)>& chunk) {
  std::vector<char> buf(size_t{1} << 20);
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR)
        continue;
      throw Error("read " + what + ": " + std::strerror(errno));
    }
    if (n == 0)
      return;
    chunk(buf.data(), static_cast<size_t>(n));
  }
}

std::string read_all(int fd, const std::string& what) {
  std::string out;
  read_chunks(fd, what, [&](const char* data, size_t size) { out.append(data, size); });
  return out;
}

std::string read_file(const std::filesystem::path& path) {
  UniqueFd fd = open_or_throw(path, O_RDONLY);
  return read_all(fd.get(), path.string());
}

void write_all(int fd, const void* data, size_t size, const std::string& what) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      throw Error("write " + what + ": " + std::strerror(errno));
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
}

void write_user_file(const std::filesystem::path& path, std::string_view bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    throw Error("write " + path.string() + ": " + std::strerror(errno));
  UniqueFd owned(fd);
  write_all(fd, bytes.data(), bytes.size(), path.string());
  if (::close(owned.release()) != 0)
    throw Error("write " + path.string() + ": " + std::strerror(errno));
}

TempDir::TempDir(const std::filesystem::path& parent, const std::string& prefix) {
  std::filesystem::path base = parent;
  if (base.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    base = tmp && *tmp ? tmp : "/tmp";
  }
  std::string templ = (base / (prefix + "XXXXXX")).string();
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) {
    throw Error("create temporary directory in " + base.string() + ": " + std::strerror(errno));
  }
  path_ = buf.data();
  register_cleanup(path_);
}

TempDir::~TempDir() {
  if (path_.empty())
    return;
  unregister_cleanup(path_);
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::filesystem::path TempDir::release() {
  unregister_cleanup(path_);
  return std::exchange(path_, {});
}

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    if (!path_.empty()) {
      unregister_cleanup(path_);
      std::error_code ec;
      std::filesystem::remove_all(path_, ec);
    }
    path_ = std::exchange(other.path_, {});
  }
  return *this;
}

}  // namespace kiln
