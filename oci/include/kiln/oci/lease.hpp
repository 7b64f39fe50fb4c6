// Leases: what a running build holds, so that `kiln prune` in another process never removes it.
// Paths are in store_layout.hpp: gc.lock, leases/ID and tmp/ID.
//
// A lease file is flock(2)ed exclusively by its build for the build's whole life. Its first line
// is "started UNIXSECONDS", then one held item per line:
//   blob sha256:HEX      a blob
//   record KEYHEX        a cache record (cache_index.hpp)
//   snapshot CHAINHEX    an unpacked snapshot (snapshot_cache.hpp)
//
// A lease whose file is not locked belongs to a dead process (kill -9): prune and the next build
// remove it and its tmp/ID. Anything a build creates itself (blobs, records, snapshots) is newer
// than its lease's start; prune keeps everything newer than the oldest live lease's start, so
// only pre-existing things need holding.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "kiln/base/fd.hpp"
#include "kiln/oci/digest.hpp"
#include "kiln/oci/store_layout.hpp"

namespace kiln::oci {

class Lease {
 public:
  // Creates and locks leases/ID and tmp/ID/ in the store at `root`. Also removes stale leases
  // (and their tmp directories) left by dead processes. Throws kiln::Error naming the path on
  // failure.
  explicit Lease(const std::filesystem::path& root);
  ~Lease();  // removes tmp/ID and the lease file
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  const std::string& id() const { return id_; }
  // The build's scratch space, tmp/ID.
  const std::filesystem::path& temp_dir() const { return temp_dir_; }

  // Each records the item under a shared gc.lock, then checks that it still exists while the
  // lock is held: true means prune will keep it for as long as this lease lives; false means it
  // is gone (a prune removed it first) and the caller must not use it. Throws kiln::Error when
  // the lease file cannot be written.
  bool hold_blob(const Digest& digest);
  bool hold_record(const std::string& key);
  bool hold_snapshot(const std::string& chain_hex);

 private:
  // Records `item`, a line in the lease file's format ("record KEYHEX", ...), and checks that
  // `path` still exists.
  bool hold(std::string_view item, const std::filesystem::path& path);

  StoreLayout layout_;
  std::string id_;
  std::filesystem::path file_;
  std::filesystem::path temp_dir_;
  UniqueFd fd_;
};

// What a lease file says.
struct LeaseContents {
  int64_t started = 0;              // seconds since the epoch
  std::set<std::string> blobs;      // "sha256:HEX"
  std::set<std::string> records;    // KEYHEX
  std::set<std::string> snapshots;  // CHAINHEX
};

// Parses the text of a lease file; nullopt while its first line is not complete (the lease is
// being created, or its creator was killed in that instant). Lines it does not know are ignored.
std::optional<LeaseContents> parse_lease(std::string_view text);

// A shared (or exclusive) flock on gc.lock of the store at `root` for the object's life. Throws
// kiln::Error naming the lock file when it cannot be opened or locked.
class GcLock {
 public:
  GcLock(const std::filesystem::path& root, bool exclusive);
  ~GcLock() = default;
  GcLock(const GcLock&) = delete;
  GcLock& operator=(const GcLock&) = delete;

 private:
  UniqueFd fd_;
};

}  // namespace kiln::oci
