#include "kiln/oci/image_config.hpp"

#include <array>
#include <cstdio>
#include <limits>

#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/oci/descriptor.hpp"

namespace kiln::oci {
namespace {

using detail::json_fail;
using detail::json_member;
using detail::json_path;
using nlohmann::json;
using nlohmann::ordered_json;

constexpr std::string_view kDoc = "image config";

// The top-level keys kiln models; every other key goes to ImageConfig::unknown.
constexpr std::array<std::string_view, 9> kModelledKeys = {"created", "author",     "architecture",
                                                           "os",      "os.version", "variant",
                                                           "config",  "rootfs",     "history"};

bool is_modelled(std::string_view key) {
  for (std::string_view k : kModelledKeys) {
    if (k == key)
      return true;
  }
  return false;
}

// ---- reading ----

std::string optional_string(const json& object, const char* key, std::string_view path) {
  const json* m = json_member(object, key);
  return m ? detail::json_string(*m, kDoc, json_path(path, key)) : std::string();
}

// Entrypoint, Cmd and Shell. Docker's strslice accepts a bare string for a one-element list, and
// configs written by old Docker versions contain that form.
std::optional<std::vector<std::string>> optional_command(const json& object, const char* key,
                                                         std::string_view path) {
  const json* m = json_member(object, key);
  if (!m)
    return std::nullopt;
  if (m->is_string())
    return std::vector<std::string>{m->get<std::string>()};
  return detail::json_string_array(*m, kDoc, json_path(path, key));
}

// ExposedPorts and Volumes: {"80/tcp": {}}. Only the keys carry meaning.
std::set<std::string> key_set(const json& object, const char* key, std::string_view path) {
  std::set<std::string> out;
  if (const json* m = json_member(object, key)) {
    detail::expect_json_object(*m, kDoc, json_path(path, key));
    for (const auto& item : m->items())
      out.insert(item.key());
  }
  return out;
}

HealthConfig parse_health(const json& j, std::string_view path) {
  detail::expect_json_object(j, kDoc, path);
  HealthConfig h;
  if (const json* m = json_member(j, "Test"))
    h.test = detail::json_string_array(*m, kDoc, json_path(path, "Test"));
  for (auto [key, field] :
       {std::pair{"Interval", &h.interval}, std::pair{"Timeout", &h.timeout},
        std::pair{"StartPeriod", &h.start_period}, std::pair{"StartInterval", &h.start_interval}}) {
    if (const json* m = json_member(j, key)) {
      *field = detail::json_int64(*m, kDoc, json_path(path, key));
      if (*field < 0)
        json_fail(kDoc, json_path(path, key), "negative duration " + std::to_string(*field));
    }
  }
  if (const json* m = json_member(j, "Retries")) {
    int64_t retries = detail::json_int64(*m, kDoc, json_path(path, "Retries"));
    if (retries < 0 || retries > std::numeric_limits<int>::max())
      json_fail(kDoc, json_path(path, "Retries"), std::to_string(retries) + " is out of range");
    h.retries = static_cast<int>(retries);
  }
  return h;
}

ContainerConfig parse_container_config(const json& j) {
  constexpr std::string_view path = "config";
  detail::expect_json_object(j, kDoc, path);
  ContainerConfig c;
  c.user = optional_string(j, "User", path);
  c.exposed_ports = key_set(j, "ExposedPorts", path);
  if (const json* m = json_member(j, "Env"))
    c.env = detail::json_string_array(*m, kDoc, json_path(path, "Env"));
  c.entrypoint = optional_command(j, "Entrypoint", path);
  c.cmd = optional_command(j, "Cmd", path);
  c.volumes = key_set(j, "Volumes", path);
  c.working_dir = optional_string(j, "WorkingDir", path);
  if (const json* m = json_member(j, "Labels"))
    c.labels = detail::json_string_map(*m, kDoc, json_path(path, "Labels"));
  c.stop_signal = optional_string(j, "StopSignal", path);
  if (const json* m = json_member(j, "ArgsEscaped"))
    c.args_escaped = detail::json_bool(*m, kDoc, json_path(path, "ArgsEscaped"));
  if (const json* m = json_member(j, "Healthcheck"))
    c.healthcheck = parse_health(*m, json_path(path, "Healthcheck"));
  if (const json* m = json_member(j, "OnBuild"))
    c.on_build = detail::json_string_array(*m, kDoc, json_path(path, "OnBuild"));
  c.shell = optional_command(j, "Shell", path);
  return c;
}

HistoryEntry parse_history_entry(const json& j, std::string_view path) {
  detail::expect_json_object(j, kDoc, path);
  HistoryEntry h;
  h.created = optional_string(j, "created", path);
  h.created_by = optional_string(j, "created_by", path);
  h.author = optional_string(j, "author", path);
  h.comment = optional_string(j, "comment", path);
  if (const json* m = json_member(j, "empty_layer"))
    h.empty_layer = detail::json_bool(*m, kDoc, json_path(path, "empty_layer"));
  return h;
}

// ---- writing ----

ordered_json string_array(const std::vector<std::string>& values) {
  ordered_json a = ordered_json::array();
  for (const std::string& v : values)
    a.push_back(v);
  return a;
}

// Go's omitempty on a string field, the writing side of optional_string.
void put_nonempty(ordered_json& j, const char* key, const std::string& value) {
  if (!value.empty())
    j[key] = value;
}

// {"key": {}, ...}: the Go map[string]struct{} encoding Docker uses for ports and volumes.
ordered_json empty_object_map(const std::set<std::string>& keys) {
  ordered_json j = ordered_json::object();
  for (const std::string& key : keys)
    j[key] = ordered_json::object();
  return j;
}

ordered_json health_json(const HealthConfig& h) {
  // Go's omitempty on every field: zero durations mean "inherit" and are left out.
  ordered_json j = ordered_json::object();
  if (!h.test.empty())
    j["Test"] = string_array(h.test);
  if (h.interval != 0)
    j["Interval"] = h.interval;
  if (h.timeout != 0)
    j["Timeout"] = h.timeout;
  if (h.start_period != 0)
    j["StartPeriod"] = h.start_period;
  if (h.start_interval != 0)
    j["StartInterval"] = h.start_interval;
  if (h.retries != 0)
    j["Retries"] = h.retries;
  return j;
}

ordered_json container_config_json(const ContainerConfig& c) {
  ordered_json j = ordered_json::object();
  put_nonempty(j, "User", c.user);
  if (!c.exposed_ports.empty())
    j["ExposedPorts"] = empty_object_map(c.exposed_ports);
  if (!c.env.empty())
    j["Env"] = string_array(c.env);
  if (c.entrypoint)
    j["Entrypoint"] = string_array(*c.entrypoint);
  if (c.cmd)
    j["Cmd"] = string_array(*c.cmd);
  if (!c.volumes.empty())
    j["Volumes"] = empty_object_map(c.volumes);
  put_nonempty(j, "WorkingDir", c.working_dir);
  if (!c.labels.empty()) {
    ordered_json labels = ordered_json::object();
    for (const auto& [key, value] : c.labels)
      labels[key] = value;
    j["Labels"] = std::move(labels);
  }
  put_nonempty(j, "StopSignal", c.stop_signal);
  if (c.args_escaped)
    j["ArgsEscaped"] = true;
  if (c.healthcheck)
    j["Healthcheck"] = health_json(*c.healthcheck);
  if (!c.on_build.empty())
    j["OnBuild"] = string_array(c.on_build);
  if (c.shell)
    j["Shell"] = string_array(*c.shell);
  return j;
}

ordered_json history_json(const HistoryEntry& h) {
  ordered_json j = ordered_json::object();
  put_nonempty(j, "created", h.created);
  put_nonempty(j, "created_by", h.created_by);
  put_nonempty(j, "author", h.author);
  put_nonempty(j, "comment", h.comment);
  if (h.empty_layer)
    j["empty_layer"] = true;
  return j;
}

// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's civil_from_days), so that
// formatting does not depend on gmtime_r, the TZ environment or time_t's width.
void civil_from_days(int64_t days, int64_t& year, int& month, int& day) {
  days += 719468;
  const int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const int64_t doe = days - era * 146097;                                    // [0, 146096]
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;  // [0, 399]
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);                // [0, 365]
  const int64_t mp = (5 * doy + 2) / 153;                                     // [0, 11]
  day = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  month = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  year = yoe + era * 400 + (month <= 2 ? 1 : 0);
}

}  // namespace

std::string format_rfc3339(int64_t unix_seconds) {
  // Seconds of 0000-01-01 and of 10000-01-01 relative to the epoch.
  constexpr int64_t kMin = -62167219200;
  constexpr int64_t kMax = 253402300800;
  if (unix_seconds < kMin || unix_seconds >= kMax)
    throw Error("cannot format timestamp " + std::to_string(unix_seconds) +
                " as RFC 3339: the year is outside 0000..9999");
  int64_t days = unix_seconds / 86400;
  int64_t secs = unix_seconds % 86400;
  if (secs < 0) {
    secs += 86400;
    days -= 1;
  }
  int64_t year = 0;
  int month = 0, day = 0;
  civil_from_days(days, year, month, day);
  char buf[48];  // room for any int the compiler cannot prove in range
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02dZ", static_cast<int>(year), month,
                day, static_cast<int>(secs / 3600), static_cast<int>(secs / 60 % 60),
                static_cast<int>(secs % 60));
  return buf;
}

std::string serialize(const ImageConfig& c) {
  if (!c.unknown.is_null() && !c.unknown.is_object())
    throw Error(
        std::string("cannot serialize image config: unknown fields must be an object, got ") +
        c.unknown.type_name());
  ordered_json j = ordered_json::object();
  put_nonempty(j, "created", c.created);
  put_nonempty(j, "author", c.author);
  j["architecture"] = c.architecture;
  j["os"] = c.os;
  put_nonempty(j, "os.version", c.os_version);
  put_nonempty(j, "variant", c.variant);
  j["config"] = container_config_json(c.config);
  ordered_json diff_ids = ordered_json::array();
  for (size_t i = 0; i < c.diff_ids.size(); ++i) {
    if (!c.diff_ids[i].valid())
      throw Error("cannot serialize image config: diff ID " + std::to_string(i) + " is unset");
    diff_ids.push_back(c.diff_ids[i].str());
  }
  j["rootfs"] = ordered_json{{"type", "layers"}, {"diff_ids", std::move(diff_ids)}};
  if (!c.history.empty()) {
    ordered_json history = ordered_json::array();
    for (const HistoryEntry& h : c.history)
      history.push_back(history_json(h));
    j["history"] = std::move(history);
  }
  if (c.unknown.is_object()) {
    // nlohmann::json keeps object keys sorted, so these come out in a fixed order.
    for (const auto& item : c.unknown.items()) {
      if (!is_modelled(item.key()))
        j[item.key()] = ordered_json(item.value());
    }
  }
  return detail::dump_json(j, kDoc);
}

ImageConfig parse_image_config(std::string_view text) {
  json j = detail::parse_json_object(text, kDoc);
  ImageConfig c;
  c.created = optional_string(j, "created", "");
  c.author = optional_string(j, "author", "");
  c.architecture = optional_string(j, "architecture", "");
  c.os = optional_string(j, "os", "");
  c.os_version = optional_string(j, "os.version", "");
  c.variant = optional_string(j, "variant", "");
  if (const json* m = json_member(j, "config"))
    c.config = parse_container_config(*m);
  if (const json* rootfs = json_member(j, "rootfs")) {
    detail::expect_json_object(*rootfs, kDoc, "rootfs");
    std::string type = optional_string(*rootfs, "type", "rootfs");
    // The spec requires "layers"; an absent type is tolerated like any other missing field.
    if (!type.empty() && type != "layers")
      json_fail(kDoc, "rootfs.type", "expected \"layers\", got " + quote(type));
    if (const json* ids = json_member(*rootfs, "diff_ids")) {
      if (!ids->is_array())
        json_fail(kDoc, "rootfs.diff_ids",
                  std::string("expected an array of digests, got ") + ids->type_name());
      for (size_t i = 0; i < ids->size(); ++i)
        c.diff_ids.push_back(
            detail::json_digest((*ids)[i], kDoc, "rootfs.diff_ids[" + std::to_string(i) + "]"));
    }
  }
  if (const json* history = json_member(j, "history")) {
    if (!history->is_array())
      json_fail(kDoc, "history", std::string("expected an array, got ") + history->type_name());
    for (size_t i = 0; i < history->size(); ++i)
      c.history.push_back(parse_history_entry((*history)[i], "history[" + std::to_string(i) + "]"));
  }
  for (const auto& item : j.items()) {
    if (!is_modelled(item.key()))
      c.unknown[item.key()] = item.value();
  }
  return c;
}

Platform platform_of(const ImageConfig& config) {
  return Platform{config.os, config.architecture, config.variant};
}

Digest chain_id(const std::vector<Digest>& diff_ids) {
  if (diff_ids.empty())
    return {};
  Digest chain = diff_ids.front();
  for (size_t i = 1; i < diff_ids.size(); ++i) {
    chain = sha256_of(chain.str() + " " + diff_ids[i].str());
  }
  return chain;
}

}  // namespace kiln::oci
