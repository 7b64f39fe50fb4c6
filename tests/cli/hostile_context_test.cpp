// The standing adversarial suite against a hostile build context: symlinks that point outside it
// (absolute and through ..), a symlinked directory on the way to a source, FIFOs, sockets, a
// bind mount of an escaping link, and files that change while the build reads them. Each case
// must end in its clear error or the documented safe outcome, leave a store `kiln check`
// accepts, and leave the files outside the context (sentinels) unchanged. Prints cases tried /
// held.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>

#include "kiln/base/fd.hpp"
#include "process.hpp"

namespace kiln::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

struct Case {
  std::string name;
  std::string containerfile;  // after "FROM scratch\n"
  std::string error;          // a part of the message; empty: the build must succeed
  // For builds that succeed: what the exported filesystem must (not) contain.
  std::function<bool(const fs::path& out)> outcome;
};

class HostileContext : public ::testing::Test {
 protected:
  void SetUp() override {
    ctx_ = work_.path() / "ctx";
    outside_ = work_.path() / "outside";
    fs::create_directories(ctx_ / "dir");
    fs::create_directories(outside_);
    std::ofstream(outside_ / "secret.txt") << "outside the context\n";
    std::ofstream(ctx_ / "a.txt") << "inside\n";
    fs::create_symlink(outside_ / "secret.txt", ctx_ / "abs-link");
    fs::create_symlink("../outside/secret.txt", ctx_ / "rel-link");
    fs::create_symlink(outside_, ctx_ / "dir-link");
    fs::create_symlink("../a.txt", ctx_ / "dir" / "inside-link");
    ASSERT_EQ(::mkfifo((ctx_ / "fifo").c_str(), 0644), 0);
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::string sock = (ctx_ / "sock").string();
    ASSERT_LT(sock.size(), sizeof addr.sun_path);
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock.c_str());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ::close(fd);
  }

  ProcessResult build(const std::string& containerfile, const fs::path& out) {
    std::ofstream(ctx_ / "Containerfile") << "FROM scratch\n" << containerfile;
    fs::remove_all(out);
    return run_kiln({"build", "-q", "-o", "type=local,dest=" + out.string(), ctx_.string()}, {}, {},
                    {"KILN_ROOT=" + store()});
  }
  std::string store() const { return (work_.path() / "store").string(); }

  TempDir work_{{}, "kiln-hostile-context-"};
  fs::path ctx_, outside_;
};

TEST_F(HostileContext, EveryCaseHolds) {
  auto link_to = [](const fs::path& p, const std::string& target) {
    std::error_code ec;
    return fs::is_symlink(fs::symlink_status(p)) && fs::read_symlink(p, ec).string() == target;
  };
  std::string abs_target = (outside_ / "secret.txt").string();
  const std::vector<Case> cases = {
      // Symlinks resolve inside the context, as for BuildKit: a link out names a context path
      // that does not exist.
      {"absolute symlink named", "COPY abs-link /x\n", "inside the build context, which", {}},
      {"relative symlink named", "COPY rel-link /x\n", "inside the build context, which", {}},
      {"through a symlinked directory",
       "COPY dir-link/secret.txt /x\n",
       "inside the build context, which",
       {}},
      {"wildcard over escaping links", "COPY *-link /x/\n", "inside the build context, which", {}},
      {"ADD of an escaping link", "ADD abs-link /x\n", "inside the build context, which", {}},
      {"bind mount of an escaping link",
       "RUN --mount=type=bind,source=abs-link,target=/m true\n",
       "inside the build context, which",
       {}},
      {"links inside a copied directory stay links", "COPY . /all/\n", "",
       [&](const fs::path& out) {
         return link_to(out / "all/abs-link", abs_target) &&
                link_to(out / "all/rel-link", "../outside/secret.txt") &&
                !fs::exists(out / "all/secret.txt") &&
                fs::is_fifo(fs::symlink_status(out / "all/fifo")) &&
                !fs::exists(fs::symlink_status(out / "all/sock"));
       }},
      {"a link inside the context is followed", "COPY dir/inside-link /x\n", "",
       [&](const fs::path& out) { return read_file(out / "x") == "inside\n"; }},
      {"a FIFO is copied as a FIFO, never read", "COPY fifo /x\n", "",
       [&](const fs::path& out) { return fs::is_fifo(fs::symlink_status(out / "x")); }},
  };
  size_t held = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    fs::path out = work_.path() / "out";
    ProcessResult r = build(c.containerfile, out);
    bool ok;
    if (c.error.empty()) {
      ok = r.exit_code == 0 && c.outcome(out);
      EXPECT_EQ(r.exit_code, 0) << r.err;
      EXPECT_TRUE(r.exit_code != 0 || c.outcome(out));
    } else {
      ok = r.exit_code == 1 && r.err.find(c.error) != std::string::npos &&
           r.err.find("Containerfile:2:1:") != std::string::npos;
      EXPECT_EQ(r.exit_code, 1) << r.err;
      EXPECT_THAT(r.err, HasSubstr(c.error));
      EXPECT_THAT(r.err, HasSubstr("Containerfile:2:1:"));
    }
    ok &= r.err.find("outside the context\n") == std::string::npos;  // never printed
    ProcessResult check = run_kiln({"check"}, {}, {}, {"KILN_ROOT=" + store()});
    ok &= check.exit_code == 0;
    EXPECT_EQ(check.exit_code, 0) << check.out;
    held += ok ? 1 : 0;
  }
  EXPECT_EQ(read_file(outside_ / "secret.txt"), "outside the context\n");
  std::printf("hostile context: %zu cases tried, %zu held\n", cases.size(), held);
  EXPECT_EQ(held, cases.size());
}

// A context file that grows while the build hashes and copies it: the build ends (either way)
// with a consistent store, and a rebuild after the writer stops reuses nothing stale.
TEST_F(HostileContext, AFileChangingWhileItIsReadLeavesAConsistentStore) {
  {
    std::ofstream grow(ctx_ / "grow.txt");
    grow << std::string(1 << 20, 'x');
  }
  pid_t writer = ::fork();
  ASSERT_GE(writer, 0);
  if (writer == 0) {
    for (;;) {
      std::ofstream(ctx_ / "grow.txt", std::ios::app) << "more\n";
      ::usleep(1000);
    }
  }
  fs::path out = work_.path() / "out";
  ProcessResult during = build("COPY grow.txt /grow.txt\n", out);
  ::kill(writer, SIGKILL);
  ::waitpid(writer, nullptr, 0);
  EXPECT_TRUE(during.exit_code == 0 || during.exit_code == 1) << during.err;
  EXPECT_EQ(run_kiln({"check"}, {}, {}, {"KILN_ROOT=" + store()}).exit_code, 0);
  ProcessResult after = build("COPY grow.txt /grow.txt\n", out);
  ASSERT_EQ(after.exit_code, 0) << after.err;
  EXPECT_EQ(read_file(out / "grow.txt"), read_file(ctx_ / "grow.txt"));
}

}  // namespace
}  // namespace kiln::test
