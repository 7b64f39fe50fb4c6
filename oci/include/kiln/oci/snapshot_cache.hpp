// Unpacked image filesystems, cached by chain ID and shared between builds and kiln processes.
//
//   snapshots/CHAINHEX/   the whole filesystem of a layer chain (CHAINHEX: its chain_id(), see
//                         image_config.hpp), in the directory StoreLayout::snapshots() names
//
// A snapshot is unpacked once, into a temporary directory (temp_snapshot_name(), in
// store_layout.hpp) that is renamed into place, so a killed build never leaves a half-unpacked
// snapshot visible. Its name is only as good as the unpack: `unpack` must verify every layer
// against its diff ID while unpacking (snapshotter::ApplyOptions::expected_diff_id) and throw on
// a mismatch, so that the rename never happens - otherwise an image whose config claims another
// image's diff IDs would plant its files under that image's chain ID for every later build.
// `kiln check` verifies existing snapshots against the store's layers (gc.hpp).
//
// Snapshots are shared: never modify one. A build that uses an existing snapshot holds it with
// its Lease (lease.hpp) so that prune keeps it. Several threads and processes may use one cache
// directory at once.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <vector>

#include "kiln/oci/digest.hpp"

namespace kiln::oci {

class SnapshotCache {
 public:
  // `dir` is the store's snapshots() directory; created on the first get().
  explicit SnapshotCache(std::filesystem::path dir);

  // The snapshot directory for `diff_ids`, created with `unpack` (which writes the filesystem of
  // the whole chain into the empty directory it is given) when missing. Safe against another
  // kiln process creating the same snapshot at the same time: the first to finish wins. Throws
  // what `unpack` throws (nothing is left behind), or kiln::Error when the snapshot cannot be
  // renamed into place.
  std::filesystem::path get(const std::vector<Digest>& diff_ids,
                            const std::function<void(const std::filesystem::path&)>& unpack);
  // The snapshot directory for `diff_ids` when it exists.
  std::optional<std::filesystem::path> find(const std::vector<Digest>& diff_ids) const;
  // Where the snapshot for `diff_ids` is, or would be.
  std::filesystem::path path_of(const std::vector<Digest>& diff_ids) const;

 private:
  std::filesystem::path dir_;
};

}  // namespace kiln::oci
