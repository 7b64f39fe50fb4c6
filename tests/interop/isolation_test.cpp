// Builds anywhere (issue 18):
//  - RUN's default network is a namespace of its own connected by pasta or slirp4netns: a server
//    on the host's 127.0.0.1 is unreachable, --network host reaches it, and names resolve through
//    the host's resolver even when that resolver listens on the host's loopback.
//  - kiln's own image (examples/kiln-image, built by kiln) builds examples/c-multistage and a
//    Containerfile that creates a user, chowns files and installs a local .deb, under rootful
//    podman with its default seccomp profile and capabilities (kiln's sandbox, the container's
//    /proc bound in), under a Docker-like seccomp profile that refuses unshare and mount (chroot
//    isolation), and under rootless podman (kiln's sandbox in the container's user namespace);
//    podman then runs what it built.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "kiln/base/fd.hpp"
#include "process.hpp"
#include "registry_fixture.hpp"
#include "test_files.hpp"

namespace kiln::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kEpoch = "SOURCE_DATE_EPOCH=1700000000";

std::string source(const std::string& relative) {
  return std::string(KILN_SOURCE_DIR) + "/" + relative;
}

// A TCP listener on 127.0.0.1 (connections complete in the backlog: nothing needs to accept).
class LoopbackListener {
 public:
  LoopbackListener() : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(fd_.get(), 16) != 0 ||
        ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0)
      ADD_FAILURE() << "cannot listen on 127.0.0.1";
    port_ = ntohs(address.sin_port);
  }
  int port() const { return port_; }

 private:
  UniqueFd fd_;
  int port_ = 0;
};

class RunNetwork : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    work_ = new TempDir({}, "kiln-network-");
    ASSERT_EQ(
        run_program({source("examples/busybox/prepare.sh"), ctx("busybox").string()}).exit_code, 0);
    ProcessResult base = kiln({"build", "-t", "busybox:latest", ctx("busybox").string()});
    ASSERT_EQ(base.exit_code, 0) << base.err;
  }
  static void TearDownTestSuite() {
    delete work_;
    work_ = nullptr;
  }
  void SetUp() override {
    if (::geteuid() != 0)
      GTEST_SKIP() << "the network tests run as root (CI does)";
  }

  static fs::path ctx(const std::string& name) { return work_->path() / name; }
  static ProcessResult kiln(const std::vector<std::string>& args,
                            std::vector<std::string> env = {}) {
    env.push_back(kEpoch);
    env.push_back("KILN_ROOT=" + (work_->path() / "store").string());
    return run_kiln(args, {}, {}, env);
  }
  // Builds a one-RUN Containerfile with `flags`; the step's output is in the plain progress.
  static ProcessResult run_step(const std::string& script, std::vector<std::string> flags,
                                std::vector<std::string> env = {}) {
    fs::path dir = ctx("step");
    write(dir / "Containerfile", "FROM busybox:latest\nRUN " + script + "\n");
    std::vector<std::string> args = {"build", "--no-cache", "--progress", "plain"};
    args.insert(args.end(), flags.begin(), flags.end());
    args.push_back(dir.string());
    return kiln(args, std::move(env));
  }

  static TempDir* work_;
};
TempDir* RunNetwork::work_ = nullptr;

std::string reach_script(int port) {
  // -e true: busybox nc exits once connected (it would otherwise wait for the peer). $M keeps
  // the markers out of the step's name, which the progress shows too.
  return "M=HOST; nc -w 3 127.0.0.1 " + std::to_string(port) +
         " -e true </dev/null && echo REACHED-$M || echo $M-UNREACHABLE; ip -o link | grep -vc "
         "' lo:' | sed 's/^/interfaces-besides-lo=/'";
}

TEST_F(RunNetwork, TheDefaultNetworkCannotReachTheHostsLoopbackAndHostCan) {
  LoopbackListener listener;
  for (const char* helper : {"pasta", "slirp4netns"}) {
    SCOPED_TRACE(helper);
    ProcessResult isolated =
        run_step(reach_script(listener.port()), {}, {std::string("KILN_NETWORK_HELPER=") + helper});
    ASSERT_EQ(isolated.exit_code, 0) << isolated.err;
    EXPECT_THAT(isolated.err, HasSubstr("HOST-UNREACHABLE"));
    EXPECT_THAT(isolated.err, Not(HasSubstr("REACHED-HOST")));
    // An interface of its own besides lo: the helper's, with outbound access.
    EXPECT_THAT(isolated.err, HasSubstr("interfaces-besides-lo=1"));
    EXPECT_THAT(isolated.err, Not(HasSubstr("share this machine's network")));
  }
  ProcessResult host = run_step(reach_script(listener.port()), {"--network", "host"});
  ASSERT_EQ(host.exit_code, 0) << host.err;
  EXPECT_THAT(host.err, HasSubstr("REACHED-HOST"));
  ProcessResult none = run_step(reach_script(listener.port()), {"--network", "none"});
  ASSERT_EQ(none.exit_code, 0) << none.err;
  EXPECT_THAT(none.err, HasSubstr("HOST-UNREACHABLE"));
  EXPECT_THAT(none.err, HasSubstr("interfaces-besides-lo=0"));
  // RUN --network=host in the Containerfile opts in too (with the entitlement BuildKit asks).
  fs::path dir = ctx("step-flag");
  write(dir / "Containerfile",
        "FROM busybox:latest\nRUN --network=host " + reach_script(listener.port()) + "\n");
  ProcessResult refused = kiln({"build", "--no-cache", "--progress", "plain", dir.string()});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr("Containerfile:2:5: RUN --network=host needs `kiln build "
                                     "--allow network.host`"));
  ProcessResult flag =
      kiln({"build", "--no-cache", "--progress", "plain", "--allow", "network.host", dir.string()});
  ASSERT_EQ(flag.exit_code, 0) << flag.err;
  EXPECT_THAT(flag.err, HasSubstr("REACHED-HOST"));
}

// The host's resolver listens on the host's 127.0.0.1 (as systemd-resolved's 127.0.0.53 does):
// unreachable from the step's namespace, so kiln's resolv.conf names the helper's forwarder,
// which asks the host's resolver. kiln runs in a mount namespace of its own where
// /etc/resolv.conf names the test's DNS server; the host's file is untouched.
TEST_F(RunNetwork, NamesResolveThroughTheHostsResolver) {
  fs::path log = work_->path() / "dns.log";
  BackgroundProcess dns({"python3", std::string(KILN_TEST_SUPPORT_DIR) + "/tiny_dns.py",
                         "127.0.0.1", "53", "kiln-dns-test.example=192.0.2.77"},
                        log);
  for (int i = 0; i < 100 && dns.output().find("ready") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (dns.output().find("ready") == std::string::npos)
    GTEST_SKIP() << "cannot serve DNS on 127.0.0.1:53 here: " << dns.output();
  fs::path resolv = work_->path() / "host-resolv.conf";
  write(resolv, "nameserver 127.0.0.1\noptions timeout:2\n");
  fs::path dir = ctx("dns");
  write(dir / "Containerfile",
        "FROM busybox:latest\n"
        "RUN cat /etc/resolv.conf; nslookup kiln-dns-test.example; nslookup "
        "not-there.example || echo NO-SUCH-NAME\n");
  for (const char* helper : {"pasta", "slirp4netns"}) {
    SCOPED_TRACE(helper);
    ProcessResult r = run_program(
        {"unshare", "--mount", "--propagation", "private", "sh", "-c",
         "mount --bind \"$1\" /etc/resolv.conf && shift && exec \"$@\"", "sh", resolv.string(),
         KILN_BINARY, "build", "--no-cache", "--progress", "plain", dir.string()},
        {}, {},
        {kEpoch, "KILN_ROOT=" + (work_->path() / "store").string(),
         std::string("KILN_NETWORK_HELPER=") + helper});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_THAT(r.err, HasSubstr("192.0.2.77"));
    EXPECT_THAT(r.err, HasSubstr("NO-SUCH-NAME"));
    // The step's resolv.conf names the forwarder, never the unreachable loopback address.
    EXPECT_THAT(r.err, Not(HasSubstr("nameserver 127.0.0.1")));
    EXPECT_THAT(r.err, HasSubstr("options timeout:2"));
  }
  EXPECT_THAT(dns.output(), HasSubstr("query kiln-dns-test.example"));
}

// Root of a user namespace that maps one id (a pod's root, rootless without subuids): no other
// owner exists. kiln warns once, unpacks base layers with every file root's, and chown in RUN
// steps succeeds without effect, instead of failing with EINVAL.
class SingleIdNamespace : public RunNetwork {};

TEST_F(SingleIdNamespace, WarnsOnceAndIgnoresOwnersInsteadOfFailing) {
  // A base image with a file owned by 1000, built with every id available.
  fs::path base = ctx("owned");
  write(base / "Containerfile",
        "FROM busybox:latest\nRUN touch /owned && chown 1000:1000 /owned\n");
  ASSERT_EQ(kiln({"build", "-q", "-t", "owned:1", base.string()}).exit_code, 0);
  fs::path archive = work_->path() / "owned.tar";
  ASSERT_EQ(kiln({"save", "-o", archive.string(), "owned:1"}).exit_code, 0);
  // A fresh store inside the namespace unpacks that layer itself.
  fs::path app = ctx("single");
  write(app / "Containerfile", "FROM docker-archive:" + archive.string() +
                                   "\n"
                                   "RUN touch /mine && chown 4321:4321 /mine && echo chown-ok; "
                                   "stat -c '%u %n' /owned /mine\n");
  fs::path store = work_->path() / "single-store";
  ProcessResult r = run_program({"unshare", "--user", "--map-root-user", "sh", "-c",
                                 "cat /proc/self/uid_map; exec \"$0\" build --no-cache "
                                 "--progress plain \"$1\"",
                                 KILN_BINARY, app.string()},
                                {}, {}, {kEpoch, "KILN_ROOT=" + store.string()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr(" 1\n"));  // one id mapped
  EXPECT_THAT(r.err, HasSubstr("chown-ok"));
  EXPECT_THAT(r.err, HasSubstr("0 /owned\n"));
  EXPECT_THAT(r.err, HasSubstr("0 /mine\n"));
  EXPECT_THAT(r.err, Not(HasSubstr("Invalid argument")));
  const std::string warning = "maps a single id, so files can only belong to root";
  size_t first = r.err.find(warning);
  ASSERT_NE(first, std::string::npos) << r.err;
  EXPECT_EQ(r.err.find(warning, first + 1), std::string::npos) << "warned twice: " << r.err;
  EXPECT_THAT(r.err, HasSubstr("/etc/subuid"));
}

// ---------------------------------------------------------------------------------------------
// kiln's image under podman.

class KilnImage : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0)
      return;
    work_ = new TempDir({}, "kiln-image-");
    fs::permissions(work_->path(),
                    fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
    // The image, built by kiln from the binary under test.
    fs::path image_ctx = work_->path() / "image";
    ProcessResult prepared =
        run_program({source("examples/kiln-image/prepare.sh"), image_ctx.string()}, {}, {},
                    {std::string("KILN=") + KILN_BINARY});
    ASSERT_EQ(prepared.exit_code, 0) << prepared.err;
    ASSERT_EQ(host_kiln({"build", "-q", "-t", "kiln:latest", image_ctx.string()}).exit_code, 0);
    ProcessResult saved = host_kiln({"save", "-o", image_tar().string(), "kiln:latest"});
    ASSERT_EQ(saved.exit_code, 0) << saved.err;
    // The contexts the container builds: the busybox base, the C example, a package install.
    fs::path ctx = work_->path() / "ctx";
    ASSERT_EQ(
        run_program({source("examples/busybox/prepare.sh"), (ctx / "busybox").string()}).exit_code,
        0);
    ASSERT_EQ(
        run_program({source("examples/c-multistage/prepare.sh"), (ctx / "c").string()}).exit_code,
        0);
    fs::path deb = work_->path() / "deb";
    write(deb / "DEBIAN/control",
          "Package: kiln-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: kiln tests "
          "<tests@example.invalid>\nDescription: a package for kiln's isolation tests\n");
    write(deb / "DEBIAN/postinst",
          "#!/bin/sh\nmkdir -p /var/lib/kiln-hello && chown 1000:1000 /var/lib/kiln-hello\n");
    write(deb / "usr/bin/kiln-hello", "#!/bin/sh\necho hello from a package\n");
    fs::permissions(deb / "DEBIAN/postinst", fs::perms::owner_all | fs::perms::group_read |
                                                 fs::perms::group_exec | fs::perms::others_read |
                                                 fs::perms::others_exec);
    fs::permissions(deb / "usr/bin/kiln-hello", fs::perms::owner_all | fs::perms::group_read |
                                                    fs::perms::group_exec | fs::perms::others_read |
                                                    fs::perms::others_exec);
    fs::create_directories(ctx / "pkg");
    ProcessResult packed = run_program({"dpkg-deb", "--root-owner-group", "-b", deb.string(),
                                        (ctx / "pkg/kiln-hello.deb").string()});
    ASSERT_EQ(packed.exit_code, 0) << packed.err;
    write(ctx / "pkg/Containerfile",
          "FROM busybox:latest\n"
          "RUN echo 'app:x:1000:1000:app:/home/app:/bin/sh' >> /etc/passwd \\\n"
          " && echo 'app:x:1000:' >> /etc/group \\\n"
          " && mkdir -p /home/app && touch /home/app/notes && chown -R app:app /home/app \\\n"
          " && chmod 700 /home/app\n"
          "RUN --mount=type=bind,source=kiln-hello.deb,target=/tmp/kiln-hello.deb \\\n"
          "    mkdir -p /var/lib/dpkg/info /var/lib/dpkg/updates && touch /var/lib/dpkg/status \\\n"
          " && dpkg -i /tmp/kiln-hello.deb\n"
          "USER app\n"
          "CMD [\"/bin/sh\", \"-c\", \"id -un; stat -c '%U:%G %a' /home/app; stat -c '%u:%g' "
          "/home/app/notes /var/lib/kiln-hello; kiln-hello\"]\n");
    write(work_->path() / "containers.conf",
          "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n"
          "[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = "
          "\"file\"\n");
    // A Docker-like seccomp profile: podman's own without unshare, mount, setns or pivot_root,
    // clone only without namespace flags and clone3 failing with ENOSYS (moby's rules for a
    // container without CAP_SYS_ADMIN).
    ProcessResult profile =
        run_program({"python3", "-c",
                     "import json,sys\n"
                     "p=json.load(open('/usr/share/containers/seccomp.json'))\n"
                     "gone={'unshare','clone','clone3','setns','mount','umount2','pivot_root'}\n"
                     "out=[]\n"
                     "for s in p['syscalls']:\n"
                     "    names=[n for n in s['names'] if n not in gone]\n"
                     "    if names:\n"
                     "        s=dict(s); s['names']=names; out.append(s)\n"
                     "out.append({'names':['clone'],'action':'SCMP_ACT_ALLOW','args':[{'index':0,"
                     "'value':0x7E020000,'valueTwo':0,'op':'SCMP_CMP_MASKED_EQ'}]})\n"
                     "out.append({'names':['clone3'],'action':'SCMP_ACT_ERRNO','errnoRet':38})\n"
                     "p['syscalls']=out\n"
                     "json.dump(p,open(sys.argv[1],'w'))\n",
                     docker_profile().string()});
    ASSERT_EQ(profile.exit_code, 0) << profile.err;
  }
  static void TearDownTestSuite() {
    delete work_;
    work_ = nullptr;
  }
  void SetUp() override {
    if (::geteuid() != 0)
      GTEST_SKIP() << "podman's rootful runs need root (CI is)";
    if (::access("/usr/share/containers/seccomp.json", R_OK) != 0)
      GTEST_SKIP() << "podman's seccomp profile is not installed";
  }

  static fs::path image_tar() { return work_->path() / "kiln-image.tar"; }
  static fs::path docker_profile() { return work_->path() / "docker-like-seccomp.json"; }
  static ProcessResult host_kiln(const std::vector<std::string>& args) {
    return run_kiln(args, {}, {}, {kEpoch, "KILN_ROOT=" + (work_->path() / "host-store").string()});
  }

  // podman as `user` ("" for root) with storage under `home`, the test's containers.conf.
  static std::vector<std::string> podman(const std::string& user, const fs::path& home) {
    std::vector<std::string> argv;
    if (!user.empty())
      argv = {"runuser", "-u", user, "--"};
    argv.insert(argv.end(),
                {"env", "CONTAINERS_CONF=" + (work_->path() / "containers.conf").string(),
                 "HOME=" + home.string(), "XDG_RUNTIME_DIR=" + (home / "run").string(), "podman",
                 "--root", (home / "root").string(), "--runroot", (home / "runroot").string(),
                 "--storage-driver", "vfs"});
    return argv;
  }
  static ProcessResult run(std::vector<std::string> argv, const std::vector<std::string>& more) {
    argv.insert(argv.end(), more.begin(), more.end());
    return run_program(argv);
  }

  // Loads kiln's image into podman, runs the three builds in one container with `options`,
  // loads what it saved and runs it. Returns the builds' output.
  static std::string build_in_podman(const std::string& user, const std::string& name,
                                     const std::vector<std::string>& options) {
    fs::path home = work_->path() / name;
    fs::path store = home / "store", out = home / "out";
    fs::create_directories(home / "run");
    fs::create_directories(store);
    fs::create_directories(out);
    fs::path ctx = work_->path() / "ctx";
    if (!user.empty()) {
      // The user's own copy: host root's 0700 directories (busybox's /root) are unreadable to
      // a rootless container's root.
      EXPECT_EQ(run_program({"cp", "-a", ctx.string(), (home / "ctx").string()}).exit_code, 0);
      ctx = home / "ctx";
      EXPECT_EQ(run_program({"chown", "-R", user, home.string()}).exit_code, 0);
      fs::permissions(home / "run", fs::perms::owner_all);
    }
    std::vector<std::string> p = podman(user, home);
    ProcessResult loaded = run(p, {"load", "-i", image_tar().string()});
    EXPECT_EQ(loaded.exit_code, 0) << loaded.err;
    std::vector<std::string> args = {"run", "--rm"};
    args.insert(args.end(), options.begin(), options.end());
    args.insert(args.end(),
                {"-v", store.string() + ":/var/lib/kiln", "-v", ctx.string() + ":/ctx:ro", "-v",
                 out.string() + ":/out", "--entrypoint", "/bin/sh", "localhost/kiln:latest", "-c",
                 "set -e; cat /proc/self/uid_map; "
                 "kiln build -q -t busybox:latest /ctx/busybox; "
                 "kiln build --progress plain -t app /ctx/c; "
                 "kiln build --progress plain -t pkgtest /ctx/pkg; "
                 "kiln save -o /out/app.tar app; kiln save -o /out/pkg.tar pkgtest"});
    ProcessResult built = run(p, args);
    EXPECT_EQ(built.exit_code, 0) << built.out << built.err;
    if (built.exit_code != 0)
      return built.out + built.err;
    // What kiln built runs under podman (no network needed).
    for (const char* tar : {"app.tar", "pkg.tar"}) {
      ProcessResult l = run(p, {"load", "-i", (out / tar).string()});
      EXPECT_EQ(l.exit_code, 0) << l.err;
    }
    ProcessResult app = run(p, {"run", "--rm", "--network", "none", "localhost/app:latest"});
    EXPECT_EQ(app.exit_code, 0) << app.err;
    EXPECT_THAT(app.out, HasSubstr("hello from a static C binary built by kiln"));
    ProcessResult pkg = run(p, {"run", "--rm", "--network", "none", "localhost/pkgtest:latest"});
    EXPECT_EQ(pkg.exit_code, 0) << pkg.err;
    EXPECT_EQ(pkg.out, "app\napp:app 700\n1000:1000\n1000:1000\nhello from a package\n");
    return built.out + built.err;
  }

  static TempDir* work_;
};
TempDir* KilnImage::work_ = nullptr;

TEST_F(KilnImage, RootfulPodmanWithDefaultSeccompAndCapabilitiesUsesTheSandbox) {
  std::string out = build_in_podman("", "rootful", {});
  // Rootful podman allows user namespaces but masks /proc and refuses sethostname.
  EXPECT_THAT(out, HasSubstr("isolation: oci (kiln's sandbox), with this container's /proc"));
  EXPECT_THAT(out, Not(HasSubstr("--privileged")));
}

TEST_F(KilnImage, ADockerLikeSeccompProfileGetsChrootIsolation) {
  std::string out = build_in_podman("", "docker-like",
                                    {"--security-opt", "seccomp=" + docker_profile().string()});
  EXPECT_THAT(out, HasSubstr("isolation: chroot (unshare a user namespace: "));
}

TEST_F(KilnImage, RootlessPodmanWithAUserNamespaceUsesTheSandbox) {
  const std::string user = "kiln-rootless";
  if (run_program({"id", user}).exit_code != 0) {
    // A regular (non-system) user: Debian's useradd gives it subordinate id ranges.
    ProcessResult add = run_program({"useradd", "--create-home", "--shell", "/bin/sh", user});
    ASSERT_EQ(add.exit_code, 0) << add.err;
  }
  // Rootless podman's own network needs /dev/net/tun, which some hosts keep root's: the
  // container shares the host's network here, and its user namespace is what matters.
  std::string out = build_in_podman(user, "rootless", {"--network", "host"});
  // 0 → the user, 1..65536 → its subordinate ids: kiln maps them all into its steps.
  EXPECT_THAT(out, HasSubstr("65536"));
  EXPECT_THAT(out, HasSubstr("isolation: oci (kiln's sandbox)"));
  EXPECT_THAT(out, Not(HasSubstr("isolation: chroot")));
  EXPECT_THAT(out, Not(HasSubstr("single id")));
}

}  // namespace
}  // namespace kiln::test
