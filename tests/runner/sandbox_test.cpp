#include "kiln/runner/sandbox.hpp"

#include <arpa/inet.h>
#include <elf.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

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

namespace kiln::runner {
namespace {

namespace fs = std::filesystem;

// Debian's busybox-static: one static binary is a whole userland for a test rootfs.
constexpr const char* kBusybox = "/bin/busybox";
constexpr const char* kApplets[] = {"cat",      "date",  "echo",     "env",    "grep",  "head",
                                    "hostname", "id",    "ifconfig", "insmod", "kill",  "ls",
                                    "mkdir",    "mount", "ps",       "pwd",    "sh",    "sleep",
                                    "test",     "touch", "unshare",  "wc",     "wget",  "readlink",
                                    "timeout",  "true",  "nc",       "ip",     "chown", "stat"};

// The environment variable that makes the Nested tests run: they are meant to be started by
// the tests below in a user namespace (or as an unprivileged user), not directly.
constexpr const char* kNestedVariable = "KILN_SANDBOX_TEST_NESTED";

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

// A minimal image: /bin/busybox, applet symlinks and the usual top-level directories, but no
// /etc/hosts or /etc/resolv.conf.
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

// Whether `path` is an ELF executable without a program interpreter, i.e. runs in a rootfs
// without a libc (Debian's dynamically linked busybox package installs /bin/busybox too).
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

class SandboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kBusybox) || !is_static_executable(kBusybox))
      GTEST_SKIP() << "needs a static " << kBusybox << " (Debian: busybox-static)";
    rootfs_ = dir_.path() / "rootfs";
    make_rootfs(rootfs_);
    resolv_conf_ = dir_.path() / "resolv.conf";
    write_text(resolv_conf_, "nameserver 192.0.2.53\n");
  }

  ProcessSpec spec(std::vector<std::string> args) const {
    ProcessSpec spec;
    spec.rootfs = rootfs_;
    spec.args = std::move(args);
    spec.env = {"PATH=/bin"};
    spec.resolv_conf = resolv_conf_;
    return spec;
  }

  // Runs `spec`, collecting its output in out_.
  RunResult run(ProcessSpec spec) {
    out_.clear();
    spec.output = [this](std::string_view chunk) { out_ += chunk; };
    return Sandbox().run(spec);
  }

  RunResult sh(const std::string& script) { return run(spec({"/bin/sh", "-c", script})); }

  TempDir dir_;
  fs::path rootfs_;
  fs::path resolv_conf_;
  std::string out_;
};

TEST_F(SandboxTest, RunsACommandAndCapturesStdoutAndStderrInOrder) {
  RunResult result = sh("echo hello; echo oops >&2; echo bye");
  EXPECT_EQ(out_, "hello\noops\nbye\n");
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.signal, 0);
}

TEST_F(SandboxTest, StdinIsDevNull) {
  sh("cat; echo end");
  EXPECT_EQ(out_, "end\n");
}

TEST_F(SandboxTest, ReportsTheExitCode) {
  RunResult result = sh("exit 3");
  EXPECT_EQ(result.exit_code, 3);
  EXPECT_EQ(result.signal, 0);
}

// Pid 1 of a pid namespace only gets signals from inside it that it handles, so a shell's
// `kill -9 $$` is a no-op; a child of it dies as usual.
TEST_F(SandboxTest, TheProcessIsPidOneAndIgnoresUnhandledSignalsFromInside) {
  RunResult result = sh("echo $$; kill -9 $$; echo survived; sh -c 'kill -9 $$'; echo $?");
  EXPECT_EQ(out_, "1\nsurvived\nKilled\n137\n");
  EXPECT_EQ(result.exit_code, 0);
}

// Finds the host pid of the process whose command line contains `marker`.
pid_t find_process(const std::string& marker) {
  for (const fs::directory_entry& entry : fs::directory_iterator("/proc")) {
    std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos)
      continue;
    std::string cmdline = read_text(entry.path() / "cmdline");
    if (contains(cmdline, marker))
      return static_cast<pid_t>(std::stoi(name));
  }
  return -1;
}

TEST_F(SandboxTest, ReportsTheSignalThatKilledTheProcess) {
  std::string marker = "kiln-signal-test-" + std::to_string(::getpid());
  ProcessSpec killed = spec({"/bin/sh", "-c", "echo ready; while :; do sleep 1; done", marker});
  bool sent = false;
  killed.output = [&](std::string_view chunk) {
    if (!sent && contains(std::string(chunk), "ready")) {
      pid_t pid = find_process(marker);
      ASSERT_GT(pid, 0);
      ASSERT_EQ(::kill(pid, SIGKILL), 0);
      sent = true;
    }
  };
  RunResult result = Sandbox().run(killed);
  EXPECT_TRUE(sent);
  EXPECT_EQ(result.signal, SIGKILL);
  EXPECT_EQ(result.exit_code, 128 + SIGKILL);
}

TEST_F(SandboxTest, TheEnvironmentIsExactlyTheSpecs) {
  ProcessSpec env = spec({"/bin/env"});
  env.env = {"PATH=/bin", "A=1 2", "EMPTY="};
  run(env);
  EXPECT_EQ(out_, "PATH=/bin\nA=1 2\nEMPTY=\n");
}

TEST_F(SandboxTest, LooksUpTheProgramInThePathOfTheSpec) {
  ProcessSpec echo = spec({"echo", "found"});
  echo.env = {"PATH=/nonexistent:/bin"};
  run(echo);
  EXPECT_EQ(out_, "found\n");

  echo.env = {"PATH=/nonexistent"};
  try {
    run(echo);
    FAIL() << "expected kiln::Error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "exec echo: not found in PATH");
  }
}

// A program that cannot be started is an error of the run, not an exit code: the caller tells
// "your RUN line names a missing program" apart from "the program failed".
TEST_F(SandboxTest, AMissingExecutableIsAnError) {
  try {
    run(spec({"/bin/nonexistent", "x"}));
    FAIL() << "expected kiln::Error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "exec /bin/nonexistent: No such file or directory");
  }
  // A shell's own "not found" is the shell's exit code.
  RunResult result = sh("nonexistent-command");
  EXPECT_EQ(result.exit_code, 127);
  EXPECT_TRUE(contains(out_, "not found")) << out_;
}

TEST_F(SandboxTest, SetupFailuresNameTheStep) {
  ProcessSpec bad_fs = spec({"/bin/true"});
  bad_fs.mounts.push_back({"/mnt/x", "nosuchfs", "none", {}});
  try {
    run(bad_fs);
    FAIL() << "expected kiln::Error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "mount nosuchfs on /mnt/x: No such device");
  }

  ProcessSpec bad_source = spec({"/bin/true"});
  bad_source.mounts.push_back({"/mnt/x", "bind", "/nonexistent/kiln", {"rbind"}});
  try {
    run(bad_source);
    FAIL() << "expected kiln::Error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "bind mount /nonexistent/kiln on /mnt/x: No such file or directory");
  }

  ProcessSpec bad_cwd = spec({"/bin/true"});
  bad_cwd.cwd = "/bin/true/sub";  // a missing directory is made; one under a file cannot be
  try {
    run(bad_cwd);
    FAIL() << "expected kiln::Error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "chdir /bin/true/sub: Not a directory");
  }
}

TEST_F(SandboxTest, RunsAsTheGivenUserGroupAndSupplementaryGroups) {
  ProcessSpec user =
      spec({"/bin/sh", "-c", "id -u; id -g; id -G; grep -E '^Cap(Eff|Prm)' /proc/self/status"});
  user.uid = 1000;
  user.gid = 1001;
  user.groups = {2000, 3000};
  if (::geteuid() != 0) {
    // Only root (or a caller with newuidmap's mappings) can map ids other than its own.
    try {
      run(user);
      FAIL() << "expected kiln::Error";
    } catch (const Error& e) {
      EXPECT_TRUE(contains(e.what(), "only the caller's own ids can be mapped")) << e.what();
    }
    return;
  }
  run(user);
  EXPECT_EQ(out_,
            "1000\n1001\n1001 2000 3000\n"
            "CapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n");
}

// Docker's default set is 0xa80425fb; nothing inheritable or ambient (CVE-2022-24769). Like
// BuildKit and docker run, no no_new_privs: setuid programs (su, sudo) work.
TEST_F(SandboxTest, RootHasTheDefaultCapabilitiesAndSeccomp) {
  sh("grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status");
  EXPECT_EQ(out_,
            "CapInh:\t0000000000000000\n"
            "CapPrm:\t00000000a80425fb\n"
            "CapEff:\t00000000a80425fb\n"
            "CapBnd:\t00000000a80425fb\n"
            "CapAmb:\t0000000000000000\n"
            "NoNewPrivs:\t0\n"
            "Seccomp:\t2\n");
}

TEST_F(SandboxTest, NoNewPrivsWhenAsked) {
  ProcessSpec s = spec({"/bin/sh", "-c", "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status"});
  s.no_new_privs = true;
  run(s);
  EXPECT_EQ(out_, "NoNewPrivs:\t1\nSeccomp:\t2\n");
}

// A non-root process still gets the filter although it loses CAP_SYS_ADMIN before exec.
TEST_F(SandboxTest, ANonRootUserGetsSeccompWithoutNoNewPrivs) {
  ProcessSpec s = spec({"/bin/sh", "-c", "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status"});
  s.uid = 1000;
  s.gid = 1000;
  run(s);
  EXPECT_EQ(out_, "NoNewPrivs:\t0\nSeccomp:\t2\n");
}

// An earlier step may have removed WORKDIR: it is made again, owned by the user (BuildKit).
TEST_F(SandboxTest, CreatesAMissingWorkingDirectoryOwnedByTheUser) {
  ProcessSpec s = spec({"/bin/sh", "-c", "pwd"});
  s.cwd = "/made/for/you";
  s.uid = 1000;
  s.gid = 1001;
  run(s);
  EXPECT_EQ(out_, "/made/for/you\n");
  struct stat st {};
  ASSERT_EQ(::stat((rootfs_ / "made/for/you").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_gid, 1001u);
}

TEST_F(SandboxTest, StartsInTheWorkingDirectory) {
  ProcessSpec pwd = spec({"pwd"});
  pwd.cwd = "/tmp";
  run(pwd);
  EXPECT_EQ(out_, "/tmp\n");
}

TEST_F(SandboxTest, HasItsOwnHostnameAndEtcHosts) {
  ProcessSpec host = spec({"/bin/sh", "-c", "hostname; cat /etc/hosts"});
  host.hostname = "builder";
  run(host);
  EXPECT_EQ(out_,
            "builder\n127.0.0.1\tlocalhost builder\n::1\tlocalhost ip6-localhost ip6-loopback\n");
}

TEST_F(SandboxTest, ResolvConfIsTheGivenHostFileReadOnly) {
  RunResult result = sh("cat /etc/resolv.conf; echo x >> /etc/resolv.conf");
  EXPECT_TRUE(contains(out_, "nameserver 192.0.2.53\n")) << out_;
  EXPECT_TRUE(contains(out_, "Read-only file system")) << out_;
  EXPECT_NE(result.exit_code, 0);
  EXPECT_EQ(read_text(resolv_conf_), "nameserver 192.0.2.53\n");

  // Without one, the mount point the first run left behind stays empty.
  ProcessSpec none = spec({"/bin/sh", "-c", "wc -c < /etc/resolv.conf"});
  none.resolv_conf.clear();
  run(none);
  EXPECT_EQ(out_, "0\n");
}

TEST_F(SandboxTest, ProcShowsOnlyTheSandboxsProcesses) {
  run(spec({"ps", "-o", "pid,args"}));
  EXPECT_EQ(out_, "PID   COMMAND\n    1 ps -o pid,args\n");
}

TEST_F(SandboxTest, HostFilesOutsideTheRootfsAreNotVisible) {
  TempDir host;
  write_text(host.path() / "sentinel", "secret");
  RunResult result =
      sh("test -e /bin/busybox && test ! -e '" + (host.path() / "sentinel").string() + "' && ls /");
  EXPECT_EQ(result.exit_code, 0) << out_;
  EXPECT_EQ(out_, "bin\ndev\netc\nmnt\nproc\nsys\ntmp\n");
}

TEST_F(SandboxTest, MountingIsDenied) {
  RunResult result = sh("mount -t tmpfs none /mnt");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_TRUE(contains(out_, "permission denied") || contains(out_, "not permitted")) << out_;
}

// Even root of the sandbox has no capability in the host's namespaces.
TEST_F(SandboxTest, LoadingModulesAndSettingTheClockAreDenied) {
  write_text(rootfs_ / "tmp/m.ko", "not a module");
  RunResult insmod = sh("insmod /tmp/m.ko");
  EXPECT_NE(insmod.exit_code, 0);
  EXPECT_TRUE(contains(out_, "Operation not permitted")) << out_;

  // busybox date reports the failure but exits 0.
  sh("date -s 2000-01-01");
  EXPECT_TRUE(contains(out_, "can't set date: Operation not permitted")) << out_;
}

TEST_F(SandboxTest, SeccompDeniesNewUserNamespaces) {
  RunResult result = sh("unshare -U true");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_TRUE(contains(out_, "Operation not permitted")) << out_;
}

TEST_F(SandboxTest, DevHasTheUsualNodes) {
  RunResult result =
      sh("echo x > /dev/null && test -c /dev/zero && test -c /dev/full && test -c /dev/random && "
         "head -c 5 /dev/urandom | wc -c && test -d /dev/pts && test -L /dev/ptmx && "
         "touch /dev/shm/x && test -d /dev/mqueue && readlink /dev/fd && readlink /dev/stdin");
  EXPECT_EQ(result.exit_code, 0) << out_;
  EXPECT_EQ(out_, "5\n/proc/self/fd\n/proc/self/fd/0\n");
}

TEST_F(SandboxTest, SysAndProcSysAreReadOnlyAndProcKeysIsMasked) {
  if (!fs::exists("/proc/keys"))
    GTEST_SKIP() << "the host kernel has no /proc/keys";
  RunResult result =
      sh("touch /sys/kiln; echo kiln > /proc/sys/kernel/hostname; grep ' /sys ' /proc/mounts; "
         "wc -c < /proc/keys");
  EXPECT_TRUE(contains(out_, "touch: /sys/kiln: Read-only file system")) << out_;
  EXPECT_TRUE(contains(out_, "/proc/sys/kernel/hostname: Read-only file system")) << out_;
  EXPECT_TRUE(contains(out_, "sysfs /sys sysfs ro,")) << out_;
  EXPECT_TRUE(contains(out_, "\n0\n")) << out_;
  EXPECT_EQ(result.exit_code, 0);
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

TEST_F(SandboxTest, HostNetworkReachesTheHostsLoopback) {
  OneShotHttpServer server;
  RunResult result =
      sh("timeout 5 wget -q -O - http://127.0.0.1:" + std::to_string(server.port()) + "/");
  EXPECT_EQ(result.exit_code, 0) << out_;
  EXPECT_EQ(out_, "from host\n");
}

TEST_F(SandboxTest, NoNetworkHasOnlyItsOwnLoopbackUp) {
  OneShotHttpServer server;
  ProcessSpec isolated =
      spec({"/bin/sh", "-c",
            "ifconfig lo | grep -c UP; timeout 5 wget -q -O - http://127.0.0.1:" +
                std::to_string(server.port()) +
                "/ || echo unreachable; ifconfig -a | grep -c '^[a-z]'; ls /sys/class/net"});
  isolated.network = Network::kNone;
  run(isolated);
  EXPECT_EQ(out_.substr(0, 2), "1\n") << out_;
  EXPECT_TRUE(contains(out_, "Connection refused")) << out_;
  // /sys is the namespace's own: it lists only lo, as under BuildKit.
  EXPECT_TRUE(contains(out_, "unreachable\n1\nlo\n")) << out_;
}

// Every pasta process whose command line names `dir` (the sandbox's scratch directory is under
// $TMPDIR, which the caller points at `dir`).
int helpers_naming(const fs::path& dir) {
  int count = 0;
  for (const fs::directory_entry& e : fs::directory_iterator("/proc")) {
    std::string cmdline = read_text(e.path() / "cmdline");
    if (contains(cmdline, dir.string()) &&
        (contains(cmdline, "pasta") || contains(cmdline, "slirp4netns")))
      ++count;
  }
  return count;
}

// The default network of RUN: a namespace of its own connected by pasta or slirp4netns.
TEST_F(SandboxTest, PrivateNetworkHasAnInterfaceButNotTheHostsLoopback) {
  if (::geteuid() != 0 || !private_network_problem().empty())
    GTEST_SKIP() << "needs root and a network helper: " << private_network_problem();
  OneShotHttpServer server;
  // A loopback nameserver (the host's systemd-resolved, say) is unreachable from the namespace:
  // the helper's forwarder replaces it; other lines stay.
  write_text(resolv_conf_, "nameserver 127.0.0.53\nsearch corp.example\noptions ndots:2\n");
  fs::path tmp = dir_.path() / "tmp";
  fs::create_directories(tmp);
  const char* old_tmpdir = std::getenv("TMPDIR");
  std::string saved = old_tmpdir ? old_tmpdir : "";
  ::setenv("TMPDIR", tmp.c_str(), 1);
  for (const char* helper : {"pasta", "slirp4netns"}) {
    SCOPED_TRACE(helper);
    ::setenv("KILN_NETWORK_HELPER", helper, 1);
    ProcessSpec isolated =
        spec({"/bin/sh", "-c",
              "cat /etc/resolv.conf; nc -w 3 127.0.0.1 " + std::to_string(server.port()) +
                  " -e true </dev/null || echo unreachable; ip -o link | grep -vc ' lo:'; ls "
                  "/sys/class/net | grep -vc '^lo$'"});
    isolated.network = Network::kPrivate;
    RunResult result = run(isolated);
    EXPECT_EQ(result.exit_code, 0) << out_;
    std::string dns = std::string(helper) == "pasta" ? "169.254.1.1" : "10.0.2.3";
    EXPECT_TRUE(contains(out_, "nameserver " + dns + "\nsearch corp.example\noptions ndots:2\n"))
        << out_;
    EXPECT_FALSE(contains(out_, "127.0.0.53")) << out_;
    EXPECT_TRUE(contains(out_, "unreachable\n1\n1\n")) << out_;
    // The helper is gone with the step (killed: it may take the kernel a moment to finish it).
    for (int i = 0; i < 200 && helpers_naming(tmp) != 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_EQ(helpers_naming(tmp), 0);
  }
  ::unsetenv("KILN_NETWORK_HELPER");
  if (old_tmpdir)
    ::setenv("TMPDIR", saved.c_str(), 1);
  else
    ::unsetenv("TMPDIR");
}

TEST_F(SandboxTest, ANamedHelperThatIsMissingIsAnError) {
  ::setenv("KILN_NETWORK_HELPER", "vde", 1);
  ProcessSpec isolated = spec({"/bin/true"});
  isolated.network = Network::kPrivate;
  try {
    run(isolated);
    ADD_FAILURE() << "ran with an unknown helper";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "KILN_NETWORK_HELPER=vde: expected pasta or slirp4netns"))
        << e.what();
  }
  ::unsetenv("KILN_NETWORK_HELPER");
}

// Inside a container with masked /proc paths a new proc cannot be mounted: the caller's is bound.
TEST_F(SandboxTest, BindProcShowsTheCallersProcFromItsOwnPidNamespace) {
  ProcessSpec bound = spec({"/bin/sh", "-c",
                            "echo $$; test -e /proc/self/status && echo "
                            "has-self; ls /proc 2>/dev/null | grep -c '^[0-9]'"});
  bound.bind_proc = true;
  RunResult result = run(bound);
  EXPECT_EQ(result.exit_code, 0) << out_;
  // Pid 1 of its own namespace, while /proc lists the caller's many processes.
  EXPECT_EQ(out_.substr(0, 11), "1\nhas-self\n") << out_;
  EXPECT_GT(std::stoi(out_.substr(11)), 2) << out_;
}

// A single-id user namespace has no other owner: chown succeeds and changes nothing.
TEST_F(SandboxTest, IgnoreChownMakesChownASuccessfulNoOp) {
  ProcessSpec step = spec({"/bin/sh", "-c",
                           "touch /tmp/f && chown 4321:4321 /tmp/f && echo chowned; stat -c %u "
                           "/tmp/f"});
  step.ignore_chown = true;
  RunResult result = run(step);
  EXPECT_EQ(result.exit_code, 0) << out_;
  EXPECT_EQ(out_, "chowned\n0\n");
  // Without it, the chown takes effect (every id is mapped here).
  if (::geteuid() == 0) {
    step.ignore_chown = false;
    run(step);
    EXPECT_EQ(out_, "chowned\n4321\n");
  }
}

TEST_F(SandboxTest, KeepHostnameLeavesTheInheritedOne) {
  char host[256] = {};
  ASSERT_EQ(::gethostname(host, sizeof host - 1), 0);
  ProcessSpec kept = spec({"/bin/hostname"});
  kept.keep_hostname = true;
  run(kept);
  EXPECT_EQ(out_, std::string(host) + "\n");
}

TEST_F(SandboxTest, AppliesBindAndTmpfsMountsInOrder) {
  fs::path data = dir_.path() / "data";
  fs::path config = dir_.path() / "config.txt";
  fs::create_directories(data);
  write_text(data / "in", "input\n");
  write_text(config, "key=value\n");
  ProcessSpec mounts = spec({"/bin/sh", "-c",
                             "cat /data/in /ro/in /etc/config.txt; echo out > /data/out; "
                             "touch /ro/x; touch /scratch/x && grep ' /scratch ' /proc/mounts; "
                             "touch /scratch/sub/y && echo nested-ok"});
  mounts.mounts = {
      {"/data", "bind", data.string(), {"rbind"}},
      {"/ro", "bind", data.string(), {"rbind", "ro"}},
      {"/etc/config.txt", "bind", config.string(), {"ro"}},
      {"/scratch", "tmpfs", "tmpfs", {"nosuid", "size=1m", "mode=0700"}},
      {"/scratch/sub", "tmpfs", "", {}},
  };
  run(mounts);
  EXPECT_TRUE(contains(out_, "input\ninput\nkey=value\n")) << out_;
  EXPECT_TRUE(contains(out_, "touch: /ro/x: Read-only file system")) << out_;
  EXPECT_TRUE(contains(out_, "tmpfs /scratch tmpfs rw,nosuid,relatime,size=1024k,mode=700"))
      << out_;
  EXPECT_TRUE(contains(out_, "nested-ok")) << out_;
  EXPECT_EQ(read_text(data / "out"), "out\n");
  EXPECT_FALSE(fs::exists(data / "x"));
}

TEST_F(SandboxTest, ReportsTheMountTargetsItCreatedInTheRootfs) {
  fs::remove_all(rootfs_);
  make_rootfs(rootfs_, /*with_etc=*/false);
  fs::remove(rootfs_ / "proc");
  fs::path data = dir_.path() / "data";
  fs::create_directories(data);
  write_text(dir_.path() / "file", "f");
  ProcessSpec created = spec({"/bin/true"});
  created.mounts = {
      {"/a/b", "bind", data.string(), {"rbind"}},
      {"/opt/file", "bind", (dir_.path() / "file").string(), {"bind", "ro"}},
      {"/mnt/t", "tmpfs", "tmpfs", {}},
      {"/mnt/t/inside-tmpfs", "tmpfs", "tmpfs", {}},
  };
  RunResult result = run(created);
  EXPECT_EQ(result.created_mountpoints,
            (std::vector<std::string>{"/proc", "/etc", "/etc/hosts", "/etc/resolv.conf", "/a",
                                      "/a/b", "/opt", "/opt/file", "/mnt/t"}));
  for (const std::string& path : result.created_mountpoints)
    EXPECT_TRUE(fs::exists(rootfs_ / path.substr(1))) << path;
  EXPECT_TRUE(fs::is_regular_file(rootfs_ / "etc/hosts"));
  EXPECT_TRUE(fs::is_directory(rootfs_ / "a/b"));
  EXPECT_EQ(fs::file_size(rootfs_ / "opt/file"), 0u);
  EXPECT_FALSE(fs::exists(rootfs_ / "dev/null"));
}

// An image whose /etc/resolv.conf is a dangling relative symlink gets the symlink's target
// created inside the rootfs and bound there, as with runc.
TEST_F(SandboxTest, FollowsADanglingSymlinkMountTargetInsideTheRootfs) {
  fs::create_symlink("../run/resolve/stub-resolv.conf", rootfs_ / "etc/resolv.conf");
  RunResult result = run(spec({"cat", "/etc/resolv.conf"}));
  EXPECT_EQ(out_, "nameserver 192.0.2.53\n");
  EXPECT_EQ(result.created_mountpoints,
            (std::vector<std::string>{"/etc/hosts", "/run", "/run/resolve",
                                      "/run/resolve/stub-resolv.conf"}));
}

// A malicious image cannot make the sandbox create or mount files on the host through absolute
// or ".." symlinks: targets are resolved as if the rootfs were "/".
TEST_F(SandboxTest, SymlinkedMountTargetsStayInsideTheRootfs) {
  TempDir host;
  fs::remove_all(rootfs_ / "etc");
  fs::create_symlink(host.path(), rootfs_ / "etc");
  fs::create_symlink("../../../../../../../.." + host.path().string(), rootfs_ / "mnt/escape");
  ProcessSpec escape = spec({"/bin/sh", "-c", "cat /etc/hosts | head -1"});
  escape.mounts = {{"/mnt/escape/x", "tmpfs", "tmpfs", {}}};
  RunResult result = run(escape);
  EXPECT_EQ(out_, "127.0.0.1\tlocalhost kiln\n");
  EXPECT_TRUE(fs::is_empty(host.path()));
  fs::path inside = rootfs_ / host.path().relative_path();
  EXPECT_TRUE(fs::exists(inside / "hosts"));
  EXPECT_TRUE(fs::is_directory(inside / "x"));
  std::string in_container = "/" + host.path().relative_path().string();
  EXPECT_EQ(result.created_mountpoints.back(), in_container + "/x");
}

// The rootfs mount comes first, so everything else lands on it: here an overlay whose upper
// directory collects the step's changes and the mount targets the sandbox created.
TEST_F(SandboxTest, MountsTheRootfsMountBeforeAnythingElse) {
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
  EXPECT_EQ(result.created_mountpoints,
            (std::vector<std::string>{"/etc/hosts", "/etc/resolv.conf"}));
  EXPECT_EQ(read_text(upper / "tmp/file"), "new\n");
  EXPECT_TRUE(fs::exists(upper / "etc/hosts"));
  EXPECT_FALSE(fs::exists(rootfs_ / "tmp/file"));
  EXPECT_FALSE(fs::exists(rootfs_ / "etc/hosts"));
  EXPECT_TRUE(fs::is_empty(mountpoint));
}

TEST_F(SandboxTest, RunsSandboxesConcurrently) {
  constexpr int kRuns = 4;
  std::vector<std::string> outputs(kRuns);
  std::vector<int> exit_codes(kRuns, -1);
  std::vector<std::thread> threads;
  for (int i = 0; i < kRuns; ++i) {
    threads.emplace_back([&, i] {
      ProcessSpec one =
          spec({"/bin/sh", "-c", "echo $$ " + std::to_string(i) + "; exit " + std::to_string(i)});
      one.output = [&, i](std::string_view chunk) { outputs[i] += chunk; };
      exit_codes[i] = Sandbox().run(one).exit_code;
    });
  }
  for (std::thread& thread : threads)
    thread.join();
  for (int i = 0; i < kRuns; ++i) {
    EXPECT_EQ(outputs[i], "1 " + std::to_string(i) + "\n");
    EXPECT_EQ(exit_codes[i], i);
  }
}

TEST_F(SandboxTest, PrivilegedMayMountAndHasEveryCapabilityButNoSeccomp) {
  ProcessSpec privileged =
      spec({"/bin/sh", "-c",
            "mount -t tmpfs none /mnt && echo mounted; unshare -U true && echo unshared; "
            "grep -E '^(CapEff|Seccomp):' /proc/self/status"});
  privileged.privileged = true;
  RunResult result = run(privileged);
  std::ifstream last_cap("/proc/sys/kernel/cap_last_cap");
  int last = 0;
  last_cap >> last;
  char expected[32];
  std::snprintf(expected, sizeof expected, "%016llx", (1ULL << (last + 1)) - 1);
  EXPECT_EQ(out_, std::string("mounted\nunshared\nCapEff:\t") + expected + "\nSeccomp:\t0\n");
  EXPECT_EQ(result.exit_code, 0);
}

// Runs this test binary again with `prefix` in front and only the Nested tests enabled; they
// must all pass, and there must be some.
void run_nested(const std::vector<std::string>& prefix) {
  std::vector<std::string> argv = prefix;
  argv.push_back(fs::read_symlink("/proc/self/exe").string());
  argv.push_back("--gtest_filter=SandboxNestedTest.*");
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
    // Where any user may create its temporary directories.
    ::setenv("TMPDIR", "/tmp", 1);
    ::execvp(raw[0], raw.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  std::string output = read_all(fds[0], "nested test output");
  ::close(fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << output;
  EXPECT_TRUE(contains(output, "[  PASSED  ] 2 tests.")) << output;
  EXPECT_FALSE(contains(output, "SKIPPED")) << output;
}

// kiln as a rootless user runs inside a user namespace it set up with newuidmap; here, one that
// maps only uid 0 (to host root).
TEST_F(SandboxTest, WorksWhenTheCallerIsInAUserNamespace) {
  if (::geteuid() != 0)
    GTEST_SKIP() << "needs root to set up the caller's user namespace";
  run_nested({"unshare", "--user", "--map-root-user"});
}

// Whether any user may run `path`: nobody must be able to run this test binary.
bool world_executable(const fs::path& path) {
  for (fs::path p = path; p != p.parent_path(); p = p.parent_path()) {
    if ((fs::status(p).permissions() & fs::perms::others_exec) == fs::perms::none)
      return false;
  }
  return true;
}

// Whether this kernel lets unprivileged users create user namespaces (Debian and Ubuntu have
// switches to forbid it).
bool unprivileged_user_namespaces() {
  for (const char* knob : {"/proc/sys/kernel/unprivileged_userns_clone",
                           "/proc/sys/kernel/apparmor_restrict_unprivileged_userns"}) {
    std::string value = fs::exists(knob) ? read_text(knob) : "";
    bool forbidding =
        std::string(knob).ends_with("clone") ? value.starts_with("0") : value.starts_with("1");
    if (forbidding)
      return false;
  }
  return true;
}

// A plain unprivileged caller can only map itself, as uid 0 of the sandbox.
TEST_F(SandboxTest, WorksForAnUnprivilegedCaller) {
  if (::geteuid() != 0)
    GTEST_SKIP() << "needs root to become nobody";
  if (!world_executable(fs::read_symlink("/proc/self/exe")))
    GTEST_SKIP() << "nobody cannot run this test binary";
  if (!unprivileged_user_namespaces())
    GTEST_SKIP() << "unprivileged user namespaces are disabled";
  run_nested({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"});
}

class SandboxNestedTest : public SandboxTest {
 protected:
  void SetUp() override {
    if (!std::getenv(kNestedVariable))
      GTEST_SKIP() << "run by the WorksWhen... tests";
    SandboxTest::SetUp();
  }
};

TEST_F(SandboxNestedTest, RunsWithTheCallersIdsMapped) {
  RunResult result = sh("id -u; cat /proc/self/uid_map | wc -l; touch /tmp/x && echo $$");
  EXPECT_EQ(result.exit_code, 0) << out_;
  EXPECT_EQ(out_, "0\n1\n1\n");
}

TEST_F(SandboxNestedTest, MountsAndIsolatesAsUsual) {
  fs::path data = dir_.path() / "data";
  fs::create_directories(data);
  ProcessSpec mounts = spec({"/bin/sh", "-c",
                             "echo x > /data/out; touch /sys/x; hostname; "
                             "grep -c '^Seccomp:.2' /proc/self/status"});
  mounts.mounts = {{"/data", "bind", data.string(), {"rbind"}}};
  mounts.network = Network::kNone;
  RunResult result = run(mounts);
  EXPECT_TRUE(contains(out_, "Read-only file system")) << out_;
  EXPECT_TRUE(contains(out_, "kiln\n1\n")) << out_;
  EXPECT_EQ(read_text(data / "out"), "x\n");
  EXPECT_EQ(result.exit_code, 0);
}

}  // namespace
}  // namespace kiln::runner
