// The /proc and /sys paths runc and moby hide or make read-only by default, shared by the
// built-in sandbox and the OCI-runtime backend. They leak host information or, since uid 0 maps
// to the caller's uid 0, would let root in a RUN step change host-wide kernel settings; powercap
// is added because energy counters leak information about other tenants. Private to the runner.
#pragma once

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

}  // namespace kiln::runner::detail
