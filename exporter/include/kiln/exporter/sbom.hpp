// A software bill of materials of a root filesystem, made by kiln's own readers of the package
// databases an image carries, written as SPDX 2.3 JSON (or CycloneDX 1.5 JSON).
//
// Databases read, and which of their formats:
//   dpkg   var/lib/dpkg/status (the text format every dpkg writes: RFC 822 paragraphs; only
//          "Status: install ok installed" packages count) and var/lib/dpkg/status.d/* (the
//          one-paragraph files distroless images ship instead). The licence comes from
//          usr/share/doc/PACKAGE/copyright when it is a machine-readable (DEP-5) file: its
//          License: fields, mapped to SPDX identifiers (unknown names become LicenseRef-NAME).
//   apk    lib/apk/db/installed (the text database: P:, V:, A:, L:, o: lines per package).
//   rpm    var/lib/rpm or usr/lib/sysimage/rpm, read with librpm from a copy (the image is not
//          touched): rpmdb.sqlite (rpm >= 4.16), Packages.db (ndb) or Packages (Berkeley DB,
//          through librpm's read-only backend). Versions are VERSION-RELEASE; the epoch goes
//          into the purl; the License tag is taken as it is (Fedora's are SPDX expressions).
//          gpg-pubkey entries are keys, not packages, and are left out.
// The distribution (for purls) comes from etc/os-release or usr/lib/os-release (ID, VERSION_ID).
// Without any package database (a FROM scratch image), every regular file is listed with its
// SHA-1 and SHA-256 digests.
//
// Paths are read inside `root` without following symlinks out of it.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace kiln::exporter {

struct SbomPackage {
  std::string name;
  std::string version;
  std::string architecture;
  std::string license;   // an SPDX license expression, or "" when the database has none
  std::string source;    // the database: "dpkg", "apk" or "rpm"
  std::string purl;      // pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64&distro=debian-12
  std::string supplier;  // the maintainer, as the database gives it
};

struct SbomFile {
  std::string path;  // absolute, inside the image
  std::string sha1, sha256;
};

struct SbomScan {
  std::vector<SbomPackage> packages;   // sorted by source, name, architecture
  std::vector<SbomFile> files;         // only without package databases; sorted by path
  std::vector<std::string> databases;  // which were read, e.g. "var/lib/dpkg/status"
  std::vector<std::string> notes;      // what was found but not read
  std::string distro_id, distro_version;
};

// Reads the package databases under `root`. Throws kiln::Error naming the file when a database
// exists but cannot be read.
SbomScan scan_rootfs(const std::filesystem::path& root);

struct SbomSubject {
  std::string name;     // e.g. the image's reference or "image"
  std::string created;  // RFC 3339 (SOURCE_DATE_EPOCH when set)
  std::string tool;     // "kiln-1.2.3"
};

// SPDX 2.3 JSON: one package for the image, which CONTAINS each package (or file); the
// document DESCRIBES the image. The namespace is derived from the content, so the same scan
// gives the same document.
nlohmann::ordered_json spdx_document(const SbomScan& scan, const SbomSubject& subject);
// CycloneDX 1.5 JSON with the same content.
nlohmann::ordered_json cyclonedx_document(const SbomScan& scan, const SbomSubject& subject);

// Debian's licence short names (DEP-5) as an SPDX expression: "GPL-2+" → "GPL-2.0-or-later",
// "GPL-2+ or Artistic" → "GPL-2.0-or-later OR Artistic-1.0-Perl"; unknown names become
// LicenseRef-NAME (characters other than letters, digits, '.', '-' replaced by '-').
std::string spdx_license(const std::string& debian);

}  // namespace kiln::exporter
