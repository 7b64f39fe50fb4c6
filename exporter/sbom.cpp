#include "kiln/exporter/sbom.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"
#include "kiln/oci/digest.hpp"
#include "rpm_db.hpp"

namespace kiln::exporter {
namespace fs = std::filesystem;
namespace {

using Json = nlohmann::ordered_json;

// A file inside the root, read only when no component of its path is a symlink (an image's
// database path must not lead out of it).
std::optional<std::string> read_inside(const fs::path& root, const std::string& relative) {
  fs::path path = root;
  for (const auto& part : fs::path(relative)) {
    path /= part;
    std::error_code ec;
    if (fs::is_symlink(fs::symlink_status(path, ec)))
      return std::nullopt;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad())
    throw Error("SBOM: cannot read " + path.string());
  return text.str();
}

// RFC 822 paragraphs (dpkg): field name → value, continuation lines joined with '\n'.
std::vector<std::map<std::string, std::string>> paragraphs(const std::string& text) {
  std::vector<std::map<std::string, std::string>> out(1);
  std::string last;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r')
      line.pop_back();
    if (trim(line).empty()) {
      if (!out.back().empty())
        out.emplace_back();
      last.clear();
      continue;
    }
    if ((line[0] == ' ' || line[0] == '\t') && !last.empty()) {
      out.back()[last] += "\n" + std::string(trim(line));
      continue;
    }
    size_t colon = line.find(':');
    if (colon == std::string::npos)
      continue;
    last = std::string(trim(std::string_view(line).substr(0, colon)));
    out.back()[last] = std::string(trim(std::string_view(line).substr(colon + 1)));
  }
  if (out.back().empty())
    out.pop_back();
  return out;
}

// purl components are percent-encoded except for unreserved characters.
std::string purl_escape(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '.' || c == '-' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string purl(const std::string& type, const std::string& ns, const SbomPackage& p,
                 const std::string& distro) {
  std::string out = "pkg:" + type + "/" + ns + "/" + purl_escape(p.name) + "@" +
                    purl_escape(p.version) + "?arch=" + purl_escape(p.architecture);
  if (!distro.empty())
    out += "&distro=" + purl_escape(distro);
  return out;
}

// The License: fields of a machine-readable copyright file, as one SPDX expression.
std::string dep5_license(const std::string& text) {
  if (!text.starts_with("Format:") && text.find("\nFormat:") == std::string::npos)
    return {};
  // Every Files paragraph's licence, AND-ed, each term once: "A OR B" choices stay whole.
  std::set<std::string> seen;
  std::vector<std::string> terms;
  for (const auto& paragraph : paragraphs(text)) {
    auto it = paragraph.find("License");
    if (it == paragraph.end() || !paragraph.contains("Files"))
      continue;
    std::string first = it->second.substr(0, it->second.find('\n'));
    std::string expression = spdx_license(std::string(trim(first)));
    std::vector<std::string> parts;
    if (expression.find(" OR ") != std::string::npos) {
      parts.push_back("(" + expression + ")");
    } else {
      for (size_t start = 0; start < expression.size();) {
        size_t and_at = expression.find(" AND ", start);
        parts.push_back(
            expression.substr(start, and_at == std::string::npos ? and_at : and_at - start));
        start = and_at == std::string::npos ? expression.size() : and_at + 5;
      }
    }
    for (const std::string& part : parts) {
      if (!part.empty() && seen.insert(part).second)
        terms.push_back(part);
    }
  }
  if (terms.size() == 1 && terms.front().starts_with("("))
    return terms.front().substr(1, terms.front().size() - 2);
  return join(terms, " AND ");
}

void read_dpkg(const fs::path& root, const std::string& distro, SbomScan& scan) {
  std::vector<std::pair<std::string, std::string>> sources;  // (name, text)
  if (auto text = read_inside(root, "var/lib/dpkg/status"))
    sources.emplace_back("var/lib/dpkg/status", *text);
  std::error_code ec;
  fs::path dir = root / "var/lib/dpkg/status.d";
  if (fs::is_directory(dir, ec) && !fs::is_symlink(dir, ec)) {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      std::string name = entry.path().filename().string();
      if (!name.ends_with(".md5sums") && entry.is_regular_file())
        names.push_back(name);
    }
    std::sort(names.begin(), names.end());
    for (const std::string& name : names) {
      if (auto text = read_inside(root, "var/lib/dpkg/status.d/" + name))
        sources.emplace_back("var/lib/dpkg/status.d/" + name, *text);
    }
  }
  for (const auto& [name, text] : sources) {
    scan.databases.push_back(name);
    bool status_d = name.starts_with("var/lib/dpkg/status.d/");
    for (const auto& p : paragraphs(text)) {
      auto field = [&](const char* key) {
        auto it = p.find(key);
        return it == p.end() ? std::string() : it->second;
      };
      if (field("Package").empty())
        continue;
      std::string status = field("Status");
      if (!status_d && !status.ends_with(" installed"))
        continue;
      SbomPackage pkg;
      pkg.name = field("Package");
      pkg.version = field("Version");
      pkg.architecture = field("Architecture");
      pkg.supplier = field("Maintainer");
      pkg.source = "dpkg";
      if (auto copyright = read_inside(root, "usr/share/doc/" + pkg.name + "/copyright"))
        pkg.license = dep5_license(*copyright);
      pkg.purl = purl("deb", scan.distro_id.empty() ? "debian" : scan.distro_id, pkg, distro);
      scan.packages.push_back(std::move(pkg));
    }
  }
}

void read_apk(const fs::path& root, const std::string& distro, SbomScan& scan) {
  std::optional<std::string> text = read_inside(root, "lib/apk/db/installed");
  if (!text)
    return;
  scan.databases.push_back("lib/apk/db/installed");
  SbomPackage pkg;
  auto flush = [&] {
    if (!pkg.name.empty()) {
      pkg.source = "apk";
      pkg.purl = purl("apk", scan.distro_id.empty() ? "alpine" : scan.distro_id, pkg, distro);
      scan.packages.push_back(pkg);
    }
    pkg = SbomPackage{};
  };
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) {
      flush();
      continue;
    }
    if (line.size() < 2 || line[1] != ':')
      continue;
    std::string value = line.substr(2);
    switch (line[0]) {
      case 'P':
        pkg.name = value;
        break;
      case 'V':
        pkg.version = value;
        break;
      case 'A':
        pkg.architecture = value;
        break;
      case 'L':
        pkg.license = value;
        break;
      case 'm':
        pkg.supplier = value;
        break;
      default:
        break;
    }
  }
  flush();
}

std::string digest_hex(const EVP_MD* md, const fs::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd)
    throw Error("SBOM: cannot open " + path.string() + ": " + std::strerror(errno));
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), md, nullptr);
  std::vector<char> buffer(1 << 16);
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      throw Error("SBOM: cannot read " + path.string() + ": " + std::strerror(errno));
    if (n == 0)
      break;
    EVP_DigestUpdate(ctx.get(), buffer.data(), static_cast<size_t>(n));
  }
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), out, &len);
  static const char* hex = "0123456789abcdef";
  std::string text;
  for (unsigned int i = 0; i < len; ++i) {
    text += hex[out[i] >> 4];
    text += hex[out[i] & 15];
  }
  return text;
}

void list_files(const fs::path& root, SbomScan& scan) {
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::none, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec)
      throw Error("SBOM: cannot list " + root.string() + ": " + ec.message());
    if (!it->is_regular_file(ec) || it->is_symlink(ec))
      continue;
    SbomFile f;
    f.path = "/" + it->path().lexically_relative(root).string();
    f.sha1 = digest_hex(EVP_sha1(), it->path());
    f.sha256 = digest_hex(EVP_sha256(), it->path());
    scan.files.push_back(std::move(f));
  }
  std::sort(scan.files.begin(), scan.files.end(),
            [](const SbomFile& a, const SbomFile& b) { return a.path < b.path; });
}

// SPDX ids allow letters, digits, '.' and '-'.
std::string spdx_id(std::string_view prefix, std::string_view text) {
  std::string out(prefix);
  for (char c : text)
    out += std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' ? c : '-';
  return out;
}

std::string document_digest(const SbomScan& scan, const SbomSubject& subject) {
  std::string text = subject.name + "\n";
  for (const SbomPackage& p : scan.packages)
    text += p.purl + "\n";
  for (const SbomFile& f : scan.files)
    text += f.path + " " + f.sha256 + "\n";
  return oci::sha256_of(text).hex();
}

}  // namespace

std::string spdx_license(const std::string& debian) {
  static const std::map<std::string, std::string> kKnown = {
      {"GPL-1", "GPL-1.0-only"},
      {"GPL-1+", "GPL-1.0-or-later"},
      {"GPL-2", "GPL-2.0-only"},
      {"GPL-2+", "GPL-2.0-or-later"},
      {"GPL-3", "GPL-3.0-only"},
      {"GPL-3+", "GPL-3.0-or-later"},
      {"LGPL-2", "LGPL-2.0-only"},
      {"LGPL-2+", "LGPL-2.0-or-later"},
      {"LGPL-2.1", "LGPL-2.1-only"},
      {"LGPL-2.1+", "LGPL-2.1-or-later"},
      {"LGPL-3", "LGPL-3.0-only"},
      {"LGPL-3+", "LGPL-3.0-or-later"},
      {"AGPL-3", "AGPL-3.0-only"},
      {"AGPL-3+", "AGPL-3.0-or-later"},
      {"GFDL-1.2+", "GFDL-1.2-or-later"},
      {"GFDL-1.3+", "GFDL-1.3-or-later"},
      {"Artistic", "Artistic-1.0-Perl"},
      {"Artistic-2.0", "Artistic-2.0"},
      {"Apache-2.0", "Apache-2.0"},
      {"Expat", "MIT"},
      {"MIT", "MIT"},
      {"BSD-2-clause", "BSD-2-Clause"},
      {"BSD-3-clause", "BSD-3-Clause"},
      {"BSD-4-clause", "BSD-4-Clause"},
      {"ISC", "ISC"},
      {"Zlib", "Zlib"},
      {"zlib", "Zlib"},
      {"MPL-1.1", "MPL-1.1"},
      {"MPL-2.0", "MPL-2.0"},
      {"CC0-1.0", "CC0-1.0"},
      {"public-domain", "LicenseRef-public-domain"},
      {"PSF-2", "PSF-2.0"},
      {"OpenSSL", "OpenSSL"},
      {"curl", "curl"},
      {"Unicode-DFS-2016", "Unicode-DFS-2016"},
      {"X11", "X11"}};
  std::string text(trim(debian));
  if (text.empty())
    return {};
  // "A or B", "A and B", "A, and B" (DEP-5's operators, lower or upper case).
  std::string out;
  std::istringstream words(text);
  std::string word;
  bool expect_name = true;
  while (words >> word) {
    if (word.ends_with(","))
      word.pop_back();
    std::string lower = to_lower(word);
    if (!expect_name && lower == "with") {
      // "GPL-3+ with Bison exception": SPDX's WITH needs a listed exception id, so the
      // exception is kept as a reference of its own beside the licence.
      std::vector<std::string> exception;
      while (words >> word) {
        exception.push_back(word);
        if (to_lower(word) == "exception")
          break;
      }
      out += " AND " + spdx_id("LicenseRef-", join(exception, "-"));
      continue;
    }
    if (!expect_name && (lower == "or" || lower == "and")) {
      out += " " + to_upper(lower) + " ";
      expect_name = true;
      continue;
    }
    if (!expect_name) {
      out += " AND ";  // "with exceptions" and the like: kept as a reference of its own
    }
    auto it = kKnown.find(word);
    out += it != kKnown.end() ? it->second : spdx_id("LicenseRef-", word);
    expect_name = false;
  }
  return out;
}

SbomScan scan_rootfs(const fs::path& root) {
  SbomScan scan;
  for (const char* release : {"etc/os-release", "usr/lib/os-release"}) {
    std::optional<std::string> text = read_inside(root, release);
    if (!text)
      continue;
    std::istringstream in(*text);
    std::string line;
    while (std::getline(in, line)) {
      size_t eq = line.find('=');
      if (eq == std::string::npos)
        continue;
      std::string key = line.substr(0, eq), value = line.substr(eq + 1);
      if (value.size() >= 2 && (value.front() == '"' || value.front() == '\''))
        value = value.substr(1, value.size() - 2);
      if (key == "ID")
        scan.distro_id = value;
      else if (key == "VERSION_ID")
        scan.distro_version = value;
    }
    break;
  }
  std::string distro = scan.distro_id.empty() ? std::string()
                                              : scan.distro_id + (scan.distro_version.empty()
                                                                      ? std::string()
                                                                      : "-" + scan.distro_version);
  read_dpkg(root, distro, scan);
  read_apk(root, distro, scan);
  if (std::optional<detail::RpmDatabase> rpm = detail::read_rpm_database(root)) {
    scan.databases.push_back(rpm->path);
    std::string ns = scan.distro_id.empty() ? std::string("rpm") : scan.distro_id;
    for (const detail::RpmPackage& r : rpm->packages) {
      SbomPackage p;
      p.name = r.name;
      p.version = r.version + (r.release.empty() ? "" : "-" + r.release);
      p.architecture = r.architecture;
      p.license = r.license;  // rpm's License: tag is already an SPDX expression in Fedora
      p.supplier = r.vendor;
      p.source = "rpm";
      p.purl = purl("rpm", ns, p, distro);
      if (!r.epoch.empty())
        p.purl += "&epoch=" + r.epoch;
      scan.packages.push_back(std::move(p));
    }
  }
  std::sort(scan.packages.begin(), scan.packages.end(),
            [](const SbomPackage& a, const SbomPackage& b) {
              return std::tie(a.source, a.name, a.architecture) <
                     std::tie(b.source, b.name, b.architecture);
            });
  if (scan.databases.empty())
    list_files(root, scan);
  return scan;
}

Json spdx_document(const SbomScan& scan, const SbomSubject& subject) {
  Json doc;
  doc["spdxVersion"] = "SPDX-2.3";
  doc["dataLicense"] = "CC0-1.0";
  doc["SPDXID"] = "SPDXRef-DOCUMENT";
  doc["name"] = subject.name;
  doc["documentNamespace"] = "urn:kiln:spdx:" + document_digest(scan, subject);
  doc["creationInfo"] = {{"created", subject.created},
                         {"creators", Json::array({"Tool: " + subject.tool})}};
  std::string comment = "Packages from: " + (scan.databases.empty()
                                                 ? std::string("no package database (files listed)")
                                                 : join(scan.databases, ", "));
  for (const std::string& note : scan.notes)
    comment += "; " + note;
  doc["comment"] = comment;
  Json packages = Json::array();
  Json image{{"name", subject.name},
             {"SPDXID", "SPDXRef-Image"},
             {"downloadLocation", "NOASSERTION"},
             {"filesAnalyzed", false},
             {"licenseConcluded", "NOASSERTION"},
             {"licenseDeclared", "NOASSERTION"},
             {"copyrightText", "NOASSERTION"},
             {"primaryPackagePurpose", "CONTAINER"}};
  packages.push_back(image);
  Json relationships = Json::array();
  relationships.push_back({{"spdxElementId", "SPDXRef-DOCUMENT"},
                           {"relationshipType", "DESCRIBES"},
                           {"relatedSpdxElement", "SPDXRef-Image"}});
  std::set<std::string> ids;
  for (const SbomPackage& p : scan.packages) {
    std::string id = spdx_id("SPDXRef-Package-" + p.source + "-", p.name + "-" + p.architecture);
    for (int n = 2; !ids.insert(id).second; ++n)
      id = spdx_id("SPDXRef-Package-" + p.source + "-", p.name + "-" + p.architecture) + "-" +
           std::to_string(n);
    Json pkg{{"name", p.name},
             {"SPDXID", id},
             {"versionInfo", p.version},
             {"downloadLocation", "NOASSERTION"},
             {"filesAnalyzed", false},
             {"licenseConcluded", "NOASSERTION"},
             {"licenseDeclared", p.license.empty() ? std::string("NOASSERTION") : p.license},
             {"copyrightText", "NOASSERTION"}};
    if (!p.supplier.empty())
      pkg["supplier"] = "Person: " + p.supplier;
    pkg["externalRefs"] = Json::array({{{"referenceCategory", "PACKAGE-MANAGER"},
                                        {"referenceType", "purl"},
                                        {"referenceLocator", p.purl}}});
    pkg["primaryPackagePurpose"] = "LIBRARY";
    packages.push_back(std::move(pkg));
    relationships.push_back({{"spdxElementId", "SPDXRef-Image"},
                             {"relationshipType", "CONTAINS"},
                             {"relatedSpdxElement", id}});
  }
  doc["packages"] = std::move(packages);
  if (!scan.files.empty()) {
    Json files = Json::array();
    size_t n = 0;
    for (const SbomFile& f : scan.files) {
      std::string id = "SPDXRef-File-" + std::to_string(++n);
      files.push_back(
          {{"fileName", "." + f.path},
           {"SPDXID", id},
           {"checksums", Json::array({{{"algorithm", "SHA1"}, {"checksumValue", f.sha1}},
                                      {{"algorithm", "SHA256"}, {"checksumValue", f.sha256}}})},
           {"licenseConcluded", "NOASSERTION"},
           {"copyrightText", "NOASSERTION"}});
      relationships.push_back({{"spdxElementId", "SPDXRef-Image"},
                               {"relationshipType", "CONTAINS"},
                               {"relatedSpdxElement", id}});
    }
    doc["files"] = std::move(files);
  }
  doc["relationships"] = std::move(relationships);
  return doc;
}

Json cyclonedx_document(const SbomScan& scan, const SbomSubject& subject) {
  Json doc;
  doc["bomFormat"] = "CycloneDX";
  doc["specVersion"] = "1.5";
  std::string hex = document_digest(scan, subject);
  doc["serialNumber"] = "urn:uuid:" + hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" +
                        hex.substr(12, 4) + "-" + hex.substr(16, 4) + "-" + hex.substr(20, 12);
  doc["version"] = 1;
  doc["metadata"] = {
      {"timestamp", subject.created},
      {"tools", {{"components", Json::array({{{"type", "application"}, {"name", subject.tool}}})}}},
      {"component", {{"type", "container"}, {"name", subject.name}}}};
  Json components = Json::array();
  for (const SbomPackage& p : scan.packages) {
    Json c{{"type", "library"}, {"name", p.name}, {"version", p.version}, {"purl", p.purl}};
    if (!p.license.empty())
      c["licenses"] = Json::array({{{"expression", p.license}}});
    components.push_back(std::move(c));
  }
  for (const SbomFile& f : scan.files) {
    components.push_back({{"type", "file"},
                          {"name", f.path},
                          {"hashes", Json::array({{{"alg", "SHA-1"}, {"content", f.sha1}},
                                                  {{"alg", "SHA-256"}, {"content", f.sha256}}})}});
  }
  doc["components"] = std::move(components);
  return doc;
}

}  // namespace kiln::exporter
