// Garbage collection and consistency checking of a kiln store (`kiln prune`, `kiln check`).
// What lives under the store root, and who writes it, is in store_layout.hpp.
//
// Prune, under an exclusive gc.lock:
//  1. removes stale leases (unlocked lease files) with their tmp/ID directories;
//  2. chooses the cache records to drop: --all drops every record; `until` drops records not used
//     (file mtime) within that many seconds; keep_storage drops least recently used records until
//     the store's total size is at most that many bytes. Records held by a live lease stay.
//  3. marks: every blob reachable from index.json (indexes → manifests → config + layers), from
//     the surviving records (their layers), and held by live leases ("blob ...", and the layers
//     of held records);
//  4. sweeps unmarked blobs, snapshots whose chain ID is not the full chain of a marked image or
//     surviving record (all unheld snapshots with --all), ingest/ files and snapshots/.tmp-*
//     leftovers, stat caches (with --all), and cache mounts nobody holds (with --all only) —
//     except anything whose mtime (for directories: the later of mtime and ctime, since unpacking
//     sets directory times back) is newer than the oldest live lease's start (minus a minute of
//     slack), which a running build may be about to reference.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace kiln::oci {

struct PruneOptions {
  bool all = false;
  std::optional<int64_t> until_seconds;  // --filter until=DURATION
  std::optional<uint64_t> keep_storage;  // --keep-storage SIZE, bytes
};

struct PruneReport {
  size_t blobs = 0, snapshots = 0, records = 0, cache_mounts = 0, leases = 0, temp_files = 0;
  uint64_t reclaimed_bytes = 0;
};

// Prunes the store at `root` as described above; a root that does not exist is left alone (an
// empty report). Throws kiln::Error when index.json cannot be read (it is then unknown which
// blobs images need, so nothing is removed) or something cannot be removed.
PruneReport prune(const std::filesystem::path& root, const PruneOptions& options);

struct CheckReport {
  std::vector<std::string> problems;   // corruption: each names the file and what is wrong
  std::vector<std::string> leftovers;  // harmless remains of killed builds (prune removes them)
  size_t blobs = 0, images = 0, records = 0, snapshots = 0;
};

// Verifies the store at `root` without changing it: every blob's content matches its name;
// index.json parses and every blob an image needs is present; every cache record parses, matches
// its name and has its layers; snapshots directories are complete (no .tmp-* is a problem, only
// a leftover). A root that does not exist gives an empty report. Holds gc.lock shared while it
// looks, when it can open it.
//
// Snapshots are verified by provenance. They are named by the diff IDs an image's config claims,
// so each snapshot's chain ID is looked up among the chains of (prefixes of) the diff IDs of the
// images in index.json and the cache records, and each layer of those chains is decompressed and
// hashed (once, layer_blob.hpp). The snapshot is trusted when one such chain verifies - its blobs
// are present and are the diff IDs their config claims - and none lies: a chain with a layer
// whose content is not the diff ID its config claims, the mark of an image that poisons the
// snapshots of others, makes the snapshot a problem naming that layer, as does a snapshot whose
// chains all have unreadable layers. One that no image or record names cannot be verified and is
// a leftover, which prune removes. Snapshots are only created after their layers verified while
// unpacking (snapshot_cache.hpp). What check cannot do is compare a snapshot's files with its
// layers: one unpacked without verification (by a kiln before it verified) is caught only while
// the image that poisoned it is still in the store.
CheckReport check(const std::filesystem::path& root);

}  // namespace kiln::oci
