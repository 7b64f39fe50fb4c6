#include "kiln/oci/snapshot_cache.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <system_error>

#include "kiln/base/error.hpp"
#include "kiln/oci/image_config.hpp"
#include "kiln/oci/store_layout.hpp"

namespace kiln::oci {
namespace fs = std::filesystem;

SnapshotCache::SnapshotCache(fs::path dir) : dir_(std::move(dir)) {}

fs::path SnapshotCache::path_of(const std::vector<Digest>& diff_ids) const {
  return dir_ / chain_id(diff_ids).hex();
}

std::optional<fs::path> SnapshotCache::find(const std::vector<Digest>& diff_ids) const {
  fs::path dir = path_of(diff_ids);
  if (diff_ids.empty() || !fs::exists(dir))
    return std::nullopt;
  return dir;
}

fs::path SnapshotCache::get(const std::vector<Digest>& diff_ids,
                            const std::function<void(const fs::path&)>& unpack) {
  fs::path final_dir = path_of(diff_ids);
  if (fs::exists(final_dir))
    return final_dir;
  fs::create_directories(dir_);
  fs::path temp = dir_ / temp_snapshot_name();
  fs::create_directory(temp);
  try {
    ::chmod(temp.c_str(), 0755);
    unpack(temp);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(temp, ec);
    throw;
  }
  if (::rename(temp.c_str(), final_dir.c_str()) != 0) {
    int err = errno;
    std::error_code ec;
    fs::remove_all(temp, ec);
    // Another build made the same snapshot first: theirs is as good as ours.
    if (err != EEXIST && err != ENOTEMPTY) {
      throw Error("rename snapshot " + temp.string() + ": " + std::strerror(err));
    }
  }
  return final_dir;
}

}  // namespace kiln::oci
