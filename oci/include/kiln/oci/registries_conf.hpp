// containers-registries.conf(5), as podman, buildah and skopeo read it, parsed with toml++:
// $CONTAINERS_REGISTRIES_CONF alone when set; else /etc/containers/registries.conf, the drop-ins
// in /etc/containers/registries.conf.d/*.conf (in name order), then the user's
// ~/.config/containers/registries.conf and its registries.conf.d. A later file's [[registry]]
// with the same prefix replaces an earlier one; its unqualified-search-registries replace the
// earlier list; [aliases] add up.
//
// What is interpreted (version 2, and version 1's [registries.search|insecure|block]):
//   [[registry]]  prefix (default: location), location, insecure, blocked,
//                 mirror-by-digest-only, [[registry.mirror]] location, insecure,
//                 pull-from-mirror ("all", "digest-only", "tag-only")
//   unqualified-search-registries, [aliases]
// A prefix is "host[:port][/path...]" (matching that repository or anything below it) or
// "*.domain" (any host under domain); the longest match wins. A file that is not valid TOML is
// an error naming FILE:LINE:COL; a missing file is no error.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/oci/reference.hpp"

namespace kiln::oci {

struct RegistryMirror {
  std::string location;
  bool insecure = false;
  std::string pull_from_mirror = "all";  // all | digest-only | tag-only
};

struct RegistryEntry {
  std::string prefix;
  std::string location;  // the prefix's replacement; "" keeps the name
  bool insecure = false;
  bool blocked = false;
  bool mirror_by_digest_only = false;
  std::vector<RegistryMirror> mirrors;
};

struct RegistriesConf {
  std::vector<RegistryEntry> registries;
  std::vector<std::string> unqualified_search;
  std::map<std::string, std::string> aliases;
  std::string short_name_mode = "enforcing";  // enforcing | permissive | disabled

  // The entry whose prefix matches `name` (a reference's "domain/path") best; null for none.
  const RegistryEntry* find(std::string_view name) const;
  // Every location and mirror marked insecure ("host[:port]" or longer prefixes).
  std::vector<std::string> insecure() const;
  // Adds `later`'s settings on top of these (the merge rule above).
  void merge(RegistriesConf later);
};

// Parses one file's text; `file` names it in errors ("FILE:LINE:COL: reason").
RegistriesConf parse_registries_conf(std::string_view toml, const std::string& file);

// The configuration of the files this user has (see above). Throws kiln::Error for a file that
// exists and cannot be parsed.
RegistriesConf load_registries_conf();

// The insecure registries of the files the user has (load_registries_conf().insecure()).
std::vector<std::string> insecure_registries();

// Where a pull of `ref` goes, in order: the mirrors that may serve it (pull-from-mirror and
// mirror-by-digest-only decide), then the registry itself (its location rewrite applied).
// Throws kiln::Error when the registry is blocked.
struct PullSource {
  Reference ref;          // the reference at that source
  bool insecure = false;  // TLS not verified / plain HTTP allowed there
  bool mirror = false;
};
std::vector<PullSource> pull_sources(const RegistriesConf& conf, const Reference& ref);

// Whether `name` as written is a short name: its first component is no domain (no '.' or ':',
// not "localhost"), so which registry it means is registries.conf's to say.
bool is_short_name(std::string_view name);

// The fully qualified references a pull of `name` tries, in order. A qualified name is itself.
// A short name: its alias ([aliases], the tag or digest kept), else the unqualified-search
// registries — one is used as is; several are an error in short-name-mode "enforcing" (kiln
// never prompts) naming them, and tried in order otherwise — else docker.io (Docker's rule,
// when registries.conf names no search registry). Throws kiln::Error for an ambiguous or
// malformed name.
std::vector<Reference> resolve_pull_name(const RegistriesConf& conf, std::string_view name);

}  // namespace kiln::oci
