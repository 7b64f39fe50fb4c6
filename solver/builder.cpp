#include "kiln/solver/builder.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <regex>
#include <semaphore>
#include <set>
#include <thread>

#include "cache_key.hpp"
#include "content_hasher.hpp"
#include "copy.hpp"
#include "kiln/base/crash_point.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/oci/image_source.hpp"
#include "kiln/oci/media_types.hpp"
#include "kiln/runner/emulation.hpp"
#include "kiln/runner/oci_runtime.hpp"
#include "kiln/runner/sandbox.hpp"
#include "kiln/snapshotter/diff.hpp"
#include "kiln/snapshotter/layer_applier.hpp"
#include "kiln/solver/cache_index.hpp"
#include "kiln/solver/lease.hpp"
#include "metadata.hpp"
#include "ownership.hpp"
#include "rootfs.hpp"
#include "run_mounts.hpp"
#include "ssh_agent_proxy.hpp"
#include "stage_root.hpp"
#include "url_fetch.hpp"

namespace kiln::solver {
namespace fs = std::filesystem;
using frontend::InstructionKind;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// One stage while it is being built: its image state after the last step, the key of that
// state, and its root filesystem once something needed it.
struct StageState : ImageState {
  std::string key;
  size_t base_layers = 0;  // layers that came with FROM
  std::mutex root_mutex;   // other stages read a finished stage's root (COPY --from)
  std::unique_ptr<StageRoot> root;
  std::vector<oci::Digest> root_ids;  // the layer chain (diff IDs) `root` holds
};

// The error of one failed stage, and which stage.
struct Failure {
  size_t stage;
  std::exception_ptr error;
};

}  // namespace

std::string build_timestamp(const std::optional<int64_t>& source_date_epoch) {
  return oci::format_rfc3339(source_date_epoch.value_or(now_seconds()));
}

class SharedSteps {
 public:
  std::mutex mutex;
  std::map<std::string, std::shared_future<CacheRecord>> in_flight;
  std::atomic<size_t> next_step{0};  // step ids are unique across the Builders
};

std::shared_ptr<SharedSteps> make_shared_steps() {
  return std::make_shared<SharedSteps>();
}

struct Builder::Impl {
  oci::Store& store;
  BuildRequest request;
  std::string created;
  int64_t now;
  Lease lease;
  CacheIndex cache;
  SnapshotCache snapshots;
  ContentHasher hasher;
  std::string salt;
  const frontend::BuildPlan* current_plan = nullptr;

  std::mutex mutex;                                  // guards everything below
  std::map<std::string, oci::ResolvedImage> images;  // by "ref|platform"
  std::map<size_t, std::shared_ptr<StageState>> finished;
  // Steps being computed, by key: a second stage reaching the same key waits for the first.
  std::shared_ptr<SharedSteps> shared;
  std::optional<bool> stage_overlay_usable;
  std::optional<bool> overlay_usable;  // probed on the first RUN when --snapshotter=auto
  std::atomic<size_t> steps_run{0}, steps_cached{0};
  std::vector<std::pair<size_t, CacheRecord>> used_records;  // (stage, record)
  std::mutex download_mutex;
  std::map<std::string, DownloadedSource> downloads;  // by "URL|checksum"

  Impl(oci::Store& s, BuildRequest r)
      : store(s),
        request(std::move(r)),
        lease(store.root()),
        cache(store.root() / "cache" / "records"),
        snapshots(store.root() / "snapshots"),
        hasher(store.root() / "cache" / "context", request.context) {
    now = request.source_date_epoch.value_or(now_seconds());
    created = oci::format_rfc3339(now);
    salt = build_salt(request.layers, request.source_date_epoch);
    shared = request.shared_steps ? request.shared_steps : make_shared_steps();
  }

  // --- progress ------------------------------------------------------------------------------

  void emit(ProgressEvent::Kind kind, size_t step, std::string name = {}, std::string text = {},
            double seconds = 0) {
    if (!request.progress)
      return;
    ProgressEvent e;
    e.kind = kind;
    e.step = step;
    e.name = std::move(name);
    e.text = std::move(text);
    e.seconds = seconds;
    request.progress->event(e);
  }

  void message(const std::string& text) { emit(ProgressEvent::Kind::kMessage, 0, {}, text); }

  // --- images and snapshots -------------------------------------------------------------------

  oci::ResolvedImage image(const std::string& ref, const oci::Platform& platform) {
    std::string key = ref + "|" + platform.to_string();
    std::lock_guard lock(mutex);
    auto it = images.find(key);
    if (it == images.end()) {
      oci::ResolvedImage resolved = from_registry(ref, platform)
                                        ? pull(ref, platform)
                                        : oci::resolve_image(store, ref, platform);
      // A single-platform image (no index to choose from) must be for the platform asked for.
      oci::Platform have{resolved.config.os, resolved.config.architecture, resolved.config.variant};
      if (!have.os.empty() && !have.architecture.empty() &&
          !oci::platform_matches(platform, oci::normalize(have))) {
        throw Error("image " + quote(ref) + " is for " + oci::normalize(have).to_string() +
                    ", not " + platform.to_string() +
                    " (it is a single-platform image: build or pull one for " +
                    platform.to_string() + ", or a multi-platform index)");
      }
      // Keep the image's blobs while this build runs, even if its tag goes away meanwhile.
      lease.hold("blob " + resolved.manifest.digest.str(),
                 store.blob_path(resolved.manifest.digest));
      lease.hold("blob " + resolved.parsed.config.digest.str(),
                 store.blob_path(resolved.parsed.config.digest));
      for (const oci::Descriptor& layer : resolved.parsed.layers)
        lease.hold("blob " + layer.digest.str(), store.blob_path(layer.digest));
      it = images.emplace(key, std::move(resolved)).first;
    }
    return it->second;
  }

  // Whether `ref` must come from its registry: a name (not a transport, not an image ID) that
  // the store does not have, or any name with --pull.
  bool from_registry(const std::string& ref, const oci::Platform& platform) {
    if (oci::has_transport(ref) || !oci::try_parse_reference(ref))
      return false;
    if (request.pull)
      return true;
    std::optional<oci::TaggedImage> local = store.find(ref);
    if (!local)
      return true;
    (void)platform;
    return false;
  }

  oci::ResolvedImage pull(const std::string& ref, const oci::Platform& platform) {
    oci::Reference parsed = oci::parse_reference(ref);
    message("Pulling " + parsed.str() + " for " + platform.to_string());
    oci::RegistryOptions options = request.registry;
    options.log = [this](const std::string& line) { message(line); };
    try {
      return oci::pull_image(store, parsed, platform, options);
    } catch (const Error& e) {
      if (request.pull)
        throw;
      throw Error("image " + quote(ref) +
                  " is not in the local store, and pulling it failed: " + e.what());
    }
  }

  snapshotter::ApplyOptions apply_options() const {
    snapshotter::ApplyOptions options;
    options.preserve_ownership = ::geteuid() == 0;
    options.allow_devices = ::geteuid() == 0;
    return options;
  }

  void apply(const oci::Descriptor& layer, const fs::path& root) {
    snapshotter::apply_layer(store.blob_path(layer.digest), root, apply_options());
  }

  // The cached snapshot of a layer chain (unpacked now when missing), held for this build.
  fs::path snapshot(const std::vector<oci::Descriptor>& layers,
                    const std::vector<oci::Digest>& diff_ids) {
    if (layers.size() != diff_ids.size()) {
      throw Error("image config lists " + std::to_string(diff_ids.size()) +
                  " layers but its manifest has " + std::to_string(layers.size()));
    }
    for (;;) {
      fs::path dir = snapshots.get(diff_ids, [&](const fs::path& into) {
        for (const oci::Descriptor& layer : layers)
          apply(layer, into);
        crash_point("snapshot-unpacked");
      });
      if (lease.hold("snapshot " + dir.filename().string(), dir))
        return dir;
      // A concurrent prune removed it between get() and hold(): unpack again.
    }
  }

  // The unpacked filesystem of an image named by COPY --from=IMAGE or RUN --mount from=IMAGE.
  fs::path image_root(const std::string& ref, const oci::Platform& platform) {
    oci::ResolvedImage img = image(ref, platform);
    if (img.parsed.layers.empty()) {
      std::lock_guard lock(mutex);
      static const std::string empty = "empty-root";
      fs::path dir = lease.temp_dir() / empty;
      fs::create_directories(dir);
      return dir;
    }
    return snapshot(img.parsed.layers, img.config.diff_ids);
  }

  static bool in_initial_userns() {
    try {
      std::string map = read_file("/proc/self/uid_map");
      return map.find("4294967295") != std::string::npos;
    } catch (const Error&) {
      return true;
    }
  }

  // Whether stage roots are overlays on their snapshots (else copies of them).
  bool stage_overlay() {
    std::lock_guard lock(mutex);
    if (!stage_overlay_usable) {
      TempDir probe(lease.temp_dir(), "overlay-probe-");
      stage_overlay_usable = request.snapshotter != "copy" &&
                             snapshotter::overlay_available(probe.path(), !in_initial_userns());
    }
    return *stage_overlay_usable;
  }

  // The stage's root filesystem for its current state, made (or brought up to date) on demand:
  // an overlay on the snapshot of the whole chain when one exists, else on the snapshot of the
  // FROM layers with the stage's own layers applied on top.
  fs::path root(StageState& st) {
    std::lock_guard lock(st.root_mutex);
    const std::vector<oci::Digest>& ids = st.config.diff_ids;
    bool prefix = st.root && st.root_ids.size() <= ids.size() &&
                  std::equal(st.root_ids.begin(), st.root_ids.end(), ids.begin());
    if (!prefix)
      st.root.reset();
    if (!st.root) {
      st.root_ids.clear();
      std::optional<fs::path> whole = snapshots.find(ids);
      if (whole && lease.hold("snapshot " + whole->filename().string(), *whole)) {
        st.root = std::make_unique<StageRoot>(lease.temp_dir(), *whole, stage_overlay(),
                                              !in_initial_userns());
        st.root_ids = ids;
      } else if (st.base_layers == 0) {
        st.root = std::make_unique<StageRoot>(lease.temp_dir());
      } else {
        std::vector<oci::Descriptor> base(st.layers.begin(), st.layers.begin() + st.base_layers);
        std::vector<oci::Digest> base_ids(ids.begin(), ids.begin() + st.base_layers);
        st.root = std::make_unique<StageRoot>(lease.temp_dir(), snapshot(base, base_ids),
                                              stage_overlay(), !in_initial_userns());
        st.root_ids = base_ids;
      }
    }
    for (size_t i = st.root_ids.size(); i < ids.size(); ++i) {
      apply(st.layers[i], st.root->path());
      st.root_ids.push_back(ids[i]);
    }
    return st.root->path();
  }

  // --- the cache ------------------------------------------------------------------------------

  bool cache_allowed(const frontend::Stage& stage) const {
    if (request.no_cache)
      return false;
    for (const std::string& f : request.no_cache_filter) {
      if (to_lower(f) == stage.name || f == std::to_string(stage.index))
        return false;
    }
    return true;
  }

  // A usable record: parseable, held for this build, and every layer in the store. When the
  // local index misses, the --cache-from caches are asked; a hit there fetches its layers and
  // joins the local index.
  std::optional<CacheRecord> lookup(const std::string& key) {
    std::optional<CacheRecord> record = cache.get(key);
    if (record && lease.hold("record " + key, cache.path_of(key)) &&
        std::all_of(record->layers.begin(), record->layers.end(),
                    [&](const oci::Descriptor& l) { return store.has_blob(l.digest); })) {
      return record;
    }
    for (const std::shared_ptr<const RemoteCache>& remote : request.cache_from) {
      std::optional<CacheRecord> imported;
      try {
        imported = remote->fetch(key, store);
      } catch (const Error& e) {
        // A broken or unreachable cache costs time, not the build: the step runs instead.
        message(std::string("WARNING: ") + e.what() + "; running the step instead");
      }
      if (!imported)
        continue;
      cache.put(*imported);
      if (lease.hold("record " + key, cache.path_of(key)))
        return imported;
    }
    return std::nullopt;
  }

  // Every step's resulting record, for --cache-to.
  void used(size_t stage, const StageState& st) {
    std::lock_guard lock(mutex);
    used_records.emplace_back(stage, record_of(st));
  }

  static CacheRecord record_of(const StageState& st) {
    CacheRecord r;
    r.key = st.key;
    r.config = st.config;
    r.layers = st.layers;
    r.cmd_set = st.cmd_set;
    return r;
  }

  static void take(StageState& st, const CacheRecord& r) {
    st.key = r.key;
    st.config = r.config;
    st.layers = r.layers;
    st.cmd_set = r.cmd_set;
  }

  // --- steps -----------------------------------------------------------------------------------

  static std::string created_by(const frontend::Op& op) {
    return op.instruction ? op.instruction->text : std::string(keyword_of(op.kind));
  }

  static std::string stage_label(const frontend::Stage& stage) {
    return stage.name.empty() ? "stage-" + std::to_string(stage.index) : stage.name;
  }

  std::shared_ptr<StageState> finished_stage(size_t index) {
    std::lock_guard lock(mutex);
    auto it = finished.find(index);
    if (it == finished.end())
      throw Error("internal: stage " + std::to_string(index) + " is used before it was built");
    return it->second;
  }

  void start_stage(StageState& st, const frontend::Stage& stage) {
    switch (stage.base_kind) {
      case frontend::BaseKind::kScratch:
        st.config.os = stage.platform.os;
        st.config.architecture = stage.platform.architecture;
        st.config.variant = stage.platform.variant;
        st.key = scratch_key(salt, stage.platform);
        break;
      case frontend::BaseKind::kStage: {
        std::shared_ptr<StageState> base = finished_stage(*stage.base_stage);
        st.config = base->config;
        st.layers = base->layers;
        st.key = stage_base_key(base->key);
        break;
      }
      case frontend::BaseKind::kImage: {
        oci::ResolvedImage base = image(stage.base_image, stage.platform);
        st.config = base.config;
        st.layers = base.parsed.layers;
        if (st.layers.size() != st.config.diff_ids.size()) {
          throw Error("image " + stage.base_image + ": its config lists " +
                      std::to_string(st.config.diff_ids.size()) + " layers but its manifest has " +
                      std::to_string(st.layers.size()));
        }
        // The base's triggers ran (they are ops of this stage); they are not inherited.
        st.config.config.on_build.clear();
        st.key = image_key(salt, base.manifest.digest, stage.platform);
        break;
      }
    }
    st.base_layers = st.layers.size();
    if (!has_env(st.config.config.env, "PATH"))
      set_env(st.config.config.env, "PATH", kDefaultPath);
  }

  // The request a COPY/ADD makes. With `for_key`, nothing that needs the stage's filesystem is
  // looked at (--chown names are not resolved, no destination root) and sources from other
  // stages or images are left to the caller.
  CopyRequest copy_request(StageState& st, const frontend::Stage& stage, const frontend::Op& op,
                           bool for_key) {
    CopyRequest req;
    req.add = op.kind == InstructionKind::kAdd;
    req.sources.assign(op.args.begin(), op.args.end() - 1);
    req.dest = op.args.back();
    req.workdir = st.config.config.working_dir.empty() ? "/" : st.config.config.working_dir;
    req.heredocs = op.heredocs;
    req.now = now;
    req.source_root = request.context;
    req.ignore = &request.ignore;
    if (!op.from_directory.empty()) {
      req.source_root = op.from_directory;
      req.ignore = directory_ignore(op.from_directory);
    }
    std::optional<std::string> checksum;
    for (const frontend::Flag& f : op.flags) {
      if (f.name == "checksum" && f.value)
        checksum = *f.value;
    }
    size_t urls = 0;
    for (const std::string& source : req.sources) {
      if (is_url(source)) {
        if (!req.add)
          throw Error("COPY cannot fetch " + quote(source) + ": use ADD for URLs");
        req.downloads[source] = download(source, checksum);
        ++urls;
      } else if (source.find("://") != std::string::npos || starts_with(source, "git@")) {
        throw Error("ADD of " + quote(source) +
                    ": git repositories and URL schemes other than http(s) are not supported by "
                    "this version of kiln");
      }
    }
    if (checksum && (urls != 1 || req.sources.size() != 1)) {
      throw Error("ADD --checksum needs exactly one source, an http(s) URL");
    }
    if (checksum && !std::regex_match(*checksum, std::regex("sha256:[0-9a-f]{64}"))) {
      throw Error("ADD --checksum=" + *checksum + ": expected sha256:<64 hex digits>");
    }
    for (const frontend::Flag& f : op.flags) {
      if (f.name == "link")
        req.link = !f.value || iequals(*f.value, "true");
      if (f.name == "parents")
        req.parents = !f.value || iequals(*f.value, "true");
      if (f.name == "exclude" && f.value)
        req.exclude.push_back(*f.value);
      if (f.name == "chmod" && f.value)
        req.chmod = ChmodSpec::parse(*f.value);
      if (f.name == "chown" && f.value && !for_key)
        req.chown = resolve_owner(*f.value, root(st));
      if (f.name == "keep-git-dir") {
        throw Error(
            "ADD --keep-git-dir applies to git sources, which this version of kiln "
            "cannot fetch");
      }
    }
    if (!for_key) {
      req.dest_root = root(st);
      if (op.from_stage) {
        req.source_root = root(*finished_stage(*op.from_stage));
        req.from_context = false;
        req.ignore = nullptr;
      } else if (!op.from_image.empty()) {
        req.source_root = image_root(op.from_image, stage.platform);
        req.from_context = false;
        req.ignore = nullptr;
      }
    }
    return req;
  }

  // ADD <URL>: fetched once per build (the key and the step both need the content).
  DownloadedSource download(const std::string& url, const std::optional<std::string>& checksum) {
    std::lock_guard lock(download_mutex);
    std::string key = url + "|" + checksum.value_or("");
    auto it = downloads.find(key);
    if (it == downloads.end()) {
      fs::path dir = lease.temp_dir() / "downloads";
      fs::create_directories(dir);
      Download d = fetch_url(url, dir, checksum);
      it = downloads.emplace(key, DownloadedSource{d.file, d.name, d.last_modified.value_or(now)})
               .first;
    }
    return it->second;
  }

  std::string context_digest(const CopyRequest& req) {
    return copy_source_digest(req, [&](const fs::path& path, const struct stat& st) {
      return hasher.file_hash(path, st);
    });
  }

  // What an op reads besides the previous state (see cache_key.hpp).
  nlohmann::ordered_json op_inputs(StageState& st, const frontend::Stage& stage,
                                   const frontend::Op& op) {
    nlohmann::ordered_json in = nlohmann::ordered_json::object();
    if (op.kind == InstructionKind::kCopy || op.kind == InstructionKind::kAdd) {
      if (op.from_stage) {
        in["from"] = "stage " + finished_stage(*op.from_stage)->key;
      } else if (!op.from_image.empty()) {
        in["from"] = "image " + image(op.from_image, stage.platform).manifest.digest.str();
      } else {
        in["sources"] = context_digest(copy_request(st, stage, op, /*for_key=*/true));
      }
    } else if (op.kind == InstructionKind::kRun) {
      in["args"] = op.visible_args;
      in["network"] = request.network;
      if (!request.extra_hosts.empty())
        in["hosts"] = request.extra_hosts;
      nlohmann::ordered_json mounts = nlohmann::ordered_json::array();
      std::string cwd = st.config.config.working_dir.empty() ? "/" : st.config.config.working_dir;
      for (const frontend::Flag& f : op.flags) {
        if (f.name != "mount" || !f.value)
          continue;
        RunMount m = parse_run_mount(*f.value, cwd);
        if (m.type != RunMount::Type::kBind)
          continue;
        std::optional<fs::path> dir =
            m.from.empty() ? std::optional<fs::path>(request.context) : context_directory(m.from);
        if (dir) {
          CopyRequest req;
          req.sources = {m.source.empty() ? "." : m.source};
          req.dest = "/";
          req.source_root = *dir;
          req.ignore = m.from.empty() ? &request.ignore : directory_ignore(dir->string());
          mounts.push_back(m.target + " " + context_digest(req));
        } else if (auto index = stage_named(m.from)) {
          mounts.push_back(m.target + " stage " + finished_stage(*index)->key);
        } else {
          mounts.push_back(m.target + " image " +
                           image(mount_image(m.from), stage.platform).manifest.digest.str());
        }
      }
      in["mounts"] = std::move(mounts);
    }
    return in;
  }

  void execute(StageState& st, const frontend::Stage& stage, const frontend::Op& op, size_t step) {
    if (is_metadata(op.kind)) {
      apply_metadata(st, op, created);
      return;
    }
    switch (op.kind) {
      case InstructionKind::kWorkdir:
        workdir(st, op);
        return;
      case InstructionKind::kCopy:
      case InstructionKind::kAdd:
        copy(st, stage, op);
        return;
      case InstructionKind::kRun:
        run(st, op, step);
        return;
      default:
        return;
    }
  }

  // One step: its key, then the cache, another stage computing the same key, or running it.
  void run_step(StageState& st, const frontend::Stage& stage, const frontend::Op& op,
                const std::string& name) {
    size_t id = ++shared->next_step;
    emit(ProgressEvent::Kind::kStarted, id, name);
    auto started = Clock::now();
    try {
      std::string key;
      try {
        key = op_key(st.key, op, op_inputs(st, stage, op));
      } catch (const InputError&) {
        throw;
      } catch (const Error& e) {
        throw InputError(op.where, std::string(keyword_of(op.kind)) + ": " + e.what());
      }
      std::optional<CacheRecord> record;
      if (cache_allowed(stage))
        record = lookup(key);
      std::promise<CacheRecord> promise;
      std::shared_future<CacheRecord> other;
      if (!record) {
        std::lock_guard lock(shared->mutex);
        auto it = shared->in_flight.find(key);
        if (it != shared->in_flight.end()) {
          other = it->second;
        } else {
          shared->in_flight.emplace(key, promise.get_future().share());
        }
      }
      if (!record && other.valid())
        record = other.get();  // rethrows the other stage's failure
      if (record) {
        take(st, *record);
        used(stage.index, st);
        ++steps_cached;
        emit(ProgressEvent::Kind::kCached, id, {}, {}, seconds_since(started));
        return;
      }
      try {
        execute(st, stage, op, id);
        st.key = key;
        CacheRecord result = record_of(st);
        crash_point("before-record");
        cache.put(result);
        crash_point("after-record");
        promise.set_value(std::move(result));
      } catch (...) {
        promise.set_exception(std::current_exception());
        throw;
      }
      used(stage.index, st);
      ++steps_run;
      emit(ProgressEvent::Kind::kDone, id, {}, {}, seconds_since(started));
    } catch (const std::exception& e) {
      emit(ProgressEvent::Kind::kFailed, id, {}, e.what(), seconds_since(started));
      throw;
    }
  }

  std::shared_ptr<StageState> run_stage(const frontend::Stage& stage) {
    auto st = std::make_shared<StageState>();
    size_t total = 1 + static_cast<size_t>(std::count_if(stage.ops.begin(), stage.ops.end(),
                                                         [](const frontend::Op& op) {
                                                           return op.kind != InstructionKind::kArg;
                                                         }));
    size_t n = 0;
    auto label = [&](const std::string& text) {
      return "[" + request.step_prefix + stage_label(stage) + " " + std::to_string(++n) + "/" +
             std::to_string(total) + "] " + text;
    };
    std::string from = stage.base_kind == frontend::BaseKind::kImage ? stage.base_image
                       : stage.base_kind == frontend::BaseKind::kStage
                           ? stage_label(current_plan->stages[*stage.base_stage])
                           : std::string("scratch");
    size_t id = ++shared->next_step;
    emit(ProgressEvent::Kind::kStarted, id, label("FROM " + from));
    auto started = Clock::now();
    try {
      start_stage(*st, stage);
    } catch (const InputError& e) {
      emit(ProgressEvent::Kind::kFailed, id, {}, e.what(), seconds_since(started));
      throw;
    } catch (const Error& e) {
      InputError located(stage.where, e.what());
      emit(ProgressEvent::Kind::kFailed, id, {}, located.what(), seconds_since(started));
      throw located;
    }
    emit(ProgressEvent::Kind::kDone, id, {}, {}, seconds_since(started));
    for (const frontend::Op& op : stage.ops) {
      if (op.kind == InstructionKind::kArg)
        continue;  // ARG changes no state; its value reaches the keys of the steps that see it
      run_step(*st, stage, op, label(created_by(op)));
    }
    return st;
  }

  // Writes the layer into the store and records it; brings the stage's root up to date unless
  // the change is already there (a RUN with the copy snapshotter ran in place).
  void write_layer_only(StageState& st, std::vector<snapshotter::LayerEntry> entries, bool apply) {
    auto writer = store.begin_blob();
    snapshotter::LayerResult result =
        snapshotter::write_layer(std::move(entries), request.layers, *writer);
    crash_point("layer-written");
    writer->commit(result.digest);
    crash_point("layer-committed");
    const char* media =
        result.compression == snapshotter::Compression::kGzip   ? oci::media_type::kOciLayerGzip
        : result.compression == snapshotter::Compression::kZstd ? oci::media_type::kOciLayerZstd
                                                                : oci::media_type::kOciLayer;
    oci::Descriptor d;
    d.media_type = media;
    d.digest = result.digest;
    d.size = result.size;
    st.layers.push_back(d);
    st.config.diff_ids.push_back(result.diff_id);
    if (apply) {
      root(st);
    } else {
      std::lock_guard lock(st.root_mutex);
      st.root_ids.push_back(result.diff_id);
    }
  }

  void add_layer(StageState& st, std::vector<snapshotter::LayerEntry> entries) {
    write_layer_only(st, std::move(entries), /*apply=*/true);
  }

  void workdir(StageState& st, const frontend::Op& op) {
    std::string path = op.args.front();
    std::string current = st.config.config.working_dir.empty() ? "/" : st.config.config.working_dir;
    std::string joined = starts_with(path, "/") ? path : current + "/" + path;
    std::string clean = "/" + clean_in_root(joined);
    st.config.config.working_dir = clean;
    // The directory is created when it does not exist (a layer with it and its parents).
    fs::path rootfs = root(st);
    std::string resolved = resolve_in_root(rootfs, clean);
    auto existing = lstat_in_root(rootfs, resolved);
    if (resolved.empty() || (existing && S_ISDIR(existing->st_mode))) {
      add_history(st, created, created_by(op), true);
      return;
    }
    std::vector<snapshotter::LayerEntry> entries;
    for (std::string p = resolved; !p.empty();) {
      snapshotter::LayerEntry e;
      e.path = p;
      auto st_parent = lstat_in_root(rootfs, p);
      if (st_parent && S_ISDIR(st_parent->st_mode)) {
        e.mode = st_parent->st_mode;
        e.uid = st_parent->st_uid;
        e.gid = st_parent->st_gid;
        e.mtime_sec = st_parent->st_mtim.tv_sec;
      } else {
        e.mode = S_IFDIR | 0755;
        e.mtime_sec = now;
      }
      entries.push_back(std::move(e));
      size_t slash = p.rfind('/');
      p = slash == std::string::npos ? std::string() : p.substr(0, slash);
    }
    add_layer(st, std::move(entries));
    add_history(st, created, created_by(op), false);
  }

  void copy(StageState& st, const frontend::Stage& stage, const frontend::Op& op) {
    try {
      CopyRequest req = copy_request(st, stage, op, /*for_key=*/false);
      CopyPlan plan = plan_copy(req);
      if (plan.entries.empty()) {
        add_history(st, created, created_by(op), true);
        return;
      }
      add_layer(st, std::move(plan.entries));
    } catch (const InputError&) {
      throw;
    } catch (const Error& e) {
      throw InputError(op.where, std::string(keyword_of(op.kind)) + ": " + e.what());
    }
    add_history(st, created, created_by(op), false);
  }

  // --- RUN ---------------------------------------------------------------------------------

  // Whether RUN steps use an overlay snapshot (else the copy snapshotter runs them in place).
  bool use_overlay() {
    if (request.snapshotter == "copy")
      return false;
    std::lock_guard lock(mutex);
    if (!overlay_usable) {
      TempDir probe(lease.temp_dir(), "overlay-probe-");
      overlay_usable = snapshotter::overlay_available(probe.path(), /*userxattr=*/true);
      if (!*overlay_usable && request.snapshotter == "auto") {
        message("overlayfs cannot be mounted here: RUN steps use the copy snapshotter");
      }
    }
    if (!*overlay_usable && request.snapshotter == "overlay") {
      throw Error(
          "--snapshotter overlay: overlayfs cannot be mounted here (use --snapshotter copy)");
    }
    return *overlay_usable;
  }

  // The argv of a RUN: exec form as is; shell form through the stage's SHELL; here-documents as
  // BuildKit runs them (a lone `<<EOF` is the script; otherwise the bodies follow the command
  // line so the shell reads them itself).
  std::vector<std::string> run_argv(const frontend::Op& op, const StageState& st,
                                    std::optional<std::string>& script) const {
    if (op.json_form)
      return op.args;
    std::string cmd = op.args.empty() ? std::string() : op.args.front();
    std::vector<std::string> argv = shell_of(st.config);
    if (!op.heredocs.empty()) {
      std::string trimmed(trim(cmd));
      bool alone = op.heredocs.size() == 1 && trimmed.starts_with("<<") &&
                   trimmed.find_first_of(" \t") == std::string::npos;
      if (alone) {
        const std::string& body = op.heredocs.front().content;
        if (body.starts_with("#!")) {
          script = body;  // run as an executable file, its shebang picks the interpreter
          return {"/dev/pipes/kiln-script"};
        }
        argv.push_back(body);
        return argv;
      }
      for (const frontend::Heredoc& doc : op.heredocs)
        cmd += "\n" + doc.content + doc.name;
    }
    argv.push_back(cmd);
    return argv;
  }

  std::vector<std::string> run_env(const frontend::Op& op, const StageState& st) const {
    std::vector<std::string> env = st.config.config.env;
    // Build args are in RUN's environment unless ENV sets the same name.
    for (const auto& [name, value] : op.visible_args) {
      if (!has_env(env, name))
        env.push_back(name + "=" + value);
    }
    return env;
  }

  std::optional<size_t> stage_named(const std::string& ref) const {
    if (!ref.empty() && ref.find_first_not_of("0123456789") == std::string::npos) {
      size_t index = std::stoul(ref);
      if (index < current_plan->stages.size())
        return index;
    }
    std::string lower = to_lower(ref);
    for (size_t i = current_plan->stages.size(); i-- > 0;) {
      if (!lower.empty() && current_plan->stages[i].name == lower)
        return i;
    }
    return std::nullopt;
  }

  // RUN --mount from=NAME where NAME is a local --build-context: its directory.
  std::optional<fs::path> context_directory(const std::string& ref) const {
    const frontend::NamedContext* c = frontend::find_named_context(request.named_contexts, ref);
    if (!c || !c->local || stage_named(ref))
      return std::nullopt;
    return fs::path(c->value);
  }

  // RUN --mount from=REF naming an image: the --build-context image it stands for, else REF.
  std::string mount_image(const std::string& ref) const {
    const frontend::NamedContext* c = frontend::find_named_context(request.named_contexts, ref);
    return c && !c->local ? c->value : ref;
  }

  const frontend::IgnoreMatcher* directory_ignore(const std::string& dir) const {
    auto it = request.directory_ignores.find(dir);
    return it == request.directory_ignores.end() ? nullptr : &it->second;
  }

  // Host directory holding a RUN --mount=type=cache, created with the requested owner and mode.
  fs::path cache_dir(const RunMount& m) {
    fs::path dir = request.cache_mounts / oci::sha256_of(m.id).hex();
    if (!fs::exists(dir)) {
      fs::create_directories(dir);
      ::chmod(dir.c_str(), m.mode);
      if (::lchown(dir.c_str(), m.uid, m.gid) != 0 && ::geteuid() == 0) {
        throw Error("chown cache mount " + dir.string() + ": " + std::strerror(errno));
      }
    }
    return dir;
  }

  void run(StageState& st, const frontend::Op& op, size_t step) {
    std::string shown =
        op.json_form ? json_array(op.args) : (op.args.empty() ? std::string() : op.args.front());
    runner::ProcessSpec spec;
    std::optional<std::string> script;
    spec.args = run_argv(op, st, script);
    spec.env = run_env(op, st);
    spec.cwd = st.config.config.working_dir.empty() ? "/" : st.config.config.working_dir;
    spec.hostname = "kiln";
    spec.extra_hosts = request.extra_hosts;
    std::vector<UniqueFd> locks;
    std::vector<std::unique_ptr<TempDir>> scratch;
    std::vector<std::unique_ptr<SshAgentProxy>> agents;  // stop before their directories go
    std::string network = request.network;
    try {
      ProcessUser user = resolve_process_user(st.config.config.user, root(st));
      spec.uid = user.uid;
      spec.gid = user.gid;
      spec.groups = user.groups;
      for (const frontend::Flag& f : op.flags) {
        if (!f.value)
          continue;
        if (f.name == "network") {
          if (*f.value != "default" && *f.value != "none" && *f.value != "host") {
            throw Error("RUN --network=" + *f.value + ": expected default, none or host");
          }
          network = *f.value;
        } else if (f.name == "security") {
          if (*f.value == "insecure") {
            if (!request.allow_insecure) {
              throw Error("RUN --security=insecure needs `kiln build --allow security.insecure`");
            }
            spec.privileged = true;
          } else if (*f.value != "sandbox") {
            throw Error("RUN --security=" + *f.value + ": expected sandbox or insecure");
          }
        } else if (f.name == "mount") {
          add_mount(spec, parse_run_mount(*f.value, spec.cwd), st, locks, scratch, agents);
        }
      }
      spec.network = network == "none" ? runner::Network::kNone : runner::Network::kHost;
      if (script) {
        auto dir = std::make_unique<TempDir>(lease.temp_dir(), "script-");
        fs::path file = dir->path() / "kiln-script";
        {
          UniqueFd fd = open_or_throw(file, O_WRONLY | O_CREAT | O_TRUNC, 0755);
          write_all(fd.get(), script->data(), script->size(), file.string());
        }
        spec.mounts.push_back({"/dev/pipes", "bind", dir->path().string(), {"ro"}});
        scratch.push_back(std::move(dir));
      }
    } catch (const InputError&) {
      throw;
    } catch (const Error& e) {
      throw InputError(op.where, std::string("RUN: ") + e.what());
    }

    // Keeps the last lines of output for the error message; streams everything to progress.
    std::deque<std::string> tail;
    std::string partial;
    spec.output = [&](std::string_view chunk) {
      partial.append(chunk);
      size_t nl;
      while ((nl = partial.find('\n')) != std::string::npos) {
        std::string line = partial.substr(0, nl);
        partial.erase(0, nl + 1);
        emit(ProgressEvent::Kind::kOutput, step, {}, line);
        tail.push_back(std::move(line));
        if (tail.size() > 10)
          tail.pop_front();
      }
    };

    fs::path rootfs = root(st);
    runner::RunResult result;
    std::vector<snapshotter::LayerEntry> entries;
    bool overlay = use_overlay();
    if (overlay) {
      TempDir snap(lease.temp_dir(), "run-");
      fs::path upper = snap.path() / "upper", work = snap.path() / "work",
               merged = snap.path() / "merged";
      for (const fs::path& d : {upper, work, merged})
        fs::create_directories(d);
      spec.rootfs = merged;
      // The sandbox mounts it inside its own user namespace, hence userxattr.
      spec.rootfs_mount =
          runner::Mount{"/",
                        "overlay",
                        "overlay",
                        {snapshotter::overlay_mount_options({rootfs}, upper, work, true)}};
      try {
        result = run_process(spec);
      } catch (const Error& e) {
        ::chmod((work / "work").c_str(), 0700);
        throw InputError(op.where, std::string("RUN: ") + e.what());
      }
      // overlayfs leaves work/work with mode 000; make it removable for the TempDir.
      ::chmod((work / "work").c_str(), 0700);
      if (result.exit_code == 0) {
        entries = snapshotter::diff_overlay_upper(upper, rootfs, mountpoints(result));
        finish_run(st, op, shown, std::move(entries));
      }
    }
    if (!overlay) {
      snapshotter::TreeIndex before = snapshotter::TreeIndex::scan(rootfs);
      spec.rootfs = rootfs;
      spec.rootfs_mount.reset();
      try {
        result = run_process(spec);
      } catch (const Error& e) {
        throw InputError(op.where, std::string("RUN: ") + e.what());
      }
      std::set<std::string> exclude = mountpoints(result);
      if (result.exit_code == 0) {
        entries = snapshotter::diff_tree(before, rootfs, exclude);
        remove_mountpoints(rootfs, result);
        finish_run(st, op, shown, std::move(entries), /*already_applied=*/true);
      } else {
        remove_mountpoints(rootfs, result);
      }
    }
    if (result.exit_code != 0) {
      std::string message = "RUN at " + op.where.file + ":" + std::to_string(op.where.line) + " (" +
                            join(spec.args, " ") + "): " +
                            (result.signal ? "killed by signal " + std::to_string(result.signal)
                                           : "exit code " + std::to_string(result.exit_code));
      if (!partial.empty())
        tail.push_back(partial);
      if (!tail.empty()) {
        message += "; last output:";
        for (const std::string& line : tail)
          message += "\n  " + line;
      }
      throw Error(message);
    }
  }

  // The built-in sandbox, or the OCI runtime the user chose with --runtime.
  runner::RunResult run_process(const runner::ProcessSpec& spec) {
    if (request.runtime.empty())
      return runner::Sandbox().run(spec);
    return runner::OciRuntime(request.runtime).run(spec);
  }

  static std::set<std::string> mountpoints(const runner::RunResult& result) {
    std::set<std::string> out;
    for (const std::string& p : result.created_mountpoints)
      out.insert(clean_in_root(p));
    return out;
  }

  // Mount targets the sandbox created in a shared rootfs (copy snapshotter) are removed again
  // when they are still empty, deepest first.
  static void remove_mountpoints(const fs::path& root, const runner::RunResult& result) {
    std::vector<std::string> paths = result.created_mountpoints;
    std::sort(paths.rbegin(), paths.rend());
    for (const std::string& p : paths) {
      fs::path host = root / clean_in_root(p);
      std::error_code ec;
      if (fs::is_directory(fs::symlink_status(host)) ? fs::is_empty(host, ec)
                                                     : fs::file_size(host, ec) == 0) {
        fs::remove(host, ec);
      }
    }
  }

  void finish_run(StageState& st, const frontend::Op& op, const std::string& shown,
                  std::vector<snapshotter::LayerEntry> entries, bool already_applied = false) {
    std::string created_by = "RUN " +
                             (op.json_form ? shown : join(shell_of(st.config), " ") + " " + shown) +
                             " # buildkit";
    if (entries.empty()) {
      add_history(st, created, created_by, true);
      return;
    }
    write_layer_only(st, std::move(entries), /*apply=*/!already_applied);
    add_history(st, created, created_by, false);
  }

  void add_mount(runner::ProcessSpec& spec, const RunMount& m, StageState& st,
                 std::vector<UniqueFd>& locks, std::vector<std::unique_ptr<TempDir>>& scratch,
                 std::vector<std::unique_ptr<SshAgentProxy>>& agents) {
    switch (m.type) {
      case RunMount::Type::kSsh: {
        auto it = request.ssh_agents.find(m.id);
        if (it == request.ssh_agents.end()) {
          if (m.required)
            throw Error("SSH agent " + quote(m.id) + " is required but was not given with --ssh");
          return;
        }
        std::string target = m.target;
        if (target.empty())
          target = "/run/buildkit/ssh_agent." + std::to_string(agents.size());
        auto dir = std::make_unique<TempDir>(lease.temp_dir(), "ssh-");
        ::chmod(dir->path().c_str(), 0700);
        agents.push_back(
            std::make_unique<SshAgentProxy>(it->second, dir->path(), m.mode, m.uid, m.gid));
        scratch.push_back(std::move(dir));
        spec.mounts.push_back({target, "bind", agents.back()->socket().string(), {"ro"}});
        if (agents.size() == 1 && !has_env(spec.env, "SSH_AUTH_SOCK"))
          spec.env.push_back("SSH_AUTH_SOCK=" + target);
        return;
      }
      case RunMount::Type::kBind: {
        fs::path root = request.context;
        if (!m.from.empty()) {
          if (auto index = stage_named(m.from)) {
            root = this->root(*finished_stage(*index));
          } else if (auto dir = context_directory(m.from)) {
            root = *dir;
          } else {
            root = image_root(mount_image(m.from), request.platform);
          }
        }
        bool contained = m.from.empty() || context_directory(m.from);
        std::string rel = contained ? clean_in_root(m.source) : resolve_in_root(root, m.source);
        fs::path source = rel.empty() ? root : root / rel;
        if (!fs::exists(fs::symlink_status(source))) {
          throw Error("--mount type=bind: source " + quote(m.source.empty() ? "." : m.source) +
                      " not found");
        }
        if (!m.readonly) {
          // rw: the step writes to a copy that is thrown away (BuildKit's rule), never to the
          // user's context, a finished stage or a cached image root.
          auto dir = std::make_unique<TempDir>(lease.temp_dir(), "bind-rw-");
          fs::path copy = dir->path() / "source";
          if (fs::is_directory(source)) {
            fs::create_directory(copy);
            copy_tree(source, copy);
          } else {
            fs::copy(source, copy, fs::copy_options::copy_symlinks);
          }
          source = copy;
          scratch.push_back(std::move(dir));
        }
        spec.mounts.push_back(
            {m.target, "bind", source.string(), {"rbind", m.readonly ? "ro" : "rw"}});
        return;
      }
      case RunMount::Type::kCache: {
        fs::path dir = cache_dir(m);
        // locked (and private, which kiln treats the same way) serialise users of the cache;
        // shared ones hold it shared, so `kiln prune --all` can tell the cache is in use.
        UniqueFd lock = open_or_throw(dir.string() + ".lock", O_RDWR | O_CREAT, 0600);
        int operation = m.sharing == "shared" ? LOCK_SH : LOCK_EX;
        while (::flock(lock.get(), operation) != 0 && errno == EINTR) {
        }
        locks.push_back(std::move(lock));
        spec.mounts.push_back(
            {m.target, "bind", dir.string(), {"rbind", m.readonly ? "ro" : "rw"}});
        return;
      }
      case RunMount::Type::kTmpfs: {
        std::vector<std::string> options = {"nosuid", "nodev", "mode=1777"};
        if (m.size)
          options.push_back("size=" + std::to_string(*m.size));
        spec.mounts.push_back({m.target, "tmpfs", "tmpfs", options});
        return;
      }
      case RunMount::Type::kSecret: {
        auto it = request.secrets.find(m.id);
        if (it == request.secrets.end()) {
          if (m.required)
            throw Error("secret " + quote(m.id) + " is required but was not given with --secret");
          return;
        }
        // The secret is copied to a private file with the requested owner and mode; it is
        // mounted over the target and never lands in a layer (the target is a mountpoint).
        auto dir = std::make_unique<TempDir>(lease.temp_dir(), "secret-");
        ::chmod(dir->path().c_str(), 0700);
        fs::path file = dir->path() / "secret";
        std::string value;
        if (!it->second.env.empty()) {
          const char* env = std::getenv(it->second.env.c_str());
          if (!env)
            throw Error("secret " + quote(m.id) + ": environment variable " + it->second.env +
                        " is not set");
          value = env;
        } else {
          value = read_file(it->second.file);
        }
        {
          UniqueFd fd = open_or_throw(file, O_WRONLY | O_CREAT | O_TRUNC, m.mode);
          write_all(fd.get(), value.data(), value.size(), "secret " + m.id);
        }
        ::chmod(file.c_str(), m.mode);
        if (::lchown(file.c_str(), m.uid, m.gid) != 0 && ::geteuid() == 0) {
          throw Error("chown secret " + m.id + ": " + std::strerror(errno));
        }
        spec.mounts.push_back({m.target, "bind", file.string(), {"ro"}});
        scratch.push_back(std::move(dir));
        return;
      }
    }
    (void)st;
  }

  // Every stage that will RUN something must be able to: checked before any step runs.
  void check_platforms(const frontend::BuildPlan& plan) const {
    for (size_t index : plan.order) {
      const frontend::Stage& stage = plan.stages[index];
      auto run = std::find_if(stage.ops.begin(), stage.ops.end(), [](const frontend::Op& op) {
        return op.kind == InstructionKind::kRun;
      });
      if (run == stage.ops.end())
        continue;
      if (std::optional<std::string> why = runner::cannot_run(stage.platform))
        throw InputError(run->where, *why);
    }
  }

  BuiltImage build(const frontend::BuildPlan& plan) {
    current_plan = &plan;
    check_platforms(plan);
    size_t jobs = request.jobs ? request.jobs : std::max(1u, std::thread::hardware_concurrency());
    std::counting_semaphore<256> slots(static_cast<ptrdiff_t>(std::min<size_t>(jobs, 256)));
    std::map<size_t, std::promise<bool>> done;
    std::map<size_t, std::shared_future<bool>> succeeded;
    for (size_t index : plan.order)
      succeeded[index] = done[index].get_future().share();
    std::vector<Failure> failures;
    std::vector<std::thread> threads;
    for (size_t index : plan.order) {
      threads.emplace_back([&, index] {
        const frontend::Stage& stage = plan.stages[index];
        bool ready = true;
        for (size_t dep : stage.dependencies) {
          if (succeeded.contains(dep) && !succeeded[dep].get())
            ready = false;
        }
        if (!ready) {
          size_t id = ++shared->next_step;
          emit(ProgressEvent::Kind::kStarted, id,
               "[" + request.step_prefix + stage_label(stage) + "] FROM ...");
          emit(ProgressEvent::Kind::kCanceled, id, {}, "a stage it needs failed");
          done[index].set_value(false);
          return;
        }
        slots.acquire();
        try {
          std::shared_ptr<StageState> st = run_stage(stage);
          {
            std::lock_guard lock(mutex);
            finished[index] = std::move(st);
          }
          slots.release();
          done[index].set_value(true);
        } catch (...) {
          slots.release();
          {
            std::lock_guard lock(mutex);
            failures.push_back({index, std::current_exception()});
          }
          done[index].set_value(false);
        }
      });
    }
    for (std::thread& t : threads)
      t.join();
    hasher.save();
    if (!failures.empty())
      report(failures);

    std::shared_ptr<StageState> target = finished_stage(plan.target);
    BuiltImage out;
    out.config = target->config;
    for (const auto& [key, value] : request.labels)
      out.config.config.labels[key] = value;
    // The image is as old as its newest step, so a fully cached rebuild is the same image.
    out.config.created = request.source_date_epoch || out.config.history.empty()
                             ? created
                             : out.config.history.back().created;
    const frontend::Stage& target_stage = plan.stages[plan.target];
    out.config.os = target_stage.platform.os;
    out.config.architecture = target_stage.platform.architecture;
    out.config.variant = target_stage.platform.variant;
    out.layers = target->layers;
    out.rootfs = [this, target] { return root(*target); };
    out.steps_run = steps_run;
    out.steps_cached = steps_cached;
    for (const auto& [stage, record] : used_records) {
      out.all_records.push_back(record);
      if (stage == plan.target)
        out.target_records.push_back(record);
    }
    return out;
  }

  // Rethrows a single failure as it is; several become one error listing each (in stage order,
  // duplicates from steps that waited on the same failed key removed).
  [[noreturn]] static void report(std::vector<Failure> failures) {
    std::sort(failures.begin(), failures.end(),
              [](const Failure& a, const Failure& b) { return a.stage < b.stage; });
    if (failures.size() == 1)
      std::rethrow_exception(failures.front().error);
    std::vector<std::string> messages;
    for (const Failure& f : failures) {
      try {
        std::rethrow_exception(f.error);
      } catch (const std::exception& e) {
        if (std::find(messages.begin(), messages.end(), e.what()) == messages.end())
          messages.push_back(e.what());
      }
    }
    if (messages.size() == 1)
      std::rethrow_exception(failures.front().error);
    std::string text = std::to_string(messages.size()) + " stages failed:";
    for (const std::string& m : messages)
      text += "\n" + m;
    throw Error(text);
  }
};

Builder::Builder(oci::Store& store, BuildRequest request)
    : impl_(std::make_unique<Impl>(store, std::move(request))) {}
Builder::~Builder() = default;

BuiltImage Builder::build(const frontend::BuildPlan& plan) {
  return impl_->build(plan);
}

void Builder::check(const frontend::BuildPlan& plan) const {
  impl_->check_platforms(plan);
}

frontend::BaseImage Builder::base_image(const std::string& ref, const oci::Platform& platform) {
  oci::ResolvedImage image = impl_->image(ref, platform);
  return {image.config.config.env, image.config.config.on_build};
}

}  // namespace kiln::solver
