#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>

#include "gc_internal.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/oci/image_config.hpp"
#include "kiln/oci/manifest.hpp"
#include "kiln/oci/media_types.hpp"

namespace kiln::oci::detail {
namespace fs = std::filesystem;

namespace {

// Clocks of two processes, or a build that read the time just before creating its lease file,
// may disagree by a little: prune keeps a minute more than the oldest live lease claims.
constexpr int64_t kLeaseSlackSeconds = 60;
// A lease file is locked right after it is created and then gets its "started" line. One that is
// unlocked and has no complete "started" line is being created when it is this young, and was
// left by a process killed in that instant when it is older.
constexpr int64_t kLeaseCreationSeconds = 60;

void mark_descriptor(const StoreLayout& layout, const Descriptor& d, ImageMarks& marks) {
  if (!d.digest.valid() || !marks.blobs.insert(d.digest.str()).second)
    return;
  bool index = media_type::is_index(d.media_type);
  bool manifest = media_type::is_manifest(d.media_type);
  bool config = media_type::is_config(d.media_type);
  if (!index && !manifest && !config)
    return;
  std::optional<std::string> bytes = read_if_present(layout.blob(d.digest));
  if (!bytes)
    return;
  try {
    if (index) {
      Index parsed = parse_index(*bytes);
      for (const Descriptor& child : parsed.manifests)
        mark_descriptor(layout, child, marks);
      if (parsed.subject)
        mark_descriptor(layout, *parsed.subject, marks);
    } else if (manifest) {
      Manifest parsed = parse_manifest(*bytes);
      mark_descriptor(layout, parsed.config, marks);
      for (const Descriptor& layer : parsed.layers)
        mark_descriptor(layout, layer, marks);
      if (parsed.subject)
        mark_descriptor(layout, *parsed.subject, marks);
    } else {
      ImageConfig parsed = parse_image_config(*bytes);
      if (!parsed.diff_ids.empty())
        marks.chains.insert(chain_id(parsed.diff_ids).hex());
    }
  } catch (const Error&) {
  }
}

}  // namespace

// ---- leases --------------------------------------------------------------------------------

std::optional<int64_t> Leases::protected_after() const {
  if (live.empty())
    return std::nullopt;
  int64_t oldest = live.front().started;
  for (const LeaseContents& lease : live)
    oldest = std::min(oldest, lease.started);
  return oldest - kLeaseSlackSeconds;
}

bool Leases::holds_blob(const std::string& digest) const {
  return std::any_of(live.begin(), live.end(),
                     [&](const LeaseContents& l) { return l.blobs.count(digest) > 0; });
}

bool Leases::holds_record(const std::string& key) const {
  return std::any_of(live.begin(), live.end(),
                     [&](const LeaseContents& l) { return l.records.count(key) > 0; });
}

bool Leases::holds_snapshot(const std::string& chain) const {
  return std::any_of(live.begin(), live.end(),
                     [&](const LeaseContents& l) { return l.snapshots.count(chain) > 0; });
}

Leases scan_leases(const StoreLayout& layout, int64_t now) {
  Leases leases;
  for (const std::string& id : list_dir(layout.leases())) {
    fs::path file = layout.lease(id);
    UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    struct stat st {};
    if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
      continue;  // gone meanwhile, or not a lease
    bool locked_by_owner = ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0;
    std::optional<LeaseContents> lease;
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

// ---- what the images reference -------------------------------------------------------------

ImageMarks mark_images(const StoreLayout& layout) {
  fs::path index_path = layout.index();
  Index index;
  try {
    index = parse_index(read_file(index_path));
  } catch (const Error& e) {
    throw Error("cannot prune: " + index_path.string() +
                " cannot be read, so it is unknown which blobs images need: " + e.what());
  }
  ImageMarks marks;
  for (const Descriptor& d : index.manifests)
    mark_descriptor(layout, d, marks);
  return marks;
}

}  // namespace kiln::oci::detail
