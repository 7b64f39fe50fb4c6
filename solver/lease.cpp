#include "kiln/solver/lease.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>
#include <system_error>

#include "kiln/base/error.hpp"

namespace kiln::solver {
namespace fs = std::filesystem;

namespace {

void lock_or_throw(int fd, int operation, const fs::path& path) {
  while (::flock(fd, operation) != 0) {
    if (errno != EINTR)
      throw Error("lock " + path.string() + ": " + std::strerror(errno));
  }
}

std::string random_id() {
  static std::atomic<unsigned> counter{0};
  std::random_device rd;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%d-%u-%08x", static_cast<int>(::getpid()), counter++, rd());
  return buf;
}

// Removes leases whose owner is gone (their file is not locked), with their scratch space.
void remove_stale_leases(const fs::path& root, const std::string& own_id) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root / "leases", ec)) {
    std::string id = entry.path().filename().string();
    if (id == own_id || id.starts_with("."))
      continue;  // ourselves, or a lease still being created (prune clears old ones)
    UniqueFd fd(::open(entry.path().c_str(), O_RDWR | O_CLOEXEC));
    if (!fd || ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0)
      continue;  // alive (or already gone)
    std::error_code ignored;
    fs::remove_all(root / "tmp" / id, ignored);
    fs::remove(entry.path(), ignored);
  }
}

}  // namespace

GcLock::GcLock(const fs::path& root, bool exclusive) {
  fs::path path = root / "gc.lock";
  fd_ = open_or_throw(path, O_RDWR | O_CREAT, 0644);
  lock_or_throw(fd_.get(), exclusive ? LOCK_EX : LOCK_SH, path);
}

Lease::Lease(const fs::path& root) : root_(root), id_(random_id()) {
  fs::create_directories(root_ / "leases");
  fs::create_directories(root_ / "tmp");
  file_ = root_ / "leases" / id_;
  // Made under a hidden name, locked and filled, then renamed: a lease file is never seen
  // unlocked while its owner lives (the lock belongs to the open file, not the name).
  fs::path creating = root_ / "leases" / ("." + id_);
  fd_ = open_or_throw(creating, O_RDWR | O_CREAT | O_EXCL | O_APPEND, 0644);
  lock_or_throw(fd_.get(), LOCK_EX, creating);
  auto now = std::chrono::duration_cast<std::chrono::seconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  std::string first = "started " + std::to_string(now) + "\n";
  write_all(fd_.get(), first.data(), first.size(), creating.string());
  if (::rename(creating.c_str(), file_.c_str()) != 0)
    throw Error("rename " + creating.string() + ": " + std::strerror(errno));
  temp_dir_ = root_ / "tmp" / id_;
  fs::create_directory(temp_dir_);
  remove_stale_leases(root_, id_);
}

Lease::~Lease() {
  std::error_code ec;
  fs::remove_all(temp_dir_, ec);
  ::unlink(file_.c_str());
}

bool Lease::hold(std::string_view item, const fs::path& path) {
  GcLock lock(root_, /*exclusive=*/false);
  std::string line = std::string(item) + "\n";
  write_all(fd_.get(), line.data(), line.size(), file_.string());
  return fs::exists(fs::symlink_status(path));
}

}  // namespace kiln::solver
