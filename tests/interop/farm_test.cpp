// The build farm on one machine (issue 18, "Builds anywhere"): two stores build one platform each
// from the same Containerfile, export their cache to a registry (Debian's docker-registry on
// 127.0.0.1) and push their image by digest only (buildx's push-by-digest=true); a fresh third
// store rebuilds one platform from that cache alone, every step CACHED, to the same digest; a
// fourth assembles the manifest list from the two pushed digests and pushes it under a tag, which
// skopeo reads back with exactly those two platforms.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <utility>

#include "kiln/base/fd.hpp"
#include "process.hpp"
#include "registry_fixture.hpp"
#include "test_files.hpp"

namespace kiln::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

class BuildFarm : public ::testing::Test {
 protected:
  void SetUp() override {
    // No RUN, so arm64 builds here without QEMU; TARGETARCH makes the two platforms differ.
    write(ctx_ / "Containerfile",
          "FROM scratch\n"
          "ARG TARGETARCH\n"
          "COPY app.txt /app.txt\n"
          "COPY arch-${TARGETARCH}.txt /arch.txt\n"
          "LABEL org.example.arch=$TARGETARCH\n");
    write(ctx_ / "app.txt", "app\n");
    write(ctx_ / "arch-amd64.txt", "amd64\n");
    write(ctx_ / "arch-arm64.txt", "arm64\n");
  }

  // kiln with `store` as its KILN_ROOT; no SOURCE_DATE_EPOCH, so only the cache can make two
  // stores build the same digest.
  ProcessResult kiln(const std::string& store, const std::vector<std::string>& args) {
    return run_kiln(args, {}, {}, {"KILN_ROOT=" + (work_.path() / store).string()});
  }

  // Builds `platform` in `store` with `args` added (the output among them), plain progress;
  // returns what ran and the metadata file's JSON.
  std::pair<ProcessResult, nlohmann::json> build(const std::string& store,
                                                 const std::string& platform,
                                                 const std::vector<std::string>& args) {
    fs::path meta = work_.path() / (store + "-metadata.json");
    std::vector<std::string> all = {"build",  "--progress",      "plain",      "--platform",
                                    platform, "--metadata-file", meta.string()};
    all.insert(all.end(), args.begin(), args.end());
    all.push_back(ctx_.string());
    ProcessResult r = kiln(store, all);
    return {r, nlohmann::json::parse(read_or(meta, "{}"))};
  }

  ProcessResult skopeo(const std::vector<std::string>& args) {
    std::vector<std::string> all = {"skopeo"};
    all.insert(all.end(), args.begin(), args.end());
    return run_program(all);
  }

  static std::string sha256_of(const std::string& bytes) {
    ProcessResult r = run_program({"sh", "-c", "printf %s \"$0\" | sha256sum | cut -c1-64", bytes});
    return "sha256:" + r.out.substr(0, 64);
  }

  std::string repo() const { return registry_.host() + "/team/app"; }

  TempDir work_{{}, "kiln-farm-"};
  fs::path ctx_ = work_.path() / "ctx";
  LocalRegistry registry_;
};

TEST_F(BuildFarm, TwoStoresPushByDigestAndTheirListIsReadBackBySkopeo) {
  auto [a, a_meta] = build("a", "linux/amd64",
                           {"--cache-to", "type=registry,ref=" + repo() + "-cache:amd64,mode=max",
                            "-o", "type=registry,name=" + repo() + ",push-by-digest=true"});
  ASSERT_EQ(a.exit_code, 0) << a.err << registry_.logs();
  std::string amd64 = a_meta.value("containerimage.digest", "");
  ASSERT_THAT(amd64, ::testing::MatchesRegex("sha256:[0-9a-f]{64}"));
  EXPECT_THAT(a.err, HasSubstr("Pushed " + repo() + "@" + amd64 + " (by digest, no tag)"));
  EXPECT_EQ(a_meta["image.name"], repo());

  // buildx's other spelling of the same output.
  auto [b, b_meta] = build("b", "linux/arm64",
                           {"--cache-to", "type=registry,ref=" + repo() + "-cache:arm64,mode=max",
                            "-o", "type=image,name=" + repo() + ",push=true,push-by-digest=true"});
  ASSERT_EQ(b.exit_code, 0) << b.err << registry_.logs();
  std::string arm64 = b_meta.value("containerimage.digest", "");
  ASSERT_THAT(arm64, ::testing::MatchesRegex("sha256:[0-9a-f]{64}"));
  EXPECT_NE(arm64, amd64);

  // A fresh store with only the amd64 cache: every step comes from it, the same image results.
  auto [c, c_meta] = build("c", "linux/amd64",
                           {"--cache-from", "type=registry,ref=" + repo() + "-cache:amd64", "-o",
                            "type=registry,name=" + repo() + ",push-by-digest=true"});
  ASSERT_EQ(c.exit_code, 0) << c.err << registry_.logs();
  EXPECT_THAT(c.err, HasSubstr("Importing cache from type=registry,ref=" + repo() +
                               "-cache:amd64: 3 records"));
  std::regex cached(R"(#\d+ CACHED\n)");
  EXPECT_EQ(std::distance(std::sregex_iterator(c.err.begin(), c.err.end(), cached),
                          std::sregex_iterator()),
            3)
      << c.err;
  EXPECT_THAT(c.err, Not(HasSubstr("cache miss")));
  EXPECT_EQ(c_meta["containerimage.digest"], amd64);
  EXPECT_EQ(c_meta["containerimage.config.digest"], a_meta["containerimage.config.digest"]);

  // The release: a list of the two digests, pushed under a tag.
  ASSERT_EQ(kiln("d", {"manifest", "create", "release"}).exit_code, 0);
  for (const std::string& digest : {amd64, arm64}) {
    ProcessResult added =
        kiln("d", {"manifest", "add", "release", "docker://" + repo() + "@" + digest});
    ASSERT_EQ(added.exit_code, 0) << added.err << registry_.logs();
  }
  fs::path digest_file = work_.path() / "release.digest";
  ProcessResult pushed = kiln(
      "d", {"manifest", "push", "--digestfile", digest_file.string(), "release", repo() + ":1.0"});
  ASSERT_EQ(pushed.exit_code, 0) << pushed.err << registry_.logs();

  ProcessResult raw =
      skopeo({"inspect", "--raw", "--tls-verify=false", "docker://" + repo() + ":1.0"});
  ASSERT_EQ(raw.exit_code, 0) << raw.err;
  EXPECT_EQ(sha256_of(raw.out), read_or(digest_file, ""));
  nlohmann::json list = nlohmann::json::parse(raw.out);
  EXPECT_EQ(list["mediaType"], "application/vnd.oci.image.index.v1+json");
  std::set<std::pair<std::string, std::string>> entries;
  for (const nlohmann::json& m : list["manifests"])
    entries.emplace(m["platform"]["os"].get<std::string>() + "/" +
                        m["platform"]["architecture"].get<std::string>(),
                    m["digest"].get<std::string>());
  EXPECT_EQ(list["manifests"].size(), 2u) << raw.out;
  EXPECT_EQ(entries, (std::set<std::pair<std::string, std::string>>{{"linux/amd64", amd64},
                                                                    {"linux/arm64", arm64}}));

  ProcessResult config =
      skopeo({"inspect", "--config", "--raw", "--tls-verify=false", "--override-os", "linux",
              "--override-arch", "arm64", "docker://" + repo() + ":1.0"});
  ASSERT_EQ(config.exit_code, 0) << config.err;
  EXPECT_EQ(sha256_of(config.out), b_meta["containerimage.config.digest"]);
  nlohmann::json arm = nlohmann::json::parse(config.out);
  EXPECT_EQ(arm["architecture"], "arm64");
  EXPECT_EQ(arm["config"]["Labels"]["org.example.arch"], "arm64");

  // The pushes by digest made no tag: the list's is the repository's only one.
  ProcessResult tags = skopeo({"list-tags", "--tls-verify=false", "docker://" + repo()});
  ASSERT_EQ(tags.exit_code, 0) << tags.err;
  EXPECT_EQ(nlohmann::json::parse(tags.out)["Tags"], nlohmann::json::array({"1.0"})) << tags.out;
}

// Several platforms: the index and both images go by digest; the repository gets no tag.
TEST_F(BuildFarm, AMultiPlatformIndexIsPushedByDigestWithNoTag) {
  auto [r, meta] = build("a", "linux/amd64,linux/arm64",
                         {"-o", "type=image,name=" + repo() + ",push=true,push-by-digest=true"});
  ASSERT_EQ(r.exit_code, 0) << r.err << registry_.logs();
  std::string index = meta.value("containerimage.digest", "");
  EXPECT_EQ(meta["containerimage.descriptor"]["mediaType"],
            "application/vnd.oci.image.index.v1+json");

  ProcessResult raw =
      skopeo({"inspect", "--raw", "--tls-verify=false", "docker://" + repo() + "@" + index});
  ASSERT_EQ(raw.exit_code, 0) << raw.err << registry_.logs();
  EXPECT_EQ(sha256_of(raw.out), index);
  nlohmann::json pushed = nlohmann::json::parse(raw.out);
  ASSERT_EQ(pushed["manifests"].size(), 2u) << raw.out;
  for (const nlohmann::json& m : pushed["manifests"]) {
    ProcessResult image = skopeo({"inspect", "--raw", "--tls-verify=false",
                                  "docker://" + repo() + "@" + m["digest"].get<std::string>()});
    EXPECT_EQ(image.exit_code, 0) << image.err;
  }

  ProcessResult latest =
      skopeo({"inspect", "--raw", "--tls-verify=false", "docker://" + repo() + ":latest"});
  EXPECT_NE(latest.exit_code, 0) << latest.out;
  // docker-registry answers 404 for a repository without tags; another registry may list none.
  ProcessResult tags = skopeo({"list-tags", "--tls-verify=false", "docker://" + repo()});
  if (tags.exit_code == 0)
    EXPECT_TRUE(nlohmann::json::parse(tags.out)["Tags"].empty()) << tags.out;
  else
    EXPECT_THAT(tags.err, HasSubstr("404")) << tags.err;
}

}  // namespace
}  // namespace kiln::test
