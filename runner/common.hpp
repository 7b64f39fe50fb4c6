// What the built-in sandbox and the OCI-runtime backend share. Private to the runner.
//
// The /proc and /sys paths runc and moby hide or make read-only by default. They leak host
// information or, since uid 0 maps to the caller's uid 0, would let root in a RUN step change
// host-wide kernel settings; powercap is added because energy counters leak information about other
// tenants.
#pragma once

#include <string>
#include <vector>

#include "kiln/runner/sandbox.hpp"

namespace kiln::runner::detail {

inline constexpr const char* kMaskedPaths[] = {"/proc/asound",
                                               "/proc/acpi",
                                               "/proc/kcore",
                                               "/proc/keys",
                                               "/proc/latency_stats",
                                               "/proc/timer_list",
                                               "/proc/timer_stats",
                                               "/proc/sched_debug",
                                               "/proc/scsi",
                                               "/sys/firmware",
                                               "/sys/devices/virtual/powercap"};
inline constexpr const char* kReadOnlyPaths[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                                 "/proc/sysrq-trigger"};

// Rejects a spec no backend can run: no command, a relative working directory, a bad
// hostname. Throws kiln::Error "run: ...".
void check_process_spec(const ProcessSpec& spec);

// The capability names ("CAP_CHOWN", ...) the process gets: `defaults` (all of `all` when
// privileged), then spec.cap_add, then spec.cap_drop ("ALL" means every one of `all`). Throws
// kiln::Error "unknown capability NAME" for a name not in `all`.
std::vector<std::string> capability_set(const ProcessSpec& spec,
                                        const std::vector<std::string>& defaults,
                                        const std::vector<std::string>& all);

// Where execve looks for spec.args[0]: itself if it has a '/', else each directory of the spec's
// PATH (Docker's default PATH when the environment has none; an empty entry is ".").
std::vector<std::string> exec_candidates(const ProcessSpec& spec);

// The /etc/hosts a RUN step sees: localhost, the step's hostname, then spec.extra_hosts.
std::string hosts_file_content(const ProcessSpec& spec);

// `result` with the exit of a process whose waitpid(2) status is `wait_status`: exit_code is its
// exit status, or 128 + the signal that ended it (as a shell reports it), with `signal` set.
RunResult exit_result(int wait_status, RunResult result = {});

}  // namespace kiln::runner::detail
