#include "kiln/frontend/outline.hpp"

#include <algorithm>
#include <map>
#include <set>

#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/frontend/shell_lexer.hpp"
#include "run_mount.hpp"

namespace kiln::frontend {
namespace {

using Json = nlohmann::ordered_json;

// Rows in columns separated by at least `padding` spaces (Go's tabwriter as buildx uses it);
// the last column is not padded.
std::string columns(const std::vector<std::vector<std::string>>& rows, size_t padding) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      widths.resize(std::max(widths.size(), row.size()));
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size())
        line += std::string(widths[i] - row[i].size() + padding, ' ');
    }
    out += std::string(trim_right(line)) + "\n";
  }
  return out;
}

// The global ARG instructions (before the first FROM), by name: the last one declaring it.
std::map<std::string, std::pair<const Instruction*, const KeyValue*>> global_args(
    const Containerfile& file) {
  std::map<std::string, std::pair<const Instruction*, const KeyValue*>> out;
  for (const Instruction& ins : file.instructions) {
    if (ins.kind == InstructionKind::kFrom)
      break;
    for (const KeyValue& kv : ins.pairs)
      out[kv.key] = {&ins, &kv};
  }
  return out;
}

// The variable names a word refers to.
std::set<std::string> references(std::string_view word, char escape) {
  ShellLexer lexer({.escape = escape});
  try {
    return lexer.expand_word_with_matches(word, [](std::string_view) { return std::string(); })
        .matched;
  } catch (const ExpansionError&) {
    return {};
  }
}

}  // namespace

std::string doc_comment(const std::vector<std::string>& comments, const std::string& name) {
  if (name.empty())
    return {};
  for (const std::string& line : comments) {
    if (line.starts_with(name + " "))
      return line.substr(name.size() + 1);
  }
  return {};
}

Outline make_outline(const Containerfile& file, const BuildPlan& plan) {
  Outline out;
  const Stage& target = plan.stages.at(plan.target);
  out.name = target.name;
  if (target.where.line > 0) {
    for (const Instruction& ins : file.instructions) {
      if (ins.kind == InstructionKind::kFrom && ins.where == target.where)
        out.description = doc_comment(ins.comments, target.name);
    }
  }
  auto globals = global_args(file);
  std::map<std::string, std::string> global_values;
  for (const std::string& entry : plan.global_args) {
    size_t eq = entry.find('=');
    global_values[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  std::set<std::string> seen;
  auto add_global = [&](const std::string& name, auto& self) -> void {
    auto it = globals.find(name);
    if (it == globals.end() || !seen.insert(name).second)
      return;
    const auto& [ins, kv] = it->second;
    OutlineArg arg{name, doc_comment(ins->comments, name), std::nullopt, ins->where};
    if (auto v = global_values.find(name); v != global_values.end())
      arg.value = v->second;
    out.args.push_back(std::move(arg));
    // The global ARGs its default reads are needed too.
    if (kv->value) {
      for (const std::string& ref : references(*kv->value, file.escape))
        self(ref, self);
    }
  };
  std::set<std::string> secrets, ssh;
  for (size_t index : plan.order) {
    const Stage& stage = plan.stages.at(index);
    for (const Instruction& ins : file.instructions) {
      if (ins.kind != InstructionKind::kFrom || !(ins.where == stage.where))
        continue;
      std::vector<std::string> words;
      if (!ins.args.empty())
        words.push_back(ins.args[0]);
      if (const Flag* platform = ins.find_flag("platform"); platform && platform->value)
        words.push_back(*platform->value);
      for (const std::string& word : words) {
        for (const std::string& ref : references(word, file.escape))
          add_global(ref, add_global);
      }
    }
    for (const StageOp& op : stage.ops) {
      if (op.kind == InstructionKind::kArg && !op.from_onbuild) {
        for (const KeyValue& kv : op.pairs) {
          if (globals.contains(kv.key) && !op.instruction->pairs.empty() &&
              std::any_of(op.instruction->pairs.begin(), op.instruction->pairs.end(),
                          [&](const KeyValue& own) { return own.key == kv.key && !own.value; })) {
            add_global(kv.key, add_global);  // `ARG X` taking the global's default
            continue;
          }
          if (!seen.insert(kv.key).second)
            continue;
          out.args.push_back(
              {kv.key, doc_comment(op.instruction->comments, kv.key), kv.value, op.where});
        }
      }
      if (op.kind != InstructionKind::kRun)
        continue;
      for (const Flag& flag : op.flags) {
        if (flag.name != "mount" || !flag.value)
          continue;
        MountSpec spec;
        try {
          spec = parse_run_mount(*flag.value);
        } catch (const InputError&) {
          throw;
        } catch (const Error& e) {
          throw InputError(flag.where, std::string("--mount: ") + e.what());
        }
        const Mount& m = spec.mount;
        if (m.type == Mount::Type::kSecret && secrets.insert(m.id).second)
          out.secrets.push_back({m.id, m.required, op.where});
        if (m.type == Mount::Type::kSsh) {
          std::string id = m.id.empty() ? "default" : m.id;
          if (ssh.insert(id).second)
            out.ssh.push_back({id, m.required, op.where});
        }
      }
    }
  }
  auto by_line = [](const auto& a, const auto& b) { return a.where.line < b.where.line; };
  std::stable_sort(out.args.begin(), out.args.end(), by_line);
  std::stable_sort(out.secrets.begin(), out.secrets.end(), by_line);
  std::stable_sort(out.ssh.begin(), out.ssh.end(), by_line);
  return out;
}

Json location_json(int first_line, int last_line) {
  Json ranges = Json::array();
  ranges.push_back({{"start", {{"line", first_line}}}, {"end", {{"line", last_line}}}});
  return {{"ranges", ranges}};
}

Json outline_to_json(const Outline& o) {
  Json j = Json::object();
  if (!o.name.empty())
    j["name"] = o.name;
  if (!o.description.empty())
    j["description"] = o.description;
  auto uses = [](const std::vector<OutlineUse>& list) {
    Json a = Json::array();
    for (const OutlineUse& u : list) {
      Json e{{"name", u.name}};
      if (u.required)
        e["required"] = true;
      e["location"] = location_json(u.where.line, u.where.line);
      a.push_back(std::move(e));
    }
    return a;
  };
  if (!o.args.empty()) {
    j["args"] = Json::array();
    for (const OutlineArg& a : o.args) {
      Json e{{"name", a.name}};
      if (!a.description.empty())
        e["description"] = a.description;
      if (a.value && !a.value->empty())
        e["value"] = *a.value;
      e["location"] = location_json(a.where.line, a.where.line);
      j["args"].push_back(std::move(e));
    }
  }
  if (!o.secrets.empty())
    j["secrets"] = uses(o.secrets);
  if (!o.ssh.empty())
    j["ssh"] = uses(o.ssh);
  return j;
}

std::string outline_text(const Outline& o) {
  std::string out;
  if (!o.name.empty() || !o.description.empty()) {
    std::vector<std::vector<std::string>> head = {
        {"TARGET:", o.name.empty() ? "(default)" : o.name}};
    if (!o.description.empty())
      head.push_back({"DESCRIPTION:", o.description});
    out += columns(head, 1) + "\n";
  }
  if (!o.args.empty()) {
    std::vector<std::vector<std::string>> rows = {{"BUILD ARG", "VALUE", "DESCRIPTION"}};
    for (const OutlineArg& a : o.args)
      rows.push_back({a.name, a.value.value_or(""), a.description});
    out += columns(rows, 3) + "\n";
  }
  for (const auto& [title, list] : {std::pair{"SECRET", &o.secrets}, std::pair{"SSH", &o.ssh}}) {
    if (list->empty())
      continue;
    std::vector<std::vector<std::string>> rows = {{title, "REQUIRED"}};
    for (const OutlineUse& u : *list)
      rows.push_back({u.name, u.required ? "true" : ""});
    out += columns(rows, 3) + "\n";
  }
  return out;
}

std::vector<TargetInfo> list_targets(const Containerfile& file) {
  std::vector<TargetInfo> out;
  for (const Instruction& ins : file.instructions) {
    if (ins.kind != InstructionKind::kFrom)
      continue;
    TargetInfo t;
    t.name = ins.args.size() == 3 ? to_lower(ins.args[2]) : "";
    t.description = doc_comment(ins.comments, t.name);
    t.base = ins.args.empty() ? "" : ins.args[0];
    if (const Flag* platform = ins.find_flag("platform"); platform && platform->value)
      t.platform = *platform->value;
    t.where = ins.where;
    out.push_back(std::move(t));
  }
  if (!out.empty())
    out.back().is_default = true;
  return out;
}

Json targets_to_json(const std::vector<TargetInfo>& targets) {
  Json list = Json::array();
  for (const TargetInfo& t : targets) {
    Json e = Json::object();
    if (!t.name.empty())
      e["name"] = t.name;
    if (t.is_default)
      e["default"] = true;
    if (!t.description.empty())
      e["description"] = t.description;
    if (!t.base.empty())
      e["base"] = t.base;
    if (!t.platform.empty())
      e["platform"] = t.platform;
    e["location"] = location_json(t.where.line, t.where.line);
    list.push_back(std::move(e));
  }
  return {{"targets", list}};
}

std::string targets_text(const std::vector<TargetInfo>& targets) {
  std::vector<std::vector<std::string>> rows = {{"TARGET", "DESCRIPTION"}};
  for (const TargetInfo& t : targets) {
    std::string name = t.name;
    if (t.is_default)
      name = name.empty() ? "(default)" : name + " (default)";
    rows.push_back({name, t.description});
  }
  return columns(rows, 1);
}

}  // namespace kiln::frontend
