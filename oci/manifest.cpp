#include "kiln/oci/manifest.hpp"

#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/oci/media_types.hpp"

namespace kiln::oci {
namespace {

using detail::json_fail;
using detail::json_member;
using nlohmann::json;
using nlohmann::ordered_json;

constexpr std::string_view kManifestDoc = "image manifest";
constexpr std::string_view kIndexDoc = "image index";

ordered_json string_map_json(const std::map<std::string, std::string>& map) {
  ordered_json j = ordered_json::object();
  for (const auto& [key, value] : map)
    j[key] = value;
  return j;
}

// The fields both documents share: schemaVersion, mediaType, artifactType, subject, annotations.
struct Common {
  int schema_version = 2;
  std::string media_type;
  std::string artifact_type;
  std::optional<Descriptor> subject;
  std::map<std::string, std::string> annotations;
};

Common parse_common(const json& j, std::string_view doc) {
  Common c;
  const json* version = json_member(j, "schemaVersion");
  if (!version)
    json_fail(doc, "", "missing \"schemaVersion\"");
  int64_t v = detail::json_int64(*version, doc, "schemaVersion");
  if (v == 1)
    json_fail(doc, "schemaVersion", "1 (Docker schema 1) is not supported; expected 2");
  if (v != 2)
    json_fail(doc, "schemaVersion", std::to_string(v) + " is not supported; expected 2");
  c.schema_version = 2;
  if (const json* m = json_member(j, "mediaType"))
    c.media_type = detail::json_string(*m, doc, "mediaType");
  if (const json* m = json_member(j, "artifactType"))
    c.artifact_type = detail::json_string(*m, doc, "artifactType");
  if (const json* m = json_member(j, "subject"))
    c.subject = detail::descriptor_from_json(*m, doc, "subject");
  if (const json* m = json_member(j, "annotations"))
    c.annotations = detail::json_string_map(*m, doc, "annotations");
  return c;
}

std::vector<Descriptor> parse_descriptors(const json& j, const char* key, std::string_view doc) {
  const json* list = json_member(j, key);
  if (!list)
    json_fail(doc, "", "missing \"" + std::string(key) + "\"");
  if (!list->is_array())
    json_fail(doc, key, std::string("expected an array of descriptors, got ") + list->type_name());
  std::vector<Descriptor> out;
  out.reserve(list->size());
  for (size_t i = 0; i < list->size(); ++i)
    out.push_back(detail::descriptor_from_json((*list)[i], doc,
                                               std::string(key) + "[" + std::to_string(i) + "]"));
  return out;
}

// Appends the descriptors as an array; an empty list is still written ("layers": []) because
// both fields are required by the spec.
ordered_json descriptors_json(const std::vector<Descriptor>& list) {
  ordered_json array = ordered_json::array();
  for (const Descriptor& d : list)
    array.push_back(to_json(d));
  return array;
}

// The platform of an entry that stands for an image: nullopt for entries without one and for
// attestation manifests.
std::optional<Platform> image_platform(const Descriptor& entry) {
  if (!entry.platform)
    return std::nullopt;
  Platform platform = normalize(*entry.platform);
  if (platform.os == "unknown")
    return std::nullopt;
  return platform;
}

}  // namespace

std::string serialize(const Manifest& m) {
  ordered_json j = ordered_json::object();
  j["schemaVersion"] = m.schema_version;
  if (!m.media_type.empty())
    j["mediaType"] = m.media_type;
  if (!m.artifact_type.empty())
    j["artifactType"] = m.artifact_type;
  j["config"] = to_json(m.config);
  j["layers"] = descriptors_json(m.layers);
  if (m.subject)
    j["subject"] = to_json(*m.subject);
  if (!m.annotations.empty())
    j["annotations"] = string_map_json(m.annotations);
  return detail::dump_json(j, kManifestDoc);
}

std::string serialize(const Index& index) {
  ordered_json j = ordered_json::object();
  j["schemaVersion"] = index.schema_version;
  if (!index.media_type.empty())
    j["mediaType"] = index.media_type;
  if (!index.artifact_type.empty())
    j["artifactType"] = index.artifact_type;
  j["manifests"] = descriptors_json(index.manifests);
  if (index.subject)
    j["subject"] = to_json(*index.subject);
  if (!index.annotations.empty())
    j["annotations"] = string_map_json(index.annotations);
  return detail::dump_json(j, kIndexDoc);
}

Manifest parse_manifest(std::string_view text) {
  json j = detail::parse_json_object(text, kManifestDoc);
  // Checked before anything else: "an index, not a manifest" says more than "missing config".
  const json* media_type = json_member(j, "mediaType");
  if (media_type && media_type->is_string()) {
    std::string mt = media_type->get<std::string>();
    if (media_type::is_index(mt))
      json_fail(kManifestDoc, "", "got an image index (" + mt + ") where a manifest was expected");
    if (!media_type::is_manifest(mt))
      json_fail(kManifestDoc, "mediaType", "unsupported media type " + quote(mt));
  } else if (!media_type && j.contains("manifests") && !j.contains("config")) {
    json_fail(kManifestDoc, "", "got an image index where a manifest was expected");
  }
  Common c = parse_common(j, kManifestDoc);
  Manifest m;
  m.schema_version = c.schema_version;
  m.media_type = std::move(c.media_type);
  m.artifact_type = std::move(c.artifact_type);
  m.subject = std::move(c.subject);
  m.annotations = std::move(c.annotations);
  const json* config = json_member(j, "config");
  if (!config)
    json_fail(kManifestDoc, "", "missing \"config\"");
  m.config = detail::descriptor_from_json(*config, kManifestDoc, "config");
  m.layers = parse_descriptors(j, "layers", kManifestDoc);
  return m;
}

Index parse_index(std::string_view text) {
  json j = detail::parse_json_object(text, kIndexDoc);
  const json* media_type = json_member(j, "mediaType");
  if (media_type && media_type->is_string()) {
    std::string mt = media_type->get<std::string>();
    if (media_type::is_manifest(mt))
      json_fail(kIndexDoc, "", "got an image manifest (" + mt + ") where an index was expected");
    if (!media_type::is_index(mt))
      json_fail(kIndexDoc, "mediaType", "unsupported media type " + quote(mt));
  } else if (!media_type && !j.contains("manifests") && j.contains("config")) {
    json_fail(kIndexDoc, "", "got an image manifest where an index was expected");
  }
  Common c = parse_common(j, kIndexDoc);
  Index index;
  index.schema_version = c.schema_version;
  index.media_type = std::move(c.media_type);
  index.artifact_type = std::move(c.artifact_type);
  index.subject = std::move(c.subject);
  index.annotations = std::move(c.annotations);
  index.manifests = parse_descriptors(j, "manifests", kIndexDoc);
  return index;
}

std::optional<Descriptor> find_platform_manifest(const Index& index, const Platform& platform) {
  for (const Descriptor& entry : index.manifests) {
    std::optional<Platform> have = image_platform(entry);
    if (have && platform_matches(platform, *have))
      return entry;
  }
  return std::nullopt;
}

std::string platforms_in(const Index& index) {
  std::vector<std::string> platforms;
  for (const Descriptor& entry : index.manifests) {
    if (std::optional<Platform> have = image_platform(entry))
      platforms.push_back(have->to_string());
  }
  return platforms.empty() ? std::string("none") : join(platforms, ", ");
}

}  // namespace kiln::oci
