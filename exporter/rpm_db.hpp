// Reading an image's rpm database (sbom.cpp's rpm reader), kept apart so that only this file
// sees librpm's headers.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace kiln::exporter::detail {

struct RpmPackage {
  std::string name, version, release, epoch, architecture, license, vendor;
};

struct RpmDatabase {
  std::string path;  // inside the image, e.g. "usr/lib/sysimage/rpm"
  std::vector<RpmPackage> packages;
};

// The packages of the rpm database under `root` (var/lib/rpm or usr/lib/sysimage/rpm, links
// followed only inside the root); nullopt when there is none. Thread-safe (librpm's global
// configuration is used under a lock). Throws kiln::Error when librpm cannot open it.
std::optional<RpmDatabase> read_rpm_database(const std::filesystem::path& root);

}  // namespace kiln::exporter::detail
