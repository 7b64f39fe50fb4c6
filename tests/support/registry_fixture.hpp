// Real registries for tests: Debian's docker-registry on 127.0.0.1 with storage in a temp
// directory, optionally behind basic or token auth, and fault-injecting proxies in front of it
// (tests/support/registry_helpers.py). Everything started here is stopped by PID when its owner
// is destroyed.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "kiln/base/fd.hpp"

namespace kiln::test {

// A program running in the background with its output in a log file. The destructor stops it
// (SIGTERM, then SIGKILL after two seconds) and reaps it; it also dies with the test process.
class BackgroundProcess {
 public:
  BackgroundProcess(const std::vector<std::string>& argv, std::filesystem::path log_file);
  ~BackgroundProcess();
  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;

  pid_t pid() const { return pid_; }
  // Everything it printed so far.
  std::string output() const;

 private:
  pid_t pid_ = -1;
  std::filesystem::path log_file_;
};

// A TCP port on 127.0.0.1 nobody listened on a moment ago.
int free_port();

// True once something answers HTTP on 127.0.0.1:port; false after `timeout`.
bool wait_for_http(int port, std::chrono::milliseconds timeout = std::chrono::seconds(10));

// kClientCert: HTTPS only, with a server certificate for 127.0.0.1 from a test CA, and every
// client must show a certificate from that CA (cert_dir() holds ca.crt, client.cert, client.key,
// as --cert-dir takes them).
enum class RegistryAuth { kNone, kBasic, kToken, kClientCert };

// docker-registry on 127.0.0.1:PORT. With kBasic, an htpasswd (bcrypt) file holds user/password;
// with kToken, a token server (registry_helpers.py token) on another port issues RS256 JWTs for
// user/password, signed by a key whose self-signed certificate is the registry's root bundle.
class LocalRegistry {
 public:
  explicit LocalRegistry(RegistryAuth auth = RegistryAuth::kNone, std::string user = "kiln",
                         std::string password = "s3cret");
  ~LocalRegistry();
  LocalRegistry(const LocalRegistry&) = delete;
  LocalRegistry& operator=(const LocalRegistry&) = delete;

  // "127.0.0.1:PORT"
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }
  const std::string& user() const { return user_; }
  const std::string& password() const { return password_; }
  // kClientCert: the directory with the CA and the client certificate.
  std::filesystem::path cert_dir() const { return dir_.path() / "certs"; }
  // The registry's log (and the token server's, after it), for failure messages.
  std::string logs() const;

 private:
  TempDir dir_;
  std::string user_;
  std::string password_;
  int port_ = 0;
  std::unique_ptr<BackgroundProcess> token_server_;
  std::unique_ptr<BackgroundProcess> registry_;
};

// registry_helpers.py proxy in front of `upstream` ("127.0.0.1:PORT") with one fault:
// "none", "corrupt-blobs", "drop-first-upload", "drop-first-download", "fail-first-503" or
// "referrers-api" (the OCI 1.1 referrers API in front of a registry that lacks it).
class FaultProxy {
 public:
  FaultProxy(const std::string& upstream, const std::string& fault);
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  // One line per request handled: "METHOD PATH -> STATUS".
  std::string requests() const { return process_->output(); }

 private:
  TempDir dir_;
  int port_ = 0;
  std::unique_ptr<BackgroundProcess> process_;
};

}  // namespace kiln::test
