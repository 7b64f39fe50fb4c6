// Build checks, --call outline and --call targets through the real binary: BuildKit's rule
// names, its JSON shapes, exit codes, the check= directive, and warnings in normal builds.
// tests/data/checks holds one Containerfile per rule that triggers exactly that rule (its file
// name), and clean.Containerfile, which triggers none.
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
using ::testing::Not;

const fs::path kChecks = fs::path(KILN_TEST_DATA_DIR) / "checks";

// BuildKit's rule names (frontend/dockerfile/linter/ruleset.go).
const std::set<std::string> kBuildKitRules = {"StageNameCasing",
                                              "FromAsCasing",
                                              "NoEmptyContinuation",
                                              "ConsistentInstructionCasing",
                                              "DuplicateStageName",
                                              "ReservedStageName",
                                              "JSONArgsRecommended",
                                              "MaintainerDeprecated",
                                              "UndefinedArgInFrom",
                                              "WorkdirRelativePath",
                                              "UndefinedVar",
                                              "MultipleInstructionsDisallowed",
                                              "LegacyKeyValueFormat",
                                              "InvalidBaseImagePlatform",
                                              "RedundantTargetPlatform",
                                              "SecretsUsedInArgOrEnv",
                                              "InvalidDefaultArgInFrom",
                                              "FromPlatformFlagConstDisallowed",
                                              "CopyIgnoredFile",
                                              "InvalidDefinitionDescription",
                                              "ExposeProtoCasing",
                                              "ExposeInvalidFormat"};

class Checks : public ::testing::Test {
 protected:
  ProcessResult kiln(const std::vector<std::string>& args) {
    return run_kiln(args, {}, {}, {"KILN_ROOT=" + (store_.path() / "store").string()});
  }
  void write(const std::string& name, const std::string& content) {
    std::ofstream(ctx_.path() / name, std::ios::binary | std::ios::trunc) << content;
  }
  // --call check,format=json over `file` in `dir`: the rule names found.
  std::multiset<std::string> rules(const fs::path& dir, const std::string& file,
                                   std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"build", "--call", "check,format=json", "-f",
                                     (dir / file).string()};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(dir.string());
    ProcessResult r = kiln(args);
    last_ = r;
    nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
    std::multiset<std::string> out;
    if (!j.is_object()) {
      ADD_FAILURE() << file << ": not JSON: " << r.out << r.err;
      return out;
    }
    if (j["warnings"].is_array()) {
      for (const auto& w : j["warnings"])
        out.insert(w["ruleName"].get<std::string>());
    }
    return out;
  }
  TempDir ctx_{{}, "kiln-checks-ctx-"};
  TempDir store_{{}, "kiln-checks-store-"};
  ProcessResult last_;
};

TEST_F(Checks, EachRuleFileTriggersExactlyItsRuleAndTheCleanFileNone) {
  std::set<std::string> covered;
  for (const auto& entry : fs::directory_iterator(kChecks)) {
    std::string name = entry.path().filename().string();
    if (!name.ends_with(".Containerfile"))
      continue;
    std::string rule = name.substr(0, name.size() - std::string(".Containerfile").size());
    std::multiset<std::string> found = rules(kChecks, name);
    if (rule == "clean") {
      EXPECT_TRUE(found.empty()) << name << ": " << last_.out;
      EXPECT_EQ(last_.exit_code, 0) << last_.out << last_.err;
      continue;
    }
    EXPECT_TRUE(kBuildKitRules.contains(rule)) << rule << " is not a BuildKit rule name";
    EXPECT_EQ(found, std::multiset<std::string>{rule}) << name << ": " << last_.out;
    EXPECT_EQ(last_.exit_code, 1) << name << ": findings make --call check exit 1";
    covered.insert(rule);
  }
  // Every rule but InvalidBaseImagePlatform (it needs a base image of another platform in the
  // store: the frontend tests cover it) has its file.
  std::set<std::string> expected = kBuildKitRules;
  expected.erase("InvalidBaseImagePlatform");
  EXPECT_EQ(covered, expected);
}

TEST_F(Checks, JsonHasBuildKitsFieldsAndTextNamesFileLineRuleAndFix) {
  ProcessResult json = kiln({"build", "--call", "check,format=json", "-f",
                             (kChecks / "UndefinedVar.Containerfile").string(), kChecks.string()});
  nlohmann::json j = nlohmann::json::parse(json.out);
  ASSERT_EQ(j["warnings"].size(), 1u);
  const nlohmann::json& w = j["warnings"][0];
  EXPECT_EQ(w["ruleName"], "UndefinedVar");
  EXPECT_EQ(w["description"], "Variables should be defined before their use");
  EXPECT_EQ(w["url"], "https://docs.docker.com/go/dockerfile/rule/undefined-var/");
  EXPECT_EQ(w["detail"], "Usage of undefined variable '$VERSOIN' (did you mean $VERSION?)");
  EXPECT_EQ(w["location"]["ranges"][0]["start"]["line"], 3);
  EXPECT_FALSE(w["fix"].get<std::string>().empty());

  ProcessResult text =
      kiln({"build", "--check", "-f", (kChecks / "StageNameCasing.Containerfile").string(),
            kChecks.string()});
  EXPECT_EQ(text.exit_code, 1);
  EXPECT_THAT(text.out, HasSubstr("Check complete, 1 warning has been found!"));
  EXPECT_THAT(text.out, HasSubstr("StageNameCasing.Containerfile:1:1: warning: StageNameCasing: "
                                  "Stage name 'Build' should be lowercase\n  fix: "));
  EXPECT_THAT(text.out, Not(HasSubstr("https://")));

  ProcessResult clean = kiln(
      {"build", "--check", "-f", (kChecks / "clean.Containerfile").string(), kChecks.string()});
  EXPECT_EQ(clean.exit_code, 0) << clean.out << clean.err;
  EXPECT_THAT(clean.out, HasSubstr("Check complete, no warnings found."));
  // ignorestatus: the findings are printed, the exit is 0.
  ProcessResult ignored =
      kiln({"build", "--call", "check,ignorestatus=true", "-f",
            (kChecks / "StageNameCasing.Containerfile").string(), kChecks.string()});
  EXPECT_EQ(ignored.exit_code, 0);
  EXPECT_THAT(ignored.out, HasSubstr("StageNameCasing"));
}

TEST_F(Checks, TheDirectiveTheBuildArgAndCommentsChooseRules) {
  write("Containerfile",
        "# check=skip=StageNameCasing\nFROM scratch AS Build\nMAINTAINER me\n"
        "# check=skip=JSONArgsRecommended\nCMD run\nENTRYPOINT run\n");
  // The directive skips StageNameCasing; the comment skips JSONArgsRecommended on CMD only.
  EXPECT_EQ(rules(ctx_.path(), "Containerfile"),
            (std::multiset<std::string>{"JSONArgsRecommended", "MaintainerDeprecated"}));
  // BUILDKIT_DOCKERFILE_CHECK replaces the directive as a whole.
  EXPECT_EQ(rules(ctx_.path(), "Containerfile",
                  {"--build-arg", "BUILDKIT_DOCKERFILE_CHECK=skip=MaintainerDeprecated"}),
            (std::multiset<std::string>{"JSONArgsRecommended", "StageNameCasing"}));
  EXPECT_TRUE(
      rules(ctx_.path(), "Containerfile", {"--build-arg", "BUILDKIT_DOCKERFILE_CHECK=skip=all"})
          .empty());
  // A malformed directive is an error naming its line.
  write("Containerfile", "# check=skip=A;bogus\nFROM scratch\n");
  ProcessResult bad = kiln({"build", "--check", ctx_.path().string()});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err, HasSubstr("Containerfile:1:1: failed to parse check options: invalid "
                                 "check option \"bogus\""));
}

TEST_F(Checks, BuildsWarnAndCheckErrorTrueFailsBeforeAnythingRuns) {
  write("a.txt", "a\n");
  write("Containerfile", "FROM scratch AS Final\nCOPY a.txt /a.txt\nCMD run\n");
  ProcessResult warned = kiln({"build", "--progress", "plain", ctx_.path().string()});
  ASSERT_EQ(warned.exit_code, 0) << warned.err;
  EXPECT_THAT(warned.err,
              HasSubstr("WARNING: " + (ctx_.path() / "Containerfile").string() +
                        ":1:1: StageNameCasing: Stage name 'Final' should be lowercase\n  fix: "));
  EXPECT_THAT(warned.err, HasSubstr("JSONArgsRecommended"));

  write("Containerfile", "# check=error=true\nFROM scratch AS Final\nCOPY a.txt /a.txt\n");
  ProcessResult failed = kiln({"build", "--progress", "plain", ctx_.path().string()});
  EXPECT_EQ(failed.exit_code, 1);
  EXPECT_THAT(failed.err, HasSubstr("lint violation found for rules: StageNameCasing"));
  EXPECT_THAT(failed.err, Not(HasSubstr("COPY a.txt")));  // no step started
  // Skipped rules do not fail it.
  ProcessResult skipped =
      kiln({"build", "--progress", "plain", "--build-arg",
            "BUILDKIT_DOCKERFILE_CHECK=skip=StageNameCasing;error=true", ctx_.path().string()});
  EXPECT_EQ(skipped.exit_code, 0) << skipped.err;
  EXPECT_THAT(skipped.err, Not(HasSubstr("was not consumed")));
}

constexpr const char* kOutlined = R"(ARG GO_VERSION=1.22
ARG UNUSED_GLOBAL=x

# base is the stage everything starts from
FROM busybox:${GO_VERSION} AS base
# TOOLS the tools to install
ARG TOOLS="git make"

FROM base AS build
# REGISTRY_TOKEN is read from a secret, not from here
ARG REGISTRY=example.com
ARG GO_VERSION
RUN --mount=type=secret,id=npmrc,required=true --mount=type=ssh,id=github true
RUN --mount=type=secret,target=/run/secrets/aws_credentials --mount=type=ssh true

# release is what gets shipped
FROM scratch AS release
ARG OTHER_STAGE_ARG=1
COPY --from=build /out /out
)";

TEST_F(Checks, OutlineListsTheTargetsArgsSecretsAndSshInBuildKitsShape) {
  write("Containerfile", kOutlined);
  ProcessResult r = kiln({"build", "--call", "outline,format=json", "--target", "build",
                          "--build-arg", "REGISTRY=mirror.local", ctx_.path().string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json o = nlohmann::json::parse(r.out);
  EXPECT_EQ(o["name"], "build");
  EXPECT_FALSE(o.contains("description"));  // no "# build ..." comment
  std::vector<std::string> names;
  for (const auto& a : o["args"])
    names.push_back(a["name"]);
  // The target's and its base stage's ARGs, and the global one FROM reads; not the unused
  // global nor the release stage's.
  EXPECT_EQ(names, (std::vector<std::string>{"GO_VERSION", "TOOLS", "REGISTRY"}));
  EXPECT_EQ(o["args"][0]["value"], "1.22");
  EXPECT_EQ(o["args"][0]["location"]["ranges"][0]["start"]["line"], 1);
  EXPECT_EQ(o["args"][1]["description"], "the tools to install");
  EXPECT_EQ(o["args"][1]["value"], "git make");
  EXPECT_EQ(o["args"][2]["value"], "mirror.local");  // after --build-arg
  EXPECT_FALSE(o["args"][2].contains("description"));
  ASSERT_EQ(o["secrets"].size(), 2u);
  EXPECT_EQ(o["secrets"][0]["name"], "npmrc");
  EXPECT_EQ(o["secrets"][0]["required"], true);
  EXPECT_EQ(o["secrets"][1]["name"], "aws_credentials");
  EXPECT_FALSE(o["secrets"][1].contains("required"));
  ASSERT_EQ(o["ssh"].size(), 2u);
  EXPECT_EQ(o["ssh"][0]["name"], "github");
  EXPECT_EQ(o["ssh"][1]["name"], "default");

  ProcessResult base =
      kiln({"build", "--call", "outline", "--target", "base", ctx_.path().string()});
  ASSERT_EQ(base.exit_code, 0) << base.err;
  EXPECT_THAT(base.out, HasSubstr("TARGET:      base\nDESCRIPTION: is the stage everything "
                                  "starts from\n"));
  EXPECT_THAT(base.out, HasSubstr("BUILD ARG    VALUE      DESCRIPTION\n"));
  EXPECT_THAT(base.out, HasSubstr("TOOLS        git make   the tools to install\n"));
}

TEST_F(Checks, TargetsListsStagesWithDescriptionsAndTheDefault) {
  write("Containerfile", kOutlined);
  ProcessResult r = kiln({"build", "--call", "targets,format=json", ctx_.path().string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json t = nlohmann::json::parse(r.out)["targets"];
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0]["name"], "base");
  EXPECT_EQ(t[0]["description"], "is the stage everything starts from");
  EXPECT_EQ(t[0]["base"], "busybox:${GO_VERSION}");
  EXPECT_FALSE(t[0].contains("default"));
  EXPECT_EQ(t[2]["name"], "release");
  EXPECT_EQ(t[2]["default"], true);
  EXPECT_EQ(t[2]["description"], "is what gets shipped");
  // --print is --call's older name.
  ProcessResult text = kiln({"build", "--print", "targets", ctx_.path().string()});
  EXPECT_EQ(text.out,
            "TARGET            DESCRIPTION\n"
            "base              is the stage everything starts from\n"
            "build\n"
            "release (default) is what gets shipped\n");
}

}  // namespace
}  // namespace kiln::test
