#include "kiln/frontend/build_plan.hpp"

#include <algorithm>
#include <set>
#include <sstream>
#include <tuple>
#include <unordered_map>

#include "kiln/base/strings.hpp"
#include "kiln/frontend/parser.hpp"
#include "kiln/frontend/shell_lexer.hpp"
#include "kiln/oci/reference.hpp"

namespace kiln::frontend {

const NamedContext* find_named_context(const std::map<std::string, NamedContext>& contexts,
                                       const std::string& ref) {
  if (contexts.empty() || ref.empty())
    return nullptr;
  if (auto it = contexts.find(ref); it != contexts.end())
    return &it->second;
  if (std::optional<oci::Reference> parsed = oci::try_parse_reference(ref)) {
    std::string short_form = parsed->familiar();
    if (short_form.ends_with(":latest"))
      short_form.resize(short_form.size() - 7);
    if (auto it = contexts.find(short_form); it != contexts.end())
      return &it->second;
  }
  return nullptr;
}

namespace {

constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

bool is_proxy_arg(std::string_view name) {
  for (std::string_view proxy :
       {"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
        "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"}) {
    if (name == proxy)
      return true;
  }
  return false;
}

bool is_platform_arg(std::string_view name) {
  for (std::string_view arg : {"TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT",
                               "BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT"}) {
    if (name == arg)
      return true;
  }
  return false;
}

// An ordered name → value list: the image environment, and the ARGs of a scope. Lookups are by
// hash, so a file with 100,000 ENV lines plans in linear time.
class VarList {
 public:
  void set(const std::string& name, std::optional<std::string> value) {
    auto [it, added] = index_.try_emplace(name, vars_.size());
    if (added) {
      vars_.emplace_back(name, std::move(value));
    } else {
      vars_[it->second].second = std::move(value);
    }
  }
  // nullopt when absent or declared without a value.
  std::optional<std::string> get(std::string_view name) const {
    auto it = index_.find(std::string(name));
    return it == index_.end() ? std::nullopt : vars_[it->second].second;
  }
  bool declared(std::string_view name) const { return index_.contains(std::string(name)); }
  const std::vector<std::pair<std::string, std::optional<std::string>>>& items() const {
    return vars_;
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> vars_;
  std::unordered_map<std::string, size_t> index_;
};

std::vector<std::string> to_env_list(const VarList& env) {
  std::vector<std::string> out;
  for (const auto& [name, value] : env.items())
    out.push_back(name + "=" + value.value_or(""));
  return out;
}

VarList from_env_list(const std::vector<std::string>& entries) {
  VarList env;
  for (const std::string& entry : entries) {
    size_t eq = entry.find('=');
    if (eq == std::string::npos) {
      env.set(entry, "");
    } else {
      env.set(entry.substr(0, eq), entry.substr(eq + 1));
    }
  }
  return env;
}

// A build runs a thread per needed stage; real files have tens of stages.
constexpr size_t kMaxStages = 1000;

bool is_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

class Planner {
 public:
  Planner(const Containerfile& file, const BuildOptions& options)
      : file_(file), options_(options), lexer_({.escape = file.escape}) {
    for (const auto& [name, value] : options.build_args)
      build_args_[name] = value;
    const oci::Platform& t = options.target_platform;
    const oci::Platform& b = options.build_platform;
    platform_args_ = {{"TARGETPLATFORM", t.to_string()}, {"TARGETOS", t.os},
                      {"TARGETARCH", t.architecture},    {"TARGETVARIANT", t.variant},
                      {"BUILDPLATFORM", b.to_string()},  {"BUILDOS", b.os},
                      {"BUILDARCH", b.architecture},     {"BUILDVARIANT", b.variant}};
  }

  BuildPlan run() {
    size_t i = 0;
    for (; i < file_.instructions.size(); ++i) {
      const Instruction& ins = file_.instructions[i];
      if (ins.kind == InstructionKind::kFrom)
        break;
      if (ins.kind != InstructionKind::kArg) {
        throw InputError(ins.where, std::string("no build stage in current context: ") +
                                        keyword_of(ins.kind) +
                                        " must come after FROM (only ARG may precede it)");
      }
      declare_global_args(ins);
    }
    if (i == file_.instructions.size()) {
      SourceLocation where{file_.filename, 0, 0};
      throw InputError(where, "no FROM instruction: a Containerfile needs at least one stage");
    }
    for (; i < file_.instructions.size(); ++i) {
      const Instruction& ins = file_.instructions[i];
      if (ins.kind == InstructionKind::kFrom) {
        start_stage(ins);
      } else {
        add_op(ins);
      }
    }
    finish_stage();
    for (Stage& stage : plan_.stages)
      finish_dependencies(stage);
    for (const auto& [name, value] : global_.items()) {
      if (value)
        plan_.global_args.push_back(name + "=" + *value);
    }
    choose_target();
    order_stages();
    warn_unused_build_args();
    return std::move(plan_);
  }

 private:
  // --- scopes -------------------------------------------------------------------------------

  std::optional<std::string> meta_lookup(std::string_view name) const {
    if (global_.declared(name))
      return global_.get(name);
    for (const auto& [n, v] : platform_args_) {
      if (n == name)
        return v;
    }
    return std::nullopt;
  }

  // Inside a stage, as BuildKit's state environment: ENV and ARGs with a value set a name in
  // order, so the later one wins (ENV over an earlier ARG, an ARG over an earlier ENV or the
  // base image's); an ARG without a value leaves what was there.
  std::optional<std::string> stage_lookup(std::string_view name) const {
    if (args_over_env_.contains(std::string(name)))
      return args_.get(name);
    if (env_.declared(name))
      return env_.get(name);
    return args_.get(name);
  }

  std::string expand(std::string_view word, const SourceLocation& where, bool meta = false) {
    EnvLookup lookup = meta ? EnvLookup([this](std::string_view n) { return meta_lookup(n); })
                            : EnvLookup([this](std::string_view n) { return stage_lookup(n); });
    try {
      ExpandResult result = lexer_.expand_word_with_matches(word, lookup);
      note_undefined(result.unmatched, where, meta);
      return std::move(result.value);
    } catch (const ExpansionError& e) {
      // A hostile word can be megabytes long: the message shows its start.
      std::string shown =
          word.size() > 80 ? std::string(word.substr(0, 77)) + "..." : std::string(word);
      throw InputError(where, "cannot expand " + quote(shown) + ": " + e.what());
    }
  }

  // Names an expansion read that are not defined where it happened (BuildPlan::undefined_vars):
  // for FROM lines, not a global ARG (declared, with a value or not) or a platform ARG; in a
  // stage, not an ENV (the base image's included) or an ARG declared in the stage or its parent.
  void note_undefined(const std::set<std::string>& unmatched, const SourceLocation& where,
                      bool meta) {
    for (const std::string& name : unmatched) {
      if (name.starts_with("BUILDKIT_SBOM_SCAN_"))
        continue;
      UndefinedVar u{where, name, expanding_, std::nullopt, {}};
      if (meta) {
        if (global_.declared(name) || is_platform_arg(name))
          continue;
        for (const auto& [n, v] : global_.items())
          u.defined.push_back(n);
        for (const auto& [n, v] : platform_args_)
          u.defined.push_back(n);
      } else {
        if (plan_.stages.empty() || args_.declared(name) || env_.declared(name))
          continue;
        u.stage = current().index;
        for (const auto& [n, v] : env_.items())
          u.defined.push_back(n);
        for (const auto& [n, v] : args_.items())
          u.defined.push_back(n);
      }
      plan_.undefined_vars.push_back(std::move(u));
    }
  }

  std::optional<std::string> build_arg(const std::string& name, std::set<std::string>& used) {
    auto it = build_args_.find(name);
    if (it == build_args_.end())
      return std::nullopt;
    used.insert(name);
    return it->second;
  }

  void declare_global_args(const Instruction& ins) {
    expanding_ = InstructionKind::kArg;
    for (const KeyValue& kv : ins.pairs) {
      std::optional<std::string> value = build_arg(kv.key, global_used_);
      if (!value && kv.value)
        value = expand(*kv.value, kv.where, /*meta=*/true);
      if (!value && is_platform_arg(kv.key))
        value = meta_lookup(kv.key);
      global_.set(kv.key, value);
    }
  }

  // --- named contexts -----------------------------------------------------------------------

  const NamedContext* named_context(const std::string& ref) const {
    return find_named_context(options_.named_contexts, ref);
  }

  // A named context used where an image is needed (FROM, a replaced stage).
  std::string context_image(const NamedContext& context, const std::string& name,
                            const SourceLocation& where) const {
    if (context.local) {
      throw InputError(where, "build context " + quote(name) + " is the directory " +
                                  context.value +
                                  ": kiln can use a local directory context only with COPY "
                                  "--from and RUN --mount from, not as a base image");
    }
    return context.value;
  }

  // --- stages -------------------------------------------------------------------------------

  Stage& current() { return plan_.stages.back(); }

  // The latest stage so far with this name (with duplicate names, BuildKit's later definition
  // shadows the earlier one).
  std::optional<size_t> stage_by_name(std::string_view name) const {
    std::string lower = to_lower(name);
    for (auto it = plan_.stages.rbegin(); it != plan_.stages.rend(); ++it) {
      if (!it->name.empty() && it->name == lower)
        return it->index;
    }
    return std::nullopt;
  }

  // The environment a stage ends with, kept for stages FROM it; set once, not per ENV line.
  // Its ARGs too: a stage FROM it starts with them (BuildKit starts it from the parent's state
  // and build args).
  void finish_stage() {
    if (plan_.stages.empty())
      return;
    current().env = to_env_list(env_);
    finished_args_.resize(plan_.stages.size());
    finished_args_[current().index] = {args_, args_over_env_};
  }

  void start_stage(const Instruction& ins) {
    finish_stage();
    expanding_ = InstructionKind::kFrom;
    if (plan_.stages.size() >= kMaxStages) {
      throw InputError(ins.where, "more than " + std::to_string(kMaxStages) +
                                      " stages: kiln builds at most that many from one file");
    }
    Stage stage;
    stage.index = plan_.stages.size();
    stage.where = ins.where;
    if (ins.args.size() == 3) {
      stage.name = to_lower(ins.args[2]);
      if (auto earlier = stage_by_name(stage.name)) {
        plan_.warnings.push_back({ins.where,
                                  "Duplicate stage name " + quote(stage.name) +
                                      ", stage names should be unique (first defined at line " +
                                      std::to_string(plan_.stages[*earlier].where.line) +
                                      "; later references use this stage)",
                                  "DuplicateStageName"});
      }
    }
    std::string base = stage.index == 0 && options_.first_base
                           ? *options_.first_base
                           : expand(ins.args[0], ins.args_where, /*meta=*/true);
    if (base.empty()) {
      throw InputError(ins.args_where,
                       "base name (" + ins.args[0] + ") should not be blank after expansion");
    }
    stage.platform = options_.target_platform;
    if (const Flag* flag = ins.find_flag("platform")) {
      std::string spec = expand(*flag->value, flag->where, /*meta=*/true);
      try {
        stage.platform = oci::parse_platform(spec);
      } catch (const Error& e) {
        throw InputError(flag->where, e.what());
      }
      stage.platform_explicit = true;
    }
    // A named context replaces a stage of the same name (whose instructions then do not run)
    // or the image FROM names.
    skipping_stage_ = false;
    if (const NamedContext* context = stage.name.empty() ? nullptr : named_context(stage.name)) {
      base = context_image(*context, stage.name, ins.where);
      skipping_stage_ = true;
    } else if (const NamedContext* named = iequals(base, "scratch") || stage_by_name(base)
                                               ? nullptr
                                               : named_context(base)) {
      base = context_image(*named, base, ins.args_where);
    }
    VarList env;
    VarList args;
    std::set<std::string> args_over_env;
    if (iequals(base, "scratch")) {
      stage.base_kind = BaseKind::kScratch;
    } else if (auto earlier = stage_by_name(base)) {
      stage.base_kind = BaseKind::kStage;
      stage.base_stage = *earlier;
      stage.base_known = plan_.stages[*earlier].base_known;
      stage.base_sets_shell = plan_.stages[*earlier].base_sets_shell;
      stage.dependencies.push_back(*earlier);
      if (!stage.platform_explicit)
        stage.platform = plan_.stages[*earlier].platform;
      env = from_env_list(plan_.stages[*earlier].env);
      if (*earlier < finished_args_.size())
        std::tie(args, args_over_env) = finished_args_[*earlier];
      // The stage's own ONBUILD instructions are its image's triggers: they run here, as a base
      // image's would (its base's triggers already ran in it and are not passed on).
      for (const StageOp& op : plan_.stages[*earlier].ops) {
        if (op.kind == InstructionKind::kOnbuild && !op.instruction->trigger.empty())
          pending_triggers_.push_back(&op.instruction->trigger.front());
      }
    } else {
      stage.base_kind = BaseKind::kImage;
      stage.base_image = base;
      stage.base_known = false;
      if (options_.base_image &&
          (!options_.resolve_stages || options_.resolve_stages->contains(stage.index))) {
        try {
          BaseImage info = options_.base_image(base, stage.platform);
          stage.base_known = info.known;
          stage.base_sets_shell = info.sets_shell;
          stage.base_platform = info.platform;
          stage.base_manifest = info.manifest;
          env = from_env_list(info.env);
          pending_triggers_ = parse_triggers(info.onbuild, base, ins.where);
        } catch (const InputError&) {
          throw;
        } catch (const Error& e) {
          throw InputError(ins.args_where, e.what());
        }
      }
    }
    if (!env.declared("PATH"))
      env.set("PATH", kDefaultPath);
    env_ = std::move(env);
    args_ = std::move(args);
    args_over_env_ = std::move(args_over_env);
    stage_used_.emplace_back();
    plan_.stages.push_back(std::move(stage));
    // The base image's ONBUILD triggers run first, as if written right after this FROM.
    for (const Instruction* trigger : std::exchange(pending_triggers_, {})) {
      add_op(*trigger);
      current().ops.back().from_onbuild = true;
      current().ops.back().where = ins.where;
    }
  }

  // Parses a base image's ONBUILD triggers; the parsed files are kept alive by the plan.
  std::vector<const Instruction*> parse_triggers(const std::vector<std::string>& triggers,
                                                 const std::string& image,
                                                 const SourceLocation& from) {
    std::vector<const Instruction*> parsed;
    for (const std::string& text : triggers) {
      auto file =
          std::make_shared<Containerfile>(parse_containerfile(text, "ONBUILD trigger of " + image));
      for (const Instruction& ins : file->instructions) {
        if (ins.kind == InstructionKind::kOnbuild || ins.kind == InstructionKind::kFrom ||
            ins.kind == InstructionKind::kMaintainer) {
          throw InputError(from, std::string(keyword_of(ins.kind)) +
                                     " isn't allowed as an ONBUILD trigger (in image " + image +
                                     ")");
        }
        parsed.push_back(&ins);
      }
      plan_.triggers.push_back(std::move(file));
    }
    return parsed;
  }

  // --- ops ----------------------------------------------------------------------------------

  std::map<std::string, std::string> visible_args() const {
    std::map<std::string, std::string> out;
    for (const auto& [name, value] : args_.items()) {
      if (value)
        out[name] = *value;
    }
    for (const auto& [name, value] : build_args_) {
      if (is_proxy_arg(name) && !out.contains(name))
        out[name] = value;
    }
    return out;
  }

  // A stage reference by name or index, or nullopt for an image. Numbers must be stage indexes.
  std::optional<size_t> resolve_stage_ref(const std::string& ref, const SourceLocation& where) {
    if (is_digits(ref)) {
      size_t index = std::stoul(ref);
      if (index >= file_stage_count()) {
        throw InputError(where, "invalid stage index " + ref + ": the Containerfile has " +
                                    std::to_string(file_stage_count()) + " stages (0-" +
                                    std::to_string(file_stage_count() - 1) + ")");
      }
      return index;
    }
    std::string lower = to_lower(ref);
    for (size_t i = stage_names_.size(); i-- > 0;) {
      if (!lower.empty() && stage_names_[i] == lower)
        return i;
    }
    return std::nullopt;
  }

  size_t file_stage_count() {
    if (stage_names_.empty()) {
      for (const Instruction& ins : file_.instructions) {
        if (ins.kind != InstructionKind::kFrom)
          continue;
        stage_names_.push_back(ins.args.size() == 3 ? to_lower(ins.args[2]) : "");
      }
    }
    return stage_names_.size();
  }

  void note_image_ref(const std::string& ref, const SourceLocation& where, const char* what) {
    if (ref.find_first_of(":/@") == std::string::npos) {
      plan_.warnings.push_back({where, std::string(what) + "=" + ref + ": no stage is named " +
                                           quote(ref) + ", so it is read as the image " + ref +
                                           ":latest"});
    }
  }

  void add_op(const Instruction& ins) {
    if (skipping_stage_)
      return;  // the stage was replaced by a --build-context
    file_stage_count();
    expanding_ = ins.kind;
    StageOp op;
    op.kind = ins.kind;
    op.instruction = &ins;
    op.where = ins.where;
    op.args = ins.args;
    op.json_form = ins.json_form;
    op.flags = ins.flags;
    op.heredocs = ins.heredocs;
    if (ins.kind == InstructionKind::kRun) {
      op.visible_args = visible_args();  // only RUN sees build args
      for (const std::string& name : args_over_env_) {
        if (op.visible_args.contains(name))
          op.args_over_env.insert(name);
      }
    }
    std::set<std::string>& used = stage_used_.back();

    switch (ins.kind) {
      case InstructionKind::kArg:
        for (const KeyValue& kv : ins.pairs) {
          std::optional<std::string> value = build_arg(kv.key, used);
          if (!value && kv.value)
            value = expand(*kv.value, kv.where);
          if (!value && global_.declared(kv.key))
            value = global_.get(kv.key);
          if (!value && is_platform_arg(kv.key))
            value = meta_lookup(kv.key);
          // Without a value, an ARG leaves what an earlier one (or the parent stage's) set.
          if (value || !args_.get(kv.key))
            args_.set(kv.key, value);
          if (value)
            args_over_env_.insert(kv.key);
          op.pairs.push_back({kv.key, value, kv.where});
        }
        break;
      case InstructionKind::kEnv: {
        std::vector<KeyValue> expanded;
        for (const KeyValue& kv : ins.pairs) {
          expanded.push_back(
              {expand(kv.key, kv.where), expand(kv.value.value_or(""), kv.where), kv.where});
        }
        for (const KeyValue& kv : expanded) {
          env_.set(kv.key, kv.value);
          args_over_env_.erase(kv.key);
        }
        op.pairs = std::move(expanded);
        break;
      }
      case InstructionKind::kLabel:
        for (const KeyValue& kv : ins.pairs) {
          op.pairs.push_back(
              {expand(kv.key, kv.where), expand(kv.value.value_or(""), kv.where), kv.where});
        }
        break;
      case InstructionKind::kAdd:
      case InstructionKind::kCopy:
        expand_file_op(ins, op);
        break;
      case InstructionKind::kRun:
        for (Flag& flag : op.flags) {
          if (flag.name != "mount")
            continue;
          flag.value = expand(*flag.value, flag.where);
          for (const std::string& field : split_unquoted(*flag.value, ',')) {
            if (!field.starts_with("from="))
              continue;
            std::string ref = field.substr(5);
            if (ref.empty())
              continue;
            if (auto stage = resolve_stage_ref(ref, flag.where)) {
              op.mount_stages.push_back(*stage);
            } else if (!named_context(ref)) {
              note_image_ref(ref, flag.where, "RUN --mount from");
            }
          }
        }
        break;
      case InstructionKind::kWorkdir:
      case InstructionKind::kUser:
      case InstructionKind::kStopsignal:
        op.args = {expand(ins.args[0], ins.args_where)};
        break;
      case InstructionKind::kExpose: {
        op.args.clear();
        for (const std::string& port : ins.args) {
          std::istringstream words(expand(port, ins.args_where));
          for (std::string w; words >> w;)
            op.args.push_back(w);
        }
        break;
      }
      case InstructionKind::kVolume:
        op.args.clear();
        for (const std::string& v : ins.args)
          op.args.push_back(expand(v, ins.args_where));
        break;
      default:
        break;
    }
    current().ops.push_back(std::move(op));
  }

  void expand_file_op(const Instruction& ins, StageOp& op) {
    for (std::string& arg : op.args)
      arg = expand(arg, ins.args_where);
    for (Flag& flag : op.flags) {
      if (!flag.value || flag.name == "link" || flag.name == "parents" ||
          flag.name == "keep-git-dir") {
        continue;
      }
      if (flag.name == "from" && flag.value->find('$') != std::string::npos) {
        throw InputError(flag.where,
                         "variable expansion is not supported for --from; define a stage with "
                         "FROM using an ARG from the global scope instead");
      }
      flag.value = expand(*flag.value, flag.where);
      if (flag.name != "from" || flag.value->empty())
        continue;  // empty: the build context
      if (auto stage = resolve_stage_ref(*flag.value, flag.where)) {
        if (*stage == current().index) {
          throw InputError(flag.where, "COPY --from=" + *flag.value +
                                           " refers to the stage it is in; a stage cannot copy "
                                           "from itself");
        }
        op.from_stage = *stage;
      } else if (const NamedContext* context = named_context(*flag.value)) {
        (context->local ? op.from_directory : op.from_image) = context->value;
      } else {
        note_image_ref(*flag.value, flag.where, "COPY --from");
        op.from_image = *flag.value;
      }
    }
    ShellLexer raw({.escape = file_.escape, .raw_quotes = true});
    for (Heredoc& doc : op.heredocs) {
      if (!doc.expand)
        continue;
      try {
        ExpandResult result = raw.expand_word_with_matches(
            doc.content, [this](std::string_view n) { return stage_lookup(n); });
        note_undefined(result.unmatched, doc.where, /*meta=*/false);
        doc.content = std::move(result.value);
      } catch (const ExpansionError& e) {
        throw InputError(doc.where, "cannot expand here-document " + doc.name + ": " + e.what());
      }
    }
  }

  void finish_dependencies(Stage& stage) {
    for (const StageOp& op : stage.ops) {
      if (op.from_stage)
        stage.dependencies.push_back(*op.from_stage);
      for (size_t s : op.mount_stages)
        stage.dependencies.push_back(s);
    }
    std::sort(stage.dependencies.begin(), stage.dependencies.end());
    stage.dependencies.erase(std::unique(stage.dependencies.begin(), stage.dependencies.end()),
                             stage.dependencies.end());
  }

  // --- target and order ---------------------------------------------------------------------

  void choose_target() {
    if (!options_.target) {
      plan_.target = plan_.stages.size() - 1;
      return;
    }
    if (auto index = stage_by_name(*options_.target)) {
      plan_.target = *index;
      return;
    }
    std::vector<std::string> names;
    for (const Stage& s : plan_.stages) {
      if (!s.name.empty())
        names.push_back(s.name);
    }
    throw Error("target stage " + quote(*options_.target) + " could not be found in " +
                file_.filename +
                (names.empty() ? std::string(" (it has no named stages)")
                               : " (stages: " + join(names, ", ") + ")"));
  }

  std::string stage_label(size_t index) const {
    const Stage& s = plan_.stages[index];
    return s.name.empty() ? "stage " + std::to_string(index) : s.name;
  }

  // Where stage `from` refers to stage `to`, for cycle messages.
  SourceLocation reference_site(size_t from, size_t to) const {
    const Stage& s = plan_.stages[from];
    for (const StageOp& op : s.ops) {
      if (op.from_stage == to)
        return op.where;
      if (std::find(op.mount_stages.begin(), op.mount_stages.end(), to) != op.mount_stages.end()) {
        return op.where;
      }
    }
    return s.where;
  }

  void order_stages() {
    enum class Mark { kNone, kActive, kDone };
    std::vector<Mark> marks(plan_.stages.size(), Mark::kNone);
    std::vector<size_t> path;
    std::function<void(size_t)> visit = [&](size_t index) {
      if (marks[index] == Mark::kDone)
        return;
      if (marks[index] == Mark::kActive) {
        auto start = std::find(path.begin(), path.end(), index);
        std::vector<std::string> names;
        for (auto it = start; it != path.end(); ++it)
          names.push_back(stage_label(*it));
        names.push_back(stage_label(index));
        throw InputError(reference_site(path.back(), index),
                         "circular dependency between stages: " + join(names, " -> "));
      }
      marks[index] = Mark::kActive;
      path.push_back(index);
      for (size_t dep : plan_.stages[index].dependencies)
        visit(dep);
      path.pop_back();
      marks[index] = Mark::kDone;
      plan_.order.push_back(index);
    };
    visit(plan_.target);
  }

  void warn_unused_build_args() {
    std::set<std::string> used = global_used_;
    for (size_t index : plan_.order)
      used.insert(stage_used_[index].begin(), stage_used_[index].end());
    for (const auto& [name, value] : build_args_) {
      // SOURCE_DATE_EPOCH sets the build's epoch (BuildKit) whether or not a stage reads it.
      // BUILDKIT_* arguments are settings (BUILDKIT_DOCKERFILE_CHECK), not the file's.
      if (used.contains(name) || is_predefined_arg(name) || name == "SOURCE_DATE_EPOCH" ||
          name.starts_with("BUILDKIT_"))
        continue;
      plan_.warnings.push_back({{file_.filename, 0, 0},
                                "build argument " + name + " was not consumed: no ARG " + name +
                                    " in the stages this build runs"});
    }
  }

  const Containerfile& file_;
  const BuildOptions& options_;
  ShellLexer lexer_;
  std::map<std::string, std::string> build_args_;
  std::vector<std::pair<std::string, std::string>> platform_args_;
  VarList global_;
  std::set<std::string> global_used_;
  VarList env_;   // the current stage's environment
  VarList args_;  // the current stage's declared ARGs
  // ARGs with a value set after an ENV (or base image variable) of the same name: they win in
  // expansions and in RUN's environment, while the image config keeps the ENV value.
  std::set<std::string> args_over_env_;
  // Each finished stage's ARGs and args_over_env_, by index, for stages FROM it.
  std::vector<std::pair<VarList, std::set<std::string>>> finished_args_;
  std::vector<std::set<std::string>> stage_used_;
  std::vector<std::string> stage_names_;  // every stage's name, for forward --from references
  std::vector<const Instruction*> pending_triggers_;
  InstructionKind expanding_ = InstructionKind::kArg;  // the instruction being expanded
  bool skipping_stage_ = false;  // the current stage is replaced by a --build-context
  BuildPlan plan_;
};

std::string describe_flags(const std::vector<Flag>& flags) {
  std::string out;
  for (const Flag& f : flags) {
    out += " --" + f.name;
    if (f.value)
      out += "=" + *f.value;
  }
  return out;
}

std::string describe_op(const StageOp& op) {
  std::string out = keyword_of(op.kind);
  out += describe_flags(op.flags);
  if (!op.pairs.empty()) {
    for (const KeyValue& kv : op.pairs) {
      out += " " + kv.key;
      if (kv.value)
        out += "=" + quote(*kv.value);
    }
  } else if (op.json_form) {
    nlohmann::json args = op.args;
    if (!op.instruction->health_type.empty())
      out += " " + op.instruction->health_type;
    out += " " + args.dump();
  } else {
    if (!op.instruction->health_type.empty())
      out += " " + op.instruction->health_type;
    for (const std::string& a : op.args)
      out += " " + a;
  }
  if (op.kind == InstructionKind::kOnbuild && !op.instruction->trigger.empty()) {
    out += " " + op.instruction->trigger.front().text;
  }
  for (const Heredoc& doc : op.heredocs) {
    out += "  [here-document " + doc.name + ": " + std::to_string(doc.content.size()) + " bytes]";
  }
  return out;
}

std::string describe_base(const Stage& s, const BuildPlan& plan) {
  switch (s.base_kind) {
    case BaseKind::kScratch:
      return "scratch";
    case BaseKind::kStage: {
      const Stage& base = plan.stages[*s.base_stage];
      return "stage " + std::to_string(base.index) +
             (base.name.empty() ? "" : " (" + base.name + ")");
    }
    case BaseKind::kImage:
      return "image " + s.base_image;
  }
  return "";
}

}  // namespace

bool is_predefined_arg(std::string_view name) {
  return is_proxy_arg(name) || is_platform_arg(name);
}

BuildPlan plan_build(const Containerfile& file, const BuildOptions& options) {
  if (!options.base_image || options.resolve_stages)
    return Planner(file, options).run();
  // Which stages the target needs does not depend on what the bases set, except through their
  // ONBUILD triggers: plan without looking bases up, then look up only the needed stages' bases,
  // and again if their triggers made more stages needed. A file that cannot be planned without
  // its bases' environment (${VAR:?} on an image's ENV) has every base looked up.
  BuildOptions bare = options;
  bare.base_image = nullptr;
  std::set<size_t> needed;
  try {
    BuildPlan first = Planner(file, bare).run();
    needed.insert(first.order.begin(), first.order.end());
  } catch (const Error&) {
    return Planner(file, options).run();
  }
  BuildOptions resolving = options;
  for (;;) {
    resolving.resolve_stages = needed;
    BuildPlan plan = Planner(file, resolving).run();
    size_t before = needed.size();
    needed.insert(plan.order.begin(), plan.order.end());
    if (needed.size() == before)
      return plan;
  }
}

std::string describe_plan(const BuildPlan& plan) {
  std::ostringstream out;
  const Stage& target = plan.stages[plan.target];
  out << "target: stage " << target.index << (target.name.empty() ? "" : " (" + target.name + ")")
      << "; " << plan.order.size() << " of " << plan.stages.size() << " stages needed\n";
  for (size_t index : plan.order) {
    const Stage& s = plan.stages[index];
    out << "\nstage " << s.index << (s.name.empty() ? "" : " (" + s.name + ")") << " from "
        << describe_base(s, plan) << " for " << s.platform.to_string() << "  ["
        << s.where.to_string() << "]\n";
    if (!s.dependencies.empty()) {
      std::vector<std::string> deps;
      for (size_t d : s.dependencies)
        deps.push_back(std::to_string(d));
      out << "  needs stages: " << join(deps, ", ") << "\n";
    }
    for (size_t i = 0; i < s.ops.size(); ++i) {
      out << "  " << (i + 1) << ". " << describe_op(s.ops[i]) << "\n";
    }
  }
  return out.str();
}

nlohmann::ordered_json plan_to_json(const BuildPlan& plan) {
  nlohmann::ordered_json out;
  out["target"] = plan.target;
  out["order"] = plan.order;
  out["global_args"] = plan.global_args;
  out["stages"] = nlohmann::ordered_json::array();
  for (const Stage& s : plan.stages) {
    nlohmann::ordered_json st;
    st["index"] = s.index;
    st["name"] = s.name;
    st["line"] = s.where.line;
    st["base"] = s.base_kind == BaseKind::kScratch ? "scratch"
                 : s.base_kind == BaseKind::kStage ? "stage"
                                                   : "image";
    if (s.base_stage)
      st["base_stage"] = *s.base_stage;
    if (!s.base_image.empty())
      st["base_image"] = s.base_image;
    st["platform"] = s.platform.to_string();
    st["dependencies"] = s.dependencies;
    st["env"] = s.env;
    st["ops"] = nlohmann::ordered_json::array();
    for (const StageOp& op : s.ops) {
      nlohmann::ordered_json o;
      o["name"] = keyword_of(op.kind);
      o["line"] = op.where.line;
      o["args"] = op.args;
      if (!op.flags.empty()) {
        nlohmann::ordered_json flags = nlohmann::ordered_json::object();
        for (const Flag& f : op.flags) {
          flags[f.name].push_back(f.value ? nlohmann::ordered_json(*f.value)
                                          : nlohmann::ordered_json(true));
        }
        o["flags"] = flags;
      }
      if (!op.pairs.empty()) {
        nlohmann::ordered_json pairs = nlohmann::ordered_json::array();
        for (const KeyValue& kv : op.pairs) {
          pairs.push_back({{"key", kv.key},
                           {"value", kv.value ? nlohmann::ordered_json(*kv.value)
                                              : nlohmann::ordered_json(nullptr)}});
        }
        o["pairs"] = pairs;
      }
      if (op.from_stage)
        o["from_stage"] = *op.from_stage;
      if (!op.from_image.empty())
        o["from_image"] = op.from_image;
      if (!op.from_directory.empty())
        o["from_directory"] = op.from_directory;
      if (!op.mount_stages.empty())
        o["mount_stages"] = op.mount_stages;
      o["visible_args"] = op.visible_args;
      st["ops"].push_back(std::move(o));
    }
    out["stages"].push_back(std::move(st));
  }
  out["warnings"] = nlohmann::ordered_json::array();
  for (const Warning& w : plan.warnings) {
    out["warnings"].push_back({{"line", w.where.line}, {"message", w.message}});
  }
  return out;
}

}  // namespace kiln::frontend
