// RUN's private network: a network namespace of the step's own, connected to the outside by a
// user-mode network helper that runs in the caller's network namespace, as podman and buildah do.
//
//   pasta (Debian's passt)  the namespace gets the host's address and routes; every connection
//                           is made by pasta as an ordinary socket of the caller, so outbound
//                           traffic works rootless. No port is forwarded in either direction and
//                           the gateway address is not mapped to the host, so the host's loopback
//                           services are not reachable. DNS queries sent to 169.254.1.1 go to the
//                           host's first nameserver.
//   slirp4netns             the same through libslirp (10.0.2.0/24, DNS at 10.0.2.3), with
//                           --disable-host-loopback.
//
// $KILN_NETWORK_HELPER (pasta or slirp4netns) picks one; else pasta when installed, else
// slirp4netns. Private to the runner.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kiln/runner/sandbox.hpp"

namespace kiln::runner::detail {

struct NetworkHelper {
  enum class Kind { kPasta, kSlirp4netns } kind = Kind::kPasta;
  std::string path;         // the program
  std::string dns_address;  // where the namespace sends DNS queries to reach the host's resolver
};

// The helper to use, or nullopt when neither is installed. Throws kiln::Error when
// $KILN_NETWORK_HELPER names an unknown or missing helper.
std::optional<NetworkHelper> find_network_helper();

// find_network_helper() for a step that asked for Network::kPrivate: throws kiln::Error when
// neither helper is installed.
NetworkHelper required_network_helper();

// resolv.conf for a step on a private network: every nameserver that is one of
// `host_nameservers` or a loopback address (unreachable from the namespace) becomes
// `dns_address`, once; other lines are kept.
std::string private_resolv_conf(const std::string& content,
                                const std::vector<std::string>& host_nameservers,
                                const std::string& dns_address);

// The nameservers of the host's /etc/resolv.conf (none when it cannot be read).
std::vector<std::string> host_nameservers();

// A helper connected to one network namespace; stops it when destroyed.
class AttachedNetwork {
 public:
  virtual ~AttachedNetwork() = default;
};

// Connects the network namespace of process `pid` (and, when `join_userns`, enters its user
// namespace to do so: the one that owns the network namespace) and returns once the interface
// inside is configured. `scratch` holds the helper's log and pid file. Throws kiln::Error with
// the helper's last words when it fails.
std::unique_ptr<AttachedNetwork> attach_network(const NetworkHelper& helper, pid_t pid,
                                                bool join_userns,
                                                const std::filesystem::path& scratch);

// The network namespace for an OCI runtime's container, when the caller cannot hand the runtime
// a process to attach to before it starts: a holder process sits in a new user and network
// namespace (the caller mapped as its root) connected by the helper. `path()` is the network
// namespace file to put in the runtime spec.
class HeldNetwork {
 public:
  HeldNetwork(const NetworkHelper& helper, const std::filesystem::path& scratch);
  ~HeldNetwork();
  HeldNetwork(const HeldNetwork&) = delete;
  HeldNetwork& operator=(const HeldNetwork&) = delete;
  std::string path() const;

 private:
  pid_t holder_ = -1;
  int release_fd_ = -1;  // closing it ends the holder
  std::unique_ptr<AttachedNetwork> attached_;
};

// Where the DNS queries of a step with `network` go: a resolv.conf path to bind at
// /etc/resolv.conf. For Network::kPrivate, a rewritten copy of `resolv_conf` in `scratch`;
// otherwise `resolv_conf` itself.
std::string resolv_conf_for(Network network, const std::string& resolv_conf,
                            const std::optional<NetworkHelper>& helper,
                            const std::filesystem::path& scratch);

}  // namespace kiln::runner::detail
