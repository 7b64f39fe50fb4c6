// prune and check on a store built by hand: images tagged in index.json, cache records,
// snapshots, cache mounts, leases and the leftovers of killed builds.
#include "kiln/oci/gc.hpp"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <memory>
#include <thread>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/oci/cache_index.hpp"
#include "kiln/oci/image_config.hpp"
#include "kiln/oci/lease.hpp"
#include "kiln/oci/manifest.hpp"
#include "kiln/oci/media_types.hpp"
#include "kiln/oci/store.hpp"
#include "kiln/oci/store_layout.hpp"

namespace kiln::oci {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr int64_t kDay = 24 * 3600;

// A process ID no process can have (above the kernel's largest pid_max).
constexpr const char* kDeadPid = "999999999";

struct Layer {
  Descriptor descriptor;
  Digest diff_id;
};

struct Image {
  Descriptor manifest;
  Digest config;
  std::vector<Layer> layers;
};

class Gc : public ::testing::Test {
 protected:
  fs::path root() const { return dir_.path() / "store"; }
  const StoreLayout& layout() const { return store_.layout(); }

  fs::path blob(const Digest& digest) const { return store_.blob_path(digest); }

  // A layer blob with `content`. It is no tar (nothing here unpacks layers), but check hashes
  // it as a layer: uncompressed, its diff ID is its own digest.
  Layer layer(const std::string& content) {
    Layer l;
    l.descriptor.media_type = media_type::kOciLayer;
    l.descriptor.digest = store_.put_blob(content);
    l.descriptor.size = static_cast<int64_t>(content.size());
    l.diff_id = sha256_of(content);
    return l;
  }

  static ImageConfig config_of(const std::vector<Layer>& layers) {
    ImageConfig config;
    config.architecture = "amd64";
    config.os = "linux";
    for (const Layer& l : layers)
      config.diff_ids.push_back(l.diff_id);
    return config;
  }

  // Stores the config and manifest of an image made of `layers`; tags it when `name` is given.
  Image image(const std::vector<Layer>& layers, const std::string& name = {}) {
    Image img;
    img.layers = layers;
    std::string config = serialize(config_of(layers));
    img.config = store_.put_blob(config);
    Manifest manifest;
    manifest.media_type = media_type::kOciManifest;
    manifest.config = {
        media_type::kOciConfig, img.config, static_cast<int64_t>(config.size()), {}, {}, {}, {}};
    for (const Layer& l : layers)
      manifest.layers.push_back(l.descriptor);
    std::string bytes = serialize(manifest);
    img.manifest = {media_type::kOciManifest,
                    store_.put_blob(bytes),
                    static_cast<int64_t>(bytes.size()),
                    {},
                    {},
                    {},
                    {}};
    if (!name.empty())
      store_.tag(img.manifest, name);
    return img;
  }

  // Puts a cache record for `layers` under a key made from `name`.
  std::string record(const std::string& name, const std::vector<Layer>& layers) {
    CacheRecord r;
    r.key = sha256_of(name).hex();
    r.config = config_of(layers);
    for (const Layer& l : layers)
      r.layers.push_back(l.descriptor);
    index_.put(r);
    return r.key;
  }

  fs::path record_path(const std::string& key) const { return index_.path_of(key); }

  static std::string chain(const std::vector<Layer>& layers) {
    std::vector<Digest> diff_ids;
    for (const Layer& l : layers)
      diff_ids.push_back(l.diff_id);
    return chain_id(diff_ids).hex();
  }

  // An unpacked snapshot directory for `chain_hex`, with a file in it.
  fs::path snapshot(const std::string& chain_hex) {
    fs::path dir = layout().snapshots() / chain_hex;
    fs::create_directories(dir / "etc");
    write(dir / "etc" / "hostname", "snapshot\n");
    return dir;
  }

  static void write(const fs::path& path, const std::string& content) {
    fs::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << content;
  }

  // Sets the mtime of `path` to `seconds` ago.
  static void age(const fs::path& path, int64_t seconds) {
    auto now = std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
    struct timespec times[2] = {{now - seconds, 0}, {now - seconds, 0}};
    ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW), 0) << path;
  }

  static bool exists(const fs::path& path) { return fs::exists(fs::symlink_status(path)); }

  TempDir dir_{{}, "kiln-gc-"};
  Store store_{root()};
  CacheIndex index_{layout().records()};
};

// ---- prune ---------------------------------------------------------------------------------

TEST_F(Gc, PruneKeepsTaggedImagesAndRemovesUnreferencedBlobs) {
  Image app = image({layer("base layer"), layer("app layer")}, "app:1");
  Digest stray = store_.put_blob("nobody needs this");
  Image untagged = image({layer("untagged layer")});

  PruneReport report = prune(root(), {});

  EXPECT_FALSE(exists(blob(stray)));
  EXPECT_FALSE(exists(blob(untagged.manifest.digest)));
  EXPECT_FALSE(exists(blob(untagged.config)));
  EXPECT_FALSE(exists(blob(untagged.layers[0].descriptor.digest)));
  EXPECT_TRUE(exists(blob(app.manifest.digest)));
  EXPECT_TRUE(exists(blob(app.config)));
  for (const Layer& l : app.layers)
    EXPECT_TRUE(exists(blob(l.descriptor.digest)));
  EXPECT_EQ(report.blobs, 4u);
  EXPECT_GT(report.reclaimed_bytes, 0u);
  EXPECT_THAT(check(root()).problems, IsEmpty());
}

TEST_F(Gc, PruneFollowsIndexesToTheirManifests) {
  Image arm = image({layer("arm layer")});
  Image amd = image({layer("amd layer")});
  Index index;
  index.media_type = media_type::kOciIndex;
  index.manifests = {arm.manifest, amd.manifest};
  std::string bytes = serialize(index);
  Digest digest = store_.put_blob(bytes);
  store_.tag({media_type::kOciIndex, digest, static_cast<int64_t>(bytes.size()), {}, {}, {}, {}},
             "multi:1");
  Digest stray = store_.put_blob("stray");

  PruneReport report = prune(root(), {});

  EXPECT_EQ(report.blobs, 1u);
  EXPECT_FALSE(exists(blob(stray)));
  for (const Image* img : {&arm, &amd}) {
    EXPECT_TRUE(exists(blob(img->manifest.digest)));
    EXPECT_TRUE(exists(blob(img->config)));
    EXPECT_TRUE(exists(blob(img->layers[0].descriptor.digest)));
  }
}

TEST_F(Gc, PruneSkipsMissingBlobsOfImages) {
  Layer base = layer("base");
  Image app = image({base, layer("gone")}, "app:1");
  fs::remove(blob(app.layers[1].descriptor.digest));
  PruneReport report = prune(root(), {});
  EXPECT_EQ(report.blobs, 0u);
  EXPECT_TRUE(exists(blob(base.descriptor.digest)));
}

TEST_F(Gc, PruneRefusesAStoreWhoseIndexCannotBeRead) {
  Image app = image({layer("base")}, "app:1");
  write(layout().index(), "{not json");
  EXPECT_THROW(prune(root(), {}), Error);
  EXPECT_TRUE(exists(blob(app.layers[0].descriptor.digest)));
}

TEST_F(Gc, CacheRecordsKeepTheirLayersByDefault) {
  Layer cached = layer("cached step");
  std::string key = record("step", {cached});
  PruneReport report = prune(root(), {});
  EXPECT_EQ(report.records, 0u);
  EXPECT_TRUE(exists(record_path(key)));
  EXPECT_TRUE(exists(blob(cached.descriptor.digest)));
}

TEST_F(Gc, AllDropsRecordsAndTheirLayersButNeverTaggedImages) {
  Layer shared = layer("shared base");
  Layer only_cached = layer("only in the cache");
  Image app = image({shared}, "app:1");
  std::string key = record("step", {shared, only_cached});
  fs::path image_snapshot = snapshot(chain(app.layers));

  PruneOptions options;
  options.all = true;
  PruneReport report = prune(root(), options);

  EXPECT_EQ(report.records, 1u);
  EXPECT_EQ(report.blobs, 1u);
  EXPECT_FALSE(exists(record_path(key)));
  EXPECT_FALSE(exists(blob(only_cached.descriptor.digest)));
  EXPECT_TRUE(exists(blob(shared.descriptor.digest)));
  EXPECT_TRUE(exists(blob(app.config)));
  EXPECT_TRUE(exists(blob(app.manifest.digest)));
  // Snapshots are only a cache of unpacked layers: --all removes them, the image's too.
  EXPECT_EQ(report.snapshots, 1u);
  EXPECT_FALSE(exists(image_snapshot));
}

TEST_F(Gc, UntilDropsOnlyRecordsNotUsedSinceThen) {
  Layer old_layer = layer("old step"), new_layer = layer("new step");
  std::string old_key = record("old", {old_layer});
  std::string new_key = record("new", {new_layer});
  age(record_path(old_key), 2 * kDay);
  age(record_path(new_key), 3600);

  PruneOptions options;
  options.until_seconds = kDay;
  PruneReport report = prune(root(), options);

  EXPECT_EQ(report.records, 1u);
  EXPECT_FALSE(exists(record_path(old_key)));
  EXPECT_FALSE(exists(blob(old_layer.descriptor.digest)));
  EXPECT_TRUE(exists(record_path(new_key)));
  EXPECT_TRUE(exists(blob(new_layer.descriptor.digest)));
}

TEST_F(Gc, KeepStorageDropsLeastRecentlyUsedRecordsUntilTheStoreFits) {
  constexpr uint64_t kMiB = 1024 * 1024;
  std::vector<std::string> keys;
  std::vector<Layer> layers;
  for (int i = 0; i < 3; ++i) {
    layers.push_back(layer(std::string(kMiB, static_cast<char>('a' + i))));
    keys.push_back(record("step " + std::to_string(i), {layers.back()}));
  }
  age(record_path(keys[0]), 2 * 3600);
  age(record_path(keys[1]), 3600);
  age(record_path(keys[2]), 3 * 3600);  // least recently used: dropped first

  PruneOptions options;
  options.keep_storage = 2 * kMiB + kMiB / 2;
  PruneReport report = prune(root(), options);

  EXPECT_EQ(report.records, 1u);
  EXPECT_FALSE(exists(record_path(keys[2])));
  EXPECT_FALSE(exists(blob(layers[2].descriptor.digest)));
  EXPECT_TRUE(exists(record_path(keys[0])));
  EXPECT_TRUE(exists(record_path(keys[1])));
  EXPECT_GE(report.reclaimed_bytes, kMiB);
}

TEST_F(Gc, KeepStorageZeroDropsEveryRecordButKeepsImages) {
  Layer base = layer(std::string(64 * 1024, 'x'));
  Image app = image({base}, "app:1");
  std::string key = record("step", {base, layer("extra")});
  PruneOptions options;
  options.keep_storage = 0;
  PruneReport report = prune(root(), options);
  EXPECT_EQ(report.records, 1u);
  EXPECT_FALSE(exists(record_path(key)));
  EXPECT_TRUE(exists(blob(base.descriptor.digest)));
  EXPECT_TRUE(exists(blob(app.manifest.digest)));
}

TEST_F(Gc, ALiveLeaseProtectsWhatItHoldsAndWhatIsNewerThanItsStart) {
  Digest held = store_.put_blob("held by the build");
  Digest old = store_.put_blob("old and unreferenced");
  age(blob(held), 2 * kDay);
  age(blob(old), 2 * kDay);
  Layer held_layer = layer("layer of a held record");
  age(blob(held_layer.descriptor.digest), 2 * kDay);
  std::string held_key = record("held", {held_layer});
  age(record_path(held_key), 2 * kDay);

  Lease lease(root());
  ASSERT_TRUE(lease.hold_blob(held));
  ASSERT_TRUE(lease.hold_record(held_key));
  Digest fresh = store_.put_blob("just written by the build");
  write(lease.temp_dir() / "scratch", "in use");

  PruneOptions options;
  options.all = true;
  PruneReport report = prune(root(), options);

  EXPECT_TRUE(exists(blob(held)));
  EXPECT_TRUE(exists(blob(fresh)));
  EXPECT_TRUE(exists(record_path(held_key)));
  EXPECT_TRUE(exists(blob(held_layer.descriptor.digest)));
  EXPECT_TRUE(exists(lease.temp_dir() / "scratch"));
  EXPECT_FALSE(exists(blob(old)));
  EXPECT_EQ(report.blobs, 1u);
  EXPECT_EQ(report.leases, 0u);
}

TEST_F(Gc, HoldsAreWrittenToTheLeaseFileAndFailForWhatIsGone) {
  Layer held = layer("held");
  std::string key = record("held", {held});
  std::string chain_hex = chain({held});
  snapshot(chain_hex);
  Lease lease(root());
  EXPECT_TRUE(lease.hold_blob(held.descriptor.digest));
  EXPECT_TRUE(lease.hold_record(key));
  EXPECT_TRUE(lease.hold_snapshot(chain_hex));
  EXPECT_FALSE(lease.hold_snapshot(sha256_of("pruned meanwhile").hex()));

  std::optional<LeaseContents> contents = parse_lease(read_file(layout().lease(lease.id())));
  ASSERT_TRUE(contents);
  EXPECT_GT(contents->started, 0);
  EXPECT_THAT(contents->blobs, Contains(held.descriptor.digest.str()));
  EXPECT_THAT(contents->records, Contains(key));
  EXPECT_THAT(contents->snapshots, Contains(chain_hex));
  EXPECT_FALSE(parse_lease("started 12")) << "the first line is not complete yet";
  EXPECT_EQ(parse_lease("started 12\n")->started, 12);
}

TEST_F(Gc, AStaleLeaseIsRemovedWithItsScratchSpaceAndProtectsNothing) {
  write(layout().lease("dead-1"), "started 1000\nblob sha256:" + std::string(64, 'a') + "\n");
  write(layout().lease_tmp("dead-1") / "stage" / "file", "left behind");
  write(layout().lease_tmp("orphan") / "file", "no lease at all");
  Digest old = store_.put_blob("old");
  age(blob(old), 2 * kDay);

  PruneReport report = prune(root(), {});

  EXPECT_EQ(report.leases, 1u);
  EXPECT_FALSE(exists(layout().lease("dead-1")));
  EXPECT_FALSE(exists(layout().lease_tmp("dead-1")));
  EXPECT_FALSE(exists(layout().lease_tmp("orphan")));
  EXPECT_FALSE(exists(blob(old)));
}

TEST_F(Gc, ALeaseFileWithoutItsFirstLineIsBeingCreatedUntilItIsOld) {
  fs::path young = layout().lease("young");
  fs::path old = layout().lease("old");
  write(young, "");
  write(old, "");
  age(old, 3600);
  PruneReport report = prune(root(), {});
  EXPECT_EQ(report.leases, 1u);
  EXPECT_TRUE(exists(young));
  EXPECT_FALSE(exists(old));
}

TEST_F(Gc, LeftoversOfInterruptedWritesAreRemoved) {
  std::string dead = kDeadPid;
  write(layout().ingest() / ("blob." + dead + ".0.tmp"), "half a blob");
  write(layout().ingest() / "junk", "unknown");
  write(layout().snapshots() / (".tmp-" + dead + "-0") / "usr" / "bin" / "sh", "half unpacked");
  write(root() / ("index.json." + dead + ".3.tmp"), "{");
  write(index_.dir() / (std::string(64, 'c') + ".json." + dead + ".1.tmp"), "{");
  // Still being written by a process that runs: this one.
  fs::path running = layout().ingest() / ("blob." + std::to_string(::getpid()) + ".9.tmp");
  write(running, "being written");

  PruneReport report = prune(root(), {});

  EXPECT_EQ(report.temp_files, 5u);
  EXPECT_TRUE(fs::is_empty(layout().snapshots()));
  EXPECT_TRUE(fs::is_empty(index_.dir()));
  EXPECT_FALSE(exists(root() / ("index.json." + dead + ".3.tmp")));
  EXPECT_TRUE(exists(running));
  EXPECT_TRUE(exists(layout().index()));
}

TEST_F(Gc, SnapshotsOfSurvivingChainsStayAndOthersGo) {
  Layer base = layer("base"), app_layer = layer("app"), cached = layer("cached");
  Image app = image({base, app_layer}, "app:1");
  record("step", {base, cached});
  fs::path image_snapshot = snapshot(chain({base, app_layer}));
  fs::path record_snapshot = snapshot(chain({base, cached}));
  fs::path prefix_snapshot = snapshot(chain({base}));  // not the full chain of anything
  fs::path orphan_snapshot = snapshot(sha256_of("nothing").hex());

  PruneReport report = prune(root(), {});

  EXPECT_EQ(report.snapshots, 2u);
  EXPECT_TRUE(exists(image_snapshot));
  EXPECT_TRUE(exists(record_snapshot));
  EXPECT_FALSE(exists(prefix_snapshot));
  EXPECT_FALSE(exists(orphan_snapshot));
}

TEST_F(Gc, ReadOnlyDirectoriesInSnapshotsAreRemoved) {
  fs::path dir = snapshot(sha256_of("read-only").hex());
  write(dir / "ro" / "file", "x");
  write(dir / "locked" / "file", "y");
  ASSERT_EQ(::chmod((dir / "ro").c_str(), 0555), 0);
  ASSERT_EQ(::chmod((dir / "locked").c_str(), 0), 0);
  fs::create_symlink("/etc", dir / "escape");

  PruneReport report = prune(root(), {});

  EXPECT_EQ(report.snapshots, 1u);
  EXPECT_FALSE(exists(dir));
  EXPECT_TRUE(exists("/etc/passwd"));  // the symlink was removed, not followed
}

TEST_F(Gc, CacheMountsAndStatCachesGoOnlyWithAllAndWhenNobodyHoldsThem) {
  std::string free_id = sha256_of("free").hex(), held_id = sha256_of("held").hex();
  write(layout().cache_mount(free_id) / "pkg.tar", "cached download");
  write(layout().cache_mount_lock(free_id), "");
  write(layout().cache_mount(held_id) / "pkg.tar", "in use");
  write(layout().cache_mount_lock(held_id), "");
  fs::path statcache = layout().context_caches() / (std::string(64, 'd') + ".statcache");
  write(statcache, "hash 1 2 3 4 5 file\n");

  PruneReport normal = prune(root(), {});
  EXPECT_EQ(normal.cache_mounts, 0u);
  EXPECT_TRUE(exists(layout().cache_mount(free_id)));
  EXPECT_TRUE(exists(statcache));

  UniqueFd holder = open_or_throw(layout().cache_mount_lock(held_id), O_RDWR);
  ASSERT_EQ(::flock(holder.get(), LOCK_EX), 0);
  PruneOptions options;
  options.all = true;
  PruneReport all = prune(root(), options);
  EXPECT_EQ(all.cache_mounts, 1u);
  EXPECT_FALSE(exists(layout().cache_mount(free_id)));
  EXPECT_FALSE(exists(layout().cache_mount_lock(free_id)));
  EXPECT_TRUE(exists(layout().cache_mount(held_id) / "pkg.tar"));
  EXPECT_FALSE(exists(statcache));
}

TEST_F(Gc, BlobCommitsWaitForARunningPrune) {
  auto lock = std::make_unique<GcLock>(root(), /*exclusive=*/true);  // as prune holds it
  std::atomic<bool> committed{false};
  Digest digest;
  std::thread writer([&] {
    digest = store_.put_blob("committed during a prune");
    committed = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_FALSE(committed);
  EXPECT_TRUE(fs::is_empty(layout().blobs("sha256")));
  lock.reset();
  writer.join();
  EXPECT_TRUE(committed);
  EXPECT_TRUE(exists(blob(digest)));
}

TEST_F(Gc, PruneOfAMissingStoreDoesNothing) {
  PruneReport report = prune(dir_.path() / "nowhere", {});
  EXPECT_EQ(report.blobs + report.records + report.snapshots, 0u);
  EXPECT_FALSE(exists(dir_.path() / "nowhere"));
}

// ---- check ---------------------------------------------------------------------------------

TEST_F(Gc, CheckOfAHealthyStoreIsClean) {
  Layer base = layer("base");
  Image app = image({base}, "app:1");
  record("step", {base, layer("cached")});
  snapshot(chain(app.layers));

  CheckReport report = check(root());

  EXPECT_THAT(report.problems, IsEmpty());
  EXPECT_THAT(report.leftovers, IsEmpty());
  EXPECT_EQ(report.blobs, 4u);
  EXPECT_EQ(report.images, 1u);
  EXPECT_EQ(report.records, 1u);
  EXPECT_EQ(report.snapshots, 1u);
}

TEST_F(Gc, CheckFindsABlobWhoseContentDoesNotMatchItsName) {
  Image app = image({layer("base")}, "app:1");
  fs::path corrupt = blob(app.layers[0].descriptor.digest);
  fs::permissions(corrupt, fs::perms::owner_write, fs::perm_options::add);
  write(corrupt, "fase");  // same size, other bytes

  CheckReport report = check(root());

  ASSERT_EQ(report.problems.size(), 1u);
  EXPECT_THAT(report.problems[0],
              AllOf(HasSubstr(corrupt.string()), HasSubstr("does not match its name")));
}

TEST_F(Gc, CheckFindsARecordWhoseLayerIsMissing) {
  Layer gone = layer("gone");
  std::string key = record("step", {gone});
  fs::remove(blob(gone.descriptor.digest));
  CheckReport report = check(root());
  ASSERT_EQ(report.problems.size(), 1u);
  EXPECT_THAT(report.problems[0],
              AllOf(HasSubstr(key), HasSubstr(gone.descriptor.digest.str()), HasSubstr("missing")));
}

TEST_F(Gc, CheckFindsAnUnparsableRecordAndOneUnderAnotherName) {
  std::string key = record("step", {layer("l")});
  std::string other = sha256_of("other").hex();
  fs::copy_file(record_path(key), record_path(other));
  write(record_path(sha256_of("broken").hex()), "{\"key\":");
  CheckReport report = check(root());
  EXPECT_EQ(report.records, 3u);
  ASSERT_EQ(report.problems.size(), 2u);
  EXPECT_THAT(report.problems, Contains(AllOf(HasSubstr(other), HasSubstr("holds the record"))));
  EXPECT_THAT(report.problems, Contains(HasSubstr("cannot be parsed")));
}

TEST_F(Gc, CheckFindsAnUnparsableIndex) {
  write(layout().index(), "{\"schemaVersion\": 2, \"manifests\": [");
  CheckReport report = check(root());
  ASSERT_EQ(report.problems.size(), 1u);
  EXPECT_THAT(report.problems[0], HasSubstr("index.json"));
}

TEST_F(Gc, CheckFindsATagWhoseManifestIsMissing) {
  Digest missing = sha256_of("never stored");
  store_.tag({media_type::kOciManifest, missing, 123, {}, {}, {}, {}}, "ghost:1");
  CheckReport report = check(root());
  EXPECT_EQ(report.images, 1u);
  ASSERT_EQ(report.problems.size(), 1u);
  EXPECT_THAT(report.problems[0],
              AllOf(HasSubstr("ghost:1"), HasSubstr(missing.str()), HasSubstr("missing")));
}

TEST_F(Gc, CheckFindsMissingLayersAndConfigsOfImages) {
  Image app = image({layer("base"), layer("top")}, "app:1");
  fs::remove(blob(app.layers[1].descriptor.digest));
  fs::remove(blob(app.config));
  CheckReport report = check(root());
  EXPECT_EQ(report.problems.size(), 2u);
  EXPECT_THAT(report.problems,
              Contains(HasSubstr("layer " + app.layers[1].descriptor.digest.str())));
  EXPECT_THAT(report.problems, Contains(HasSubstr("config " + app.config.str())));
}

TEST_F(Gc, CheckReportsLeftoversWithoutCallingThemProblems) {
  std::string dead = kDeadPid;
  write(layout().ingest() / ("blob." + dead + ".0.tmp"), "half");
  write(layout().snapshots() / (".tmp-" + dead + "-0") / "file", "half");
  write(layout().lease("dead-1"), "started 1000\n");
  write(layout().lease_tmp("dead-1") / "file", "scratch");

  CheckReport report = check(root());

  EXPECT_THAT(report.problems, IsEmpty());
  EXPECT_EQ(report.leftovers.size(), 3u);
  EXPECT_THAT(report.leftovers, Contains(HasSubstr("blob." + dead + ".0.tmp")));
  EXPECT_THAT(report.leftovers, Contains(HasSubstr(".tmp-" + dead + "-0")));
  EXPECT_THAT(report.leftovers, Contains(HasSubstr("dead-1")));
  // check changes nothing; prune then removes them.
  EXPECT_TRUE(exists(layout().lease("dead-1")));
  prune(root(), {});
  EXPECT_THAT(check(root()).leftovers, IsEmpty());
}

// Snapshot cache poisoning: an image whose config claims another image's diff IDs. A snapshot
// under that chain ID may hold the impostor's files, even though the real image verifies; check
// names the layer that gives it away.
TEST_F(Gc, CheckFindsASnapshotWhoseLayersAreNotTheirDiffIds) {
  Layer real = layer("the real base");
  Layer impostor = layer("something else");
  impostor.diff_id = real.diff_id;  // its config lies
  image({real}, "real:1");
  image({impostor}, "impostor:1");
  fs::path poisoned = snapshot(chain({real}));

  CheckReport report = check(root());

  ASSERT_EQ(report.problems.size(), 1u) << ::testing::PrintToString(report.problems);
  EXPECT_THAT(report.problems[0],
              AllOf(HasSubstr(poisoned.string()), HasSubstr("impostor:1"),
                    HasSubstr(impostor.descriptor.digest.str()), HasSubstr(real.diff_id.str())));
}

// The same chain also named by an image whose layers verify: the snapshot is what that image
// unpacks to, so it is trusted (the liar is still reported when its own snapshot exists).
TEST_F(Gc, CheckTrustsASnapshotThatSomeVerifiedChainNames) {
  Layer base = layer("base"), top = layer("top");
  image({base, top}, "app:1");
  fs::path prefix = snapshot(chain({base}));  // the base alone: a prefix of app's chain
  record("step", {base, top, layer("cached")});
  fs::path whole = snapshot(chain({base, top}));

  CheckReport report = check(root());

  EXPECT_THAT(report.problems, IsEmpty());
  EXPECT_THAT(report.leftovers, IsEmpty());
  EXPECT_EQ(report.snapshots, 2u);
  EXPECT_TRUE(exists(prefix));
  EXPECT_TRUE(exists(whole));
}

TEST_F(Gc, CheckCallsASnapshotNothingNamesALeftover) {
  fs::path orphan = snapshot(sha256_of("no image has this chain").hex());
  CheckReport report = check(root());
  EXPECT_THAT(report.problems, IsEmpty());
  ASSERT_EQ(report.leftovers.size(), 1u);
  EXPECT_THAT(report.leftovers[0],
              AllOf(HasSubstr(orphan.string()), HasSubstr("cannot be verified")));
}

TEST_F(Gc, CheckDoesNotCountALiveLeaseAsALeftover) {
  Lease lease(root());
  EXPECT_THAT(check(root()).leftovers, IsEmpty());
}

// A first build killed while the store initialized itself (reproduced with kill -9 within
// ~30 ms of the start) left blobs/ and an oci-layout temp file but no oci-layout: kiln check
// called that a broken store. It is an interrupted initialization, which the next Store
// completes.
TEST(GcCheck, AnInterruptedInitializationIsALeftoverNotAProblem) {
  TempDir dir;
  fs::path root = dir.path() / "store";
  fs::create_directories(root / "blobs" / "sha256");
  std::ofstream(root / "oci-layout.123.0.tmp") << "{";
  CheckReport report = check(root);
  EXPECT_THAT(report.problems, IsEmpty());
  EXPECT_THAT(report.leftovers, Contains(HasSubstr("initialization interrupted")));
  Store completed(root);
  EXPECT_THAT(check(root).problems, IsEmpty());
  EXPECT_TRUE(fs::exists(root / "oci-layout"));
  // With blobs in it, a store without oci-layout is broken, not new.
  fs::remove(root / "oci-layout");
  completed.put_blob("x");
  EXPECT_THAT(check(root).problems, Contains(HasSubstr("oci-layout: missing")));
}

}  // namespace
}  // namespace kiln::oci
