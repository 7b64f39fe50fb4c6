// chroot isolation (runner/chroot.hpp) and the choice of isolation (runner/isolation.hpp).
#include "kiln/runner/chroot.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/runner/isolation.hpp"
#include "kiln/runner/sandbox.hpp"

namespace kiln::runner {
namespace {

namespace fs = std::filesystem;

void write_text(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

class ChrootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0)
      GTEST_SKIP() << "chroot needs root";
    if (!fs::exists("/bin/busybox"))
      GTEST_SKIP() << "needs /bin/busybox (Debian: busybox-static)";
    rootfs_ = dir_.path() / "rootfs";
    fs::create_directories(rootfs_ / "bin");
    fs::copy_file("/bin/busybox", rootfs_ / "bin/busybox");
    for (const char* applet : {"sh", "cat", "ls", "id", "echo", "stat", "touch", "test"})
      fs::create_symlink("busybox", rootfs_ / "bin" / applet);
    write_text(dir_.path() / "resolv.conf", "nameserver 192.0.2.53\n");
  }

  ProcessSpec spec(const std::string& script) const {
    ProcessSpec s;
    s.rootfs = rootfs_;
    s.args = {"/bin/sh", "-c", script};
    s.env = {"PATH=/bin"};
    s.resolv_conf = (dir_.path() / "resolv.conf").string();
    return s;
  }

  RunResult run(ProcessSpec s) {
    out_.clear();
    s.output = [this](std::string_view chunk) { out_ += chunk; };
    return ChrootRunner().run(s);
  }

  TempDir dir_;
  fs::path rootfs_;
  std::string out_;
};

TEST_F(ChrootTest, RunsInTheRootWithDevicesHostsAndResolvConfMadeOfFiles) {
  RunResult r =
      run(spec("echo hi >/dev/null && cat /etc/hosts /etc/resolv.conf; pwd; "
               "test -c /dev/null && test -c /dev/urandom && echo devices; ls /; "
               "exit 3"));
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_TRUE(contains(out_, "127.0.0.1\tlocalhost kiln\n")) << out_;
  EXPECT_TRUE(contains(out_, "nameserver 192.0.2.53\n/\ndevices\n")) << out_;
  // The root is the step's root: nothing of the host's.
  EXPECT_FALSE(contains(out_, "home")) << out_;
  // Everything made for the step is reported, to stay out of the layer; written files are
  // emptied so that the snapshotter can remove them.
  for (const char* path :
       {"/dev", "/dev/null", "/dev/fd", "/proc", "/sys", "/etc/hosts", "/etc/resolv.conf"}) {
    EXPECT_NE(std::find(r.created_mountpoints.begin(), r.created_mountpoints.end(), path),
              r.created_mountpoints.end())
        << path;
  }
  EXPECT_EQ(fs::file_size(rootfs_ / "etc/hosts"), 0u);
}

TEST_F(ChrootTest, AnImagesOwnEtcHostsIsLeftAsItIs) {
  write_text(rootfs_ / "etc/hosts", "10.0.0.1 mine\n");
  RunResult r = run(spec("cat /etc/hosts"));
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(out_, "10.0.0.1 mine\n");
  EXPECT_EQ(read_text(rootfs_ / "etc/hosts"), "10.0.0.1 mine\n");
}

TEST_F(ChrootTest, RunsAsTheGivenUserInTheWorkingDirectory) {
  ProcessSpec s = spec("id -u; id -g; pwd; touch f && stat -c %u:%g f");
  s.uid = 1234;
  s.gid = 2345;
  s.cwd = "/work/dir";
  RunResult r = run(s);
  EXPECT_EQ(r.exit_code, 0) << out_;
  EXPECT_EQ(out_, "1234\n2345\n/work/dir\n1234:2345\n");
  struct stat st {};
  ASSERT_EQ(::stat((rootfs_ / "work/dir").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1234u);
}

TEST_F(ChrootTest, MountsAreCopiedInAndRwOnesCopiedBack) {
  fs::path cache = dir_.path() / "cache", secret = dir_.path() / "secret";
  write_text(cache / "count", "1\n");
  write_text(secret, "s3cret");
  // The image's own /data is hidden under the mount and comes back unchanged.
  write_text(rootfs_ / "data/original", "image file\n");
  ProcessSpec s = spec(
      "cat /data/count /run/secrets/token; echo; ls /data; echo 2 >> /data/count; "
      "touch /scratch/t && echo tmpfs-ok; echo x > /run/secrets/token || echo read-only-not-kept");
  s.mounts = {{"/data", "bind", cache.string(), {"rbind", "rw"}},
              {"/run/secrets/token", "bind", secret.string(), {"bind", "ro"}},
              {"/scratch", "tmpfs", "tmpfs", {"size=1m"}}};
  RunResult r = run(s);
  EXPECT_EQ(r.exit_code, 0) << out_;
  EXPECT_TRUE(contains(out_, "1\ns3cret\ncount\ntmpfs-ok\n")) << out_;
  EXPECT_EQ(read_text(cache / "count"), "1\n2\n");  // a cache keeps what the step wrote
  EXPECT_EQ(read_text(secret), "s3cret");           // a read-only bind is never written back
  EXPECT_EQ(read_text(rootfs_ / "data/original"), "image file\n");
  EXPECT_FALSE(fs::exists(rootfs_ / "data/count"));
  EXPECT_EQ(fs::file_size(rootfs_ / "run/secrets/token"), 0u);  // emptied, then removed by
                                                                // the snapshotter
  EXPECT_TRUE(fs::is_empty(rootfs_ / "scratch"));
}

TEST_F(ChrootTest, MountDestinationsResolveInsideTheRoot) {
  // An image's absolute symlink must not make kiln copy into the host's /tmp.
  fs::path outside = dir_.path() / "outside";
  fs::create_directories(outside);
  fs::create_symlink(outside, rootfs_ / "escape");
  fs::path src = dir_.path() / "src";
  write_text(src / "f", "x");
  ProcessSpec s = spec("ls /escape/m");
  s.mounts = {{"/escape/m", "bind", src.string(), {"rbind", "ro"}}};
  RunResult r = run(s);
  EXPECT_EQ(r.exit_code, 0) << out_;
  EXPECT_TRUE(fs::is_empty(outside));
}

TEST_F(ChrootTest, WhatNeedsNamespacesIsRefusedByName) {
  ProcessSpec none = spec("true");
  none.network = Network::kNone;
  EXPECT_THROW(
      {
        try {
          run(none);
        } catch (const Error& e) {
          EXPECT_TRUE(contains(e.what(), "--network=none")) << e.what();
          throw;
        }
      },
      Error);
  ProcessSpec caps = spec("true");
  caps.cap_add = {"NET_ADMIN"};
  EXPECT_THROW(run(caps), Error);
}

TEST_F(ChrootTest, AMissingProgramIsAnError) {
  ProcessSpec s = spec("true");
  s.args = {"make"};
  try {
    run(s);
    ADD_FAILURE() << "ran a missing program";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "exec make: not found in PATH");
  }
}

TEST(Isolation, NamesAreBuildahs) {
  EXPECT_EQ(parse_isolation("auto"), Isolation::kAuto);
  EXPECT_EQ(parse_isolation("oci"), Isolation::kSandbox);
  EXPECT_EQ(parse_isolation("rootless"), Isolation::kSandbox);
  EXPECT_EQ(parse_isolation("chroot"), Isolation::kChroot);
  EXPECT_THROW(parse_isolation("vm"), Error);
}

// This machine (root, user namespaces allowed, /proc unmasked) runs the whole sandbox: nothing
// to say. chroot asked for is chroot, and says what it gives up.
TEST(Isolation, AutoFindsTheWholeSandboxHereAndChrootSaysWhatItLacks) {
  if (::geteuid() != 0)
    GTEST_SKIP() << "the probe's answer here is for root";
  IsolationChoice automatic = choose_isolation(Isolation::kAuto);
  EXPECT_EQ(automatic.mode, Isolation::kSandbox);
  EXPECT_FALSE(automatic.bind_proc);
  EXPECT_FALSE(automatic.keep_hostname);
  EXPECT_EQ(automatic.line, "");
  IsolationChoice chroot = choose_isolation(Isolation::kChroot);
  EXPECT_EQ(chroot.mode, Isolation::kChroot);
  EXPECT_FALSE(chroot.network_namespaces);
  EXPECT_TRUE(contains(chroot.line, "isolation: chroot (--isolation chroot)")) << chroot.line;
  EXPECT_TRUE(contains(chroot.line, "no /proc")) << chroot.line;
  EXPECT_FALSE(single_id_user_namespace());
}

}  // namespace
}  // namespace kiln::runner
