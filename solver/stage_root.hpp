// The writable root a stage builds on.
//
// A stage's root is an overlay with a snapshot (oci/snapshot_cache.hpp) as its lower directory,
// mounted in kiln's private mount namespace (so it disappears with the process), or, where
// overlayfs cannot be mounted, a copy of it.
#pragma once

#include <filesystem>
#include <memory>

#include "kiln/base/fd.hpp"
#include "kiln/oci/snapshot_cache.hpp"
#include "kiln/snapshotter/copy_tree.hpp"

namespace kiln::solver {

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

}  // namespace kiln::solver
