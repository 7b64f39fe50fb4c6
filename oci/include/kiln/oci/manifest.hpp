// Image manifests and image indexes (OCI image-spec manifest.md / image-index.md), which Docker's
// schema 2 manifest and manifest list mirror field for field.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/oci/descriptor.hpp"
#include "kiln/oci/platform.hpp"

namespace kiln::oci {

struct Manifest {
  int schema_version = 2;
  std::string media_type;  // kOciManifest or kDockerManifest; may be empty in OCI manifests
  std::string artifact_type;
  Descriptor config;
  std::vector<Descriptor> layers;  // base layer first
  std::optional<Descriptor> subject;
  std::map<std::string, std::string> annotations;

  friend bool operator==(const Manifest&, const Manifest&) = default;
};

struct Index {
  int schema_version = 2;
  std::string media_type;  // kOciIndex or kDockerManifestList; may be empty in OCI indexes
  std::string artifact_type;
  std::vector<Descriptor> manifests;
  std::optional<Descriptor> subject;
  std::map<std::string, std::string> annotations;

  friend bool operator==(const Index&, const Index&) = default;
};

// The canonical bytes of the document, whose sha256 is its digest: keys in a fixed order
// (schemaVersion, mediaType, artifactType, config, layers, subject, annotations; an index has
// manifests in place of config and layers), no whitespace, empty optional fields omitted
// ("layers" and "manifests" are always written). The same value always gives the same bytes.
// Throws kiln::Error when a descriptor is incomplete (see to_json(Descriptor)) or a string is not
// valid UTF-8.
std::string serialize(const Manifest& manifest);
std::string serialize(const Index& index);

// Parses an OCI image manifest or a Docker schema 2 manifest. Unknown fields are ignored, null
// counts as absent. Throws kiln::Error when the text is not a JSON object, schemaVersion is not 2,
// config or layers is missing or malformed, or the document is an index / manifest list.
Manifest parse_manifest(std::string_view json);

// Parses an OCI image index or a Docker manifest list. Throws kiln::Error when the text is not a
// JSON object, schemaVersion is not 2, manifests is missing or malformed, or the document is an
// image manifest.
Index parse_index(std::string_view json);

// The entry of `index` for `platform`: the first whose platform matches (platform_matches()).
// Entries without a platform, and attestation manifests (os "unknown"), are never chosen.
// nullopt when no entry matches.
std::optional<Descriptor> find_platform_manifest(const Index& index, const Platform& platform);

// The platforms `index` offers (the entries find_platform_manifest() may choose), for messages:
// "linux/amd64, linux/arm64", or "none".
std::string platforms_in(const Index& index);

}  // namespace kiln::oci
