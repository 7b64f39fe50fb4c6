#include "private_network.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/io.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/base/subprocess.hpp"

namespace fs = std::filesystem;

namespace kiln::runner::detail {

namespace {

constexpr const char* kPastaDns = "169.254.1.1";
constexpr const char* kSlirpDns = "10.0.2.3";

std::optional<NetworkHelper> helper_named(const std::string& name) {
  std::string path = find_program(name);
  if (path.empty())
    return std::nullopt;
  if (name == "pasta")
    return NetworkHelper{NetworkHelper::Kind::kPasta, path, kPastaDns};
  return NetworkHelper{NetworkHelper::Kind::kSlirp4netns, path, kSlirpDns};
}

bool is_loopback(const std::string& address) {
  return address.starts_with("127.") || address == "::1";
}

std::vector<std::string> words_of(const std::string& line) {
  std::vector<std::string> words;
  std::istringstream in(line);
  for (std::string w; in >> w;)
    words.push_back(w);
  return words;
}

// The parent pid of `pid` from /proc/PID/stat, or -1.
pid_t parent_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t close = stat.rfind(')');
  if (close == std::string::npos)
    return -1;
  std::istringstream rest(stat.substr(close + 1));
  std::string state;
  pid_t ppid = -1;
  rest >> state >> ppid;
  return ppid;
}

// pasta daemonises once the namespace is configured: its first process exits 0 then, and the
// daemon's pid is in the pid file.
class PastaNetwork final : public AttachedNetwork {
 public:
  PastaNetwork(const NetworkHelper& helper, pid_t target, bool join_userns,
               const fs::path& scratch) {
    fs::path pid_file = scratch / "pasta.pid";
    fs::path log = scratch / "pasta.log";
    std::string proc = "/proc/" + std::to_string(target) + "/ns/";
    std::vector<std::string> argv = {
        helper.path, "--config-net", "--quiet",
        // nothing forwarded either way; the gateway is not the host
        "-t", "none", "-u", "none", "-T", "none", "-U", "none", "--no-map-gw", "--dns-forward",
        kPastaDns,
        // stay who we are: pasta would switch root to nobody first,
        // and nobody may not enter the step's namespaces
        "--runas", std::to_string(::geteuid()) + ":" + std::to_string(::getegid()), "--pid",
        pid_file.string(), "--netns", proc + "net"};
    if (join_userns)
      argv.insert(argv.end(), {"--userns", proc + "user"});
    int status = run_to_end(argv, log);
    if (status != 0) {
      std::string last = last_line_of(log);
      throw Error("RUN network: pasta exited with status " + std::to_string(status) +
                  (last.empty() ? std::string() : ": " + last) +
                  " (--network host shares the host's network instead)");
    }
    std::string text = read_file(pid_file);
    daemon_ = static_cast<pid_t>(std::strtol(text.c_str(), nullptr, 10));
    if (daemon_ <= 0)
      throw Error("RUN network: pasta wrote no pid to " + pid_file.string());
  }
  ~PastaNetwork() override {
    // Adopted by us when kiln is a container's pid 1 (or a subreaper): then ours to reap.
    bool ours = parent_of(daemon_) == ::getpid();
    ::kill(daemon_, SIGKILL);  // it blocks SIGTERM; it has nothing to clean up
    if (ours) {
      int status = 0;
      while (::waitpid(daemon_, &status, 0) < 0 && errno == EINTR) {
      }
    }
  }

 private:
  pid_t daemon_ = -1;
};

// slirp4netns stays in the foreground as our child: it writes '1' to the ready pipe once the tap
// device is configured and exits when the exit pipe is closed.
class SlirpNetwork final : public AttachedNetwork {
 public:
  SlirpNetwork(const NetworkHelper& helper, pid_t target, bool join_userns,
               const fs::path& scratch) {
    int ready[2], exit_pipe[2];
    if (::pipe2(ready, O_CLOEXEC) != 0 || ::pipe2(exit_pipe, O_CLOEXEC) != 0)
      throw Error(std::string("RUN network: pipe: ") + std::strerror(errno));
    UniqueFd ready_read(ready[0]), ready_write(ready[1]);
    UniqueFd exit_read(exit_pipe[0]);
    exit_write_ = UniqueFd(exit_pipe[1]);
    std::string proc = "/proc/" + std::to_string(target) + "/ns/";
    std::vector<std::string> argv = {helper.path,
                                     "--configure",
                                     "--mtu=65520",
                                     "--disable-host-loopback",
                                     "--ready-fd=" + std::to_string(ready_write.get()),
                                     "--exit-fd=" + std::to_string(exit_read.get()),
                                     "--netns-type=path"};
    if (join_userns)
      argv.push_back("--userns-path=" + proc + "user");
    argv.insert(argv.end(), {proc + "net", "tap0"});
    std::vector<char*> args;
    for (std::string& a : argv)
      args.push_back(a.data());
    args.push_back(nullptr);
    fs::path log = scratch / "slirp4netns.log";
    UniqueFd log_fd = open_or_throw(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    UniqueFd null_fd = open_or_throw("/dev/null", O_RDONLY | O_CLOEXEC);
    pid_ = ::fork();
    if (pid_ < 0)
      throw Error(std::string("RUN network: fork: ") + std::strerror(errno));
    if (pid_ == 0) {
      // The two pipe ends slirp4netns keeps lose close-on-exec; nothing here allocates.
      ::fcntl(ready_write.get(), F_SETFD, 0);
      ::fcntl(exit_read.get(), F_SETFD, 0);
      ::dup2(null_fd.get(), 0);
      ::dup2(log_fd.get(), 1);
      ::dup2(log_fd.get(), 2);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ready_write.reset();
    exit_read.reset();
    char byte = 0;
    ssize_t n;
    do {
      n = ::read(ready_read.get(), &byte, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1 || byte != '1') {
      stop();
      std::string last = last_line_of(log);
      throw Error("RUN network: slirp4netns did not start" +
                  (last.empty() ? std::string() : ": " + last) +
                  " (--network host shares the host's network instead)");
    }
  }
  ~SlirpNetwork() override { stop(); }

 private:
  void stop() {
    if (pid_ <= 0)
      return;
    exit_write_.reset();
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }

  pid_t pid_ = -1;
  UniqueFd exit_write_;
};

}  // namespace

std::optional<NetworkHelper> find_network_helper() {
  if (const char* forced = std::getenv("KILN_NETWORK_HELPER"); forced && *forced) {
    std::string name = forced;
    if (name != "pasta" && name != "slirp4netns")
      throw Error("KILN_NETWORK_HELPER=" + name + ": expected pasta or slirp4netns");
    std::optional<NetworkHelper> helper = helper_named(name);
    if (!helper)
      throw Error("KILN_NETWORK_HELPER=" + name + ": " + name + " is not installed");
    return helper;
  }
  if (std::optional<NetworkHelper> pasta = helper_named("pasta"))
    return pasta;
  return helper_named("slirp4netns");
}

NetworkHelper required_network_helper() {
  std::optional<NetworkHelper> helper = find_network_helper();
  if (!helper)
    throw Error("RUN network: neither pasta (Debian's passt) nor slirp4netns is installed");
  return *helper;
}

std::string private_resolv_conf(const std::string& content,
                                const std::vector<std::string>& host_servers,
                                const std::string& dns_address) {
  std::string out;
  bool forwarded = false;
  for (const std::string& line : split(content, '\n')) {
    std::vector<std::string> words = words_of(line);
    if (words.size() >= 2 && words[0] == "nameserver") {
      const std::string& server = words[1];
      bool host = std::find(host_servers.begin(), host_servers.end(), server) != host_servers.end();
      if (host || is_loopback(server)) {
        if (!forwarded)
          out += "nameserver " + dns_address + "\n";
        forwarded = true;
        continue;
      }
    }
    if (!line.empty())
      out += line + "\n";
  }
  return out;
}

std::vector<std::string> host_nameservers() {
  std::vector<std::string> servers;
  std::string content;
  try {
    content = read_file("/etc/resolv.conf");
  } catch (const Error&) {
    return servers;
  }
  for (const std::string& line : split(content, '\n')) {
    std::vector<std::string> words = words_of(line);
    if (words.size() >= 2 && words[0] == "nameserver")
      servers.push_back(words[1]);
  }
  return servers;
}

std::unique_ptr<AttachedNetwork> attach_network(const NetworkHelper& helper, pid_t pid,
                                                bool join_userns, const fs::path& scratch) {
  if (helper.kind == NetworkHelper::Kind::kPasta)
    return std::make_unique<PastaNetwork>(helper, pid, join_userns, scratch);
  return std::make_unique<SlirpNetwork>(helper, pid, join_userns, scratch);
}

HeldNetwork::HeldNetwork(const NetworkHelper& helper, const fs::path& scratch) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throw Error(std::string("RUN network: pipe: ") + std::strerror(errno));
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  // The holder's network namespace belongs to a user namespace of its own (the caller mapped
  // as its root): pasta enters both, as it does a sandbox's, and the runtime, whose user
  // namespace is an ancestor, may join the network namespace.
  std::string uid_map = "0 " + std::to_string(::geteuid()) + " 1\n";
  std::string gid_map = "0 " + std::to_string(::getegid()) + " 1\n";
  holder_ = ::fork();
  if (holder_ < 0)
    throw Error(std::string("RUN network: fork: ") + std::strerror(errno));
  if (holder_ == 0) {
    write_end.reset();
    ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (::unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0)
      ::_exit(1);
    auto write_to = [](const char* path, const std::string& text) {
      int fd = ::open(path, O_WRONLY | O_CLOEXEC);
      bool ok =
          fd >= 0 && ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
      if (fd >= 0)
        ::close(fd);
      return ok;
    };
    if (!write_to("/proc/self/setgroups", "deny") || !write_to("/proc/self/uid_map", uid_map) ||
        !write_to("/proc/self/gid_map", gid_map))
      ::_exit(1);
    char byte;
    while (::read(read_end.get(), &byte, 1) < 0 && errno == EINTR) {
    }
    ::_exit(0);
  }
  read_end.reset();
  release_fd_ = write_end.release();
  // Ready once /proc shows the holder in a user namespace with an id map.
  std::string ours = fs::read_symlink("/proc/self/ns/net").string();
  std::string map_path = "/proc/" + std::to_string(holder_) + "/uid_map";
  bool ready = false;
  for (int i = 0; i < 25000 && !ready; ++i) {
    std::error_code ec;
    std::string theirs = fs::read_symlink(path(), ec).string();
    if (!ec && theirs != ours) {
      std::ifstream map(map_path);
      std::string first;
      ready = static_cast<bool>(map >> first);
    }
    if (ready)
      break;
    int status = 0;
    if (::waitpid(holder_, &status, WNOHANG) == holder_) {
      holder_ = -1;
      ::close(release_fd_);
      release_fd_ = -1;
      throw Error(
          "RUN network: cannot create a user and network namespace to hold the step's "
          "network (unshare)");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  attached_ = attach_network(helper, holder_, /*join_userns=*/true, scratch);
}

HeldNetwork::~HeldNetwork() {
  attached_.reset();
  if (release_fd_ >= 0)
    ::close(release_fd_);
  if (holder_ > 0) {
    int status = 0;
    while (::waitpid(holder_, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

std::string HeldNetwork::path() const {
  return "/proc/" + std::to_string(holder_) + "/ns/net";
}

std::string resolv_conf_for(Network network, const std::string& resolv_conf,
                            const std::optional<NetworkHelper>& helper, const fs::path& scratch) {
  if (network != Network::kPrivate || resolv_conf.empty() || !helper)
    return resolv_conf;
  std::string content;
  try {
    content = read_file(resolv_conf);
  } catch (const Error&) {
    return resolv_conf;  // the bind mount reports it
  }
  fs::path file = scratch / "resolv.conf";
  std::string text = private_resolv_conf(content, host_nameservers(), helper->dns_address);
  UniqueFd fd = open_or_throw(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  write_all(fd.get(), text.data(), text.size(), file.string());
  return file.string();
}

}  // namespace kiln::runner::detail

namespace kiln::runner {

std::string network_helper() {
  std::optional<detail::NetworkHelper> helper = detail::find_network_helper();
  return helper ? helper->path : std::string();
}

std::string private_network_problem() {
  if (network_helper().empty())
    return "neither pasta (Debian's passt) nor slirp4netns is installed";
  // Both helpers give the namespace a tap device, made through /dev/net/tun (which containers
  // often lack).
  int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0)
    return std::string("/dev/net/tun cannot be opened (") + std::strerror(errno) + ")";
  ::close(fd);
  return "";
}

}  // namespace kiln::runner
