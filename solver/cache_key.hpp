// Cache keys: 64-hex sha256 digests over canonical JSON, chained step by step.
//
//   stage start  scratch:     H(salt, "scratch", platform)
//                image:       H(salt, "image", manifest digest, platform)
//                other stage: H("stage", that stage's final key)
//   each step    H(previous key, the op's definition, its inputs)
//
// The salt holds the build settings that change every result: layer compression and
// SOURCE_DATE_EPOCH (and --inherit-labels=false, which changes every stage's config). An op's
// definition is frontend::op_definition: its kind, its typed data (for exec ops the build args it
// can see, network, security, extra hosts and parsed mounts; for file ops the sources, destination
// and parsed flags; for config ops the values) and its text (it becomes the history entry). Inputs
// are what the op reads besides the previous state: for COPY/ADD the sources' digest
// (copy_source_digest: contents and metadata of the selected context files, not their times) or the
// key of the --from stage or the digest of the --from image; for RUN the same kind of digest for
// each --mount=type=bind source. ARG is not an op: it changes no state, and a value only reaches
// the keys of the ops that can see it.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "kiln/frontend/op_graph.hpp"
#include "kiln/oci/digest.hpp"
#include "kiln/oci/platform.hpp"
#include "kiln/snapshotter/layer_writer.hpp"

namespace kiln::solver {

std::string build_salt(const snapshotter::LayerOptions& layers,
                       const std::optional<int64_t>& source_date_epoch, bool inherit_labels = true);
std::string scratch_key(const std::string& salt, const oci::Platform& platform);
std::string image_key(const std::string& salt, const oci::Digest& manifest,
                      const oci::Platform& platform);
std::string stage_base_key(const std::string& base_stage_key);
std::string op_key(const std::string& previous, const frontend::Op& op,
                   const nlohmann::ordered_json& inputs);

}  // namespace kiln::solver
