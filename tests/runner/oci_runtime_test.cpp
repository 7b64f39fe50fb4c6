#include "kiln/runner/oci_runtime.hpp"

#include <arpa/inet.h>
#include <elf.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"

// Not in kiln::runner: the suite is named OciRuntime, like the class under test.
namespace kiln::oci_runtime_test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using runner::Mount;
using runner::Network;
using runner::ProcessSpec;
using runner::RunResult;

// Debian's busybox-static: one static binary is a whole userland for a test rootfs (the helpers
// below are those of sandbox_test.cpp).
constexpr const char* kBusybox = "/bin/busybox";
constexpr const char* kApplets[] = {"cat",    "date",    "echo",  "env",      "grep",    "head",
                                    "id",     "ls",      "mkdir", "mount",    "ps",      "pwd",
                                    "sh",     "sleep",   "test",  "touch",    "wc",      "wget",
                                    "insmod", "timeout", "true",  "hostname", "ifconfig"};

constexpr const char* kNestedVariable = "KILN_OCI_RUNTIME_TEST_NESTED";

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void make_rootfs(const fs::path& rootfs, bool with_etc = true) {
  for (const char* dir : {"bin", "proc", "dev", "sys", "tmp", "mnt"})
    fs::create_directories(rootfs / dir);
  if (with_etc)
    fs::create_directories(rootfs / "etc");
  fs::permissions(rootfs / "tmp", fs::perms::all | fs::perms::sticky_bit);
  fs::copy_file(kBusybox, rootfs / "bin/busybox");
  for (const char* applet : kApplets)
    fs::create_symlink("busybox", rootfs / "bin" / applet);
}

bool is_static_executable(const fs::path& path) {
  std::string elf = read_text(path);
  Elf64_Ehdr header;
  if (elf.size() < sizeof header || elf.compare(0, SELFMAG, ELFMAG) != 0)
    return false;
  std::memcpy(&header, elf.data(), sizeof header);
  for (size_t i = 0; i < header.e_phnum; ++i) {
    Elf64_Phdr program;
    size_t offset = header.e_phoff + i * header.e_phentsize;
    if (offset + sizeof program > elf.size())
      return false;
    std::memcpy(&program, elf.data() + offset, sizeof program);
    if (program.p_type == PT_INTERP)
      return false;
  }
  return true;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

bool on_path(const char* program) {
  std::string command = std::string("command -v ") + program + " >/dev/null 2>&1";
  return std::system(command.c_str()) == 0;
}

// Serves one HTTP response on 127.0.0.1 until destroyed, or for at most ten seconds.
class OneShotHttpServer {
 public:
  OneShotHttpServer() {
    listener_ = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    auto* raw = reinterpret_cast<sockaddr*>(&address);
    if (::bind(listener_.get(), raw, length) != 0 || ::listen(listener_.get(), 4) != 0 ||
        ::getsockname(listener_.get(), raw, &length) != 0)
      throw Error("test server: cannot listen");
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~OneShotHttpServer() {
    stop_ = true;
    thread_.join();
  }
  int port() const { return port_; }

 private:
  void serve() {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!stop_ && std::chrono::steady_clock::now() < deadline) {
      pollfd poll_fd{listener_.get(), POLLIN, 0};
      if (::poll(&poll_fd, 1, 100) != 1)
        continue;
      UniqueFd connection(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!connection)
        continue;
      char request[4096];
      if (::read(connection.get(), request, sizeof request) <= 0)
        continue;
      const std::string response =
          "HTTP/1.0 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nfrom host\n";
      if (::write(connection.get(), response.data(), response.size()) < 0)
        continue;
    }
  }

  UniqueFd listener_;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class OciRuntime : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kBusybox) || !is_static_executable(kBusybox))
      GTEST_SKIP() << "needs a static " << kBusybox << " (Debian: busybox-static)";
    rootfs_ = dir_.path() / "rootfs";
    make_rootfs(rootfs_);
    resolv_conf_ = dir_.path() / "resolv.conf";
    write_text(resolv_conf_, "nameserver 192.0.2.53\n");
  }

  // Whether `runtime` is installed; the tests that need it skip otherwise.
  static bool have(const char* runtime) { return on_path(runtime); }

  ProcessSpec spec(std::vector<std::string> args) const {
    ProcessSpec spec;
    spec.rootfs = rootfs_;
    spec.args = std::move(args);
    spec.env = {"PATH=/bin"};
    spec.resolv_conf = resolv_conf_;
    return spec;
  }

  RunResult run(ProcessSpec spec, const std::string& runtime = "runc") {
    out_.clear();
    spec.output = [this](std::string_view chunk) { out_ += chunk; };
    return runner::OciRuntime(runtime).run(spec);
  }

  RunResult sh(const std::string& script) { return run(spec({"/bin/sh", "-c", script})); }

  TempDir dir_;
  fs::path rootfs_;
  fs::path resolv_conf_;
  std::string out_;
};

#define REQUIRE_RUNC()                                             \
  do {                                                             \
    if (!have("runc"))                                             \
      GTEST_SKIP() << "needs runc (Debian: apt-get install runc)"; \
  } while (false)

std::vector<std::string> strings(const json& array) {
  std::vector<std::string> out;
  for (const json& item : array)
    out.push_back(item.get<std::string>());
  return out;
}

const json* find_mount(const json& config, const std::string& destination) {
  for (const json& mount : config["mounts"]) {
    if (mount["destination"] == destination)
      return &mount;
  }
  return nullptr;
}

bool has_namespace(const json& config, const std::string& type) {
  for (const json& ns : config["linux"]["namespaces"]) {
    if (ns["type"] == type)
      return true;
  }
  return false;
}

TEST_F(OciRuntime, MakeConfigDescribesTheProcessAndItsIsolation) {
  ProcessSpec s = spec({"/bin/sh", "-c", "true"});
  s.env = {"PATH=/bin", "A=1"};
  s.cwd = "/tmp";
  s.hostname = "builder";
  json config = runner::OciRuntime::make_config(s, "/some/rootfs");
  EXPECT_EQ(config["root"], (json{{"path", "/some/rootfs"}, {"readonly", false}}));
  EXPECT_EQ(config["hostname"], "builder");
  const json& process = config["process"];
  EXPECT_EQ(strings(process["args"]), s.args);
  EXPECT_EQ(strings(process["env"]), s.env);
  EXPECT_EQ(process["cwd"], "/tmp");
  EXPECT_EQ(process["terminal"], false);
  EXPECT_EQ(process["noNewPrivileges"], false);  // as BuildKit
  EXPECT_EQ(process["user"], (json{{"uid", 0}, {"gid", 0}}));
  EXPECT_EQ(process["capabilities"]["bounding"].size(), 14u);
  EXPECT_EQ(process["capabilities"]["effective"], process["capabilities"]["bounding"]);
  EXPECT_EQ(process["capabilities"]["permitted"], process["capabilities"]["bounding"]);
  EXPECT_TRUE(process["capabilities"]["inheritable"].empty());

  for (const char* type : {"pid", "ipc", "uts", "mount"})
    EXPECT_TRUE(has_namespace(config, type)) << type;
  EXPECT_FALSE(has_namespace(config, "network"));
  bool host_root = read_text("/proc/self/uid_map").find("4294967295") != std::string::npos;
  EXPECT_EQ(has_namespace(config, "user"), !host_root);
  EXPECT_EQ(config["linux"].contains("uidMappings"), !host_root);

  std::vector<std::string> destinations;
  for (const json& mount : config["mounts"])
    destinations.push_back(mount["destination"]);
  EXPECT_EQ(destinations,
            (std::vector<std::string>{"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue",
                                      "/sys", "/etc/hosts", "/etc/resolv.conf"}));
  EXPECT_EQ(*find_mount(config, "/etc/hosts"), (json{{"destination", "/etc/hosts"},
                                                     {"type", "bind"},
                                                     {"source", "hosts"},
                                                     {"options", {"rbind", "ro"}}}));
  EXPECT_EQ((*find_mount(config, "/etc/resolv.conf"))["source"], resolv_conf_.string());

  const json& linux_config = config["linux"];
  EXPECT_TRUE(contains(linux_config["maskedPaths"].dump(), "\"/proc/kcore\""));
  EXPECT_TRUE(contains(linux_config["readonlyPaths"].dump(), "\"/proc/sys\""));
  const json& seccomp = linux_config["seccomp"];
  EXPECT_EQ(seccomp["defaultAction"], "SCMP_ACT_ERRNO");
  EXPECT_FALSE(seccomp["architectures"].empty());
  std::vector<std::string> allowed = strings(seccomp["syscalls"][0]["names"]);
  EXPECT_EQ(seccomp["syscalls"][0]["action"], "SCMP_ACT_ALLOW");
  for (const char* name : {"read", "write", "execve", "openat", "ptrace"})
    EXPECT_NE(std::find(allowed.begin(), allowed.end(), name), allowed.end()) << name;
  for (const char* name : {"mount", "unshare", "init_module", "settimeofday", "clone"})
    EXPECT_EQ(std::find(allowed.begin(), allowed.end(), name), allowed.end()) << name;
  EXPECT_TRUE(contains(seccomp.dump(), R"({"action":"SCMP_ACT_ALLOW","args":[{"index":0,)"
                                       R"("op":"SCMP_CMP_MASKED_EQ","value":2114060288,)"
                                       R"("valueTwo":0}],"names":["clone"]})"))
      << seccomp.dump();
}

TEST_F(OciRuntime, MakeConfigTranslatesMountsUsersNetworkAndPrivilege) {
  ProcessSpec s = spec({"/bin/true"});
  s.uid = 1000;
  s.gid = 1001;
  s.groups = {2000};
  s.network = Network::kNone;
  s.resolv_conf.clear();
  s.mounts = {{"/a", "bind", "/src", {"rbind"}},
              {"/b", "bind", "/src", {"ro"}},
              {"/c", "tmpfs", "", {"size=1m"}}};
  json config = runner::OciRuntime::make_config(s, "/r");
  EXPECT_EQ(config["process"]["user"],
            (json{{"uid", 1000}, {"gid", 1001}, {"additionalGids", {2000}}}));
  EXPECT_EQ(config["process"]["capabilities"]["bounding"].size(), 14u);
  EXPECT_TRUE(config["process"]["capabilities"]["effective"].empty());
  EXPECT_TRUE(config["process"]["capabilities"]["permitted"].empty());
  EXPECT_TRUE(has_namespace(config, "network"));
  EXPECT_EQ(find_mount(config, "/etc/resolv.conf"), nullptr);
  EXPECT_EQ(*find_mount(config, "/a"), (json{{"destination", "/a"},
                                             {"type", "bind"},
                                             {"source", "/src"},
                                             {"options", {"rbind", "rw"}}}));
  EXPECT_EQ((*find_mount(config, "/b"))["options"], (json{"bind", "ro"}));
  EXPECT_EQ(*find_mount(config, "/c"), (json{{"destination", "/c"},
                                             {"type", "tmpfs"},
                                             {"source", "tmpfs"},
                                             {"options", {"size=1m"}}}));

  s.privileged = true;
  config = runner::OciRuntime::make_config(s, "/r");
  EXPECT_EQ(config["process"]["noNewPrivileges"], false);
  EXPECT_GT(config["process"]["capabilities"]["bounding"].size(), 37u);
  EXPECT_FALSE(config["linux"].contains("seccomp"));
  EXPECT_FALSE(config["linux"].contains("maskedPaths"));
}

TEST_F(OciRuntime, RunsACommandAndReportsOutputAndExitCode) {
  REQUIRE_RUNC();
  RunResult result = sh("echo hello; echo oops >&2; cat; echo bye; exit 3");
  // Both streams arrive; their relative order is the shell's business (busybox buffers stdout
  // on a pipe), so only the stdout order is checked.
  EXPECT_TRUE(contains(out_, "oops\n")) << out_;
  std::string stdout_only = out_;
  stdout_only.erase(stdout_only.find("oops\n"), 5);
  EXPECT_EQ(stdout_only, "hello\nbye\n");
  EXPECT_EQ(result.exit_code, 3);
  EXPECT_EQ(result.signal, 0);
  // The process is pid 1 of its own pid namespace and has its own hostname.
  result = run(spec({"ps", "-o", "pid,args"}));
  EXPECT_EQ(out_, "PID   COMMAND\n    1 ps -o pid,args\n");
  EXPECT_EQ(result.exit_code, 0);
  sh("hostname");
  EXPECT_EQ(out_, "kiln\n");
}

TEST_F(OciRuntime, UsesTheEnvironmentWorkingDirectoryAndUser) {
  REQUIRE_RUNC();
  ProcessSpec s = spec({"/bin/sh", "-c", "env; pwd; id -u; id -g; id -G"});
  s.env = {"PATH=/bin", "A=1 2"};
  s.cwd = "/tmp";
  s.uid = 1000;
  s.gid = 1001;
  s.groups = {2000, 3000};
  RunResult result = run(s);
  EXPECT_EQ(result.exit_code, 0) << out_;
  // runc adds HOME when the environment has none, as Docker does.
  EXPECT_TRUE(contains(out_, "PATH=/bin\n")) << out_;
  EXPECT_TRUE(contains(out_, "A=1 2\n")) << out_;
  EXPECT_TRUE(contains(out_, "/tmp\n1000\n1001\n1001 2000 3000\n")) << out_;
}

TEST_F(OciRuntime, RootHasTheDefaultCapabilitiesAndSeccomp) {
  REQUIRE_RUNC();
  sh("grep -E '^(Cap(Prm|Eff|Bnd)|NoNewPrivs|Seccomp:)' /proc/self/status");
  EXPECT_EQ(out_,
            "CapPrm:\t00000000a80425fb\n"
            "CapEff:\t00000000a80425fb\n"
            "CapBnd:\t00000000a80425fb\n"
            "NoNewPrivs:\t0\n"
            "Seccomp:\t2\n");
}

TEST_F(OciRuntime, AppliesBindAndTmpfsMounts) {
  REQUIRE_RUNC();
  fs::path data = dir_.path() / "data";
  fs::create_directories(data);
  write_text(data / "in", "input\n");
  ProcessSpec s = spec({"/bin/sh", "-c",
                        "cat /data/in /ro/in; echo out > /data/out; touch /ro/x; "
                        "touch /scratch/x && grep ' /scratch ' /proc/mounts"});
  s.mounts = {{"/data", "bind", data.string(), {"rbind"}},
              {"/ro", "bind", data.string(), {"rbind", "ro"}},
              {"/scratch", "tmpfs", "tmpfs", {"nosuid", "size=1m", "mode=0700"}}};
  run(s);
  EXPECT_TRUE(contains(out_, "input\ninput\n")) << out_;
  EXPECT_TRUE(contains(out_, "touch: /ro/x: Read-only file system")) << out_;
  EXPECT_TRUE(contains(out_, "tmpfs /scratch tmpfs rw,nosuid,relatime,size=1024k,mode=700"))
      << out_;
  EXPECT_EQ(read_text(data / "out"), "out\n");
  EXPECT_FALSE(fs::exists(data / "x"));
}

TEST_F(OciRuntime, ReportsTheMountTargetsItCreatedInTheRootfs) {
  REQUIRE_RUNC();
  fs::remove_all(rootfs_);
  make_rootfs(rootfs_, /*with_etc=*/false);
  fs::remove(rootfs_ / "proc");
  fs::path data = dir_.path() / "data";
  fs::create_directories(data);
  write_text(dir_.path() / "file", "f");
  ProcessSpec s = spec({"/bin/sh", "-c", "cat /etc/hosts; test -f /opt/file && echo file"});
  s.mounts = {{"/a/b", "bind", data.string(), {"rbind"}},
              {"/opt/file", "bind", (dir_.path() / "file").string(), {"bind", "ro"}},
              {"/mnt/t", "tmpfs", "tmpfs", {}},
              {"/mnt/t/inside-tmpfs", "tmpfs", "tmpfs", {}}};
  RunResult result = run(s);
  EXPECT_EQ(out_, "127.0.0.1\tlocalhost kiln\n::1\tlocalhost ip6-localhost ip6-loopback\nfile\n");
  EXPECT_EQ(result.created_mountpoints,
            (std::vector<std::string>{"/proc", "/etc", "/etc/hosts", "/etc/resolv.conf", "/a",
                                      "/a/b", "/opt", "/opt/file", "/mnt/t"}));
  EXPECT_TRUE(fs::is_regular_file(rootfs_ / "etc/hosts"));
  EXPECT_EQ(fs::file_size(rootfs_ / "opt/file"), 0u);
  EXPECT_FALSE(fs::exists(rootfs_ / "dev/null"));
  EXPECT_FALSE(fs::exists(rootfs_ / "mnt/t/inside-tmpfs"));

  // A dangling relative symlink is followed inside the rootfs.
  fs::remove(rootfs_ / "etc/resolv.conf");
  fs::create_symlink("../run/resolve/stub-resolv.conf", rootfs_ / "etc/resolv.conf");
  result = run(spec({"cat", "/etc/resolv.conf"}));
  EXPECT_EQ(out_, "nameserver 192.0.2.53\n");
  EXPECT_EQ(result.created_mountpoints,
            (std::vector<std::string>{"/run", "/run/resolve", "/run/resolve/stub-resolv.conf"}));
}

TEST_F(OciRuntime, HostNetworkReachesTheHostsLoopbackAndNoNetworkDoesNot) {
  REQUIRE_RUNC();
  OneShotHttpServer server;
  std::string url = "http://127.0.0.1:" + std::to_string(server.port()) + "/";
  RunResult result = sh("timeout 5 wget -q -O - " + url);
  EXPECT_EQ(result.exit_code, 0) << out_;
  EXPECT_EQ(out_, "from host\n");

  ProcessSpec isolated =
      spec({"/bin/sh", "-c",
            "timeout 5 wget -q -O - " + url +
                " 2>/dev/null || echo unreachable; ifconfig -a | grep -c '^[a-z]'"});
  isolated.network = Network::kNone;
  run(isolated);
  EXPECT_TRUE(contains(out_, "unreachable\n1\n")) << out_;
}

TEST_F(OciRuntime, MountingLoadingModulesAndSettingTheClockAreDenied) {
  REQUIRE_RUNC();
  RunResult mount = sh("mount -t tmpfs none /mnt");
  EXPECT_NE(mount.exit_code, 0);
  EXPECT_TRUE(contains(out_, "permission denied") || contains(out_, "not permitted")) << out_;

  write_text(rootfs_ / "tmp/m.ko", "not a module");
  RunResult insmod = sh("insmod /tmp/m.ko");
  EXPECT_NE(insmod.exit_code, 0);
  EXPECT_TRUE(contains(out_, "Operation not permitted")) << out_;

  // busybox date reports the failure but exits 0.
  sh("date -s 2000-01-01");
  EXPECT_TRUE(contains(out_, "can't set date: Operation not permitted")) << out_;
}

TEST_F(OciRuntime, PrivilegedMayMount) {
  REQUIRE_RUNC();
  ProcessSpec privileged = spec({"/bin/sh", "-c",
                                 "mount -t tmpfs none /mnt && echo mounted; "
                                 "grep -E '^(CapEff|Seccomp):' /proc/self/status"});
  privileged.privileged = true;
  RunResult result = run(privileged);
  // Every capability kiln holds: the runtime cannot grant more.
  std::string status = read_text("/proc/self/status");
  size_t eff = status.find("CapEff:");
  std::string host_eff = status.substr(eff, status.find('\n', eff) - eff + 1);
  EXPECT_EQ(out_, "mounted\n" + host_eff + "Seccomp:\t0\n");
  EXPECT_EQ(result.exit_code, 0);
}

// The rootfs mount is made before the targets are created, so they land in the upper directory,
// and is gone afterwards.
TEST_F(OciRuntime, MountsTheRootfsMountFirstAndPrivately) {
  REQUIRE_RUNC();
  fs::path upper = dir_.path() / "upper", work = dir_.path() / "work";
  fs::path mountpoint = dir_.path() / "merged";
  for (const fs::path& path : {upper, work, mountpoint})
    fs::create_directories(path);
  ProcessSpec overlay = spec({"/bin/sh", "-c", "echo new > /tmp/file && ls /bin/busybox"});
  overlay.rootfs = mountpoint;
  overlay.rootfs_mount = Mount{"/",
                               "overlay",
                               "overlay",
                               {"lowerdir=" + rootfs_.string() + ",upperdir=" + upper.string() +
                                ",workdir=" + work.string()}};
  RunResult result = run(overlay);
  EXPECT_EQ(out_, "/bin/busybox\n");
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.created_mountpoints,
            (std::vector<std::string>{"/etc/hosts", "/etc/resolv.conf"}));
  EXPECT_EQ(read_text(upper / "tmp/file"), "new\n");
  EXPECT_TRUE(fs::exists(upper / "etc/hosts"));
  EXPECT_FALSE(fs::exists(rootfs_ / "tmp/file"));
  EXPECT_TRUE(fs::is_empty(mountpoint));
  EXPECT_FALSE(contains(read_text("/proc/self/mountinfo"), mountpoint.string()));
}

TEST_F(OciRuntime, AMissingRuntimeIsAnErrorNamingIt) {
  try {
    runner::OciRuntime("kiln-no-such-runtime");
    FAIL() << "expected kiln::Error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "OCI runtime kiln-no-such-runtime: not found in PATH");
  }
  try {
    runner::OciRuntime("/nonexistent/runc");
    FAIL() << "expected kiln::Error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "OCI runtime /nonexistent/runc: No such file or directory");
  }
}

// A program the runtime cannot start is the runtime's error, with its message; the shell's own
// "not found" is an exit code.
TEST_F(OciRuntime, AProgramThatCannotStartIsAnErrorWithTheRuntimesMessage) {
  REQUIRE_RUNC();
  try {
    run(spec({"/bin/nonexistent"}));
    FAIL() << "expected kiln::Error";
  } catch (const Error& e) {
    EXPECT_TRUE(std::string(e.what()).starts_with("runc: ")) << e.what();
    EXPECT_TRUE(contains(e.what(), "/bin/nonexistent")) << e.what();
  }
  RunResult result = sh("nonexistent-command");
  EXPECT_EQ(result.exit_code, 127);

  ProcessSpec bad_source = spec({"/bin/true"});
  bad_source.mounts.push_back({"/mnt/x", "bind", "/nonexistent/kiln", {"rbind"}});
  try {
    run(bad_source);
    FAIL() << "expected kiln::Error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "bind mount /nonexistent/kiln on /mnt/x: No such file or directory");
  }
}

TEST_F(OciRuntime, AnOutputCallbackThatThrowsKillsTheContainer) {
  REQUIRE_RUNC();
  ProcessSpec s = spec({"/bin/sh", "-c", "echo ready; sleep 60"});
  s.output = [](std::string_view) { throw Error("stop"); };
  auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(runner::OciRuntime("runc").run(s), Error);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
}

TEST_F(OciRuntime, RunsConcurrently) {
  REQUIRE_RUNC();
  constexpr int kRuns = 3;
  std::vector<std::string> outputs(kRuns);
  std::vector<int> exit_codes(kRuns, -1);
  std::vector<std::thread> threads;
  for (int i = 0; i < kRuns; ++i) {
    threads.emplace_back([&, i] {
      ProcessSpec one =
          spec({"/bin/sh", "-c", "echo " + std::to_string(i) + "; exit " + std::to_string(i)});
      one.output = [&, i](std::string_view chunk) { outputs[i] += chunk; };
      try {
        exit_codes[i] = runner::OciRuntime("runc").run(one).exit_code;
      } catch (const Error& e) {
        outputs[i] = e.what();
      }
    });
  }
  for (std::thread& thread : threads)
    thread.join();
  for (int i = 0; i < kRuns; ++i) {
    EXPECT_EQ(outputs[i], std::to_string(i) + "\n");
    EXPECT_EQ(exit_codes[i], i);
  }
}

// crun 1.8 may refuse a host with hybrid (v1 + v2) cgroups; then the error must carry its own
// complaint, never pass for a successful run.
TEST_F(OciRuntime, CrunRunsOrFailsWithItsOwnMessage) {
  if (!have("crun"))
    GTEST_SKIP() << "needs crun (Debian: apt-get install crun)";
  try {
    RunResult result = run(spec({"/bin/sh", "-c", "echo via crun; exit 4"}), "crun");
    EXPECT_EQ(out_, "via crun\n");
    EXPECT_EQ(result.exit_code, 4);
  } catch (const Error& e) {
    EXPECT_TRUE(std::string(e.what()).starts_with("crun: ")) << e.what();
    EXPECT_GT(std::strlen(e.what()), std::strlen("crun: ")) << e.what();
    std::cerr << "crun failed: " << e.what() << "\n";
  }
}

// Runs this test binary again in a user namespace that maps only uid 0 (to host root), as a
// rootless kiln is; the Nested tests must pass there.
TEST_F(OciRuntime, WorksWhenTheCallerIsInAUserNamespace) {
  REQUIRE_RUNC();
  if (::geteuid() != 0)
    GTEST_SKIP() << "needs root to set up the caller's user namespace";
  std::vector<std::string> argv = {"unshare", "--user", "--map-root-user", "--mount"};
  argv.push_back(fs::read_symlink("/proc/self/exe").string());
  argv.push_back("--gtest_filter=OciRuntimeNested.*");
  std::vector<char*> raw;
  for (std::string& arg : argv)
    raw.push_back(arg.data());
  raw.push_back(nullptr);
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::dup2(fds[1], 2);
    ::setenv(kNestedVariable, "1", 1);
    ::execvp(raw[0], raw.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  std::string output = read_all(fds[0], "nested test output");
  ::close(fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << output;
  EXPECT_TRUE(contains(output, "[  PASSED  ] 1 test.")) << output;
}

class OciRuntimeNested : public OciRuntime {
 protected:
  void SetUp() override {
    if (!std::getenv(kNestedVariable))
      GTEST_SKIP() << "run by OciRuntime.WorksWhenTheCallerIsInAUserNamespace";
    OciRuntime::SetUp();
  }
};

TEST_F(OciRuntimeNested, RunsInAUserNamespaceWithTheCallersIdsMapped) {
  fs::path data = dir_.path() / "data";
  fs::create_directories(data);
  ProcessSpec s = spec({"/bin/sh", "-c",
                        // One stream: runc may hand stdout and stderr over separately.
                        "exec 2>&1; id -u; wc -l < /proc/self/uid_map; echo x > /data/out; "
                        "touch /sys/x; "
                        "grep -c '^Seccomp:.2' /proc/self/status"});
  s.mounts = {{"/data", "bind", data.string(), {"rbind"}}};
  json config = runner::OciRuntime::make_config(s, rootfs_.string());
  EXPECT_EQ(config["linux"]["uidMappings"],
            (json::array({{{"containerID", 0}, {"hostID", 0}, {"size", 1}}})));
  RunResult result = run(s);
  EXPECT_TRUE(contains(out_, "0\n1\n")) << out_;
  EXPECT_TRUE(contains(out_, "Read-only file system")) << out_;
  EXPECT_EQ(read_text(data / "out"), "x\n");
  EXPECT_EQ(result.exit_code, 0) << out_;
}

}  // namespace
}  // namespace kiln::oci_runtime_test
