// BuildPlan → OpGraph: each needed stage's instructions become typed ops, their flags parsed.
#include <algorithm>
#include <map>

#include "kiln/base/strings.hpp"
#include "kiln/frontend/build_plan.hpp"
#include "kiln/frontend/duration.hpp"
#include "run_mount.hpp"

namespace kiln::frontend {
namespace {

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
    if (s.size() > 2)
      return false;
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

bool is_url(const std::string& source) {
  return starts_with(source, "http://") || starts_with(source, "https://");
}

bool flag_true(const Flag& f) {
  return !f.value || iequals(*f.value, "true");
}

std::vector<InlineFile> inline_files(const std::vector<Heredoc>& heredocs) {
  std::vector<InlineFile> out;
  for (const Heredoc& h : heredocs)
    out.push_back({h.name, h.content});
  return out;
}

class Lowering {
 public:
  Lowering(const BuildPlan& plan, const LowerOptions& options) : plan_(plan), options_(options) {}

  OpGraph run() {
    for (size_t index : plan_.order)
      lower_stage(plan_.stages[index]);
    graph_.target = slot_.at(plan_.target);
    for (const Stage& stage : plan_.stages) {
      if (!stage.name.empty())
        graph_.stage_names.push_back(stage.name);
    }
    return std::move(graph_);
  }

 private:
  OpId add(Op op) {
    op.id = graph_.ops.size();
    graph_.ops.push_back(std::move(op));
    return graph_.ops.back().id;
  }

  // Sources are shared: one op per image and platform, per directory, one for the context.
  OpId source(SourceOp s, const SourceLocation& where) {
    std::string key = std::to_string(static_cast<int>(s.kind)) + "|" + s.image + "|" +
                      s.platform.to_string() + "|" + s.directory;
    if (auto it = sources_.find(key); it != sources_.end()) {
      SourceOp& known = std::get<SourceOp>(graph_.ops[it->second].data);
      if (!known.manifest)
        known.manifest = s.manifest;
      return it->second;
    }
    Op op;
    op.where = where;
    op.data = std::move(s);
    OpId id = add(std::move(op));
    sources_.emplace(key, id);
    return id;
  }

  OpId image(const std::string& ref, const oci::Platform& platform,
             const std::optional<oci::Digest>& manifest, const SourceLocation& where) {
    SourceOp s;
    s.kind = SourceOp::Kind::kImage;
    s.image = ref;
    s.platform = platform;
    s.manifest = manifest;
    return source(std::move(s), where);
  }

  OpId context(const SourceLocation& where) {
    SourceOp s;
    s.kind = SourceOp::Kind::kContext;
    return source(std::move(s), where);
  }

  OpId directory(const std::string& name, const std::string& dir, const SourceLocation& where) {
    SourceOp s;
    s.kind = SourceOp::Kind::kDirectory;
    s.name = name;
    s.directory = dir;
    return source(std::move(s), where);
  }

  OpId stage_result(size_t index) const { return graph_.stages[slot_.at(index)].result; }

  std::string label_of(size_t index) const {
    const Stage& s = plan_.stages[index];
    return s.name.empty() ? "stage-" + std::to_string(index) : s.name;
  }

  void lower_stage(const Stage& s) {
    GraphStage g;
    g.index = s.index;
    g.name = s.name;
    g.where = s.where;
    g.platform = s.platform;
    switch (s.base_kind) {
      case BaseKind::kScratch: {
        SourceOp scratch;
        scratch.platform = s.platform;
        g.base = source(std::move(scratch), s.where);
        g.base_name = "scratch";
        break;
      }
      case BaseKind::kImage:
        g.base = image(s.base_image, s.platform, s.base_manifest, s.where);
        g.base_name = s.base_image;
        break;
      case BaseKind::kStage:
        g.base = stage_result(*s.base_stage);
        g.base_name = label_of(*s.base_stage);
        break;
    }
    for (size_t dep : s.dependencies)
      g.needs.push_back(slot_.at(dep));
    size_t slot = graph_.stages.size();
    slot_[s.index] = slot;
    graph_.stages.push_back(std::move(g));
    OpId previous = graph_.stages[slot].base;
    for (const StageOp& op : s.ops) {
      if (op.kind == InstructionKind::kArg)
        continue;  // changes no state: its value reaches the ops that see it
      Op lowered;
      lowered.where = op.where;
      lowered.stage = slot;
      lowered.inputs = {previous};
      lowered.text = op.instruction ? op.instruction->text : std::string(keyword_of(op.kind));
      lower_op(op, s, lowered);
      previous = add(std::move(lowered));
      graph_.stages[slot].ops.push_back(previous);
    }
    graph_.stages[slot].result = previous;
  }

  void lower_op(const StageOp& op, const Stage& stage, Op& out) {
    switch (op.kind) {
      case InstructionKind::kRun:
        out.data = exec(op, stage, out);
        return;
      case InstructionKind::kCopy:
      case InstructionKind::kAdd:
        out.data = copy(op, stage, out);
        return;
      case InstructionKind::kWorkdir: {
        FileOp f;
        f.action = FileOp::Action::kWorkdir;
        f.dest = op.args.front();
        out.data = std::move(f);
        return;
      }
      default:
        out.data = config(op);
        return;
    }
  }

  ConfigOp config(const StageOp& op) {
    ConfigOp c;
    switch (op.kind) {
      case InstructionKind::kEnv:
      case InstructionKind::kLabel:
        c.field =
            op.kind == InstructionKind::kEnv ? ConfigOp::Field::kEnv : ConfigOp::Field::kLabel;
        for (const KeyValue& kv : op.pairs)
          c.pairs.emplace_back(kv.key, kv.value.value_or(""));
        break;
      case InstructionKind::kMaintainer:
        c.field = ConfigOp::Field::kMaintainer;
        c.values = {op.args.front()};
        break;
      case InstructionKind::kExpose:
        c.field = ConfigOp::Field::kExpose;
        for (const std::string& port : op.args) {
          for (std::string& p : expand_ports(port, op.where))
            c.values.push_back(std::move(p));
        }
        break;
      case InstructionKind::kVolume:
        c.field = ConfigOp::Field::kVolume;
        c.values = op.args;
        break;
      case InstructionKind::kUser:
        c.field = ConfigOp::Field::kUser;
        c.values = {op.args.front()};
        break;
      case InstructionKind::kStopsignal:
        c.field = ConfigOp::Field::kStopSignal;
        if (!valid_signal(op.args.front()))
          throw InputError(op.where, "invalid STOPSIGNAL " + quote(op.args.front()));
        c.values = {op.args.front()};
        break;
      case InstructionKind::kShell:
        c.field = ConfigOp::Field::kShell;
        c.values = op.args;
        break;
      case InstructionKind::kCmd:
      case InstructionKind::kEntrypoint:
        c.field =
            op.kind == InstructionKind::kCmd ? ConfigOp::Field::kCmd : ConfigOp::Field::kEntrypoint;
        c.values = op.args;
        c.shell_form = !op.json_form;
        break;
      case InstructionKind::kHealthcheck:
        c.field = ConfigOp::Field::kHealthcheck;
        c.health = healthcheck(op);
        break;
      case InstructionKind::kOnbuild:
        c.field = ConfigOp::Field::kOnbuild;
        c.values = {op.instruction->trigger.front().text};
        break;
      default:
        throw InputError(op.where, std::string("internal: no op for ") + keyword_of(op.kind));
    }
    return c;
  }

  static oci::HealthConfig healthcheck(const StageOp& op) {
    oci::HealthConfig health;
    if (op.instruction->health_type == "NONE") {
      health.test = {"NONE"};
    } else if (op.json_form) {
      health.test = {"CMD"};
      health.test.insert(health.test.end(), op.args.begin(), op.args.end());
    } else {
      health.test = {"CMD-SHELL", op.args.front()};
    }
    // Durations and retries were validated by the parser; absent flags are 0 (engine default).
    for (const Flag& f : op.flags) {
      if (!f.value)
        continue;
      int64_t value = f.name == "retries" ? 0 : parse_go_duration(*f.value).value_or(0);
      if (f.name == "interval")
        health.interval = value;
      else if (f.name == "timeout")
        health.timeout = value;
      else if (f.name == "start-period")
        health.start_period = value;
      else if (f.name == "start-interval")
        health.start_interval = value;
      else if (f.name == "retries")
        health.retries = std::stoi(*f.value);
    }
    return health;
  }

  FileOp copy(const StageOp& op, const Stage& stage, Op& out) {
    std::string keyword = keyword_of(op.kind);
    auto fail = [&](const std::string& why, const SourceLocation& where) -> InputError {
      return InputError(where, keyword + ": " + why);
    };
    FileOp f;
    f.action = op.kind == InstructionKind::kAdd ? FileOp::Action::kAdd : FileOp::Action::kCopy;
    f.sources.assign(op.args.begin(), op.args.end() - 1);
    f.dest = op.args.back();
    f.heredocs = inline_files(op.heredocs);
    for (const Flag& flag : op.flags) {
      if (flag.name == "link") {
        f.link = flag_true(flag);
      } else if (flag.name == "parents") {
        f.parents = flag_true(flag);
      } else if (flag.name == "exclude" && flag.value) {
        f.exclude.push_back(*flag.value);
      } else if (flag.name == "chown" && flag.value) {
        f.chown = *flag.value;
      } else if (flag.name == "chmod" && flag.value) {
        try {
          f.chmod = ChmodSpec::parse(*flag.value);
        } catch (const InputError&) {
          throw;
        } catch (const Error& e) {
          throw fail(e.what(), flag.where);
        }
      } else if (flag.name == "checksum" && flag.value) {
        f.checksum = *flag.value;
      } else if (flag.name == "keep-git-dir") {
        throw fail(
            "ADD --keep-git-dir applies to git sources, which this version of kiln cannot fetch",
            flag.where);
      }
    }
    size_t urls = 0;
    for (const std::string& source : f.sources) {
      if (is_url(source)) {
        if (f.action != FileOp::Action::kAdd)
          throw fail("COPY cannot fetch " + quote(source) + ": use ADD for URLs", op.where);
        ++urls;
      } else if (source.find("://") != std::string::npos || starts_with(source, "git@")) {
        throw fail("ADD of " + quote(source) +
                       ": git repositories and URL schemes other than http(s) are not supported "
                       "by this version of kiln",
                   op.where);
      }
    }
    if (f.checksum && (urls != 1 || f.sources.size() != 1))
      throw fail("ADD --checksum needs exactly one source, an http(s) URL", op.where);
    if (f.checksum) {
      const std::string& c = *f.checksum;
      bool hex = c.size() == 71 && starts_with(c, "sha256:") &&
                 c.find_first_not_of("0123456789abcdef", 7) == std::string::npos;
      if (!hex)
        throw fail("ADD --checksum=" + c + ": expected sha256:<64 hex digits>", op.where);
    }
    if (op.from_stage) {
      out.inputs.push_back(stage_result(*op.from_stage));
      f.from_context = false;
    } else if (!op.from_image.empty()) {
      out.inputs.push_back(image(op.from_image, stage.platform, std::nullopt, op.where));
      f.from_context = false;
    } else if (!op.from_directory.empty()) {
      out.inputs.push_back(directory(op.from_directory, op.from_directory, op.where));
    } else {
      out.inputs.push_back(context(op.where));
    }
    return f;
  }

  // A RUN --mount from=REF: a stage by index or name, a local --build-context, else an image
  // (a --build-context image stands for REF), for the stage's platform.
  OpId mount_source(const std::string& from, const Stage& stage, const SourceLocation& where) {
    if (from.empty())
      return context(where);
    if (auto index = stage_named(from))
      return stage_result(*index);
    const NamedContext* named = find_named_context(options_.named_contexts, from);
    if (named && named->local)
      return directory(from, named->value, where);
    return image(named ? named->value : from, stage.platform, std::nullopt, where);
  }

  std::optional<size_t> stage_named(const std::string& ref) const {
    if (!ref.empty() && ref.find_first_not_of("0123456789") == std::string::npos) {
      size_t index = std::stoul(ref);
      if (index < plan_.stages.size())
        return index;
    }
    std::string lower = to_lower(ref);
    for (size_t i = plan_.stages.size(); i-- > 0;) {
      if (!lower.empty() && plan_.stages[i].name == lower)
        return i;
    }
    return std::nullopt;
  }

  ExecOp exec(const StageOp& op, const Stage& stage, Op& out) {
    ExecOp e;
    e.command = op.args;
    e.shell_form = !op.json_form;
    e.heredocs = inline_files(op.heredocs);
    e.build_args = op.visible_args;
    e.args_over_env = op.args_over_env;
    e.network = options_.network;
    e.extra_hosts = options_.extra_hosts;
    for (const Flag& flag : op.flags) {
      if (!flag.value)
        continue;
      const std::string& value = *flag.value;
      if (flag.name == "network") {
        if (value == "none")
          e.network = ExecOp::Network::kNone;
        else if (value == "host" && !options_.allow_network_host)
          throw InputError(flag.where,
                           "RUN --network=host needs `kiln build --allow network.host` (BuildKit's "
                           "network.host entitlement): steps otherwise get a network of their own");
        else if (value == "host")
          e.network = ExecOp::Network::kHost;
        else if (value != "default")
          throw InputError(flag.where,
                           "RUN --network=" + value + ": expected default, none or host");
      } else if (flag.name == "security") {
        if (value == "insecure") {
          if (!options_.allow_insecure)
            throw InputError(flag.where,
                             "RUN --security=insecure needs `kiln build --allow "
                             "security.insecure`");
          e.insecure = true;
        } else if (value != "sandbox") {
          throw InputError(flag.where,
                           "RUN --security=" + value + ": expected sandbox or insecure");
        }
      } else if (flag.name == "mount") {
        MountSpec spec;
        try {
          spec = parse_run_mount(value);
        } catch (const InputError&) {
          throw;
        } catch (const Error& err) {
          throw InputError(flag.where, std::string("RUN: ") + err.what());
        }
        if (spec.mount.type == Mount::Type::kBind) {
          spec.mount.input = out.inputs.size();
          out.inputs.push_back(mount_source(spec.from, stage, flag.where));
        }
        e.mounts.push_back(std::move(spec.mount));
      }
    }
    for (const std::string& value : options_.extra_mounts) {
      MountSpec spec;
      try {
        spec = parse_run_mount(value);
      } catch (const Error& err) {
        throw Error("--mount " + value + ": " + err.what());
      }
      if (spec.mount.type == Mount::Type::kBind) {
        spec.mount.input = out.inputs.size();
        out.inputs.push_back(mount_source(spec.from, stage, op.where));
      }
      e.mounts.push_back(std::move(spec.mount));
    }
    return e;
  }

  const BuildPlan& plan_;
  const LowerOptions& options_;
  OpGraph graph_;
  std::map<size_t, size_t> slot_;  // Containerfile stage index → index in graph_.stages
  std::map<std::string, OpId> sources_;
};

}  // namespace

OpGraph lower_plan(const BuildPlan& plan, const LowerOptions& options) {
  return Lowering(plan, options).run();
}

}  // namespace kiln::frontend
