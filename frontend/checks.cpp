#include "kiln/frontend/checks.hpp"

#include <algorithm>
#include <map>

#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/frontend/shell_lexer.hpp"
#include "kiln/oci/platform.hpp"
#include "kiln/oci/reference.hpp"

namespace kiln::frontend {
namespace {

const std::vector<CheckRule> kRules = {
    {"StageNameCasing", "Stage names should be lowercase",
     "write the stage name in lowercase (references to it are case-insensitive)"},
    {"FromAsCasing", "The 'as' keyword should match the case of the 'from' keyword",
     "write AS in the same case as FROM"},
    {"NoEmptyContinuation", "Empty continuation lines will become errors in a future release",
     "remove the empty line, or end the instruction before it"},
    {"ConsistentInstructionCasing",
     "All commands within the Dockerfile should use the same casing (either upper or lower)",
     "write every instruction keyword in the case most of the file uses"},
    {"DuplicateStageName", "Stage names should be unique",
     "rename one of the stages: references go to the last one of that name"},
    {"ReservedStageName", "Reserved words should not be used as stage names",
     "rename the stage: 'scratch' and 'context' have meanings of their own"},
    {"JSONArgsRecommended",
     "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS "
     "signals",
     "use the JSON form, e.g. CMD [\"app\", \"--flag\"], so the process gets signals directly"},
    {"MaintainerDeprecated",
     "The MAINTAINER instruction is deprecated, use a label instead to define an image author",
     "use LABEL org.opencontainers.image.authors=\"...\" instead"},
    {"UndefinedArgInFrom", "FROM command must use declared ARGs",
     "declare the variable with ARG before the first FROM"},
    {"WorkdirRelativePath",
     "Relative workdir without an absolute workdir declared within the build can have "
     "unexpected results if the base image changes",
     "use an absolute path, or set an absolute WORKDIR first"},
    {"UndefinedVar", "Variables should be defined before their use",
     "declare it with ARG or ENV in this stage before using it (global ARGs need an ARG line in "
     "the stage)"},
    {"MultipleInstructionsDisallowed",
     "Multiple instructions of the same type should not be used in the same stage",
     "remove the earlier instruction: only the last one takes effect"},
    {"LegacyKeyValueFormat", "Legacy key/value format with whitespace separator should not be used",
     "write NAME=value (quote the value if it has spaces)"},
    {"InvalidBaseImagePlatform", "Base image platform does not match expected target platform",
     "use an image built for the target platform, or set FROM --platform"},
    {"RedundantTargetPlatform",
     "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default "
     "behavior",
     "remove --platform=$TARGETPLATFORM: stages use the target platform by default"},
    {"SecretsUsedInArgOrEnv", "Sensitive data should not be used in the ARG or ENV commands",
     "pass secrets with --secret and RUN --mount=type=secret: ARG and ENV values stay in the "
     "image's history and config"},
    {"InvalidDefaultArgInFrom",
     "Default value for global ARG results in an empty or invalid base image name",
     "give the ARG a default that makes a valid image name"},
    {"FromPlatformFlagConstDisallowed", "FROM --platform flag should not use a constant value",
     "use a variable such as $BUILDPLATFORM, or name the stage after its platform"},
    {"CopyIgnoredFile", "Attempting to Copy file that is excluded by .dockerignore",
     "remove the path from the ignore file, or stop copying it"},
    {"InvalidDefinitionDescription",
     "Comment for build stage or argument should follow the format: `# <arg/stage name> "
     "<description>`. If this is not intended to be a description comment, add an empty line or "
     "comment between the instruction and the comment.",
     "start the comment with the stage or ARG name, or separate it with a bare # line", true},
    {"ExposeProtoCasing", "Protocol in EXPOSE instruction should be lowercase",
     "write the protocol in lowercase (tcp, udp, sctp)"},
    {"ExposeInvalidFormat",
     "IP address and host-port mapping should not be used in EXPOSE instruction. This will "
     "become an error in a future release",
     "EXPOSE only the container port; publish host ports when running the container"},
};

// Rules whose findings concern the whole file: a `# check=` comment above one instruction does
// not silence them (as in BuildKit).
bool file_wide(std::string_view rule) {
  return rule == "ConsistentInstructionCasing" || rule == "DuplicateStageName" ||
         rule == "ReservedStageName" || rule == "InvalidDefaultArgInFrom" ||
         rule == "NoEmptyContinuation" || rule == "InvalidBaseImagePlatform";
}

bool parse_bool(std::string_view text, bool& out) {
  static const std::vector<std::string> kTrue = {"1", "t", "T", "TRUE", "true", "True"};
  static const std::vector<std::string> kFalse = {"0", "f", "F", "FALSE", "false", "False"};
  if (std::find(kTrue.begin(), kTrue.end(), text) != kTrue.end())
    return out = true, true;
  if (std::find(kFalse.begin(), kFalse.end(), text) != kFalse.end())
    return out = false, true;
  return false;
}

bool all_lower(std::string_view s) {
  return to_lower(s) == s;
}
bool all_upper(std::string_view s) {
  return to_upper(s) == s;
}

// The closest defined name within two edits (BuildKit's suggestion), or "".
std::string suggestion(const std::string& name, const std::vector<std::string>& defined) {
  std::string best;
  size_t best_distance = 3;
  for (const std::string& candidate : defined) {
    size_t d = edit_distance(name, candidate);
    if (d > 0 && d < best_distance) {
      best = candidate;
      best_distance = d;
    }
  }
  return best;
}

}  // namespace

bool looks_like_secret_name(std::string_view key) {
  static const std::set<std::string> kDeny = {"apikey", "auth",     "credential", "credentials",
                                              "key",    "password", "pword",      "passwd",
                                              "secret", "token"};
  static const std::set<std::string> kAllow = {"public", "file", "version"};
  bool deny = false;
  for (const std::string& word : split(to_lower(key), '_')) {
    if (kAllow.contains(word))
      return false;
    deny = deny || kDeny.contains(word);
  }
  return deny;
}

namespace {

// The `check=` settings of a comment right above an instruction, if it has one that parses.
std::optional<CheckConfig> comment_config(const Instruction& ins) {
  for (const std::string& comment : ins.comments) {
    size_t eq = comment.find('=');
    if (eq == std::string::npos || !iequals(trim(std::string_view(comment).substr(0, eq)), "check"))
      continue;
    try {
      return parse_check_config(trim(std::string_view(comment).substr(eq + 1)));
    } catch (const Error&) {
      return std::nullopt;  // as BuildKit: a malformed comment is only a comment
    }
  }
  return std::nullopt;
}

class Checker {
 public:
  Checker(const Containerfile& file, const BuildPlan& plan, const CheckOptions& options)
      : file_(file), plan_(plan), options_(options) {}

  CheckReport run() {
    report_.config = file_config();
    for (const Warning& w : file_.warnings)
      from_warning(w);
    for (const Warning& w : plan_.warnings)
      from_warning(w);
    file_rules();
    for (const Stage& stage : plan_.stages) {
      if (!options_.stages || options_.stages->contains(stage.index))
        stage_rules(stage);
    }
    undefined_vars();
    keep_enabled();
    std::stable_sort(report_.findings.begin(), report_.findings.end(),
                     [](const CheckFinding& a, const CheckFinding& b) {
                       return std::tie(a.where.line, a.where.column) <
                              std::tie(b.where.line, b.where.column);
                     });
    return std::move(report_);
  }

 private:
  CheckConfig file_config() const {
    if (options_.config_override) {
      try {
        return parse_check_config(*options_.config_override);
      } catch (const Error& e) {
        throw Error(std::string("failed to parse BUILDKIT_DOCKERFILE_CHECK: ") + e.what());
      }
    }
    for (const Directive& d : file_.directives) {
      if (d.name != "check")
        continue;
      try {
        return parse_check_config(d.value);
      } catch (const Error& e) {
        throw InputError(d.where, std::string("failed to parse check options: ") + e.what());
      }
    }
    return {};
  }

  void add(std::string_view rule, const SourceLocation& where, int end_line, std::string message) {
    CheckFinding f;
    f.rule = find_check_rule(rule);
    f.where = where;
    f.end_line = std::max(end_line, where.line);
    f.message = std::move(message);
    report_.findings.push_back(std::move(f));
  }
  void add(std::string_view rule, const Instruction& ins, std::string message) {
    add(rule, ins.where, ins.end_line, std::move(message));
  }

  void from_warning(const Warning& w) {
    if (!w.rule.empty() && find_check_rule(w.rule))
      add(w.rule, w.where, w.where.line, w.message);
  }

  // --- rules over the whole file ---------------------------------------------------------------

  void file_rules() {
    size_t lower = 0, upper = 0;
    std::vector<const Instruction*> counted;
    bool in_stages = false;
    std::map<std::string, std::string>
        defaults;  // global ARG defaults, for InvalidDefaultArgInFrom
    for (const Instruction& ins : file_.instructions) {
      in_stages = in_stages || ins.kind == InstructionKind::kFrom;
      if (!in_stages) {
        if (ins.kind == InstructionKind::kArg)
          global_defaults(ins, defaults);
        description_rule(ins);
        continue;
      }
      counted.push_back(&ins);
      if (all_lower(ins.keyword))
        ++lower;
      else if (all_upper(ins.keyword))
        ++upper;
      switch (ins.kind) {
        case InstructionKind::kFrom:
          from_rules(ins, defaults);
          break;
        case InstructionKind::kMaintainer:
          add("MaintainerDeprecated", ins,
              "Maintainer instruction is deprecated in favor of using label");
          break;
        default:
          break;
      }
      description_rule(ins);
    }
    bool majority_lower = lower > upper;
    for (const Instruction* ins : counted) {
      if (majority_lower ? !all_lower(ins->keyword) : !all_upper(ins->keyword)) {
        add("ConsistentInstructionCasing", *ins,
            "Command '" + ins->keyword + "' should match the case of the command majority (" +
                (majority_lower ? "lowercase" : "uppercase") + ")");
      }
    }
  }

  void global_defaults(const Instruction& ins, std::map<std::string, std::string>& defaults) {
    ShellLexer lexer({.escape = file_.escape});
    for (const KeyValue& kv : ins.pairs) {
      std::string value;
      if (kv.value) {
        try {
          value =
              lexer.expand_word(*kv.value, [&](std::string_view n) -> std::optional<std::string> {
                auto it = defaults.find(std::string(n));
                return it == defaults.end() ? std::nullopt : std::optional(it->second);
              });
        } catch (const ExpansionError&) {
          continue;
        }
      }
      defaults[kv.key] = value;
    }
  }

  void from_rules(const Instruction& ins, const std::map<std::string, std::string>& defaults) {
    if (ins.args.size() == 3) {
      const std::string& name = ins.args[2];
      if (!all_lower(name))
        add("StageNameCasing", ins, "Stage name '" + name + "' should be lowercase");
      const std::string& as = ins.args[1];
      if ((all_lower(ins.keyword) && !all_lower(as)) || (all_upper(ins.keyword) && !all_upper(as)))
        add("FromAsCasing", ins,
            "'" + as + "' and '" + ins.keyword + "' keywords' casing do not match");
      std::string lower = to_lower(name);
      if (lower == "scratch" || lower == "context") {
        add("ReservedStageName", ins,
            "Stage name should not use the same name as reserved stage \"" + lower + "\"");
      }
    }
    if (const Flag* platform = ins.find_flag("platform"); platform && platform->value) {
      const std::string& raw = *platform->value;
      if (raw == "$TARGETPLATFORM" || raw == "${TARGETPLATFORM}") {
        add("RedundantTargetPlatform", ins,
            "Setting platform to predefined " + raw +
                " in FROM is redundant as this is the default behavior");
      } else if (raw.find('$') == std::string::npos) {
        try {
          oci::Platform p = oci::parse_platform(raw);
          std::string stage = ins.args.size() == 3 ? to_lower(ins.args[2]) : "";
          if (stage.find(p.os) == std::string::npos &&
              stage.find(p.architecture) == std::string::npos) {
            add("FromPlatformFlagConstDisallowed", ins,
                "FROM --platform flag should not use constant value \"" + raw + "\"");
          }
        } catch (const Error&) {
          // A malformed platform is the build's error, not a check's.
        }
      }
    }
    if (!ins.args.empty() && ins.args[0].find('$') != std::string::npos) {
      std::string base;
      try {
        ShellLexer lexer({.escape = file_.escape});
        base =
            lexer.expand_word(ins.args[0], [&](std::string_view n) -> std::optional<std::string> {
              auto it = defaults.find(std::string(n));
              if (it != defaults.end())
                return it->second;
              oci::Platform host = oci::host_platform();
              if (n == "TARGETPLATFORM" || n == "BUILDPLATFORM")
                return host.to_string();
              if (n == "TARGETOS" || n == "BUILDOS")
                return host.os;
              if (n == "TARGETARCH" || n == "BUILDARCH")
                return host.architecture;
              return std::nullopt;
            });
      } catch (const ExpansionError&) {
        return;
      }
      if (base.empty() || (!iequals(base, "scratch") && !oci::try_parse_reference(base))) {
        add("InvalidDefaultArgInFrom", ins,
            "Default value for ARG " + ins.args[0] +
                " results in empty or invalid base image name");
      }
    }
  }

  void description_rule(const Instruction& ins) {
    if (ins.comments.empty())
      return;
    std::vector<std::string> keys;
    std::string shown;
    const char* what = nullptr;
    if (ins.kind == InstructionKind::kFrom && ins.args.size() == 3) {
      what = "FROM";
      keys = {to_lower(ins.args[2])};
      shown = keys.front();
    } else if (ins.kind == InstructionKind::kArg && !ins.pairs.empty()) {
      what = "ARG";
      for (const KeyValue& kv : ins.pairs)
        keys.push_back(kv.key);
      shown = keys.size() == 1 ? keys.front() : "<arg_key>";
    } else {
      return;
    }
    std::string first = ins.comments.back().substr(0, ins.comments.back().find(' '));
    if (std::find(keys.begin(), keys.end(), first) == keys.end()) {
      add("InvalidDefinitionDescription", ins,
          std::string("Comment for ") + what + " should follow the format: `# " + shown +
              " <description>`");
    }
  }

  // --- rules over the stages checked ---------------------------------------------------------

  struct ChainState {
    bool shell = false;    // a Shell is set (base image config or SHELL)
    bool workdir = false;  // a WORKDIR ran
  };

  void stage_rules(const Stage& stage) {
    ChainState state;
    if (stage.base_kind == BaseKind::kStage && stage.base_stage &&
        chain_.count(*stage.base_stage)) {
      state = chain_[*stage.base_stage];
    } else if (stage.base_kind == BaseKind::kImage) {
      state.shell = stage.base_sets_shell;
      if (stage.base_platform &&
          (stage.base_platform->os != stage.platform.os ||
           stage.base_platform->architecture != stage.platform.architecture)) {
        add("InvalidBaseImagePlatform", stage.where, stage.where.line,
            "Base image " + stage.base_image + " was pulled with platform \"" +
                stage.base_platform->to_string() + "\", expected \"" + stage.platform.to_string() +
                "\" for current build");
      }
    }
    std::map<InstructionKind, const Instruction*> last_of;
    for (const StageOp& op : stage.ops) {
      if (op.from_onbuild || !op.instruction)
        continue;
      const Instruction& ins = *op.instruction;
      switch (op.kind) {
        case InstructionKind::kShell:
          state.shell = true;
          break;
        case InstructionKind::kCmd:
        case InstructionKind::kEntrypoint:
          if (!op.json_form && !state.shell) {
            add("JSONArgsRecommended", ins,
                "JSON arguments recommended for " + ins.keyword +
                    " to prevent unintended behavior related to OS signals");
          }
          [[fallthrough]];
        case InstructionKind::kHealthcheck:
          if (auto it = last_of.find(op.kind); it != last_of.end()) {
            add("MultipleInstructionsDisallowed", *it->second,
                "Multiple " + ins.keyword +
                    " instructions should not be used in the same stage because only the last "
                    "one will be used");
          }
          last_of[op.kind] = &ins;
          break;
        case InstructionKind::kWorkdir:
          if (!state.workdir && !op.args.empty() && !op.args[0].starts_with("/")) {
            add("WorkdirRelativePath", ins,
                "Relative workdir \"" + op.args[0] +
                    "\" can have unexpected results if the base image changes");
          }
          state.workdir = true;
          break;
        case InstructionKind::kEnv:
        case InstructionKind::kLabel:
          for (const KeyValue& kv : ins.pairs) {
            if (kv.legacy) {
              add("LegacyKeyValueFormat", ins,
                  "\"" + ins.keyword + " key=value\" should be used instead of legacy \"" +
                      ins.keyword + " key value\" format");
            }
          }
          if (op.kind == InstructionKind::kEnv) {
            for (const KeyValue& kv : op.pairs)
              secret_rule("ENV", kv.key, ins);
          }
          break;
        case InstructionKind::kArg:
          for (const KeyValue& kv : ins.pairs)
            secret_rule("ARG", kv.key, ins);
          break;
        case InstructionKind::kExpose:
          for (const std::string& port : op.args) {
            if (port.find(':') != std::string::npos) {
              add("ExposeInvalidFormat", ins,
                  "EXPOSE instruction should not define an IP address or host-port mapping, "
                  "found '" +
                      port + "'");
            } else if (size_t slash = port.find('/');
                       slash != std::string::npos && !all_lower(port.substr(slash + 1))) {
              add("ExposeProtoCasing", ins,
                  "Defined protocol '" + port + "' in EXPOSE instruction should be lowercase");
            }
          }
          break;
        case InstructionKind::kCopy:
        case InstructionKind::kAdd:
          ignored_file_rule(op, ins);
          break;
        default:
          break;
      }
    }
    chain_[stage.index] = state;
  }

  void secret_rule(const char* what, const std::string& key, const Instruction& ins) {
    if (looks_like_secret_name(key)) {
      add("SecretsUsedInArgOrEnv", ins,
          std::string("Do not use ARG or ENV instructions for sensitive data (") + what + " \"" +
              key + "\")");
    }
  }

  void ignored_file_rule(const StageOp& op, const Instruction& ins) {
    const IgnoreMatcher* ignore = options_.ignore;
    if (!ignore || ignore->empty() || ignore->has_exclusions() || op.args.size() < 2)
      return;
    if (std::any_of(op.flags.begin(), op.flags.end(),
                    [](const Flag& f) { return f.name == "from"; }))
      return;
    for (size_t i = 0; i + 1 < op.args.size(); ++i) {
      const std::string& source = op.args[i];
      if (source.starts_with("<<") || source.find("://") != std::string::npos ||
          source.starts_with("git@"))
        continue;
      std::string clean = clean_path(source);
      bool excluded = false;
      if (clean == "." || clean == "/") {
        for (const IgnorePattern& p : ignore->patterns())
          excluded = excluded || p.text == "*" || p.text == "**" || p.text == "**/*";
      } else {
        excluded = ignore->excluded(clean);
      }
      if (excluded) {
        add("CopyIgnoredFile", ins,
            std::string("Attempting to ") + (op.kind == InstructionKind::kAdd ? "Add" : "Copy") +
                " file \"" + clean + "\" that is excluded by " + options_.ignore_file_name);
      }
    }
  }

  void undefined_vars() {
    std::set<std::pair<int, std::string>> seen;
    std::set<size_t> unknown_bases;
    for (const UndefinedVar& u : plan_.undefined_vars) {
      if (!seen.insert({u.where.line, u.name}).second)
        continue;
      std::string hint = suggestion(u.name, u.defined);
      if (!u.stage) {
        if (u.instruction == InstructionKind::kFrom) {
          add("UndefinedArgInFrom", u.where, u.where.line,
              "FROM argument '" + u.name + "' is not declared" +
                  (hint.empty() ? "" : " (did you mean " + hint + "?)"));
        }
        continue;
      }
      if (options_.stages && !options_.stages->contains(*u.stage))
        continue;
      if (u.instruction == InstructionKind::kExpose || u.instruction == InstructionKind::kFrom)
        continue;
      const Stage& stage = plan_.stages.at(*u.stage);
      if (!stage.base_known) {
        unknown_bases.insert(stage.index);
        continue;
      }
      add("UndefinedVar", u.where, u.where.line,
          "Usage of undefined variable '$" + u.name + "'" +
              (hint.empty() ? "" : " (did you mean $" + hint + "?)"));
    }
    for (size_t index : unknown_bases) {
      const Stage& stage = plan_.stages.at(index);
      report_.notes.push_back(stage.where.file + ":" + std::to_string(stage.where.line) +
                              ": UndefinedVar not checked in stage " +
                              (stage.name.empty() ? std::to_string(index) : stage.name) +
                              ": the environment of its base image " + stage.base_image +
                              " is unknown (it is not in the store)");
    }
  }

  // --- settings --------------------------------------------------------------------------------

  static bool enabled(const CheckConfig& config, const CheckRule& rule) {
    if (rule.experimental)
      return config.experimental_all || config.experimental.contains(rule.name);
    return !config.skip_all && !config.skip.contains(rule.name);
  }

  // The instruction a line belongs to, for its `# check=` comment.
  const Instruction* instruction_at(int line) const {
    for (const Instruction& ins : file_.instructions) {
      if (ins.where.line <= line && line <= std::max(ins.end_line, ins.where.line))
        return &ins;
    }
    return nullptr;
  }

  void keep_enabled() {
    std::erase_if(report_.findings, [&](const CheckFinding& f) {
      if (!f.rule || !enabled(report_.config, *f.rule))
        return true;
      if (file_wide(f.rule->name))
        return false;
      const Instruction* ins = instruction_at(f.where.line);
      std::optional<CheckConfig> local = ins ? comment_config(*ins) : std::nullopt;
      if (!local)
        return false;
      CheckConfig merged = report_.config;
      merged.skip_all = merged.skip_all || local->skip_all;
      merged.skip.insert(local->skip.begin(), local->skip.end());
      merged.experimental_all = merged.experimental_all || local->experimental_all;
      merged.experimental.insert(local->experimental.begin(), local->experimental.end());
      return !enabled(merged, *f.rule);
    });
  }

  const Containerfile& file_;
  const BuildPlan& plan_;
  const CheckOptions& options_;
  CheckReport report_;
  std::map<size_t, ChainState> chain_;  // each stage's state at its end
};

}  // namespace

CheckConfig parse_check_config(std::string_view value) {
  CheckConfig config;
  std::string_view text = trim(value);
  text = text.substr(0, text.find(' '));  // "skip=X // why": the rest is a comment
  if (text.empty())
    return config;
  std::vector<std::string> parts;
  for (size_t start = 0; parts.size() < 3;) {
    size_t semi = parts.size() == 2 ? std::string_view::npos : text.find(';', start);
    parts.emplace_back(
        text.substr(start, semi == std::string_view::npos ? text.npos : semi - start));
    if (semi == std::string_view::npos)
      break;
    start = semi + 1;
  }
  for (const std::string& part : parts) {
    size_t eq = part.find('=');
    if (eq == std::string::npos)
      throw Error("invalid check option " + quote(part));
    std::string key(trim(std::string_view(part).substr(0, eq)));
    std::string_view val = std::string_view(part).substr(eq + 1);
    if (key == "skip" || key == "experimental") {
      bool& all = key == "skip" ? config.skip_all : config.experimental_all;
      std::set<std::string>& names = key == "skip" ? config.skip : config.experimental;
      if (trim(val) == "all") {
        all = true;
        continue;
      }
      for (const std::string& name : split(val, ',')) {
        if (!trim(name).empty())
          names.insert(std::string(trim(name)));
      }
    } else if (key == "error") {
      if (!parse_bool(trim(val), config.error))
        throw Error("failed to parse check option " + quote(part));
    } else {
      throw Error("invalid check option " + quote(key));
    }
  }
  return config;
}

const std::vector<CheckRule>& check_rules() {
  return kRules;
}

const CheckRule* find_check_rule(std::string_view name) {
  for (const CheckRule& rule : kRules) {
    if (name == rule.name)
      return &rule;
  }
  return nullptr;
}

std::string check_rule_url(const CheckRule& rule) {
  // CamelCase → kebab-case, as BuildKit's documentation names its pages.
  std::string slug;
  std::string_view name = rule.name;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool upper = c >= 'A' && c <= 'Z';
    bool next_lower = i + 1 < name.size() && name[i + 1] >= 'a' && name[i + 1] <= 'z';
    bool prev_lower = i > 0 && !(name[i - 1] >= 'A' && name[i - 1] <= 'Z');
    if (upper && i > 0 && (prev_lower || next_lower))
      slug += '-';
    slug += static_cast<char>(upper ? c - 'A' + 'a' : c);
  }
  return "https://docs.docker.com/go/dockerfile/rule/" + slug + "/";
}

CheckReport run_checks(const Containerfile& file, const BuildPlan& plan,
                       const CheckOptions& options) {
  return Checker(file, plan, options).run();
}

std::string format_finding(const CheckFinding& f) {
  std::string out = f.where.to_string() + ": warning: " + f.rule->name + ": " + f.message;
  out += "\n  fix: ";
  out += f.rule->fix;
  return out;
}

}  // namespace kiln::frontend
