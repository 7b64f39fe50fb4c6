// What a RUN step's --mount options become in its sandbox: bind mounts of context, stage, image
// and directory trees (rw ones over a throwaway copy), cache directories (locked as their
// sharing says), tmpfs, secrets copied to private files, SSH agent relays. Everything it makes
// lives as long as the RunMounts object.
#pragma once

#include <filesystem>
#include <memory>
#include <vector>

#include "build_env.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/frontend/op_graph.hpp"
#include "kiln/runner/sandbox.hpp"
#include "ssh_agent_proxy.hpp"

namespace kiln::solver {

class RunMounts {
 public:
  explicit RunMounts(BuildEnv& env) : env_(env) {}
  RunMounts(const RunMounts&) = delete;
  RunMounts& operator=(const RunMounts&) = delete;

  // Adds `mount` of op `op` to `spec` (its target joined with spec.cwd when relative). Throws
  // kiln::Error naming the mount: a missing bind source, a required secret or SSH agent that
  // was not given.
  void add(runner::ProcessSpec& spec, const frontend::Op& op, const frontend::Mount& mount);

  // A file the step runs as its script (a here-document with a #! line), at /dev/pipes/NAME;
  // NAME is a plain file name (exec_executor.cpp picks it).
  void add_script(runner::ProcessSpec& spec, const std::string& name, const std::string& script);

 private:
  std::filesystem::path cache_dir(const frontend::Mount& m);

  BuildEnv& env_;
  std::vector<UniqueFd> locks_;
  std::vector<std::unique_ptr<TempDir>> scratch_;
  std::vector<std::unique_ptr<SshAgentProxy>> agents_;  // declared last: stop before their dirs go
};

// A mount target as the sandbox takes it: absolute (relative ones are below `cwd`), cleaned.
std::string mount_target(const std::string& target, const std::string& cwd);

}  // namespace kiln::solver
