// The scheduler: one thread per needed stage, started when the stages it reads from are done, at
// most `jobs` running at once; within a stage, each op's key, then the cache, another stage
// computing the same key, or its executor.
#include "kiln/solver/builder.hpp"

#include <algorithm>
#include <chrono>
#include <future>
#include <semaphore>
#include <thread>

#include "build_env.hpp"
#include "cache_key.hpp"
#include "executors.hpp"
#include "explain.hpp"
#include "kiln/base/crash_point.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/oci/media_types.hpp"
#include "kiln/oci/step_history.hpp"
#include "kiln/runner/emulation.hpp"
#include "kiln/snapshotter/diff.hpp"
#include "metadata.hpp"

namespace kiln::solver {

namespace {

// --os-feature NAME adds to the config's "os.features", NAME- removes (buildah).
void apply_os_features(oci::ImageConfig& config, const std::vector<std::string>& changes) {
  std::vector<std::string> features;
  if (config.unknown.is_object() && config.unknown.contains("os.features") &&
      config.unknown["os.features"].is_array()) {
    for (const nlohmann::json& f : config.unknown["os.features"]) {
      if (f.is_string())
        features.push_back(f.get<std::string>());
    }
  }
  for (const std::string& change : changes) {
    if (change.ends_with("-")) {
      std::erase(features, change.substr(0, change.size() - 1));
    } else if (std::find(features.begin(), features.end(), change) == features.end()) {
      features.push_back(change);
    }
  }
  if (!config.unknown.is_object())
    config.unknown = nlohmann::json::object();
  if (features.empty())
    config.unknown.erase("os.features");
  else
    config.unknown["os.features"] = features;
}

}  // namespace
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The error of one failed stage, and which stage.
struct Failure {
  size_t stage;
  std::exception_ptr error;
};

// The keyword an op's messages start with: the first word of its instruction.
std::string keyword(const frontend::Op& op) {
  std::string text(trim(op.text));
  return to_upper(text.substr(0, text.find_first_of(" \t")));
}

// Rethrows a single failure as it is; several become one error listing each (in stage order,
// duplicates from steps that waited on the same failed key removed).
[[noreturn]] void report(std::vector<Failure> failures) {
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

}  // namespace

std::shared_ptr<SharedSteps> make_shared_steps() {
  return std::make_shared<SharedSteps>();
}

struct Builder::Impl {
  BuildEnv env;
  std::optional<oci::StepHistory> history;  // with a history_scope
  std::mutex explanations_mutex;            // guards explanations and timings
  std::vector<StepExplanation> explanations;
  std::vector<BuiltImage::StepTiming> timings;

  Impl(oci::Store& store, BuildRequest request) : env(store, std::move(request)) {
    if (!env.request.history_scope.empty())
      history.emplace(env.store.layout());
  }

  void timed(const std::string& name, bool cached, double seconds) {
    std::lock_guard lock(explanations_mutex);
    timings.push_back({name, cached, seconds});
  }

  // Why the step about to run missed, reported now; returns its inputs record for the history.
  nlohmann::ordered_json explain(Step& step, Executor& executor, const std::string& identity,
                                 size_t ordinal, const std::string& name) {
    InputListings listings;
    Step detailed{step.env, step.op, step.stage, step.state, step.id, &listings};
    nlohmann::ordered_json inputs = executor.inputs(detailed);
    // The history stays small: a copy of more files than this is explained without naming one.
    constexpr size_t kMaxListed = 100000;
    for (auto& [input, listing] : listings) {
      if (listing.size() > kMaxListed)
        listing.clear();
    }
    RecordParts parts{identity, env.salt, step.state.key, step.state.base, ordinal == 0};
    nlohmann::ordered_json record = step_record(parts, step.op, inputs, listings);
    StepExplanation why;
    if (!env.cache_allowed(step.stage)) {
      why.cause = "no-cache";
      why.text = env.request.no_cache ? "--no-cache" : "--no-cache-filter names its stage";
    } else {
      std::optional<std::string> last = history->last_key(identity);
      why = explain_miss(last ? history->inputs(*last) : std::nullopt, last.has_value(), record);
    }
    why.step = name;
    if (env.request.progress) {
      ProgressEvent e;
      e.kind = ProgressEvent::Kind::kExplain;
      e.step = step.id;
      e.text = why.text;
      e.detail = why.cause;
      env.request.progress->event(e);
    }
    std::lock_guard lock(explanations_mutex);
    explanations.push_back(std::move(why));
    return record;
  }

  // One op: its key, then the cache, another stage computing the same key, or running it.
  void run_step(StageState& st, const frontend::GraphStage& stage, const frontend::Op& op,
                size_t ordinal, const std::string& name) {
    size_t id = env.next_step_id();
    env.emit(ProgressEvent::Kind::kStarted, id, name);
    auto started = Clock::now();
    Executor& executor = executor_for(op);
    Step step{env, op, stage, st, id};
    std::string identity =
        history ? step_identity(env.request.history_scope, stage, ordinal, op) : std::string();
    try {
      std::string key;
      try {
        key = op_key(st.key, op, executor.inputs(step));
      } catch (const InputError&) {
        throw;
      } catch (const Error& e) {
        throw InputError(op.where, keyword(op) + ": " + e.what());
      }
      std::optional<oci::CacheRecord> record;
      if (env.cache_allowed(stage))
        record = env.lookup(key);
      std::promise<oci::CacheRecord> promise;
      std::shared_future<oci::CacheRecord> other;
      if (!record) {
        std::lock_guard lock(env.shared->mutex);
        auto it = env.shared->in_flight.find(key);
        if (it != env.shared->in_flight.end()) {
          other = it->second;
        } else {
          env.shared->in_flight.emplace(key, promise.get_future().share());
        }
      }
      if (!record && other.valid())
        record = other.get();  // rethrows the other stage's failure
      if (record) {
        if (history)
          history->set_last_key(identity, key);
        take(st, *record);
        env.used(stage.index, st);
        ++env.steps_cached;
        env.emit(ProgressEvent::Kind::kCached, id, {}, {}, seconds_since(started));
        timed(name, true, seconds_since(started));
        return;
      }
      try {
        nlohmann::ordered_json inputs_record;
        if (history) {
          try {
            inputs_record = explain(step, executor, identity, ordinal, name);
          } catch (const InputError&) {
            throw;
          } catch (const Error& e) {
            throw InputError(op.where, keyword(op) + ": " + e.what());
          }
        }
        executor.run(step);
        st.key = key;
        oci::CacheRecord result = record_of(st);
        crash_point("before-record");
        env.cache.put(result);
        crash_point("after-record");
        if (history) {
          history->put_inputs(key, inputs_record);
          history->set_last_key(identity, key);
        }
        promise.set_value(std::move(result));
      } catch (...) {
        promise.set_exception(std::current_exception());
        throw;
      }
      env.used(stage.index, st);
      ++env.steps_run;
      env.emit(ProgressEvent::Kind::kDone, id, {}, {}, seconds_since(started));
      timed(name, false, seconds_since(started));
    } catch (const std::exception& e) {
      env.emit(ProgressEvent::Kind::kFailed, id, {}, e.what(), seconds_since(started));
      throw;
    }
  }

  std::shared_ptr<StageState> run_stage(const frontend::GraphStage& stage) {
    auto st = std::make_shared<StageState>();
    size_t total = 1 + stage.ops.size(), n = 0;
    auto label = [&](const std::string& text) {
      return "[" + env.request.step_prefix + frontend::stage_label(stage) + " " +
             std::to_string(++n) + "/" + std::to_string(total) + "] " + text;
    };
    size_t id = env.next_step_id();
    env.emit(ProgressEvent::Kind::kStarted, id, label("FROM " + stage.base_name));
    auto started = Clock::now();
    try {
      start_stage(env, *st, stage);
    } catch (const InputError& e) {
      env.emit(ProgressEvent::Kind::kFailed, id, {}, e.what(), seconds_since(started));
      throw;
    } catch (const Error& e) {
      InputError located(stage.where, e.what());
      env.emit(ProgressEvent::Kind::kFailed, id, {}, located.what(), seconds_since(started));
      throw located;
    }
    env.emit(ProgressEvent::Kind::kDone, id, {}, {}, seconds_since(started));
    for (size_t i = 0; i < stage.ops.size(); ++i) {
      const frontend::Op& o = env.graph->ops.at(stage.ops[i]);
      run_step(*st, stage, o, i, label(o.text));
    }
    return st;
  }

  BuiltImage build(const frontend::OpGraph& graph) {
    env.graph = &graph;
    check(graph);
    size_t jobs =
        env.request.jobs ? env.request.jobs : std::max(1u, std::thread::hardware_concurrency());
    std::counting_semaphore<256> slots(static_cast<ptrdiff_t>(std::min<size_t>(jobs, 256)));
    std::vector<std::promise<bool>> done(graph.stages.size());
    std::vector<std::shared_future<bool>> succeeded;
    for (std::promise<bool>& p : done)
      succeeded.push_back(p.get_future().share());
    std::mutex failures_mutex;
    std::vector<Failure> failures;
    std::vector<std::thread> threads;
    for (size_t slot = 0; slot < graph.stages.size(); ++slot) {
      threads.emplace_back([&, slot] {
        const frontend::GraphStage& stage = graph.stages[slot];
        bool ready = true;
        for (size_t need : stage.needs) {
          if (!succeeded[need].get())
            ready = false;
        }
        if (!ready) {
          size_t id = env.next_step_id();
          env.emit(ProgressEvent::Kind::kStarted, id,
                   "[" + env.request.step_prefix + frontend::stage_label(stage) + "] FROM ...");
          env.emit(ProgressEvent::Kind::kCanceled, id, {}, "a stage it needs failed");
          done[slot].set_value(false);
          return;
        }
        slots.acquire();
        try {
          env.finish(stage.result, run_stage(stage));
          slots.release();
          done[slot].set_value(true);
        } catch (...) {
          slots.release();
          {
            std::lock_guard lock(failures_mutex);
            failures.push_back({stage.index, std::current_exception()});
          }
          done[slot].set_value(false);
        }
      });
    }
    for (std::thread& t : threads)
      t.join();
    env.hasher.save();
    if (!failures.empty())
      report(failures);

    const frontend::GraphStage& target_stage = graph.stages.at(graph.target);
    std::shared_ptr<StageState> target = env.finished(target_stage.result);
    BuiltImage out;
    out.config = target->config;
    for (const auto& [key, value] : env.request.labels)
      out.config.config.labels[key] = value;
    for (const std::string& key : env.request.unset_labels)
      out.config.config.labels.erase(key);
    for (const auto& [key, value] : env.request.env)
      set_env(out.config.config.env, key, value);
    for (const std::string& key : env.request.unset_env) {
      std::erase_if(out.config.config.env,
                    [&](const std::string& entry) { return entry.starts_with(key + "="); });
    }
    // The image is as old as its newest step, so a fully cached rebuild is the same image.
    out.config.created = env.request.source_date_epoch || out.config.history.empty()
                             ? env.created
                             : out.config.history.back().created;
    out.config.os = target_stage.platform.os;
    out.config.architecture = target_stage.platform.architecture;
    out.config.variant = target_stage.platform.variant;
    if (env.request.os_version)
      out.config.os_version = *env.request.os_version;
    if (!env.request.os_features.empty())
      apply_os_features(out.config, env.request.os_features);
    out.layers = target->layers;
    if (env.request.squash != BuildRequest::Squash::kNone)
      squash(*target, out);
    if (env.request.omit_history)
      out.config.history.clear();
    out.rootfs = [this, target] { return env.root(*target); };
    out.steps_run = env.steps_run;
    out.steps_cached = env.steps_cached;
    out.explanations = explanations;
    out.timings = timings;
    for (const auto& [stage, record] : env.used_records()) {
      out.all_records.push_back(record);
      if (stage == target_stage.index)
        out.target_records.push_back(record);
    }
    return out;
  }

 private:
  // --squash / --squash-all: the image's layers (all, or those the build made) become one
  // layer holding the difference between the base's tree (or nothing) and the final tree. The
  // history keeps its entries, now without layers, and gains one for the squashed layer.
  void squash(StageState& target, BuiltImage& out) {
    bool all = env.request.squash == BuildRequest::Squash::kAll;
    size_t keep = all ? 0 : std::min(target.base_layers, out.layers.size());
    if (out.layers.size() - keep <= (all ? 0u : 1u) && !all)
      return;  // nothing or one new layer: already squashed
    fs::path root = env.root(target);
    TempDir empty(env.lease.temp_dir(), "squash-");
    fs::path before =
        keep == 0 ? empty.path()
                  : env.snapshot({out.layers.begin(), out.layers.begin() + keep},
                                 {out.config.diff_ids.begin(), out.config.diff_ids.begin() + keep});
    std::vector<snapshotter::LayerEntry> entries = snapshotter::diff_trees(before, root);
    size_t squashed = out.layers.size() - keep;
    out.layers.resize(keep);
    out.config.diff_ids.resize(keep);
    // The first `keep` entries with a layer (the base's) keep it; the later ones lose theirs.
    size_t with_layer = 0;
    for (oci::HistoryEntry& h : out.config.history) {
      if (h.empty_layer)
        continue;
      if (with_layer++ >= keep)
        h.empty_layer = true;
    }
    auto writer = env.store.begin_blob();
    snapshotter::LayerResult result =
        snapshotter::write_layer(std::move(entries), env.request.layers, *writer);
    writer->commit(result.digest);
    oci::Descriptor d;
    d.media_type =
        result.compression == snapshotter::Compression::kGzip   ? oci::media_type::kOciLayerGzip
        : result.compression == snapshotter::Compression::kZstd ? oci::media_type::kOciLayerZstd
                                                                : oci::media_type::kOciLayer;
    d.digest = result.digest;
    d.size = result.size;
    out.layers.push_back(d);
    out.config.diff_ids.push_back(result.diff_id);
    oci::HistoryEntry h;
    h.created = env.created;
    h.created_by = std::string("kiln build --squash") + (all ? "-all" : "") + " (" +
                   std::to_string(squashed) + " layers)";
    out.config.history.push_back(h);
  }
};

Builder::Builder(oci::Store& store, BuildRequest request)
    : impl_(std::make_unique<Impl>(store, std::move(request))) {}
Builder::~Builder() = default;

BuiltImage Builder::build(const frontend::OpGraph& graph) {
  return impl_->build(graph);
}

// Every stage that will run something must be able to: checked before any op runs.
void Builder::check(const frontend::OpGraph& graph) {
  for (const frontend::GraphStage& stage : graph.stages) {
    auto run = std::find_if(stage.ops.begin(), stage.ops.end(), [&](frontend::OpId id) {
      return graph.ops[id].as<frontend::ExecOp>() != nullptr;
    });
    if (run == stage.ops.end())
      continue;
    if (std::optional<std::string> why = runner::cannot_run(stage.platform))
      throw InputError(graph.ops[*run].where, *why);
  }
}

}  // namespace kiln::solver
