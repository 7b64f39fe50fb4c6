#include "kiln/oci/registries_conf.hpp"

#include <cstdlib>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"

namespace kiln::oci {
namespace fs = std::filesystem;

namespace {

// The quoted strings of a TOML value: "a" or ["a", 'b'].
std::vector<std::string> strings_of(std::string_view value) {
  std::vector<std::string> out;
  for (size_t i = 0; i < value.size(); ++i) {
    char q = value[i];
    if (q != '"' && q != '\'')
      continue;
    size_t end = value.find(q, i + 1);
    if (end == std::string_view::npos)
      break;
    out.emplace_back(value.substr(i + 1, end - i - 1));
    i = end;
  }
  return out;
}

std::string without_comment(std::string_view line) {
  // '#' starts a comment outside quotes.
  char quote = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quote) {
      if (c == quote)
        quote = 0;
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '#') {
      return std::string(trim(line.substr(0, i)));
    }
  }
  return std::string(trim(line));
}

}  // namespace

std::vector<std::string> parse_insecure_registries(std::string_view toml) {
  std::vector<std::string> out;
  std::string table;
  std::string location;
  bool insecure = false;
  auto finish_registry = [&] {
    if (table == "[[registry]]" && insecure && !location.empty())
      out.push_back(location);
    location.clear();
    insecure = false;
  };
  std::string pending;  // a v1 array spanning several lines
  for (const std::string& raw : split(std::string(toml), '\n')) {
    std::string line = without_comment(raw);
    if (!pending.empty()) {
      pending += " " + line;
      if (line.find(']') == std::string::npos)
        continue;
      for (std::string& r : strings_of(pending))
        out.push_back(std::move(r));
      pending.clear();
      continue;
    }
    if (line.empty())
      continue;
    if (line.front() == '[') {
      finish_registry();
      table = line;
      continue;
    }
    size_t eq = line.find('=');
    if (eq == std::string::npos)
      continue;
    std::string key(trim(std::string_view(line).substr(0, eq)));
    std::string value(trim(std::string_view(line).substr(eq + 1)));
    if (table == "[[registry]]") {
      if (key == "location") {
        auto s = strings_of(value);
        if (!s.empty())
          location = s.front();
      } else if (key == "insecure") {
        insecure = value == "true";
      }
    } else if (table == "[registries.insecure]" && key == "registries") {
      if (value.find('[') != std::string::npos && value.find(']') == std::string::npos) {
        pending = value;
        continue;
      }
      for (std::string& r : strings_of(value))
        out.push_back(std::move(r));
    }
  }
  finish_registry();
  return out;
}

std::vector<std::string> insecure_registries() {
  std::vector<fs::path> files;
  if (const char* conf = std::getenv("CONTAINERS_REGISTRIES_CONF"); conf && *conf) {
    files.push_back(conf);
  } else {
    files.push_back("/etc/containers/registries.conf");
    if (const char* home = std::getenv("HOME"); home && *home)
      files.push_back(fs::path(home) / ".config" / "containers" / "registries.conf");
  }
  std::vector<std::string> out;
  for (const fs::path& file : files) {
    try {
      for (std::string& r : parse_insecure_registries(read_file(file)))
        out.push_back(std::move(r));
    } catch (const Error&) {
      // unreadable: nothing marked insecure there
    }
  }
  return out;
}

}  // namespace kiln::oci
