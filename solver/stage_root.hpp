// Unpacked image filesystems, cached by chain ID and shared between builds, and the writable root
// a stage builds on.
//
// ROOT/snapshots/CHAINID/ holds the whole filesystem of a layer chain, unpacked once (into a
// temporary directory renamed into place, so a killed build never leaves a half-unpacked
// snapshot visible). A stage's root is an overlay with that snapshot as its lower directory,
// mounted in kiln's private mount namespace (so it disappears with the process), or, where
// overlayfs cannot be mounted, a copy of it.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "kiln/base/fd.hpp"
#include "kiln/oci/digest.hpp"

namespace kiln::solver {

// The OCI chain ID of the first n diff IDs: ChainID(L0) = DiffID(L0),
// ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln)).
oci::Digest chain_id(const std::vector<oci::Digest>& diff_ids);

class SnapshotCache {
 public:
  explicit SnapshotCache(std::filesystem::path dir);

  // The snapshot directory for `diff_ids`, created with `unpack` (which writes the filesystem of
  // the whole chain into the empty directory it is given) when missing. Safe against
  // another kiln process creating the same snapshot at the same time. Never modify it.
  std::filesystem::path get(const std::vector<oci::Digest>& diff_ids,
                            const std::function<void(const std::filesystem::path&)>& unpack);
  // The snapshot directory for `diff_ids` when it exists.
  std::optional<std::filesystem::path> find(const std::vector<oci::Digest>& diff_ids) const;
  std::filesystem::path path_of(const std::vector<oci::Digest>& diff_ids) const;

 private:
  std::filesystem::path dir_;
};

// A stage's writable root filesystem.
class StageRoot {
 public:
  // An empty root (FROM scratch), in a new directory under `parent` (default: $TMPDIR).
  explicit StageRoot(const std::filesystem::path& parent = {});
  // A root over `snapshot`: an overlay when `overlay`, else a copy.
  StageRoot(const std::filesystem::path& parent, const std::filesystem::path& snapshot,
            bool overlay, bool userxattr);
  ~StageRoot();
  StageRoot(const StageRoot&) = delete;
  StageRoot& operator=(const StageRoot&) = delete;

  const std::filesystem::path& path() const { return root_; }

 private:
  TempDir dir_;
  std::filesystem::path root_;
  bool mounted_ = false;
};

// Copies a tree with everything the layer format keeps (owners when privileged, modes, times,
// links, xattrs) through the layer writer and applier.
void copy_tree(const std::filesystem::path& from, const std::filesystem::path& to);

}  // namespace kiln::solver
