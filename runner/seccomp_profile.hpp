// The default seccomp profile: moby's profiles/seccomp/default.json for a container that holds
// none of the capabilities the profile conditions on (CAP_SYS_ADMIN, CAP_SYS_PTRACE, ...), i.e.
// kiln's default capability set. Private to the runner.
#pragma once

#include <linux/filter.h>

#include <cstdint>
#include <vector>

namespace kiln::runner::detail {

enum class SeccompCompare { kNotEqual, kEqual, kMaskedEqual };

// One rule of the profile. Unconditional rules have arg < 0; a conditional rule holds when
// argument `arg` compares with `a` (for kMaskedEqual: (arg & a) == b).
struct SeccompRule {
  const char* name;
  bool enosys = false;  // the call fails with ENOSYS instead of being allowed
  int arg = -1;
  SeccompCompare op = SeccompCompare::kEqual;
  uint64_t a = 0;
  uint64_t b = 0;
};

// moby's default profile as data for this machine's architecture: the allowed syscalls
// (unconditional and conditional) and the ones that fail with ENOSYS; everything else fails with
// EPERM. Both the built-in sandbox's BPF program and the OCI runtime's config.json come from it.
const std::vector<SeccompRule>& default_seccomp_rules();

// libseccomp's names ("SCMP_ARCH_X86_64", ...) for the architectures the profile covers: this
// machine's and its compatibility sub-architectures.
const std::vector<const char*>& default_seccomp_architectures();

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

// The same profile, except that chown, fchown, lchown and fchownat return 0 without doing
// anything: for a single-id user namespace, where no other owner exists (ProcessSpec::
// ignore_chown).
const sock_fprog& chown_ignoring_seccomp_program();

}  // namespace kiln::runner::detail
