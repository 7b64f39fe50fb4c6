#include "cache_key.hpp"

namespace kiln::solver {

namespace {

std::string digest_of(const nlohmann::ordered_json& j) {
  return oci::sha256_of(j.dump()).hex();
}

}  // namespace

std::string build_salt(const snapshotter::LayerOptions& layers,
                       const std::optional<int64_t>& source_date_epoch, bool inherit_labels) {
  nlohmann::ordered_json j;
  j["kiln-cache"] = 2;  // 2: keys over typed op definitions
  j["compression"] = static_cast<int>(layers.compression.algorithm);
  j["level"] = layers.compression.level;
  j["compressor"] = snapshotter::compressor_id(layers.compression);
  j["source_date_epoch"] = source_date_epoch ? std::to_string(*source_date_epoch) : "";
  if (layers.all_mtimes)
    j["all_mtimes"] = true;
  if (!inherit_labels)
    j["inherit_labels"] = false;
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
  def["op"] = frontend::op_definition(op);
  def["inputs"] = inputs;
  return digest_of(def);
}

}  // namespace kiln::solver
