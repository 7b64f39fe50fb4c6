#include "kiln/solver/gc.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/oci/image_config.hpp"
#include "kiln/oci/manifest.hpp"
#include "kiln/oci/media_types.hpp"
#include "kiln/oci/store.hpp"
#include "kiln/solver/cache_index.hpp"
#include "kiln/solver/lease.hpp"
#include "stage_root.hpp"

namespace kiln::solver {
namespace fs = std::filesystem;

namespace {

// Clocks of two processes, or a build that read the time just before creating its lease file,
// may disagree by a little: prune keeps a minute more than the oldest live lease claims.
constexpr int64_t kLeaseSlackSeconds = 60;
// A lease file is locked right after it is created and then gets its "started" line. One that is
// unlocked and has no complete "started" line is being created when it is this young, and was
// left by a process killed in that instant when it is older.
constexpr int64_t kLeaseCreationSeconds = 60;

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool is_hex(std::string_view text, size_t length) {
  return text.size() == length && text.find_first_not_of("0123456789abcdef") == std::string::npos;
}

std::optional<struct stat> lstat_of(const fs::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0)
    return std::nullopt;
  return st;
}

bool lexists(const fs::path& path) {
  return lstat_of(path).has_value();
}

bool is_dir_nofollow(const fs::path& path) {
  std::optional<struct stat> st = lstat_of(path);
  return st && S_ISDIR(st->st_mode);
}

// Disk usage of one inode, as du(1) counts it: allocated blocks, not the apparent size.
uint64_t allocated_bytes(const struct stat& st) {
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

// A directory's mtime says when an entry was last added or removed in it, and unpacking a layer
// may even set it to the layer's (old) timestamp; its ctime also changes when it is renamed into
// place. The later of the two says when kiln last touched it.
int64_t touched_time(const struct stat& st) {
  return std::max<int64_t>(st.st_mtim.tv_sec, st.st_ctim.tv_sec);
}

// The names in `dir`, sorted; none when it does not exist (or vanishes while being read).
std::vector<std::string> list_dir(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    names.push_back(it->path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

[[noreturn]] void fail(const char* operation, const fs::path& path, int err) {
  throw Error(std::string(operation) + " " + path.string() + ": " + std::strerror(err));
}

uint64_t remove_at(int dirfd, const std::string& name, const fs::path& path);

// Removes everything inside the directory `name` of `dirfd`. Directories from unpacked images may
// be read-only (or mode 000) and are made accessible first.
uint64_t empty_directory_at(int dirfd, const std::string& name, const fs::path& path,
                            const struct stat& st) {
  auto open_dir = [&] {
    return UniqueFd(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  };
  UniqueFd fd = open_dir();
  if (!fd && errno == EACCES && ::fchmodat(dirfd, name.c_str(), 0700, 0) == 0)
    fd = open_dir();
  if (!fd) {
    if (errno == ENOENT)
      return 0;
    fail("open", path, errno);
  }
  if ((st.st_mode & S_IRWXU) != S_IRWXU)
    ::fchmod(fd.get(), 0700);
  std::vector<std::string> names;
  {
    int listing = ::dup(fd.get());
    std::unique_ptr<DIR, int (*)(DIR*)> dir(listing < 0 ? nullptr : ::fdopendir(listing),
                                            ::closedir);
    if (!dir) {
      int err = errno;
      if (listing >= 0)
        ::close(listing);
      fail("read", path, err);
    }
    while (const dirent* entry = ::readdir(dir.get())) {
      std::string_view child = entry->d_name;
      if (child != "." && child != "..")
        names.emplace_back(child);
    }
  }
  uint64_t freed = 0;
  for (const std::string& child : names)
    freed += remove_at(fd.get(), child, path / child);
  return freed;
}

// Removes `name` in `dirfd`: a file, a symlink (never followed) or a whole tree, and returns the
// bytes that freed (a hard-linked file frees its blocks with its last name). Whatever vanished
// meanwhile (another prune) is not an error; anything else throws kiln::Error naming the path.
uint64_t remove_at(int dirfd, const std::string& name, const fs::path& path) {
  struct stat st {};
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT)
      return 0;
    fail("stat", path, errno);
  }
  uint64_t freed = 0;
  int flags = 0;
  if (S_ISDIR(st.st_mode)) {
    freed = empty_directory_at(dirfd, name, path, st);
    flags = AT_REMOVEDIR;
  }
  if (::unlinkat(dirfd, name.c_str(), flags) != 0) {
    if (errno == ENOENT)
      return freed;
    fail("remove", path, errno);
  }
  if (S_ISDIR(st.st_mode) || st.st_nlink <= 1)
    freed += allocated_bytes(st);
  return freed;
}

// remove_at for a path; nullopt when there was nothing to remove.
std::optional<uint64_t> remove_path(const fs::path& path) {
  fs::path parent = path.parent_path();
  UniqueFd dirfd(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dirfd && errno != ENOENT)
    fail("open", parent, errno);
  struct stat st {};
  if (!dirfd || ::fstatat(dirfd.get(), path.filename().c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT)
      return std::nullopt;
    fail("stat", path, errno);
  }
  return remove_at(dirfd.get(), path.filename().string(), path);
}

// Disk usage of a tree (hard links counted once), without following symlinks.
uint64_t disk_usage(const fs::path& path) {
  std::set<std::pair<dev_t, ino_t>> seen;
  uint64_t total = 0;
  std::function<void(const fs::path&)> visit = [&](const fs::path& p) {
    std::optional<struct stat> st = lstat_of(p);
    if (!st || !seen.insert({st->st_dev, st->st_ino}).second)
      return;
    total += allocated_bytes(*st);
    if (S_ISDIR(st->st_mode)) {
      for (const std::string& child : list_dir(p))
        visit(p / child);
    }
  };
  visit(path);
  return total;
}

// The process that writes a temporary file or directory, from the names kiln gives them:
// "NAME.PID.N.tmp" (BlobWriter, write_file_atomically) and ".tmp-PID-N" (snapshots).
std::optional<pid_t> writer_pid(std::string_view name) {
  std::string_view digits;
  if (starts_with(name, ".tmp-")) {
    digits = name.substr(5);
    digits = digits.substr(0, digits.find('-'));
  } else if (ends_with(name, ".tmp")) {
    std::string_view stem = name.substr(0, name.size() - 4);
    size_t counter = stem.rfind('.');
    if (counter == std::string_view::npos)
      return std::nullopt;
    stem = stem.substr(0, counter);
    size_t pid = stem.rfind('.');
    if (pid == std::string_view::npos)
      return std::nullopt;
    digits = stem.substr(pid + 1);
  }
  pid_t pid = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), pid);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || pid <= 0)
    return std::nullopt;
  return pid;
}

// Writers do not need a lease (`kiln tag`, image import), so a temporary file whose writer still
// runs is never a leftover, whatever its age.
bool writer_running(std::string_view name) {
  std::optional<pid_t> pid = writer_pid(name);
  return pid && (::kill(*pid, 0) == 0 || errno == EPERM);
}

bool is_temp_name(std::string_view name) {
  return starts_with(name, ".tmp-") || ends_with(name, ".tmp");
}

// ---- leases --------------------------------------------------------------------------------

struct LiveLease {
  int64_t started = 0;
  std::set<std::string> blobs;      // "sha256:HEX"
  std::set<std::string> records;    // KEYHEX
  std::set<std::string> snapshots;  // CHAINHEX
};

struct Leases {
  std::vector<LiveLease> live;
  std::vector<std::string> stale;  // lease IDs

  // Anything touched after this (seconds since the epoch) may belong to a running build.
  std::optional<int64_t> protected_after() const {
    if (live.empty())
      return std::nullopt;
    int64_t oldest = live.front().started;
    for (const LiveLease& lease : live)
      oldest = std::min(oldest, lease.started);
    return oldest - kLeaseSlackSeconds;
  }
  bool holds_blob(const std::string& digest) const {
    return std::any_of(live.begin(), live.end(),
                       [&](const LiveLease& l) { return l.blobs.count(digest) > 0; });
  }
  bool holds_record(const std::string& key) const {
    return std::any_of(live.begin(), live.end(),
                       [&](const LiveLease& l) { return l.records.count(key) > 0; });
  }
  bool holds_snapshot(const std::string& chain) const {
    return std::any_of(live.begin(), live.end(),
                       [&](const LiveLease& l) { return l.snapshots.count(chain) > 0; });
  }
};

// Parses a lease file: "started UNIXSECONDS" and then held items. nullopt when the first line
// is not complete yet.
std::optional<LiveLease> parse_lease(const std::string& text) {
  std::vector<std::string> lines = split(text, '\n');
  if (lines.size() < 2 || !starts_with(lines[0], "started "))
    return std::nullopt;  // no newline after the first line yet
  LiveLease lease;
  std::string_view seconds = std::string_view(lines[0]).substr(8);
  auto [end, ec] = std::from_chars(seconds.data(), seconds.data() + seconds.size(), lease.started);
  if (ec != std::errc() || end != seconds.data() + seconds.size())
    return std::nullopt;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    if (starts_with(line, "blob "))
      lease.blobs.emplace(line.substr(5));
    else if (starts_with(line, "record "))
      lease.records.emplace(line.substr(7));
    else if (starts_with(line, "snapshot "))
      lease.snapshots.emplace(line.substr(9));
  }
  return lease;
}

// Sorts the leases of ROOT/leases into live ones (their file is locked by a running build) and
// stale ones (left by a dead process).
Leases scan_leases(const fs::path& root, int64_t now) {
  Leases leases;
  for (const std::string& id : list_dir(root / "leases")) {
    fs::path file = root / "leases" / id;
    UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    struct stat st {};
    if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
      continue;  // gone meanwhile, or not a lease
    bool locked_by_owner = ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0;
    std::optional<LiveLease> lease;
    try {
      lease = parse_lease(read_all(fd.get(), file.string()));
    } catch (const Error&) {
    }
    bool young = now - st.st_mtim.tv_sec < kLeaseCreationSeconds;
    if (!locked_by_owner && (lease || !young)) {
      leases.stale.push_back(id);
      continue;
    }
    if (!lease) {
      lease.emplace();
      lease->started = st.st_mtim.tv_sec;
    }
    leases.live.push_back(std::move(*lease));
  }
  return leases;
}

// ---- what the store references -------------------------------------------------------------

fs::path blob_path(const fs::path& root, const oci::Digest& digest) {
  return root / "blobs" / digest.algorithm() / digest.hex();
}

std::optional<std::string> read_if_present(const fs::path& path) {
  try {
    return read_file(path);
  } catch (const Error&) {
    return std::nullopt;
  }
}

// Everything reachable from the images of index.json: blobs, and the chain IDs of their configs.
// A blob that is missing or cannot be parsed ends the walk there (`kiln check` reports it).
struct ImageMarks {
  std::set<std::string> blobs;
  std::set<std::string> chains;
};

void mark_descriptor(const fs::path& root, const oci::Descriptor& d, ImageMarks& marks) {
  if (!d.digest.valid() || !marks.blobs.insert(d.digest.str()).second)
    return;
  bool index = oci::media_type::is_index(d.media_type);
  bool manifest = oci::media_type::is_manifest(d.media_type);
  bool config = oci::media_type::is_config(d.media_type);
  if (!index && !manifest && !config)
    return;
  std::optional<std::string> bytes = read_if_present(blob_path(root, d.digest));
  if (!bytes)
    return;
  try {
    if (index) {
      oci::Index parsed = oci::parse_index(*bytes);
      for (const oci::Descriptor& child : parsed.manifests)
        mark_descriptor(root, child, marks);
      if (parsed.subject)
        mark_descriptor(root, *parsed.subject, marks);
    } else if (manifest) {
      oci::Manifest parsed = oci::parse_manifest(*bytes);
      mark_descriptor(root, parsed.config, marks);
      for (const oci::Descriptor& layer : parsed.layers)
        mark_descriptor(root, layer, marks);
      if (parsed.subject)
        mark_descriptor(root, *parsed.subject, marks);
    } else {
      oci::ImageConfig parsed = oci::parse_image_config(*bytes);
      if (!parsed.diff_ids.empty())
        marks.chains.insert(chain_id(parsed.diff_ids).hex());
    }
  } catch (const Error&) {
  }
}

ImageMarks mark_images(const fs::path& root) {
  fs::path index_path = root / "index.json";
  oci::Index index;
  try {
    index = oci::parse_index(read_file(index_path));
  } catch (const Error& e) {
    throw Error("cannot prune: " + index_path.string() +
                " cannot be read, so it is unknown which blobs images need: " + e.what());
  }
  ImageMarks marks;
  for (const oci::Descriptor& d : index.manifests)
    mark_descriptor(root, d, marks);
  return marks;
}

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

std::vector<Item> list_blobs(const fs::path& root) {
  std::vector<Item> blobs;
  for (const std::string& algorithm : list_dir(root / "blobs")) {
    for (const std::string& hex : list_dir(root / "blobs" / algorithm)) {
      fs::path path = root / "blobs" / algorithm / hex;
      std::optional<struct stat> st = lstat_of(path);
      if (st && S_ISREG(st->st_mode)) {
        blobs.push_back({algorithm + ":" + hex, path, st->st_mtim.tv_sec, allocated_bytes(*st)});
      }
    }
  }
  return blobs;
}

std::vector<Item> list_snapshots(const fs::path& root, bool with_sizes) {
  std::vector<Item> snapshots;
  for (const std::string& name : list_dir(root / "snapshots")) {
    if (!is_hex(name, 64))
      continue;
    fs::path path = root / "snapshots" / name;
    std::optional<struct stat> st = lstat_of(path);
    if (st && S_ISDIR(st->st_mode))
      snapshots.push_back({name, path, touched_time(*st), with_sizes ? disk_usage(path) : 0});
  }
  return snapshots;
}

// Which cache records to drop (step 2 of gc.hpp).
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
  std::set<size_t> choose(const fs::path& root, const std::vector<RecordFile>& records) const {
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
      drop_least_recently_used(root, records, std::move(candidates), drop);
    return drop;
  }

 private:
  // Drops the least recently used records until what would remain of blobs/ and snapshots/
  // after the sweep fits in keep_storage. A blob or snapshot frees its space with its last
  // referrer, unless something other than records keeps it. Sizes are disk usage (allocated
  // blocks, as du(1) counts them), since keep_storage is about the disk space kiln takes.
  void drop_least_recently_used(const fs::path& root, const std::vector<RecordFile>& records,
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
    std::vector<Item> items = list_blobs(root);
    for (Item& snapshot : list_snapshots(root, /*with_sizes=*/true))
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
    for (const oci::Descriptor& layer : r.record->layers)
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

void remove_stale_leases(const fs::path& root, const Leases& leases, Sweeper& sweeper,
                         PruneReport& report) {
  for (const std::string& id : leases.stale) {
    size_t ignored = 0;
    sweeper.remove(root / "tmp" / id, ignored);
    sweeper.remove(root / "leases" / id, report.leases);
  }
  // A lease file is created before its tmp directory and removed after it, so a tmp directory
  // without a lease file is left over.
  for (const std::string& id : list_dir(root / "tmp")) {
    if (!lexists(root / "leases" / id))
      sweeper.remove(root / "tmp" / id, report.temp_files);
  }
}

void remove_cache_mounts(const fs::path& root, Sweeper& sweeper, PruneReport& report) {
  fs::path dir = root / "cache-mounts";
  for (const std::string& name : list_dir(dir)) {
    if (!is_hex(name, 64))
      continue;
    fs::path lock_path = dir / (name + ".lock");
    // Holding the lock while removing keeps a locked-sharing RUN from starting on it meanwhile.
    UniqueFd lock(::open(lock_path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (lock && ::flock(lock.get(), LOCK_EX | LOCK_NB) != 0)
      continue;
    std::optional<struct stat> st = lstat_of(dir / name);
    if (!st || sweeper.is_protected(touched_time(*st)))
      continue;
    sweeper.remove(dir / name, report.cache_mounts);
    size_t ignored = 0;
    sweeper.remove(lock_path, ignored);
  }
}

}  // namespace

PruneReport prune(const fs::path& root, const PruneOptions& options) {
  PruneReport report;
  if (!is_dir_nofollow(root))
    return report;
  GcLock lock(root, /*exclusive=*/true);
  int64_t now = now_seconds();
  ImageMarks images = mark_images(root);  // first: it refuses a store whose index is unreadable

  // 1. Leases. Builds cannot hold() anything new while the lock is ours, but one may start (and
  // create things) meanwhile: the sweep looks at the live leases again for its time limit.
  Leases leases = scan_leases(root, now);
  std::optional<int64_t> protected_after = leases.protected_after();
  Sweeper sweeper(protected_after, report);
  remove_stale_leases(root, leases, sweeper, report);

  // 2. Records to drop.
  CacheIndex index(root / "cache" / "records");
  std::vector<RecordFile> records;
  for (const std::string& key : index.keys()) {
    std::optional<struct stat> st = lstat_of(index.path_of(key));
    if (st)
      records.push_back({key, st->st_mtim.tv_sec, index.peek(key)});
  }
  std::set<size_t> drop =
      RecordChooser(options, leases, images, protected_after, now).choose(root, records);

  // 3. Mark.
  std::set<std::string> blobs = images.blobs;
  std::set<std::string> chains = options.all ? std::set<std::string>() : images.chains;
  for (size_t i = 0; i < records.size(); ++i) {
    if (drop.count(i) || !records[i].record)
      continue;
    for (const oci::Descriptor& layer : records[i].record->layers)
      blobs.insert(layer.digest.str());
    if (auto chain = records[i].chain(); chain && !options.all)
      chains.insert(*chain);
  }

  // 4. Sweep: records before the blobs they reference, so that an interrupted prune never leaves
  // a record without its layers.
  sweeper.protect(scan_leases(root, now));
  for (size_t i : drop)
    sweeper.remove(index.path_of(records[i].key), report.records);
  for (const Item& blob : list_blobs(root)) {
    if (!blobs.count(blob.name) && !leases.holds_blob(blob.name) &&
        !sweeper.is_protected(blob.touched)) {
      sweeper.remove(blob.path, report.blobs);
    }
  }
  for (const Item& snapshot : list_snapshots(root, /*with_sizes=*/false)) {
    if (!chains.count(snapshot.name) && !leases.holds_snapshot(snapshot.name) &&
        !sweeper.is_protected(snapshot.touched)) {
      sweeper.remove(snapshot.path, report.snapshots);
    }
  }
  sweeper.remove_leftovers(root / "snapshots", /*any_name=*/false);
  sweeper.remove_leftovers(root / "ingest", /*any_name=*/true);
  sweeper.remove_leftovers(root, /*any_name=*/false);  // index.json.PID.N.tmp
  sweeper.remove_leftovers(root / "cache" / "records", /*any_name=*/false);
  sweeper.remove_leftovers(root / "cache" / "context", /*any_name=*/false);
  if (options.all) {
    for (const std::string& name : list_dir(root / "cache" / "context")) {
      fs::path path = root / "cache" / "context" / name;
      std::optional<struct stat> st = lstat_of(path);
      if (ends_with(name, ".statcache") && st && !sweeper.is_protected(st->st_mtim.tv_sec))
        sweeper.remove(path, report.temp_files);
    }
    remove_cache_mounts(root, sweeper, report);
  }
  return report;
}

// ---- check ---------------------------------------------------------------------------------

namespace {

class Checker {
 public:
  explicit Checker(fs::path root) : root_(std::move(root)) {}

  CheckReport run() {
    check_layout();
    check_blobs();
    check_images();
    check_records();
    check_snapshots();
    check_leftovers();
    return std::move(report_);
  }

 private:
  void problem(const std::string& text) { report_.problems.push_back(text); }
  void leftover(const std::string& text) { report_.leftovers.push_back(text); }

  void check_layout() {
    fs::path layout = root_ / "oci-layout";
    std::optional<std::string> text = read_if_present(layout);
    if (!text) {
      problem(layout.string() + ": missing or unreadable");
      return;
    }
    nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("imageLayoutVersion"))
      problem(layout.string() + ": not an OCI layout file (no imageLayoutVersion)");
  }

  void check_blobs() {
    for (const std::string& algorithm : list_dir(root_ / "blobs")) {
      fs::path dir = root_ / "blobs" / algorithm;
      if (algorithm != "sha256" || !is_dir_nofollow(dir)) {
        problem(dir.string() + ": not a digest algorithm kiln stores (sha256)");
        continue;
      }
      for (const std::string& hex : list_dir(dir)) {
        fs::path path = dir / hex;
        std::optional<struct stat> st = lstat_of(path);
        if (!st)
          continue;
        if (!is_hex(hex, 64) || !S_ISREG(st->st_mode)) {
          problem(path.string() + ": not a blob (a blob is a file named by its sha256)");
          continue;
        }
        ++report_.blobs;
        blob_sizes_["sha256:" + hex] = st->st_size;
        try {
          oci::Digest actual = oci::sha256_of_file(path);
          if (actual.hex() != hex) {
            problem(path.string() + ": content does not match its name (its digest is " +
                    actual.str() + ")");
            corrupt_.insert("sha256:" + hex);
          }
        } catch (const Error& e) {
          problem(e.what());
        }
      }
    }
  }

  // True when the blob a descriptor names is stored with the size the descriptor says; reports
  // a problem for `owner` otherwise.
  bool blob_present(const oci::Descriptor& d, const std::string& owner, const char* what) {
    auto it = blob_sizes_.find(d.digest.str());
    if (it == blob_sizes_.end()) {
      problem(owner + ": " + what + " " + d.digest.str() + " is missing (" +
              blob_path(root_, d.digest).string() + ")");
      return false;
    }
    if (it->second != d.size) {
      problem(owner + ": " + what + " " + d.digest.str() + " has " + std::to_string(it->second) +
              " bytes, its descriptor says " + std::to_string(d.size));
      return false;
    }
    return !corrupt_.count(d.digest.str());  // already reported
  }

  std::optional<std::string> blob_text(const oci::Descriptor& d) {
    return read_if_present(blob_path(root_, d.digest));
  }

  void check_images() {
    fs::path index_path = root_ / "index.json";
    oci::Index index;
    try {
      index = oci::parse_index(read_file(index_path));
    } catch (const Error& e) {
      problem(index_path.string() + ": " + e.what());
      return;
    }
    for (const oci::Descriptor& d : index.manifests) {
      ++report_.images;
      auto name = d.annotations.find(oci::kRefNameAnnotation);
      std::string owner =
          "image " +
          (name != d.annotations.end() && !name->second.empty() ? name->second : d.digest.str());
      std::set<std::string> visited;
      check_image(d, owner, visited);
    }
  }

  void check_image(const oci::Descriptor& d, const std::string& owner,
                   std::set<std::string>& visited) {
    if (!visited.insert(d.digest.str()).second)
      return;
    bool index = oci::media_type::is_index(d.media_type);
    if (!index && !oci::media_type::is_manifest(d.media_type)) {
      blob_present(d, owner, "blob");
      return;
    }
    const char* what = index ? "index" : "manifest";
    if (!blob_present(d, owner, what))
      return;
    std::optional<std::string> bytes = blob_text(d);
    if (!bytes)
      return;
    try {
      if (index) {
        for (const oci::Descriptor& child : oci::parse_index(*bytes).manifests)
          check_image(child, owner, visited);
        return;
      }
      oci::Manifest manifest = oci::parse_manifest(*bytes);
      for (const oci::Descriptor& layer : manifest.layers)
        blob_present(layer, owner, "layer");
      if (!blob_present(manifest.config, owner, "config"))
        return;
      if (!oci::media_type::is_config(manifest.config.media_type))
        return;  // an artifact: its config is not an image config
      std::optional<std::string> config_bytes = blob_text(manifest.config);
      if (!config_bytes)
        return;
      try {
        oci::ImageConfig config = oci::parse_image_config(*config_bytes);
        if (config.diff_ids.size() != manifest.layers.size()) {
          problem(owner + ": config " + manifest.config.digest.str() + " lists " +
                  std::to_string(config.diff_ids.size()) + " diff IDs for " +
                  std::to_string(manifest.layers.size()) + " layers");
        }
      } catch (const Error& e) {
        problem(owner + ": config " + manifest.config.digest.str() + ": " + e.what());
      }
    } catch (const Error& e) {
      problem(owner + ": " + what + " " + d.digest.str() + ": " + e.what());
    }
  }

  // Why a record file is not a record, for the report (CacheIndex only says that it is not).
  static std::string record_fault(const std::string& key, const fs::path& path) {
    try {
      nlohmann::json j = nlohmann::json::parse(read_file(path));
      if (!j.is_object() || !j.contains("key") || !j["key"].is_string())
        return "has no key";
      if (j["key"].get<std::string>() != key)
        return "holds the record of key " + j["key"].get<std::string>() + ", not of its name";
      return "is not a complete cache record (config, layers, or a layer per diff ID missing)";
    } catch (const std::exception& e) {
      return std::string("cannot be parsed: ") + e.what();
    }
  }

  void check_records() {
    CacheIndex index(root_ / "cache" / "records");
    std::vector<std::string> keys = index.keys();
    for (const std::string& name : list_dir(index.dir())) {
      fs::path path = index.dir() / name;
      if (is_temp_name(name)) {
        if (!writer_running(name))
          leftover(path.string() + ": temporary file of an interrupted write");
      } else if (!ends_with(name, ".json") ||
                 !std::binary_search(keys.begin(), keys.end(), name.substr(0, name.size() - 5))) {
        problem(path.string() + ": not a cache record (records are named KEY.json)");
      }
    }
    for (const std::string& key : keys) {
      ++report_.records;
      fs::path path = index.path_of(key);
      std::optional<CacheRecord> record = index.peek(key);
      if (!record) {
        if (lexists(path))
          problem(path.string() + ": " + record_fault(key, path));
        continue;
      }
      for (const oci::Descriptor& layer : record->layers)
        blob_present(layer, "cache record " + path.string(), "layer");
    }
  }

  void check_snapshots() {
    fs::path dir = root_ / "snapshots";
    for (const std::string& name : list_dir(dir)) {
      fs::path path = dir / name;
      if (starts_with(name, ".tmp-")) {
        if (!writer_running(name))
          leftover(path.string() + ": snapshot left unfinished by an interrupted build");
      } else if (!is_hex(name, 64) || !is_dir_nofollow(path)) {
        problem(path.string() + ": not a snapshot (snapshots are directories named by chain ID)");
      } else {
        ++report_.snapshots;
      }
    }
  }

  void check_leftovers() {
    for (const std::string& name : list_dir(root_ / "ingest")) {
      if (!writer_running(name))
        leftover((root_ / "ingest" / name).string() + ": blob of an interrupted write");
    }
    for (const std::string& name : list_dir(root_)) {
      if (is_temp_name(name) && !writer_running(name))
        leftover((root_ / name).string() + ": temporary file of an interrupted write");
    }
    for (const std::string& name : list_dir(root_ / "cache" / "context")) {
      if (is_temp_name(name) && !writer_running(name)) {
        leftover((root_ / "cache" / "context" / name).string() +
                 ": temporary file of an interrupted write");
      }
    }
    Leases leases = scan_leases(root_, now_seconds());
    for (const std::string& id : leases.stale) {
      leftover((root_ / "leases" / id).string() + ": lease of a build that is gone (with " +
               (root_ / "tmp" / id).string() + ")");
    }
    for (const std::string& id : list_dir(root_ / "tmp")) {
      if (!lexists(root_ / "leases" / id))
        leftover((root_ / "tmp" / id).string() + ": scratch space of a build that is gone");
    }
  }

  fs::path root_;
  CheckReport report_;
  std::map<std::string, int64_t> blob_sizes_;  // by "sha256:HEX"
  std::set<std::string> corrupt_;
};

}  // namespace

CheckReport check(const fs::path& root) {
  if (!lexists(root))
    return {};
  // A shared gc.lock keeps a prune from removing things while they are being looked at. Checking
  // a store one may not write to still works, unlocked.
  UniqueFd lock(::open((root / "gc.lock").c_str(), O_RDONLY | O_CLOEXEC));
  if (lock) {
    while (::flock(lock.get(), LOCK_SH) != 0 && errno == EINTR) {
    }
  }
  return Checker(root).run();
}

}  // namespace kiln::solver
