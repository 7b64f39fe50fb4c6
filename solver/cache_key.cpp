#include "cache_key.hpp"

#include "kiln/frontend/ast.hpp"

namespace kiln::solver {

namespace {

std::string digest_of(const nlohmann::ordered_json& j) {
  return oci::sha256_of(j.dump()).hex();
}

}  // namespace

std::string build_salt(const snapshotter::LayerOptions& layers,
                       const std::optional<int64_t>& source_date_epoch) {
  nlohmann::ordered_json j;
  j["kiln-cache"] = 1;
  j["compression"] = static_cast<int>(layers.compression.algorithm);
  j["level"] = layers.compression.level;
  j["source_date_epoch"] = source_date_epoch ? std::to_string(*source_date_epoch) : "";
  return digest_of(j);
}

std::string scratch_key(const std::string& salt, const oci::Platform& platform) {
  return digest_of({{"salt", salt}, {"from", "scratch"}, {"platform", platform.to_string()}});
}

std::string image_key(const std::string& salt, const oci::Digest& manifest,
                      const oci::Platform& platform) {
  return digest_of({{"salt", salt},
                    {"from", "image"},
                    {"manifest", manifest.str()},
                    {"platform", platform.to_string()}});
}

std::string stage_base_key(const std::string& base_stage_key) {
  return digest_of({{"from", "stage"}, {"stage", base_stage_key}});
}

std::string op_key(const std::string& previous, const frontend::Op& op,
                   const nlohmann::ordered_json& inputs) {
  nlohmann::ordered_json def;
  def["previous"] = previous;
  def["kind"] = frontend::keyword_of(op.kind);
  def["text"] = op.instruction ? op.instruction->text : std::string();
  if (op.instruction && op.kind == frontend::InstructionKind::kHealthcheck)
    def["health"] = op.instruction->health_type;
  if (op.instruction && op.kind == frontend::InstructionKind::kOnbuild &&
      !op.instruction->trigger.empty()) {
    def["trigger"] = op.instruction->trigger.front().text;
  }
  def["args"] = op.args;
  def["json"] = op.json_form;
  nlohmann::ordered_json flags = nlohmann::ordered_json::array();
  for (const frontend::Flag& f : op.flags)
    flags.push_back({f.name, f.value ? nlohmann::ordered_json(*f.value) : nullptr});
  def["flags"] = std::move(flags);
  nlohmann::ordered_json pairs = nlohmann::ordered_json::array();
  for (const frontend::KeyValue& kv : op.pairs)
    pairs.push_back({kv.key, kv.value ? nlohmann::ordered_json(*kv.value) : nullptr});
  def["pairs"] = std::move(pairs);
  nlohmann::ordered_json heredocs = nlohmann::ordered_json::array();
  for (const frontend::Heredoc& h : op.heredocs)
    heredocs.push_back({h.name, h.content});
  def["heredocs"] = std::move(heredocs);
  def["inputs"] = inputs;
  return digest_of(def);
}

}  // namespace kiln::solver
