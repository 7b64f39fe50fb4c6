// RUN --mount=type=ssh: a socket inside the step that forwards to the user's SSH agent.
//
// The agent's own socket cannot be mounted as is: its owner and mode are the host's, and
// BuildKit gives the step a socket with the mount's uid, gid and mode (0600, root, by default).
// So the proxy listens on a socket of its own in a private directory, with that owner and mode,
// and relays each connection to the agent until either side closes.
#pragma once

#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

#include "kiln/base/fd.hpp"

namespace kiln::solver {

class SshAgentProxy {
 public:
  // Listens on `dir`/agent.sock (dir must exist and be private to kiln) and relays to the agent
  // socket `agent`. Throws kiln::Error when the agent is not a socket or the listener fails.
  SshAgentProxy(const std::filesystem::path& agent, const std::filesystem::path& dir, unsigned mode,
                uint32_t uid, uint32_t gid);
  // Stops listening, closes every relayed connection and joins the threads.
  ~SshAgentProxy();
  SshAgentProxy(const SshAgentProxy&) = delete;
  SshAgentProxy& operator=(const SshAgentProxy&) = delete;

  // The socket to bind-mount into the step.
  const std::filesystem::path& socket() const { return socket_; }

 private:
  void accept_loop();
  void relay(UniqueFd client);

  std::filesystem::path agent_, socket_;
  UniqueFd listener_;
  UniqueFd stop_read_, stop_write_;  // a pipe: closing the write end wakes every poll()
  std::mutex mutex_;
  std::vector<std::thread> relays_;
  std::thread acceptor_;
};

}  // namespace kiln::solver
