// The standing adversarial suite: base images and ADD archives built to escape the build root or
// poison the store - path traversal, absolute names, writing through a symlink, hard links out of
// the root, whiteouts that climb, device nodes, setuid files, a compression bomb, a layer that is
// not its diff ID, a missing blob, and archive transports that name host files. The images are
// written by tests/support/hostile_archives.py (honest writers refuse to produce them) as OCI
// layouts (FROM oci:DIR), docker-archives and context tars (ADD).
//
// Each case runs the real kiln binary and expects its documented outcome: a clear error naming
// what was refused, or the safe result (an absolute name lands inside the image, a setuid file
// stays setuid inside a store only its owner can reach). After every case `kiln check` finds no
// problem, and sentinel files planted outside the build root - next to it, and where the hostile
// names point - are exactly as they were. The suite ends with one line:
//   hostile layers: N cases tried, N held
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kiln/base/fd.hpp"
#include "process.hpp"
#include "test_files.hpp"

namespace kiln::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using json = nlohmann::json;

constexpr const char* kEpoch = "SOURCE_DATE_EPOCH=1700000000";
const std::string kHelper = std::string(KILN_TEST_SUPPORT_DIR) + "/hostile_archives.py";
// A user for the rootless cases (the interop suite's: Debian's useradd gives it subuid ranges).
constexpr const char* kUser = "kiln-rootless";

std::string read(const fs::path& path) {
  return read_or(path, "<missing>");
}

// Everything observable about a tree without following symlinks: modes, owners, link counts,
// times, contents and link targets.
std::string describe(const fs::path& dir) {
  std::map<std::string, std::string> lines;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    struct stat st {};
    if (::lstat(e.path().c_str(), &st) != 0)
      continue;
    std::ostringstream line;
    line << std::oct << st.st_mode << std::dec << " " << st.st_uid << ":" << st.st_gid << " "
         << st.st_nlink << " " << st.st_mtim.tv_sec << "." << st.st_mtim.tv_nsec;
    if (S_ISREG(st.st_mode))
      line << " " << read(e.path());
    if (S_ISLNK(st.st_mode))
      line << " -> " << fs::read_symlink(e.path()).string();
    lines[fs::relative(e.path(), dir).string()] = line.str();
  }
  std::string out;
  for (const auto& [k, v] : lines)
    out += k + " " + v + "\n";
  return out;
}

// One hostile input and what must come of it.
struct Case {
  std::string name;
  std::string containerfile;  // built from the case's context into its output directory
  int exit_code = 0;
  std::vector<std::string> error;                  // substrings of stderr
  std::function<void(const fs::path& out)> holds;  // further checks on the output
  bool rootless = false;                           // built as kUser in its own store
};

class HostileLayers : public ::testing::Test {
 protected:
  void SetUp() override {
    // Traversable by the rootless user, which needs its own directories below.
    ASSERT_EQ(::chmod(dir().c_str(), 0711), 0);
    write(outside() / "sentinel", "the host's file\n");
    write(outside() / "dir/x", "another host file\n");
    fs::create_symlink("sentinel", outside() / "link");
    before_ = describe(outside());
  }

  fs::path dir() const { return work_.path(); }
  // The sentinels: beside the store and the build roots, and named by the hostile entries.
  fs::path outside() const { return dir() / "outside"; }
  fs::path store() const { return dir() / "store"; }
  fs::path context() const { return dir() / "ctx"; }
  fs::path rootless_home() const { return dir() / "rootless"; }

  // From the filesystem root up to the sentinel, climbing out of any build root: "../" enough
  // times, then the sentinel's absolute path without its leading "/".
  std::string climb_to(const fs::path& target) const {
    std::string up;
    for (int i = 0; i < 40; ++i)
      up += "../";
    return up + target.relative_path().string();
  }

  static void make(const std::string& kind, const fs::path& to, const json& spec) {
    fs::create_directories(to.parent_path());
    ProcessResult r = run_program({"python3", kHelper, kind, to.string(), spec.dump()});
    ASSERT_EQ(r.exit_code, 0) << kind << " " << to << ": " << r.err;
  }

  // An OCI layout with one layer of `entries`, named for FROM.
  std::string layout(const std::string& name, const json& entries,
                     const std::string& compression = "gzip") {
    fs::path path = dir() / "layouts" / name;
    make("layout", path, {{"layers", {{{"entries", entries}, {"compression", compression}}}}});
    return "oci:" + path.string();
  }

  // A tar in the context, for ADD.
  std::string context_tar(const std::string& name, const json& entries) {
    make("tar", context() / name, {{"entries", entries}, {"compression", "none"}});
    return name;
  }

  ProcessResult kiln(const std::vector<std::string>& args) {
    return run_kiln(args, {}, {}, {kEpoch, "KILN_ROOT=" + store().string()});
  }

  ProcessResult as_user(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"runuser",
                                     "-u",
                                     kUser,
                                     "--",
                                     "env",
                                     "KILN_ROOT=" + (rootless_home() / "store").string(),
                                     "HOME=" + rootless_home().string(),
                                     "TMPDIR=" + rootless_home().string(),
                                     kEpoch,
                                     KILN_BINARY};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_program(argv);
  }

  // Makes kUser (when missing) and hands it its directory. False when that is impossible here.
  bool rootless_ready() {
    if (::geteuid() != 0)
      return false;
    if (run_program({"id", kUser}).exit_code != 0 &&
        run_program({"useradd", "--create-home", "--shell", "/bin/sh", kUser}).exit_code != 0) {
      return false;
    }
    fs::create_directories(rootless_home());
    return run_program({"chown", "-R", kUser, rootless_home().string()}).exit_code == 0;
  }

  // How many failures the running test has reported so far.
  static int failures() {
    const ::testing::TestResult* result =
        ::testing::UnitTest::GetInstance()->current_test_info()->result();
    int failed = 0;
    for (int i = 0; i < result->total_part_count(); ++i)
      failed += result->GetTestPartResult(i).failed();
    return failed;
  }

  // Runs one case: the build, its outcome, `kiln check`, the sentinels. True when all held.
  bool run(const Case& c, size_t index) {
    SCOPED_TRACE("case: " + c.name);
    int failed_before = failures();
    fs::path ctx = c.rootless ? rootless_home() / "ctx" : context();
    fs::path out = (c.rootless ? rootless_home() : dir()) / ("out-" + std::to_string(index));
    write(ctx / "Containerfile", c.containerfile);
    if (c.rootless)
      run_program({"chown", "-R", kUser, rootless_home().string()});
    std::vector<std::string> args = {"build", "-o", "type=local,dest=" + out.string(),
                                     ctx.string()};
    ProcessResult r = c.rootless ? as_user(args) : kiln(args);
    EXPECT_EQ(r.exit_code, c.exit_code) << r.err;
    for (const std::string& text : c.error)
      EXPECT_THAT(r.err, HasSubstr(text));
    if (r.exit_code == 0 && c.holds)
      c.holds(out);
    ProcessResult check = c.rootless ? as_user({"check"}) : kiln({"check"});
    EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
    EXPECT_THAT(check.out, Not(HasSubstr("problem:")));
    EXPECT_EQ(describe(outside()), before_) << "a sentinel outside the build root changed";
    for (const char* escaped : {"/escaped", "/pwned"})
      EXPECT_FALSE(fs::exists(fs::symlink_status(escaped))) << escaped;
    return failures() == failed_before;
  }

  TempDir work_{{}, "kiln-hostile-"};
  std::string before_;
};

// A case whose input must be refused with an error containing each of `error`.
Case refused(std::string name, std::string containerfile, std::vector<std::string> error) {
  Case c;
  c.name = std::move(name);
  c.containerfile = std::move(containerfile);
  c.exit_code = 1;
  c.error = std::move(error);
  return c;
}

// A case whose input builds, into an output for which `holds` holds.
Case safe(std::string name, std::string containerfile,
          std::function<void(const fs::path&)> holds = {}) {
  Case c;
  c.name = std::move(name);
  c.containerfile = std::move(containerfile);
  c.holds = std::move(holds);
  return c;
}

Case rootless(Case c) {
  c.rootless = true;
  return c;
}

TEST_F(HostileLayers, EveryCaseHolds) {
  const fs::path sentinel = outside() / "sentinel";
  const std::string pwned = "pwned\n";
  const json file_at_sentinel = {{"name", sentinel.string()}, {"data", pwned}};
  const json symlink_out = {{"name", "esc"}, {"type", "symlink"}, {"linkname", outside().string()}};
  auto base = [](const std::string& from) { return "FROM " + from + "\nWORKDIR /w\n"; };
  auto add = [](const std::string& tar) { return "FROM scratch\nADD " + tar + " /\n"; };
  // An absolute name lands inside the image, at the same path.
  auto rerooted = [sentinel, pwned](const fs::path& out) {
    EXPECT_EQ(read(out / sentinel.relative_path()), pwned);
  };
  std::vector<Case> cases;

  // ---- base-image layers -----------------------------------------------------------------
  cases.push_back(refused("layer: ../ climbing out of the root",
                          base(layout("dotdot", {{{"name", climb_to(sentinel)}, {"data", pwned}}})),
                          {"\"..\" component"}));
  cases.push_back(
      refused("layer: a/../../ climbing out",
              base(layout("dotdot-mid", {{{"name", "a/../../escaped"}, {"data", pwned}}})),
              {"\"..\" component"}));
  cases.push_back(safe("layer: absolute name",
                       base(layout("absolute", json::array({file_at_sentinel}))), rerooted));
  cases.push_back(refused(
      "layer: symlink to a host directory, then a file through it",
      base(layout("symlink-abs", {symlink_out, {{"name", "esc/sentinel"}, {"data", pwned}}})),
      {"symbolic link that leads to no directory under the root"}));
  cases.push_back(safe(
      "layer: symlink climbing with .., then a file through it",
      base(layout("symlink-climb",
                  {{{"name", "up"}, {"type", "symlink"}, {"linkname", "../../../../../../../.."}},
                   {{"name", "up/escaped"}, {"data", pwned}}})),
      [pwned](const fs::path& out) { EXPECT_EQ(read(out / "escaped"), pwned); }));
  cases.push_back(
      safe("layer: file over a symlink to a host file",
           base(layout("symlink-replaced",
                       {{{"name", "f"}, {"type", "symlink"}, {"linkname", sentinel.string()}},
                        {{"name", "f"}, {"data", pwned}}})),
           [pwned](const fs::path& out) {
             EXPECT_FALSE(fs::is_symlink(out / "f"));
             EXPECT_EQ(read(out / "f"), pwned);
           }));
  cases.push_back(refused(
      "layer: hard link to a host file",
      base(layout("hardlink-abs",
                  {{{"name", "h"}, {"type", "hardlink"}, {"linkname", sentinel.string()}}})),
      {"does not exist under the root"}));
  cases.push_back(refused(
      "layer: hard link through a symlink to a host directory",
      base(layout(
          "hardlink-symlink",
          {symlink_out, {{"name", "h"}, {"type", "hardlink"}, {"linkname", "esc/sentinel"}}})),
      {"does not exist under the root"}));
  cases.push_back(refused(
      "layer: hard link climbing with ..",
      base(layout("hardlink-climb",
                  {{{"name", "h"}, {"type", "hardlink"}, {"linkname", climb_to(sentinel)}}})),
      {"\"..\" component"}));
  cases.push_back(refused("layer: whiteout climbing out (../.wh.x)",
                          base(layout("whiteout-climb", {{{"name", "../.wh.sentinel"}}})),
                          {"\"..\" component"}));
  cases.push_back(
      safe("layer: whiteout through a symlink to a host directory",
           base(layout("whiteout-symlink",
                       {{{"name", "w"}, {"type", "symlink"}, {"linkname", outside().string()}},
                        {{"name", "w/.wh.sentinel"}}}))));
  cases.push_back(safe(
      "layer: setuid-root file",
      base(layout("setuid", {{{"name", "bin/suid"}, {"data", "#!/bin/sh\n"}, {"mode", 04755}}})),
      [this](const fs::path& out) {
        // Kept, as Docker keeps it; the store holding the snapshot is its owner's alone.
        struct stat st {};
        ASSERT_EQ(::lstat((out / "bin/suid").c_str(), &st), 0);
        EXPECT_EQ(st.st_mode & 07777, ::geteuid() == 0 ? 04755u : 0755u);
        ASSERT_EQ(::stat(store().c_str(), &st), 0);
        EXPECT_EQ(st.st_mode & 07777, 0700u);
      }));
  {
    fs::path bomb = dir() / "layouts" / "bomb";
    make("layout", bomb, {{"layers", {{{"bomb", {{"name", "zeros"}, {"size", 5ll << 30}}}}}}});
    cases.push_back(refused("layer: zstd compression bomb (5 GiB of zeros in 200 KB)",
                            base("oci:" + bomb.string()), {"compression bomb", "\"zeros\""}));
    // The same stream as an ADD archive.
    fs::create_directories(context());
    for (const auto& e : fs::directory_iterator(bomb / "blobs" / "sha256")) {
      if (fs::file_size(e.path()) > 100000)
        fs::copy_file(e.path(), context() / "bomb.tar.zst");
    }
    cases.push_back(
        refused("ADD: zstd compression bomb", add("bomb.tar.zst"), {"compression bomb"}));
  }
  {
    // Image E's config claims image L's diff ID: unpacking E must not plant its files under
    // L's chain ID, and a later FROM L gets L's files.
    json real = {{{"name", "f"}, {"data", "the real base\n"}}};
    json impostor = {{{"name", "f"}, {"data", "the impostor\n"}}};
    fs::path l = dir() / "layouts" / "real";
    fs::path e = dir() / "layouts" / "impostor";
    make("layout", l, {{"layers", {{{"entries", real}}}}});
    json index = json::parse(read(l / "index.json"));
    std::string manifest = index["manifests"][0]["digest"].get<std::string>().substr(7);
    json config_ref = json::parse(read(l / "blobs/sha256" / manifest))["config"];
    std::string real_diff_id = json::parse(
        read(l / "blobs/sha256" /
             config_ref["digest"].get<std::string>().substr(7)))["rootfs"]["diff_ids"][0];
    make("layout", e, {{"layers", {{{"entries", impostor}}}}, {"diff_ids", {real_diff_id}}});
    cases.push_back(refused("layer: content is not its diff ID (snapshot poisoning)",
                            base("oci:" + e.string()), {"diff ID mismatch", real_diff_id}));
    cases.push_back(
        safe("layer: the image the impostor claimed to be is unpoisoned", base("oci:" + l.string()),
             [](const fs::path& out) { EXPECT_EQ(read(out / "f"), "the real base\n"); }));
  }
  {
    fs::path missing = dir() / "layouts" / "missing";
    make("layout", missing,
         {{"layers", {{{"entries", {{{"name", "f"}, {"data", "x"}}}}}}}, {"missing", {0}}});
    cases.push_back(refused("layer: blob missing from the layout", base("oci:" + missing.string()),
                            {"blobs/sha256/", "No such file or directory"}));
  }
  {
    // docker-archive: manifest.json naming host files, directly or through a member symlink.
    std::string secret = (outside() / "dir" / "x").string();
    json layer = {{"entries", {{{"name", "f"}, {"data", "x"}}}}};
    fs::path archives = dir() / "archives";
    make("docker-archive", archives / "abs.tar", {{"layers", {layer}}, {"layer_paths", {secret}}});
    make("docker-archive", archives / "climb.tar",
         {{"layers", {layer}}, {"layer_paths", {climb_to(fs::path(secret))}}});
    make("docker-archive", archives / "member.tar",
         {{"layers", {layer}},
          {"layer_paths", {"evil.tar"}},
          {"members", {{{"name", "evil.tar"}, {"type", "symlink"}, {"linkname", secret}}}}});
    cases.push_back(refused("docker-archive: layer path is a host path",
                            base("docker-archive:" + (archives / "abs.tar").string()),
                            {"is not a path inside the archive"}));
    cases.push_back(refused("docker-archive: layer path climbs out with ..",
                            base("docker-archive:" + (archives / "climb.tar").string()),
                            {"leads outside the archive"}));
    cases.push_back(refused("docker-archive: layer is a symlink to a host file",
                            base("docker-archive:" + (archives / "member.tar").string()),
                            {"leads outside the archive"}));
  }

  // ---- ADD archives ----------------------------------------------------------------------
  cases.push_back(
      refused("ADD: ../ climbing out",
              add(context_tar("dotdot.tar", {{{"name", "../../escaped"}, {"data", pwned}}})),
              {"climbs out of the archive"}));
  cases.push_back(safe("ADD: absolute name",
                       add(context_tar("absolute.tar", json::array({file_at_sentinel}))),
                       rerooted));
  cases.push_back(refused(
      "ADD: symlink to a host directory, then a file through it",
      add(context_tar("symlink.tar", {symlink_out, {{"name", "esc/sentinel"}, {"data", pwned}}})),
      {"cannot extract archive"}));
  cases.push_back(refused(
      "ADD: hard link to a host file",
      add(context_tar("hardlink.tar",
                      {{{"name", "h"}, {"type", "hardlink"}, {"linkname", sentinel.string()}}})),
      {"cannot extract archive"}));
  cases.push_back(refused(
      "ADD: hard link through a symlink to a host directory",
      add(context_tar(
          "hardlink-symlink.tar",
          {symlink_out, {{"name", "h"}, {"type", "hardlink"}, {"linkname", "esc/sentinel"}}})),
      {"cannot extract archive"}));
  cases.push_back(refused("ADD: whiteout climbing out (../.wh.x)",
                          add(context_tar("whiteout.tar", {{{"name", "../.wh.sentinel"}}})),
                          {"climbs out of the archive"}));
  cases.push_back(
      safe("ADD: setuid-root file",
           add(context_tar("setuid.tar",
                           {{{"name", "suid"}, {"data", "#!/bin/sh\n"}, {"mode", 04755}}})),
           [](const fs::path& out) {
             struct stat st {};
             ASSERT_EQ(::lstat((out / "suid").c_str(), &st), 0);
             EXPECT_EQ(st.st_mode & 07777, ::geteuid() == 0 ? 04755u : 0755u);
           }));

  // ---- rootless: devices ------------------------------------------------------------------
  bool can_run_rootless = rootless_ready();
  if (can_run_rootless) {
    json devices = {{{"name", "dev/evil-mem"}, {"type", "chr"}, {"devmajor", 1}, {"devminor", 1}},
                    {{"name", "dev/evil-disk"}, {"type", "blk"}, {"devmajor", 8}, {"devminor", 0}},
                    {{"name", "ok"}, {"data", "ok\n"}}};
    fs::path layouts = rootless_home() / "layouts";
    make("layout", layouts / "devices", {{"layers", {{{"entries", devices}}}}});
    make("tar", rootless_home() / "ctx" / "devices.tar",
         {{"entries", devices}, {"compression", "none"}});
    // Skipped (an unprivileged user cannot make them), the rest of the layer applied.
    cases.push_back(
        rootless(safe("layer: device nodes (rootless)",
                      base("oci:" + (layouts / "devices").string()), [](const fs::path& out) {
                        EXPECT_EQ(read(out / "ok"), "ok\n");
                        EXPECT_FALSE(fs::exists(fs::symlink_status(out / "dev/evil-mem")));
                        EXPECT_FALSE(fs::exists(fs::symlink_status(out / "dev/evil-disk")));
                      })));
    cases.push_back(rootless(
        refused("ADD: device nodes (rootless)", add("devices.tar"), {"cannot extract archive"})));
  }

  size_t held = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    if (run(cases[i], i))
      ++held;
  }
  std::cout << "hostile layers: " << cases.size() << " cases tried, " << held << " held"
            << std::endl;
  EXPECT_EQ(held, cases.size());
  if (!can_run_rootless)
    std::cout << "(the rootless device cases need root to create " << kUser << ")" << std::endl;
}

}  // namespace
}  // namespace kiln::test
