#include "kiln/oci/lease.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <random>
#include <system_error>

#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/oci/cache_index.hpp"

namespace kiln::oci {
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kStartedPrefix = "started ";
constexpr std::string_view kBlobPrefix = "blob ";
constexpr std::string_view kRecordPrefix = "record ";
constexpr std::string_view kSnapshotPrefix = "snapshot ";

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
void remove_stale_leases(const StoreLayout& layout, const std::string& own_id) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(layout.leases(), ec)) {
    std::string id = entry.path().filename().string();
    if (id == own_id || id.starts_with("."))
      continue;  // ourselves, or a lease still being created (prune clears old ones)
    UniqueFd fd(::open(entry.path().c_str(), O_RDWR | O_CLOEXEC));
    if (!fd || ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0)
      continue;  // alive (or already gone)
    std::error_code ignored;
    fs::remove_all(layout.lease_tmp(id), ignored);
    fs::remove(entry.path(), ignored);
  }
}

}  // namespace

GcLock::GcLock(const fs::path& root, bool exclusive) {
  fs::path path = StoreLayout(root).gc_lock();
  fd_ = open_or_throw(path, O_RDWR | O_CREAT, 0644);
  lock_or_throw(fd_.get(), exclusive ? LOCK_EX : LOCK_SH, path);
}

Lease::Lease(const fs::path& root) : layout_(root), id_(random_id()) {
  fs::create_directories(layout_.leases());
  fs::create_directories(layout_.tmp());
  file_ = layout_.lease(id_);
  // Made under a hidden name, locked and filled, then renamed: a lease file is never seen
  // unlocked while its owner lives (the lock belongs to the open file, not the name).
  fs::path creating = layout_.lease("." + id_);
  fd_ = open_or_throw(creating, O_RDWR | O_CREAT | O_EXCL | O_APPEND, 0644);
  lock_or_throw(fd_.get(), LOCK_EX, creating);
  auto now = std::chrono::duration_cast<std::chrono::seconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  std::string first = std::string(kStartedPrefix) + std::to_string(now) + "\n";
  write_all(fd_.get(), first.data(), first.size(), creating.string());
  if (::rename(creating.c_str(), file_.c_str()) != 0)
    throw Error("rename " + creating.string() + ": " + std::strerror(errno));
  temp_dir_ = layout_.lease_tmp(id_);
  fs::create_directory(temp_dir_);
  remove_stale_leases(layout_, id_);
}

Lease::~Lease() {
  std::error_code ec;
  fs::remove_all(temp_dir_, ec);
  ::unlink(file_.c_str());
}

bool Lease::hold_blob(const Digest& digest) {
  return hold(std::string(kBlobPrefix) + digest.str(), layout_.blob(digest));
}

bool Lease::hold_record(const std::string& key) {
  return hold(std::string(kRecordPrefix) + key, CacheIndex(layout_.records()).path_of(key));
}

bool Lease::hold_snapshot(const std::string& chain_hex) {
  return hold(std::string(kSnapshotPrefix) + chain_hex, layout_.snapshots() / chain_hex);
}

bool Lease::hold(std::string_view item, const fs::path& path) {
  GcLock lock(layout_.root(), /*exclusive=*/false);
  std::string line = std::string(item) + "\n";
  write_all(fd_.get(), line.data(), line.size(), file_.string());
  return fs::exists(fs::symlink_status(path));
}

std::optional<LeaseContents> parse_lease(std::string_view text) {
  std::vector<std::string> lines = split(text, '\n');
  if (lines.size() < 2 || !starts_with(lines[0], kStartedPrefix))
    return std::nullopt;  // no newline after the first line yet
  LeaseContents lease;
  std::string_view seconds = std::string_view(lines[0]).substr(kStartedPrefix.size());
  auto [end, ec] = std::from_chars(seconds.data(), seconds.data() + seconds.size(), lease.started);
  if (ec != std::errc() || end != seconds.data() + seconds.size())
    return std::nullopt;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    if (starts_with(line, kBlobPrefix))
      lease.blobs.emplace(line.substr(kBlobPrefix.size()));
    else if (starts_with(line, kRecordPrefix))
      lease.records.emplace(line.substr(kRecordPrefix.size()));
    else if (starts_with(line, kSnapshotPrefix))
      lease.snapshots.emplace(line.substr(kSnapshotPrefix.size()));
  }
  return lease;
}

}  // namespace kiln::oci
