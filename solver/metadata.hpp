// The image state a stage builds up op by op, and the helpers the executors share to change it
// the way BuildKit writes images (history entries, environment, shell).
#pragma once

#include <string>
#include <vector>

#include "kiln/oci/descriptor.hpp"
#include "kiln/oci/image_config.hpp"

namespace kiln::solver {

struct ImageState {
  oci::ImageConfig config;
  std::vector<oci::Descriptor> layers;
  bool cmd_set = false;  // CMD given in this stage: ENTRYPOINT then keeps it
};

void add_history(ImageState& state, const std::string& created, const std::string& created_by,
                 bool empty_layer);

void set_env(std::vector<std::string>& env, const std::string& key, const std::string& value);
bool has_env(const std::vector<std::string>& env, const std::string& key);
// The stage's SHELL, or /bin/sh -c.
std::vector<std::string> shell_of(const oci::ImageConfig& config);
std::string json_array(const std::vector<std::string>& items);

}  // namespace kiln::solver
