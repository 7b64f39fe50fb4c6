// How RUN steps are isolated (--isolation, buildah's names), and how kiln chooses when it is not
// told.
//
//   sandbox ("oci", "rootless")  kiln's namespace sandbox (sandbox.hpp): user, mount, pid, ipc,
//                                uts and network namespaces. Inside a container whose /proc has
//                                masked paths the kernel refuses a new proc mount; the sandbox
//                                then binds the container's /proc and /sys (ProcessSpec::
//                                bind_proc), as BuildKit's rootless worker does without a process
//                                sandbox.
//   chroot                       no namespaces at all (chroot.hpp): for a container with Docker's
//                                default seccomp profile and capabilities and no user namespace,
//                                where unshare(CLONE_NEWUSER) and mount(2) are refused. Steps run
//                                as root of that container, chrooted into the step's root, on the
//                                copy snapshotter. It keeps the build out of the container's
//                                files, not out of its kernel view: the step shares the
//                                container's processes, network, hostname and IPC.
//
// Auto-detection probes, in a short-lived child, what the sandbox needs (a user, mount and pid
// namespace, then a new /proc) and picks the strongest mode that works.
#pragma once

#include <string>
#include <string_view>

namespace kiln::runner {

enum class Isolation { kAuto, kSandbox, kChroot };

// "auto", "oci" and "rootless" (both the sandbox), "chroot". Throws kiln::Error naming the
// accepted values otherwise.
Isolation parse_isolation(std::string_view name);

struct IsolationChoice {
  Isolation mode = Isolation::kSandbox;  // never kAuto
  bool bind_proc = false;      // sandbox: bind the caller's /proc and /sys (a new proc is refused)
  bool keep_hostname = false;  // sandbox: sethostname is refused (a seccomp profile)
  bool single_id = false;      // the caller's user namespace maps one uid: ownership is ignored
  bool network_namespaces = true;  // new network namespaces can be made (false for chroot)
  // One line saying which mode and why, and what is missing. Empty when the full sandbox was
  // found (or asked for) and works: nothing to say.
  std::string line;
};

// Chooses for `requested`: kAuto probes; kSandbox and kChroot are checked (an error when the
// mode cannot work here, saying why). Throws kiln::Error when no mode can isolate RUN steps here.
IsolationChoice choose_isolation(Isolation requested);

// Whether this process's user namespace maps exactly one uid (a rootless user without subuid
// ranges, root of a container with a one-id user namespace): files can only belong to root.
bool single_id_user_namespace();

// The warning for a single-id user namespace: what it means and what to change.
std::string single_id_warning();

}  // namespace kiln::runner
