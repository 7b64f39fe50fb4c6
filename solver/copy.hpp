// What one COPY or ADD adds to a stage: the layer entries, computed from the sources and the
// stage's current root filesystem (for destination directories and symlinks), following
// BuildKit's rules for sources, wildcards, destinations and flags.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "kiln/base/fd.hpp"
#include "kiln/frontend/ast.hpp"
#include "kiln/frontend/ignore.hpp"
#include "kiln/snapshotter/layer_writer.hpp"
#include "ownership.hpp"

namespace kiln::solver {

struct CopyRequest {
  bool add = false;                  // ADD: local tar archives are extracted into the destination
  std::vector<std::string> sources;  // as expanded, without the destination
  std::string dest;                  // as expanded
  std::string workdir = "/";         // relative destinations are relative to it
  std::vector<frontend::Heredoc> heredocs;

  // Where sources come from: the build context (ignore rules apply, ownership becomes 0:0) or
  // another stage's or image's root filesystem (ownership kept).
  std::filesystem::path source_root;
  bool from_context = true;
  const frontend::IgnoreMatcher* ignore = nullptr;

  std::filesystem::path dest_root;  // the stage's root filesystem before this step
  bool link = false;                // --link: the destination does not look at dest_root
  bool parents = false;             // --parents
  std::optional<Owner> chown;
  std::optional<ChmodSpec> chmod;
  std::vector<std::string> exclude;  // --exclude patterns
  int64_t now = 0;                   // mtime for what the copy creates (directories, here-docs)
};

struct CopyPlan {
  std::vector<snapshotter::LayerEntry> entries;
  std::vector<TempDir> scratch;  // extracted archives the entries read from; keep until written
};

// Throws kiln::Error with a message that names the source (the caller adds the position).
CopyPlan plan_copy(const CopyRequest& request);

}  // namespace kiln::solver
