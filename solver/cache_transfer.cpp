#include "kiln/solver/cache_transfer.hpp"

#include <fcntl.h>

#include <nlohmann/json.hpp>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/oci/manifest.hpp"
#include "kiln/oci/media_types.hpp"
#include "kiln/oci/reference.hpp"

namespace kiln::solver {
namespace fs = std::filesystem;

oci::Descriptor write_cache_manifest(oci::Store& store,
                                     const std::vector<oci::CacheRecord>& records) {
  oci::Manifest manifest;
  manifest.media_type = oci::media_type::kOciManifest;
  manifest.artifact_type = kCacheArtifactType;
  std::map<std::string, size_t> index_of;  // layer digest → position in manifest.layers
  nlohmann::ordered_json config;
  config["version"] = 1;
  config["records"] = nlohmann::ordered_json::array();
  for (const oci::CacheRecord& r : records) {
    nlohmann::ordered_json positions = nlohmann::ordered_json::array();
    for (const oci::Descriptor& layer : r.layers) {
      auto [it, added] = index_of.emplace(layer.digest.str(), manifest.layers.size());
      if (added)
        manifest.layers.push_back(layer);
      positions.push_back(it->second);
    }
    config["records"].push_back({{"key", r.key},
                                 {"config", oci::serialize(r.config)},
                                 {"layers", std::move(positions)},
                                 {"cmd_set", r.cmd_set}});
  }
  std::string config_bytes = config.dump();
  manifest.config.media_type = kCacheConfigMediaType;
  manifest.config.digest = store.put_blob(config_bytes);
  manifest.config.size = static_cast<int64_t>(config_bytes.size());
  std::string bytes = oci::serialize(manifest);
  oci::Descriptor d;
  d.media_type = oci::media_type::kOciManifest;
  d.artifact_type = kCacheArtifactType;
  d.digest = store.put_blob(bytes);
  d.size = static_cast<int64_t>(bytes.size());
  return d;
}

std::vector<oci::CacheRecord> parse_cache_manifest(const std::string& manifest_json,
                                                   const std::string& config_json,
                                                   const std::string& source) {
  oci::Manifest manifest;
  try {
    manifest = oci::parse_manifest(manifest_json);
  } catch (const Error& e) {
    throw Error("cache " + source + ": " + e.what());
  }
  if (manifest.config.media_type != kCacheConfigMediaType) {
    throw Error("cache " + source + " is not a kiln cache (its config is " +
                manifest.config.media_type + ")");
  }
  std::vector<oci::CacheRecord> out;
  try {
    nlohmann::json config = nlohmann::json::parse(config_json);
    if (config.at("version").get<int>() != 1) {
      throw Error("version " + config.at("version").dump() + " is not supported");
    }
    for (const nlohmann::json& r : config.at("records")) {
      oci::CacheRecord record;
      record.key = r.at("key").get<std::string>();
      record.config = oci::parse_image_config(r.at("config").get<std::string>());
      record.cmd_set = r.value("cmd_set", false);
      for (const nlohmann::json& position : r.at("layers")) {
        size_t i = position.get<size_t>();
        if (i >= manifest.layers.size())
          throw Error("record " + record.key + " names layer " + std::to_string(i) + " of " +
                      std::to_string(manifest.layers.size()));
        record.layers.push_back(manifest.layers[i]);
      }
      if (record.layers.size() != record.config.diff_ids.size())
        throw Error("record " + record.key + " has " + std::to_string(record.layers.size()) +
                    " layers but its config lists " +
                    std::to_string(record.config.diff_ids.size()));
      out.push_back(std::move(record));
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error("cache " + source + ": malformed cache config: " + e.what());
  } catch (const Error& e) {
    throw Error("cache " + source + ": " + e.what());
  }
  return out;
}

RemoteCache::RemoteCache(std::string source, const std::vector<oci::CacheRecord>& records,
                         Fetch fetch)
    : source_(std::move(source)), fetch_(std::move(fetch)) {
  for (const oci::CacheRecord& r : records)
    records_[r.key] = r;
}

std::optional<oci::CacheRecord> RemoteCache::fetch(const std::string& key,
                                                   oci::Store& store) const {
  auto it = records_.find(key);
  if (it == records_.end())
    return std::nullopt;
  for (const oci::Descriptor& layer : it->second.layers) {
    if (!store.has_blob(layer.digest))
      fetch_(layer, store);
  }
  return it->second;
}

std::shared_ptr<RemoteCache> open_layout_cache(const fs::path& dir) {
  std::string index_text;
  try {
    index_text = read_file(dir / "index.json");
  } catch (const Error&) {
    return nullptr;  // nothing exported there yet
  }
  std::string source = "type=local,src=" + dir.string();
  oci::Index index;
  try {
    index = oci::parse_index(index_text);
  } catch (const Error& e) {
    throw Error("cache " + source + ": " + e.what());
  }
  auto blob = [dir](const oci::Digest& d) { return dir / "blobs" / d.algorithm() / d.hex(); };
  for (const oci::Descriptor& d : index.manifests) {
    auto name = d.annotations.find(oci::kRefNameAnnotation);
    if (name == d.annotations.end() ||
        (name->second != kCacheRefName && name->second != std::string(kCacheRefName) + ":latest"))
      continue;
    std::string manifest_json = read_file(blob(d.digest));
    if (oci::sha256_of(manifest_json) != d.digest)
      throw Error("cache " + source + ": manifest " + d.digest.str() + " is corrupt");
    oci::Manifest manifest = oci::parse_manifest(manifest_json);
    std::string config_json = read_file(blob(manifest.config.digest));
    if (oci::sha256_of(config_json) != manifest.config.digest)
      throw Error("cache " + source + ": config " + manifest.config.digest.str() + " is corrupt");
    std::vector<oci::CacheRecord> records =
        parse_cache_manifest(manifest_json, config_json, source);
    auto fetch = [dir, source, blob](const oci::Descriptor& layer, oci::Store& store) {
      auto writer = store.begin_blob();
      UniqueFd fd = open_or_throw(blob(layer.digest), O_RDONLY);
      read_chunks(fd.get(), blob(layer.digest).string(),
                  [&](const char* data, size_t size) { writer->write(data, size); });
      try {
        writer->commit(layer.digest);
      } catch (const Error& e) {
        throw Error("cache " + source + ": layer " + layer.digest.str() + ": " + e.what());
      }
    };
    return std::make_shared<RemoteCache>(source, records, fetch);
  }
  return nullptr;
}

std::shared_ptr<RemoteCache> open_registry_cache(const std::string& reference,
                                                 const oci::RegistryOptions& options) {
  oci::Reference ref = oci::parse_reference(reference);
  auto client = std::make_shared<oci::RegistryClient>(ref.domain, options);
  std::string source = "type=registry,ref=" + ref.str();
  std::string tag = ref.digest ? ref.digest->str() : ref.tag;
  if (!client->head_manifest(ref.path, tag))
    return nullptr;
  oci::RegistryClient::Manifest manifest = client->get_manifest(ref.path, tag);
  oci::Manifest parsed = oci::parse_manifest(manifest.bytes);
  struct StringSink : ByteSink {
    std::string bytes;
    void write(const void* data, size_t size) override {
      bytes.append(static_cast<const char*>(data), size);
    }
  } config;
  client->get_blob(ref.path, parsed.config, config);
  std::vector<oci::CacheRecord> records =
      parse_cache_manifest(manifest.bytes, config.bytes, source);
  std::string repo = ref.path;
  auto fetch = [client, repo](const oci::Descriptor& layer, oci::Store& store) {
    std::unique_ptr<oci::BlobWriter> writer = store.begin_blob();
    client->get_blob(repo, layer, *writer);
    writer->commit(layer.digest);
  };
  return std::make_shared<RemoteCache>(source, records, fetch);
}

}  // namespace kiln::solver
