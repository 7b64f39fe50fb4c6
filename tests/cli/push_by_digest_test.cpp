// -o type=registry|image,push-by-digest=true, buildx's way for a build farm to push each
// platform's image with no tag: what `kiln build` accepts and what it refuses before anything
// runs. The pushes themselves are checked against a real registry in tests/interop/farm_test.cpp.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "kiln/base/fd.hpp"
#include "process.hpp"
#include "test_files.hpp"

namespace kiln::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

class PushByDigest : public ::testing::Test {
 protected:
  void SetUp() override { write(ctx() / "Containerfile", "FROM scratch\nLABEL a=b\n"); }

  fs::path ctx() const { return dir_.path() / "ctx"; }
  fs::path store() const { return dir_.path() / "store"; }
  ProcessResult build(const std::string& output) {
    return run_kiln({"build", "-q", "-o", output, ctx().string()}, {}, {},
                    {"KILN_ROOT=" + store().string()});
  }

  TempDir dir_;
};

TEST_F(PushByDigest, TheOutputOptionIsCheckedBeforeAnythingRuns) {
  struct Case {
    std::string output, error;
  };
  for (const Case& bad : std::vector<Case>{
           {"type=registry,push-by-digest=true",
            "--output type=registry,push-by-digest=true needs name=REPOSITORY"},
           {"type=image,push=true,push-by-digest=true",
            "--output type=image,push-by-digest=true needs name=REPOSITORY"},
           {"type=registry,name=127.0.0.1:1/app,push-by-digest=yes",
            "--output type=registry: push-by-digest must be true or false, not \"yes\""},
           {"type=image,name=127.0.0.1:1/app,push=1",
            "--output type=image: push must be true or false, not \"1\""},
       }) {
    ProcessResult r = build(bad.output);
    EXPECT_EQ(r.exit_code, 2) << bad.output << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr(bad.error)) << bad.output;
    EXPECT_THAT(r.err, HasSubstr("See 'kiln build --help'.")) << bad.output;
  }
  EXPECT_FALSE(fs::exists(store()));
}

// BuildKit refuses it too ("can't push tagged ref by digest"): the push would make no tag.
TEST_F(PushByDigest, ANameWithATagOrADigestIsRefusedBeforeTheBuild) {
  std::string digest = "sha256:" + std::string(64, 'a');
  for (const std::string& name :
       std::vector<std::string>{"127.0.0.1:1/app:1", "127.0.0.1:1/app@" + digest}) {
    ProcessResult r = build("type=registry,push-by-digest=true,name=" + name);
    EXPECT_EQ(r.exit_code, 1) << name << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr("push-by-digest to \"" + name +
                                 "\": name a repository without :TAG or @DIGEST"));
  }
  EXPECT_FALSE(fs::exists(store()));
}

// As buildx: an image output pushes only with push=true (nothing listens on port 1, so an
// attempted push would fail the build).
TEST_F(PushByDigest, AnImageOutputWithoutPushTrueDoesNotPush) {
  ProcessResult r = build("type=image,name=127.0.0.1:1/app,push-by-digest=true");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, Not(HasSubstr("Pushed")));
  ProcessResult pushing = build("type=image,name=127.0.0.1:1/app,push=true,push-by-digest=true");
  EXPECT_EQ(pushing.exit_code, 1) << pushing.err;
  EXPECT_THAT(pushing.err, HasSubstr("push to 127.0.0.1:1/app failed"));
}

}  // namespace
}  // namespace kiln::test
