// What one COPY or ADD adds to a stage: the layer entries, computed from the sources and the
// stage's current root filesystem (for destination directories and symlinks), following
// BuildKit's rules for sources, wildcards, destinations and flags.
#pragma once

#include <sys/stat.h>

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "kiln/base/fd.hpp"
#include "kiln/frontend/ignore.hpp"
#include "kiln/frontend/op_graph.hpp"
#include "kiln/snapshotter/layer_writer.hpp"
#include "ownership.hpp"

namespace kiln::solver {

// ADD <URL>: the file fetched beforehand (url_fetch.hpp), created like a here-document.
struct DownloadedSource {
  std::filesystem::path file;
  std::string name;  // the URL path's last component: the file's name in a destination directory
  int64_t mtime = 0;
};

struct CopyRequest {
  // What the op says: sources as expanded (URLs only with ADD) and the destination, here-docs,
  // --link, --parents, --exclude, --chmod. (Its --chown is resolved into `chown` below.)
  // ADD extracts local tar archives into the destination. Archives are hostile input: an
  // absolute name is taken inside the destination; a ".." component, writing through a symlink
  // and a hard link to anything outside the archive are errors; directories the archive only
  // implies (it has "tmp/x" but no "tmp/") keep an existing directory's metadata; every write is
  // checked (a full disk fails the step); expansion is bounded by oci::expansion_limit().
  frontend::FileOp file;
  bool add() const { return file.action == frontend::FileOp::Action::kAdd; }
  std::string workdir = "/";                          // relative destinations are relative to it
  std::map<std::string, DownloadedSource> downloads;  // ADD: URL sources, by URL (mode 0600)

  // Where sources come from: the build context (ignore rules apply, ownership becomes 0:0) or
  // another stage's or image's root filesystem (ownership kept).
  std::filesystem::path source_root;
  bool from_context = true;
  const frontend::IgnoreMatcher* ignore = nullptr;

  std::filesystem::path dest_root;  // the stage's root filesystem before this step
  std::optional<Owner> chown;       // --chown, looked up in dest_root
  int64_t now = 0;                  // mtime for what the copy creates (directories, here-docs)
};

struct CopyPlan {
  std::vector<snapshotter::LayerEntry> entries;
  std::vector<TempDir> scratch;  // extracted archives the entries read from; keep until written
  // Planned for a cache key only: the lstat of each regular file's source, by entry path, as the
  // walk found it (the key hashes content through the stat cache without a second stat).
  std::unordered_map<std::string, struct stat> source_stats;
};

// Throws kiln::Error with a message that names the source (the caller adds the position).
CopyPlan plan_copy(const CopyRequest& request);

// Hashes a regular file's content (ContentHasher::file_hash).
using FileHasher = std::function<std::string(const std::filesystem::path&, const struct stat&)>;

// The sources' part of a COPY/ADD cache key (64 hex digits): a digest over every path the copy
// would create (relative to the destination), its type and permission bits after --chmod, owner
// (0:0 from the context; --chown is part of the op's definition, not resolved here), symlink
// target, device numbers and content hash; not times, and nothing of the destination filesystem
// (which the previous step's key already fixes). ADD archives count as files. Ignore rules and
// --exclude apply as in plan_copy; errors (missing source, outside the context) are the same.
// With `listing`, also one line per path, "PATH<TAB>DIGEST" with DIGEST (16 hex) over what the
// digest takes of that path (PATH relative to the source root for context files, else the path in
// the layer), sorted, so that two listings show which paths changed (explain.hpp).
std::string copy_source_digest(const CopyRequest& request, const FileHasher& file_hash,
                               std::vector<std::string>* listing = nullptr);

}  // namespace kiln::solver
