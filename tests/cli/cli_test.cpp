// The kiln command line as a user meets it: exit codes, usage errors, --help everywhere.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "process.hpp"

namespace kiln::test {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

TEST(Cli, VersionPrintsAndSucceeds) {
  ProcessResult r = run_kiln({"version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, StartsWith("kiln version "));
}

TEST(Cli, NoCommandIsAUsageError) {
  ProcessResult r = run_kiln({});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("missing command"));
}

TEST(Cli, UnknownCommandIsAUsageError) {
  ProcessResult r = run_kiln({"frobnicate"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("unknown command frobnicate"));
}

TEST(Cli, EveryCommandHasHelp) {
  for (const char* command :
       {"build", "parse", "images", "inspect", "tag", "rmi", "save", "push", "prune", "check", "version"}) {
    ProcessResult r = run_kiln({command, "--help"});
    EXPECT_EQ(r.exit_code, 0) << command << ": " << r.err;
    EXPECT_THAT(r.out, HasSubstr("Usage: kiln " + std::string(command))) << command;
  }
  ProcessResult top = run_kiln({"--help"});
  EXPECT_EQ(top.exit_code, 0);
  EXPECT_THAT(top.out, HasSubstr("build"));
}

TEST(Cli, UnknownFlagGivesOneLineAndUsage) {
  ProcessResult r = run_kiln({"build", "--frobnicate", "."});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("kiln build: unrecognised option '--frobnicate'"));
  EXPECT_THAT(r.err, HasSubstr("Usage: kiln build"));
}

TEST(Cli, MissingArgumentsAreUsageErrors) {
  EXPECT_EQ(run_kiln({"build"}).exit_code, 2);
  EXPECT_EQ(run_kiln({"build", "-t"}).exit_code, 2);
  EXPECT_EQ(run_kiln({"tag", "only-one"}).exit_code, 2);
  EXPECT_EQ(run_kiln({"inspect"}).exit_code, 2);
  EXPECT_EQ(run_kiln({"parse"}).exit_code, 2);
  EXPECT_EQ(run_kiln({"build", "a", "b"}).exit_code, 2);
}

TEST(Cli, BuildFlagValuesAreValidated) {
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {"build", "--network", "bridge", "."},
           {"build", "--progress", "fancy", "."},
           {"build", "--platform", "linux/", "."},
           {"build", "-o", "type=floppy,dest=x", "."},
           {"build", "-o", "type=oci", "."},
           {"build", "--secret", "src=/etc/hostname", "."},
           {"build", "--cache-to", "type=local", "."},
           {"build", "--label", "novalue", "."},
           {"build", "--push", "."},
       }) {
    ProcessResult r = run_kiln(args);
    EXPECT_EQ(r.exit_code, 2) << args[1] << " " << args[2] << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr("Usage: kiln build")) << args[1];
  }
}

}  // namespace
}  // namespace kiln::test
