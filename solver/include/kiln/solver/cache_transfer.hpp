// Build cache shared between machines (--cache-to / --cache-from): the cache records of a build,
// packed as one OCI image manifest that any registry or OCI layout holds.
//
//   manifest  application/vnd.oci.image.manifest.v1+json,
//             artifactType application/vnd.kiln.cache.v1
//     config  application/vnd.kiln.cache.config.v1+json:
//             {"version":1,"records":[{"key":HEX,"config":"<image config JSON>",
//                                      "layers":[0,2],"cmd_set":false}, ...]}
//     layers  every layer blob the records name, once each; a record's "layers" index them
//
// Importing reads only the manifest and config; a layer is fetched (and verified) the first time a
// build hits a record that needs it, then the record joins the local cache index.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kiln/oci/cache_index.hpp"
#include "kiln/oci/descriptor.hpp"
#include "kiln/oci/registry.hpp"
#include "kiln/oci/store.hpp"

namespace kiln::solver {

inline constexpr const char* kCacheArtifactType = "application/vnd.kiln.cache.v1";
inline constexpr const char* kCacheConfigMediaType = "application/vnd.kiln.cache.config.v1+json";
inline constexpr const char* kCacheRefName = "kiln-cache";  // its name in an exported layout

// Writes the config and the manifest for `records` into `store` (whose blobs already hold the
// records' layers) and returns the manifest's descriptor, ready to push or write as a layout.
oci::Descriptor write_cache_manifest(oci::Store& store,
                                     const std::vector<oci::CacheRecord>& records);

// The records of a cache manifest. Throws kiln::Error naming `source` when either document is
// malformed or a record points at a layer the manifest does not have.
std::vector<oci::CacheRecord> parse_cache_manifest(const std::string& manifest_json,
                                                   const std::string& config_json,
                                                   const std::string& source);

// An imported cache: the records by key and a way to bring a blob into the store.
class RemoteCache {
 public:
  // `fetch` copies one blob into the store, verified against its descriptor.
  using Fetch = std::function<void(const oci::Descriptor& blob, oci::Store& store)>;
  RemoteCache(std::string source, const std::vector<oci::CacheRecord>& records, Fetch fetch);

  const std::string& source() const { return source_; }
  size_t size() const { return records_.size(); }
  // The record for `key` with every layer it needs now in `store`; nullopt when this cache does
  // not have the key. Throws kiln::Error when a layer cannot be fetched.
  std::optional<oci::CacheRecord> fetch(const std::string& key, oci::Store& store) const;

 private:
  std::string source_;
  std::map<std::string, oci::CacheRecord> records_;
  Fetch fetch_;
};

// The importers, one per kind of place a cache is exported to. Each returns nullptr when the
// place holds no kiln cache yet (a first build with --cache-from is not an error), and throws
// kiln::Error when it cannot be read.
//   type=local,src=DIR   an OCI layout directory
//   type=registry,ref=R  a manifest in a registry; layers are fetched when a step hits
std::shared_ptr<RemoteCache> open_layout_cache(const std::filesystem::path& dir);
std::shared_ptr<RemoteCache> open_registry_cache(const std::string& ref,
                                                 const oci::RegistryOptions& options);

}  // namespace kiln::solver
