#include "kiln/oci/step_history.hpp"

#include <fstream>
#include <sstream>

#include "kiln/oci/store.hpp"

namespace kiln::oci {
namespace fs = std::filesystem;
namespace {

bool is_hex64(const std::string& s) {
  return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

std::optional<std::string> slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_quietly(const fs::path& path, std::string_view bytes) {
  try {
    std::error_code ec;
    fs::create_directories(path.parent_path(), ec);
    write_file_atomically(path, bytes);
  } catch (const std::exception&) {
    // Only an aid to explaining misses: a full disk must not fail the build here.
  }
}

}  // namespace

std::optional<std::string> StepHistory::last_key(const std::string& step_id) const {
  if (!is_hex64(step_id))
    return std::nullopt;
  std::optional<std::string> key = slurp(layout_.step_keys() / step_id);
  if (!key || !is_hex64(*key))
    return std::nullopt;
  return key;
}

void StepHistory::set_last_key(const std::string& step_id, const std::string& key) const {
  if (!is_hex64(step_id) || !is_hex64(key) || last_key(step_id) == key)
    return;
  write_quietly(layout_.step_keys() / step_id, key);
}

std::optional<nlohmann::json> StepHistory::inputs(const std::string& key) const {
  if (!is_hex64(key))
    return std::nullopt;
  std::optional<std::string> text = slurp(layout_.step_inputs() / (key + ".json"));
  if (!text)
    return std::nullopt;
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object())
    return std::nullopt;
  return j;
}

void StepHistory::put_inputs(const std::string& key, const nlohmann::ordered_json& record) const {
  if (!is_hex64(key))
    return;
  write_quietly(layout_.step_inputs() / (key + ".json"), record.dump());
}

}  // namespace kiln::oci
