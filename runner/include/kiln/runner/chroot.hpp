// chroot isolation (isolation.hpp): a RUN step without namespaces, for a container where
// unshare(CLONE_NEWUSER) and mount(2) are refused (Docker's default seccomp profile and
// capabilities, no user namespace).
//
// The process runs chrooted into spec.rootfs as spec.uid:gid with the caller's capabilities and
// seccomp filter (this container's), sharing its pid, network, uts and ipc namespaces. Nothing
// can be mounted, so what the sandbox mounts is made of files in the root instead, and removed
// again afterwards (RunResult::created_mountpoints lists what was created, as the sandbox lists
// its mount targets):
//   - /dev: the device nodes null, zero, full, random, urandom and tty made with mknod where
//     CAP_MKNOD allows (skipped otherwise), the fd/stdin/stdout/stderr symlinks, shm and pts
//     directories; /proc and /sys stay empty directories.
//   - /etc/hosts and /etc/resolv.conf: written when the root has none (an image's own file is
//     left as it is).
//   - the caller's mounts: a bind mount's source is copied to its destination before the step and,
//     unless "ro", copied back afterwards (cache mounts keep what the step wrote); a tmpfs is an
//     empty directory. What the destination held before is moved aside and put back.
// Only Network::kHost (the container's network) is possible; ProcessSpec fields that need a
// namespace or capability changes (network none or private, cap_add/cap_drop, privileged,
// cgroup limits, a rootfs mount) are refused with an error naming them.
#pragma once

#include "kiln/runner/runner.hpp"

namespace kiln::runner {

class ChrootRunner final : public Runner {
 public:
  // Throws kiln::Error for what chroot isolation cannot do (see above), when the root cannot be
  // prepared, or when the program cannot be started ("exec make: not found in PATH"). A program
  // that starts and fails is a RunResult.
  RunResult run(const ProcessSpec& spec) override;
};

}  // namespace kiln::runner
