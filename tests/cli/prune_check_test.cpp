// `kiln prune` and `kiln check` on a store the real kiln binary built: what a user sees after
// builds, a corrupted blob, leftovers of a killed build, rmi.
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
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

class PruneCheck : public ::testing::Test {
 protected:
  void SetUp() override {
    write(ctx_.path() / "a.txt", "a\n");
    write(ctx_.path() / "Containerfile", "FROM scratch\nCOPY a.txt /a.txt\n");
  }

  static void write(const fs::path& path, const std::string& content) {
    fs::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << content;
  }

  fs::path root() const { return dir_.path() / "store"; }
  fs::path blobs() const { return root() / "blobs" / "sha256"; }

  ProcessResult kiln(const std::vector<std::string>& args) const {
    return run_kiln(args, {}, {}, {"KILN_ROOT=" + root().string()});
  }

  void build(const std::string& tag) const {
    ProcessResult r = kiln({"build", "-t", tag, ctx_.path().string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  // The digest hex of the first layer of `image`.
  std::string layer_of(const std::string& image) const {
    ProcessResult r = kiln({"inspect", image});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::string digest = nlohmann::json::parse(r.out)["Manifest"]["layers"][0]["digest"];
    return digest.substr(7);
  }

  size_t blob_count() const {
    size_t n = 0;
    for ([[maybe_unused]] const auto& entry : fs::directory_iterator(blobs()))
      ++n;
    return n;
  }

  TempDir ctx_{{}, "kiln-prune-ctx-"};
  TempDir dir_{{}, "kiln-prune-store-"};
};

TEST_F(PruneCheck, CheckOfAFreshBuildIsClean) {
  build("app:1");
  ProcessResult r = kiln({"check"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("checked 3 blobs, 1 image, "));
  EXPECT_THAT(r.out, HasSubstr(": OK\n"));
  EXPECT_THAT(r.out, Not(HasSubstr("problem:")));
}

TEST_F(PruneCheck, CheckNamesACorruptBlobAndFails) {
  build("app:1");
  std::string layer = layer_of("app:1");
  fs::path path = blobs() / layer;
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  ASSERT_FALSE(bytes.empty());
  bytes[bytes.size() / 2] ^= 0x01;
  write(path, bytes);

  ProcessResult r = kiln({"check"});

  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out,
              AllOf(HasSubstr("problem: "), HasSubstr(layer),
                    HasSubstr("content does not match its name"), HasSubstr(": 1 problem\n")));
}

TEST_F(PruneCheck, PruneKeepsTaggedImagesAndRemovesStrayBlobs) {
  build("app:1");
  write(blobs() / std::string(64, 'e'), "a blob nothing references");

  ProcessResult r = kiln({"prune"});

  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("Deleted 1 blob, 0 snapshots, 0 cache records, 0 cache mounts; "
                               "reclaimed "));
  EXPECT_FALSE(fs::exists(blobs() / std::string(64, 'e')));
  EXPECT_THAT(kiln({"images"}).out, HasSubstr("app:1"));
  ProcessResult check = kiln({"check"});
  EXPECT_EQ(check.exit_code, 0) << check.out;
  // The image still builds from the cache prune kept.
  build("app:2");
}

TEST_F(PruneCheck, RmiThenPruneAllEmptiesTheStore) {
  build("app:1");
  ASSERT_EQ(kiln({"rmi", "app:1"}).exit_code, 0);

  ProcessResult r = kiln({"prune", "--all", "--force"});

  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("Deleted 3 blobs, 0 snapshots, 1 cache record, "));
  EXPECT_EQ(blob_count(), 0u);
  ProcessResult check = kiln({"check"});
  EXPECT_EQ(check.exit_code, 0);
  EXPECT_THAT(check.out, HasSubstr("checked 0 blobs, 0 images, 0 cache records, 0 snapshots: OK"));
}

TEST_F(PruneCheck, LeftoversAreReportedByCheckAndRemovedByPrune) {
  build("app:1");
  write(root() / "ingest" / "blob.999999999.0.tmp", "half a blob of a killed build");

  ProcessResult check = kiln({"check"});
  EXPECT_EQ(check.exit_code, 0);
  EXPECT_THAT(check.out, HasSubstr("leftover: "));
  EXPECT_THAT(check.out, HasSubstr("blob.999999999.0.tmp"));

  ProcessResult prune = kiln({"prune"});
  EXPECT_EQ(prune.exit_code, 0) << prune.err;
  EXPECT_THAT(prune.out, HasSubstr("Removed 1 temporary file"));
  EXPECT_THAT(kiln({"check"}).out, Not(HasSubstr("leftover:")));
}

TEST_F(PruneCheck, FilterAndKeepStorageAreAccepted) {
  build("app:1");
  for (const char* size : {"4096", "512MB", "10g", "1.5GiB", "2kib"}) {
    ProcessResult r = kiln({"prune", "--keep-storage", size, "--filter", "until=24h"});
    EXPECT_EQ(r.exit_code, 0) << size << ": " << r.err;
  }
  EXPECT_THAT(kiln({"images"}).out, HasSubstr("app:1"));
}

TEST_F(PruneCheck, BadFlagsAreUsageErrors) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {{"prune", "--keep-storage", "lots"}, "--keep-storage \"lots\": not a size"},
           {{"prune", "--keep-storage", "10XB"}, "not a size"},
           {{"prune", "--filter", "label=a"}, "the only filter is until=DURATION"},
           {{"prune", "--filter", "until"}, "the only filter is until=DURATION"},
           {{"prune", "--filter", "until=soon"}, "\"until=soon\": not a duration"},
           {{"prune", "extra"}, "too many arguments"},
           {{"check", "extra"}, "too many arguments"},
           {{"check", "--all"}, "unrecognised option"},
       }) {
    ProcessResult r = kiln(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args[1];
    EXPECT_THAT(r.err, HasSubstr(c.message)) << c.args[1];
    EXPECT_THAT(r.err, HasSubstr("See 'kiln " + c.args[0] + " --help'.")) << c.args[1];
  }
}

TEST_F(PruneCheck, HelpDescribesBothCommands) {
  ProcessResult prune = kiln({"prune", "--help"});
  EXPECT_EQ(prune.exit_code, 0);
  EXPECT_THAT(prune.out, AllOf(HasSubstr("Usage: kiln prune"), HasSubstr("--keep-storage")));
  ProcessResult check = kiln({"check", "--help"});
  EXPECT_EQ(check.exit_code, 0);
  EXPECT_THAT(check.out, HasSubstr("Usage: kiln check"));
  EXPECT_THAT(kiln({"--help"}).out, HasSubstr("check"));
}

}  // namespace
}  // namespace kiln::test
