// The attestation flags of buildx and buildah on `kiln build`: which attestations each
// spelling attaches, and the refusals.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "kiln/base/fd.hpp"
#include "process.hpp"

namespace kiln::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class AttestFlags : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream(ctx_.path() / "Containerfile") << "FROM scratch\nCOPY a.txt /a.txt\n";
    std::ofstream(ctx_.path() / "a.txt") << "a\n";
  }
  ProcessResult kiln(const std::vector<std::string>& args) {
    return run_kiln(args, {}, {}, {"KILN_ROOT=" + (store_.path() / "store").string()});
  }
  // The predicate types attached by a build with `flags`.
  std::multiset<std::string> attached(std::vector<std::string> flags) {
    std::vector<std::string> args = {"build", "-q", "-t", "img:1"};
    args.insert(args.end(), flags.begin(), flags.end());
    args.push_back(ctx_.path().string());
    ProcessResult built = kiln(args);
    EXPECT_EQ(built.exit_code, 0) << built.err;
    ProcessResult inspected = kiln({"inspect", "--attestations", "img:1"});
    nlohmann::json j = nlohmann::json::parse(inspected.out, nullptr, false);
    std::multiset<std::string> out;
    if (!j.is_object())
      return out;
    for (const auto& a : j["Attestations"]) {
      for (const auto& s : a["Statements"]) {
        std::string type = s["predicateType"];
        if (type == "https://slsa.dev/provenance/v1" &&
            s["predicate"]["buildDefinition"]["internalParameters"].contains("buildConfig"))
          type += " max";
        out.insert(type);
      }
    }
    return out;
  }
  TempDir ctx_{{}, "kiln-attest-ctx-"};
  TempDir store_{{}, "kiln-attest-store-"};
};

constexpr const char* kSpdx = "https://spdx.dev/Document";
constexpr const char* kCdx = "https://cyclonedx.org/bom";
constexpr const char* kSlsa = "https://slsa.dev/provenance/v1";

TEST_F(AttestFlags, EachSpellingAttachesWhatItSays) {
  EXPECT_TRUE(attached({}).empty());
  EXPECT_EQ(attached({"--sbom"}), std::multiset<std::string>{kSpdx});
  EXPECT_EQ(attached({"--sbom=true", "--provenance=true"}),
            (std::multiset<std::string>{kSlsa, kSpdx}));
  EXPECT_EQ(attached({"--attest", "type=sbom,generator=docker/buildkit-syft-scanner", "--attest",
                      "type=provenance,mode=max"}),
            (std::multiset<std::string>{kSlsa + std::string(" max"), kSpdx}));
  // buildah's presets choose the format.
  EXPECT_EQ(attached({"--sbom", "syft-cyclonedx"}), std::multiset<std::string>{kCdx});
  EXPECT_EQ(attached({"--attest", "type=sbom,disabled=true", "--provenance=mode=min"}),
            std::multiset<std::string>{kSlsa});
  EXPECT_TRUE(attached({"--sbom=false", "--provenance=false"}).empty());
  // buildah: an SBOM output file asks for the SBOM.
  fs::path out = store_.path() / "sbom.json";
  EXPECT_EQ(attached({"--sbom-output", out.string()}), std::multiset<std::string>{kSpdx});
  EXPECT_EQ(nlohmann::json::parse(std::ifstream(out))["spdxVersion"], "SPDX-2.3");
}

TEST_F(AttestFlags, BadValuesAndConflictsAreRefused) {
  ProcessResult bad = kiln({"build", "--attest", "type=vex", ctx_.path().string()});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("--attest type"));
  ProcessResult mode = kiln({"build", "--provenance=mode=everything", ctx_.path().string()});
  EXPECT_EQ(mode.exit_code, 2);
  EXPECT_THAT(mode.err, HasSubstr("--provenance mode"));
  ProcessResult docker =
      kiln({"build", "--sbom", "--format", "docker", "-t", "x:1", ctx_.path().string()});
  EXPECT_EQ(docker.exit_code, 1);
  EXPECT_THAT(docker.err, HasSubstr("drop --format docker"));
  ProcessResult untagged =
      kiln({"build", "--sbom", "--attest-format", "referrers", ctx_.path().string()});
  EXPECT_EQ(untagged.exit_code, 1);
  EXPECT_THAT(untagged.err, HasSubstr("give -t"));
}

}  // namespace
}  // namespace kiln::test
