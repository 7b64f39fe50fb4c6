// COPY and ADD as the Dockerfile reference and BuildKit define them, checked on the filesystem
// kiln produces (-o type=local). Builds start FROM scratch, so no base image or peer is needed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kiln/base/fd.hpp"
#include "process.hpp"

namespace kiln::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class Copy : public ::testing::Test {
 protected:
  void SetUp() override {
    write("a.txt", "a\n");
    write("b.txt", "b\n");
    write("notes.md", "notes\n");
    write("dir/one.txt", "one\n");
    write("dir/sub/two.txt", "two\n");
    write("dir/README.md", "readme\n");
    write("src/x/y.txt", "y\n");
    write("src/x/z.txt", "z\n");
  }

  void write(const std::string& name, const std::string& content) {
    fs::path p = ctx_.path() / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << content;
  }

  // Builds `containerfile` and returns the exit code; the filesystem lands in out().
  ProcessResult build(const std::string& containerfile) {
    write("Containerfile", containerfile);
    fs::remove_all(out());
    return run_kiln({"build", "-o", "type=local,dest=" + out().string(), ctx_.path().string()}, {},
                    {}, {"KILN_ROOT=" + (store_.path() / "store").string()});
  }

  fs::path out() const { return store_.path() / "out"; }

  std::string read(const std::string& rel) const {
    std::ifstream in(out() / rel, std::ios::binary);
    if (!in)
      return "<missing>";
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

  mode_t mode(const std::string& rel) const {
    struct stat st {};
    if (::lstat((out() / rel).c_str(), &st) != 0)
      return 0;
    return st.st_mode & 07777;
  }

  TempDir ctx_{{}, "kiln-copy-ctx-"};
  TempDir store_{{}, "kiln-copy-store-"};
};

TEST_F(Copy, FileToNewPathWithoutSlashIsThatFile) {
  ProcessResult r = build("FROM scratch\nCOPY a.txt /renamed\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read("renamed"), "a\n");
}

TEST_F(Copy, TrailingSlashMeansIntoDirectory) {
  ProcessResult r = build("FROM scratch\nCOPY a.txt /d/\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read("d/a.txt"), "a\n");
  EXPECT_EQ(mode("d"), 0755u);
}

TEST_F(Copy, DirectoryCopiesItsContents) {
  ProcessResult r = build("FROM scratch\nCOPY dir /dst\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read("dst/one.txt"), "one\n");
  EXPECT_EQ(read("dst/sub/two.txt"), "two\n");
  EXPECT_FALSE(fs::exists(out() / "dst/dir"));
}

// BuildKit has no rule against several sources onto a path that is not a directory: each is
// copied onto it in turn, and the last one wins.
TEST_F(Copy, SeveralSourcesOntoOnePathLastWins) {
  ProcessResult onto = build("FROM scratch\nCOPY a.txt b.txt /both\n");
  ASSERT_EQ(onto.exit_code, 0) << onto.err;
  EXPECT_EQ(read("both"), "b\n");
  ProcessResult good = build("FROM scratch\nCOPY a.txt b.txt /both/\n");
  ASSERT_EQ(good.exit_code, 0) << good.err;
  EXPECT_EQ(read("both/b.txt"), "b\n");
}

TEST_F(Copy, WildcardsMatchInTheContext) {
  ProcessResult r = build("FROM scratch\nCOPY *.txt dir/s?b/*.txt /w/\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read("w/a.txt"), "a\n");
  EXPECT_EQ(read("w/b.txt"), "b\n");
  EXPECT_EQ(read("w/two.txt"), "two\n");
  EXPECT_FALSE(fs::exists(out() / "w/notes.md"));
}

TEST_F(Copy, RelativeDestinationFollowsWorkdir) {
  ProcessResult r = build("FROM scratch\nWORKDIR /app/sub\nCOPY a.txt .\nCOPY b.txt ../\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read("app/sub/a.txt"), "a\n");
  EXPECT_EQ(read("app/b.txt"), "b\n");
}

TEST_F(Copy, ParentsKeepsSourceDirectories) {
  ProcessResult r = build(
      "# syntax=docker/dockerfile:1.7-labs\nFROM scratch\nCOPY --parents src/x/y.txt /p/\n"
      "COPY --parents ./src/./x/z.txt /q/\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read("p/src/x/y.txt"), "y\n");
  EXPECT_EQ(read("q/x/z.txt"), "z\n");
}

TEST_F(Copy, ExcludeSkipsMatches) {
  ProcessResult r = build("FROM scratch\nCOPY --exclude=*.md dir /e/\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read("e/one.txt"), "one\n");
  EXPECT_FALSE(fs::exists(out() / "e/README.md"));
}

TEST_F(Copy, ChmodOctalAndSymbolic) {
  ProcessResult r = build(
      "FROM scratch\nCOPY --chmod=0700 a.txt /m/octal\nCOPY --chmod=u+x,go-r b.txt /m/symbolic\n"
      "COPY --chmod=a+X dir /m/dir/\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(mode("m/octal"), 0700u);
  EXPECT_EQ(mode("m/symbolic"), 0700u & (0644u | 0100u) & ~0044u);
  EXPECT_EQ(mode("m/dir/sub"), 0755u);
  EXPECT_EQ(mode("m/dir/one.txt"), 0644u);  // X adds execute only to directories here
  ProcessResult bad = build("FROM scratch\nCOPY --chmod=u+q a.txt /x\n");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err, HasSubstr("invalid --chmod"));
}

TEST_F(Copy, ChownWithNumbersNeedsNoPasswd) {
  if (::geteuid() != 0)
    GTEST_SKIP() << "ownership is only kept when running as root";
  ProcessResult r = build("FROM scratch\nCOPY --chown=1000:1001 a.txt /o/\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  struct stat st {};
  ASSERT_EQ(::lstat((out() / "o/a.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_gid, 1001u);
  // The directory the copy made for it has the same owner (BuildKit's mkdir -p with --chown).
  ASSERT_EQ(::lstat((out() / "o").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_gid, 1001u);
  // A group alone goes with root (BuildKit).
  ProcessResult group = build("FROM scratch\nCOPY --chown=:50 a.txt /g\n");
  ASSERT_EQ(group.exit_code, 0) << group.err;
  ASSERT_EQ(::lstat((out() / "g").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_gid, 50u);
  // A name the stage has no passwd entry for is root, as in BuildKit (no error).
  ProcessResult names = build("FROM scratch\nCOPY --chown=app:nogroup a.txt /n\n");
  ASSERT_EQ(names.exit_code, 0) << names.err;
  ASSERT_EQ(::lstat((out() / "n").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_gid, 0u);
}

TEST_F(Copy, IgnoreFileRules) {
  write(".containerignore", "*.md\ndir/sub\n!dir/README.md\n");
  ProcessResult r = build("FROM scratch\nCOPY . /ctx/\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read("ctx/a.txt"), "a\n");
  EXPECT_FALSE(fs::exists(out() / "ctx/notes.md"));
  EXPECT_FALSE(fs::exists(out() / "ctx/dir/sub"));
  EXPECT_EQ(read("ctx/dir/README.md"), "readme\n");  // re-included by the exception
  ProcessResult ignored = build("FROM scratch\nCOPY notes.md /\n");
  EXPECT_EQ(ignored.exit_code, 1);
  EXPECT_THAT(ignored.err, HasSubstr("is excluded by"));
}

// The context is a root of its own, as for BuildKit: "../x" is "x" in it and a symlink to "/etc"
// is the context's etc/; nothing outside the context is ever read.
TEST_F(Copy, PathsAndSymlinksResolveInsideTheContext) {
  ProcessResult up = build("FROM scratch\nCOPY ../../a.txt /x\n");
  ASSERT_EQ(up.exit_code, 0) << up.err;
  EXPECT_EQ(read("x"), "a\n");
  fs::create_symlink("/a.txt", ctx_.path() / "abs");
  ProcessResult abs = build("FROM scratch\nCOPY abs /y\n");
  ASSERT_EQ(abs.exit_code, 0) << abs.err;
  EXPECT_EQ(read("y"), "a\n");
  fs::create_symlink("/etc", ctx_.path() / "escape");
  ProcessResult host = build("FROM scratch\nCOPY escape/passwd /x\n");
  EXPECT_EQ(host.exit_code, 1);
  EXPECT_THAT(host.err, HasSubstr("not found"));
  EXPECT_THAT(host.err, HasSubstr("resolves to \"/etc/passwd\" inside the build context"));
  EXPECT_THAT(host.err, ::testing::Not(HasSubstr("root:")));
  fs::create_symlink("nowhere", ctx_.path() / "dangling");
  ProcessResult dangling = build("FROM scratch\nCOPY dangling /x\n");
  EXPECT_EQ(dangling.exit_code, 1);
  EXPECT_THAT(dangling.err, HasSubstr("not found"));
}

// A named symlink to a file is followed, and the copy keeps the link's name (BuildKit).
TEST_F(Copy, ASymlinkedFileKeepsTheLinksName) {
  fs::create_symlink("a.txt", ctx_.path() / "link.txt");
  ProcessResult r = build("FROM scratch\nCOPY link.txt /\nCOPY link.txt /d/\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(fs::is_symlink(out() / "link.txt"));
  EXPECT_EQ(read("link.txt"), "a\n");
  EXPECT_EQ(read("d/link.txt"), "a\n");
  EXPECT_FALSE(fs::exists(out() / "a.txt"));
}

// BuildKit makes a directory copy's destination itself (0755, --chown's owner) and copies only
// the contents into it: the source directory's mode stays with the source; an existing
// destination keeps its own; one that is a file is an error.
TEST_F(Copy, TheDestinationOfADirectoryCopyIsMadeNotCopied) {
  fs::permissions(ctx_.path() / "dir", fs::perms(0775));
  fs::permissions(ctx_.path() / "dir/sub", fs::perms(0700));
  write("open/t/keep", "k\n");
  fs::permissions(ctx_.path() / "open/t", fs::perms(0777));
  ProcessResult r = build(
      "FROM scratch\nCOPY dir /new\nCOPY --chown=7:8 dir /owned/deep\nCOPY open /\nCOPY dir /t\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(mode("new"), 0755u);
  EXPECT_EQ(mode("new/sub"), 0700u);
  EXPECT_EQ(mode("t"), 0777u);
  EXPECT_EQ(read("t/keep"), "k\n");
  EXPECT_EQ(read("t/one.txt"), "one\n");
  if (::geteuid() == 0) {
    struct stat st {};
    for (const char* made : {"owned", "owned/deep"}) {
      ASSERT_EQ(::lstat((out() / made).c_str(), &st), 0);
      EXPECT_EQ(st.st_uid, 7u) << made;
      EXPECT_EQ(st.st_gid, 8u) << made;
    }
  }
  ProcessResult onto_file = build("FROM scratch\nCOPY a.txt /f\nCOPY dir /f\n");
  EXPECT_EQ(onto_file.exit_code, 1);
  EXPECT_THAT(onto_file.err, HasSubstr("Containerfile:3:1: COPY: cannot copy to non-directory"));
}

// Hard links inside one source (a directory walk) stay linked, as BuildKit keeps them; two
// sources are copied separately, as BuildKit does, even when they are one inode.
TEST_F(Copy, HardLinksInOneSourceStayLinked) {
  fs::create_hard_link(ctx_.path() / "dir/one.txt", ctx_.path() / "dir/hard.txt");
  ProcessResult r = build("FROM scratch\nCOPY dir /h/\nCOPY dir/one.txt dir/hard.txt /s/\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto inode = [&](const std::string& rel) {
    struct stat st {};
    EXPECT_EQ(::lstat((out() / rel).c_str(), &st), 0) << rel;
    return st.st_ino;
  };
  EXPECT_EQ(inode("h/one.txt"), inode("h/hard.txt"));
  EXPECT_EQ(read("h/hard.txt"), "one\n");
  EXPECT_NE(inode("s/one.txt"), inode("s/hard.txt"));
  EXPECT_EQ(read("s/hard.txt"), "one\n");
}

// BuildKit's COPY allows empty wildcards: beside other sources, and alone (nothing is copied).
TEST_F(Copy, AnEmptyWildcardCopiesNothing) {
  ProcessResult r = build("FROM scratch\nCOPY a.txt *.nothing /w/\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read("w/a.txt"), "a\n");
  ProcessResult alone = build("FROM scratch\nCOPY a.txt /\nCOPY *.nothing /w/\n");
  ASSERT_EQ(alone.exit_code, 0) << alone.err;
  EXPECT_EQ(read("a.txt"), "a\n");
  EXPECT_FALSE(fs::exists(out() / "w"));
}

TEST_F(Copy, AMistypedStageNameSuggestsTheStage) {
  ProcessResult r = build(
      "FROM scratch AS builder\nCOPY a.txt /\nFROM scratch\n"
      "COPY --from=buidler /a.txt /\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("Containerfile:4:1: COPY: no stage or image \"buidler\"; did you "
                               "mean stage \"builder\"?"));
}

TEST_F(Copy, SymlinksInsideDirectoriesStayLinks) {
  fs::create_symlink("one.txt", ctx_.path() / "dir/link");
  ProcessResult r = build("FROM scratch\nCOPY dir /l/\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::is_symlink(out() / "l/link"));
  EXPECT_EQ(fs::read_symlink(out() / "l/link"), "one.txt");
}

TEST_F(Copy, HeredocsBecomeFiles) {
  ProcessResult r = build(
      "FROM scratch\nARG NAME=kiln\nCOPY --chmod=0755 <<EOF <<'RAW' /h/\necho $NAME\nEOF\n$NAME\n"
      "RAW\nCOPY <<EOF /h/named.conf\nx=1\nEOF\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read("h/EOF"), "echo kiln\n");
  EXPECT_EQ(read("h/RAW"), "$NAME\n");
  EXPECT_EQ(mode("h/EOF"), 0755u);
  EXPECT_EQ(read("h/named.conf"), "x=1\n");
}

TEST_F(Copy, AddExtractsLocalArchivesAndCopiesOtherFiles) {
  ProcessResult tar = run_program(
      {"tar", "czf", (ctx_.path() / "src.tar.gz").string(), "-C", ctx_.path().string(), "src"});
  ASSERT_EQ(tar.exit_code, 0) << tar.err;
  ProcessResult r = build("FROM scratch\nADD src.tar.gz /x/\nADD a.txt /x/\nCOPY src.tar.gz /y/\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read("x/src/x/y.txt"), "y\n");
  EXPECT_EQ(read("x/a.txt"), "a\n");
  EXPECT_TRUE(fs::exists(out() / "y/src.tar.gz"));  // COPY never extracts
  ProcessResult git = build("FROM scratch\nADD git@github.com:org/repo.git /x/\n");
  EXPECT_EQ(git.exit_code, 1);
  EXPECT_THAT(git.err, HasSubstr("git repositories"));
}

TEST_F(Copy, CopyFromAnEarlierStage) {
  ProcessResult r = build(
      "FROM scratch AS build\nCOPY dir /out/\nFROM scratch\nCOPY --from=build /out/sub /s\n"
      "COPY --from=0 /out/one.txt /one\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read("s/two.txt"), "two\n");
  EXPECT_EQ(read("one"), "one\n");
  EXPECT_FALSE(fs::exists(out() / "out"));
}

TEST_F(Copy, LabelsIidfileAndTarOnStandardOutput) {
  write("Containerfile", "FROM scratch\nLABEL a=from-file\nCOPY a.txt /\n");
  std::string store = "KILN_ROOT=" + (store_.path() / "store").string();
  fs::path iid = store_.path() / "iid";
  ProcessResult r = run_kiln({"build", "-t", "labels:1", "--label", "a=from-flag", "--label", "b=2",
                              "--iidfile", iid.string(), ctx_.path().string()},
                             {}, {}, {store});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::ifstream in(iid);
  std::string id((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(id + "\n", r.out);  // the image ID, also the last line on standard output
  ProcessResult inspect = run_kiln({"inspect", "labels:1"}, {}, {}, {store});
  ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
  EXPECT_THAT(inspect.out, HasSubstr("\"a\": \"from-flag\""));
  EXPECT_THAT(inspect.out, HasSubstr("\"b\": \"2\""));
  EXPECT_THAT(inspect.out, HasSubstr("\"Id\": \"" + id + "\""));
  ProcessResult tar =
      run_kiln({"build", "-o", "type=tar,dest=-", ctx_.path().string()}, {}, {}, {store});
  ASSERT_EQ(tar.exit_code, 0) << tar.err;
  // A tar stream on standard output: "ustar" magic at 257 and the member in it.
  ASSERT_GT(tar.out.size(), 1024u);
  EXPECT_EQ(tar.out.substr(257, 5), "ustar");
  EXPECT_THAT(tar.out, HasSubstr("a.txt"));
  EXPECT_THAT(tar.out, HasSubstr("a\n"));
}

TEST_F(Copy, EntrypointResetsOnlyAnInheritedCmd) {
  std::string store = "KILN_ROOT=" + (store_.path() / "store").string();
  auto config_of = [&](const std::string& containerfile) {
    write("Containerfile", containerfile);
    ProcessResult r = run_kiln({"build", "-t", "ep:1", ctx_.path().string()}, {}, {}, {store});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    ProcessResult inspect = run_kiln({"inspect", "ep:1"}, {}, {}, {store});
    return nlohmann::json::parse(inspect.out)["Config"]["config"];
  };
  nlohmann::json inherited =
      config_of("FROM scratch AS base\nCMD [\"base\"]\nFROM base\nENTRYPOINT [\"/app\"]\n");
  EXPECT_FALSE(inherited.contains("Cmd"));
  nlohmann::json same_stage = config_of("FROM scratch\nCMD [\"--help\"]\nENTRYPOINT /app --flag\n");
  EXPECT_EQ(same_stage["Cmd"], nlohmann::json({"--help"}));
  EXPECT_EQ(same_stage["Entrypoint"], nlohmann::json({"/bin/sh", "-c", "/app --flag"}));
  nlohmann::json shell =
      config_of("FROM scratch\nSHELL [\"/bin/bash\", \"-eu\", \"-c\"]\nCMD echo hi\n");
  EXPECT_EQ(shell["Cmd"], nlohmann::json({"/bin/bash", "-eu", "-c", "echo hi"}));
}

TEST_F(Copy, RunWithoutAShellInTheImageSaysSo) {
  ProcessResult r = build("FROM scratch\nRUN true\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("Containerfile:2:1: RUN: exec /bin/sh"));
}

}  // namespace
}  // namespace kiln::test
