// What the executors of one Builder share: the store and the build's lease, the cache index, the
// snapshot cache, the context hasher, progress, the states of finished stages, and the stage
// roots (made on demand). Each executor gets a Step: the op, the stage state it changes, and
// this environment.
#pragma once

#include <atomic>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "content_hasher.hpp"
#include "copy.hpp"
#include "kiln/frontend/op_graph.hpp"
#include "kiln/oci/cache_index.hpp"
#include "kiln/oci/lease.hpp"
#include "kiln/oci/snapshot_cache.hpp"
#include "kiln/oci/store.hpp"
#include "kiln/runner/isolation.hpp"
#include "kiln/runner/runner.hpp"
#include "kiln/runner/sandbox.hpp"
#include "kiln/snapshotter/run_snapshot.hpp"
#include "kiln/solver/builder.hpp"
#include "metadata.hpp"
#include "stage_root.hpp"

namespace kiln::solver {

inline constexpr const char* kDefaultPath =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// One stage while it is being built: its image state after the last op, the key of that state,
// and its root filesystem once something needed it.
struct StageState : ImageState {
  std::string key;
  std::string base;        // what the stage started from: "image REF@DIGEST", "scratch", "stage N"
  size_t base_layers = 0;  // layers that came with the base
  std::mutex root_mutex;   // other stages read a finished stage's root (COPY --from)
  std::unique_ptr<StageRoot> root;
  std::vector<oci::Digest> root_ids;  // the layer chain (diff IDs) `root` holds
};

class SharedSteps {
 public:
  std::mutex mutex;
  std::map<std::string, std::shared_future<oci::CacheRecord>> in_flight;
  std::atomic<size_t> next_step{0};  // step ids are unique across the Builders
};

// A tree an op reads from (COPY's source, a bind mount's source): the build context or a local
// directory (ignore rules apply, owners become 0:0), or the filesystem of an image, scratch or a
// finished stage.
struct InputTree {
  std::filesystem::path root;  // empty when only the key part was asked for
  bool from_context = false;
  const frontend::IgnoreMatcher* ignore = nullptr;
  std::string key;  // for an image or stage: "image DIGEST", "stage KEY", "scratch"
};

class BuildEnv {
 public:
  BuildEnv(oci::Store& store, BuildRequest request);

  oci::Store& store;
  BuildRequest request;
  const frontend::OpGraph* graph = nullptr;
  int64_t now = 0;
  std::string created;  // RFC 3339 of `now`
  std::string salt;     // cache_key.hpp
  oci::Lease lease;
  oci::CacheIndex cache;
  oci::SnapshotCache snapshots;
  ContentHasher hasher;
  std::shared_ptr<SharedSteps> shared;
  std::atomic<size_t> steps_run{0}, steps_cached{0};
  // ADD <URL>: fetched once per build (the key and the step both need the content).
  std::mutex download_mutex;
  std::map<std::string, DownloadedSource> downloads;  // by "URL|checksum"

  // Progress events (a no-op without a sink).
  void emit(ProgressEvent::Kind kind, size_t step, std::string name = {}, std::string text = {},
            double seconds = 0);
  void message(const std::string& text);
  size_t next_step_id();

  // The image an image source names, resolved once per build.
  oci::ResolvedImage image(const std::string& ref, const oci::Platform& platform);
  // The cached snapshot of a layer chain (unpacked now when missing), held for this build.
  std::filesystem::path snapshot(const std::vector<oci::Descriptor>& layers,
                                 const std::vector<oci::Digest>& diff_ids);
  // The unpacked filesystem of an image named by COPY --from or RUN --mount from.
  std::filesystem::path image_root(const std::string& ref, const oci::Platform& platform);
  // The stage's root filesystem for its current state, made or brought up to date on demand.
  std::filesystem::path root(StageState& st);
  // The error for an image reference (COPY --from, RUN --mount from) that could not be
  // resolved: for a plain name, that it is neither a stage nor an image, with the closest stage.
  std::string no_stage_or_image(const std::string& ref, const std::string& error) const;
  // The resolv.conf RUN steps get: nullopt for the host's, "" for none, else a file written once
  // per build from --dns, --dns-search and --dns-option.
  std::optional<std::string> resolv_conf();
  // Applies a layer blob to a directory; throws kiln::Error when its uncompressed content does
  // not hash to `diff_id`.
  void apply(const oci::Descriptor& layer, const oci::Digest& diff_id,
             const std::filesystem::path& root);
  // How RUN steps get a writable view of a root: overlay or copy (chosen once per build; copy
  // for chroot isolation).
  snapshotter::RunSnapshotter& run_snapshotter();
  // How RUN steps are isolated (request.isolation, probed once per build); the choice's line
  // is reported the first time, the single-id warning once when it applies.
  const runner::IsolationChoice& isolation();
  // The runner RUN steps use: the sandbox, an OCI runtime (--runtime) or chroot.
  std::unique_ptr<runner::Runner> make_runner();
  // The runner's network for a step's: the default (ExecOp::Network::kSandbox) is a private
  // network through pasta or slirp4netns; without either, or under chroot isolation, the
  // host's (said once).
  runner::Network run_network(frontend::ExecOp::Network network);

  // The state a finished stage ended with, by the op id of its result.
  void finish(frontend::OpId result, std::shared_ptr<StageState> state);
  std::shared_ptr<StageState> finished(frontend::OpId result);

  // A stage's steps may use the cache (not --no-cache, not in --no-cache-filter).
  bool cache_allowed(const frontend::GraphStage& stage) const;
  // A usable record for `key`: local, else from a --cache-from cache (then joins the local
  // index); held for this build.
  std::optional<oci::CacheRecord> lookup(const std::string& key);
  // Remembers every step's record for --cache-to.
  void used(size_t stage, const StageState& st);
  std::vector<std::pair<size_t, oci::CacheRecord>> used_records();

  // Writes a layer into the store and appends it to the state; brings the stage's root up to
  // date unless the change is already there (`applied`).
  void add_layer(StageState& st, std::vector<snapshotter::LayerEntry> entries, bool applied);

  // The tree op `id` stands for as an input. With `for_key`, nothing is unpacked: the context
  // and directories give their root, images and stages only their key part.
  InputTree input_tree(frontend::OpId id, bool for_key);

 private:
  bool stage_overlay();

  std::mutex mutex_;                                  // guards what follows
  std::map<std::string, oci::ResolvedImage> images_;  // by "ref|platform"
  std::map<frontend::OpId, std::shared_ptr<StageState>> finished_;
  // --build-context directories, symlinks resolved once (like request.context, in the constructor)
  std::map<std::string, std::filesystem::path> directories_;
  std::unique_ptr<snapshotter::RunSnapshotter> run_snapshotter_;
  std::optional<runner::IsolationChoice> isolation_;
  std::optional<runner::Network> default_network_;  // run_network(kSandbox), once decided
  std::once_flag single_id_warned_;
  std::optional<std::optional<std::string>> resolv_conf_;  // resolv_conf(), once made
  std::optional<bool> stage_overlay_usable_;
  std::vector<std::pair<size_t, oci::CacheRecord>> used_records_;
};

oci::CacheRecord record_of(const StageState& st);
void take(StageState& st, const oci::CacheRecord& r);

// The working directory ops of a state run in: the config's, else "/".
std::string working_dir(const StageState& st);

}  // namespace kiln::solver
