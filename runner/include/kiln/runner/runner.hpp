// The one interface RUN steps are executed through, and the one place its backend is chosen.
//
//   built-in sandbox  kiln's own namespaces, id maps, seccomp and capabilities (sandbox.hpp)
//   OCI runtime       runc, crun or another runtime given a bundle (oci_runtime.hpp)
#pragma once

#include <memory>
#include <string>

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

// `runtime` empty: the built-in sandbox; else the OCI runtime of that name or path. Throws
// kiln::Error when the runtime cannot be found.
std::unique_ptr<Runner> make_runner(const std::string& runtime);

}  // namespace kiln::runner
