#include "kiln/oci/registries_conf.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <cstdlib>
#include <sstream>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"

namespace kiln::oci {
namespace fs = std::filesystem;

namespace {

std::vector<std::string> string_array(toml::node_view<toml::node> node) {
  std::vector<std::string> out;
  if (const toml::array* array = node.as_array()) {
    for (const toml::node& item : *array) {
      if (std::optional<std::string> s = item.value<std::string>())
        out.push_back(*s);
    }
  }
  return out;
}

// Whether `prefix` matches `name` ("domain/path"), and how specific the match is (its length).
size_t match_length(const std::string& prefix, std::string_view name) {
  if (prefix.starts_with("*.")) {
    std::string_view host = name.substr(0, name.find('/'));
    std::string_view suffix = std::string_view(prefix).substr(1);  // ".domain"
    return host.size() > suffix.size() && host.ends_with(suffix) ? prefix.size() : 0;
  }
  if (name == prefix)
    return prefix.size();
  if (name.size() > prefix.size() && name.starts_with(prefix) && name[prefix.size()] == '/')
    return prefix.size();
  return 0;
}

std::string host_of(const std::string& location) {
  return location.substr(0, location.find('/'));
}

// `name` with `entry`'s prefix replaced by `location` (a wildcard prefix keeps the name).
std::string rewrite(const RegistryEntry& entry, const std::string& location,
                    const std::string& name) {
  if (location.empty() || entry.prefix.starts_with("*."))
    return name;
  return location + name.substr(entry.prefix.size());
}

}  // namespace

const RegistryEntry* RegistriesConf::find(std::string_view name) const {
  const RegistryEntry* best = nullptr;
  size_t best_length = 0;
  for (const RegistryEntry& entry : registries) {
    size_t length = match_length(entry.prefix, name);
    if (length > best_length) {
      best = &entry;
      best_length = length;
    }
  }
  return best;
}

std::vector<std::string> RegistriesConf::insecure() const {
  std::vector<std::string> out;
  for (const RegistryEntry& entry : registries) {
    if (entry.insecure)
      out.push_back(host_of(entry.location.empty() ? entry.prefix : entry.location));
    for (const RegistryMirror& mirror : entry.mirrors) {
      if (mirror.insecure)
        out.push_back(host_of(mirror.location));
    }
  }
  return out;
}

void RegistriesConf::merge(RegistriesConf later) {
  for (RegistryEntry& entry : later.registries) {
    std::erase_if(registries, [&](const RegistryEntry& e) { return e.prefix == entry.prefix; });
    registries.push_back(std::move(entry));
  }
  if (!later.unqualified_search.empty())
    unqualified_search = std::move(later.unqualified_search);
  if (later.short_name_mode != "enforcing")
    short_name_mode = later.short_name_mode;
  for (auto& [name, value] : later.aliases)
    aliases[name] = std::move(value);
}

RegistriesConf parse_registries_conf(std::string_view text, const std::string& file) {
  toml::table table;
  try {
    table = toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    std::ostringstream where;
    where << file << ":" << e.source().begin.line << ":" << e.source().begin.column << ": "
          << e.description();
    throw Error(where.str());
  }
  RegistriesConf conf;
  auto bad = [&](const std::string& what) { throw Error(file + ": " + what); };
  if (const toml::array* entries = table["registry"].as_array()) {
    for (const toml::node& node : *entries) {
      const toml::table* t = node.as_table();
      if (!t)
        bad("[[registry]] entries must be tables");
      RegistryEntry entry;
      entry.location = (*t)["location"].value_or(std::string());
      entry.prefix = (*t)["prefix"].value_or(entry.location);
      if (entry.prefix.empty())
        bad("a [[registry]] needs a location or a prefix");
      if (entry.prefix.starts_with("*.") && !entry.location.empty() &&
          entry.location != entry.prefix) {
        bad("[[registry]] prefix " + entry.prefix + ": a wildcard prefix cannot have a location");
      }
      entry.insecure = (*t)["insecure"].value_or(false);
      entry.blocked = (*t)["blocked"].value_or(false);
      entry.mirror_by_digest_only = (*t)["mirror-by-digest-only"].value_or(false);
      if (const toml::array* mirrors = (*t)["mirror"].as_array()) {
        for (const toml::node& m : *mirrors) {
          const toml::table* mt = m.as_table();
          if (!mt)
            bad("[[registry.mirror]] entries must be tables");
          RegistryMirror mirror;
          mirror.location = (*mt)["location"].value_or(std::string());
          if (mirror.location.empty())
            bad("a [[registry.mirror]] of " + entry.prefix + " needs a location");
          mirror.insecure = (*mt)["insecure"].value_or(false);
          mirror.pull_from_mirror = (*mt)["pull-from-mirror"].value_or(std::string("all"));
          if (mirror.pull_from_mirror != "all" && mirror.pull_from_mirror != "digest-only" &&
              mirror.pull_from_mirror != "tag-only") {
            bad("pull-from-mirror " + quote(mirror.pull_from_mirror) +
                ": expected all, digest-only or tag-only");
          }
          entry.mirrors.push_back(std::move(mirror));
        }
      }
      conf.registries.push_back(std::move(entry));
    }
  }
  conf.unqualified_search = string_array(table["unqualified-search-registries"]);
  if (std::optional<std::string> mode = table["short-name-mode"].value<std::string>()) {
    if (*mode != "enforcing" && *mode != "permissive" && *mode != "disabled")
      bad("short-name-mode " + quote(*mode) + ": expected enforcing, permissive or disabled");
    conf.short_name_mode = *mode;
  }
  if (const toml::table* aliases = table["aliases"].as_table()) {
    for (const auto& [name, value] : *aliases) {
      if (std::optional<std::string> s = value.value<std::string>())
        conf.aliases[std::string(name.str())] = *s;
    }
  }
  // Version 1.
  for (const std::string& r : string_array(table["registries"]["search"]["registries"]))
    conf.unqualified_search.push_back(r);
  auto v1_entry = [&](const std::string& location) -> RegistryEntry& {
    auto it = std::find_if(conf.registries.begin(), conf.registries.end(),
                           [&](const RegistryEntry& e) { return e.prefix == location; });
    if (it != conf.registries.end())
      return *it;
    conf.registries.push_back({location, location, false, false, false, {}});
    return conf.registries.back();
  };
  for (const std::string& r : string_array(table["registries"]["insecure"]["registries"]))
    v1_entry(r).insecure = true;
  for (const std::string& r : string_array(table["registries"]["block"]["registries"]))
    v1_entry(r).blocked = true;
  return conf;
}

RegistriesConf load_registries_conf() {
  std::vector<fs::path> files;
  auto with_drop_ins = [&](const fs::path& main) {
    files.push_back(main);
    fs::path dir = main.string() + ".d";
    std::error_code ec;
    std::vector<fs::path> drop_ins;
    for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
      if (e.path().extension() == ".conf")
        drop_ins.push_back(e.path());
    }
    std::sort(drop_ins.begin(), drop_ins.end());
    files.insert(files.end(), drop_ins.begin(), drop_ins.end());
  };
  if (const char* conf = std::getenv("CONTAINERS_REGISTRIES_CONF"); conf && *conf) {
    files.push_back(conf);
  } else {
    with_drop_ins("/etc/containers/registries.conf");
    if (const char* home = std::getenv("HOME"); home && *home)
      with_drop_ins(fs::path(home) / ".config" / "containers" / "registries.conf");
  }
  RegistriesConf out;
  for (const fs::path& file : files) {
    std::error_code ec;
    if (!fs::exists(file, ec))
      continue;
    out.merge(parse_registries_conf(read_file(file), file.string()));
  }
  return out;
}

std::vector<std::string> insecure_registries() {
  return load_registries_conf().insecure();
}

std::vector<PullSource> pull_sources(const RegistriesConf& conf, const Reference& ref) {
  std::string name = ref.domain + "/" + ref.path;
  const RegistryEntry* entry = conf.find(name);
  if (!entry)
    return {{ref, false, false}};
  if (entry->blocked)
    throw Error("pulling " + ref.familiar() + ": the registry " + entry->prefix +
                " is blocked in registries.conf");
  auto at = [&](const std::string& location) {
    Reference r =
        parse_reference(rewrite(*entry, location, name) + (ref.tag.empty() ? "" : ":" + ref.tag) +
                        (ref.digest ? "@" + ref.digest->str() : ""));
    return r;
  };
  std::vector<PullSource> out;
  bool by_digest = ref.digest.has_value();
  for (const RegistryMirror& mirror : entry->mirrors) {
    if (entry->mirror_by_digest_only && !by_digest)
      continue;
    if ((mirror.pull_from_mirror == "digest-only" && !by_digest) ||
        (mirror.pull_from_mirror == "tag-only" && by_digest))
      continue;
    out.push_back({at(mirror.location), mirror.insecure, true});
  }
  out.push_back({at(entry->location), entry->insecure, false});
  return out;
}

bool is_short_name(std::string_view name) {
  size_t slash = name.find('/');
  if (slash == std::string_view::npos)
    return true;
  std::string_view first = name.substr(0, slash);
  return first != "localhost" && first.find_first_of(".:") == std::string_view::npos &&
         first == to_lower(first);
}

std::vector<Reference> resolve_pull_name(const RegistriesConf& conf, std::string_view name) {
  if (!is_short_name(name))
    return {parse_reference(name)};
  // The repository part, without tag or digest, is what aliases name.
  std::string text(name);
  size_t at = text.find('@');
  std::string suffix = at == std::string::npos ? "" : text.substr(at);
  std::string repo = at == std::string::npos ? text : text.substr(0, at);
  size_t colon = repo.rfind(':');
  if (colon != std::string::npos) {
    suffix = repo.substr(colon) + suffix;
    repo = repo.substr(0, colon);
  }
  if (auto it = conf.aliases.find(repo); it != conf.aliases.end())
    return {parse_reference(it->second + suffix)};
  if (conf.unqualified_search.empty())
    return {parse_reference(name)};  // docker.io, as docker and BuildKit resolve it
  std::vector<Reference> out;
  for (const std::string& registry : conf.unqualified_search)
    out.push_back(parse_reference(registry + "/" + text));
  if (out.size() > 1 && conf.short_name_mode == "enforcing") {
    std::vector<std::string> names;
    for (const Reference& r : out)
      names.push_back(r.name());
    throw Error("the short name " + quote(text) + " is ambiguous: it could be " +
                join(names, ", ") +
                " (unqualified-search-registries in registries.conf, short-name-mode "
                "enforcing); write the whole name, or add an alias under [aliases]");
  }
  return out;
}

}  // namespace kiln::oci
