// The default seccomp profile: moby's profiles/seccomp/default.json for a container that holds
// none of the capabilities the profile conditions on (CAP_SYS_ADMIN, CAP_SYS_PTRACE, ...), i.e.
// kiln's default capability set. Private to the runner.
#pragma once

#include <linux/filter.h>

namespace kiln::runner::detail {

// The profile compiled to a classic BPF program for this machine's architecture and its
// compatibility sub-architectures (x86_64 + i386 + x32, aarch64 + arm). The default action is
// ERRNO(EPERM); clone is allowed only without namespace flags, clone3 fails with ENOSYS so libc
// falls back to clone, socket(AF_VSOCK) and exotic personalities are denied.
//
// Built with libseccomp on first use (thread-safe) and kept for the life of the process, so a
// sandbox child only has to pass it to seccomp(2): no allocation between clone and execve.
// The program does not set no_new_privs; the caller must (or hold CAP_SYS_ADMIN).
// Throws kiln::Error "seccomp: STEP: reason" when libseccomp fails.
const sock_fprog& default_seccomp_program();

}  // namespace kiln::runner::detail
