#include "registry_fixture.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "process.hpp"

namespace fs = std::filesystem;

namespace kiln::test {
namespace {

std::string python() {
  // Debian's interpreter: a version manager's shim in PATH may be slow or missing modules.
  return fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
}

std::string helpers_script() {
  return std::string(KILN_TEST_SUPPORT_DIR) + "/registry_helpers.py";
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  if (!out.flush())
    throw std::runtime_error("cannot write " + path.string());
}

void run_or_throw(const std::vector<std::string>& argv) {
  ProcessResult result = run_program(argv);
  if (result.exit_code != 0) {
    throw std::runtime_error(argv[0] + " failed (exit " + std::to_string(result.exit_code) +
                             "): " + result.err);
  }
}

}  // namespace

BackgroundProcess::BackgroundProcess(const std::vector<std::string>& argv, fs::path log_file)
    : log_file_(std::move(log_file)) {
  std::vector<std::string> storage = argv;
  std::vector<char*> args;
  for (std::string& a : storage)
    args.push_back(a.data());
  args.push_back(nullptr);
  int log = ::open(log_file_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0)
    throw std::runtime_error("open " + log_file_.string() + ": " + std::strerror(errno));
  pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ < 0) {
    ::close(log);
    throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  }
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent)
      _exit(127);
    int null = ::open("/dev/null", O_RDONLY);
    ::dup2(null, 0);
    ::dup2(log, 1);
    ::dup2(log, 2);
    ::execvp(args[0], args.data());
    const char failed[] = "cannot execute ";
    (void)!::write(2, failed, sizeof failed - 1);
    (void)!::write(2, args[0], std::strlen(args[0]));
    (void)!::write(2, "\n", 1);
    _exit(127);
  }
  ::close(log);
}

BackgroundProcess::~BackgroundProcess() {
  if (pid_ <= 0)
    return;
  ::kill(pid_, SIGTERM);
  for (int i = 0; i < 200; ++i) {
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_)
      return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
}

std::string BackgroundProcess::output() const {
  std::ifstream in(log_file_);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    if (fd >= 0)
      ::close(fd);
    throw std::runtime_error(std::string("cannot find a free port: ") + std::strerror(errno));
  }
  ::close(fd);
  return ntohs(address.sin_port);
}

bool wait_for_http(int port, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(static_cast<uint16_t>(port));
    bool answered = false;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
      const char request[] = "GET /v2/ HTTP/1.0\r\n\r\n";
      if (::write(fd, request, sizeof request - 1) == static_cast<ssize_t>(sizeof request - 1)) {
        char reply[5] = {};
        answered = ::read(fd, reply, sizeof reply) == 5 && std::memcmp(reply, "HTTP/", 5) == 0;
      }
    }
    ::close(fd);
    if (answered)
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

LocalRegistry::LocalRegistry(RegistryAuth auth, std::string user, std::string password)
    : user_(std::move(user)), password_(std::move(password)), port_(free_port()) {
  fs::path dir = dir_.path();
  std::string auth_section;
  if (auth == RegistryAuth::kBasic) {
    run_or_throw({"htpasswd", "-Bbc", (dir / "htpasswd").string(), user_, password_});
    auth_section =
        "auth:\n  htpasswd:\n    realm: kiln-test\n    path: " + (dir / "htpasswd").string() + "\n";
  } else if (auth == RegistryAuth::kToken) {
    run_or_throw({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                  (dir / "token.key").string(), "-out", (dir / "token.crt").string(), "-days", "2",
                  "-subj", "/CN=kiln-test-token"});
    int token_port = free_port();
    token_server_ = std::make_unique<BackgroundProcess>(
        std::vector<std::string>{
            python(), helpers_script(), "token", "--port", std::to_string(token_port), "--key",
            (dir / "token.key").string(), "--cert", (dir / "token.crt").string(), "--issuer",
            "kiln-test-issuer", "--service", "kiln-test", "--user", user_, "--password", password_},
        dir / "token.log");
    if (!wait_for_http(token_port))
      throw std::runtime_error("the token server did not start: " + token_server_->output());
    auth_section = "auth:\n  token:\n    realm: http://127.0.0.1:" + std::to_string(token_port) +
                   "/token\n    service: kiln-test\n    issuer: kiln-test-issuer\n"
                   "    rootcertbundle: " +
                   (dir / "token.crt").string() + "\n";
  } else if (auth == RegistryAuth::kClientCert) {
    fs::path certs = dir / "certs";
    fs::create_directories(certs);
    auto path = [&](const char* name) { return (certs / name).string(); };
    run_or_throw({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                  (dir / "ca.key").string(), "-out", path("ca.crt"), "-days", "2", "-subj",
                  "/CN=kiln-test-ca"});
    // The server's and the client's certificates, both signed by the CA.
    for (const std::string who : {"server", "client"}) {
      fs::path key = who == "server" ? dir / "server.key" : certs / "client.key";
      fs::path cert = who == "server" ? dir / "server.crt" : certs / "client.cert";
      run_or_throw({"openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key.string(),
                    "-out", (dir / (who + ".csr")).string(), "-subj", "/CN=kiln-test-" + who});
      write_text(dir / (who + ".ext"), who == "server" ? "subjectAltName=IP:127.0.0.1\n"
                                                       : "extendedKeyUsage=clientAuth\n");
      run_or_throw({"openssl", "x509", "-req", "-in", (dir / (who + ".csr")).string(), "-CA",
                    path("ca.crt"), "-CAkey", (dir / "ca.key").string(), "-CAcreateserial", "-out",
                    cert.string(), "-days", "2", "-extfile", (dir / (who + ".ext")).string()});
    }
    auth_section = "  tls:\n    certificate: " + (dir / "server.crt").string() +
                   "\n    key: " + (dir / "server.key").string() + "\n    clientcas:\n      - " +
                   path("ca.crt") + "\n";
  }
  write_text(dir / "config.yml",
             "version: 0.1\n"
             "log:\n  level: info\n"
             "storage:\n  filesystem:\n    rootdirectory: " +
                 (dir / "storage").string() +
                 "\n  delete:\n    enabled: true\n"
                 "http:\n  addr: 127.0.0.1:" +
                 std::to_string(port_) + "\n  secret: kiln-test\n" + auth_section);
  registry_ = std::make_unique<BackgroundProcess>(
      std::vector<std::string>{"docker-registry", "serve", (dir / "config.yml").string()},
      dir / "registry.log");
  if (!wait_for_http(port_))
    throw std::runtime_error("docker-registry did not start: " + logs());
}

LocalRegistry::~LocalRegistry() {
  // The registry goes first so that nothing asks the token server on the way down.
  registry_.reset();
  token_server_.reset();
}

std::string LocalRegistry::logs() const {
  std::string text = registry_ ? registry_->output() : std::string();
  if (token_server_)
    text += "\n--- token server ---\n" + token_server_->output();
  return text;
}

FaultProxy::FaultProxy(const std::string& upstream, const std::string& fault) : port_(free_port()) {
  process_ = std::make_unique<BackgroundProcess>(
      std::vector<std::string>{python(), helpers_script(), "proxy", "--port", std::to_string(port_),
                               "--upstream", upstream, "--fault", fault},
      dir_.path() / "proxy.log");
  if (!wait_for_http(port_))
    throw std::runtime_error("the proxy did not start: " + process_->output());
}

}  // namespace kiln::test
