// Stages, ARG/ENV scoping, expansion and --target, from the Dockerfile reference and BuildKit.
#include "kiln/frontend/build_plan.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kiln/base/error.hpp"
#include "kiln/frontend/parser.hpp"

namespace kiln::frontend {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Keeps the parsed file alive for as long as the plan that points into it.
struct Planned {
  Containerfile file;
  BuildPlan plan;
};

Planned plan(std::string_view text, BuildOptions options = {}) {
  Planned p;
  p.file = parse_containerfile(text, "Containerfile");
  options.build_platform = {"linux", "amd64", ""};
  if (options.target_platform.architecture.empty() ||
      options.target_platform == oci::host_platform()) {
    options.target_platform = {"linux", "amd64", ""};
  }
  p.plan = plan_build(p.file, options);
  return p;
}

void expect_plan_error(std::string_view text, int line, const std::string& message,
                       BuildOptions options = {}) {
  try {
    plan(text, std::move(options));
    ADD_FAILURE() << "no error for:\n" << text;
  } catch (const InputError& e) {
    EXPECT_EQ(e.where().line, line) << e.what();
    EXPECT_THAT(e.detail(), HasSubstr(message)) << e.what();
  }
}

const StageOp& op(const Planned& p, size_t stage, size_t index) {
  return p.plan.stages.at(stage).ops.at(index);
}

std::string pair_value(const StageOp& o, size_t i) {
  return o.pairs.at(i).value.value_or("<unset>");
}

TEST(BuildPlan, GlobalArgsFeedFromButMustBeRedeclaredInStages) {
  Planned p = plan(
      "ARG BASE=alpine\nARG TAG=3.20\nFROM ${BASE}:${TAG}\n"
      "RUN echo\nWORKDIR /$TAG\nARG TAG\nWORKDIR /$TAG\n");
  EXPECT_EQ(p.plan.stages[0].base_image, "alpine:3.20");
  EXPECT_EQ(op(p, 0, 1).args[0], "/");  // not visible before it is redeclared
  EXPECT_EQ(op(p, 0, 3).args[0], "/3.20");
  EXPECT_THAT(p.plan.global_args, ElementsAre("BASE=alpine", "TAG=3.20"));
}

TEST(BuildPlan, BuildArgsOverrideDefaults) {
  BuildOptions options;
  options.build_args = {{"TAG", "edge"}, {"V", "2"}};
  Planned p = plan("ARG TAG=3.20\nFROM alpine:$TAG\nARG V=1\nARG TAG\nENV X=$V-$TAG\n", options);
  EXPECT_EQ(p.plan.stages[0].base_image, "alpine:edge");
  EXPECT_EQ(pair_value(op(p, 0, 2), 0), "2-edge");
  EXPECT_TRUE(p.plan.warnings.empty());
}

// As BuildKit's state environment (checked against docker build): ENV and ARGs with a value set
// a name in order, the later wins; an ARG without a value changes nothing. The Dockerfile
// reference says ENV always wins, but BuildKit does not do that.
TEST(BuildPlan, TheLaterOfEnvAndArgWins) {
  Planned p = plan(
      "FROM a\nARG V=from-arg\nENV V=from-env\nWORKDIR /$V\nARG V=again\nWORKDIR /$V\nARG V\n"
      "WORKDIR /$V\nENV V=last\nWORKDIR /$V\n");
  EXPECT_EQ(op(p, 0, 2).args[0], "/from-env");
  EXPECT_EQ(op(p, 0, 4).args[0], "/again");
  EXPECT_EQ(op(p, 0, 6).args[0], "/again");
  EXPECT_EQ(op(p, 0, 8).args[0], "/last");
}

TEST(BuildPlan, EnvPairsExpandWithTheEnvironmentBeforeTheInstruction) {
  Planned p = plan("FROM a\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n");
  EXPECT_EQ(pair_value(op(p, 0, 1), 1), "hello");
  EXPECT_EQ(pair_value(op(p, 0, 2), 0), "bye");
}

TEST(BuildPlan, QuotesAndEscapesAreRemovedAtExpansion) {
  Planned p =
      plan("FROM a\nENV A=\"two words\" B=x\\ y\nLABEL \"k k\"='$A'\nENV C two  \"words\"\n");
  EXPECT_EQ(pair_value(op(p, 0, 0), 0), "two words");
  EXPECT_EQ(pair_value(op(p, 0, 0), 1), "x y");
  EXPECT_EQ(op(p, 0, 1).pairs[0].key, "k k");
  EXPECT_EQ(pair_value(op(p, 0, 1), 0), "$A");
  EXPECT_EQ(pair_value(op(p, 0, 2), 0), "two  words");
}

TEST(BuildPlan, WhichInstructionsExpand) {
  Planned p = plan(
      "FROM a\nARG D=/data\nARG P=8080\nRUN echo $D\nCMD echo $D\nVOLUME $D ${D}2\nEXPOSE $P\n"
      "USER ${U:-app}\nSTOPSIGNAL ${S:-SIGTERM}\nCOPY --chown=${U:-1}:1 $D/a ${D}/b\n"
      "RUN --mount=type=cache,target=$D true\nHEALTHCHECK CMD echo $D\nSHELL [\"$D\"]\n");
  EXPECT_EQ(op(p, 0, 2).args[0], "echo $D");  // RUN is left to the shell
  EXPECT_EQ(op(p, 0, 3).args[0], "echo $D");
  EXPECT_THAT(op(p, 0, 4).args, ElementsAre("/data", "/data2"));
  EXPECT_THAT(op(p, 0, 5).args, ElementsAre("8080"));
  EXPECT_EQ(op(p, 0, 6).args[0], "app");
  EXPECT_EQ(op(p, 0, 7).args[0], "SIGTERM");
  EXPECT_THAT(op(p, 0, 8).args, ElementsAre("/data/a", "/data/b"));
  EXPECT_EQ(op(p, 0, 8).flags[0].value, "1:1");
  EXPECT_EQ(op(p, 0, 9).flags[0].value, "type=cache,target=/data");
  EXPECT_EQ(op(p, 0, 10).args[0], "echo $D");
  EXPECT_THAT(op(p, 0, 11).args, ElementsAre("$D"));
}

TEST(BuildPlan, ArgsVisibleToEachStep) {
  Planned p = plan("FROM a\nRUN one\nARG A=1\nRUN two\nARG B\nRUN three\n");
  EXPECT_TRUE(op(p, 0, 0).visible_args.empty());
  EXPECT_EQ(op(p, 0, 2).visible_args, (std::map<std::string, std::string>{{"A", "1"}}));
  // B is declared without a value: it is unset, not empty.
  EXPECT_EQ(op(p, 0, 4).visible_args.count("B"), 0u);
}

TEST(BuildPlan, PredefinedPlatformArgs) {
  BuildOptions options;
  options.target_platform = {"linux", "arm64", ""};
  Planned p = plan(
      "FROM --platform=$BUILDPLATFORM golang AS build\nARG TARGETARCH\nARG BUILDPLATFORM\n"
      "WORKDIR /out/$TARGETARCH/$BUILDPLATFORM/$TARGETOS\nFROM scratch\n",
      options);
  EXPECT_EQ(p.plan.stages[0].platform.to_string(), "linux/amd64");
  EXPECT_TRUE(p.plan.stages[0].platform_explicit);
  EXPECT_EQ(p.plan.stages[1].platform.to_string(), "linux/arm64");
  EXPECT_EQ(op(p, 0, 2).args[0], "/out/arm64/linux/amd64/");  // TARGETOS not declared
}

TEST(BuildPlan, ProxyArgsNeedNoDeclarationAndRaiseNoWarning) {
  BuildOptions options;
  options.build_args = {{"HTTP_PROXY", "http://proxy:3128"}, {"UNUSED", "x"}};
  Planned p = plan("FROM a\nRUN true\n", options);
  EXPECT_EQ(op(p, 0, 0).visible_args.at("HTTP_PROXY"), "http://proxy:3128");
  ASSERT_EQ(p.plan.warnings.size(), 1u);
  EXPECT_THAT(p.plan.warnings[0].message, HasSubstr("build argument UNUSED was not consumed"));
}

TEST(BuildPlan, BuildArgUsedOnlyInAnUnbuiltStageIsUnused) {
  BuildOptions options;
  options.build_args = {{"V", "1"}};
  options.target = "b";
  Planned p = plan("FROM x AS a\nARG V\nFROM y AS b\n", options);
  ASSERT_EQ(p.plan.warnings.size(), 1u);
  EXPECT_THAT(p.plan.warnings[0].message, HasSubstr("V"));
}

TEST(BuildPlan, ScratchGetsTheDefaultPath) {
  Planned p = plan("FROM scratch\nENV PATH=/app:$PATH\n");
  EXPECT_EQ(pair_value(op(p, 0, 0), 0),
            "/app:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  EXPECT_EQ(p.plan.stages[0].base_kind, BaseKind::kScratch);
}

TEST(BuildPlan, BaseImageEnvironmentIsUsedForExpansion) {
  BuildOptions options;
  options.base_image = [](const std::string& ref, const oci::Platform&) {
    return ref == "golang:1.22" ? BaseImage{{"GOPATH=/go", "PATH=/go/bin"}, {}} : BaseImage{};
  };
  Planned p = plan("FROM golang:1.22 AS b\nWORKDIR $GOPATH/src\nFROM b\nENV P=$PATH\n", options);
  EXPECT_EQ(op(p, 0, 0).args[0], "/go/src");
  EXPECT_EQ(pair_value(op(p, 1, 0), 0), "/go/bin");  // inherited from stage b
}

TEST(BuildPlan, OnbuildTriggersOfTheBaseRunFirst) {
  BuildOptions options;
  options.base_image = [](const std::string& ref, const oci::Platform&) {
    if (ref != "builder:1")
      return BaseImage{};
    return BaseImage{{"SRC=/src"}, {"COPY . $SRC", "RUN make"}};
  };
  Planned p = plan("FROM builder:1\nCMD x\n", options);
  const Stage& s = p.plan.stages[0];
  ASSERT_EQ(s.ops.size(), 3u);
  EXPECT_EQ(s.ops[0].kind, InstructionKind::kCopy);
  EXPECT_TRUE(s.ops[0].from_onbuild);
  EXPECT_THAT(s.ops[0].args, ElementsAre(".", "/src"));
  EXPECT_EQ(s.ops[0].where.line, 1);
  EXPECT_EQ(s.ops[2].kind, InstructionKind::kCmd);

  options.base_image = [](const std::string&, const oci::Platform&) {
    return BaseImage{{}, {"FROM x"}};
  };
  expect_plan_error("FROM y\n", 1, "FROM isn't allowed as an ONBUILD trigger", options);
  options.base_image = [](const std::string&, const oci::Platform&) -> BaseImage {
    throw Error("image \"y\" is not in the local store");
  };
  expect_plan_error("FROM scratch\nFROM y\n", 2, "is not in the local store", options);
}

TEST(BuildPlan, StageReferences) {
  Planned p = plan(
      "FROM golang AS Build\nRUN make\n"
      "FROM alpine AS assets\nRUN fetch\n"
      "FROM build AS test\nRUN test\n"
      "FROM scratch\nCOPY --from=BUILD /a /a\nCOPY --from=1 /b /b\nCOPY --from=nginx:alpine /c /c\n"
      "RUN --mount=type=bind,from=assets,target=/x true\n");
  const Stage& final_stage = p.plan.stages[3];
  EXPECT_EQ(p.plan.stages[2].base_kind, BaseKind::kStage);
  EXPECT_EQ(p.plan.stages[2].base_stage, 0u);
  EXPECT_EQ(final_stage.ops[0].from_stage, 0u);
  EXPECT_EQ(final_stage.ops[1].from_stage, 1u);
  EXPECT_EQ(final_stage.ops[2].from_image, "nginx:alpine");
  EXPECT_THAT(final_stage.ops[3].mount_stages, ElementsAre(1u));
  EXPECT_THAT(final_stage.dependencies, ElementsAre(0u, 1u));
  EXPECT_EQ(p.plan.target, 3u);
  EXPECT_THAT(p.plan.order, ElementsAre(0u, 1u, 3u));  // "test" is not needed
}

TEST(BuildPlan, TargetPrunesTheGraph) {
  BuildOptions options;
  options.target = "Test";
  Planned p = plan(
      "FROM a AS base\nFROM base AS build\nFROM base AS test\nCOPY --from=build /x /x\n"
      "FROM scratch AS final\nCOPY --from=build /x /x\n",
      options);
  EXPECT_EQ(p.plan.target, 2u);
  EXPECT_THAT(p.plan.order, ElementsAre(0u, 1u, 2u));
  options.target = "nope";
  EXPECT_THROW(
      {
        try {
          plan("FROM a AS x\nFROM b AS y\n", options);
        } catch (const Error& e) {
          EXPECT_THAT(e.what(), HasSubstr("target stage \"nope\" could not be found"));
          EXPECT_THAT(e.what(), HasSubstr("stages: x, y"));
          throw;
        }
      },
      Error);
}

TEST(BuildPlan, ForwardReferencesWorkAndCyclesAreErrors) {
  Planned p = plan(
      "FROM a AS one\nCOPY --from=two /x /x\nFROM b AS two\nFROM scratch\n"
      "COPY --from=one /x /x\n");
  EXPECT_THAT(p.plan.order, ElementsAre(1u, 0u, 2u));
  BuildOptions options;
  options.target = "one";
  expect_plan_error("FROM a AS one\nCOPY --from=two /x /x\nFROM b AS two\nCOPY --from=one /y /y\n",
                    4, "circular dependency between stages: one -> two -> one", options);
}

TEST(BuildPlan, StageErrors) {
  expect_plan_error("FROM a\nARG S=x\nCOPY --from=$S /a /b\n", 3,
                    "variable expansion is not supported for --from");
  expect_plan_error("FROM a\nCOPY --from=5 /a /b\n", 2, "invalid stage index 5");
  expect_plan_error("FROM a AS s\nCOPY --from=s /a /b\n", 2, "cannot copy from itself");
  expect_plan_error("RUN x\nFROM a\n", 1, "no build stage in current context");
  expect_plan_error("ARG BASE\nFROM $BASE\n", 2, "should not be blank");
  expect_plan_error("FROM --platform=linux/ a\n", 1, "invalid platform");
  expect_plan_error("FROM a\nWORKDIR ${X\n", 2, "missing '}'");
  expect_plan_error("FROM a\nARG X\nUSER ${X:?must be set}\n", 3, "X: must be set");
  expect_plan_error("ARG A\n", 0, "no FROM instruction");
}

TEST(BuildPlan, DuplicateStageNamesWarnAndTheLaterOneWins) {
  Planned p = plan("FROM a AS x\nFROM b AS X\nFROM x\nFROM c\nCOPY --from=x /a /a\n");
  ASSERT_EQ(p.plan.warnings.size(), 1u);
  EXPECT_THAT(p.plan.warnings[0].message, HasSubstr("Duplicate stage name \"x\""));
  EXPECT_EQ(p.plan.stages[2].base_stage, 1u);
  EXPECT_EQ(p.plan.stages[3].ops[0].from_stage, 1u);
}

TEST(BuildPlan, EmptyFromMeansTheContext) {
  Planned p = plan("FROM alpine\nCOPY --from= a b\nRUN --mount=from=,target=/x true\n");
  EXPECT_FALSE(p.plan.stages[0].ops[0].from_stage.has_value());
  EXPECT_TRUE(p.plan.stages[0].ops[0].from_image.empty());
  EXPECT_TRUE(p.plan.stages[0].ops[1].mount_stages.empty());
  EXPECT_TRUE(p.plan.warnings.empty());
}

TEST(BuildPlan, BareImageNamesInFromFlagsWarn) {
  Planned p = plan("FROM a\nCOPY --from=composer /usr/bin/composer /c\n");
  ASSERT_EQ(p.plan.warnings.size(), 1u);
  EXPECT_THAT(p.plan.warnings[0].message, HasSubstr("read as the image composer:latest"));
  EXPECT_EQ(p.plan.stages[0].ops[0].from_image, "composer");
}

TEST(BuildPlan, HeredocBodiesOfCopyExpandUnlessQuoted) {
  Planned p = plan("FROM a\nARG N=kiln\nCOPY <<EOF <<'RAW' /\nhello \"$N\"\nEOF\n$N\nRAW\n");
  const StageOp& copy = op(p, 0, 1);
  EXPECT_EQ(copy.heredocs[0].content, "hello \"kiln\"\n");
  EXPECT_EQ(copy.heredocs[1].content, "$N\n");
}

TEST(BuildPlan, DescribeAndJson) {
  Planned p = plan("FROM golang AS build\nRUN go build\nFROM scratch\nCOPY --from=build /a /a\n");
  std::string text = describe_plan(p.plan);
  EXPECT_THAT(text, HasSubstr("2 of 2 stages needed"));
  EXPECT_THAT(text, HasSubstr("stage 0 (build) from image golang"));
  EXPECT_THAT(text, HasSubstr("COPY --from=build /a /a"));
  nlohmann::ordered_json json = plan_to_json(p.plan);
  EXPECT_EQ(json["stages"][1]["ops"][0]["from_stage"], 0);
  EXPECT_EQ(json["order"], nlohmann::ordered_json({0, 1}));
}

TEST(BuildPlan, StageCountIsBounded) {
  std::string text = "FROM scratch AS s0\n";
  for (int i = 1; i < 1000; ++i)
    text += "FROM s" + std::to_string(i - 1) + " AS s" + std::to_string(i) + "\n";
  EXPECT_EQ(plan(text).plan.order.size(), 1000u);
  text += "FROM s999\n";
  Containerfile file = parse_containerfile(text, "Containerfile");
  try {
    plan_build(file, {});
    ADD_FAILURE() << "1001 stages planned";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("Containerfile:1001:1: more than 1000 stages"));
  }
}

TEST(BuildPlan, DoublingArgsFailAtTheirLine) {
  std::string text = "FROM scratch\nARG A0=xxxxxxxxxxxxxxxx\n";
  for (int i = 1; i < 40; ++i) {
    text += "ARG A" + std::to_string(i) + "=${A" + std::to_string(i - 1) + "}${A" +
            std::to_string(i - 1) + "}\n";
  }
  Containerfile file = parse_containerfile(text, "Containerfile");
  try {
    plan_build(file, {});
    ADD_FAILURE() << "planned";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("Containerfile:19:5: cannot expand"));
    EXPECT_THAT(e.what(), HasSubstr("expands to more than 1 MiB"));
  }
}

// ENV lines are looked up by hash and the stage environment is kept once per stage.
TEST(BuildPlan, ManyEnvLinesKeepTheirValues) {
  std::string text = "FROM scratch AS a\n";
  for (int i = 0; i < 20000; ++i)
    text += "ENV V" + std::to_string(i % 5000) + "=" + std::to_string(i) + "\n";
  text += "FROM a\nRUN echo $V4999 $V0\n";
  Planned p = plan(text);
  const std::vector<std::string>& env = p.plan.stages[0].env;
  EXPECT_EQ(env.size(), 5001u);  // PATH and V0..V4999
  EXPECT_NE(std::find(env.begin(), env.end(), "V4999=19999"), env.end());
  EXPECT_NE(std::find(env.begin(), env.end(), "V0=15000"), env.end());
}

}  // namespace
}  // namespace kiln::frontend
