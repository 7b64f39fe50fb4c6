// Runs an op graph (frontend/op_graph.hpp): every stage the target needs, producing an image
// (config + layers in the store) for the target stage.
//
// The builder is a scheduler plus one executor per op kind (source, exec, file, config), each
// owning how its op's cache key is made and how it runs. It knows no Containerfile syntax.
//
// Caching: every op has a cache key (cache_key.hpp explains what goes into it); the state a
// stage has after an op (config + layers) is recorded under that key in the cache index, and a
// later build whose op has the same key takes that state without running anything. A stage's
// root filesystem is only made when an op that misses the cache needs to look at files (RUN,
// COPY destinations and --chown names, WORKDIR, COPY --from of that stage, a local/tar output),
// from the snapshot of its base and the layers since.
//
// Scheduling: each stage the target needs runs as soon as the stages it reads from are done;
// up to `jobs` stages run at once. The same cache key reached twice in one build runs once. A
// failed stage cancels the stages that depend on it; the others finish, and build() reports
// every failure. One build() per Builder.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kiln/frontend/ignore.hpp"
#include "kiln/frontend/op_graph.hpp"
#include "kiln/oci/cache_index.hpp"
#include "kiln/oci/descriptor.hpp"
#include "kiln/oci/image_config.hpp"
#include "kiln/oci/store.hpp"
#include "kiln/runner/isolation.hpp"
#include "kiln/runner/sandbox.hpp"
#include "kiln/snapshotter/layer_writer.hpp"
#include "kiln/solver/cache_transfer.hpp"
#include "kiln/solver/image_source.hpp"
#include "kiln/solver/progress.hpp"

namespace kiln::solver {

// Steps being computed by the Builders of one `kiln build` (one per platform): a cache key any
// of them reaches while another computes it waits for that result instead of running again.
class SharedSteps;
std::shared_ptr<SharedSteps> make_shared_steps();

struct BuildRequest {
  // The build context directory; a symlink to one means that directory (resolved once, when
  // the build starts; so are --build-context directories).
  std::filesystem::path context;
  frontend::IgnoreMatcher ignore;  // rules for the context
  // The ignore rules of each local --build-context directory, by directory.
  std::map<std::string, frontend::IgnoreMatcher> directory_ignores;
  oci::Platform platform;                    // the target platform
  snapshotter::LayerOptions layers;          // compression; SOURCE_DATE_EPOCH clamps file times
  std::optional<int64_t> source_date_epoch;  // also the image's "created" time
  std::vector<std::pair<std::string, std::string>> labels;  // --label, added to the final image
  // buildah's shaping of the final image's config, after the labels: --unsetlabel, --env K=V
  // (set), --unsetenv (and --env K-), --omit-history.
  std::vector<std::string> unset_labels;
  std::vector<std::pair<std::string, std::string>> env;
  std::vector<std::string> unset_env;
  bool omit_history = false;
  // buildah's --os-version (the config's os.version) and --os-feature NAME (added to
  // os.features) / NAME- (removed from it).
  std::optional<std::string> os_version;
  std::vector<std::string> os_features;
  // buildah's --inherit-labels=false: a stage starts without its base image's or base stage's
  // labels (LABEL and --label still add theirs).
  bool inherit_labels = true;
  // buildah's --squash (the layers the build made become one, on top of the base's) and
  // --squash-all (the whole filesystem becomes one layer).
  enum class Squash { kNone, kNew, kAll };
  Squash squash = Squash::kNone;
  ProgressSink* progress = nullptr;  // step events; may be null

  // Caching
  // What makes a step "the same step" in later builds (explain.hpp), e.g. the context and
  // Containerfile paths: each step that runs then records its inputs in the store's step history
  // and says why it missed (BuiltImage::explanations, ProgressEvent::Kind::kExplain). Empty: no
  // history is kept or read.
  std::string history_scope;
  bool no_cache = false;  // --no-cache: run every step
  // buildah's --cache-ttl: local cache records first written longer ago than this (or by a kiln
  // that did not date them) are misses; the step runs and its new record is dated now.
  std::optional<std::chrono::seconds> cache_ttl;
  std::vector<std::string> no_cache_filter;  // --no-cache-filter: stage names or indexes
  size_t jobs = 0;                           // stages at once; 0: the number of CPUs
  // --cache-from: consulted, in order, when the local cache index misses; a hit fetches the
  // record's layers into the store and adds the record to the local index.
  std::vector<std::shared_ptr<const RemoteCache>> cache_from;

  // Image sources: bases, COPY --from and RUN --mount from images. Required when the graph
  // has image sources.
  std::shared_ptr<ImageSource> images;

  // Several platforms in one build: the Builders share this (may be null: a private one), and
  // `step_prefix` ("linux/arm64 ") starts every step's name.
  std::shared_ptr<SharedSteps> shared_steps;
  std::string step_prefix;

  // RUN
  struct Secret {
    std::filesystem::path file;  // --secret id=ID,src=FILE
    std::string env;             // --secret id=ID,env=VAR (the variable's name)
  };
  std::map<std::string, Secret> secrets;  // by id
  // --ssh ID=SOCKET: SSH agent sockets for RUN --mount=type=ssh, by id.
  std::map<std::string, std::filesystem::path> ssh_agents;
  std::string snapshotter = "auto";  // auto | overlay | copy
  // RUN's /etc/resolv.conf: the host's unless --dns, --dns-search or --dns-option give one
  // (podman's flags; "none" among the servers: no resolv.conf at all); --no-hosts: no generated
  // /etc/hosts. Not part of cache keys, as in podman.
  std::vector<std::string> dns_servers, dns_search, dns_options;
  bool no_hosts = false;
  // RUN's process (podman's --cap-add, --cap-drop, --security-opt, --ulimit, --shm-size), as
  // the runner's ProcessSpec takes them. Not part of cache keys, as in podman.
  std::vector<std::string> cap_add, cap_drop;
  bool no_new_privs = false;
  bool no_seccomp = false;
  struct Rlimit {
    int resource = 0;  // RLIMIT_NOFILE, ...
    uint64_t soft = 0, hard = 0;
  };
  std::vector<Rlimit> rlimits;
  std::string shm_size;  // empty: the runner's default
  // --memory, --memory-swap, --cpu-*, --cpuset-*, --cgroup-parent: each RUN step in a cgroup of
  // its own with these limits (runner::ResourceLimits). Not part of cache keys, as in buildah.
  runner::ResourceLimits resources;
  // --group-add: supplementary groups (names looked up in the step's /etc/group, or numbers)
  // added to every RUN step's own.
  std::vector<std::string> group_add;
  // -v/--volume: host directories bound into every RUN step (outside its layer, as buildah).
  struct Volume {
    std::filesystem::path source;
    std::string target;  // absolute, inside the container
    bool read_only = false;
  };
  std::vector<Volume> volumes;
  // Variables added to every RUN step's environment unless the image sets them (--http-proxy).
  std::vector<std::pair<std::string, std::string>> run_env;
  std::string runtime;  // --runtime runc|crun|PATH; empty: the built-in sandbox
  // --isolation: auto (probed, runner/isolation.hpp), the sandbox, or chroot. Not part of cache
  // keys, as in buildah.
  runner::Isolation isolation = runner::Isolation::kAuto;
  std::vector<std::string> runtime_flags;  // --runtime-flag: "--FLAG[=VALUE]" for the runtime
};

// Why a step ran instead of hitting the cache (explain.hpp says how it is found).
struct StepExplanation {
  std::string step;   // the step's name, as progress shows it
  std::string cause;  // file, arg, env, instruction, base, from, mount, settings, upstream, new,
                      // no-cache or gone
  std::string text;   // e.g. "context file src/main.c changed"
};

// One line for the whole build: "3 of 9 steps ran: 1 context file changed, 2 input changed
// upstream".
std::string explain_summary(const std::vector<StepExplanation>& ran, size_t cached);

// An image that is built but not yet exported: its layers are blobs in the store.
struct BuiltImage {
  oci::ImageConfig config;
  std::vector<oci::Descriptor> layers;
  // Makes (on the first call) and returns the unpacked filesystem; valid while the Builder lives.
  std::function<std::filesystem::path()> rootfs;
  size_t steps_run = 0, steps_cached = 0;
  // Every step that ran, with why (in the order they started); empty without history_scope.
  std::vector<StepExplanation> explanations;
  // Every step's time, cached or run, in the order they finished (provenance mode=max).
  struct StepTiming {
    std::string step;  // as progress names it
    bool cached = false;
    double seconds = 0;
  };
  std::vector<StepTiming> timings;
  // The record of every step of the build (for --cache-to): the target stage's steps alone
  // (mode=min) and every stage's (mode=max), in the order they finished.
  std::vector<oci::CacheRecord> target_records, all_records;
};

class Builder {
 public:
  Builder(oci::Store& store, BuildRequest request);
  ~Builder();
  Builder(const Builder&) = delete;
  Builder& operator=(const Builder&) = delete;

  // Builds graph.stages and returns the target stage's image. Before any op runs, a stage whose
  // exec ops this machine cannot run (a foreign platform without a QEMU binfmt handler) is an
  // error at its first RUN naming the platform and the fix. Throws kiln::InputError at the op's
  // Containerfile position when an op fails (missing COPY source, unknown --chown user, a RUN
  // that exits non-zero, ...), kiln::Error for store or I/O failures; when several independent
  // stages fail, one kiln::Error lists every failure. The graph must outlive the Builder.
  BuiltImage build(const frontend::OpGraph& graph);

  // The checks build() makes before any op runs (today: every stage that runs something can
  // run on this machine), for callers that start several builds and want all checked first.
  static void check(const frontend::OpGraph& graph);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The time an image's "created" field and new history entries get: SOURCE_DATE_EPOCH when set,
// else now. RFC 3339, UTC.
std::string build_timestamp(const std::optional<int64_t>& source_date_epoch);

}  // namespace kiln::solver
