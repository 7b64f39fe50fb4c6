#include "explain.hpp"

#include <algorithm>
#include <set>

#include "kiln/oci/digest.hpp"

namespace kiln::solver {
namespace {

using Json = nlohmann::json;

std::string short_digest(const std::string& value) {
  // "image REF@sha256:HEX" and "stage KEY" read better cut to 12 hex digits.
  size_t at = value.rfind("sha256:");
  if (at != std::string::npos && value.size() > at + 7 + 12)
    return value.substr(0, at + 7 + 12);
  return value;
}

// The name of the first path whose line differs between two sorted listings, and how.
std::optional<std::string> listing_change(const Json& before, const Json& now) {
  // An empty listing is one that was too long to keep (or a copy of nothing): no names then.
  if (!before.is_array() || !now.is_array() || before.empty() || now.empty())
    return std::nullopt;
  auto split = [](const Json& line) {
    std::string s = line.is_string() ? line.get<std::string>() : std::string();
    size_t tab = s.rfind('\t');
    return tab == std::string::npos ? std::make_pair(s, std::string())
                                    : std::make_pair(s.substr(0, tab), s.substr(tab + 1));
  };
  size_t i = 0, j = 0;
  while (i < before.size() || j < now.size()) {
    if (i == before.size())
      return split(now[j]).first + " added";
    if (j == now.size())
      return split(before[i]).first + " removed";
    auto [old_path, old_hash] = split(before[i]);
    auto [new_path, new_hash] = split(now[j]);
    if (old_path == new_path) {
      if (old_hash != new_hash)
        return new_path + " changed";
      ++i, ++j;
    } else if (old_path < new_path) {
      return old_path + " removed";
    } else {
      return new_path + " added";
    }
  }
  return std::nullopt;
}

StepExplanation because(std::string cause, std::string text) {
  return {{}, std::move(cause), std::move(text)};
}

// The op's own definition: build args first (by name), then ENV/LABEL pairs, then the rest.
std::optional<StepExplanation> definition_change(const Json& before, const Json& now) {
  if (!before.is_object() || !now.is_object())
    return because("instruction", "the instruction changed");
  if (before.value("kind", "") != now.value("kind", ""))
    return because("instruction", "a different instruction is at this place now");
  const Json& old_args = before.contains("build_args") ? before["build_args"] : Json::object();
  const Json& new_args = now.contains("build_args") ? now["build_args"] : Json::object();
  if (old_args != new_args && old_args.is_object() && new_args.is_object()) {
    std::set<std::string> names;
    for (const auto& [name, value] : old_args.items())
      names.insert(name);
    for (const auto& [name, value] : new_args.items())
      names.insert(name);
    for (const std::string& name : names) {
      if (!old_args.contains(name))
        return because("arg", "build arg " + name + " is new to this step");
      if (!new_args.contains(name))
        return because("arg", "build arg " + name + " is no longer set");
      if (old_args[name] != new_args[name])
        return because("arg", "build arg " + name + " changed");
    }
  }
  if (before.contains("pairs") && before["pairs"] != now.value("pairs", Json())) {
    std::string field = now.value("field", "value");
    std::transform(field.begin(), field.end(), field.begin(), ::toupper);
    const Json& old_pairs = before["pairs"];
    const Json& new_pairs = now.value("pairs", Json::array());
    for (size_t i = 0; i < std::max(old_pairs.size(), new_pairs.size()); ++i) {
      const Json& a = i < old_pairs.size() ? old_pairs[i] : Json();
      const Json& b = i < new_pairs.size() ? new_pairs[i] : Json();
      if (a != b) {
        const Json& named = b.is_array() && !b.empty() ? b : a;
        std::string name = named.is_array() && !named.empty() && named[0].is_string()
                               ? named[0].get<std::string>()
                               : std::string("?");
        return because("env", field + " " + name + " changed");
      }
    }
  }
  if (before.value("text", "") != now.value("text", ""))
    return because("instruction",
                   "the instruction changed (it was: " + before.value("text", std::string()) + ")");
  for (const auto& [field, value] : now.items()) {
    if (!before.contains(field) || before[field] != value)
      return because("instruction", "the instruction's " + field + " changed");
  }
  for (const auto& [field, value] : before.items()) {
    if (!now.contains(field))
      return because("instruction", "the instruction's " + field + " changed");
  }
  return std::nullopt;
}

// The op's own inputs: context files, --from sources, bind mounts.
std::optional<StepExplanation> input_change(const Json& before, const Json& now) {
  const Json& old_in = before.value("inputs", Json::object());
  const Json& new_in = now.value("inputs", Json::object());
  const Json& old_list = before.value("listings", Json::object());
  const Json& new_list = now.value("listings", Json::object());
  if (old_in.value("sources", Json()) != new_in.value("sources", Json())) {
    if (auto change =
            listing_change(old_list.value("sources", Json()), new_list.value("sources", Json()))) {
      return because("file", "context file " + *change);
    }
    return because("file", "the files it copies changed");
  }
  if (old_in.value("from", Json()) != new_in.value("from", Json())) {
    std::string from = new_in.value("from", std::string());
    if (from.starts_with("image "))
      return because("from", "its --from image changed: " + short_digest(from.substr(6)));
    return because("upstream", "input changed upstream (its --from stage)");
  }
  const Json& old_mounts = old_in.value("mounts", Json::array());
  const Json& new_mounts = new_in.value("mounts", Json::array());
  if (old_mounts != new_mounts) {
    for (size_t i = 0; i < new_mounts.size(); ++i) {
      if (i < old_mounts.size() && old_mounts[i] == new_mounts[i])
        continue;
      std::string entry = new_mounts[i].is_string() ? new_mounts[i].get<std::string>() : "";
      std::string target = entry.substr(0, entry.find(' '));
      std::string what = entry.substr(std::min(entry.size(), target.size() + 1));
      if (auto change = listing_change(old_list.value("mount " + target, Json()),
                                       new_list.value("mount " + target, Json()))) {
        return because("file", "context file " + *change + " (bind mount " + target + ")");
      }
      if (what.starts_with("image "))
        return because(
            "from", "the image bound at " + target + " changed: " + short_digest(what.substr(6)));
      return because("upstream", "input changed upstream (bind mount " + target + ")");
    }
    return because("mount", "a bind mount was removed");
  }
  return std::nullopt;
}

}  // namespace

std::string step_identity(const std::string& scope, const frontend::GraphStage& stage,
                          size_t ordinal, const frontend::Op& op) {
  std::string name = scope;
  name += '\0';
  name += stage.platform.to_string();
  name += '\0';
  name += frontend::stage_label(stage);
  name += '\0';
  name += std::to_string(ordinal);
  name += '\0';
  name += op.kind_name();
  return oci::sha256_of(name).hex();
}

nlohmann::ordered_json step_record(const RecordParts& parts, const frontend::Op& op,
                                   const nlohmann::ordered_json& inputs,
                                   const InputListings& listings) {
  nlohmann::ordered_json definition = frontend::op_definition(op);
  // Build-arg values only as digests salted with the step: enough to tell that one changed.
  if (definition.contains("build_args") && definition["build_args"].is_object()) {
    for (auto& [name, value] : definition["build_args"].items()) {
      std::string salted = parts.identity + '\0' + name + '\0' + value.dump();
      value = "sha256:" + oci::sha256_of(salted).hex();
    }
  }
  nlohmann::ordered_json record;
  record["version"] = 1;
  record["settings"] = oci::sha256_of(parts.settings).hex();
  record["previous"] = parts.previous;
  record["base"] = parts.base;
  record["first"] = parts.first;
  record["definition"] = std::move(definition);
  record["inputs"] = inputs;
  record["listings"] = listings;
  return record;
}

StepExplanation explain_miss(const std::optional<nlohmann::json>& before, bool known,
                             const nlohmann::ordered_json& now_ordered) {
  if (!before) {
    return known ? because("new", "no record of this step's last build (pruned)")
                 : because("new", "no earlier build of this step");
  }
  Json now = Json::parse(now_ordered.dump());
  if (before->value("settings", "") != now.value("settings", ""))
    return because("settings", "build settings changed (layer compression or SOURCE_DATE_EPOCH)");
  if (auto change =
          definition_change(before->value("definition", Json()), now.value("definition", Json()))) {
    return *change;
  }
  if (auto change = input_change(*before, now))
    return *change;
  if (before->value("previous", "") != now.value("previous", "")) {
    std::string old_base = before->value("base", ""), new_base = now.value("base", "");
    if (now.value("first", false) && old_base != new_base) {
      if (new_base.starts_with("image "))
        return because("base", "base image changed: " + short_digest(new_base.substr(6)) +
                                   " (was " + short_digest(old_base.substr(6)) + ")");
      return because("upstream", "input changed upstream (its base " + new_base + ")");
    }
    if (now.value("first", false) && new_base.starts_with("stage "))
      return because("upstream", "input changed upstream (its base " + new_base + ")");
    return because("upstream", "input changed upstream");
  }
  return because("gone",
                 "same inputs as its last build, whose cache record is gone (pruned or "
                 "expired)");
}

std::string explain_summary(const std::vector<StepExplanation>& steps, size_t cached) {
  static const std::vector<std::pair<std::string, std::string>> kCauses = {
      {"file", "context file changed"},       {"arg", "build arg changed"},
      {"env", "ENV/LABEL value changed"},     {"instruction", "instruction changed"},
      {"base", "base image changed"},         {"from", "--from image changed"},
      {"mount", "bind mount changed"},        {"settings", "build settings changed"},
      {"upstream", "input changed upstream"}, {"new", "no earlier build"},
      {"no-cache", "cache disabled"},         {"gone", "cache record gone"}};
  std::string out =
      std::to_string(steps.size()) + " of " + std::to_string(steps.size() + cached) + " steps ran";
  std::string parts;
  for (const auto& [cause, label] : kCauses) {
    size_t n = std::count_if(steps.begin(), steps.end(),
                             [&](const StepExplanation& s) { return s.cause == cause; });
    if (n)
      parts += (parts.empty() ? "" : ", ") + std::to_string(n) + " " + label;
  }
  return parts.empty() ? out : out + ": " + parts;
}

}  // namespace kiln::solver
