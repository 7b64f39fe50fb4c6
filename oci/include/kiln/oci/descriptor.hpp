// OCI content descriptors: the (media type, digest, size) triple by which manifests, indexes and
// configs point at other blobs, plus the optional fields of image-spec descriptor.md.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/oci/digest.hpp"
#include "kiln/oci/platform.hpp"

namespace kiln::oci {

struct Descriptor {
  std::string media_type;
  Digest digest;
  int64_t size = 0;
  std::map<std::string, std::string> annotations;
  std::optional<Platform> platform;  // set on index entries
  std::vector<std::string> urls;
  std::string artifact_type;
  // The platform's "os.version" (Windows images pin a build, e.g. "10.0.17763.5820"). Platform has
  // no field for it, so it lives here; it is written only when platform is set. The "{}" keeps
  // -Wmissing-field-initializers quiet for brace-initialisations that list the other seven fields.
  std::string platform_os_version{};

  friend bool operator==(const Descriptor&, const Descriptor&) = default;
};

// The descriptor as JSON with the keys in a fixed order (mediaType, artifactType, digest, size,
// urls, annotations, platform); empty optional fields are omitted. Platforms are written as
// recorded, not normalised. Throws kiln::Error when the media type is empty, the digest is unset
// or the size is negative, since such a descriptor would make the document that holds it invalid.
nlohmann::ordered_json to_json(const Descriptor& descriptor);

// Reads a descriptor. Unknown fields (e.g. "data", platform "features") are ignored and null
// counts as absent. Throws kiln::Error when mediaType, digest or size is missing or has the wrong
// type, the digest is not sha256/sha512, or the size is negative.
Descriptor descriptor_from_json(const nlohmann::json& json);

// A platform object: architecture, os, os.version (when non-empty), variant (when non-empty).
nlohmann::ordered_json to_json(const Platform& platform, std::string_view os_version = {});
// Reads a platform object as recorded (not normalised: "unknown/unknown" attestation entries
// survive). Throws kiln::Error when architecture or os is missing or a field is not a string.
Platform platform_from_json(const nlohmann::json& json);

// JSON reading and writing shared by the OCI document parsers; not for use outside kiln::oci.
// Every error is a kiln::Error of the form "invalid DOC: PATH: WHY", e.g.
// "invalid image manifest: layers[1].size: expected an integer, got string".
namespace detail {

[[noreturn]] void json_fail(std::string_view doc, std::string_view path, std::string_view why);
// Parses text that must hold one JSON object.
nlohmann::json parse_json_object(std::string_view text, std::string_view doc);
// "a.b" (or "b" when parent is empty).
std::string json_path(std::string_view parent, std::string_view key);
// The member, or nullptr when it is absent or null (Go writes null for nil slices and maps).
const nlohmann::json* json_member(const nlohmann::json& object, const char* key);

// Typed readers of a present, non-null value; they throw when the type is wrong.
void expect_json_object(const nlohmann::json& v, std::string_view doc, std::string_view path);
std::string json_string(const nlohmann::json& v, std::string_view doc, std::string_view path);
int64_t json_int64(const nlohmann::json& v, std::string_view doc, std::string_view path);
bool json_bool(const nlohmann::json& v, std::string_view doc, std::string_view path);
std::vector<std::string> json_string_array(const nlohmann::json& v, std::string_view doc,
                                           std::string_view path);
std::map<std::string, std::string> json_string_map(const nlohmann::json& v, std::string_view doc,
                                                   std::string_view path);
Digest json_digest(const nlohmann::json& v, std::string_view doc, std::string_view path);

Platform platform_from_json(const nlohmann::json& v, std::string_view doc, std::string_view path);
Descriptor descriptor_from_json(const nlohmann::json& v, std::string_view doc,
                                std::string_view path);

// Compact dump (no whitespace, UTF-8 kept as is). Throws kiln::Error naming doc when a string is
// not valid UTF-8, which JSON cannot carry.
std::string dump_json(const nlohmann::ordered_json& v, std::string_view doc);

}  // namespace detail
}  // namespace kiln::oci
