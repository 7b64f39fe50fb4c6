// Manifest lists the way a build farm assembles a release: two machines (stores) build one
// architecture each and push it by digest to a registry (Debian's docker-registry on 127.0.0.1);
// a third creates a list, adds both by digest from the registry, annotates one, pushes the list;
// skopeo reads it back, and `kiln pull --all-platforms` brings the same index (same digest) into a
// fourth store.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>

#include "kiln/base/fd.hpp"
#include "process.hpp"
#include "registry_fixture.hpp"
#include "test_files.hpp"

namespace kiln::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class ManifestList : public ::testing::Test {
 protected:
  ProcessResult kiln(const std::string& store, const std::vector<std::string>& args,
                     const std::string& input = {}) {
    return run_kiln(args, {}, input, {"KILN_ROOT=" + (work_.path() / store).string()});
  }
  // Builds one platform's image in its own store, pushes it by tag, returns the pushed digest.
  std::string build_and_push(const std::string& store, const std::string& platform) {
    fs::path ctx = work_.path() / ("ctx-" + store);
    write(ctx / "Containerfile", "FROM scratch\nCOPY arch.txt /\n");
    write(ctx / "arch.txt", platform + "\n");
    ProcessResult built =
        kiln(store, {"build", "-q", "--platform", platform, "-t", "app:1", ctx.string()});
    EXPECT_EQ(built.exit_code, 0) << built.err;
    ProcessResult pushed = kiln(store, {"push", "app:1", registry_.host() + "/team/app:" + store});
    EXPECT_EQ(pushed.exit_code, 0) << pushed.err << registry_.logs();
    std::smatch m;
    std::regex digest("@(sha256:[0-9a-f]{64})");
    EXPECT_TRUE(std::regex_search(pushed.out, m, digest)) << pushed.out;
    return m.size() > 1 ? m[1].str() : "";
  }

  TempDir work_;
  LocalRegistry registry_;
};

TEST_F(ManifestList, AssembledFromImagesPushedByDigestAndReadBackBySkopeo) {
  std::string amd64 = build_and_push("amd64", "linux/amd64");
  std::string arm64 = build_and_push("arm64", "linux/arm64");
  ASSERT_FALSE(amd64.empty());
  ASSERT_FALSE(arm64.empty());
  std::string repo = registry_.host() + "/team/app";

  ASSERT_EQ(kiln("c", {"manifest", "create", "release"}).exit_code, 0);
  ProcessResult again = kiln("c", {"manifest", "create", "release"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("exists already"));
  for (const std::string& d : {amd64, arm64}) {
    ProcessResult added = kiln("c", {"manifest", "add", "release", "docker://" + repo + "@" + d});
    ASSERT_EQ(added.exit_code, 0) << added.err << registry_.logs();
  }
  ProcessResult annotated =
      kiln("c", {"manifest", "annotate", "--annotation", "org.example.arch=arm", "release", arm64});
  ASSERT_EQ(annotated.exit_code, 0) << annotated.err;
  ProcessResult inspected = kiln("c", {"manifest", "inspect", "release"});
  ASSERT_EQ(inspected.exit_code, 0) << inspected.err;
  EXPECT_EQ(nlohmann::json::parse(inspected.out)["manifests"].size(), 2u);

  fs::path digest_file = work_.path() / "list.digest";
  ProcessResult pushed = kiln("c", {"manifest", "push", "--digestfile", digest_file.string(),
                                    "release", "docker://" + repo + ":1.2"});
  ASSERT_EQ(pushed.exit_code, 0) << pushed.err << registry_.logs();
  std::string list_digest = read_or(digest_file, "");

  ProcessResult raw = run_program(
      {"skopeo", "inspect", "--raw", "--tls-verify=false", "docker://" + repo + ":1.2"});
  ASSERT_EQ(raw.exit_code, 0) << raw.err;
  nlohmann::json index = nlohmann::json::parse(raw.out);
  ASSERT_EQ(index["manifests"].size(), 2u) << raw.out;
  EXPECT_EQ(index["manifests"][0]["digest"], amd64);
  EXPECT_EQ(index["manifests"][0]["platform"]["architecture"], "amd64");
  EXPECT_EQ(index["manifests"][1]["digest"], arm64);
  EXPECT_EQ(index["manifests"][1]["platform"]["architecture"], "arm64");
  EXPECT_EQ(index["manifests"][1]["annotations"]["org.example.arch"], "arm");

  // Inspected in the registry, without pulling anything.
  ProcessResult remote = kiln("f", {"inspect", "docker://" + repo + ":1.2"});
  ASSERT_EQ(remote.exit_code, 0) << remote.err;
  nlohmann::json seen = nlohmann::json::parse(remote.out);
  EXPECT_EQ(seen["Digest"], list_digest);
  ASSERT_EQ(seen["Manifests"].size(), 2u);
  EXPECT_EQ(seen["Manifests"][1]["Config"]["architecture"], "arm64");
  ProcessResult one_field =
      kiln("f", {"inspect", "--format", "{{.Digest}}", "docker://" + repo + "@" + amd64});
  ASSERT_EQ(one_field.exit_code, 0) << one_field.err;
  EXPECT_EQ(one_field.out, amd64 + "\n");
  EXPECT_EQ(kiln("f", {"images", "-q"}).out, "");

  // The whole index into an empty store, byte for byte.
  ProcessResult pulled = kiln("d", {"pull", "-q", "--all-platforms", repo + ":1.2"});
  ASSERT_EQ(pulled.exit_code, 0) << pulled.err;
  EXPECT_EQ(pulled.out, list_digest + "\n");
  ProcessResult one = kiln("e", {"pull", "-q", "--platform", "linux/arm64", repo + ":1.2"});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  ProcessResult arm = kiln("e", {"inspect", repo + ":1.2"});
  ASSERT_EQ(arm.exit_code, 0) << arm.err;
  EXPECT_EQ(nlohmann::json::parse(arm.out)["Config"]["architecture"], "arm64");

  ASSERT_EQ(kiln("c", {"manifest", "exists", "release"}).exit_code, 0);
  ASSERT_EQ(kiln("c", {"manifest", "rm", "release"}).exit_code, 0);
  EXPECT_EQ(kiln("c", {"manifest", "exists", "release"}).exit_code, 1);
  ProcessResult image_as_list = kiln("amd64", {"manifest", "add", "app:1", "app:1"});
  EXPECT_EQ(image_as_list.exit_code, 1);
  EXPECT_THAT(image_as_list.err, HasSubstr("is an image, not a manifest list"));
}

}  // namespace
}  // namespace kiln::test
