#include "build_env.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "cache_key.hpp"
#include "kiln/base/crash_point.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/oci/media_types.hpp"
#include "kiln/runner/chroot.hpp"
#include "kiln/snapshotter/layer_applier.hpp"

namespace kiln::solver {
namespace fs = std::filesystem;

namespace {

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool in_initial_userns() {
  try {
    return read_file("/proc/self/uid_map").find("4294967295") != std::string::npos;
  } catch (const Error&) {
    return true;
  }
}

// The directory a context path names. A context given as a symlink to a directory means that
// directory: resolved once, when the build starts, so that `COPY . /` copies its contents (not the
// link) and every step reads the same directory even if the link changes meanwhile. A path that
// does not resolve is kept as it is, for the step that reads it to report.
fs::path resolved_directory(const fs::path& path) {
  if (path.empty())
    return path;
  std::error_code ec;
  fs::path real = fs::canonical(path, ec);
  return ec ? path : real;
}

BuildRequest with_resolved_context(BuildRequest request) {
  request.context = resolved_directory(request.context);
  return request;
}

}  // namespace

std::string build_timestamp(const std::optional<int64_t>& source_date_epoch) {
  return oci::format_rfc3339(source_date_epoch.value_or(now_seconds()));
}

BuildEnv::BuildEnv(oci::Store& s, BuildRequest r)
    : store(s),
      request(with_resolved_context(std::move(r))),
      lease(store.root()),
      cache(store.layout().records()),
      snapshots(store.layout().snapshots()),
      hasher(store.layout().context_caches(), request.context) {
  now = request.source_date_epoch.value_or(now_seconds());
  created = oci::format_rfc3339(now);
  salt = build_salt(request.layers, request.source_date_epoch, request.inherit_labels);
  shared = request.shared_steps ? request.shared_steps : make_shared_steps();
}

void BuildEnv::emit(ProgressEvent::Kind kind, size_t step, std::string name, std::string text,
                    double seconds) {
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

void BuildEnv::message(const std::string& text) {
  emit(ProgressEvent::Kind::kMessage, 0, {}, text);
}

oci::ResolvedImage BuildEnv::image(const std::string& ref, const oci::Platform& platform) {
  std::string key = ref + "|" + platform.to_string();
  {
    std::lock_guard lock(mutex_);
    if (auto it = images_.find(key); it != images_.end())
      return it->second;
  }
  if (!request.images)
    throw Error("internal: the build has no image source for " + quote(ref));
  oci::ResolvedImage resolved = request.images->resolve(ref, platform);
  std::lock_guard lock(mutex_);
  return images_.emplace(key, std::move(resolved)).first->second;
}

void BuildEnv::apply(const oci::Descriptor& layer, const oci::Digest& diff_id,
                     const fs::path& root) {
  snapshotter::ApplyOptions options;
  // In a single-id user namespace no other owner exists: files belong to root (warned once).
  bool single_id = runner::single_id_user_namespace();
  if (single_id)
    std::call_once(single_id_warned_, [this] { message(runner::single_id_warning()); });
  options.preserve_ownership = ::geteuid() == 0 && !single_id;
  // Root of a user namespace (rootless) may chown to its mapped ids, but no kernel lets it
  // mknod a device: skipped, with a warning, rather than failing the image.
  options.allow_devices = ::geteuid() == 0 && in_initial_userns();
  options.warn = [this](const std::string& warning) { message("WARNING: " + warning); };
  options.expected_diff_id = diff_id;
  snapshotter::apply_layer(store.blob_path(layer.digest), root, options);
}

fs::path BuildEnv::snapshot(const std::vector<oci::Descriptor>& layers,
                            const std::vector<oci::Digest>& diff_ids) {
  if (layers.size() != diff_ids.size()) {
    throw Error("image config lists " + std::to_string(diff_ids.size()) +
                " layers but its manifest has " + std::to_string(layers.size()));
  }
  for (;;) {
    // A snapshot is named by the diff IDs the config claims: each layer is verified against its
    // own while it is unpacked, before the snapshot becomes visible to other builds.
    fs::path dir = snapshots.get(diff_ids, [&](const fs::path& into) {
      for (size_t i = 0; i < layers.size(); ++i)
        apply(layers[i], diff_ids[i], into);
      crash_point("snapshot-unpacked");
    });
    if (lease.hold_snapshot(dir.filename().string()))
      return dir;
    // A concurrent prune removed it between get() and hold(): unpack again.
  }
}

fs::path BuildEnv::image_root(const std::string& ref, const oci::Platform& platform) {
  oci::ResolvedImage img = image(ref, platform);
  if (img.parsed.layers.empty()) {
    std::lock_guard lock(mutex_);
    fs::path dir = lease.temp_dir() / "empty-root";
    fs::create_directories(dir);
    return dir;
  }
  return snapshot(img.parsed.layers, img.config.diff_ids);
}

snapshotter::RunSnapshotter& BuildEnv::run_snapshotter() {
  bool chroot = isolation().mode == runner::Isolation::kChroot;
  std::lock_guard lock(mutex_);
  if (!run_snapshotter_) {
    if (chroot && request.snapshotter == "overlay")
      throw Error("--snapshotter overlay: chroot isolation cannot mount (use --snapshotter copy)");
    run_snapshotter_ =
        snapshotter::make_run_snapshotter(chroot ? "copy" : request.snapshotter, lease.temp_dir(),
                                          [this](const std::string& why) { message(why); });
  }
  return *run_snapshotter_;
}

const runner::IsolationChoice& BuildEnv::isolation() {
  std::string line;
  {
    std::lock_guard lock(mutex_);
    if (isolation_)
      return *isolation_;
    runner::IsolationChoice choice = runner::choose_isolation(request.isolation);
    // Checked before it is kept: every stage that asks gets the same error.
    if (choice.mode == runner::Isolation::kChroot && !request.runtime.empty())
      throw Error("--isolation chroot runs steps itself: it cannot use --runtime " +
                  request.runtime);
    isolation_ = std::move(choice);
    line = isolation_->line;
  }
  if (!line.empty())
    message(line);
  if (isolation_->single_id)
    std::call_once(single_id_warned_, [this] { message(runner::single_id_warning()); });
  return *isolation_;
}

std::unique_ptr<runner::Runner> BuildEnv::make_runner() {
  if (isolation().mode == runner::Isolation::kChroot)
    return std::make_unique<runner::ChrootRunner>();
  return runner::make_runner(request.runtime, request.runtime_flags);
}

runner::Network BuildEnv::run_network(frontend::ExecOp::Network network) {
  if (network == frontend::ExecOp::Network::kNone)
    return runner::Network::kNone;
  if (network == frontend::ExecOp::Network::kHost)
    return runner::Network::kHost;
  bool namespaces = isolation().network_namespaces;
  std::string why;
  {
    std::lock_guard lock(mutex_);
    if (default_network_)
      return *default_network_;
    std::string problem = namespaces ? runner::private_network_problem() : std::string();
    if (!namespaces) {
      default_network_ = runner::Network::kHost;
    } else if (!problem.empty()) {
      default_network_ = runner::Network::kHost;
      why = "RUN steps share this machine's network, not a private one: " + problem +
            " (install passt, give a container --device /dev/net/tun, or pass --network host "
            "to choose the shared network and not see this)";
    } else {
      default_network_ = runner::Network::kPrivate;
    }
  }
  if (!why.empty())
    message(why);
  return *default_network_;
}

bool BuildEnv::stage_overlay() {
  return run_snapshotter().overlay_roots();
}

// An overlay on the snapshot of the whole chain when one exists, else on the snapshot of the
// base layers with the stage's own layers applied on top.
fs::path BuildEnv::root(StageState& st) {
  std::lock_guard lock(st.root_mutex);
  const std::vector<oci::Digest>& ids = st.config.diff_ids;
  bool prefix = st.root && st.root_ids.size() <= ids.size() &&
                std::equal(st.root_ids.begin(), st.root_ids.end(), ids.begin());
  if (!prefix)
    st.root.reset();
  if (!st.root) {
    st.root_ids.clear();
    std::optional<fs::path> whole = snapshots.find(ids);
    bool userxattr = !in_initial_userns();
    if (whole && lease.hold_snapshot(whole->filename().string())) {
      st.root = std::make_unique<StageRoot>(lease.temp_dir(), *whole, stage_overlay(), userxattr);
      st.root_ids = ids;
    } else if (st.base_layers == 0) {
      st.root = std::make_unique<StageRoot>(lease.temp_dir());
    } else {
      std::vector<oci::Descriptor> base(st.layers.begin(), st.layers.begin() + st.base_layers);
      std::vector<oci::Digest> base_ids(ids.begin(), ids.begin() + st.base_layers);
      st.root = std::make_unique<StageRoot>(lease.temp_dir(), snapshot(base, base_ids),
                                            stage_overlay(), userxattr);
      st.root_ids = base_ids;
    }
  }
  for (size_t i = st.root_ids.size(); i < ids.size(); ++i) {
    apply(st.layers[i], ids[i], st.root->path());
    st.root_ids.push_back(ids[i]);
  }
  return st.root->path();
}

void BuildEnv::finish(frontend::OpId result, std::shared_ptr<StageState> state) {
  std::lock_guard lock(mutex_);
  finished_[result] = std::move(state);
}

std::shared_ptr<StageState> BuildEnv::finished(frontend::OpId result) {
  std::lock_guard lock(mutex_);
  auto it = finished_.find(result);
  if (it == finished_.end())
    throw Error("internal: op " + std::to_string(result) + " is used before it was built");
  return it->second;
}

bool BuildEnv::cache_allowed(const frontend::GraphStage& stage) const {
  if (request.no_cache)
    return false;
  for (const std::string& f : request.no_cache_filter) {
    if (to_lower(f) == stage.name || f == std::to_string(stage.index))
      return false;
  }
  return true;
}

std::optional<oci::CacheRecord> BuildEnv::lookup(const std::string& key) {
  std::optional<oci::CacheRecord> record = cache.get(key);
  if (record && request.cache_ttl) {
    auto wall = std::chrono::duration_cast<std::chrono::seconds>(
        std::chrono::system_clock::now().time_since_epoch());
    if (!record->created || wall - std::chrono::seconds(*record->created) > *request.cache_ttl)
      record.reset();  // too old for --cache-ttl: the step runs again
  }
  if (record && lease.hold_record(key) &&
      std::all_of(record->layers.begin(), record->layers.end(),
                  [&](const oci::Descriptor& l) { return store.has_blob(l.digest); })) {
    return record;
  }
  for (const std::shared_ptr<const RemoteCache>& remote : request.cache_from) {
    std::optional<oci::CacheRecord> imported;
    try {
      imported = remote->fetch(key, store);
    } catch (const Error& e) {
      // A broken or unreachable cache costs time, not the build: the step runs instead.
      message(std::string("WARNING: ") + e.what() + "; running the step instead");
    }
    if (!imported)
      continue;
    cache.put(*imported);
    if (lease.hold_record(key))
      return imported;
  }
  return std::nullopt;
}

void BuildEnv::used(size_t stage, const StageState& st) {
  std::lock_guard lock(mutex_);
  used_records_.emplace_back(stage, record_of(st));
}

std::vector<std::pair<size_t, oci::CacheRecord>> BuildEnv::used_records() {
  std::lock_guard lock(mutex_);
  return used_records_;
}

void BuildEnv::add_layer(StageState& st, std::vector<snapshotter::LayerEntry> entries,
                         bool applied) {
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
  if (!applied) {
    root(st);
  } else {
    std::lock_guard lock(st.root_mutex);
    st.root_ids.push_back(result.diff_id);
  }
}

size_t BuildEnv::next_step_id() {
  return ++shared->next_step;
}

std::string BuildEnv::no_stage_or_image(const std::string& ref, const std::string& error) const {
  // A plain name (no registry, tag, digest or transport) that is no image is most likely a
  // stage name mistyped: say which stages there are.
  if (ref.find_first_of(":/@") != std::string::npos)
    return error;
  std::string message = "no stage or image " + quote(ref);
  std::string closest = closest_match(to_lower(ref), graph->stage_names);
  if (!closest.empty()) {
    message += "; did you mean stage " + quote(closest) + "?";
  } else if (!graph->stage_names.empty()) {
    message += " (the stages are " + join(graph->stage_names, ", ") + ")";
  }
  return message + " (looking it up as an image: " + error + ")";
}

std::optional<std::string> BuildEnv::resolv_conf() {
  std::lock_guard lock(mutex_);
  if (resolv_conf_)
    return *resolv_conf_;
  const BuildRequest& r = request;
  std::optional<std::string> result;
  if (std::find(r.dns_servers.begin(), r.dns_servers.end(), "none") != r.dns_servers.end()) {
    result = "";
  } else if (!r.dns_servers.empty() || !r.dns_search.empty() || !r.dns_options.empty()) {
    // What is not given comes from the host's file, as podman does.
    std::string host;
    try {
      host = read_file("/etc/resolv.conf");
    } catch (const Error&) {
      // no host file: only what the flags say
    }
    std::vector<std::string> servers = r.dns_servers, search = r.dns_search,
                             options = r.dns_options;
    for (const std::string& line : split(host, '\n')) {
      std::vector<std::string> words;
      for (const std::string& w : split(line, ' ')) {
        if (!w.empty())
          words.push_back(w);
      }
      if (words.size() < 2)
        continue;
      if (words[0] == "nameserver" && r.dns_servers.empty())
        servers.push_back(words[1]);
      else if (words[0] == "search" && r.dns_search.empty())
        search.assign(words.begin() + 1, words.end());
      else if (words[0] == "options" && r.dns_options.empty())
        options.insert(options.end(), words.begin() + 1, words.end());
    }
    std::string text;
    for (const std::string& s : servers)
      text += "nameserver " + s + "\n";
    if (!search.empty())
      text += "search " + join(search, " ") + "\n";
    if (!options.empty())
      text += "options " + join(options, " ") + "\n";
    fs::path file = lease.temp_dir() / "resolv.conf";
    {
      UniqueFd fd = open_or_throw(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      write_all(fd.get(), text.data(), text.size(), file.string());
    }
    result = file.string();
  }
  resolv_conf_ = result;
  return result;
}

InputTree BuildEnv::input_tree(frontend::OpId id, bool for_key) {
  InputTree tree;
  const frontend::Op& op = graph->ops.at(id);
  if (const auto* source = op.as<frontend::SourceOp>()) {
    switch (source->kind) {
      case frontend::SourceOp::Kind::kContext:
        tree.root = request.context;
        tree.from_context = true;
        tree.ignore = &request.ignore;
        return tree;
      case frontend::SourceOp::Kind::kDirectory: {
        {
          std::lock_guard lock(mutex_);
          auto [it, added] = directories_.try_emplace(source->directory);
          if (added)
            it->second = resolved_directory(source->directory);
          tree.root = it->second;
        }
        tree.from_context = true;
        auto it = request.directory_ignores.find(source->directory);
        tree.ignore = it == request.directory_ignores.end() ? nullptr : &it->second;
        return tree;
      }
      case frontend::SourceOp::Kind::kImage:
        try {
          tree.key = "image " + image(source->image, source->platform).manifest.digest.str();
          if (!for_key)
            tree.root = image_root(source->image, source->platform);
        } catch (const Error& e) {
          throw Error(no_stage_or_image(source->image, e.what()));
        }
        return tree;
      case frontend::SourceOp::Kind::kScratch:
        tree.key = "scratch";
        if (!for_key) {
          std::lock_guard lock(mutex_);
          tree.root = lease.temp_dir() / "empty-root";
          fs::create_directories(tree.root);
        }
        return tree;
    }
  }
  std::shared_ptr<StageState> stage = finished(id);
  tree.key = "stage " + stage->key;
  if (!for_key)
    tree.root = root(*stage);
  return tree;
}

oci::CacheRecord record_of(const StageState& st) {
  oci::CacheRecord r;
  r.key = st.key;
  r.config = st.config;
  r.layers = st.layers;
  r.cmd_set = st.cmd_set;
  return r;
}

void take(StageState& st, const oci::CacheRecord& r) {
  st.key = r.key;
  st.config = r.config;
  st.layers = r.layers;
  st.cmd_set = r.cmd_set;
}

std::string working_dir(const StageState& st) {
  return st.config.config.working_dir.empty() ? "/" : st.config.config.working_dir;
}

}  // namespace kiln::solver
