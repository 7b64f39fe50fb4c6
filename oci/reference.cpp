#include "kiln/oci/reference.hpp"

#include <algorithm>

#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"

namespace kiln::oci {
namespace {

// Docker Hub's canonical domain, its legacy alias and the namespace of official images.
constexpr std::string_view kDefaultDomain = "docker.io";
constexpr std::string_view kLegacyDomain = "index.docker.io";
constexpr std::string_view kOfficialPrefix = "library/";
constexpr std::string_view kDefaultTag = "latest";
// distribution/reference's RepositoryNameTotalLengthMax; it bounds the path, not the domain.
constexpr size_t kMaxPathLength = 255;
constexpr size_t kMaxTagLength = 128;

bool is_lower_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}
bool is_alnum(char c) {
  return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}
bool is_word(char c) {
  return is_alnum(c) || c == '_';
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// pathComponent: [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
bool valid_path_component(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  for (;;) {
    if (i == n || !is_lower_alnum(s[i]))
      return false;  // every run, including the first, needs at least one alphanumeric
    while (i < n && is_lower_alnum(s[i]))
      ++i;
    if (i == n)
      return true;
    if (s[i] == '.') {
      ++i;
    } else if (s[i] == '_') {
      i += (i + 1 < n && s[i + 1] == '_') ? 2 : 1;
    } else if (s[i] == '-') {
      while (i < n && s[i] == '-')
        ++i;
    } else {
      return false;
    }
  }
}

// domainNameComponent: [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
bool valid_domain_label(std::string_view s) {
  if (s.empty() || !is_alnum(s.front()) || !is_alnum(s.back()))
    return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return is_alnum(c) || c == '-'; });
}

// host [":" port], host = label ("." label)* | "[" ipv6 "]"
bool valid_domain(std::string_view d) {
  std::string_view port;
  if (!d.empty() && d.front() == '[') {
    size_t close = d.find(']');
    if (close == std::string_view::npos || close == 1)
      return false;
    std::string_view address = d.substr(1, close - 1);
    if (!std::all_of(address.begin(), address.end(), [](char c) { return is_hex(c) || c == ':'; }))
      return false;
    port = d.substr(close + 1);
  } else {
    size_t colon = d.find(':');
    std::string_view host = d.substr(0, colon);
    if (colon != std::string_view::npos)
      port = d.substr(colon);
    for (const std::string& label : split(host, '.')) {
      if (!valid_domain_label(label))
        return false;
    }
  }
  if (port.empty())
    return true;
  return port.size() > 1 && port.front() == ':' &&
         std::all_of(port.begin() + 1, port.end(), is_digit);
}

// tag: [\w][\w.-]{0,127}
bool valid_tag(std::string_view s) {
  return !s.empty() && s.size() <= kMaxTagLength && is_word(s.front()) &&
         std::all_of(s.begin(), s.end(), [](char c) { return is_word(c) || c == '.' || c == '-'; });
}

bool is_image_id(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return is_digit(c) || (c >= 'a' && c <= 'f');
         });
}

// Docker's splitDockerDomain: the first component names a registry only when it cannot be a
// Docker Hub namespace (those are lower case and contain neither '.' nor ':') or is "localhost".
void split_domain(std::string_view text, std::string& domain, std::string& remainder) {
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    domain = kDefaultDomain;
    remainder = std::string(kOfficialPrefix) + std::string(text);
    return;
  }
  std::string_view first = text.substr(0, slash);
  std::string_view rest = text.substr(slash + 1);
  if (first == "localhost" || first.find_first_of(".:") != std::string_view::npos ||
      to_lower(first) != first) {
    domain = first == kLegacyDomain ? kDefaultDomain : first;
    remainder = rest;
  } else {
    domain = kDefaultDomain;
    remainder = text;
  }
  // "docker.io/alpine" is the official image, as plain "alpine" is.
  if (domain == kDefaultDomain && remainder.find('/') == std::string::npos)
    remainder = std::string(kOfficialPrefix) + remainder;
}

// Fills ref, or returns why the text is not a reference.
std::string parse_into(std::string_view text, Reference& ref) {
  if (text.empty())
    return "empty reference";
  if (is_image_id(text))
    return "a 64-digit hexadecimal string is an image ID, not a repository name";
  std::string remainder;
  split_domain(text, ref.domain, remainder);

  std::string_view name = remainder;
  bool has_digest = false;
  if (size_t at = name.find('@'); at != std::string_view::npos) {
    std::string_view digest = name.substr(at + 1);
    name = name.substr(0, at);
    if (digest.empty())
      return "missing digest after '@'";
    ref.digest = Digest::try_parse(digest);
    if (!ref.digest)
      return "invalid digest " + quote(digest) + " (expected sha256:<64 lower-case hex digits>)";
    has_digest = true;
  }
  bool has_tag = false;
  if (size_t colon = name.find(':'); colon != std::string_view::npos) {
    std::string_view tag = name.substr(colon + 1);
    name = name.substr(0, colon);
    if (!valid_tag(tag))
      return "invalid tag " + quote(tag) +
             " (1 to 128 of A-Z a-z 0-9 _ . -, not starting with '.' or '-')";
    ref.tag = tag;
    has_tag = true;
  }

  if (to_lower(name) != name)
    return "repository name " + quote(name) + " must be lowercase";
  if (!valid_domain(ref.domain))
    return "invalid registry host " + quote(ref.domain);
  if (name.size() > kMaxPathLength)
    return "repository name is " + std::to_string(name.size()) + " characters long, more than " +
           std::to_string(kMaxPathLength);
  for (const std::string& component : split(name, '/')) {
    if (component.empty())
      return "empty component in repository name " + quote(name);
    if (!valid_path_component(component))
      return "invalid repository name component " + quote(component) +
             " (lower-case letters and digits, separated by '.', '_', '__' or '-')";
  }
  ref.path = name;
  if (!has_tag && !has_digest)
    ref.tag = kDefaultTag;
  return {};
}

}  // namespace

std::string Reference::name() const {
  return domain + "/" + path;
}

std::string Reference::str() const {
  std::string out = name();
  if (!tag.empty())
    out += ":" + tag;
  if (digest)
    out += "@" + digest->str();
  return out;
}

std::string Reference::familiar() const {
  std::string out;
  if (domain == kDefaultDomain) {
    out = path;
    // Only single-level official names are shortened: "library/a/b" keeps its prefix, as docker's
    // familiarizeName does, so that the short form parses back to the same reference.
    if (starts_with(path, kOfficialPrefix) &&
        path.find('/', kOfficialPrefix.size()) == std::string::npos)
      out = path.substr(kOfficialPrefix.size());
  } else {
    out = name();
  }
  if (!tag.empty())
    out += ":" + tag;
  if (digest)
    out += "@" + digest->str();
  return out;
}

std::optional<Reference> try_parse_reference(std::string_view text) {
  Reference ref;
  if (!parse_into(text, ref).empty())
    return std::nullopt;
  return ref;
}

Reference parse_reference(std::string_view text) {
  Reference ref;
  std::string why = parse_into(text, ref);
  if (!why.empty())
    throw Error("invalid image reference " + quote(text) + ": " + why);
  return ref;
}

}  // namespace kiln::oci
