// `kiln build --dry-run --plan-format json` (docs/PLAN-FORMAT.md) through the real binary: each
// op kind with its inputs and key data, and flag values that fail at planning with their
// FILE:LINE:COL.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kiln/base/fd.hpp"
#include "process.hpp"

namespace kiln::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using Json = nlohmann::json;

class PlanGraph : public ::testing::Test {
 protected:
  // Plans `containerfile` and returns the graph; fails the test when planning fails.
  Json plan(const std::string& containerfile, std::vector<std::string> extra = {}) {
    ProcessResult r = dry_run(containerfile, std::move(extra));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return Json::parse(r.out, nullptr, false);
  }
  ProcessResult dry_run(const std::string& containerfile, std::vector<std::string> extra = {}) {
    std::ofstream(dir_.path() / "Containerfile") << containerfile;
    std::vector<std::string> args = {"build", "--dry-run",  "--plan-format",
                                     "json",  "--platform", "linux/amd64"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(dir_.path().string());
    return run_kiln(args);
  }
  // The definition of the stage's n-th op.
  static const Json& op(const Json& graph, size_t stage, size_t n) {
    size_t id = graph["stages"][stage]["ops"][n];
    return graph["ops"][id];
  }

  TempDir dir_{{}, "kiln-plan-graph-"};
};

TEST_F(PlanGraph, SourcesAreSharedLeaves) {
  Json g = plan(
      "FROM alpine:3.19 AS a\nFROM scratch AS b\nCOPY --from=alpine:3.19 /x /x\n"
      "COPY y /y\nCOPY --from=a /z /z\n");
  ASSERT_TRUE(g.is_object());
  EXPECT_EQ(g["format"], "kiln.plan.v1");
  const Json& image = g["ops"][g["stages"][0]["base"].get<size_t>()];
  EXPECT_EQ(image["kind"], "source");
  EXPECT_EQ(image["definition"]["source"], "image");
  EXPECT_EQ(image["definition"]["image"], "alpine:3.19");
  EXPECT_EQ(image["definition"]["platform"], "linux/amd64");
  EXPECT_TRUE(image["definition"]["manifest"].is_null());  // no store in a dry run
  EXPECT_TRUE(image["inputs"].empty());
  const Json& scratch = g["ops"][g["stages"][1]["base"].get<size_t>()];
  EXPECT_EQ(scratch["definition"]["source"], "scratch");
  // COPY --from the same image is the same source op; COPY y reads the context; --from=a the
  // stage's result.
  EXPECT_EQ(op(g, 1, 0)["inputs"][1], g["stages"][0]["base"]);
  size_t context = op(g, 1, 1)["inputs"][1];
  EXPECT_EQ(g["ops"][context]["definition"]["source"], "context");
  EXPECT_EQ(op(g, 1, 2)["inputs"][1], g["stages"][0]["result"]);
  EXPECT_EQ(g["stages"][1]["needs"], Json::array({0}));
}

TEST_F(PlanGraph, ExecOpsCarryParsedMountsAndResolvedSettings) {
  Json g = plan(
      "FROM scratch AS tools\nFROM scratch\nARG V=1\n"
      "RUN --network=none --mount=type=cache,target=/c,sharing=locked,mode=0700 "
      "--mount=type=bind,from=tools,source=/bin,target=b make $V\n"
      "RUN [\"/bin/true\"]\n",
      {"--add-host", "db:10.0.0.2"});
  const Json& run = op(g, 1, 0);
  EXPECT_EQ(run["kind"], "exec");
  const Json& d = run["definition"];
  EXPECT_EQ(d["command"], Json::array({"make $V"}));
  EXPECT_EQ(d["shell_form"], true);
  EXPECT_EQ(d["build_args"]["V"], "1");
  EXPECT_EQ(d["network"], "none");
  EXPECT_EQ(d["security"], "sandbox");
  EXPECT_EQ(d["extra_hosts"], Json::array({Json::array({"db", "10.0.0.2"})}));
  ASSERT_EQ(d["mounts"].size(), 2u);
  EXPECT_EQ(d["mounts"][0]["type"], "cache");
  EXPECT_EQ(d["mounts"][0]["sharing"], "locked");
  EXPECT_EQ(d["mounts"][0]["mode"], 0700);
  EXPECT_EQ(d["mounts"][1]["type"], "bind");
  EXPECT_EQ(d["mounts"][1]["target"], "b");
  size_t input = d["mounts"][1]["input"];
  EXPECT_EQ(run["inputs"][input], g["stages"][0]["result"]);
  EXPECT_EQ(op(g, 1, 1)["definition"]["shell_form"], false);
  EXPECT_EQ(op(g, 1, 1)["definition"]["network"], "sandbox");
}

// An image a mount or COPY --from names is for the stage's platform, not the build's.
TEST_F(PlanGraph, ImagesReadByAStageAreForItsPlatform) {
  Json g = plan(
      "FROM --platform=linux/arm64 scratch\n"
      "RUN --mount=type=bind,from=alpine:3.19,target=/a true\n"
      "COPY --from=busybox:1 /bin/busybox /bb\n");
  const Json& run = op(g, 0, 0);
  size_t mount = run["inputs"][run["definition"]["mounts"][0]["input"].get<size_t>()];
  EXPECT_EQ(g["ops"][mount]["definition"]["image"], "alpine:3.19");
  EXPECT_EQ(g["ops"][mount]["definition"]["platform"], "linux/arm64");
  size_t copy = op(g, 0, 1)["inputs"][1];
  EXPECT_EQ(g["ops"][copy]["definition"]["platform"], "linux/arm64");
}

TEST_F(PlanGraph, FileOpsCarryParsedFlags) {
  Json g = plan(
      "FROM scratch\nWORKDIR app\n"
      "COPY --chown=1:2 --chmod=u+x --link --exclude=*.md src/ dst/\n"
      "ADD --checksum=sha256:" +
      std::string(64, 'a') + " https://example.com/f.tgz /f\n");
  const Json& workdir = op(g, 0, 0)["definition"];
  EXPECT_EQ(workdir["action"], "workdir");
  EXPECT_EQ(workdir["path"], "app");
  const Json& copy = op(g, 0, 1)["definition"];
  EXPECT_EQ(copy["action"], "copy");
  EXPECT_EQ(copy["sources"], Json::array({"src/"}));
  EXPECT_EQ(copy["dest"], "dst/");
  EXPECT_EQ(copy["chown"], "1:2");
  EXPECT_EQ(copy["chmod"], "u+x");
  EXPECT_EQ(copy["link"], true);
  EXPECT_EQ(copy["exclude"], Json::array({"*.md"}));
  const Json& add = op(g, 0, 2)["definition"];
  EXPECT_EQ(add["action"], "add");
  EXPECT_EQ(add["checksum"], "sha256:" + std::string(64, 'a'));
}

TEST_F(PlanGraph, ConfigOpsCarryValidatedValues) {
  Json g = plan(
      "FROM scratch\nENV A=1 B=2\nEXPOSE 80 8000-8001/udp\nCMD run it\n"
      "HEALTHCHECK --interval=5s --retries=3 CMD [\"check\"]\nSTOPSIGNAL SIGTERM\n"
      "ONBUILD RUN echo hi\n");
  EXPECT_EQ(op(g, 0, 0)["definition"]["field"], "env");
  EXPECT_EQ(op(g, 0, 0)["definition"]["pairs"],
            Json::array({Json::array({"A", "1"}), Json::array({"B", "2"})}));
  EXPECT_EQ(op(g, 0, 1)["definition"]["values"], Json::array({"80/tcp", "8000/udp", "8001/udp"}));
  EXPECT_EQ(op(g, 0, 2)["definition"]["shell_form"], true);
  const Json& health = op(g, 0, 3)["definition"];
  EXPECT_EQ(health["test"], Json::array({"CMD", "check"}));
  EXPECT_EQ(health["interval"], 5000000000LL);
  EXPECT_EQ(health["retries"], 3);
  EXPECT_EQ(op(g, 0, 4)["definition"]["values"], Json::array({"SIGTERM"}));
  EXPECT_EQ(op(g, 0, 5)["definition"]["values"], Json::array({"RUN echo hi"}));
  EXPECT_EQ(op(g, 0, 5)["definition"]["text"], "ONBUILD RUN echo hi");
}

TEST_F(PlanGraph, BadFlagValuesFailAtPlanningWithTheirPosition) {
  struct Case {
    std::string line;
    std::string where;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {"RUN --mount=type=nope,target=/x true", ":2:5:", "unknown mount type"},
           {"RUN --mount=type=cache true", ":2:5:", "target=PATH is required"},
           {"RUN --network=bridge true", ":2:5:", "expected default, none or host"},
           {"RUN --security=insecure true", ":2:5:", "--allow security.insecure"},
           {"COPY --chmod=0x755 a /a", ":2:6:", "invalid --chmod"},
           {"ADD --checksum=md5:00 https://example.com/x /x", ":2:1:", "expected sha256:"},
           {"EXPOSE 80/icmp", ":2:1:", "invalid EXPOSE protocol"},
           {"STOPSIGNAL SIGNOPE", ":2:1:", "invalid STOPSIGNAL"},
       }) {
    ProcessResult r = dry_run("FROM scratch\n" + c.line + "\n");
    EXPECT_EQ(r.exit_code, 1) << c.line;
    EXPECT_THAT(r.err, HasSubstr("Containerfile" + c.where)) << c.line;
    EXPECT_THAT(r.err, HasSubstr(c.message)) << c.line;
  }
  // A bad value in a stage the target does not need does not fail the build's plan.
  ProcessResult pruned = dry_run("FROM scratch AS unused\nEXPOSE 80/icmp\nFROM scratch\n");
  EXPECT_EQ(pruned.exit_code, 0) << pruned.err;
}

TEST_F(PlanGraph, AnUnknownNoCacheFilterStageIsAnError) {
  ProcessResult r = dry_run("FROM scratch AS build\nFROM build\n", {"--no-cache-filter", "buidl"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("--no-cache-filter \"buidl\": no such stage"));
  EXPECT_THAT(r.err, HasSubstr("build"));
  EXPECT_EQ(
      dry_run("FROM scratch AS build\nFROM build\n", {"--no-cache-filter", "build"}).exit_code, 0);
  EXPECT_EQ(dry_run("FROM scratch AS build\nFROM build\n", {"--no-cache-filter", "1"}).exit_code,
            0);
}

}  // namespace
}  // namespace kiln::test
