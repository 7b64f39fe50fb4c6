// Image references ("alpine", "ghcr.io/org/app:1@sha256:...") with Docker's normalisation, as
// github.com/distribution/reference parses them (ParseNormalizedNamed + default tag).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "kiln/oci/digest.hpp"

namespace kiln::oci {

struct Reference {
  std::string domain;  // "docker.io", "localhost:5000", "ghcr.io"
  std::string path;    // "library/alpine", "org/app"
  std::string tag;     // "" when only a digest was given
  std::optional<Digest> digest;

  // domain + "/" + path: "docker.io/library/alpine".
  std::string name() const;
  // name[:tag][@digest], fully qualified: "docker.io/library/alpine:3.20".
  std::string str() const;
  // Docker's short form: docker.io and an official image's "library/" dropped, so
  // "alpine:3.20", "org/app:1", "ghcr.io/x/y:1", "alpine@sha256:...".
  std::string familiar() const;

  friend bool operator==(const Reference&, const Reference&) = default;
};

// Parses and normalises a reference the way docker does:
//   "alpine"                      -> docker.io/library/alpine:latest
//   "docker.io/alpine"            -> docker.io/library/alpine:latest
//   "index.docker.io/library/x"   -> docker.io/library/x:latest
//   "localhost/x", "host:5000/x", "my.registry/x" -> that domain (the first component is a domain
//   when it is "localhost", contains '.' or ':', or has upper-case letters)
//   "a@sha256:..."                -> no tag, the digest; "a:1@sha256:..." keeps both
// "latest" is added only when neither a tag nor a digest is given. The repository path must be
// lower case, its components [a-z0-9]+ joined by '.', '_', '__' or '-'+, at most 255 characters;
// the tag matches [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}; the digest must be sha256/sha512 in lower-case
// hex. Throws kiln::Error 'invalid image reference "TEXT": REASON' otherwise.
Reference parse_reference(std::string_view text);

// As parse_reference, but nullopt instead of throwing.
std::optional<Reference> try_parse_reference(std::string_view text);

}  // namespace kiln::oci
