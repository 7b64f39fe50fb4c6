// The standing adversarial suite against registries that lie (tests/support/hostile_registry.py
// on 127.0.0.1): wrong digests and sizes, short and endless bodies, a byte a second, redirect
// loops and redirects to other schemes, 401 loops, token realms on gopher/file/dict URLs,
// malformed, huge, schema-1 and nested manifests, missing blobs. Each case must end in its clear
// error within a bounded time, leave a store `kiln check` accepts, make no connection to the
// sentinel port, and leave the sentinel files unchanged. The suite prints cases tried / held.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "kiln/base/fd.hpp"
#include "process.hpp"
#include "registry_fixture.hpp"

namespace kiln::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

struct Case {
  std::string name;
  std::string error;  // a part of the message; empty for the control, which must succeed
};

TEST(HostileRegistry, EveryLieEndsInAClearErrorAndAConsistentStore) {
  TempDir work({}, "kiln-hostile-registry-");
  int sentinel_port = free_port();
  BackgroundProcess sentinel(
      {"python3", "-c",
       "import socket,sys\n"
       "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
       "s.bind(('127.0.0.1'," +
           std::to_string(sentinel_port) +
           ")); s.listen(16); print('listening', flush=True)\n"
           "while True:\n"
           "  c, a = s.accept(); print('CONNECTION', flush=True); c.close()\n"},
      work.path() / "sentinel.log");
  int port = free_port();
  BackgroundProcess registry(
      {"python3", std::string(KILN_TEST_SUPPORT_DIR) + "/hostile_registry.py", "--port",
       std::to_string(port), "--sentinel-port", std::to_string(sentinel_port)},
      work.path() / "registry.log");
  ASSERT_TRUE(wait_for_http(port)) << registry.output();

  // Files a lie must never reach: beside the stores, and a host file a realm names.
  fs::path planted = work.path() / "sentinel-files";
  fs::create_directories(planted);
  std::ofstream(planted / "keep.txt") << "untouched\n";
  // The file:// realm's target: its first line must never show up in kiln's output. (Only read:
  // other tests add users, so its content is not compared at the end.)
  std::string passwd = read_file("/etc/passwd");

  const std::vector<Case> cases = {
      {"good", ""},
      {"wrong-digest", "content does not match its digest"},
      {"wrong-size", "the registry sent more than the"},
      {"short-body", "the download broke off after"},
      {"endless-body", "the registry sent more than the"},
      {"slow", "Operation too slow"},
      {"redirect-loop", "redirects followed"},
      {"redirect-file", "Protocol \"file\" not supported"},
      {"redirect-gopher", "Protocol \"gopher\" not supported"},
      {"unauthorized-loop", "unauthorized (HTTP 401)"},
      {"realm-gopher", "refused the token realm gopher://"},
      {"realm-file", "refused the token realm file:///etc/passwd"},
      {"realm-dict", "refused the token realm dict://"},
      {"malformed-json", "the manifest is not a JSON object"},
      {"number-overflow", "the manifest is not a JSON object"},
      {"huge-json", "the answer is larger than"},
      {"schema1", "unsupported manifest type"},
      {"nested-index", "no image for platform"},
      {"missing-blob", "blob unknown (HTTP 404)"},
      {"config-not-json", "invalid image config"},
  };
  size_t held = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    fs::path ctx = work.path() / "ctx" / c.name;
    fs::create_directories(ctx);
    std::ofstream(ctx / "Containerfile")
        << "FROM 127.0.0.1:" << port << "/" << c.name << "/img:1\nLABEL case=" << c.name << "\n";
    std::string store = (work.path() / "stores" / c.name).string();
    std::vector<std::string> env = {"KILN_ROOT=" + store, "KILN_REGISTRY_STALL_SECONDS=3"};
    auto started = std::chrono::steady_clock::now();
    ProcessResult r = run_kiln({"build", "-q", "-t", "case:1", ctx.string()}, {}, {}, env);
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    bool ok = true;
    if (c.error.empty()) {
      ok &= r.exit_code == 0;
      EXPECT_EQ(r.exit_code, 0) << r.err;
    } else {
      ok &= r.exit_code == 1 && r.err.find(c.error) != std::string::npos;
      EXPECT_EQ(r.exit_code, 1) << r.err;
      EXPECT_THAT(r.err, HasSubstr(c.error));
      EXPECT_THAT(r.err, HasSubstr("Containerfile:1:6:"));  // the FROM that named it
      ProcessResult images = run_kiln({"images"}, {}, {}, env);
      ok &= images.out.find("case") == std::string::npos;
      EXPECT_THAT(images.out, ::testing::Not(HasSubstr("case"))) << "a tag was written";
    }
    ok &= seconds < 60;
    EXPECT_LT(seconds, 60) << "a lie held the build";
    ok &= r.err.find(passwd.substr(0, passwd.find('\n'))) == std::string::npos;
    ProcessResult check = run_kiln({"check"}, {}, {}, env);
    ok &= check.exit_code == 0;
    EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
    held += ok ? 1 : 0;
  }
  // Let a late connection show up before the sentinel is read.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_THAT(sentinel.output(), ::testing::Not(HasSubstr("CONNECTION")));
  EXPECT_EQ(read_file(planted / "keep.txt"), "untouched\n");
  std::printf("hostile registry: %zu cases tried, %zu held\n", cases.size(), held);
  EXPECT_EQ(held, cases.size()) << registry.output();
}

}  // namespace
}  // namespace kiln::test
