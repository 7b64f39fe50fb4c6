#include "rootfs.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"

namespace kiln::solver {
namespace fs = std::filesystem;

std::string clean_in_root(std::string_view path) {
  std::vector<std::string> parts;
  for (const std::string& part : split(path, '/')) {
    if (part.empty() || part == ".")
      continue;
    if (part == "..") {
      if (!parts.empty())
        parts.pop_back();
      continue;
    }
    parts.push_back(part);
  }
  return join(parts, "/");
}

std::string resolve_in_root(const fs::path& root, std::string_view path, bool follow_last) {
  std::vector<std::string> pending;
  for (const std::string& part : split(clean_in_root(path), '/')) {
    if (!part.empty())
      pending.push_back(part);
  }
  std::reverse(pending.begin(), pending.end());
  std::vector<std::string> done;
  int links = 0;
  while (!pending.empty()) {
    std::string part = pending.back();
    pending.pop_back();
    if (part == "..") {
      if (!done.empty())
        done.pop_back();
      continue;
    }
    if (part == "." || part.empty())
      continue;
    done.push_back(part);
    if (pending.empty() && !follow_last)
      break;
    fs::path host = root / join(done, "/");
    struct stat st {};
    if (::lstat(host.c_str(), &st) != 0) {
      // Nothing exists below a missing component: the rest is kept as written.
      continue;
    }
    if (!S_ISLNK(st.st_mode))
      continue;
    if (++links > 40)
      throw Error("too many levels of symbolic links resolving /" + std::string(path));
    std::vector<char> buf(static_cast<size_t>(st.st_size) + 1);
    ssize_t n = ::readlink(host.c_str(), buf.data(), buf.size());
    if (n < 0)
      throw Error("readlink " + host.string() + ": " + std::strerror(errno));
    std::string target(buf.data(), static_cast<size_t>(n));
    done.pop_back();
    if (starts_with(target, "/"))
      done.clear();
    std::vector<std::string> target_parts = split(target, '/');
    for (auto it = target_parts.rbegin(); it != target_parts.rend(); ++it)
      pending.push_back(*it);
  }
  return join(done, "/");
}

std::optional<struct stat> lstat_in_root(const fs::path& root, const std::string& rel) {
  struct stat st {};
  fs::path host = rel.empty() ? root : root / rel;
  if (::lstat(host.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR)
      return std::nullopt;
    throw Error("lstat " + host.string() + ": " + std::strerror(errno));
  }
  return st;
}

std::optional<std::string> read_in_root(const fs::path& root, std::string_view path) {
  UniqueFd dir(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir)
    throw Error("open " + root.string() + ": " + std::strerror(errno));
  struct open_how how {};
  how.flags = O_RDONLY | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  std::string rel = clean_in_root(path);
  int fd = openat2_retrying(dir.get(), rel.c_str(), how);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR)
      return std::nullopt;
    throw Error("open /" + rel + " in " + root.string() + ": " + std::strerror(errno));
  }
  UniqueFd file(static_cast<int>(fd));
  return read_all(file.get(), "/" + rel + " in " + root.string());
}

}  // namespace kiln::solver
