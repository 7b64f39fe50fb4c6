// Build-check rules' conditions (BuildKit's, read from its linter and dispatcher), the check
// settings, and description comments.
#include "kiln/frontend/checks.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kiln/base/error.hpp"
#include "kiln/frontend/outline.hpp"
#include "kiln/frontend/parser.hpp"

namespace kiln::frontend {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

struct Checked {
  Containerfile file;
  BuildPlan plan;
  CheckReport report;
  // "Rule@line" for each finding.
  std::vector<std::string> found() const {
    std::vector<std::string> out;
    for (const CheckFinding& f : report.findings)
      out.push_back(std::string(f.rule->name) + "@" + std::to_string(f.where.line));
    return out;
  }
};

Checked check(std::string_view text, BuildOptions options = {}, CheckOptions checks = {}) {
  Checked c;
  c.file = parse_containerfile(text, "Containerfile");
  options.build_platform = options.target_platform = {"linux", "amd64", ""};
  c.plan = plan_build(c.file, options);
  c.report = run_checks(c.file, c.plan, checks);
  return c;
}

BuildOptions with_base(BaseImage image) {
  BuildOptions options;
  options.base_image = [image](const std::string&, const oci::Platform&) { return image; };
  return options;
}

TEST(CheckConfig, ParsesBuildKitsSyntax) {
  CheckConfig c = parse_check_config("skip=A,B;error=true;experimental=all");
  EXPECT_EQ(c.skip, (std::set<std::string>{"A", "B"}));
  EXPECT_TRUE(c.error);
  EXPECT_TRUE(c.experimental_all);
  EXPECT_TRUE(parse_check_config("skip=all").skip_all);
  EXPECT_FALSE(parse_check_config("error=False").error);
  // Text after a space is a comment.
  EXPECT_EQ(parse_check_config("skip=A // because").skip, (std::set<std::string>{"A"}));
  EXPECT_THROW(parse_check_config("skip=A;nonsense"), Error);
  EXPECT_THROW(parse_check_config("error=maybe"), Error);
  EXPECT_THROW(parse_check_config("level=high"), Error);
}

TEST(Checks, CommentsBeforeAnInstructionAreKeptUntilABareHash) {
  Containerfile f = parse_containerfile(
      "# check=skip=all\n# first\n\n# second\nFROM scratch\n# dropped\n#\n# kept\n\nARG A\n",
      "Containerfile");
  ASSERT_EQ(f.instructions.size(), 2u);
  // The directive is not a comment; a blank line does not separate; a bare # does.
  EXPECT_THAT(f.instructions[0].comments, ElementsAre("first", "second"));
  EXPECT_THAT(f.instructions[1].comments, ElementsAre("kept"));
  EXPECT_EQ(doc_comment({"other", "name the description", "name again"}, "name"),
            "the description");
  EXPECT_EQ(doc_comment({"name"}, "name"), "");
}

TEST(Checks, CasingMajorityTiesGoToUppercaseAndMixedCaseAlwaysWarns) {
  EXPECT_THAT(check("from scratch\nLABEL a=1\n").found(),
              ElementsAre("ConsistentInstructionCasing@1"));
  EXPECT_THAT(check("from scratch\nlabel a=1\nLABEL b=2\nLabel c=3\n").found(),
              ElementsAre("ConsistentInstructionCasing@3", "ConsistentInstructionCasing@4"));
  // ARGs before the first FROM are not counted.
  EXPECT_THAT(check("arg A=1\narg B=2\nFROM scratch\n").found(), IsEmpty());
}

TEST(Checks, JsonArgsRecommendedUnlessAShellIsSet) {
  EXPECT_THAT(check("FROM scratch\nENTRYPOINT run\n").found(),
              ElementsAre("JSONArgsRecommended@2"));
  EXPECT_THAT(check("FROM scratch\nSHELL [\"/bin/sh\", \"-c\"]\nCMD run\n").found(), IsEmpty());
  // Inherited from a parent stage, or set by the base image's config.
  EXPECT_THAT(check("FROM scratch AS a\nSHELL [\"sh\", \"-c\"]\nFROM a\nCMD run\n").found(),
              IsEmpty());
  BaseImage shelled;
  shelled.sets_shell = true;
  EXPECT_THAT(check("FROM img\nCMD run\n", with_base(shelled)).found(), IsEmpty());
}

TEST(Checks, WorkdirRelativePathOnlyForTheFirstWorkdirOfAStageChain) {
  EXPECT_THAT(check("FROM scratch\nWORKDIR /app\nWORKDIR sub\n").found(), IsEmpty());
  EXPECT_THAT(check("FROM scratch\nWORKDIR sub\nWORKDIR more\n").found(),
              ElementsAre("WorkdirRelativePath@2"));
  EXPECT_THAT(check("FROM scratch AS a\nWORKDIR /app\nFROM a\nWORKDIR sub\n").found(), IsEmpty());
}

TEST(Checks, UndefinedVarKnowsBaseEnvStageArgsAndNotUnredeclaredGlobals) {
  BaseImage golang;
  golang.env = {"GOPATH=/go"};
  EXPECT_THAT(check("FROM golang\nWORKDIR $GOPATH/src\n", with_base(golang)).found(), IsEmpty());
  // A global ARG must be declared again inside the stage.
  EXPECT_THAT(check("ARG V=1\nFROM scratch\nLABEL v=$V\n").found(), ElementsAre("UndefinedVar@3"));
  EXPECT_THAT(check("ARG V=1\nFROM scratch\nARG V\nLABEL v=$V\n").found(), IsEmpty());
  // RUN's command is the shell's business; its --mount values are checked.
  EXPECT_THAT(check("FROM scratch\nRUN echo $NOPE\n").found(), IsEmpty());
  EXPECT_THAT(check("FROM scratch\nRUN --mount=type=cache,target=$CACHE_DIR true\n").found(),
              ElementsAre("UndefinedVar@2"));
  // A base that could not be looked at: not checked, and the report says so.
  BaseImage unknown;
  unknown.known = false;
  Checked c = check("FROM img\nLABEL v=$FROM_IMAGE\n", with_base(unknown));
  EXPECT_THAT(c.found(), IsEmpty());
  ASSERT_EQ(c.report.notes.size(), 1u);
  EXPECT_THAT(c.report.notes[0], HasSubstr("UndefinedVar not checked in stage 0"));
}

TEST(Checks, MultipleInstructionsPointAtTheOverriddenOnes) {
  EXPECT_THAT(
      check("FROM scratch\nCMD [\"a\"]\nCMD [\"b\"]\nHEALTHCHECK NONE\nCMD [\"c\"]\n").found(),
      ElementsAre("MultipleInstructionsDisallowed@2", "MultipleInstructionsDisallowed@3"));
  // A child stage may set its own.
  EXPECT_THAT(check("FROM scratch AS a\nCMD [\"a\"]\nFROM a\nCMD [\"b\"]\n").found(), IsEmpty());
}

TEST(Checks, SecretLookingNamesAreWholeUnderscoreWords) {
  Checked c = check(
      "FROM scratch\nARG SECRET_PASSPHRASE super_duper_secret_token apikey git_key AUTH\n"
      "ARG sunflower PUBLIC_KEY public_token SECRET_PASSPHRASE_FILE AUTH_MODULE_VERSION keyboard\n"
      "ENV password=x\n");
  std::vector<std::string> messages;
  for (const CheckFinding& f : c.report.findings)
    messages.push_back(f.message);
  EXPECT_EQ(messages.size(), 6u);
  EXPECT_THAT(messages, ::testing::Contains(HasSubstr("(ENV \"password\")")));
  EXPECT_THAT(messages, ::testing::Not(::testing::Contains(HasSubstr("keyboard"))));
}

TEST(Checks, FromRules) {
  EXPECT_THAT(check("FROM --platform=linux/amd64 scratch AS build-amd64\n").found(), IsEmpty());
  EXPECT_THAT(check("FROM --platform=${TARGETPLATFORM} scratch\n").found(),
              ElementsAre("RedundantTargetPlatform@1"));
  EXPECT_THAT(check("FROM --platform=$BUILDPLATFORM scratch\n").found(), IsEmpty());
  // Declared without a value is declared; a --build-arg does not declare.
  EXPECT_THAT(check("ARG TAG=1\nFROM busybox:$TAG\n").found(), IsEmpty());
  BuildOptions args;
  args.build_args = {{"TAG", "1"}};
  // Undeclared, TAG is empty by default too: "busybox:" is no image name (BuildKit says both).
  EXPECT_THAT(check("FROM busybox:$TAG\n", args).found(),
              ElementsAre("InvalidDefaultArgInFrom@1", "UndefinedArgInFrom@1"));
  EXPECT_THAT(check("ARG TAG\nFROM busybox:${TAG:-latest}\n").found(), IsEmpty());
  EXPECT_THAT(check("FROM scratch AS Scratch\n").found(),
              ElementsAre("StageNameCasing@1", "ReservedStageName@1"));
}

TEST(Checks, InvalidBaseImagePlatformComparesOsAndArchitecture) {
  BaseImage arm;
  arm.platform = oci::Platform{"linux", "arm64", "v8"};
  Checked c = check("FROM busybox\n", with_base(arm));
  EXPECT_THAT(c.found(), ElementsAre("InvalidBaseImagePlatform@1"));
  EXPECT_EQ(c.report.findings[0].message,
            "Base image busybox was pulled with platform \"linux/arm64/v8\", expected "
            "\"linux/amd64\" for current build");
  BaseImage amd;
  amd.platform = oci::Platform{"linux", "amd64", "v3"};  // the variant does not count
  EXPECT_THAT(check("FROM busybox\n", with_base(amd)).found(), IsEmpty());
}

TEST(Checks, ExperimentalRulesRunOnlyWhenNamedAndSkipDoesNotTouchThem) {
  const char* text = "FROM scratch\n# not a description\nARG version=1\n";
  EXPECT_THAT(check(text).found(), IsEmpty());
  CheckOptions named;
  named.config_override = "skip=all;experimental=InvalidDefinitionDescription";
  EXPECT_THAT(check(text, {}, named).found(), ElementsAre("InvalidDefinitionDescription@3"));
  EXPECT_THAT(check("FROM scratch\n# version is the release\nARG version=1\n", {}, named).found(),
              IsEmpty());
}

TEST(Checks, CopyIgnoredFileIsOffWhenTheIgnoreFileReincludes) {
  IgnoreMatcher ignore = IgnoreMatcher::parse("*.log\n", ".dockerignore");
  CheckOptions options;
  options.ignore = &ignore;
  EXPECT_THAT(check("FROM scratch\nCOPY app.log ./x/../debug.log /\n", {}, options).found(),
              ElementsAre("CopyIgnoredFile@2", "CopyIgnoredFile@2"));
  EXPECT_THAT(
      check("FROM scratch AS a\nFROM scratch\nCOPY --from=a app.log /\n", {}, options).found(),
      IsEmpty());
  IgnoreMatcher reinclude = IgnoreMatcher::parse("*.log\n!keep.log\n", ".dockerignore");
  options.ignore = &reinclude;
  EXPECT_THAT(check("FROM scratch\nCOPY app.log /\n", {}, options).found(), IsEmpty());
}

TEST(Checks, TheCheckedStagesLimitTheStageRules) {
  CheckOptions only_last;
  only_last.stages = std::set<size_t>{1};
  EXPECT_THAT(
      check("FROM scratch AS a\nWORKDIR rel\nFROM scratch\nCMD run\n", {}, only_last).found(),
      ElementsAre("JSONArgsRecommended@4"));
}

}  // namespace
}  // namespace kiln::frontend
