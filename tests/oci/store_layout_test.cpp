#include "kiln/oci/store_layout.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kiln/base/fd.hpp"
#include "kiln/oci/store.hpp"

namespace kiln::oci {
namespace {

namespace fs = std::filesystem;

// The names are the on-disk format: stores written by earlier kiln versions, and kiln processes
// running beside this one, use exactly these.
TEST(StoreLayout, NamesThePathsOfTheOnDiskFormat) {
  StoreLayout layout("/r");
  Digest blob = sha256_of("blob");
  EXPECT_EQ(layout.oci_layout(), "/r/oci-layout");
  EXPECT_EQ(layout.index(), "/r/index.json");
  EXPECT_EQ(layout.index_lock(), "/r/index.lock");
  EXPECT_EQ(layout.blobs(), "/r/blobs");
  EXPECT_EQ(layout.blob(blob), "/r/blobs/sha256/" + blob.hex());
  EXPECT_EQ(layout.ingest(), "/r/ingest");
  EXPECT_EQ(layout.gc_lock(), "/r/gc.lock");
  EXPECT_EQ(layout.lease("ID"), "/r/leases/ID");
  EXPECT_EQ(layout.lease_tmp("ID"), "/r/tmp/ID");
  EXPECT_EQ(layout.snapshots(), "/r/snapshots");
  EXPECT_EQ(layout.records(), "/r/cache/records");
  EXPECT_EQ(layout.context_caches(), "/r/cache/context");
  EXPECT_EQ(layout.cache_mount("HEX"), "/r/cache-mounts/HEX");
  EXPECT_EQ(layout.cache_mount_lock("HEX"), "/r/cache-mounts/HEX.lock");
}

TEST(StoreLayout, AStoreCreatesItsImageLayoutAndBlobsGoWhereTheLayoutSays) {
  TempDir dir;
  Store store(dir.path() / "store");
  EXPECT_EQ(store.layout().root(), store.root());
  EXPECT_TRUE(fs::is_regular_file(store.layout().oci_layout()));
  EXPECT_TRUE(fs::is_regular_file(store.layout().index()));
  EXPECT_TRUE(fs::is_directory(store.layout().ingest()));
  Digest digest = store.put_blob("content");
  EXPECT_EQ(store.blob_path(digest), store.layout().blob(digest));
  EXPECT_TRUE(fs::is_regular_file(store.layout().blob(digest)));
}

TEST(StoreLayout, TemporaryNamesCarryTheirWritersPid) {
  std::string file = temp_file_name("index.json");
  std::string snapshot = temp_snapshot_name();
  EXPECT_EQ(file.rfind("index.json.", 0), 0u) << file;
  EXPECT_EQ(temp_name_writer(file), ::getpid()) << file;
  EXPECT_EQ(temp_name_writer(snapshot), ::getpid()) << snapshot;
  EXPECT_TRUE(is_temp_name(file));
  EXPECT_TRUE(is_temp_name(snapshot));
  EXPECT_TRUE(is_temp_snapshot_name(snapshot));
  EXPECT_FALSE(is_temp_snapshot_name(file));
  EXPECT_NE(temp_file_name("index.json"), file) << "every call gives a new name";

  EXPECT_EQ(temp_name_writer("blob.123.4.tmp"), 123);
  EXPECT_EQ(temp_name_writer(".tmp-77-0"), 77);
  for (const char* other : {"index.json", "blob.tmp", "x.0.1.tmp", ".tmp-", ".tmp-abc-1"})
    EXPECT_FALSE(temp_name_writer(other)) << other;
  EXPECT_FALSE(is_temp_name(std::string(64, 'a')));
}

// Snapshots keep images' setuid binaries and devices: the root is private to its owner.
TEST(StoreLayout, ANewStoreRootIsPrivateToItsOwner) {
  TempDir dir;
  mode_t umask = ::umask(022);
  Store store(dir.path() / "a" / "store");
  ::umask(umask);
  struct stat st {};
  ASSERT_EQ(::stat(store.root().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  // Its parents are the user's business.
  ASSERT_EQ(::stat((dir.path() / "a").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
}

TEST(StoreLayout, AnOpenStoreRootIsTightenedWhenOpened) {
  TempDir dir;
  fs::path root = dir.path() / "store";
  { Store made(root); }
  ASSERT_EQ(::chmod(root.c_str(), 0755), 0);  // as a kiln before this one left it
  Store store(root);
  struct stat st {};
  ASSERT_EQ(::stat(root.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
}

}  // namespace
}  // namespace kiln::oci
