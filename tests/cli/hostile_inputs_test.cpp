// Inputs that try to reach the host or poison the store, through the real kiln binary: archive
// transports naming host files, a store other users could walk into, ADD on a full disk, ADD
// archives that only imply directories, and a build context given as a symlink. Each test builds
// the attack first and states what must hold.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "kiln/base/fd.hpp"
#include "process.hpp"
#include "test_files.hpp"

namespace kiln::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

const std::string kHelper = std::string(KILN_SOURCE_DIR) + "/tests/support/hostile_archives.py";

std::string read(const fs::path& path) {
  return read_or(path, "<missing>");
}

class HostileInputs : public ::testing::Test {
 protected:
  void SetUp() override { fs::create_directories(ctx()); }

  fs::path dir() const { return dir_.path(); }
  fs::path store() const { return dir() / "store"; }
  fs::path ctx() const { return dir() / "ctx"; }
  fs::path out() const { return dir() / "out"; }

  ProcessResult kiln(const std::vector<std::string>& args, std::vector<std::string> env = {}) {
    env.push_back("KILN_ROOT=" + store().string());
    env.push_back("SOURCE_DATE_EPOCH=1700000000");
    return run_kiln(args, {}, {}, env);
  }

  // Builds `containerfile` in ctx() into out() (-o type=local).
  ProcessResult build(const std::string& containerfile, std::vector<std::string> env = {}) {
    write(ctx() / "Containerfile", containerfile);
    fs::remove_all(out());
    return kiln({"build", "-o", "type=local,dest=" + out().string(), ctx().string()},
                std::move(env));
  }

  // Runs the helper that writes hostile archives (tests/support/hostile_archives.py).
  static void make(const std::string& kind, const fs::path& to, const nlohmann::json& spec) {
    ProcessResult r = run_program({"python3", kHelper, kind, to.string(), spec.dump()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  void expect_check_clean() {
    ProcessResult check = kiln({"check"});
    EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
    EXPECT_THAT(check.out, Not(HasSubstr("problem:")));
  }

  // Whether the store holds no cache record (a failed step must leave none).
  bool no_records() const {
    std::error_code ec;
    return !fs::exists(store() / "cache" / "records") ||
           fs::is_empty(store() / "cache" / "records", ec);
  }

  // Every blob in the store, as "sha256:HEX".
  std::set<std::string> blobs() const {
    std::set<std::string> all;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(store() / "blobs" / "sha256", ec))
      all.insert("sha256:" + e.path().filename().string());
    return all;
  }

  TempDir dir_{{}, "kiln-hostile-inputs-"};
};

// ---- archive transports read only what is inside the archive --------------------------------

TEST_F(HostileInputs, DockerArchiveCannotNameHostFiles) {
  // The host file an attacker wants in the image: a valid tar, so that nothing but the path
  // check stands between it and the store.
  fs::path secret = dir() / "host-secret.tar";
  make("tar", secret,
       {{"entries", {{{"name", "secret"}, {"data", "host secret"}}}}, {"compression", "none"}});
  nlohmann::json layer = {{"entries", {{{"name", "secret"}, {"data", "host secret"}}}}};
  std::string climb;
  for (int i = 0; i < 32; ++i)
    climb += "../";
  struct Case {
    std::string name;
    nlohmann::json spec;
    std::string error;
  };
  std::vector<Case> cases = {
      {"absolute",
       {{"layers", {layer}}, {"layer_paths", {secret.string()}}},
       "is not a path inside the archive"},
      {"dotdot",
       {{"layers", {layer}}, {"layer_paths", {climb + secret.relative_path().string()}}},
       "leads outside the archive"},
      {"symlink member",
       {{"layers", {layer}},
        {"layer_paths", {"evil.tar"}},
        {"members", {{{"name", "evil.tar"}, {"type", "symlink"}, {"linkname", secret.string()}}}}},
       "leads outside the archive"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    fs::path archive = dir() / ("archive-" + std::to_string(&c - cases.data()) + ".tar");
    make("docker-archive", archive, c.spec);
    std::set<std::string> before = blobs();
    ProcessResult r = build("FROM docker-archive:" + archive.string() + "\nWORKDIR /w\n");
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.error));
    EXPECT_FALSE(fs::exists(out() / "secret"));
    EXPECT_EQ(blobs(), before);
    expect_check_clean();
  }
}

TEST_F(HostileInputs, DockerArchiveLayersMustMatchTheirDiffIds) {
  nlohmann::json honest = {{"entries", {{{"name", "f"}, {"data", "honest"}}}}};
  nlohmann::json other = {{"entries", {{{"name", "f"}, {"data", "other"}}}}};
  fs::path good = dir() / "good.tar";
  make("docker-archive", good, {{"layers", {honest}}});
  // A layer whose content is not what the config says.
  fs::path lying = dir() / "lying.tar";
  make("docker-archive", lying, {{"layers", {other}}});
  {
    // Give the lying archive the honest one's config.
    fs::path unpacked = dir() / "unpacked";
    fs::create_directories(unpacked);
    ASSERT_EQ(run_program({"tar", "xf", good.string(), "-C", unpacked.string()}).exit_code, 0);
    fs::path lies = dir() / "lies";
    fs::create_directories(lies);
    ASSERT_EQ(run_program({"tar", "xf", lying.string(), "-C", lies.string()}).exit_code, 0);
    fs::copy_file(lies / "layer0/layer.tar", unpacked / "layer0/layer.tar",
                  fs::copy_options::overwrite_existing);
    ASSERT_EQ(run_program({"tar", "cf", lying.string(), "-C", unpacked.string(), "."}).exit_code,
              0);
  }
  std::set<std::string> before = blobs();
  ProcessResult r = build("FROM docker-archive:" + lying.string() + "\nWORKDIR /w\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("layer \"layer0/layer.tar\" has diff ID"));
  EXPECT_THAT(r.err, HasSubstr("nothing was imported"));
  EXPECT_EQ(blobs(), before);
  expect_check_clean();

  ProcessResult ok = build("FROM docker-archive:" + good.string() + "\nWORKDIR /w\n");
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(read(out() / "f"), "honest");
  expect_check_clean();
}

// ---- the store is private to its owner ------------------------------------------------------

TEST_F(HostileInputs, AnotherUserCannotReachAnythingUnderTheStore) {
  if (::geteuid() != 0)
    GTEST_SKIP() << "needs root: the image's setuid binary must be owned by root";
  // An image with a setuid-root `id`: whoever runs it out of the snapshot runs it as root.
  fs::path tree = dir() / "suid-tree";
  fs::create_directories(tree / "bin");
  fs::copy_file("/usr/bin/id", tree / "bin/id");
  ASSERT_EQ(::chown((tree / "bin/id").c_str(), 0, 0), 0);
  ASSERT_EQ(::chmod((tree / "bin/id").c_str(), 04755), 0);
  ASSERT_EQ(run_program({"tar", "cf", (ctx() / "suid.tar").string(), "-C", tree.string(), "bin"})
                .exit_code,
            0);
  // A store an older kiln made: world-traversable. Only the store may stand in the way: the
  // directories above it are open to everyone.
  fs::create_directories(store());
  ASSERT_EQ(::chmod(store().c_str(), 0755), 0);
  ASSERT_EQ(::chmod(dir().c_str(), 0711), 0);
  write(ctx() / "Containerfile", "FROM scratch\nADD suid.tar /\n");
  ProcessResult image = kiln({"build", "-t", "suid:1", ctx().string()});
  ASSERT_EQ(image.exit_code, 0) << image.err;
  // FROM it, with a step that needs its files: the image is unpacked into a snapshot.
  ProcessResult from = build("FROM suid:1\nWORKDIR /w\n");
  ASSERT_EQ(from.exit_code, 0) << from.err;
  fs::path suid;
  for (const auto& e : fs::directory_iterator(store() / "snapshots")) {
    if (fs::exists(e.path() / "bin/id"))
      suid = e.path() / "bin/id";
  }
  ASSERT_FALSE(suid.empty()) << "no snapshot holds bin/id";
  struct stat st {};
  ASSERT_EQ(::stat(suid.c_str(), &st), 0);
  ASSERT_EQ(st.st_mode & 07777, 04755u) << "the image's setuid bit is kept, as Docker keeps it";

  ASSERT_EQ(::stat(store().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  auto as_nobody = [](const std::vector<std::string>& command) {
    std::vector<std::string> argv = {"runuser", "-u", "nobody", "--"};
    argv.insert(argv.end(), command.begin(), command.end());
    return run_program(argv);
  };
  ProcessResult run = as_nobody({suid.string(), "-u"});
  EXPECT_NE(run.exit_code, 0) << "nobody ran " << suid << " and got euid " << run.out;
  EXPECT_THAT(run.err, HasSubstr("Permission denied"));
  for (const fs::path& path : {store(), store() / "snapshots", store() / "blobs"}) {
    ProcessResult ls = as_nobody({"ls", path.string()});
    EXPECT_NE(ls.exit_code, 0) << path;
  }
  expect_check_clean();
}

// ---- a failed write fails the step, and no cache record remembers it -------------------------

class HostileInputsOnTmpfs : public HostileInputs {
 protected:
  void TearDown() override {
    for (const fs::path& m : mounts_)
      run_program({"umount", "-l", m.string()});
  }

  // A 2 MiB tmpfs at `at`.
  void small_tmpfs(const fs::path& at) {
    fs::create_directories(at);
    ProcessResult r = run_program({"mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", at.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    mounts_.push_back(at);
  }

  std::vector<fs::path> mounts_;
};

TEST_F(HostileInputsOnTmpfs, AddOnAFullTempDirectoryFailsAndIsNotCached) {
  if (::geteuid() != 0)
    GTEST_SKIP() << "mounting a tmpfs needs root";
  write(dir() / "big/payload", noise(4 << 20));
  ASSERT_EQ(run_program({"tar", "czf", (ctx() / "big.tar.gz").string(), "-C",
                         (dir() / "big").string(), "payload"})
                .exit_code,
            0);
  fs::path full = dir() / "full-tmp";
  small_tmpfs(full);
  const std::string file = "FROM scratch\nADD big.tar.gz /\n";

  ProcessResult failed = build(file, {"TMPDIR=" + full.string()});
  EXPECT_EQ(failed.exit_code, 1) << failed.err;
  EXPECT_THAT(failed.err, HasSubstr("No space left on device"));
  EXPECT_THAT(failed.err, HasSubstr("big.tar.gz"));
  EXPECT_TRUE(no_records());
  expect_check_clean();

  ProcessResult again = build(file);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.err, Not(HasSubstr("CACHED")));
  EXPECT_EQ(fs::file_size(out() / "payload"), size_t{4} << 20);
}

TEST_F(HostileInputsOnTmpfs, AddIntoAFullStoreFailsAndIsNotCached) {
  if (::geteuid() != 0)
    GTEST_SKIP() << "mounting a tmpfs needs root";
  write(dir() / "big/payload", noise(4 << 20));
  ASSERT_EQ(run_program({"tar", "czf", (ctx() / "big.tar.gz").string(), "-C",
                         (dir() / "big").string(), "payload"})
                .exit_code,
            0);
  small_tmpfs(store());
  const std::string file = "FROM scratch\nADD big.tar.gz /\n";
  ProcessResult failed = build(file);
  EXPECT_EQ(failed.exit_code, 1) << failed.err;
  EXPECT_THAT(failed.err, HasSubstr("No space left on device"));
  EXPECT_TRUE(no_records());
  expect_check_clean();
  run_program({"umount", "-l", store().string()});
  mounts_.clear();
  ProcessResult again = build(file);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.err, Not(HasSubstr("CACHED")));
  EXPECT_EQ(fs::file_size(out() / "payload"), size_t{4} << 20);
}

// ---- ADD keeps the directories an archive only implies ---------------------------------------

TEST_F(HostileInputs, AddKeepsTheModeAndOwnerOfDirectoriesTheArchiveOnlyImplies) {
  if (::geteuid() != 0)
    GTEST_SKIP() << "owners are only kept when running as root";
  fs::create_directories(ctx() / "empty");
  // tmp/x and new/y, but no entry for tmp/ or new/ themselves.
  make("tar", ctx() / "a.tar",
       {{"entries", {{{"name", "tmp/x"}, {"data", "x"}}, {{"name", "new/y"}, {"data", "y"}}}},
        {"compression", "none"}});
  ProcessResult r =
      build("FROM scratch\nCOPY --chown=1000:1000 --chmod=1777 empty /tmp\nADD a.tar /\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  struct stat st {};
  ASSERT_EQ(::lstat((out() / "tmp").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 01777u);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_gid, 1000u);
  EXPECT_EQ(read(out() / "tmp/x"), "x");
  ASSERT_EQ(::lstat((out() / "new").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(read(out() / "new/y"), "y");

  // A directory the archive does list takes the archive's mode.
  make("tar", ctx() / "b.tar",
       {{"entries",
         {{{"name", "tmp"}, {"type", "dir"}, {"mode", 0750}}, {{"name", "tmp/z"}, {"data", "z"}}}},
        {"compression", "none"}});
  r = build("FROM scratch\nCOPY --chmod=1777 empty /tmp\nADD b.tar /\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(::lstat((out() / "tmp").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
}

// ---- a context given as a symlink is the directory it names ----------------------------------

TEST_F(HostileInputs, AContextThatIsASymlinkCopiesTheDirectory) {
  write(ctx() / "a.txt", "a\n");
  write(ctx() / "sub/b.txt", "b\n");
  write(ctx() / "Containerfile", "FROM scratch\nCOPY . /\n");
  fs::path link = dir() / "link-to-ctx";
  fs::create_directory_symlink(ctx(), link);
  ProcessResult r = kiln({"build", "-o", "type=local,dest=" + out().string(), link.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read(out() / "a.txt"), "a\n");
  EXPECT_EQ(read(out() / "sub/b.txt"), "b\n");
  struct stat st {};
  ASSERT_EQ(::lstat(out().c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  for (const auto& e : fs::recursive_directory_iterator(out()))
    EXPECT_FALSE(fs::is_symlink(e.symlink_status())) << e.path();
}

}  // namespace
}  // namespace kiln::test
