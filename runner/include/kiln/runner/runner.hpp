// The one interface RUN steps are executed through, and the one place its backend is chosen.
//
//   built-in sandbox  kiln's own namespaces, id maps, seccomp and capabilities (sandbox.hpp)
//   OCI runtime       runc, crun or another runtime given a bundle (oci_runtime.hpp)
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace kiln::runner {

struct ProcessSpec;
struct RunResult;

class Runner {
 public:
  virtual ~Runner() = default;
  // Runs spec.args to completion in a sandbox over spec.rootfs and says how it ended; see
  // Sandbox::run for the whole contract (both backends keep it). Thread-safe.
  virtual RunResult run(const ProcessSpec& spec) = 0;
};

// `runtime` empty: the built-in sandbox; else the OCI runtime of that name or path, given
// `global_flags` ("--debug", "--systemd-cgroup", ...) before its command (buildah's
// --runtime-flag). Throws kiln::Error when the runtime cannot be found, or for flags without a
// runtime.
std::unique_ptr<Runner> make_runner(const std::string& runtime,
                                    const std::vector<std::string>& global_flags = {});

}  // namespace kiln::runner
