// RUN --mount specifications as BuildKit reads them.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::solver {

struct RunMount {
  enum class Type { kBind, kCache, kTmpfs, kSecret, kSsh };
  Type type = Type::kBind;
  std::string target;    // absolute, cleaned; ssh: empty means /run/buildkit/ssh_agent.N
  std::string source;    // bind: path in the context or the from-stage; empty means its root
  std::string from;      // bind/cache: a stage name/index or an image
  bool readonly = true;  // bind: read-only unless rw; cache/tmpfs/secret: see below
  // cache
  std::string id;                  // defaults to the target
  std::string sharing = "shared";  // shared | private | locked
  unsigned mode = 0755;
  uint32_t uid = 0, gid = 0;
  // tmpfs
  std::optional<uint64_t> size;
  // secret, ssh (ssh: id defaults to "default", mode to 0600)
  bool required = false;
};

// Parses one --mount value (already variable-expanded), e.g.
// "type=cache,target=/root/.cache,sharing=locked". Throws kiln::Error naming the field.
RunMount parse_run_mount(std::string_view spec, const std::string& workdir);

}  // namespace kiln::solver
