#include "kiln/oci/descriptor.hpp"

#include <limits>

#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"

namespace kiln::oci {
namespace detail {
namespace {

const char* type_name(const nlohmann::json& v) {
  if (v.is_number_integer())
    return "integer";
  if (v.is_number_float())
    return "number";
  return v.type_name();  // "null", "object", "array", "string", "boolean"
}

[[noreturn]] void wrong_type(const nlohmann::json& v, std::string_view doc, std::string_view path,
                             std::string_view expected) {
  json_fail(doc, path, "expected " + std::string(expected) + ", got " + type_name(v));
}

// nlohmann prefixes its messages with "[json.exception.parse_error.101] "; the reader of a
// kiln message wants only the part that describes the input.
std::string strip_exception_id(const char* what) {
  std::string_view s = what;
  if (starts_with(s, "[json.exception.")) {
    size_t end = s.find("] ");
    if (end != std::string_view::npos)
      s.remove_prefix(end + 2);
  }
  return std::string(s);
}

}  // namespace

void json_fail(std::string_view doc, std::string_view path, std::string_view why) {
  std::string message = "invalid " + std::string(doc) + ": ";
  if (!path.empty())
    message += std::string(path) + ": ";
  message += why;
  throw Error(message);
}

nlohmann::json parse_json_object(std::string_view text, std::string_view doc) {
  nlohmann::json v;
  try {
    v = nlohmann::json::parse(text.begin(), text.end());
  } catch (
      const nlohmann::json::exception& e) {  // parse_error, and out_of_range for a number overflow
    json_fail(doc, "", "not valid JSON: " + strip_exception_id(e.what()));
  }
  if (!v.is_object())
    wrong_type(v, doc, "", "a JSON object");
  return v;
}

std::string json_path(std::string_view parent, std::string_view key) {
  if (parent.empty())
    return std::string(key);
  return std::string(parent) + "." + std::string(key);
}

const nlohmann::json* json_member(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null())
    return nullptr;
  return &*it;
}

void expect_json_object(const nlohmann::json& v, std::string_view doc, std::string_view path) {
  if (!v.is_object())
    wrong_type(v, doc, path, "an object");
}

std::string json_string(const nlohmann::json& v, std::string_view doc, std::string_view path) {
  if (!v.is_string())
    wrong_type(v, doc, path, "a string");
  return v.get<std::string>();
}

int64_t json_int64(const nlohmann::json& v, std::string_view doc, std::string_view path) {
  if (v.is_number_unsigned()) {
    // Checked before the signed case: nlohmann stores every non-negative literal as unsigned.
    auto u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      json_fail(doc, path, "integer " + std::to_string(u) + " is out of range");
    return static_cast<int64_t>(u);
  }
  if (!v.is_number_integer())
    wrong_type(v, doc, path, "an integer");
  return v.get<int64_t>();
}

bool json_bool(const nlohmann::json& v, std::string_view doc, std::string_view path) {
  if (!v.is_boolean())
    wrong_type(v, doc, path, "a boolean");
  return v.get<bool>();
}

std::vector<std::string> json_string_array(const nlohmann::json& v, std::string_view doc,
                                           std::string_view path) {
  if (!v.is_array())
    wrong_type(v, doc, path, "an array of strings");
  std::vector<std::string> out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    out.push_back(json_string(v[i], doc, std::string(path) + "[" + std::to_string(i) + "]"));
  return out;
}

std::map<std::string, std::string> json_string_map(const nlohmann::json& v, std::string_view doc,
                                                   std::string_view path) {
  if (!v.is_object())
    wrong_type(v, doc, path, "an object of strings");
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : v.items())
    out.emplace(key, json_string(value, doc, json_path(path, quote(key))));
  return out;
}

Digest json_digest(const nlohmann::json& v, std::string_view doc, std::string_view path) {
  std::string text = json_string(v, doc, path);
  std::optional<Digest> digest = Digest::try_parse(text);
  if (!digest)
    json_fail(doc, path,
              quote(text) + " is not a valid digest (expected sha256:<64 lower-case hex digits>)");
  return *digest;
}

Platform platform_from_json(const nlohmann::json& v, std::string_view doc, std::string_view path) {
  expect_json_object(v, doc, path);
  auto required = [&](const char* key) {
    const nlohmann::json* member = json_member(v, key);
    if (!member)
      json_fail(doc, path, "missing \"" + std::string(key) + "\"");
    return json_string(*member, doc, json_path(path, key));
  };
  Platform p;
  p.architecture = required("architecture");
  p.os = required("os");
  if (const auto* m = json_member(v, "variant"))
    p.variant = json_string(*m, doc, json_path(path, "variant"));
  return p;
}

Descriptor descriptor_from_json(const nlohmann::json& v, std::string_view doc,
                                std::string_view path) {
  expect_json_object(v, doc, path);
  auto required = [&](const char* key) -> const nlohmann::json& {
    const nlohmann::json* member = json_member(v, key);
    if (!member)
      json_fail(doc, path, "missing \"" + std::string(key) + "\"");
    return *member;
  };
  Descriptor d;
  d.media_type = json_string(required("mediaType"), doc, json_path(path, "mediaType"));
  if (d.media_type.empty())
    json_fail(doc, json_path(path, "mediaType"), "empty media type");
  d.digest = json_digest(required("digest"), doc, json_path(path, "digest"));
  d.size = json_int64(required("size"), doc, json_path(path, "size"));
  if (d.size < 0)
    json_fail(doc, json_path(path, "size"), "negative size " + std::to_string(d.size));
  if (const auto* m = json_member(v, "artifactType"))
    d.artifact_type = json_string(*m, doc, json_path(path, "artifactType"));
  if (const auto* m = json_member(v, "urls"))
    d.urls = json_string_array(*m, doc, json_path(path, "urls"));
  if (const auto* m = json_member(v, "annotations"))
    d.annotations = json_string_map(*m, doc, json_path(path, "annotations"));
  if (const auto* m = json_member(v, "platform")) {
    std::string platform_path = json_path(path, "platform");
    d.platform = platform_from_json(*m, doc, platform_path);
    if (const auto* os_version = json_member(*m, "os.version"))
      d.platform_os_version = json_string(*os_version, doc, json_path(platform_path, "os.version"));
  }
  return d;
}

std::string dump_json(const nlohmann::ordered_json& v, std::string_view doc) {
  try {
    return v.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::strict);
  } catch (const nlohmann::json::type_error&) {
    throw Error("cannot serialize " + std::string(doc) +
                ": a string is not valid UTF-8 (JSON can only carry UTF-8 text)");
  }
}

}  // namespace detail

nlohmann::ordered_json to_json(const Platform& platform, std::string_view os_version) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  j["architecture"] = platform.architecture;
  j["os"] = platform.os;
  if (!os_version.empty())
    j["os.version"] = os_version;
  if (!platform.variant.empty())
    j["variant"] = platform.variant;
  return j;
}

Platform platform_from_json(const nlohmann::json& json) {
  return detail::platform_from_json(json, "platform", "");
}

nlohmann::ordered_json to_json(const Descriptor& d) {
  // Names the descriptor by whatever it has, for the message.
  auto fail = [&](const std::string& why) {
    std::string which = d.digest.valid() ? d.digest.str() : "(no digest)";
    if (!d.media_type.empty())
      which += " (" + d.media_type + ")";
    throw Error("cannot serialize descriptor " + which + ": " + why);
  };
  if (d.media_type.empty())
    fail("empty media type");
  if (!d.digest.valid())
    fail("no digest");
  if (d.size < 0)
    fail("negative size " + std::to_string(d.size));
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  j["mediaType"] = d.media_type;
  if (!d.artifact_type.empty())
    j["artifactType"] = d.artifact_type;
  j["digest"] = d.digest.str();
  j["size"] = d.size;
  if (!d.urls.empty())
    j["urls"] = d.urls;
  if (!d.annotations.empty()) {
    // Inserted from the sorted map, so the key order is deterministic.
    nlohmann::ordered_json annotations = nlohmann::ordered_json::object();
    for (const auto& [key, value] : d.annotations)
      annotations[key] = value;
    j["annotations"] = std::move(annotations);
  }
  if (d.platform)
    j["platform"] = to_json(*d.platform, d.platform_os_version);
  return j;
}

Descriptor descriptor_from_json(const nlohmann::json& json) {
  return detail::descriptor_from_json(json, "descriptor", "");
}

}  // namespace kiln::oci
