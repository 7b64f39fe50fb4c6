// The build cache index: cache key → the state a stage has after the keyed step.
//
//   cache/records/KEYHEX.json   one record per key (KEYHEX: the sha256 cache key, 64 hex), in
//                               the directory StoreLayout::records() names
//
// A record holds the whole stage state after the step: its image config (history and rootfs
// included) and the layer descriptors in order, so a hit at step N needs nothing from steps
// 1..N-1. Records are written atomically (temp file, fsync, rename) after every blob they
// reference is in the store, so a reader sees a complete record or none. A record's file mtime is
// its last use (touched on every hit); prune reads it. A record that cannot be parsed, or whose
// key does not match its name, counts as missing (and `kiln check` reports it).
// Thread-safe; several processes may share one index.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "kiln/oci/descriptor.hpp"
#include "kiln/oci/image_config.hpp"

namespace kiln::oci {

struct CacheRecord {
  std::string key;  // 64 hex digits
  ImageConfig config;
  std::vector<Descriptor> layers;
  bool cmd_set = false;  // the stage set CMD itself (ENTRYPOINT then keeps it)
  // When the record was first written (seconds since 1970; put() sets it when unset). Records
  // from kiln versions before it have none. --cache-ttl reads it.
  std::optional<int64_t> created;
};

class CacheIndex {
 public:
  // `dir` is the store's records() directory; created on the first put().
  explicit CacheIndex(std::filesystem::path dir);

  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path path_of(const std::string& key) const;

  // The record for `key`, nullopt when missing or unreadable. Marks it used (mtime = now).
  std::optional<CacheRecord> get(const std::string& key) const;
  // Like get() without marking it used (for check and prune).
  std::optional<CacheRecord> peek(const std::string& key) const;
  // Writes the record atomically (replacing an existing one).
  void put(const CacheRecord& record) const;
  // Every key with a record file (parseable or not), sorted.
  std::vector<std::string> keys() const;
  // Removes a record; false when there was none.
  bool remove(const std::string& key) const;

 private:
  std::filesystem::path dir_;
};

}  // namespace kiln::oci
