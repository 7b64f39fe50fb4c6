#include "run_mount.hpp"

#include <charconv>

#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"

namespace kiln::frontend {
namespace {

bool parse_bool(const std::string& key, const std::string& value) {
  if (value.empty() || iequals(value, "true") || value == "1")
    return true;
  if (iequals(value, "false") || value == "0")
    return false;
  throw Error("--mount " + key + "=" + value + ": expected true or false");
}

uint32_t parse_number(const std::string& key, const std::string& value, int base = 10) {
  uint32_t n = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n, base);
  if (ec != std::errc() || end != value.data() + value.size() || value.empty()) {
    throw Error("--mount " + key + "=" + value + ": not a number");
  }
  return n;
}

// "64m", "1g", "1024" → bytes.
uint64_t parse_size(const std::string& value) {
  uint64_t n = 0;
  const char* end = value.data() + value.size();
  auto [p, ec] = std::from_chars(value.data(), end, n);
  if (ec != std::errc() || p == value.data())
    throw Error("--mount size=" + value + ": not a size");
  std::string unit = to_lower(std::string_view(p, static_cast<size_t>(end - p)));
  uint64_t scale = unit.empty() || unit == "b"   ? 1
                   : unit == "k" || unit == "kb" ? 1024
                   : unit == "m" || unit == "mb" ? 1024 * 1024
                   : unit == "g" || unit == "gb" ? 1024ull * 1024 * 1024
                                                 : 0;
  if (scale == 0)
    throw Error("--mount size=" + value + ": unknown unit");
  return n * scale;
}

}  // namespace

MountSpec parse_run_mount(std::string_view spec) {
  MountSpec spec_out;
  Mount& m = spec_out.mount;
  std::vector<std::pair<std::string, std::string>> fields;
  for (const std::string& field : split_unquoted(spec, ',')) {
    if (field.empty())
      continue;
    size_t eq = field.find('=');
    std::string key = to_lower(field.substr(0, eq));
    std::string value = eq == std::string::npos ? "" : field.substr(eq + 1);
    if (key == "type") {
      if (value == "bind")
        m.type = Mount::Type::kBind;
      else if (value == "cache")
        m.type = Mount::Type::kCache;
      else if (value == "tmpfs")
        m.type = Mount::Type::kTmpfs;
      else if (value == "secret")
        m.type = Mount::Type::kSecret;
      else if (value == "ssh")
        m.type = Mount::Type::kSsh;
      else
        throw Error("--mount type=" + value +
                    ": unknown mount type (bind, cache, tmpfs, secret, ssh)");
      continue;
    }
    fields.emplace_back(key, value);
  }
  if (m.type == Mount::Type::kCache)
    m.readonly = false;
  if (m.type == Mount::Type::kTmpfs)
    m.readonly = false;
  if (m.type == Mount::Type::kSecret)
    m.mode = 0400;
  if (m.type == Mount::Type::kSsh)
    m.mode = 0600;
  for (const auto& [key, value] : fields) {
    if (key == "target" || key == "dst" || key == "destination") {
      m.target = value;
    } else if (key == "source" || key == "src") {
      m.source = value;
    } else if (key == "from") {
      spec_out.from = value;
    } else if (key == "readonly" || key == "ro") {
      m.readonly = parse_bool(key, value);
    } else if (key == "readwrite" || key == "rw") {
      m.readonly = !parse_bool(key, value);
    } else if (key == "id") {
      m.id = value;
    } else if (key == "sharing") {
      if (value != "shared" && value != "private" && value != "locked") {
        throw Error("--mount sharing=" + value + ": expected shared, private or locked");
      }
      m.sharing = value == "shared"    ? Mount::Sharing::kShared
                  : value == "private" ? Mount::Sharing::kPrivate
                                       : Mount::Sharing::kLocked;
    } else if (key == "mode") {
      m.mode = parse_number(key, value, 8);
    } else if (key == "uid") {
      m.uid = parse_number(key, value);
    } else if (key == "gid") {
      m.gid = parse_number(key, value);
    } else if (key == "size" || key == "tmpfs-size") {
      m.size = parse_size(value);
    } else if (key == "env" && m.type == Mount::Type::kSecret) {
      if (value.empty() || value.find_first_of("= \t") != std::string::npos)
        throw Error("--mount env=" + value + ": expected the name of an environment variable");
      m.env = value;
    } else if (key == "required") {
      m.required = parse_bool(key, value);
    } else {
      throw Error("--mount: unknown option " + quote(key));
    }
  }
  if (m.type == Mount::Type::kSecret) {
    if (m.id.empty() && !m.target.empty()) {
      m.id = m.target.substr(m.target.rfind('/') + 1);
    }
    if (m.id.empty())
      throw Error("--mount type=secret needs id=ID");
    // env=VAR puts the secret in the step's environment; a file only when a target is given.
    if (m.target.empty() && m.env.empty())
      m.target = "/run/secrets/" + m.id;
    if (m.target.empty())
      return spec_out;
  }
  if (m.type == Mount::Type::kSsh) {
    if (m.id.empty())
      m.id = "default";
    if (m.target.empty())
      return spec_out;  // the solver numbers the agent sockets
  }
  if (m.target.empty())
    throw Error("--mount " + std::string(spec) + ": target=PATH is required");
  return spec_out;
}

}  // namespace kiln::frontend
