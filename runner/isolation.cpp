#include "kiln/runner/isolation.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/capability.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"

namespace kiln::runner {

namespace {

// What the probe child found: the step that failed (kOk when none) and its errno, and, once the
// namespaces exist, whether a new /proc could be mounted and the hostname set (0 or an errno).
enum class ProbeStep : int { kOk = 0, kUserNamespace, kMountNamespace, kFork };

struct ProbeResult {
  ProbeStep failed = ProbeStep::kOk;
  int error = 0;
  int proc_error = 0;
  int hostname_error = 0;
};

// In a child: unshare a user, mount, pid, network, ipc and uts namespace as the sandbox does,
// then, in the new pid namespace, mount a new proc over /proc of the (private) mount namespace
// and set the hostname: a container's seccomp profile may refuse sethostname even in a uts
// namespace of one's own. Only raw syscalls after fork: the caller may have threads.
ProbeResult probe_sandbox() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throw Error(std::string("isolation probe: pipe: ") + std::strerror(errno));
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  pid_t pid = ::fork();
  if (pid < 0)
    throw Error(std::string("isolation probe: fork: ") + std::strerror(errno));
  if (pid == 0) {
    int out = write_end.get();
    auto report = [out](ProbeStep step, int error, int proc_error, int hostname_error) {
      int message[4] = {static_cast<int>(step), error, proc_error, hostname_error};
      (void)!::write(out, message, sizeof message);
      ::_exit(0);
    };
    if (::unshare(CLONE_NEWUSER) != 0)
      report(ProbeStep::kUserNamespace, errno, 0, 0);
    if (::unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS) != 0 ||
        ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
      report(ProbeStep::kMountNamespace, errno, 0, 0);
    pid_t inner = ::fork();  // the first process of the new pid namespace
    if (inner < 0)
      report(ProbeStep::kFork, errno, 0, 0);
    if (inner == 0) {
      int proc_error = 0, hostname_error = 0;
      if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
        proc_error = errno;
      if (::sethostname("kiln-probe", 10) != 0)
        hostname_error = errno;
      report(ProbeStep::kOk, 0, proc_error, hostname_error);
    }
    int status = 0;
    while (::waitpid(inner, &status, 0) < 0 && errno == EINTR) {
    }
    ::_exit(0);
  }
  write_end.reset();
  int message[4] = {static_cast<int>(ProbeStep::kFork), ECHILD, 0, 0};
  ssize_t n;
  do {
    n = ::read(read_end.get(), message, sizeof message);
  } while (n < 0 && errno == EINTR);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return {static_cast<ProbeStep>(message[0]), message[1], message[2], message[3]};
}

bool has_effective(cap_value_t capability) {
  cap_t caps = ::cap_get_proc();
  if (!caps)
    return false;
  cap_flag_value_t value = CAP_CLEAR;
  ::cap_get_flag(caps, capability, CAP_EFFECTIVE, &value);
  ::cap_free(caps);
  return value == CAP_SET;
}

std::string probe_failure(const ProbeResult& r) {
  const char* what = r.failed == ProbeStep::kUserNamespace    ? "unshare a user namespace"
                     : r.failed == ProbeStep::kMountNamespace ? "unshare mount, pid and network "
                                                                "namespaces"
                     : r.failed == ProbeStep::kFork           ? "fork into a pid namespace"
                                                              : "mount a new /proc";
  return std::string(what) + ": " + std::strerror(r.error);
}

// Why chroot cannot work here, or "" when it can.
std::string chroot_missing() {
  if (::geteuid() != 0)
    return "chroot isolation needs kiln to run as root (of its container)";
  if (!has_effective(CAP_SYS_CHROOT))
    return "chroot isolation needs CAP_SYS_CHROOT";
  return "";
}

std::string chroot_line(const std::string& why) {
  std::string line = "isolation: chroot (" + why +
                     "): RUN steps run as root of this container, chrooted into the step's "
                     "root, with no /proc and this container's processes, network and hostname";
  if (!has_effective(CAP_MKNOD))
    line += "; without CAP_MKNOD, /dev has no device nodes";
  return line;
}

}  // namespace

Isolation parse_isolation(std::string_view name) {
  if (name == "auto" || name.empty())
    return Isolation::kAuto;
  if (name == "oci" || name == "rootless")
    return Isolation::kSandbox;
  if (name == "chroot")
    return Isolation::kChroot;
  throw Error("--isolation " + quote(std::string(name)) +
              ": expected auto, oci, rootless or chroot");
}

bool single_id_user_namespace() {
  std::ifstream in("/proc/self/uid_map");
  uint64_t inside = 0, outside = 0, count = 0, total = 0;
  while (in >> inside >> outside >> count)
    total += count;
  return total == 1;
}

std::string single_id_warning() {
  return "WARNING: kiln's user namespace maps a single id, so files can only belong to root: "
         "the owners in base image layers and chown in RUN steps are ignored. For real owners, "
         "give the user 65536 subordinate ids in /etc/subuid and /etc/subgid (rootless), or run "
         "kiln's container with a user namespace of that size (podman --userns=auto, Kubernetes "
         "hostUsers: false)";
}

IsolationChoice choose_isolation(Isolation requested) {
  IsolationChoice choice;
  choice.single_id = single_id_user_namespace();
  if (requested == Isolation::kChroot) {
    std::string missing = chroot_missing();
    if (!missing.empty())
      throw Error("--isolation chroot: " + missing);
    choice.mode = Isolation::kChroot;
    choice.network_namespaces = false;
    choice.line = chroot_line("--isolation chroot");
    return choice;
  }
  ProbeResult probe = probe_sandbox();
  if (probe.failed == ProbeStep::kOk) {
    choice.bind_proc = probe.proc_error != 0;
    choice.keep_hostname = probe.hostname_error != 0;
    std::vector<std::string> missing;
    if (choice.bind_proc)
      missing.push_back("this container's /proc and /sys bound in (a new /proc: " +
                        std::string(std::strerror(probe.proc_error)) +
                        ", masked paths), so RUN steps see its processes");
    if (choice.keep_hostname)
      missing.push_back("this container's hostname (sethostname: " +
                        std::string(std::strerror(probe.hostname_error)) +
                        ", its seccomp profile)");
    if (!missing.empty())
      choice.line = "isolation: " + std::string(::geteuid() == 0 ? "oci" : "rootless") +
                    " (kiln's sandbox), with " + join(missing, "; and ");
    return choice;
  }
  if (requested == Isolation::kSandbox)
    throw Error("--isolation: kiln's sandbox cannot run here: " + probe_failure(probe) +
                " (--isolation chroot runs RUN steps without namespaces)");
  std::string missing = chroot_missing();
  if (!missing.empty())
    throw Error("RUN steps cannot be isolated here: " + probe_failure(probe) + ", and " + missing);
  choice.mode = Isolation::kChroot;
  choice.network_namespaces = false;
  choice.line = chroot_line(probe_failure(probe));
  return choice;
}

}  // namespace kiln::runner
