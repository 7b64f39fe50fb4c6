#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "gc_internal.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/oci/cache_index.hpp"
#include "kiln/oci/gc.hpp"
#include "kiln/oci/image_config.hpp"
#include "kiln/oci/layer_blob.hpp"
#include "kiln/oci/manifest.hpp"
#include "kiln/oci/media_types.hpp"
#include "kiln/oci/store.hpp"

namespace kiln::oci {
namespace fs = std::filesystem;

namespace {

using detail::is_dir_nofollow;
using detail::is_hex;
using detail::lexists;
using detail::list_dir;
using detail::lstat_of;
using detail::read_if_present;
using detail::writer_running;

class Checker {
  // Layers with the diff IDs their config gives them: an image's or a cache record's.
  struct LayerChain {
    std::string owner;
    std::vector<Descriptor> layers;
    std::vector<Digest> diff_ids;
  };

 public:
  explicit Checker(const fs::path& root) : layout_(root) {}

  CheckReport run() {
    // The store writes index.json, then oci-layout as the mark of a finished initialization: a
    // first build killed before that leaves a store the next kiln command completes, not a
    // broken one (as long as nothing else is in it).
    if (!lexists(layout_.oci_layout()) && list_dir(layout_.blobs("sha256")).empty()) {
      leftover(layout_.root().string() + ": initialization interrupted (no oci-layout yet)");
      check_leftovers();
      return std::move(report_);
    }
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
    fs::path layout = layout_.oci_layout();
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
    for (const std::string& algorithm : list_dir(layout_.blobs())) {
      fs::path dir = layout_.blobs(algorithm);
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
          Digest actual = sha256_of_file(path);
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
  bool blob_present(const Descriptor& d, const std::string& owner, const char* what) {
    auto it = blob_sizes_.find(d.digest.str());
    if (it == blob_sizes_.end()) {
      problem(owner + ": " + what + " " + d.digest.str() + " is missing (" +
              layout_.blob(d.digest).string() + ")");
      return false;
    }
    if (it->second != d.size) {
      problem(owner + ": " + what + " " + d.digest.str() + " has " + std::to_string(it->second) +
              " bytes, its descriptor says " + std::to_string(d.size));
      return false;
    }
    return !corrupt_.count(d.digest.str());  // already reported
  }

  std::optional<std::string> blob_text(const Descriptor& d) {
    return read_if_present(layout_.blob(d.digest));
  }

  void check_images() {
    fs::path index_path = layout_.index();
    Index index;
    try {
      index = parse_index(read_file(index_path));
    } catch (const Error& e) {
      problem(index_path.string() + ": " + e.what());
      return;
    }
    for (const Descriptor& d : index.manifests) {
      ++report_.images;
      auto name = d.annotations.find(kRefNameAnnotation);
      std::string owner =
          "image " +
          (name != d.annotations.end() && !name->second.empty() ? name->second : d.digest.str());
      std::set<std::string> visited;
      check_image(d, owner, visited);
    }
  }

  void check_image(const Descriptor& d, const std::string& owner, std::set<std::string>& visited) {
    if (!visited.insert(d.digest.str()).second)
      return;
    bool index = media_type::is_index(d.media_type);
    if (!index && !media_type::is_manifest(d.media_type)) {
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
        for (const Descriptor& child : parse_index(*bytes).manifests)
          check_image(child, owner, visited);
        return;
      }
      Manifest manifest = parse_manifest(*bytes);
      for (const Descriptor& layer : manifest.layers)
        blob_present(layer, owner, "layer");
      if (!blob_present(manifest.config, owner, "config"))
        return;
      if (!media_type::is_config(manifest.config.media_type))
        return;  // an artifact: its config is not an image config
      std::optional<std::string> config_bytes = blob_text(manifest.config);
      if (!config_bytes)
        return;
      try {
        ImageConfig config = parse_image_config(*config_bytes);
        if (config.diff_ids.size() != manifest.layers.size()) {
          problem(owner + ": config " + manifest.config.digest.str() + " lists " +
                  std::to_string(config.diff_ids.size()) + " diff IDs for " +
                  std::to_string(manifest.layers.size()) + " layers");
        } else {
          chains_.push_back({owner, manifest.layers, config.diff_ids});
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
    CacheIndex index(layout_.records());
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
      for (const Descriptor& layer : record->layers)
        blob_present(layer, "cache record " + path.string(), "layer");
      if (record->layers.size() == record->config.diff_ids.size())
        chains_.push_back(
            {"cache record " + path.string(), record->layers, record->config.diff_ids});
    }
  }

  // Why the first `count` layers of `chain` do not verify; nullopt when they all do.
  struct ChainFault {
    bool mismatch = false;  // a layer's content is not its diff ID (rather than unreadable)
    std::string text;
  };
  std::optional<ChainFault> chain_fault(const LayerChain& chain, size_t count) {
    for (size_t i = 0; i < count; ++i) {
      const Descriptor& layer = chain.layers[i];
      std::string found;  // its diff ID, or why it has none
      auto known = diff_ids_.find(layer.digest.str());
      if (known != diff_ids_.end()) {
        found = known->second;
      } else if (!blob_sizes_.count(layer.digest.str()) || corrupt_.count(layer.digest.str())) {
        found = "missing or corrupt";
      } else {
        try {
          UniqueFd fd = open_or_throw(layout_.blob(layer.digest), O_RDONLY);
          found = uncompressed_digest(fd.get(), layout_.blob(layer.digest).string()).str();
        } catch (const Error& e) {
          found = e.what();
        }
      }
      diff_ids_[layer.digest.str()] = found;
      if (found == chain.diff_ids[i].str())
        continue;
      bool mismatch = starts_with(found, "sha256:");
      return ChainFault{mismatch, chain.owner + ": layer " + layer.digest.str() +
                                      " should have diff ID " + chain.diff_ids[i].str() +
                                      (mismatch ? " but its uncompressed content is " + found
                                                : " but it cannot be read: " + found)};
    }
    return std::nullopt;
  }

  // A snapshot is trusted when its name is the chain ID of (a prefix of) the layers of an image
  // or cache record whose blobs are present and decompress to the diff IDs their config claims,
  // and of no image or record whose layers do not: see gc.hpp. One that no image or record
  // accounts for cannot be verified; prune removes it.
  void check_snapshots() {
    fs::path dir = layout_.snapshots();
    std::set<std::string> names;
    for (const std::string& name : list_dir(dir)) {
      fs::path path = dir / name;
      if (is_temp_snapshot_name(name)) {
        if (!writer_running(name))
          leftover(path.string() + ": snapshot left unfinished by an interrupted build");
      } else if (!is_hex(name, 64) || !is_dir_nofollow(path)) {
        problem(path.string() + ": not a snapshot (snapshots are directories named by chain ID)");
      } else {
        ++report_.snapshots;
        names.insert(name);
      }
    }
    // Chain ID → the chains (and how many of their layers) that name it.
    std::map<std::string, std::vector<std::pair<const LayerChain*, size_t>>> backers;
    for (const LayerChain& chain : chains_) {
      Digest id;
      for (size_t i = 0; i < chain.diff_ids.size(); ++i) {
        id = i == 0 ? chain.diff_ids[0] : sha256_of(id.str() + " " + chain.diff_ids[i].str());
        if (names.count(id.hex()))
          backers[id.hex()].push_back({&chain, i + 1});
      }
    }
    for (const std::string& name : names) {
      fs::path path = dir / name;
      auto it = backers.find(name);
      if (it == backers.end()) {
        leftover(path.string() +
                 ": snapshot of a layer chain no image or cache record names (it cannot be "
                 "verified; prune removes it)");
        continue;
      }
      // Trusted when some chain naming it verifies and none lies: an image whose layer is not
      // the diff ID its config claims may have made the snapshot (a kiln before unpacks were
      // verified would have let it).
      std::optional<ChainFault> lie, unreadable;
      bool verified = false;
      for (const auto& [chain, count] : it->second) {
        std::optional<ChainFault> fault = chain_fault(*chain, count);
        if (!fault)
          verified = true;
        else if (fault->mismatch && !lie)
          lie = fault;
        else if (!fault->mismatch && !unreadable)
          unreadable = fault;
      }
      if (lie) {
        problem(path.string() + ": cannot be trusted: " + lie->text +
                " (the snapshot may hold that layer's files under another image's chain ID; "
                "remove it)");
      } else if (!verified) {
        problem(path.string() + ": cannot be verified: " + unreadable->text);
      }
    }
  }

  void check_leftovers() {
    for (const std::string& name : list_dir(layout_.ingest())) {
      if (!writer_running(name))
        leftover((layout_.ingest() / name).string() + ": blob of an interrupted write");
    }
    for (const std::string& name : list_dir(layout_.root())) {
      if (is_temp_name(name) && !writer_running(name))
        leftover((layout_.root() / name).string() + ": temporary file of an interrupted write");
    }
    for (const fs::path& dir :
         {layout_.context_caches(), layout_.step_keys(), layout_.step_inputs()}) {
      for (const std::string& name : list_dir(dir)) {
        if (is_temp_name(name) && !writer_running(name))
          leftover((dir / name).string() + ": temporary file of an interrupted write");
      }
    }
    detail::Leases leases = detail::scan_leases(layout_, detail::now_seconds());
    for (const std::string& id : leases.stale) {
      leftover(layout_.lease(id).string() + ": lease of a build that is gone (with " +
               layout_.lease_tmp(id).string() + ")");
    }
    for (const std::string& id : list_dir(layout_.tmp())) {
      if (!lexists(layout_.lease(id)))
        leftover(layout_.lease_tmp(id).string() + ": scratch space of a build that is gone");
    }
  }

  StoreLayout layout_;
  CheckReport report_;
  std::vector<LayerChain> chains_;
  std::map<std::string, std::string> diff_ids_;  // layer digest → its diff ID, or why unknown
  std::map<std::string, int64_t> blob_sizes_;    // by "sha256:HEX"
  std::set<std::string> corrupt_;
};

}  // namespace

CheckReport check(const fs::path& root) {
  if (!lexists(root))
    return {};
  // A shared gc.lock keeps a prune from removing things while they are being looked at. Checking
  // a store one may not write to still works, unlocked.
  UniqueFd lock(::open(StoreLayout(root).gc_lock().c_str(), O_RDONLY | O_CLOEXEC));
  if (lock) {
    while (::flock(lock.get(), LOCK_SH) != 0 && errno == EINTR) {
    }
  }
  return Checker(root).run();
}

}  // namespace kiln::oci
