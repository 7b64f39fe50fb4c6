// Why a step ran instead of hitting the cache: its inputs now against those of the last build of
// the same step in this store (oci::StepHistory keeps them).
//
// "The same step" is the step at the same position (stage, place in the stage, kind of op) of the
// same Containerfile with the same context directory and target platform. What is recorded of a
// step that runs (step_record): the key of the state before it, the stage's base (for the first
// step), the build settings in the key's salt, the op's definition (build-arg values only as
// salted sha256 digests: the store must not become a copy of secrets passed as build args), its
// inputs, and for context sources the per-path listing copy_source_digest gives.
//
// The explanation is the first difference in this order: the build settings, the op's own
// definition (a build arg, an ENV/LABEL value, the instruction), its own inputs (which context
// file, which --from image or stage, which bind mount), the stage's base image, and otherwise the
// state before it ("input changed upstream").
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "kiln/frontend/op_graph.hpp"
#include "kiln/solver/builder.hpp"

namespace kiln::solver {

// The history name (64 hex) of op `ordinal` (0-based) of `stage` for builds in `scope`.
std::string step_identity(const std::string& scope, const frontend::GraphStage& stage,
                          size_t ordinal, const frontend::Op& op);

// Context-file listings of a step's inputs, by input ("sources", "mount /target").
using InputListings = std::map<std::string, std::vector<std::string>>;

struct RecordParts {
  std::string identity;  // step_identity
  std::string settings;  // the build salt
  std::string previous;  // the key of the state before the op
  std::string base;      // the stage's base ("image REF@DIGEST", "scratch", "stage NAME")
  bool first = false;    // the stage's first op
};

nlohmann::ordered_json step_record(const RecordParts& parts, const frontend::Op& op,
                                   const nlohmann::ordered_json& inputs,
                                   const InputListings& listings);

// Why `now` missed: against `before` (the record of the step's last build), or, without one,
// "no earlier build of this step" (`known`: the step ran before but its record was pruned).
StepExplanation explain_miss(const std::optional<nlohmann::json>& before, bool known,
                             const nlohmann::ordered_json& now);

}  // namespace kiln::solver
