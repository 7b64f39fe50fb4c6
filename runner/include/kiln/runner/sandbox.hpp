// The built-in runner: executes one process in a namespace sandbox, the way RUN needs it.
//
// A sandbox is a fresh user, mount, pid, ipc and uts namespace (plus a network namespace for
// Network::kNone and kPrivate) whose user namespace maps every id of the caller's user namespace to
// itself: all ids for host root, the newuidmap ranges for a rootless kiln in its own user
// namespace. A caller without CAP_SETUID and CAP_SETGID can only map itself; it becomes uid and gid
// 0 and the spec may ask for no other ids. Inside, the process sees `rootfs` as "/", a new /proc
// with runc's masked and read-only paths, a minimal /dev, the host's /sys read-only, a generated
// /etc/hosts and the host's resolv.conf, then the caller's mounts. It runs with Docker's default
// capability set (effective only for uid 0) and moby's default seccomp profile, unless
// `privileged`; like BuildKit (and `docker run`) it does not set no_new_privs unless asked, so
// setuid programs such as su and sudo work inside. Mount targets are resolved inside the rootfs
// (openat2 RESOLVE_IN_ROOT): an image's symlinks cannot make the sandbox mount or create anything
// outside it.
//
// The sandbox is built from data: run() turns a ProcessSpec into a list of setup steps before
// cloning, and the child applies them in order with one checked syscall or two each, only
// async-signal-safe work between clone and execve (see sandbox.cpp).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/runner/runner.hpp"

namespace kiln::runner {

// One mount inside the sandbox, as in an OCI runtime spec.
struct Mount {
  std::string destination;  // absolute path inside the container
  std::string type;         // "bind", "tmpfs", "overlay", "proc", ...
  std::string source;       // host path for bind, fs-specific otherwise
  // "ro", "rw", "nosuid", "nodev", "noexec", "relatime", "noatime", "strictatime" become mount
  // flags; "bind" or "rbind" make a bind mount whatever `type` says ("rbind": with submounts);
  // propagation options ("private", "rslave", ...) are accepted and ignored: the sandbox's whole
  // mount tree is private. Anything else ("size=64m", "mode=1777", the overlay
  // "lowerdir=..,upperdir=..,workdir=..[,userxattr]") is passed to the filesystem as data.
  std::vector<std::string> options;
};

enum class Network {
  kHost,  // share the caller's network namespace
  kNone,  // a new network namespace with only the loopback interface, up
  // A new network namespace connected to the outside through pasta or slirp4netns (see
  // runner/private_network.hpp): outbound connections and DNS work, the caller's loopback
  // services are not reachable, nothing is forwarded in. The host's nameservers in
  // /etc/resolv.conf are replaced by the helper's DNS forwarder. An error of run() when neither
  // helper is installed (network_helper() says beforehand).
  kPrivate,
};

// The program that connects Network::kPrivate ("pasta" or "slirp4netns", with its path), or ""
// when neither is installed. $KILN_NETWORK_HELPER picks one; naming a missing one is an error.
std::string network_helper();

// Why Network::kPrivate cannot work here ("" when it can): no helper installed, or no
// /dev/net/tun to make the namespace's tap device with (a container without that device).
std::string private_network_problem();

// Cgroup limits for the process (buildah's and podman's --memory, --memory-swap, --cpu-*,
// --cpuset-*, --cgroup-parent). Empty: the process stays in the caller's cgroup. Applied in a
// cgroup of its own, removed after the run; see runner/cgroup.hpp for where and what happens
// when the machine does not allow it (an error, never a silently unlimited run).
struct ResourceLimits {
  std::optional<int64_t> memory;         // bytes
  std::optional<int64_t> memory_swap;    // memory plus swap, bytes; -1: unlimited swap
  std::optional<uint64_t> cpu_shares;    // relative weight (v1 shares; converted for v2)
  std::optional<uint64_t> cpu_period;    // CFS period, microseconds
  std::optional<int64_t> cpu_quota;      // CFS quota per period, microseconds
  std::string cpuset_cpus, cpuset_mems;  // "0-3,5"
  std::string cgroup_parent;             // from the hierarchies' roots; empty: kiln's own cgroup

  bool empty() const {
    return !memory && !memory_swap && !cpu_shares && !cpu_period && !cpu_quota &&
           cpuset_cpus.empty() && cpuset_mems.empty() && cgroup_parent.empty();
  }
};

struct ProcessSpec {
  std::filesystem::path rootfs;  // host directory that becomes "/"
  // Mounted at `rootfs` inside the sandbox's mount namespace before anything else: an overlayfs
  // that a rootless caller may only mount inside a user namespace it owns.
  std::optional<Mount> rootfs_mount;
  // argv. args[0] without a '/' is looked up in the PATH of `env` (Docker's default PATH when
  // `env` has none) inside the container.
  std::vector<std::string> args;
  std::vector<std::string> env;  // exactly this environment ("NAME=value")
  std::string cwd = "/";         // created (0755, owned by uid:gid) when missing
  uint32_t uid = 0, gid = 0;     // in-container ids the process runs as
  // Supplementary groups (none when empty). Only the caller's own ids can be mapped without
  // newuidmap: then any group but `gid` is an error.
  std::vector<uint32_t> groups;
  std::string hostname = "kiln";
  // Leave the uts namespace's hostname as inherited (the caller's): for a container whose
  // seccomp profile refuses sethostname even in a namespace of one's own.
  bool keep_hostname = false;
  // Extra /etc/hosts entries (host, IP address), after BuildKit's two lines (localhost and the
  // hostname; ::1).
  std::vector<std::pair<std::string, std::string>> extra_hosts;
  // Applied after the standard mounts, in order. Bind sources are host paths; a bind's
  // destination is created as a file when the source is not a directory.
  std::vector<Mount> mounts;
  Network network = Network::kHost;
  // Bind the caller's /proc and /sys (recursively, /sys read-only) instead of mounting new ones:
  // inside a container whose /proc has masked paths the kernel refuses a new proc mount. The
  // process then sees the container's processes; the pid namespace is still its own.
  bool bind_proc = false;
  // chown and its kin succeed without doing anything (the seccomp filter answers them): for a
  // single-id user namespace, where files can only belong to root and a package's
  // `chown _apt` would otherwise fail with EINVAL. Ignored with no_seccomp or privileged.
  bool ignore_chown = false;
  // --security=insecure: every capability, no seccomp filter, no no_new_privs, /proc without the
  // masked and read-only paths. Still namespaced: the process is root of its user namespace only.
  bool privileged = false;
  // Set no_new_privs: setuid and file capabilities no longer raise privileges (BuildKit and
  // Docker leave it off; so does kiln's RUN).
  bool no_new_privs = false;
  // Without a seccomp filter (--security-opt seccomp=unconfined) though not privileged.
  bool no_seccomp = false;
  // Capabilities added to and then dropped from the default set (--cap-add, --cap-drop):
  // "NET_ADMIN" or "CAP_NET_ADMIN", any case, or "ALL". An unknown name is an error of run().
  std::vector<std::string> cap_add, cap_drop;
  // Resource limits (--ulimit), set in the process before it starts.
  struct Rlimit {
    int resource = 0;  // RLIMIT_NOFILE, ...
    uint64_t soft = 0, hard = 0;
  };
  std::vector<Rlimit> rlimits;
  ResourceLimits resources;
  // The size of the /dev/shm tmpfs (--shm-size), as tmpfs's size= takes it.
  std::string shm_size = "65536k";
  // Host file bind-mounted read-only at /etc/resolv.conf; empty: none.
  std::string resolv_conf = "/etc/resolv.conf";
  // Whether /etc/hosts is generated and mounted (podman's --no-hosts: the image's own stays).
  bool hosts = true;
  // Receives the process's stdout and stderr (one pipe, so their order is kept), in chunks, on
  // the thread that called run(). May be empty. An exception it throws ends the run: the
  // sandbox is killed and the exception propagates.
  std::function<void(std::string_view)> output;
};

struct RunResult {
  int exit_code = 0;  // exit status, or 128 + signal
  int signal = 0;     // terminating signal, 0 if the process exited
  // In-container paths the sandbox created in rootfs as mount targets (/etc, /etc/hosts,
  // /etc/resolv.conf, /proc, a missing bind destination, ...), parents before children, so that
  // the caller can keep them out of the layer. They are left in place after the run. Targets
  // created on other mounts (the /dev tmpfs, a tmpfs the caller mounted) are not listed.
  std::vector<std::string> created_mountpoints;
};

// Runs processes in sandboxes. Holds no state: run() may even be called from several threads at
// once. Nothing else in the process may reap the sandbox's child (no waitpid(-1, ...) elsewhere,
// SIGCHLD not SIG_IGN).
class Sandbox final : public Runner {
 public:
  // Sets up the sandbox, runs spec.args in it to completion and returns how it ended. The
  // process gets /dev/null as stdin and is killed if the calling thread dies.
  //
  // Throws kiln::Error naming the step that failed when the sandbox cannot be set up or the
  // program cannot be started: "mount proc on /proc: Operation not permitted",
  // "bind mount /ctx on /src: No such file or directory", "chdir /app: No such file or
  // directory", "exec /bin/sh: No such file or directory", "exec make: not found in PATH". A
  // program that starts and then fails is a RunResult (a shell's "command not found" is exit
  // code 127), never an exception.
  //
  // Pid 1 of the sandbox's pid namespace is the process itself (no init), as with runc: when it
  // exits everything else in the sandbox is killed, and it cannot be killed by a signal sent from
  // inside the sandbox that it has no handler for (`kill -9 $$` in a shell does nothing).
  RunResult run(const ProcessSpec& spec) override;
};

}  // namespace kiln::runner
