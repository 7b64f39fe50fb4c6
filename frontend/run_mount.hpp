// RUN --mount values as BuildKit reads them.
#pragma once

#include <string>
#include <string_view>

#include "kiln/frontend/op_graph.hpp"

namespace kiln::frontend {

struct MountSpec {
  Mount mount;       // input unset: the caller resolves `from`
  std::string from;  // bind: a stage name or index, a --build-context, or an image; empty: context
};

// Parses one --mount value (already variable-expanded), e.g.
// "type=cache,target=/root/.cache,sharing=locked". The target stays as written (relative ones are
// joined with the working directory when the step runs); a cache id left empty means the target.
// Throws kiln::Error naming the field.
MountSpec parse_run_mount(std::string_view spec);

}  // namespace kiln::frontend
