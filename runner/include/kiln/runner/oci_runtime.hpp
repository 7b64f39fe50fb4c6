// RUN through an external OCI runtime (runc, crun) instead of the built-in Sandbox.
//
// run() writes an OCI bundle into a temporary directory: a config.json describing the same
// container Sandbox builds (see make_config), a generated `hosts` file next to it, and a
// reference to spec.rootfs as root.path (the rootfs is not copied). It then runs
//   RUNTIME --root=STATEDIR --log=BUNDLE/log.json --log-format=json run --bundle=BUNDLE ID
// with a fresh temporary state directory and a container id unique to the run, and always
// `RUNTIME --root=STATEDIR delete --force ID` afterwards, whatever happened.
//
// Differences from Sandbox that a caller can observe:
//   - As host root the runtime sets up the container with its own defaults where Sandbox has
//     none to offer: a cgroup (runc's default path, which `delete` removes), a device cgroup that
//     denies every device but the standard ones, device nodes created (not bind-mounted) in /dev,
//     and a new sysfs. Inside a user namespace (a rootless kiln), a user namespace with
//     identity id maps is added and /sys is the caller's, bind-mounted read-only, as in Sandbox.
//   - A process killed by a signal is reported as the runtime reports it, exit_code 128 + N;
//     `signal` is only set when the runtime itself was killed (it cannot be told apart from
//     `exit 137`).
//   - args[0] without a '/' is looked up by the runtime in the PATH of spec.env; the spec's
//     environment is passed exactly, so there is no Docker default PATH when it has none.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kiln/runner/sandbox.hpp"

namespace kiln::runner {

class OciRuntime final : public Runner {
 public:
  // `runtime` is "runc", "crun", another name looked up in PATH, or a path (it contains a '/').
  // Throws kiln::Error "OCI runtime NAME: not found in PATH" (or "OCI runtime PATH: reason")
  // when there is no such executable.
  // `global_flags` go before the runtime's command ("runc --debug run ...").
  explicit OciRuntime(std::string runtime, std::vector<std::string> global_flags = {});

  // Same contract as Sandbox::run: runs spec.args to completion, streams stdout and stderr
  // (one pipe, order kept) to spec.output on the calling thread, stdin is /dev/null, and returns
  // the exit code and the mount targets created in the rootfs.
  //
  // If spec.rootfs_mount is set it is mounted on spec.rootfs in a private mount namespace of a
  // helper thread, from which the runtime is started, and unmounted afterwards: nothing is
  // visible to the rest of the caller's process. The caller must hold CAP_SYS_ADMIN in its user
  // namespace for that (host root, or root of kiln's own user namespace).
  //
  // Missing mount targets (/proc, /dev, /sys, /etc/hosts, /etc/resolv.conf, user mount
  // destinations) are created in the rootfs before the runtime starts, resolved inside it as
  // Sandbox does (a symlink cannot lead outside), and listed in created_mountpoints.
  //
  // Throws kiln::Error when the container cannot be set up or its program cannot be started:
  // bad spec ("bind mount SRC on DST: No such file or directory", "create mount target ..."),
  // or a runtime failure, whose message is "RUNTIME: " followed by the error the runtime logged
  // ("runc: runc run failed: unable to start container process: exec: ..."). A program that
  // starts and then fails is a RunResult, never an exception. An exception thrown by spec.output
  // kills the container (`delete --force`) and propagates.
  RunResult run(const ProcessSpec& spec) override;

  // The config.json run() writes for `spec`, with root.path `rootfs`. The /etc/hosts mount's
  // source is "hosts", a path relative to the bundle directory, where run() writes the file.
  // Reads /proc/self/uid_map and gid_map to decide whether a user namespace is needed. Exposed
  // for tests. `network_path`: for Network::kPrivate, the network namespace file to join.
  static nlohmann::json make_config(const ProcessSpec& spec, const std::string& rootfs,
                                    const std::string& network_path = {});

  // The resolved executable.
  const std::string& path() const { return path_; }

 private:
  std::string runtime_;  // as given, for messages
  std::string path_;
  std::vector<std::string> global_flags_;
};

}  // namespace kiln::runner
