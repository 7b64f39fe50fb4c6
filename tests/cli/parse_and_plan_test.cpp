// `kiln parse` and `kiln build --dry-run` through the real binary: JSON shape, positions in
// errors, exit codes, --target, ignore files.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "process.hpp"

namespace kiln::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// A scratch build context removed when the test ends.
class Context {
 public:
  Context() {
    path_ = fs::temp_directory_path() /
            ("kiln-cli-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~Context() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  void write(const std::string& name, const std::string& content) const {
    fs::create_directories((path_ / name).parent_path());
    std::ofstream(path_ / name, std::ios::binary) << content;
  }
  std::string path() const { return path_.string(); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

TEST(ParseCommand, PrintsStableJson) {
  Context ctx;
  ctx.write(
      "Containerfile",
      "# syntax=docker/dockerfile:1\nFROM alpine AS base\nCOPY --chown=1:1 <<EOF /a\nhi\nEOF\n"
      "ENV A=1\n");
  ProcessResult r = run_kiln({"parse", ctx.file("Containerfile")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json tree = nlohmann::json::parse(r.out);
  EXPECT_EQ(tree["directives"][0]["name"], "syntax");
  ASSERT_EQ(tree["instructions"].size(), 3u);
  const auto& copy = tree["instructions"][1];
  EXPECT_EQ(copy["name"], "COPY");
  EXPECT_EQ(copy["line"], 3);
  EXPECT_EQ(copy["end_line"], 5);
  EXPECT_EQ(copy["flags"][0]["name"], "chown");
  EXPECT_EQ(copy["flags"][0]["column"], 6);
  EXPECT_EQ(copy["heredocs"][0]["content"], "hi\n");
  EXPECT_EQ(tree["instructions"][2]["pairs"][0]["key"], "A");
  // The same input gives the same bytes.
  EXPECT_EQ(run_kiln({"parse", ctx.file("Containerfile")}).out, r.out);
}

TEST(ParseCommand, ReadsStandardInput) {
  ProcessResult r = run_kiln({"parse", "-f", "-"}, "", "FROM scratch\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"file\": \"<stdin>\""));
}

TEST(ParseCommand, ErrorsNameFileLineAndColumn) {
  Context ctx;
  ctx.write("Containerfile", "FROM alpine\nRUN true\n  COPPY a b\n");
  ProcessResult r = run_kiln({"parse", ctx.file("Containerfile")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "Error: " + ctx.file("Containerfile") + ":3:3: unknown instruction: COPPY\n");
  EXPECT_TRUE(r.out.empty());
}

TEST(ParseCommand, MissingFileIsAnError) {
  ProcessResult r = run_kiln({"parse", "/nonexistent/Containerfile"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("/nonexistent/Containerfile"));
}

TEST(ParseCommand, CheckValidatesTheStageGraph) {
  Context ctx;
  ctx.write("Containerfile",
            "FROM a AS one\nCOPY --from=two /x /x\nFROM b AS two\nCOPY --from=one /y /y\n");
  ProcessResult r = run_kiln({"parse", "--check", "--target", "one", ctx.file("Containerfile")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr(":4:1: circular dependency between stages: one -> two -> one"));
}

TEST(BuildDryRun, PrintsThePlanForTheTarget) {
  Context ctx;
  ctx.write("Dockerfile",
            "ARG GO=1.22\nFROM golang:${GO} AS build\nRUN make\nFROM build AS test\nRUN make test\n"
            "FROM scratch\nCOPY --from=build /out /out\n");
  ProcessResult r = run_kiln({"build", "--dry-run", "--build-arg", "GO=1.23", ctx.path()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("2 of 3 stages needed"));
  EXPECT_THAT(r.out, HasSubstr("from image golang:1.23"));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("make test")));

  ProcessResult test = run_kiln({"build", "--dry-run", "--target", "test", ctx.path()});
  ASSERT_EQ(test.exit_code, 0) << test.err;
  EXPECT_THAT(test.out, HasSubstr("make test"));

  ProcessResult json = run_kiln(
      {"build", "--dry-run", "--plan-format", "json", "--platform", "linux/arm64", ctx.path()});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  nlohmann::json plan = nlohmann::json::parse(json.out);
  // Only the stages the target needs: build (0) and the unnamed final stage (2).
  ASSERT_EQ(plan["stages"].size(), 2u);
  EXPECT_EQ(plan["target"], 1);
  EXPECT_EQ(plan["stages"][1]["index"], 2);
  EXPECT_EQ(plan["stages"][1]["platform"], "linux/arm64");
}

TEST(BuildDryRun, UnknownTargetAndUnusedBuildArgs) {
  Context ctx;
  ctx.write("Containerfile", "FROM scratch AS only\n");
  ProcessResult missing = run_kiln({"build", "--dry-run", "--target", "nope", ctx.path()});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("target stage \"nope\" could not be found"));
  ProcessResult unused = run_kiln({"build", "--dry-run", "--build-arg", "X=1", ctx.path()});
  EXPECT_EQ(unused.exit_code, 0);
  EXPECT_THAT(unused.err, HasSubstr("WARNING: "));
  EXPECT_THAT(unused.err, HasSubstr("build argument X was not consumed"));
}

TEST(BuildDryRun, PrefersContainerfileAndHonoursDashF) {
  Context ctx;
  ctx.write("Containerfile", "FROM scratch AS from-containerfile\n");
  ctx.write("Dockerfile", "FROM scratch AS from-dockerfile\n");
  ctx.write("other/Build.file", "FROM scratch AS from-dash-f\n");
  EXPECT_THAT(run_kiln({"build", "--dry-run", ctx.path()}).out, HasSubstr("from-containerfile"));
  EXPECT_THAT(run_kiln({"build", "--dry-run", "-f", ctx.file("other/Build.file"), ctx.path()}).out,
              HasSubstr("from-dash-f"));
  Context empty;
  ProcessResult none = run_kiln({"build", "--dry-run", empty.path()});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_THAT(none.err, HasSubstr("no Containerfile or Dockerfile"));
  EXPECT_EQ(run_kiln({"build", "--dry-run", "/nonexistent-context"}).exit_code, 1);
}

TEST(BuildDryRun, MalformedIgnoreFileFailsTheBuild) {
  Context ctx;
  ctx.write("Containerfile", "FROM scratch\nCOPY . /\n");
  ctx.write(".containerignore", "*.log\n!\n");
  ProcessResult r = run_kiln({"build", "--dry-run", ctx.path()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr(".containerignore:2:1: illegal exclusion pattern"));
}

TEST(BuildDryRun, ExamplesPlan) {
  for (const char* example : {"hello", "busybox", "go-multistage"}) {
    ProcessResult r =
        run_kiln({"build", "--dry-run", std::string(KILN_SOURCE_DIR) + "/examples/" + example});
    EXPECT_EQ(r.exit_code, 0) << example << ": " << r.err;
  }
}

TEST(BuildDryRun, ContainerfileReadsAreBounded) {
  Context ctx;
  ProcessResult zero = run_kiln({"build", "--dry-run", "-f", "/dev/zero", ctx.path()});
  EXPECT_EQ(zero.exit_code, 1);
  EXPECT_THAT(zero.err, HasSubstr("/dev/zero: larger than 16 MiB"));
  // A Containerfile in the context may not lead out of it.
  fs::create_symlink("/etc/passwd", ctx.file("Containerfile"));
  ProcessResult link = run_kiln({"build", "--dry-run", ctx.path()});
  EXPECT_EQ(link.exit_code, 1);
  EXPECT_THAT(link.err, HasSubstr("is a symlink to /etc/passwd, outside the build context"));
  EXPECT_THAT(link.err, ::testing::Not(HasSubstr("root:")));
  // Inside the context it is followed.
  fs::remove(ctx.file("Containerfile"));
  ctx.write("real/Build", "FROM scratch\n");
  fs::create_symlink("real/Build", ctx.file("Containerfile"));
  EXPECT_EQ(run_kiln({"build", "--dry-run", ctx.path()}).exit_code, 0);
}

// Files the user names are written in place with every write checked: a full disk fails the
// build, and a device stays a device (an atomic rename would have replaced /dev/full).
TEST(BuildOutputsFiles, WriteErrorsFailTheBuild) {
  Context ctx;
  ctx.write("Containerfile", "FROM scratch\nLABEL a=b\n");
  std::vector<std::string> env = {"KILN_ROOT=" + ctx.file("store")};
  for (const char* flag : {"--metadata-file", "--iidfile"}) {
    ProcessResult r = run_kiln({"build", "-q", flag, "/dev/full", ctx.path()}, {}, {}, env);
    EXPECT_EQ(r.exit_code, 1) << flag;
    EXPECT_THAT(r.err, HasSubstr("write /dev/full: No space left on device")) << flag;
    EXPECT_TRUE(fs::is_character_file("/dev/full"));
  }
  ProcessResult jobs = run_kiln({"build", "--jobs", "-1", ctx.path()}, {}, {}, env);
  EXPECT_EQ(jobs.exit_code, 2);
  EXPECT_THAT(jobs.err, HasSubstr("--jobs -1: expected a number of stages from 1 to 256"));
}

}  // namespace
}  // namespace kiln::test
