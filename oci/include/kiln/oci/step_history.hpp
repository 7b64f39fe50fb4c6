// What earlier builds' steps were made of, so that a step that misses the cache can say why.
//
//   cache/steps/IDHEX         the cache key (64 hex) the step named IDHEX had when it last ran or
//                             hit the cache. IDHEX is the sha256 of whatever the caller takes to
//                             be "the same step" from one build to the next (the solver: context,
//                             Containerfile, platform, stage and position in the stage).
//   cache/inputs/KEYHEX.json  the inputs record of the step that made the cache record KEYHEX:
//                             JSON the caller defines (the solver's explain.hpp), written once
//                             when the step runs.
//
// Both are hints, written atomically and read leniently: a missing or malformed file reads as
// nothing. Their size follows the cache's: prune removes an inputs record with the cache record
// of the same key, and a step file whose key has neither. Thread-safe; several processes may
// share one store.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "kiln/oci/store_layout.hpp"

namespace kiln::oci {

class StepHistory {
 public:
  explicit StepHistory(StoreLayout layout) : layout_(std::move(layout)) {}

  // The key the step `step_id` (64 hex) last had; nullopt when it never ran in this store.
  std::optional<std::string> last_key(const std::string& step_id) const;
  // Remembers `key` as the step's latest (only written when it changed). Errors are ignored:
  // the history is only an aid.
  void set_last_key(const std::string& step_id, const std::string& key) const;

  // The inputs record of `key`, nullopt when there is none (never recorded, or pruned).
  std::optional<nlohmann::json> inputs(const std::string& key) const;
  // Writes the inputs record of `key`. Errors are ignored.
  void put_inputs(const std::string& key, const nlohmann::ordered_json& record) const;

 private:
  StoreLayout layout_;
};

}  // namespace kiln::oci
