// The CONTEXT forms buildah, podman build and docker build take besides a directory: "-" (a tar
// or a Containerfile on standard input), a local tar archive, an http(s) tar archive and a git
// repository with #REF:SUBDIR, each checked on the image's filesystem. The archive and the
// repository are served by a Python HTTP server on 127.0.0.1 the test starts and stops.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "kiln/base/fd.hpp"
#include "process.hpp"
#include "registry_fixture.hpp"

namespace kiln::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class ContextSource : public ::testing::Test {
 protected:
  void SetUp() override {
    src_ = work_.path() / "src";
    write(src_ / "Containerfile", "FROM scratch\nCOPY . /ctx/\n");
    write(src_ / "a.txt", "a\n");
    write(src_ / "sub/Containerfile", "FROM scratch\nCOPY b.txt /\n");
    write(src_ / "sub/b.txt", "b\n");
    ASSERT_EQ(run_program(
                  {"tar", "czf", (work_.path() / "ctx.tar.gz").string(), "-C", src_.string(), "."})
                  .exit_code,
              0);
  }

  static void write(const fs::path& p, const std::string& text) {
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
  }
  static std::string read(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return in ? std::string(std::istreambuf_iterator<char>(in), {}) : "<missing>";
  }

  ProcessResult build(const std::string& context, const std::string& input = {}) {
    fs::remove_all(out());
    return run_kiln({"build", "-o", "type=local,dest=" + out().string(), context}, {}, input,
                    {"KILN_ROOT=" + (work_.path() / "store").string()});
  }
  fs::path out() const { return work_.path() / "out"; }

  TempDir work_;
  fs::path src_;
};

TEST_F(ContextSource, StandardInputTarOrContainerfile) {
  ProcessResult tar = build("-", read(work_.path() / "ctx.tar.gz"));
  ASSERT_EQ(tar.exit_code, 0) << tar.err;
  EXPECT_EQ(read(out() / "ctx/a.txt"), "a\n");
  EXPECT_EQ(read(out() / "ctx/sub/b.txt"), "b\n");
  ProcessResult file = build("-", "FROM scratch\nLABEL from=stdin\n");
  ASSERT_EQ(file.exit_code, 0) << file.err;
  ProcessResult empty = build("-", "");
  EXPECT_EQ(empty.exit_code, 1);
  EXPECT_THAT(empty.err, HasSubstr("standard input is empty"));
}

TEST_F(ContextSource, LocalArchive) {
  ProcessResult r = build((work_.path() / "ctx.tar.gz").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read(out() / "ctx/a.txt"), "a\n");
  ProcessResult missing = build((work_.path() / "nope.tar").string());
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("does not exist"));
  ProcessResult not_archive = build((src_ / "a.txt").string());
  EXPECT_EQ(not_archive.exit_code, 1);
  EXPECT_THAT(not_archive.err, HasSubstr("neither a directory nor a tar archive"));
}

TEST_F(ContextSource, ArchiveAndGitRepositoryOverHttp) {
  // A repository served over git's "dumb" HTTP protocol: plain files and info/refs.
  fs::path served = work_.path() / "served";
  fs::create_directories(served);
  fs::copy_file(work_.path() / "ctx.tar.gz", served / "ctx.tar.gz");
  std::string repo = (work_.path() / "repo").string();
  auto git = [&](const std::vector<std::string>& args) {
    std::vector<std::string> argv = {
        "git", "-C", repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid"};
    argv.insert(argv.end(), args.begin(), args.end());
    ProcessResult r = run_program(argv);
    EXPECT_EQ(r.exit_code, 0) << r.err;
  };
  fs::copy(src_, repo, fs::copy_options::recursive);
  git({"init", "-q", "-b", "main"});
  git({"add", "."});
  git({"commit", "-q", "-m", "one"});
  git({"tag", "v1"});
  write(fs::path(repo) / "sub/b.txt", "b2\n");
  git({"commit", "-q", "-am", "two"});
  ProcessResult bare =
      run_program({"git", "clone", "-q", "--bare", repo, (served / "repo.git").string()});
  ASSERT_EQ(bare.exit_code, 0) << bare.err;
  ASSERT_EQ(
      run_program({"git", "-C", (served / "repo.git").string(), "update-server-info"}).exit_code,
      0);
  int port = free_port();
  BackgroundProcess server({"python3", "-m", "http.server", "--bind", "127.0.0.1",
                            std::to_string(port), "--directory", served.string()},
                           work_.path() / "http.log");
  ASSERT_TRUE(wait_for_http(port)) << server.output();
  std::string base = "http://127.0.0.1:" + std::to_string(port);

  ProcessResult archive = build(base + "/ctx.tar.gz");
  ASSERT_EQ(archive.exit_code, 0) << archive.err;
  EXPECT_EQ(read(out() / "ctx/a.txt"), "a\n");

  ProcessResult head = build(base + "/repo.git#main:sub");
  ASSERT_EQ(head.exit_code, 0) << head.err;
  EXPECT_EQ(read(out() / "b.txt"), "b2\n");
  ProcessResult tag = build(base + "/repo.git#v1:sub");
  ASSERT_EQ(tag.exit_code, 0) << tag.err;
  EXPECT_EQ(read(out() / "b.txt"), "b\n");
  ProcessResult whole = build(base + "/repo.git");
  ASSERT_EQ(whole.exit_code, 0) << whole.err;
  EXPECT_EQ(read(out() / "ctx/a.txt"), "a\n");
  EXPECT_FALSE(fs::exists(out() / "ctx/.git"));

  // The same forms name --build-context contexts, each fetched into a directory of its own.
  fs::path named = work_.path() / "named";
  write(named / "Containerfile",
        "FROM scratch\nCOPY --from=git b.txt /git.txt\nCOPY --from=web a.txt /web.txt\n"
        "COPY --from=tar sub/b.txt /tar.txt\n");
  fs::remove_all(out());
  ProcessResult contexts = run_kiln(
      {"build", "-o", "type=local,dest=" + out().string(), "--build-context",
       "git=" + base + "/repo.git#v1:sub", "--build-context", "web=" + base + "/ctx.tar.gz",
       "--build-context", "tar=" + (work_.path() / "ctx.tar.gz").string(), named.string()},
      {}, {}, {"KILN_ROOT=" + (work_.path() / "store").string()});
  ASSERT_EQ(contexts.exit_code, 0) << contexts.err;
  EXPECT_EQ(read(out() / "git.txt"), "b\n");
  EXPECT_EQ(read(out() / "web.txt"), "a\n");
  EXPECT_EQ(read(out() / "tar.txt"), "b\n");
  ProcessResult bad_context =
      run_kiln({"build", "--build-context", "git=" + base + "/repo.git#nosuchref", named.string()},
               {}, {}, {"KILN_ROOT=" + (work_.path() / "store").string()});
  EXPECT_EQ(bad_context.exit_code, 1);
  EXPECT_THAT(bad_context.err, HasSubstr("--build-context git: "));

  ProcessResult no_ref = build(base + "/repo.git#nosuchref");
  EXPECT_EQ(no_ref.exit_code, 1);
  EXPECT_THAT(no_ref.err, HasSubstr("git fetch failed"));
  ProcessResult escape = build(base + "/repo.git#main:../..");
  EXPECT_EQ(escape.exit_code, 1);
  EXPECT_THAT(escape.err, HasSubstr("leaves the repository"));
  ProcessResult gone = build(base + "/missing.tar");
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_THAT(gone.err, HasSubstr("build context: download of " + base +
                                  "/missing.tar failed: "
                                  "HTTP 404"));
}

}  // namespace
}  // namespace kiln::test
