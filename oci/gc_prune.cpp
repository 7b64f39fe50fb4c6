#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>

#include "gc_internal.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/oci/cache_index.hpp"
#include "kiln/oci/gc.hpp"
#include "kiln/oci/image_config.hpp"
#include "kiln/oci/lease.hpp"
#include "kiln/oci/step_history.hpp"

namespace kiln::oci {
namespace fs = std::filesystem;

namespace {

using detail::allocated_bytes;
using detail::disk_usage;
using detail::ImageMarks;
using detail::is_dir_nofollow;
using detail::is_hex;
using detail::Leases;
using detail::lexists;
using detail::list_dir;
using detail::lstat_of;
using detail::remove_path;
using detail::touched_time;
using detail::writer_running;

struct RecordFile {
  std::string key;
  int64_t mtime = 0;
  std::optional<CacheRecord> record;  // nullopt: unparsable, references nothing

  std::optional<std::string> chain() const {
    if (!record || record->config.diff_ids.empty())
      return std::nullopt;
    return chain_id(record->config.diff_ids).hex();
  }
};

// A blob or snapshot on disk, with what removing it would free.
struct Item {
  std::string name;  // "sha256:HEX" for a blob, CHAINHEX for a snapshot
  fs::path path;
  int64_t touched = 0;
  uint64_t bytes = 0;
};

std::vector<Item> list_blobs(const StoreLayout& layout) {
  std::vector<Item> blobs;
  for (const std::string& algorithm : list_dir(layout.blobs())) {
    for (const std::string& hex : list_dir(layout.blobs(algorithm))) {
      fs::path path = layout.blobs(algorithm) / hex;
      std::optional<struct stat> st = lstat_of(path);
      if (st && S_ISREG(st->st_mode)) {
        blobs.push_back({algorithm + ":" + hex, path, st->st_mtim.tv_sec, allocated_bytes(*st)});
      }
    }
  }
  return blobs;
}

std::vector<Item> list_snapshots(const StoreLayout& layout, bool with_sizes) {
  std::vector<Item> snapshots;
  for (const std::string& name : list_dir(layout.snapshots())) {
    if (!is_hex(name, 64))
      continue;
    fs::path path = layout.snapshots() / name;
    std::optional<struct stat> st = lstat_of(path);
    if (st && S_ISDIR(st->st_mode))
      snapshots.push_back({name, path, touched_time(*st), with_sizes ? disk_usage(path) : 0});
  }
  return snapshots;
}

// Which cache records to drop (step 2 in gc.hpp).
class RecordChooser {
 public:
  RecordChooser(const PruneOptions& options, const Leases& leases, const ImageMarks& images,
                std::optional<int64_t> protected_after, int64_t now)
      : options_(options),
        leases_(leases),
        images_(images),
        protected_after_(protected_after),
        now_(now) {}

  // The indexes into `records` of those to drop.
  std::set<size_t> choose(const StoreLayout& layout, const std::vector<RecordFile>& records) const {
    std::set<size_t> drop;
    std::vector<size_t> candidates;
    for (size_t i = 0; i < records.size(); ++i) {
      const RecordFile& r = records[i];
      if (leases_.holds_record(r.key) || (protected_after_ && r.mtime > *protected_after_))
        continue;
      candidates.push_back(i);
      if (options_.all || (options_.until_seconds && r.mtime < now_ - *options_.until_seconds))
        drop.insert(i);
    }
    if (options_.keep_storage && !options_.all)
      drop_least_recently_used(layout, records, std::move(candidates), drop);
    return drop;
  }

 private:
  // Drops the least recently used records until what would remain of blobs/ and snapshots/
  // after the sweep fits in keep_storage. A blob or snapshot frees its space with its last
  // referrer, unless something other than records keeps it. Sizes are disk usage (allocated
  // blocks, as du(1) counts them), since keep_storage is about the disk space kiln takes.
  void drop_least_recently_used(const StoreLayout& layout, const std::vector<RecordFile>& records,
                                std::vector<size_t> candidates, std::set<size_t>& drop) const {
    std::map<std::string, int> refs;  // blob digest or chain ID → records referencing it
    for (size_t i = 0; i < records.size(); ++i) {
      if (drop.count(i))
        continue;
      for (const std::string& name : referenced(records[i]))
        ++refs[name];
    }
    std::map<std::string, uint64_t> bytes;  // of what only records keep
    uint64_t remaining = 0;
    std::vector<Item> items = list_blobs(layout);
    for (Item& snapshot : list_snapshots(layout, /*with_sizes=*/true))
      items.push_back(std::move(snapshot));
    for (const Item& item : items) {
      bool pinned = images_.blobs.count(item.name) || images_.chains.count(item.name) ||
                    leases_.holds_blob(item.name) || leases_.holds_snapshot(item.name) ||
                    (protected_after_ && item.touched > *protected_after_);
      if (pinned || refs.count(item.name))
        remaining += item.bytes;
      if (!pinned)
        bytes[item.name] = item.bytes;
    }
    std::stable_sort(candidates.begin(), candidates.end(),
                     [&](size_t a, size_t b) { return records[a].mtime < records[b].mtime; });
    for (size_t i : candidates) {
      if (remaining <= *options_.keep_storage)
        break;
      if (!drop.insert(i).second)
        continue;
      for (const std::string& name : referenced(records[i])) {
        auto ref = refs.find(name);
        if (ref == refs.end() || --ref->second > 0)
          continue;
        refs.erase(ref);
        if (auto size = bytes.find(name); size != bytes.end())
          remaining -= std::min(remaining, size->second);
      }
    }
  }

  // The blobs and the snapshot a record keeps alive.
  static std::set<std::string> referenced(const RecordFile& r) {
    std::set<std::string> names;
    if (!r.record)
      return names;
    for (const Descriptor& layer : r.record->layers)
      names.insert(layer.digest.str());
    if (std::optional<std::string> chain = r.chain())
      names.insert(*chain);
    return names;
  }

  const PruneOptions& options_;
  const Leases& leases_;
  const ImageMarks& images_;
  std::optional<int64_t> protected_after_;
  int64_t now_;
};

// ---- sweeping ------------------------------------------------------------------------------

class Sweeper {
 public:
  Sweeper(std::optional<int64_t> protected_after, PruneReport& report)
      : protected_after_(protected_after), report_(report) {}

  bool is_protected(int64_t touched) const {
    return protected_after_ && touched > *protected_after_;
  }
  // Protects more: what is newer than the oldest of these leases, too.
  void protect(const Leases& leases) {
    std::optional<int64_t> after = leases.protected_after();
    if (after)
      protected_after_ = protected_after_ ? std::min(*protected_after_, *after) : after;
  }

  // Removes `path` and counts it in `counter` (unless it was gone already).
  void remove(const fs::path& path, size_t& counter) {
    if (std::optional<uint64_t> freed = remove_path(path)) {
      report_.reclaimed_bytes += *freed;
      ++counter;
    }
  }

  // Removes every temporary file or directory in `dir` that no running writer owns.
  void remove_leftovers(const fs::path& dir, bool any_name) {
    for (const std::string& name : list_dir(dir)) {
      if (!any_name && !is_temp_name(name))
        continue;
      std::optional<struct stat> st = lstat_of(dir / name);
      if (st && !is_protected(touched_time(*st)) && !writer_running(name))
        remove(dir / name, report_.temp_files);
    }
  }

 private:
  std::optional<int64_t> protected_after_;
  PruneReport& report_;
};

void remove_stale_leases(const StoreLayout& layout, const Leases& leases, Sweeper& sweeper,
                         PruneReport& report) {
  for (const std::string& id : leases.stale) {
    size_t ignored = 0;
    sweeper.remove(layout.lease_tmp(id), ignored);
    sweeper.remove(layout.lease(id), report.leases);
  }
  // A lease file is created before its tmp directory and removed after it, so a tmp directory
  // without a lease file is left over.
  for (const std::string& id : list_dir(layout.tmp())) {
    if (!lexists(layout.lease(id)))
      sweeper.remove(layout.lease_tmp(id), report.temp_files);
  }
}

void remove_cache_mounts(const StoreLayout& layout, Sweeper& sweeper, PruneReport& report) {
  for (const std::string& name : list_dir(layout.cache_mounts())) {
    if (!is_hex(name, 64))
      continue;
    fs::path lock_path = layout.cache_mount_lock(name);
    // Holding the lock while removing keeps a locked-sharing RUN from starting on it meanwhile.
    UniqueFd lock(::open(lock_path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (lock && ::flock(lock.get(), LOCK_EX | LOCK_NB) != 0)
      continue;
    std::optional<struct stat> st = lstat_of(layout.cache_mount(name));
    if (!st || sweeper.is_protected(touched_time(*st)))
      continue;
    sweeper.remove(layout.cache_mount(name), report.cache_mounts);
    size_t ignored = 0;
    sweeper.remove(lock_path, ignored);
  }
}

// The step history (step_history.hpp) follows the cache: an inputs record goes with the cache
// record of its key, a step file with the last key it names.
void remove_step_history(const StoreLayout& layout, const CacheIndex& index, Sweeper& sweeper,
                         PruneReport& report) {
  std::set<std::string> live;
  for (const std::string& key : index.keys())
    live.insert(key);
  sweeper.remove_leftovers(layout.step_inputs(), /*any_name=*/false);
  sweeper.remove_leftovers(layout.step_keys(), /*any_name=*/false);
  // A running build writes its step files after its records: recent ones are left alone.
  auto recent = [&](const fs::path& path) {
    std::optional<struct stat> st = lstat_of(path);
    return st && sweeper.is_protected(touched_time(*st));
  };
  for (const std::string& name : list_dir(layout.step_inputs())) {
    fs::path path = layout.step_inputs() / name;
    if (!is_temp_name(name) && !live.count(name.substr(0, name.find('.'))) && !recent(path))
      sweeper.remove(path, report.temp_files);
  }
  for (const std::string& name : list_dir(layout.step_keys())) {
    if (is_temp_name(name) || recent(layout.step_keys() / name))
      continue;
    std::optional<std::string> key = StepHistory(layout).last_key(name);
    if (!key || !live.count(*key))
      sweeper.remove(layout.step_keys() / name, report.temp_files);
  }
}

}  // namespace

PruneReport prune(const fs::path& root, const PruneOptions& options) {
  PruneReport report;
  if (!is_dir_nofollow(root))
    return report;
  StoreLayout layout(root);
  GcLock lock(root, /*exclusive=*/true);
  int64_t now = detail::now_seconds();
  // First: it refuses a store whose index is unreadable.
  ImageMarks images = detail::mark_images(layout);

  // 1. Leases. Builds cannot hold() anything new while the lock is ours, but one may start (and
  // create things) meanwhile: the sweep looks at the live leases again for its time limit.
  Leases leases = detail::scan_leases(layout, now);
  std::optional<int64_t> protected_after = leases.protected_after();
  Sweeper sweeper(protected_after, report);
  remove_stale_leases(layout, leases, sweeper, report);

  // 2. Records to drop.
  CacheIndex index(layout.records());
  std::vector<RecordFile> records;
  for (const std::string& key : index.keys()) {
    std::optional<struct stat> st = lstat_of(index.path_of(key));
    if (st)
      records.push_back({key, st->st_mtim.tv_sec, index.peek(key)});
  }
  std::set<size_t> drop =
      RecordChooser(options, leases, images, protected_after, now).choose(layout, records);

  // 3. Mark.
  std::set<std::string> blobs = images.blobs;
  std::set<std::string> chains = options.all ? std::set<std::string>() : images.chains;
  for (size_t i = 0; i < records.size(); ++i) {
    if (drop.count(i) || !records[i].record)
      continue;
    for (const Descriptor& layer : records[i].record->layers)
      blobs.insert(layer.digest.str());
    if (auto chain = records[i].chain(); chain && !options.all)
      chains.insert(*chain);
  }

  // 4. Sweep: records before the blobs they reference, so that an interrupted prune never leaves
  // a record without its layers.
  sweeper.protect(detail::scan_leases(layout, now));
  for (size_t i : drop)
    sweeper.remove(index.path_of(records[i].key), report.records);
  for (const Item& blob : list_blobs(layout)) {
    if (!blobs.count(blob.name) && !leases.holds_blob(blob.name) &&
        !sweeper.is_protected(blob.touched)) {
      sweeper.remove(blob.path, report.blobs);
    }
  }
  for (const Item& snapshot : list_snapshots(layout, /*with_sizes=*/false)) {
    if (!chains.count(snapshot.name) && !leases.holds_snapshot(snapshot.name) &&
        !sweeper.is_protected(snapshot.touched)) {
      sweeper.remove(snapshot.path, report.snapshots);
    }
  }
  sweeper.remove_leftovers(layout.snapshots(), /*any_name=*/false);
  sweeper.remove_leftovers(layout.ingest(), /*any_name=*/true);
  sweeper.remove_leftovers(layout.root(), /*any_name=*/false);  // index.json.PID.N.tmp
  sweeper.remove_leftovers(layout.records(), /*any_name=*/false);
  sweeper.remove_leftovers(layout.context_caches(), /*any_name=*/false);
  remove_step_history(layout, index, sweeper, report);
  if (options.all) {
    for (const std::string& name : list_dir(layout.context_caches())) {
      fs::path path = layout.context_caches() / name;
      std::optional<struct stat> st = lstat_of(path);
      if (ends_with(name, kStatCacheExtension) && st && !sweeper.is_protected(st->st_mtim.tv_sec))
        sweeper.remove(path, report.temp_files);
    }
    remove_cache_mounts(layout, sweeper, report);
  }
  return report;
}

}  // namespace kiln::oci
