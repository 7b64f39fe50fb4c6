// Media types of the OCI image spec and of Docker's image manifest v2 schema 2.
//
// kiln writes OCI types; it reads both, because most images on Docker Hub are still served in
// Docker's schema 2 formats, which are structurally the same documents under other names.
#pragma once

#include <string_view>

namespace kiln::oci::media_type {

inline constexpr const char* kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr const char* kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr const char* kOciConfig = "application/vnd.oci.image.config.v1+json";
inline constexpr const char* kOciLayer = "application/vnd.oci.image.layer.v1.tar";
inline constexpr const char* kOciLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr const char* kOciLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd";
// Deprecated by the spec but still found in (Windows) images; they are layers all the same.
inline constexpr const char* kOciLayerNondistributable =
    "application/vnd.oci.image.layer.nondistributable.v1.tar";
inline constexpr const char* kOciLayerNondistributableGzip =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
inline constexpr const char* kOciLayerNondistributableZstd =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
// The "{}" blob OCI 1.1 uses as the config of artifacts that have none.
inline constexpr const char* kOciEmpty = "application/vnd.oci.empty.v1+json";

inline constexpr const char* kDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr const char* kDockerManifestList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr const char* kDockerConfig = "application/vnd.docker.container.image.v1+json";
inline constexpr const char* kDockerLayer = "application/vnd.docker.image.rootfs.diff.tar";
inline constexpr const char* kDockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip";
inline constexpr const char* kDockerLayerZstd = "application/vnd.docker.image.rootfs.diff.tar.zstd";
inline constexpr const char* kDockerForeignLayer =
    "application/vnd.docker.image.rootfs.foreign.diff.tar";
inline constexpr const char* kDockerForeignLayerGzip =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

// True for an OCI image manifest or a Docker schema 2 manifest.
constexpr bool is_manifest(std::string_view mt) {
  return mt == kOciManifest || mt == kDockerManifest;
}

// True for an OCI image index or a Docker manifest list.
constexpr bool is_index(std::string_view mt) {
  return mt == kOciIndex || mt == kDockerManifestList;
}

// True for an OCI or Docker image config.
constexpr bool is_config(std::string_view mt) {
  return mt == kOciConfig || mt == kDockerConfig;
}

// True for every layer type, compressed or not, including non-distributable (OCI) and foreign
// (Docker) layers, which are ordinary tar layers that registries are not meant to host.
constexpr bool is_layer(std::string_view mt) {
  for (std::string_view known :
       {kOciLayer, kOciLayerGzip, kOciLayerZstd, kOciLayerNondistributable,
        kOciLayerNondistributableGzip, kOciLayerNondistributableZstd, kDockerLayer,
        kDockerLayerGzip, kDockerLayerZstd, kDockerForeignLayer, kDockerForeignLayerGzip}) {
    if (mt == known)
      return true;
  }
  return false;
}

}  // namespace kiln::oci::media_type
