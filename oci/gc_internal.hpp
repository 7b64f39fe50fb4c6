// What prune and check (gc.hpp) share: walking and removing store files without following
// symlinks (gc_files.cpp), and what is live: leases and the images of index.json
// (gc_liveness.cpp). Private to the oci module.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/oci/lease.hpp"
#include "kiln/oci/store_layout.hpp"

namespace kiln::oci::detail {

// ---- files (gc_files.cpp) ------------------------------------------------------------------

int64_t now_seconds();

bool is_hex(std::string_view text, size_t length);

// lstat(2); nullopt when `path` does not exist (or cannot be looked at).
std::optional<struct stat> lstat_of(const std::filesystem::path& path);
bool lexists(const std::filesystem::path& path);
bool is_dir_nofollow(const std::filesystem::path& path);

// Disk usage of one inode, as du(1) counts it: allocated blocks, not the apparent size.
uint64_t allocated_bytes(const struct stat& st);

// A directory's mtime says when an entry was last added or removed in it, and unpacking a layer
// may even set it to the layer's (old) timestamp; its ctime also changes when it is renamed into
// place. The later of the two says when kiln last touched it.
int64_t touched_time(const struct stat& st);

// The names in `dir`, sorted; none when it does not exist (or vanishes while being read).
std::vector<std::string> list_dir(const std::filesystem::path& dir);

// Removes `path`: a file, a symlink (never followed) or a whole tree, even one with read-only
// directories, and returns the bytes that freed (a hard-linked file frees its blocks with its last
// name); nullopt when there was nothing to remove. Whatever vanishes meanwhile (another prune) is
// not an error; anything else throws kiln::Error naming the path.
std::optional<uint64_t> remove_path(const std::filesystem::path& path);

// Disk usage of a tree (hard links counted once), without following symlinks.
uint64_t disk_usage(const std::filesystem::path& path);

// Whether the process named in a temporary name (store_layout.hpp) still runs. Writers do not
// need a lease (`kiln tag`, image import), so a temporary file whose writer runs is never a
// leftover, whatever its age.
bool writer_running(std::string_view name);

// A whole file; nullopt when it cannot be read.
std::optional<std::string> read_if_present(const std::filesystem::path& path);

// ---- what is live (gc_liveness.cpp) --------------------------------------------------------

// The leases of a store, sorted into live ones (their file is locked by a running build) and
// stale ones (left by a dead process).
struct Leases {
  std::vector<LeaseContents> live;
  std::vector<std::string> stale;  // lease IDs

  // Anything touched after this (seconds since the epoch) may belong to a running build.
  std::optional<int64_t> protected_after() const;
  bool holds_blob(const std::string& digest) const;
  bool holds_record(const std::string& key) const;
  bool holds_snapshot(const std::string& chain) const;
};

Leases scan_leases(const StoreLayout& layout, int64_t now);

// Everything reachable from the images of index.json: blobs, and the chain IDs of their configs.
// A blob that is missing or cannot be parsed ends the walk there (`kiln check` reports it).
struct ImageMarks {
  std::set<std::string> blobs;   // "sha256:HEX"
  std::set<std::string> chains;  // CHAINHEX
};

// Throws kiln::Error when index.json cannot be read: nobody can tell then what images need.
ImageMarks mark_images(const StoreLayout& layout);

}  // namespace kiln::oci::detail
