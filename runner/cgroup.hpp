// A cgroup of its own for one RUN process, with the limits of buildah's and podman's --memory,
// --memory-swap, --cpu-shares, --cpu-period, --cpu-quota, --cpuset-cpus, --cpuset-mems under
// --cgroup-parent.
//
// Where the limits are written: for each controller a limit needs, the cgroup v1 hierarchy that
// has it mounted (/proc/self/mountinfo), else the cgroup v2 hierarchy when it offers the
// controller (cgroup.controllers). The new cgroup, "kiln-run-<random>", is made under
// --cgroup-parent (a path from the hierarchy's root, made when missing and then removed again)
// or, without one, under the cgroup kiln runs
// in (/proc/self/cgroup). v2 needs the controllers enabled in the parent's subtree_control, which
// the kernel refuses in a cgroup that has processes of its own other than the root: then the
// error says to give --cgroup-parent. A caller that may not write there (rootless, no
// delegation) gets an error naming the file and the reason; nothing is silently left unlimited.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <vector>

#include "kiln/runner/sandbox.hpp"

namespace kiln::runner::detail {

class Cgroup {
 public:
  // Creates the cgroup(s) and writes the limits. Throws kiln::Error naming the path and why.
  explicit Cgroup(const ResourceLimits& limits);
  // Removes the directories (waiting briefly for the last processes to be gone); best effort.
  ~Cgroup();
  Cgroup(const Cgroup&) = delete;
  Cgroup& operator=(const Cgroup&) = delete;

  // Moves `pid` into the cgroup in every hierarchy. Throws kiln::Error.
  void add(pid_t pid) const;

  // The cgroup's path from the hierarchies' roots, as an OCI runtime's cgroupsPath takes it
  // (for runc, which then creates it itself): "/PARENT/kiln-run-XXXX".
  static std::string runtime_path(const ResourceLimits& limits, const std::string& name);

 private:
  void make_parents(const std::filesystem::path& parent, const std::filesystem::path& mount);

  std::vector<std::filesystem::path> dirs_;  // created, in creation order
};

}  // namespace kiln::runner::detail
