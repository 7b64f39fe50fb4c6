// Finding a base image and bringing it into the store: what FROM and COPY --from=IMAGE read.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/oci/descriptor.hpp"
#include "kiln/oci/image_config.hpp"
#include "kiln/oci/manifest.hpp"
#include "kiln/oci/platform.hpp"
#include "kiln/oci/store.hpp"

namespace kiln::oci {

// One platform's image, with every blob it needs present in the store.
struct ResolvedImage {
  std::string source;   // what the user wrote, for messages
  Descriptor manifest;  // the platform's manifest (never an index)
  Manifest parsed;
  ImageConfig config;
};

// Resolves `ref` for `platform` and makes sure its manifest, config and layers are in `store`:
//   oci:DIR[:TAG]          an OCI image layout directory (TAG: its ref.name annotation; may be
//                          omitted when the layout holds one image)
//   oci-archive:FILE[:TAG] the same as a tar archive
//   docker-archive:FILE    a `docker save` / `podman save` tarball (its first image, or
//                          docker-archive:FILE:NAME for the image tagged NAME)
//   anything else          a name or ID in the store
// An index picks the manifest matching `platform`. Every blob copied in is verified against its
// digest. Throws kiln::Error naming `ref` when it cannot be found, has no manifest for the
// platform (naming both), or is malformed.
ResolvedImage resolve_image(Store& store, std::string_view ref, const Platform& platform);

// `kiln load`: every image of a docker-archive (manifest.json) or an oci-archive (index.json)
// file, or of an OCI layout directory, into `store`, each blob verified against its digest (a
// docker archive's layers against the config's diff IDs) and an index with all it references.
// Returns each image with the names it carries: a docker archive's RepoTags, an OCI entry's
// ref.name annotation when it is a whole reference ("app:1", not a bare tag). Tagging is the
// caller's. Throws kiln::Error naming the file and the cause; the archive is hostile input
// (tar_extract.hpp).
struct LoadedImage {
  Descriptor descriptor;
  std::vector<std::string> names;
};
std::vector<LoadedImage> load_images(Store& store, const std::filesystem::path& archive);

// Whether `ref` names a transport (oci:, oci-archive:, docker-archive:) rather than a name.
bool has_transport(std::string_view ref);

}  // namespace kiln::oci
