// Turning a built image into outputs: blobs and tags in the store, OCI layouts and archives,
// docker-archive tarballs, and the root filesystem as a directory or a tar.
//
// Every writer creates its output atomically where the format allows it (a temporary file
// renamed into place), so a failed export leaves no half-written archive behind.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kiln/oci/descriptor.hpp"
#include "kiln/oci/image_config.hpp"
#include "kiln/oci/store.hpp"

namespace kiln::exporter {

enum class ManifestFormat { kOci, kDocker };

struct CommittedImage {
  oci::Descriptor manifest;  // what tags point at
  oci::Digest config;        // the image ID
};

// Writes the config and the manifest to the store (layers must already be there). With kDocker,
// Docker v2 schema 2 media types are used for the manifest, config and gzip layers.
// `annotations` go into the manifest (OCI only: Docker's schema 2 has no annotations).
CommittedImage commit_image(oci::Store& store, const oci::ImageConfig& config,
                            const std::vector<oci::Descriptor>& layers, ManifestFormat format,
                            const std::map<std::string, std::string>& annotations = {});

// Copies the image `top` (manifest or index, with everything it references) from the store into
// an OCI image layout directory, creating it when needed and adding to its index.json otherwise;
// each name becomes a descriptor with an org.opencontainers.image.ref.name annotation (none:
// one unnamed descriptor).
void write_oci_layout(oci::Store& store, const oci::Descriptor& top,
                      const std::vector<std::string>& names, const std::filesystem::path& dir);

// The same layout as a tar archive (oci-archive).
void write_oci_archive(oci::Store& store, const oci::Descriptor& top,
                       const std::vector<std::string>& names, const std::filesystem::path& file);

// A `docker save`-format tarball (manifest.json, repositories, config, uncompressed layer tars)
// that `docker load` and `podman load` read. `manifest` must be a single-platform manifest.
void write_docker_archive(oci::Store& store, const oci::Descriptor& manifest,
                          const std::vector<std::string>& names, const std::filesystem::path& file);

// The image's filesystem (an unpacked root) copied into `dest` (created when missing), with
// ownership when running as root, modes, times, links and xattrs.
void write_rootfs_directory(const std::filesystem::path& rootfs, const std::filesystem::path& dest);

// The image's filesystem as one uncompressed tar; "-" writes it to standard output.
void write_rootfs_tar(const std::filesystem::path& rootfs, const std::string& dest,
                      const std::optional<int64_t>& source_date_epoch);

}  // namespace kiln::exporter
