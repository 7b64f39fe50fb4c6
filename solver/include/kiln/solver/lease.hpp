// Leases: what a running build holds, so that `kiln prune` in another process never removes it.
//
//   ROOT/gc.lock          prune holds it exclusively while it marks and sweeps; builds hold it
//                         shared for the short moments in which they take hold of something
//   ROOT/leases/ID        one file per running build, flock(2)ed exclusively by it for its whole
//                         life; its first line is "started UNIXSECONDS", then one held item per
//                         line: "blob sha256:HEX", "record KEYHEX", "snapshot CHAINHEX"
//   ROOT/tmp/ID/          the build's scratch space (stage roots, RUN upper dirs, ...)
//
// A lease whose file is not locked belongs to a dead process (kill -9): prune and the next build
// remove it and its tmp/ID. Anything a build creates itself (blobs, records, snapshots) is newer
// than its lease's start; prune keeps everything newer than the oldest live lease's start, so
// only pre-existing things need hold().
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "kiln/base/fd.hpp"

namespace kiln::solver {

class Lease {
 public:
  // Creates and locks ROOT/leases/ID and ROOT/tmp/ID/. Also removes stale leases (and their tmp
  // directories) left by dead processes. Throws kiln::Error naming the path on failure.
  explicit Lease(const std::filesystem::path& root);
  ~Lease();  // removes tmp/ID and the lease file
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  const std::string& id() const { return id_; }
  const std::filesystem::path& temp_dir() const { return temp_dir_; }

  // Records `item` (e.g. "record KEYHEX") under a shared gc.lock, then checks that `path` still
  // exists while the lock is held: true means prune will keep it for as long as this lease
  // lives; false means it is gone (a prune removed it first) and the caller must not use it.
  bool hold(std::string_view item, const std::filesystem::path& path);

 private:
  std::filesystem::path root_;
  std::string id_;
  std::filesystem::path file_;
  std::filesystem::path temp_dir_;
  UniqueFd fd_;
};

// A shared (or exclusive) flock on ROOT/gc.lock for the object's life.
class GcLock {
 public:
  GcLock(const std::filesystem::path& root, bool exclusive);
  ~GcLock() = default;

 private:
  UniqueFd fd_;
};

}  // namespace kiln::solver
