#include "kiln/solver/builder.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <deque>
#include <map>
#include <set>

#include "copy.hpp"
#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/frontend/duration.hpp"
#include "kiln/oci/image_source.hpp"
#include "kiln/oci/media_types.hpp"
#include "kiln/runner/oci_runtime.hpp"
#include "kiln/runner/sandbox.hpp"
#include "kiln/snapshotter/diff.hpp"
#include "kiln/snapshotter/layer_applier.hpp"
#include "ownership.hpp"
#include "rootfs.hpp"
#include "run_mounts.hpp"
#include "stage_root.hpp"

namespace kiln::solver {
namespace fs = std::filesystem;
using frontend::InstructionKind;

namespace {

constexpr const char* kHistoryComment = "buildkit.dockerfile.v0";
constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One stage while it is being built.
struct StageState {
  oci::ImageConfig config;
  std::vector<oci::Descriptor> layers;
  std::unique_ptr<StageRoot> rootfs = std::make_unique<StageRoot>();
  bool cmd_set = false;  // CMD given in this stage: ENTRYPOINT then keeps it
};

void set_env(std::vector<std::string>& env, const std::string& key, const std::string& value) {
  for (std::string& entry : env) {
    if (entry.compare(0, key.size() + 1, key + "=") == 0) {
      entry = key + "=" + value;
      return;
    }
  }
  env.push_back(key + "=" + value);
}

bool has_env(const std::vector<std::string>& env, const std::string& key) {
  return std::any_of(env.begin(), env.end(), [&](const std::string& e) {
    return e.compare(0, key.size() + 1, key + "=") == 0;
  });
}

std::vector<std::string> shell_of(const oci::ImageConfig& config) {
  if (config.config.shell && !config.config.shell->empty())
    return *config.config.shell;
  return {"/bin/sh", "-c"};
}

// CMD/ENTRYPOINT/HEALTHCHECK command from exec or shell form.
std::vector<std::string> command_of(const frontend::Op& op, const oci::ImageConfig& config) {
  if (op.json_form)
    return op.args;
  std::vector<std::string> cmd = shell_of(config);
  if (!op.args.empty())
    cmd.push_back(op.args.front());
  return cmd;
}

std::string json_array(const std::vector<std::string>& items) {
  nlohmann::json j = items;
  return j.dump();
}

// "80" → "80/tcp"; "8000-8002/udp" → three ports.
std::vector<std::string> expand_ports(const std::string& spec, const SourceLocation& where) {
  std::string port = spec;
  std::string proto = "tcp";
  if (size_t slash = spec.find('/'); slash != std::string::npos) {
    port = spec.substr(0, slash);
    proto = to_lower(spec.substr(slash + 1));
  }
  if (proto != "tcp" && proto != "udp" && proto != "sctp") {
    throw InputError(where, "invalid EXPOSE protocol " + quote(proto) + " (use tcp, udp or sctp)");
  }
  auto number = [&](const std::string& s) {
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos || s.size() > 5 ||
        std::stoi(s) > 65535) {
      throw InputError(where, "invalid port " + quote(spec) + " in EXPOSE");
    }
    return std::stoi(s);
  };
  std::vector<std::string> out;
  if (size_t dash = port.find('-'); dash != std::string::npos) {
    int first = number(port.substr(0, dash));
    int last = number(port.substr(dash + 1));
    if (last < first)
      throw InputError(where, "invalid port range " + quote(spec) + " in EXPOSE");
    for (int p = first; p <= last; ++p)
      out.push_back(std::to_string(p) + "/" + proto);
  } else {
    out.push_back(std::to_string(number(port)) + "/" + proto);
  }
  return out;
}

bool valid_signal(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("0123456789") == std::string::npos) {
    int n = std::stoi(s);
    return n > 0 && n <= 64;
  }
  std::string name = to_upper(s);
  if (starts_with(name, "SIG"))
    name = name.substr(3);
  if (starts_with(name, "RTMIN") || starts_with(name, "RTMAX"))
    return true;
  for (const char* known :
       {"ABRT", "ALRM",   "BUS",  "CHLD",   "CLD",   "CONT", "FPE",  "HUP",   "ILL",
        "INT",  "IO",     "IOT",  "KILL",   "PIPE",  "POLL", "PROF", "PWR",   "QUIT",
        "SEGV", "STKFLT", "STOP", "SYS",    "TERM",  "TRAP", "TSTP", "TTIN",  "TTOU",
        "URG",  "USR1",   "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "UNUSED"}) {
    if (name == known)
      return true;
  }
  return false;
}

// HEALTHCHECK durations were validated by the parser; absent flags are 0 (the engine default).
int64_t duration_flag(const frontend::Op& op, const char* name) {
  for (const frontend::Flag& f : op.flags) {
    if (f.name == name && f.value)
      return frontend::parse_go_duration(*f.value).value_or(0);
  }
  return 0;
}

}  // namespace

std::string build_timestamp(const std::optional<int64_t>& source_date_epoch) {
  return oci::format_rfc3339(source_date_epoch.value_or(now_seconds()));
}

struct Builder::Impl {
  oci::Store& store;
  BuildRequest request;
  std::string created;
  int64_t now;
  std::map<size_t, std::unique_ptr<StageState>> stages;
  std::map<std::string, oci::ResolvedImage> images;  // by "ref|platform"
  SnapshotCache snapshots;
  std::optional<bool> stage_overlay_usable;

  Impl(oci::Store& s, BuildRequest r)
      : store(s), request(std::move(r)), snapshots(store.root() / "snapshots") {
    now = request.source_date_epoch.value_or(now_seconds());
    created = oci::format_rfc3339(now);
  }

  const oci::ResolvedImage& image(const std::string& ref, const oci::Platform& platform) {
    std::string key = ref + "|" + platform.to_string();
    auto it = images.find(key);
    if (it == images.end())
      it = images.emplace(key, oci::resolve_image(store, ref, platform)).first;
    return it->second;
  }

  snapshotter::ApplyOptions apply_options() const {
    snapshotter::ApplyOptions options;
    options.preserve_ownership = ::geteuid() == 0;
    options.allow_devices = ::geteuid() == 0;
    return options;
  }

  void unpack(const std::vector<oci::Descriptor>& layers, const fs::path& root) {
    for (const oci::Descriptor& layer : layers) {
      snapshotter::apply_layer(store.blob_path(layer.digest), root, apply_options());
    }
  }

  // The unpacked filesystem of an image named by COPY --from=IMAGE (its cached snapshot).
  fs::path image_root(const std::string& ref, const oci::Platform& platform) {
    const oci::ResolvedImage& img = image(ref, platform);
    return snapshot(img.parsed.layers, img.config.diff_ids);
  }

  // The cached snapshot of a layer chain (empty chain: nullopt-like empty path).
  fs::path snapshot(const std::vector<oci::Descriptor>& layers,
                    const std::vector<oci::Digest>& diff_ids) {
    if (layers.size() != diff_ids.size()) {
      throw Error("image config lists " + std::to_string(diff_ids.size()) +
                  " layers but its "
                  "manifest has " +
                  std::to_string(layers.size()));
    }
    if (layers.empty())
      return {};
    return snapshots.get(diff_ids, [&](const fs::path& dir) { unpack(layers, dir); });
  }

  // Whether stage roots are overlays on their snapshots (else copies of them).
  bool stage_overlay() {
    if (!stage_overlay_usable) {
      TempDir probe({}, "kiln-overlay-probe-");
      stage_overlay_usable = request.snapshotter != "copy" &&
                             snapshotter::overlay_available(probe.path(), !in_initial_userns());
    }
    return *stage_overlay_usable;
  }

  std::unique_ptr<StageRoot> stage_root(const std::vector<oci::Descriptor>& layers,
                                        const std::vector<oci::Digest>& diff_ids) {
    if (layers.empty())
      return std::make_unique<StageRoot>();
    return std::make_unique<StageRoot>(snapshot(layers, diff_ids), stage_overlay(),
                                       !in_initial_userns());
  }

  static bool in_initial_userns() {
    try {
      std::string map = read_file("/proc/self/uid_map");
      return map.find("4294967295") != std::string::npos;
    } catch (const Error&) {
      return true;
    }
  }

  void progress(const std::string& line) {
    if (request.progress)
      request.progress(line);
  }

  void history(StageState& st, const std::string& created_by, bool empty_layer) {
    oci::HistoryEntry h;
    h.created = created;
    h.created_by = created_by;
    h.comment = kHistoryComment;
    h.empty_layer = empty_layer;
    st.config.history.push_back(std::move(h));
  }

  void add_layer(StageState& st, std::vector<snapshotter::LayerEntry> entries) {
    write_layer_only(st, std::move(entries), /*apply=*/true);
  }

  // Writes the layer into the store and records it; applies it to the stage's rootfs unless the
  // change is already there (a RUN with the copy snapshotter ran in place).
  void write_layer_only(StageState& st, std::vector<snapshotter::LayerEntry> entries, bool apply) {
    auto writer = store.begin_blob();
    snapshotter::LayerResult result =
        snapshotter::write_layer(std::move(entries), request.layers, *writer);
    writer->commit(result.digest);
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
    if (apply)
      snapshotter::apply_layer(store.blob_path(result.digest), st.rootfs->path(), apply_options());
  }

  std::unique_ptr<StageState> start_stage(const frontend::Stage& stage) {
    auto st = std::make_unique<StageState>();
    switch (stage.base_kind) {
      case frontend::BaseKind::kScratch:
        st->config.os = stage.platform.os;
        st->config.architecture = stage.platform.architecture;
        st->config.variant = stage.platform.variant;
        break;
      case frontend::BaseKind::kStage: {
        const StageState& base = *stages.at(*stage.base_stage);
        st->config = base.config;
        st->layers = base.layers;
        st->rootfs = stage_root(st->layers, st->config.diff_ids);
        break;
      }
      case frontend::BaseKind::kImage: {
        const oci::ResolvedImage& base = image(stage.base_image, stage.platform);
        st->config = base.config;
        st->layers = base.parsed.layers;
        st->rootfs = stage_root(st->layers, st->config.diff_ids);
        // The base's triggers ran (they are ops of this stage); they are not inherited.
        st->config.config.on_build.clear();
        break;
      }
    }
    if (!has_env(st->config.config.env, "PATH"))
      set_env(st->config.config.env, "PATH", kDefaultPath);
    return st;
  }

  std::string created_by(const frontend::Op& op) const {
    std::string text = op.instruction ? op.instruction->text : keyword_of(op.kind);
    return text;
  }

  void run_op(StageState& st, const frontend::Stage& stage, const frontend::Op& op) {
    oci::ContainerConfig& c = st.config.config;
    switch (op.kind) {
      case InstructionKind::kArg:
        return;  // ARG only changes what later steps see
      case InstructionKind::kEnv:
        for (const frontend::KeyValue& kv : op.pairs)
          set_env(c.env, kv.key, kv.value.value_or(""));
        history(st, created_by(op), true);
        return;
      case InstructionKind::kLabel:
        for (const frontend::KeyValue& kv : op.pairs)
          c.labels[kv.key] = kv.value.value_or("");
        history(st, created_by(op), true);
        return;
      case InstructionKind::kMaintainer:
        st.config.author = op.args.front();
        history(st, created_by(op), true);
        return;
      case InstructionKind::kExpose:
        for (const std::string& port : op.args) {
          for (const std::string& p : expand_ports(port, op.where))
            c.exposed_ports.insert(p);
        }
        history(st, created_by(op), true);
        return;
      case InstructionKind::kVolume:
        for (const std::string& v : op.args)
          c.volumes.insert(v);
        history(st, created_by(op), true);
        return;
      case InstructionKind::kUser:
        c.user = op.args.front();
        history(st, created_by(op), true);
        return;
      case InstructionKind::kStopsignal:
        if (!valid_signal(op.args.front())) {
          throw InputError(op.where, "invalid STOPSIGNAL " + quote(op.args.front()));
        }
        c.stop_signal = op.args.front();
        history(st, created_by(op), true);
        return;
      case InstructionKind::kShell:
        c.shell = op.args;
        history(st, created_by(op), true);
        return;
      case InstructionKind::kCmd:
        c.cmd = command_of(op, st.config);
        st.cmd_set = true;
        history(st, "CMD " + json_array(*c.cmd), true);
        return;
      case InstructionKind::kEntrypoint:
        c.entrypoint = command_of(op, st.config);
        if (!st.cmd_set)
          c.cmd.reset();  // an inherited CMD does not fit a new ENTRYPOINT
        history(st, "ENTRYPOINT " + json_array(*c.entrypoint), true);
        return;
      case InstructionKind::kHealthcheck: {
        oci::HealthConfig health;
        if (op.instruction->health_type == "NONE") {
          health.test = {"NONE"};
        } else if (op.json_form) {
          health.test = {"CMD"};
          health.test.insert(health.test.end(), op.args.begin(), op.args.end());
        } else {
          health.test = {"CMD-SHELL", op.args.front()};
        }
        health.interval = duration_flag(op, "interval");
        health.timeout = duration_flag(op, "timeout");
        health.start_period = duration_flag(op, "start-period");
        health.start_interval = duration_flag(op, "start-interval");
        for (const frontend::Flag& f : op.flags) {
          if (f.name == "retries" && f.value)
            health.retries = std::stoi(*f.value);
        }
        c.healthcheck = health;
        history(st, created_by(op), true);
        return;
      }
      case InstructionKind::kOnbuild:
        c.on_build.push_back(op.instruction->trigger.front().text);
        history(st, created_by(op), true);
        return;
      case InstructionKind::kWorkdir:
        workdir(st, op);
        return;
      case InstructionKind::kCopy:
      case InstructionKind::kAdd:
        copy(st, stage, op);
        return;
      case InstructionKind::kRun:
        run(st, op);
        return;
      case InstructionKind::kFrom:
        return;
    }
  }

  void workdir(StageState& st, const frontend::Op& op) {
    std::string path = op.args.front();
    std::string current = st.config.config.working_dir.empty() ? "/" : st.config.config.working_dir;
    std::string joined = starts_with(path, "/") ? path : current + "/" + path;
    std::string clean = "/" + clean_in_root(joined);
    st.config.config.working_dir = clean;
    // The directory is created when it does not exist (a layer with it and its parents).
    std::string resolved = resolve_in_root(st.rootfs->path(), clean);
    auto existing = lstat_in_root(st.rootfs->path(), resolved);
    if (resolved.empty() || (existing && S_ISDIR(existing->st_mode))) {
      history(st, created_by(op), true);
      return;
    }
    std::vector<snapshotter::LayerEntry> entries;
    for (std::string p = resolved; !p.empty();) {
      snapshotter::LayerEntry e;
      e.path = p;
      auto st_parent = lstat_in_root(st.rootfs->path(), p);
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
    history(st, created_by(op), false);
  }

  void copy(StageState& st, const frontend::Stage& stage, const frontend::Op& op) {
    CopyRequest req;
    req.add = op.kind == InstructionKind::kAdd;
    req.sources.assign(op.args.begin(), op.args.end() - 1);
    req.dest = op.args.back();
    req.workdir = st.config.config.working_dir.empty() ? "/" : st.config.config.working_dir;
    req.heredocs = op.heredocs;
    req.dest_root = st.rootfs->path();
    req.now = now;
    req.source_root = request.context;
    req.ignore = &request.ignore;
    try {
      for (const frontend::Flag& f : op.flags) {
        if (f.name == "link")
          req.link = !f.value || iequals(*f.value, "true");
        if (f.name == "parents")
          req.parents = !f.value || iequals(*f.value, "true");
        if (f.name == "exclude" && f.value)
          req.exclude.push_back(*f.value);
        if (f.name == "chmod" && f.value)
          req.chmod = ChmodSpec::parse(*f.value);
        if (f.name == "chown" && f.value)
          req.chown = resolve_owner(*f.value, st.rootfs->path());
        if (f.name == "checksum" || f.name == "keep-git-dir") {
          throw Error("ADD --" + f.name +
                      " applies to URLs and git sources, which this version "
                      "of kiln cannot fetch yet");
        }
      }
      if (op.from_stage) {
        req.source_root = stages.at(*op.from_stage)->rootfs->path();
        req.from_context = false;
        req.ignore = nullptr;
      } else if (!op.from_image.empty()) {
        req.source_root = image_root(op.from_image, stage.platform);
        req.from_context = false;
        req.ignore = nullptr;
      }
      for (const std::string& source : req.sources) {
        if (source.find("://") != std::string::npos || starts_with(source, "git@")) {
          throw Error(std::string(req.add ? "ADD" : "COPY") + " of " + quote(source) +
                      ": fetching URLs and git repositories is not supported by this version of "
                      "kiln yet");
        }
      }
      CopyPlan plan = plan_copy(req);
      if (plan.entries.empty()) {
        history(st, created_by(op), true);
        return;
      }
      add_layer(st, std::move(plan.entries));
    } catch (const InputError&) {
      throw;
    } catch (const Error& e) {
      throw InputError(op.where, std::string(keyword_of(op.kind)) + ": " + e.what());
    }
    history(st, created_by(op), false);
  }

  // --- RUN ---------------------------------------------------------------------------------

  const frontend::BuildPlan* current_plan = nullptr;
  std::optional<bool> overlay_usable;  // probed on the first RUN when --snapshotter=auto

  // Whether RUN steps use an overlay snapshot (else the copy snapshotter runs them in place).
  bool use_overlay() {
    if (request.snapshotter == "copy")
      return false;
    if (!overlay_usable) {
      TempDir probe({}, "kiln-overlay-probe-");
      overlay_usable = snapshotter::overlay_available(probe.path(), /*userxattr=*/true);
      if (!*overlay_usable && request.snapshotter == "auto") {
        progress("overlayfs cannot be mounted here: RUN steps use the copy snapshotter");
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

  void run(StageState& st, const frontend::Op& op) {
    std::string shown =
        op.json_form ? json_array(op.args) : (op.args.empty() ? std::string() : op.args.front());
    runner::ProcessSpec spec;
    std::optional<std::string> script;
    spec.args = run_argv(op, st, script);
    spec.env = run_env(op, st);
    spec.cwd = st.config.config.working_dir.empty() ? "/" : st.config.config.working_dir;
    spec.hostname = "kiln";
    std::vector<UniqueFd> locks;
    std::vector<std::unique_ptr<TempDir>> scratch;
    std::string network = request.network;
    try {
      ProcessUser user = resolve_process_user(st.config.config.user, st.rootfs->path());
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
          add_mount(spec, parse_run_mount(*f.value, spec.cwd), st, locks, scratch);
        }
      }
      spec.network = network == "none" ? runner::Network::kNone : runner::Network::kHost;
      if (script) {
        auto dir = std::make_unique<TempDir>(fs::path{}, "kiln-script-");
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
        progress("  | " + line);
        tail.push_back(std::move(line));
        if (tail.size() > 10)
          tail.pop_front();
      }
    };

    runner::RunResult result;
    std::vector<snapshotter::LayerEntry> entries;
    bool overlay = use_overlay();
    if (overlay) {
      TempDir snap({}, "kiln-snap-");
      fs::path upper = snap.path() / "upper", work = snap.path() / "work",
               merged = snap.path() / "merged";
      for (const fs::path& d : {upper, work, merged})
        fs::create_directories(d);
      spec.rootfs = merged;
      // The sandbox mounts it inside its own user namespace, hence userxattr.
      spec.rootfs_mount = runner::Mount{
          "/",
          "overlay",
          "overlay",
          {snapshotter::overlay_mount_options({st.rootfs->path()}, upper, work, true)}};
      try {
        result = run_process(spec);
      } catch (const Error& e) {
        ::chmod((work / "work").c_str(), 0700);
        throw InputError(op.where, std::string("RUN: ") + e.what());
      }
      // overlayfs leaves work/work with mode 000; make it removable for the TempDir.
      ::chmod((work / "work").c_str(), 0700);
      if (result.exit_code == 0) {
        entries = snapshotter::diff_overlay_upper(upper, st.rootfs->path(), mountpoints(result));
        finish_run(st, op, shown, std::move(entries));
      }
    }
    if (!overlay) {
      snapshotter::TreeIndex before = snapshotter::TreeIndex::scan(st.rootfs->path());
      spec.rootfs = st.rootfs->path();
      spec.rootfs_mount.reset();
      try {
        result = run_process(spec);
      } catch (const Error& e) {
        throw InputError(op.where, std::string("RUN: ") + e.what());
      }
      std::set<std::string> exclude = mountpoints(result);
      if (result.exit_code == 0) {
        entries = snapshotter::diff_tree(before, st.rootfs->path(), exclude);
        remove_mountpoints(st.rootfs->path(), result);
        finish_run(st, op, shown, std::move(entries), /*already_applied=*/true);
      } else {
        remove_mountpoints(st.rootfs->path(), result);
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
      history(st, created_by, true);
      return;
    }
    write_layer_only(st, std::move(entries), /*apply=*/!already_applied);
    history(st, created_by, false);
  }

  void add_mount(runner::ProcessSpec& spec, const RunMount& m, StageState& st,
                 std::vector<UniqueFd>& locks, std::vector<std::unique_ptr<TempDir>>& scratch) {
    switch (m.type) {
      case RunMount::Type::kBind: {
        fs::path root = request.context;
        if (!m.from.empty()) {
          if (auto index = stage_named(m.from)) {
            root = stages.at(*index)->rootfs->path();
          } else {
            root = image_root(m.from, request.platform);
          }
        }
        std::string rel =
            m.from.empty() ? clean_in_root(m.source) : resolve_in_root(root, m.source);
        fs::path source = rel.empty() ? root : root / rel;
        if (!fs::exists(fs::symlink_status(source))) {
          throw Error("--mount type=bind: source " + quote(m.source.empty() ? "." : m.source) +
                      " not found");
        }
        spec.mounts.push_back(
            {m.target, "bind", source.string(), {"rbind", m.readonly ? "ro" : "rw"}});
        return;
      }
      case RunMount::Type::kCache: {
        fs::path dir = cache_dir(m);
        if (m.sharing != "shared") {
          // locked (and private, which kiln treats the same way) serialise users of the cache.
          UniqueFd lock = open_or_throw(dir.string() + ".lock", O_RDWR | O_CREAT, 0600);
          while (::flock(lock.get(), LOCK_EX) != 0 && errno == EINTR) {
          }
          locks.push_back(std::move(lock));
        }
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
        auto dir = std::make_unique<TempDir>(fs::path{}, "kiln-secret-");
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

  BuiltImage build(const frontend::BuildPlan& plan) {
    current_plan = &plan;
    size_t total = 0;
    for (size_t index : plan.order)
      total += plan.stages[index].ops.size() + 1;
    size_t step = 0;
    for (size_t index : plan.order) {
      const frontend::Stage& stage = plan.stages[index];
      progress("[" + std::to_string(++step) + "/" + std::to_string(total) + "] " +
               (stage.name.empty() ? "stage " + std::to_string(index) : stage.name) + ": FROM " +
               (stage.base_kind == frontend::BaseKind::kImage ? stage.base_image
                : stage.base_kind == frontend::BaseKind::kStage
                    ? "stage " + std::to_string(*stage.base_stage)
                    : std::string("scratch")));
      auto st = start_stage(stage);
      for (const frontend::Op& op : stage.ops) {
        progress("[" + std::to_string(++step) + "/" + std::to_string(total) + "] " +
                 (op.instruction ? op.instruction->text : keyword_of(op.kind)));
        run_op(*st, stage, op);
      }
      stages[index] = std::move(st);
    }
    StageState& target = *stages.at(plan.target);
    for (const auto& [key, value] : request.labels)
      target.config.config.labels[key] = value;
    target.config.created = created;
    const frontend::Stage& target_stage = plan.stages[plan.target];
    target.config.os = target_stage.platform.os;
    target.config.architecture = target_stage.platform.architecture;
    target.config.variant = target_stage.platform.variant;
    return {target.config, target.layers, target.rootfs->path()};
  }
};

Builder::Builder(oci::Store& store, BuildRequest request)
    : impl_(std::make_unique<Impl>(store, std::move(request))) {}
Builder::~Builder() = default;

BuiltImage Builder::build(const frontend::BuildPlan& plan) {
  return impl_->build(plan);
}

frontend::BaseImage Builder::base_image(const std::string& ref, const oci::Platform& platform) {
  const oci::ResolvedImage& image = impl_->image(ref, platform);
  return {image.config.config.env, image.config.config.on_build};
}

}  // namespace kiln::solver
