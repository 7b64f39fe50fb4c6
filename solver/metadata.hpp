// The image state a stage builds up step by step, and the instructions that only change its
// config (ENV, LABEL, USER, CMD, ENTRYPOINT, EXPOSE, VOLUME, STOPSIGNAL, SHELL, HEALTHCHECK,
// ONBUILD, MAINTAINER), applied the way BuildKit writes them, history entries included.
#pragma once

#include <string>
#include <vector>

#include "kiln/frontend/build_plan.hpp"
#include "kiln/oci/descriptor.hpp"
#include "kiln/oci/image_config.hpp"

namespace kiln::solver {

struct ImageState {
  oci::ImageConfig config;
  std::vector<oci::Descriptor> layers;
  bool cmd_set = false;  // CMD given in this stage: ENTRYPOINT then keeps it
};

// True for the instructions apply_metadata handles.
bool is_metadata(frontend::InstructionKind kind);

// Applies one metadata instruction and adds its (empty-layer) history entry, created at
// `created`. Throws kiln::InputError at the op for an invalid EXPOSE or STOPSIGNAL.
void apply_metadata(ImageState& state, const frontend::Op& op, const std::string& created);

void add_history(ImageState& state, const std::string& created, const std::string& created_by,
                 bool empty_layer);

void set_env(std::vector<std::string>& env, const std::string& key, const std::string& value);
bool has_env(const std::vector<std::string>& env, const std::string& key);
// The stage's SHELL, or /bin/sh -c.
std::vector<std::string> shell_of(const oci::ImageConfig& config);
std::string json_array(const std::vector<std::string>& items);

}  // namespace kiln::solver
