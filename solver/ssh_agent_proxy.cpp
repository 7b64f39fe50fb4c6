#include "ssh_agent_proxy.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "kiln/base/error.hpp"

namespace kiln::solver {
namespace fs = std::filesystem;

namespace {

sockaddr_un address_of(const fs::path& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::string text = path.string();
  if (text.size() >= sizeof(address.sun_path))
    throw Error("socket path " + text + " is too long for a unix socket");
  std::memcpy(address.sun_path, text.c_str(), text.size() + 1);
  return address;
}

UniqueFd unix_socket() {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd)
    throw Error(std::string("socket: ") + std::strerror(errno));
  return fd;
}

// Copies what is readable on `from` to `to`; false at end of stream or on an error.
bool pump(int from, int to) {
  char buffer[16384];
  ssize_t n = ::read(from, buffer, sizeof buffer);
  if (n < 0 && errno == EINTR)
    return true;
  if (n <= 0)
    return false;
  for (ssize_t done = 0; done < n;) {
    ssize_t w = ::write(to, buffer + done, static_cast<size_t>(n - done));
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return false;
    done += w;
  }
  return true;
}

}  // namespace

SshAgentProxy::SshAgentProxy(const fs::path& agent, const fs::path& dir, unsigned mode,
                             uint32_t uid, uint32_t gid)
    : agent_(agent), socket_(dir / "agent.sock") {
  struct stat st {};
  if (::stat(agent.c_str(), &st) != 0)
    throw Error("SSH agent socket " + agent.string() + ": " + std::strerror(errno));
  if (!S_ISSOCK(st.st_mode))
    throw Error("SSH agent " + agent.string() + " is not a socket");
  listener_ = unix_socket();
  sockaddr_un address = address_of(socket_);
  if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(listener_.get(), 16) != 0) {
    throw Error("listen on " + socket_.string() + ": " + std::strerror(errno));
  }
  ::chmod(socket_.c_str(), mode);
  if (::lchown(socket_.c_str(), uid, gid) != 0 && ::geteuid() == 0)
    throw Error("chown " + socket_.string() + ": " + std::strerror(errno));
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0)
    throw Error(std::string("pipe: ") + std::strerror(errno));
  stop_read_ = UniqueFd(pipe_fds[0]);
  stop_write_ = UniqueFd(pipe_fds[1]);
  acceptor_ = std::thread([this] { accept_loop(); });
}

SshAgentProxy::~SshAgentProxy() {
  stop_write_.reset();  // every poll() sees POLLHUP on the read end
  if (acceptor_.joinable())
    acceptor_.join();
  std::lock_guard lock(mutex_);
  for (std::thread& t : relays_)
    t.join();
}

void SshAgentProxy::accept_loop() {
  while (true) {
    pollfd fds[2] = {{listener_.get(), POLLIN, 0}, {stop_read_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR)
        continue;
      return;
    }
    if (fds[1].revents)
      return;
    UniqueFd client(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!client)
      continue;
    std::lock_guard lock(mutex_);
    relays_.emplace_back([this, c = std::move(client)]() mutable { relay(std::move(c)); });
  }
}

void SshAgentProxy::relay(UniqueFd client) {
  UniqueFd agent = unix_socket();
  sockaddr_un address = address_of(agent_);
  if (::connect(agent.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0)
    return;  // the client sees the connection close, as with a dead agent
  while (true) {
    pollfd fds[3] = {
        {client.get(), POLLIN, 0}, {agent.get(), POLLIN, 0}, {stop_read_.get(), POLLIN, 0}};
    if (::poll(fds, 3, -1) < 0) {
      if (errno == EINTR)
        continue;
      return;
    }
    if (fds[2].revents)
      return;
    if (fds[0].revents && !pump(client.get(), agent.get()))
      return;
    if (fds[1].revents && !pump(agent.get(), client.get()))
      return;
  }
}

}  // namespace kiln::solver
