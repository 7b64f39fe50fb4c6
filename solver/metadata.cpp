#include "metadata.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"

namespace kiln::solver {

namespace {

constexpr const char* kHistoryComment = "buildkit.dockerfile.v0";

}  // namespace

void set_env(std::vector<std::string>& env, const std::string& key, const std::string& value) {
  for (std::string& entry : env) {
    if (entry.compare(0, key.size() + 1, key + "=") == 0) {
      entry = key + "=" + value;
      return;
    }
  }
  env.push_back(key + "=" + value);
}

bool has_env(const std::vector<std::string>& env, const std::string& key) {
  return std::any_of(env.begin(), env.end(), [&](const std::string& e) {
    return e.compare(0, key.size() + 1, key + "=") == 0;
  });
}

std::vector<std::string> shell_of(const oci::ImageConfig& config) {
  if (config.config.shell && !config.config.shell->empty())
    return *config.config.shell;
  return {"/bin/sh", "-c"};
}

std::string json_array(const std::vector<std::string>& items) {
  nlohmann::json j = items;
  return j.dump();
}

void add_history(ImageState& st, const std::string& created, const std::string& created_by,
                 bool empty_layer) {
  oci::HistoryEntry h;
  h.created = created;
  h.created_by = created_by;
  h.comment = kHistoryComment;
  h.empty_layer = empty_layer;
  st.config.history.push_back(std::move(h));
}

}  // namespace kiln::solver
