// The on-disk layout of a kiln store: the one place that names what lives under the store root.
// Every module reaches these paths through a StoreLayout (`store.layout().records()`), never by
// joining names of its own.
//
//   oci-layout                {"imageLayoutVersion":"1.0.0"}. Written once by Store.
//   index.json                the image index: one descriptor per tag (store.hpp). Replaced
//                             atomically by Store under index.lock.
//   index.lock                flock(2)ed exclusively around every read-modify-write of
//                             index.json (Store).
//   blobs/sha256/HEX          content by digest. BlobWriter renames a verified blob in under a
//                             shared gc.lock; prune removes blobs under an exclusive one.
//   ingest/                   blobs being written: BlobWriter's temporary files, never read.
//   gc.lock                   prune holds it exclusively while it marks and sweeps; check holds
//                             it shared while it looks, builds while they take hold of something
//                             (lease.hpp), blob commits while they rename.
//   leases/ID                 one file per running build, flock(2)ed by it for its whole life;
//                             its format is in lease.hpp. Written by Lease, read by prune/check.
//   tmp/ID/                   the scratch space of the build holding lease ID (stage roots, RUN
//                             upper directories, downloads); removed with the lease.
//   snapshots/CHAINHEX/       the unpacked filesystem of a layer chain (snapshot_cache.hpp),
//                             unpacked under a temporary name and renamed into place. Written by
//                             SnapshotCache; a build hold()s the ones it uses.
//   cache/records/KEYHEX.json build cache records (cache_index.hpp). Written atomically by
//                             CacheIndex; a build hold()s the ones it uses.
//   cache/context/HEX.statcache  stat caches of build contexts, HEX the sha256 of the context's
//                             path (the solver's ContentHasher). Only a hint: any may go.
//   cache/steps/IDHEX         the cache key a build step last had (step_history.hpp); IDHEX
//                             names the step (context, Containerfile, platform, stage, position).
//   cache/inputs/KEYHEX.json  what the step keyed KEYHEX was made of (step_history.hpp), so a
//                             later miss can say which input changed. Pruned with its record.
//   cache-mounts/HEX/         RUN --mount=type=cache directories, HEX the sha256 of the mount's
//                             id; each flock(2)ed through cache-mounts/HEX.lock by the RUN steps
//                             using it (shared, or exclusive for sharing=locked). Only
//                             `kiln prune --all` removes them, when it can lock them itself.
//
// Files written atomically, and unpacked snapshots, have temporary names first (below): prune
// removes them once their writer is gone, check reports them as leftovers.
//
// The root is 0700 (Store): nothing under it is reachable by other users, so the modes inside
// (snapshots keep images' setuid bits and devices) need not be trusted.
//
// Store creates oci-layout, index.json, blobs/ and ingest/; the others are created by their
// writers when first needed, so a reader must accept any of them missing.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "kiln/oci/digest.hpp"

namespace kiln::oci {

// Paths under one store root. A value type: computing a path touches nothing on disk, and any
// number of threads may use one StoreLayout.
class StoreLayout {
 public:
  explicit StoreLayout(std::filesystem::path root) : root_(std::move(root)) {}

  const std::filesystem::path& root() const { return root_; }

  std::filesystem::path oci_layout() const { return root_ / "oci-layout"; }
  std::filesystem::path index() const { return root_ / "index.json"; }
  std::filesystem::path index_lock() const { return root_ / "index.lock"; }
  std::filesystem::path blobs() const { return root_ / "blobs"; }
  // The directory of the blobs hashed with `algorithm` (kiln writes only sha256).
  std::filesystem::path blobs(std::string_view algorithm) const { return blobs() / algorithm; }
  std::filesystem::path blob(const Digest& digest) const {
    return blobs(digest.algorithm()) / digest.hex();
  }
  std::filesystem::path ingest() const { return root_ / "ingest"; }
  std::filesystem::path gc_lock() const { return root_ / "gc.lock"; }

  std::filesystem::path leases() const { return root_ / "leases"; }
  std::filesystem::path lease(std::string_view id) const { return leases() / id; }
  std::filesystem::path tmp() const { return root_ / "tmp"; }
  std::filesystem::path lease_tmp(std::string_view id) const { return tmp() / id; }

  std::filesystem::path snapshots() const { return root_ / "snapshots"; }
  std::filesystem::path records() const { return root_ / "cache" / "records"; }
  std::filesystem::path context_caches() const { return root_ / "cache" / "context"; }
  std::filesystem::path step_keys() const { return root_ / "cache" / "steps"; }
  std::filesystem::path step_inputs() const { return root_ / "cache" / "inputs"; }

  std::filesystem::path cache_mounts() const { return root_ / "cache-mounts"; }
  // The directory of the cache mount whose id hashes to `id_hex`, and its lock file.
  std::filesystem::path cache_mount(std::string_view id_hex) const {
    return cache_mounts() / id_hex;
  }
  std::filesystem::path cache_mount_lock(std::string_view id_hex) const {
    return cache_mounts() / (std::string(id_hex) + ".lock");
  }

 private:
  std::filesystem::path root_;
};

// The name ending of a stat cache in context_caches().
inline constexpr std::string_view kStatCacheExtension = ".statcache";

// Temporary names, which carry the writer's process ID so that prune and check can tell a file
// still being written from the leftover of a killed writer:
//   NAME.PID.N.tmp   a file written atomically, beside its final name NAME (blobs in ingest/ use
//                    NAME "blob")
//   .tmp-PID-N       a snapshot being unpacked, in snapshots/
// N counts within the process, so each call gives a new name.
std::string temp_file_name(std::string_view name);
std::string temp_snapshot_name();

// Whether `name` looks like a temporary name: it starts with ".tmp-" or ends with ".tmp".
bool is_temp_name(std::string_view name);
// Whether `name` looks like a snapshot being unpacked: it starts with ".tmp-".
bool is_temp_snapshot_name(std::string_view name);
// The PID in a temporary name; nullopt for any other name.
std::optional<pid_t> temp_name_writer(std::string_view name);

}  // namespace kiln::oci
