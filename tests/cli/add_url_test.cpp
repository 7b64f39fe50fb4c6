// ADD <http URL>: served by a Python HTTP server the test starts on 127.0.0.1 (and stops by PID),
// optionally through a small forwarding proxy, to check names, modes, --checksum, the cache and
// proxy support. Builds start FROM scratch.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "kiln/base/fd.hpp"
#include "process.hpp"

namespace kiln::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// Serves `dir` over HTTP on 127.0.0.1 (as a plain server, or as a forwarding proxy that logs
// every request line to dir/proxy.log). The port is written by the server itself.
constexpr const char* kServer = R"PY(
import http.server, socketserver, sys, os, urllib.request
mode, root = sys.argv[1], sys.argv[2]
os.chdir(root)
class Proxy(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(os.path.join(root, "proxy.log"), "a") as log:
            log.write(self.requestline + "\n")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(self.path) as r:
                body = r.read()
                self.send_response(r.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
        except Exception:
            self.send_error(502)
    def log_message(self, *args):
        pass
class Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
handler = Proxy if mode == "proxy" else Files
with socketserver.TCPServer(("127.0.0.1", 0), handler) as httpd:
    with open(os.path.join(root, mode + ".port.tmp"), "w") as f:
        f.write(str(httpd.server_address[1]))
    os.rename(os.path.join(root, mode + ".port.tmp"), os.path.join(root, mode + ".port"))
    httpd.serve_forever()
)PY";

class Server {
 public:
  Server(const std::string& mode, const fs::path& dir) {
    fs::path script = dir / ("server-" + mode + ".py");
    std::ofstream(script) << kServer;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::execlp("python3", "python3", script.c_str(), mode.c_str(), dir.c_str(), nullptr);
      ::_exit(127);
    }
    fs::path port_file = dir / (mode + ".port");
    for (int i = 0; i < 100 && !fs::exists(port_file); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::ifstream(port_file) >> port_;
  }
  ~Server() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  int port() const { return port_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

class AddUrl : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(files());
    serve("data.txt", "payload\n");
    server_ = std::make_unique<Server>("files", files());
    ASSERT_GT(server_->port(), 0) << "the test HTTP server did not start";
  }

  fs::path files() const { return work_.path() / "files"; }
  void serve(const std::string& name, const std::string& content) {
    std::ofstream(files() / name, std::ios::trunc) << content;
  }
  std::string url(const std::string& name) const {
    return "http://127.0.0.1:" + std::to_string(server_->port()) + "/" + name;
  }

  ProcessResult build(const std::string& containerfile, std::vector<std::string> env = {}) {
    fs::create_directories(work_.path() / "ctx");
    std::ofstream(work_.path() / "ctx" / "Containerfile", std::ios::trunc) << containerfile;
    fs::remove_all(out());
    env.push_back("KILN_ROOT=" + (work_.path() / "store").string());
    return run_kiln({"build", "--progress", "plain", "-o", "type=local,dest=" + out().string(),
                     (work_.path() / "ctx").string()},
                    {}, {}, env);
  }
  fs::path out() const { return work_.path() / "out"; }
  std::string read(const std::string& rel) const {
    std::ifstream in(out() / rel, std::ios::binary);
    if (!in)
      return "<missing>";
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

  TempDir work_{{}, "kiln-add-url-"};
  std::unique_ptr<Server> server_;
};

TEST_F(AddUrl, DownloadsIntoADirectoryOrAsAFileWithMode600) {
  ProcessResult r = build("FROM scratch\nADD " + url("data.txt") + " /into/\nADD " +
                          url("data.txt") + " /renamed\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read("into/data.txt"), "payload\n");
  EXPECT_EQ(read("renamed"), "payload\n");
  struct stat st {};
  ASSERT_EQ(::lstat((out() / "renamed").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST_F(AddUrl, ChecksumIsVerified) {
  std::string good =
      "sha256:" + run_program({"sha256sum", (files() / "data.txt").string()}).out.substr(0, 64);
  ProcessResult ok =
      build("FROM scratch\nADD --checksum=" + good + " " + url("data.txt") + " /d\n");
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  std::string bad = "sha256:" + std::string(64, 'a');
  ProcessResult wrong =
      build("FROM scratch\nADD --checksum=" + bad + " " + url("data.txt") + " /d\n");
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_THAT(wrong.err, HasSubstr("Containerfile:2"));
  EXPECT_THAT(wrong.err, HasSubstr("does not match the content"));
}

TEST_F(AddUrl, ErrorsNameTheLineAndTheCause) {
  ProcessResult missing = build("FROM scratch\nADD " + url("nope.txt") + " /d\n");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("Containerfile:2"));
  EXPECT_THAT(missing.err, HasSubstr("HTTP 404"));
  ProcessResult copy = build("FROM scratch\nCOPY " + url("data.txt") + " /d\n");
  EXPECT_EQ(copy.exit_code, 1);
  EXPECT_THAT(copy.err, HasSubstr("use ADD for URLs"));
}

TEST_F(AddUrl, TheCacheFollowsTheContent) {
  std::string file = "FROM scratch\nADD " + url("data.txt") + " /d\n";
  ASSERT_EQ(build(file).exit_code, 0);
  ProcessResult same = build(file);
  EXPECT_THAT(same.err, HasSubstr("CACHED"));
  serve("data.txt", "changed\n");
  ProcessResult changed = build(file);
  ASSERT_EQ(changed.exit_code, 0) << changed.err;
  EXPECT_THAT(changed.err, ::testing::Not(HasSubstr("CACHED")));
  EXPECT_EQ(read("d"), "changed\n");
}

TEST_F(AddUrl, DownloadsGoThroughTheProxyFromTheEnvironment) {
  Server proxy("proxy", files());
  ASSERT_GT(proxy.port(), 0);
  std::string address = "http://127.0.0.1:" + std::to_string(proxy.port());
  ProcessResult r =
      build("FROM scratch\nADD " + url("data.txt") + " /d\n", {"http_proxy=" + address});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read("d"), "payload\n");
  std::ifstream log(files() / "proxy.log");
  std::string line;
  std::getline(log, line);
  EXPECT_THAT(line, HasSubstr("GET " + url("data.txt")));
}

}  // namespace
}  // namespace kiln::test
