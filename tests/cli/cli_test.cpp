// The kiln command line as a user meets it: exit codes, usage errors, --help everywhere.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "kiln/base/fd.hpp"
#include "process.hpp"

namespace kiln::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
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
  for (const char* command : {"build", "parse", "images", "inspect", "tag", "rmi", "save", "push",
                              "prune", "check", "version"}) {
    ProcessResult r = run_kiln({command, "--help"});
    EXPECT_EQ(r.exit_code, 0) << command << ": " << r.err;
    EXPECT_THAT(r.out, HasSubstr("Usage: kiln " + std::string(command))) << command;
  }
  ProcessResult top = run_kiln({"--help"});
  EXPECT_EQ(top.exit_code, 0);
  EXPECT_THAT(top.out, HasSubstr("build"));
}

// A usage error is one line naming the flag and the problem, then where the help is.
TEST(Cli, UnknownFlagGivesOneLineAndWhereTheHelpIs) {
  ProcessResult r = run_kiln({"build", "--frobnicate", "."});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "kiln build: unrecognised option '--frobnicate'\nSee 'kiln build --help'.\n");
  // No guessing from a prefix: --compressio is not --compression, --plat is not --platform.
  for (const char* prefix : {"--compressio=gzip", "--plat=linux/amd64"}) {
    ProcessResult guessed = run_kiln({"build", prefix, "."});
    EXPECT_EQ(guessed.exit_code, 2) << prefix;
    EXPECT_THAT(guessed.err, HasSubstr("unrecognised option")) << prefix;
  }
}

// Boolean flags never take the next word, the context defaults to ".", --pull takes podman's
// policies.
TEST(Cli, BuildCommandLinesOfBuildahAndPodmanParse) {
  TempDir ctx;
  { std::ofstream(ctx.path() / "Containerfile") << "FROM scratch\nLABEL a=b\n"; }
  std::string store = "KILN_ROOT=" + (ctx.path() / "store").string();
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"build", "-t", "x", "--layers", ctx.path().string()},
           {"build", "--rm", "--force-rm", "--tls-verify", ctx.path().string()},
           {"build", "--layers=true", "--rm=false", "--tls-verify=true", ctx.path().string()},
           {"build", "--pull", ctx.path().string()},
           {"build", "--pull=missing", ctx.path().string()},
           {"build", "--pull=never", ctx.path().string()},
           {"build", "-q", "--pull=newer", ctx.path().string()},
       }) {
    ProcessResult r = run_kiln(args, {}, {}, {store});
    EXPECT_EQ(r.exit_code, 0) << args[1] << " " << args[2] << ": " << r.err;
  }
  ProcessResult here = run_kiln({"build", "-q"}, ctx.path().string(), {}, {store});
  EXPECT_EQ(here.exit_code, 0) << here.err;
  EXPECT_THAT(here.out, HasSubstr("sha256:"));
  ProcessResult bad = run_kiln({"build", "--pull=sometimes", ctx.path().string()}, {}, {}, {store});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("--pull must be always, missing, never, newer, true or false"));
  { std::ofstream(ctx.path() / "Containerfile") << "FROM nosuchimage:1\n"; }
  ProcessResult never = run_kiln({"build", "--pull=never", ctx.path().string()}, {}, {}, {store});
  EXPECT_EQ(never.exit_code, 1);
  EXPECT_THAT(never.err, HasSubstr("--pull=never does not fetch it"));
}

// buildah's image shaping flags change the final image's config and layers as buildah does.
TEST(Cli, BuildahImageShapingFlags) {
  TempDir ctx;
  {
    std::ofstream(ctx.path() / "Containerfile")
        << "FROM scratch\nLABEL a=b keep=1\nENV X=1 Y=2\nCOPY Containerfile /\n";
  }
  std::string store = "KILN_ROOT=" + (ctx.path() / "store").string();
  ProcessResult r = run_kiln(
      {"build", "-q", "-t", "s:1", "--unsetlabel", "a", "--label", "c=d", "--env", "Z=3", "--env",
       "Y-", "--unsetenv", "X", "--omit-history", "--identity-label", "-D", ctx.path().string()},
      {}, {}, {store});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ProcessResult inspect = run_kiln({"inspect", "s:1"}, {}, {}, {store});
  ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
  nlohmann::json j = nlohmann::json::parse(inspect.out);
  const nlohmann::json& config = j["Config"]["config"];
  EXPECT_EQ(config["Env"], nlohmann::json::array({"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:"
                                                  "/usr/bin:/sbin:/bin",
                                                  "Z=3"}));
  EXPECT_FALSE(config["Labels"].contains("a"));
  EXPECT_EQ(config["Labels"]["keep"], "1");
  EXPECT_EQ(config["Labels"]["c"], "d");
  EXPECT_TRUE(config["Labels"].contains("io.kiln.version"));
  EXPECT_FALSE(j["Config"].contains("history"));
  EXPECT_EQ(j["Manifest"]["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar");

  ProcessResult zstd = run_kiln({"build", "-q", "-t", "z:1", "--compression-format", "zstd",
                                 "--compression-level", "19", ctx.path().string()},
                                {}, {}, {store});
  ASSERT_EQ(zstd.exit_code, 0) << zstd.err;
  nlohmann::json z = nlohmann::json::parse(run_kiln({"inspect", "z:1"}, {}, {}, {store}).out);
  EXPECT_EQ(z["Manifest"]["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd");
  for (const std::vector<std::string>& bad : std::vector<std::vector<std::string>>{
           {"--compression-format", "zstd:chunked"},
           {"--compression-level", "12"},
           {"--env", "NOT_SET_ANYWHERE_1234"},
           {"--omit-history=maybe"},
       }) {
    std::vector<std::string> args = {"build"};
    args.insert(args.end(), bad.begin(), bad.end());
    args.push_back(ctx.path().string());
    ProcessResult refused = run_kiln(args, {}, {}, {store});
    EXPECT_EQ(refused.exit_code, 2) << bad[0];
    EXPECT_THAT(refused.err, HasSubstr(bad[0].substr(0, bad[0].find('=')))) << refused.err;
  }
}

// buildah's --timestamp: the created time and every file time of the new layers, so two builds
// of the same sources at different times are the same image.
TEST(Cli, HistoryListsTheStepsNewestFirst) {
  TempDir ctx;
  {
    std::ofstream(ctx.path() / "Containerfile")
        << "FROM scratch\nLABEL stage=one\nCOPY Containerfile /a-rather-long-destination-name-"
           "that-the-table-shortens\n";
  }
  std::string store = "KILN_ROOT=" + (ctx.path() / "store").string();
  ProcessResult built =
      run_kiln({"build", "-q", "-t", "h:1", ctx.path().string()}, {}, {}, {store});
  ASSERT_EQ(built.exit_code, 0) << built.err;
  ProcessResult json = run_kiln({"history", "--format", "json", "h:1"}, {}, {}, {store});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  nlohmann::json rows = nlohmann::json::parse(json.out);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_THAT(rows[0]["createdBy"].get<std::string>(), StartsWith("COPY Containerfile"));
  EXPECT_GT(rows[0]["size"].get<int64_t>(), 0);
  EXPECT_EQ(rows[0]["id"],
            nlohmann::json::parse(run_kiln({"inspect", "h:1"}, {}, {}, {store}).out)["Id"]);
  EXPECT_EQ(rows[1]["createdBy"], "LABEL stage=one");
  EXPECT_EQ(rows[1]["size"], 0);
  EXPECT_EQ(rows[1]["id"], "<missing>");
  ProcessResult id =
      run_kiln({"inspect", "--format", "{{.Id}} {{.Config.architecture}}", "h:1"}, {}, {}, {store});
  ASSERT_EQ(id.exit_code, 0) << id.err;
  EXPECT_EQ(id.out, rows[0]["id"].get<std::string>() + " amd64\n");
  ProcessResult labels =
      run_kiln({"inspect", "-f", "{{json .Config.config.Labels}}", "h:1"}, {}, {}, {store});
  EXPECT_EQ(labels.out, "{\"stage\":\"one\"}\n");
  ProcessResult wrong = run_kiln({"inspect", "-f", "{{.Config.nope}}", "h:1"}, {}, {}, {store});
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_THAT(wrong.err, HasSubstr(".Config.nope"));
  ProcessResult table = run_kiln({"history", "h:1"}, {}, {}, {store});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out, StartsWith("ID "));
  EXPECT_THAT(table.out, HasSubstr("ago"));
  EXPECT_THAT(table.out, HasSubstr("..."));
  ProcessResult missing = run_kiln({"history", "nope:1"}, {}, {}, {store});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("nope:1"));
}

TEST(Cli, LoadBringsBackWhatSaveWrote) {
  TempDir ctx;
  { std::ofstream(ctx.path() / "Containerfile") << "FROM scratch\nCOPY Containerfile /\n"; }
  std::string a = "KILN_ROOT=" + (ctx.path() / "a").string();
  std::string b = "KILN_ROOT=" + (ctx.path() / "b").string();
  ASSERT_EQ(run_kiln({"build", "-q", "-t", "one:1", ctx.path().string()}, {}, {}, {a}).exit_code,
            0);
  ASSERT_EQ(run_kiln({"build", "-q", "-t", "both:1", "--platform", "linux/amd64,linux/arm64",
                      ctx.path().string()},
                     {}, {}, {a})
                .exit_code,
            0);
  std::string docker = (ctx.path() / "one.tar").string();
  std::string oci = (ctx.path() / "both.tar").string();
  ASSERT_EQ(run_kiln({"save", "-o", docker, "one:1"}, {}, {}, {a}).exit_code, 0);
  ASSERT_EQ(
      run_kiln({"save", "--format", "oci-archive", "-o", oci, "both:1"}, {}, {}, {a}).exit_code, 0);

  ProcessResult loaded = run_kiln({"load", "-i", docker}, {}, {}, {b});
  ASSERT_EQ(loaded.exit_code, 0) << loaded.err;
  EXPECT_EQ(loaded.out, "Loaded image: one:1\n");
  std::string from_stdin;
  {
    std::ifstream in(oci, std::ios::binary);
    from_stdin.assign(std::istreambuf_iterator<char>(in), {});
  }
  ProcessResult piped = run_kiln({"load"}, {}, from_stdin, {b});
  ASSERT_EQ(piped.exit_code, 0) << piped.err;
  nlohmann::json both = nlohmann::json::parse(run_kiln({"inspect", "both:1"}, {}, {}, {b}).out);
  EXPECT_EQ(both["Index"]["manifests"].size(), 2u);
  EXPECT_EQ(both["Digest"],
            nlohmann::json::parse(run_kiln({"inspect", "both:1"}, {}, {}, {a}).out)["Digest"]);
  EXPECT_EQ(run_kiln({"check"}, {}, {}, {b}).exit_code, 0);

  ProcessResult garbage = run_kiln({"load", "-i", (ctx.path() / "Containerfile").string()}, {}, {},
                                   {"KILN_ROOT=" + (ctx.path() / "c").string()});
  EXPECT_EQ(garbage.exit_code, 1);
  EXPECT_THAT(garbage.err, HasSubstr("Containerfile"));
}

TEST(Cli, InfoAndVersionDescribeTheMachineAndTheBinary) {
  TempDir dir;
  std::string store = "KILN_ROOT=" + (dir.path() / "store").string();
  ProcessResult info = run_kiln({"info", "--format", "json"}, {}, {}, {store});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  nlohmann::json j = nlohmann::json::parse(info.out);
  EXPECT_EQ(j["store"]["root"], (dir.path() / "store").string());
  EXPECT_EQ(j["store"]["from"], "$KILN_ROOT");
  EXPECT_TRUE(j["host"]["platform"].is_string());
  EXPECT_TRUE(j["runner"]["oci_runtimes"].is_array());
  EXPECT_TRUE(j["registries"]["auth_files"].is_array());
  ProcessResult text = run_kiln({"info"}, {}, {}, {store});
  EXPECT_THAT(text.out, HasSubstr("store:\n  root: " + (dir.path() / "store").string()));
  ProcessResult version = run_kiln({"version", "--json"});
  ASSERT_EQ(version.exit_code, 0) << version.err;
  nlohmann::json v = nlohmann::json::parse(version.out);
  EXPECT_TRUE(v["commit"].is_string());
  EXPECT_TRUE(v["libraries"].contains("zstd"));
}

TEST(Cli, ImagesFiltersAndFormats) {
  TempDir dir;
  std::string store = "KILN_ROOT=" + (dir.path() / "store").string();
  auto build = [&](const std::string& tag, const std::string& file, const std::string& when,
                   std::vector<std::string> extra) {
    fs::path ctx = dir.path() / tag;
    fs::create_directories(ctx);
    std::ofstream(ctx / "Containerfile") << file;
    std::vector<std::string> argv = {"build", "-q", "-t", tag, "--timestamp", when};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(ctx.string());
    ProcessResult r = run_kiln(argv, {}, {}, {store});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  };
  build("a:1", "FROM scratch\nLABEL team=x\n", "1000", {});
  build("b:1", "FROM scratch\nCOPY Containerfile /\n", "2000", {});
  build("c:2", "FROM scratch\nCOPY Containerfile /\n", "3000",
        {"--platform", "linux/amd64,linux/arm64"});
  auto names = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "images");
    args.insert(args.end(), {"--format", "{{.Name}}"});
    ProcessResult r = run_kiln(args, {}, {}, {store});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  };
  EXPECT_EQ(names({"--filter", "label=team=x"}), "a:1\n");
  EXPECT_EQ(names({"--filter", "label=team"}), "a:1\n");
  EXPECT_EQ(names({"--filter", "before=b:1"}), "a:1\n");
  EXPECT_EQ(names({"--filter", "since=a:1"}), "b:1\nc:2\n");
  EXPECT_EQ(names({"--filter", "until=1970-01-01T00:25:00Z"}), "a:1\n");
  EXPECT_EQ(names({"--filter", "reference=c*"}), "c:2\n");
  EXPECT_EQ(names({"--filter", "dangling=true"}), "");
  EXPECT_EQ(names({"b"}), "b:1\n");
  EXPECT_EQ(names({"c:2"}), "c:2\n");
  ProcessResult table = run_kiln(
      {"images", "--format", "table {{.Repository}} {{.Tag}} {{.Size}}", "c"}, {}, {}, {store});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out, StartsWith("REPOSITORY TAG SIZE\nc 2 "));
  EXPECT_THAT(table.out, Not(HasSubstr(" 0 B")));  // an index is as big as its images
  ProcessResult plain = run_kiln({"images", "--digests", "--no-trunc"}, {}, {}, {store});
  EXPECT_THAT(plain.out, HasSubstr("DIGEST"));
  EXPECT_THAT(plain.out, HasSubstr("years ago"));
  ProcessResult bad = run_kiln({"images", "--filter", "colour=red"}, {}, {}, {store});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("colour"));
}

TEST(Cli, ErrorsSayWhatToCheck) {
  TempDir dir;
  std::string store = "KILN_ROOT=" + (dir.path() / "store").string();
  { std::ofstream(dir.path() / "Containerfile") << "FROM scratch\nLABEL a=b\n"; }
  ASSERT_EQ(run_kiln({"build", "-q", "-t", "p:1", dir.path().string()}, {}, {}, {store}).exit_code,
            0);
  // Nothing listens on port 1.
  ProcessResult push = run_kiln({"push", "p:1", "127.0.0.1:1/team/p:1"}, {}, {}, {store});
  EXPECT_EQ(push.exit_code, 1);
  EXPECT_THAT(push.err, HasSubstr("push to 127.0.0.1:1/team/p:1 failed: "));
  EXPECT_THAT(push.err, HasSubstr("check that 127.0.0.1:1 is reachable"));
  ProcessResult missing = run_kiln({"build", (dir.path() / "nope").string()}, {}, {}, {store});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("does not exist"));
  if (::geteuid() == 0) {
    // A store nobody may create: the message names it and $KILN_ROOT.
    fs::create_directories(dir.path() / "locked");
    fs::permissions(dir.path() / "locked", fs::perms::owner_all);
    fs::permissions(dir.path(),
                    fs::perms::owner_all | fs::perms::others_exec | fs::perms::group_exec);
    ProcessResult denied = run_program(
        {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env",
         "KILN_ROOT=" + (dir.path() / "locked" / "store").string(), KILN_BINARY, "images"});
    EXPECT_EQ(denied.exit_code, 1);
    EXPECT_THAT(denied.err, HasSubstr("the store " + (dir.path() / "locked" / "store").string() +
                                      " is not usable"));
    EXPECT_THAT(denied.err, HasSubstr("$KILN_ROOT"));
  }
}

TEST(Cli, TimestampMakesTheImageReproducible) {
  TempDir ctx;
  { std::ofstream(ctx.path() / "Containerfile") << "FROM scratch\nCOPY Containerfile /\n"; }
  std::string id;
  for (int round = 0; round < 2; ++round) {
    std::string store = "KILN_ROOT=" + (ctx.path() / ("store" + std::to_string(round))).string();
    ProcessResult r =
        run_kiln({"build", "-q", "-t", "t:1", "--timestamp", "1000000000", ctx.path().string()}, {},
                 {}, {store});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    if (round == 0)
      id = r.out;
    else
      EXPECT_EQ(r.out, id);
    nlohmann::json j = nlohmann::json::parse(run_kiln({"inspect", "t:1"}, {}, {}, {store}).out);
    EXPECT_EQ(j["Config"]["created"], "2001-09-09T01:46:40Z");
    ProcessResult tar = run_kiln(
        {"build", "--timestamp", "1000000000", "-o", "type=tar,dest=-", ctx.path().string()}, {},
        {}, {store});
    ASSERT_EQ(tar.exit_code, 0) << tar.err;
    // The first member's mtime field (octal, at offset 136) is the timestamp.
    EXPECT_EQ(tar.out.substr(136, 11), "07346545000");
    std::filesystem::last_write_time(ctx.path() / "Containerfile",
                                     std::filesystem::file_time_type::clock::now());
  }
}

TEST(Cli, MissingArgumentsAreUsageErrors) {
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
    EXPECT_THAT(r.err, HasSubstr("See 'kiln build --help'.")) << args[1];
  }
}

}  // namespace
}  // namespace kiln::test
