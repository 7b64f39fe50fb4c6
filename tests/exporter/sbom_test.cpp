// kiln's SBOM generator over made-up root filesystems: which database formats it reads, the
// licence mapping, purls, and the SPDX / CycloneDX documents' required fields.
#include "kiln/exporter/sbom.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "kiln/base/fd.hpp"

namespace kiln::exporter {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class Sbom : public ::testing::Test {
 protected:
  void write(const std::string& path, const std::string& text) {
    fs::path p = root_.path() / path;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
  }
  std::vector<std::string> names(const SbomScan& scan) {
    std::vector<std::string> out;
    for (const SbomPackage& p : scan.packages)
      out.push_back(p.source + ":" + p.name + "@" + p.version + "/" + p.architecture);
    return out;
  }
  TempDir root_{{}, "kiln-sbom-"};
};

TEST_F(Sbom, DpkgStatusCountsOnlyInstalledPackagesAndStatusDFiles) {
  write("etc/os-release", "ID=debian\nVERSION_ID=\"12\"\n");
  write("var/lib/dpkg/status",
        "Package: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5.2.15-2+b2\n"
        "Maintainer: Matthias Klose <doko@debian.org>\nDescription: shell\n more text\n\n"
        "Package: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1\n\n"
        "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36-9\n");
  // distroless ships one paragraph per package, without Status.
  write("var/lib/dpkg/status.d/tzdata", "Package: tzdata\nVersion: 2024a-0\nArchitecture: all\n");
  write("var/lib/dpkg/status.d/tzdata.md5sums", "ignored\n");
  write("usr/share/doc/bash/copyright",
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: *\nLicense: GPL-3+\n\nFiles: lib/x\nLicense: GPL-2+ or Artistic\n\n"
        "License: GPL-3+\n full text\n");
  SbomScan scan = scan_rootfs(root_.path());
  EXPECT_THAT(names(scan), ElementsAre("dpkg:bash@5.2.15-2+b2/amd64", "dpkg:libc6@2.36-9/amd64",
                                       "dpkg:tzdata@2024a-0/all"));
  EXPECT_THAT(scan.databases, ElementsAre("var/lib/dpkg/status", "var/lib/dpkg/status.d/tzdata"));
  EXPECT_EQ(scan.packages[0].purl, "pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64&distro=debian-12");
  EXPECT_EQ(scan.packages[0].license,
            "GPL-3.0-or-later AND (GPL-2.0-or-later OR Artistic-1.0-Perl)");
  EXPECT_EQ(scan.packages[1].license, "");  // no copyright file
  EXPECT_TRUE(scan.files.empty());
}

TEST_F(Sbom, ApkInstalledDatabase) {
  write("etc/os-release", "ID=alpine\nVERSION_ID=3.19.1\n");
  write("lib/apk/db/installed",
        "C:Q1abc=\nP:musl\nV:1.2.4_git20230717-r4\nA:x86_64\nL:MIT\no:musl\nm:Timo <t@x>\n\n"
        "P:busybox\nV:1.36.1-r15\nA:x86_64\nL:GPL-2.0-only\n");
  SbomScan scan = scan_rootfs(root_.path());
  EXPECT_THAT(names(scan),
              ElementsAre("apk:busybox@1.36.1-r15/x86_64", "apk:musl@1.2.4_git20230717-r4/x86_64"));
  EXPECT_EQ(scan.packages[1].license, "MIT");
  EXPECT_EQ(scan.packages[1].purl,
            "pkg:apk/alpine/musl@1.2.4_git20230717-r4?arch=x86_64&distro=alpine-3.19.1");
}

TEST_F(Sbom, WithoutADatabaseEveryFileIsListedAndSymlinksAreNotFollowed) {
  write("app/run", "hello\n");
  fs::create_symlink("/etc/passwd", root_.path() / "app/link");
  // A database path through a symlink out of the root is not read.
  fs::create_directories(root_.path() / "var/lib");
  fs::create_symlink("/var/lib/dpkg", root_.path() / "var/lib/dpkg");
  SbomScan scan = scan_rootfs(root_.path());
  EXPECT_TRUE(scan.packages.empty());
  ASSERT_EQ(scan.files.size(), 1u);
  EXPECT_EQ(scan.files[0].path, "/app/run");
  EXPECT_EQ(scan.files[0].sha256,
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
  EXPECT_EQ(scan.files[0].sha1, "f572d396fae9206628714fb2ce00f72e94f2258f");
}

// An rpm database made by rpm itself (rpmbuild, then rpm --justdb into an empty root), read
// through a link as Fedora lays it out, without writing into the image.
TEST_F(Sbom, RpmDatabasesAreReadWithLibrpm) {
  TempDir work({}, "kiln-rpm-");
  std::ofstream(work.path() / "hello.spec")
      << "Name: hello-kiln\nVersion: 1.2.3\nRelease: 4\nEpoch: 2\nSummary: t\n"
         "License: MIT AND (Apache-2.0 OR GPL-2.0-or-later)\nBuildArch: noarch\n"
         "%description\nt\n%files\n";
  std::string top = (work.path() / "top").string();
  ASSERT_EQ(std::system(("rpmbuild -bb --define '_topdir " + top + "' " +
                         (work.path() / "hello.spec").string() + " >/dev/null 2>&1")
                            .c_str()),
            0);
  fs::create_directories(root_.path() / "usr/lib/sysimage/rpm");
  fs::create_directories(root_.path() / "var/lib");
  fs::create_symlink("../../usr/lib/sysimage/rpm", root_.path() / "var/lib/rpm");
  write("etc/os-release", "ID=fedora\nVERSION_ID=39\n");
  std::string rpm = "rpm --root " + root_.path().string() + " --dbpath /usr/lib/sysimage/rpm ";
  ASSERT_EQ(std::system((rpm + "--initdb && " + rpm + "-i --justdb --nodeps --noscripts " + top +
                         "/RPMS/noarch/hello-kiln-1.2.3-4.noarch.rpm >/dev/null 2>&1")
                            .c_str()),
            0);
  std::vector<std::string> before;
  for (const auto& e : fs::recursive_directory_iterator(root_.path()))
    before.push_back(e.path().string());
  SbomScan scan = scan_rootfs(root_.path());
  EXPECT_THAT(names(scan), ElementsAre("rpm:hello-kiln@1.2.3-4/noarch"));
  EXPECT_THAT(scan.databases, ElementsAre("usr/lib/sysimage/rpm"));
  EXPECT_EQ(scan.packages[0].license, "MIT AND (Apache-2.0 OR GPL-2.0-or-later)");
  EXPECT_EQ(scan.packages[0].purl,
            "pkg:rpm/fedora/hello-kiln@1.2.3-4?arch=noarch&distro=fedora-39&epoch=2");
  std::vector<std::string> after;
  for (const auto& e : fs::recursive_directory_iterator(root_.path()))
    after.push_back(e.path().string());
  EXPECT_EQ(after, before);  // nothing written into the image
}

TEST(SbomLicense, DebianNamesBecomeSpdxExpressions) {
  EXPECT_EQ(spdx_license("GPL-2+"), "GPL-2.0-or-later");
  EXPECT_EQ(spdx_license("GPL-2+ or Artistic"), "GPL-2.0-or-later OR Artistic-1.0-Perl");
  EXPECT_EQ(spdx_license("LGPL-2.1+ and BSD-3-clause"), "LGPL-2.1-or-later AND BSD-3-Clause");
  EXPECT_EQ(spdx_license("GPL-3+ with Bison exception"),
            "GPL-3.0-or-later AND LicenseRef-Bison-exception");
  EXPECT_EQ(spdx_license("Expat"), "MIT");
  EXPECT_EQ(spdx_license("Custom/Licence+x"), "LicenseRef-Custom-Licence-x");
  EXPECT_EQ(spdx_license(""), "");
}

TEST_F(Sbom, DocumentsHaveTheRequiredFields) {
  write("var/lib/dpkg/status",
        "Package: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5.2\n");
  SbomScan scan = scan_rootfs(root_.path());
  SbomSubject about{"app:1", "2026-01-01T00:00:00Z", "kiln-test"};
  nlohmann::ordered_json spdx = spdx_document(scan, about);
  // SPDX 2.3's required document fields, and the enumerations its schema fixes.
  for (const char* field :
       {"spdxVersion", "dataLicense", "SPDXID", "name", "documentNamespace", "creationInfo"})
    EXPECT_TRUE(spdx.contains(field)) << field;
  EXPECT_EQ(spdx["spdxVersion"], "SPDX-2.3");
  EXPECT_EQ(spdx["packages"][1]["externalRefs"][0]["referenceCategory"], "PACKAGE-MANAGER");
  EXPECT_EQ(spdx["relationships"][0]["relationshipType"], "DESCRIBES");
  // The same scan gives the same document.
  EXPECT_EQ(spdx, spdx_document(scan_rootfs(root_.path()), about));
  nlohmann::ordered_json cdx = cyclonedx_document(scan, about);
  EXPECT_EQ(cdx["bomFormat"], "CycloneDX");
  EXPECT_EQ(cdx["components"][0]["purl"], "pkg:deb/debian/bash@5.2?arch=amd64");
}

}  // namespace
}  // namespace kiln::exporter
