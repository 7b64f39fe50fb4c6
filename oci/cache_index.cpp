#include "kiln/oci/cache_index.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <system_error>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/oci/store.hpp"

namespace kiln::oci {
namespace fs = std::filesystem;

namespace {

bool valid_key(const std::string& key) {
  return key.size() == 64 && key.find_first_not_of("0123456789abcdef") == std::string::npos;
}

std::optional<CacheRecord> parse_record(const std::string& key, const std::string& text) {
  try {
    nlohmann::json j = nlohmann::json::parse(text);
    CacheRecord r;
    r.key = j.at("key").get<std::string>();
    if (r.key != key)
      return std::nullopt;
    r.config = parse_image_config(j.at("config").get<std::string>());
    for (const nlohmann::json& layer : j.at("layers"))
      r.layers.push_back(descriptor_from_json(layer));
    r.cmd_set = j.value("cmd_set", false);
    if (j.contains("created"))
      r.created = j.at("created").get<int64_t>();
    if (r.layers.size() != r.config.diff_ids.size())
      return std::nullopt;
    return r;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace

CacheIndex::CacheIndex(fs::path dir) : dir_(std::move(dir)) {}

fs::path CacheIndex::path_of(const std::string& key) const {
  return dir_ / (key + ".json");
}

std::optional<CacheRecord> CacheIndex::peek(const std::string& key) const {
  if (!valid_key(key))
    return std::nullopt;
  std::string text;
  try {
    text = read_file(path_of(key));
  } catch (const Error&) {
    return std::nullopt;
  }
  return parse_record(key, text);
}

std::optional<CacheRecord> CacheIndex::get(const std::string& key) const {
  std::optional<CacheRecord> record = peek(key);
  if (record)
    ::utimensat(AT_FDCWD, path_of(key).c_str(), nullptr, 0);  // last use; best effort
  return record;
}

void CacheIndex::put(const CacheRecord& record) const {
  if (!valid_key(record.key))
    throw Error("invalid cache key " + record.key);
  nlohmann::ordered_json j;
  j["key"] = record.key;
  // The config is kept as its canonical serialisation, so a hit rebuilds the identical blob.
  j["config"] = serialize(record.config);
  j["layers"] = nlohmann::ordered_json::array();
  for (const Descriptor& layer : record.layers)
    j["layers"].push_back(to_json(layer));
  j["cmd_set"] = record.cmd_set;
  j["created"] = record.created ? *record.created
                                : std::chrono::duration_cast<std::chrono::seconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count();
  fs::create_directories(dir_);
  write_file_atomically(path_of(record.key), j.dump());
}

std::vector<std::string> CacheIndex::keys() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    std::string name = entry.path().filename().string();
    if (name.size() == 69 && name.ends_with(".json") && valid_key(name.substr(0, 64)))
      out.push_back(name.substr(0, 64));
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool CacheIndex::remove(const std::string& key) const {
  if (!valid_key(key))
    return false;
  return ::unlink(path_of(key).c_str()) == 0;
}

}  // namespace kiln::oci
