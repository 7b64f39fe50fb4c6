// SBOM and provenance attestations: what kiln attaches, stored as BuildKit stores them, read
// back from the store and from a loopback docker-registry after skopeo copied the image (with
// everything its index holds) to a second registry. The Debian-based case builds an image from
// this machine's dpkg database (a base made of Debian's package metadata, offline) and compares
// the SBOM with what dpkg-query reports for that database.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "kiln/base/base64.hpp"
#include "kiln/base/fd.hpp"
#include "process.hpp"
#include "registry_fixture.hpp"

namespace kiln::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string sha256_hex(const fs::path& p) {
  ProcessResult r = run_program({"sha256sum", p.string()});
  return r.out.substr(0, 64);
}

class Attestations : public ::testing::Test {
 protected:
  void SetUp() override {
    ctx_ = work_.path() / "ctx";
    fs::create_directories(ctx_);
  }
  ProcessResult kiln(const std::vector<std::string>& args) {
    return run_kiln(args, {}, {}, {"KILN_ROOT=" + (work_.path() / "store").string()});
  }
  void prepare_busybox() {
    fs::path busybox = work_.path() / "busybox";
    ProcessResult prepared = run_program(
        {std::string(KILN_SOURCE_DIR) + "/examples/busybox/prepare.sh", busybox.string()});
    ASSERT_EQ(prepared.exit_code, 0) << prepared.err;
    ProcessResult base = kiln({"build", "-q", "-t", "busybox:latest", busybox.string()});
    ASSERT_EQ(base.exit_code, 0) << base.err;
  }
  // The attestations of `image` (kiln inspect --attestations), by predicate type.
  std::map<std::string, nlohmann::json> statements(const std::string& image,
                                                   std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"inspect", "--attestations"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(image);
    ProcessResult r = kiln(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::map<std::string, nlohmann::json> out;
    nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
    if (!j.is_object() || j["Attestations"].size() != 1) {
      ADD_FAILURE() << "one platform's attestations expected: " << r.out;
      return out;
    }
    for (const auto& s : j["Attestations"][0]["Statements"])
      out[s["predicateType"]] = s;
    return out;
  }

  // kiln with an empty key password (KILN_PASSWORD set and empty).
  ProcessResult with_password(const std::vector<std::string>& args) {
    return run_kiln(args, {}, {},
                    {"KILN_ROOT=" + (work_.path() / "store").string(), "KILN_PASSWORD="});
  }
  // A key pair KEY.key / KEY.pub; returns the prefix.
  fs::path generate_key() {
    fs::path prefix = work_.path() / "key";
    ProcessResult r = with_password({"key", "generate", "--output-key-prefix", prefix.string()});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return prefix;
  }

  TempDir work_{{}, "kiln-attest-"};
  fs::path ctx_;
};

TEST_F(Attestations, ProvenanceAndSbomOfABuildWithSecretsLeakNoSecret) {
  prepare_busybox();
  std::ofstream(ctx_ / "Containerfile")
      << "FROM busybox:latest\nARG API_TOKEN\nARG VERSION=1\n"
      << "RUN --mount=type=secret,id=tok test -s /run/secrets/tok && echo $VERSION > /version\n"
      << "COPY app.txt /app.txt\n";
  std::ofstream(ctx_ / "app.txt") << "app\n";
  std::ofstream(work_.path() / "tok") << "secret-file-value-0451\n";
  ProcessResult built =
      kiln({"build", "-q", "--sbom", "--provenance=mode=max", "-t", "app:1", "--build-arg",
            "API_TOKEN=build-arg-token-0451", "--build-arg", "VERSION=2", "--secret",
            "id=tok,src=" + (work_.path() / "tok").string(), ctx_.string()});
  ASSERT_EQ(built.exit_code, 0) << built.err;

  // Stored as BuildKit does: an index with the image and its attestation manifest.
  nlohmann::json inspected = nlohmann::json::parse(kiln({"inspect", "app:1"}).out);
  ASSERT_EQ(inspected["MediaType"], "application/vnd.oci.image.index.v1+json");
  const nlohmann::json& entries = inspected["Index"]["manifests"];
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[1]["platform"]["os"], "unknown");
  EXPECT_EQ(entries[1]["annotations"]["vnd.docker.reference.type"], "attestation-manifest");
  EXPECT_EQ(entries[1]["annotations"]["vnd.docker.reference.digest"], entries[0]["digest"]);

  auto found = statements("app:1");
  ASSERT_TRUE(found.contains("https://slsa.dev/provenance/v1"));
  ASSERT_TRUE(found.contains("https://spdx.dev/Document"));
  const nlohmann::json& provenance = found["https://slsa.dev/provenance/v1"];
  EXPECT_EQ(provenance["_type"], "https://in-toto.io/Statement/v0.1");
  EXPECT_EQ(provenance["subject"][0]["digest"]["sha256"],
            entries[0]["digest"].get<std::string>().substr(7));
  const nlohmann::json& definition = provenance["predicate"]["buildDefinition"];
  // The Containerfile's digest, the base image's digest, the build args (the token redacted).
  EXPECT_EQ(definition["externalParameters"]["configSource"]["digest"]["sha256"],
            sha256_hex(ctx_ / "Containerfile"));
  std::string base = nlohmann::json::parse(kiln({"inspect", "busybox:latest"}).out)["Digest"];
  ASSERT_EQ(definition["resolvedDependencies"].size(), 1u);
  EXPECT_EQ(definition["resolvedDependencies"][0]["digest"]["sha256"], base.substr(7));
  EXPECT_THAT(definition["resolvedDependencies"][0]["uri"].get<std::string>(),
              HasSubstr("pkg:docker/busybox@latest?platform=linux%2F"));
  const nlohmann::json& args = definition["externalParameters"]["request"]["args"];
  EXPECT_EQ(args["build-arg:VERSION"], "2");
  EXPECT_EQ(args["build-arg:API_TOKEN"], "<redacted>");
  // mode=max: the op graph and every step's time.
  EXPECT_EQ(definition["internalParameters"]["buildConfig"]["format"], "kiln.plan.v1");
  EXPECT_EQ(provenance["predicate"]["runDetails"]["metadata"]["kiln_steps"].size(), 2u);

  // The SBOM of a package-less image lists its files with their digests.
  const nlohmann::json& sbom = found["https://spdx.dev/Document"]["predicate"];
  EXPECT_EQ(sbom["spdxVersion"], "SPDX-2.3");
  bool listed = false;
  for (const auto& f : sbom["files"]) {
    if (f["fileName"] == "./app.txt")
      listed = f["checksums"][1]["checksumValue"] == sha256_hex(ctx_ / "app.txt");
  }
  EXPECT_TRUE(listed) << sbom.dump(1).substr(0, 2000);

  // Neither the build arg's value nor the secret's is in any blob or cache file of the store.
  for (const auto& entry : fs::recursive_directory_iterator(work_.path() / "store")) {
    if (!entry.is_regular_file() || entry.path().string().find("/tmp/") != std::string::npos)
      continue;
    std::string bytes = slurp(entry.path());
    EXPECT_EQ(bytes.find("build-arg-token-0451"), std::string::npos) << entry.path();
    EXPECT_EQ(bytes.find("secret-file-value-0451"), std::string::npos) << entry.path();
  }

  // --provenance-include-arg records a value the user vouches for.
  ProcessResult included =
      kiln({"build", "-q", "--provenance", "--provenance-include-arg", "API_TOKEN", "-t", "app:2",
            "--build-arg", "API_TOKEN=not-really-secret", "--secret",
            "id=tok,src=" + (work_.path() / "tok").string(), ctx_.string()});
  ASSERT_EQ(included.exit_code, 0) << included.err;
  auto min = statements("app:2");
  EXPECT_EQ(min["https://slsa.dev/provenance/v1"]["predicate"]["buildDefinition"]
               ["externalParameters"]["request"]["args"]["build-arg:API_TOKEN"],
            "not-really-secret");
  EXPECT_FALSE(
      min["https://slsa.dev/provenance/v1"]["predicate"]["buildDefinition"]["internalParameters"]
          .contains("buildConfig"));  // mode=min
  EXPECT_FALSE(min.contains("https://spdx.dev/Document"));
}

TEST_F(Attestations, TheSbomOfADebianImageListsWhatDpkgReports) {
  // A root filesystem with this machine's dpkg database, os-release and copyright files.
  fs::path rootfs = ctx_ / "rootfs";
  fs::create_directories(rootfs / "var/lib/dpkg");
  fs::create_directories(rootfs / "etc");
  fs::copy_file("/var/lib/dpkg/status", rootfs / "var/lib/dpkg/status");
  fs::copy_file("/etc/os-release", rootfs / "etc/os-release", fs::copy_options::overwrite_existing);
  fs::path docs = rootfs / "usr/share/doc";
  for (const char* pkg : {"bash", "coreutils", "libc6", "dpkg"}) {
    fs::create_directories(docs / pkg);
    std::error_code ec;
    fs::copy_file(fs::path("/usr/share/doc") / pkg / "copyright", docs / pkg / "copyright", ec);
  }
  std::ofstream(ctx_ / "Containerfile") << "FROM scratch\nCOPY rootfs/ /\n";
  fs::path out = work_.path() / "sbom.spdx.json";
  ProcessResult built =
      kiln({"build", "-q", "--sbom", "--sbom-output", out.string(), "--sbom-purl-output",
            (work_.path() / "purls").string(), "-t", "deb:1", ctx_.string()});
  ASSERT_EQ(built.exit_code, 0) << built.err;

  ProcessResult dpkg =
      run_program({"dpkg-query", "--admindir=" + (rootfs / "var/lib/dpkg").string(), "-W", "-f",
                   "${db:Status-Abbrev}|${Package}|${Version}|${Architecture}\n"});
  ASSERT_EQ(dpkg.exit_code, 0) << dpkg.err;
  std::set<std::string> expected;
  std::istringstream lines(dpkg.out);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.starts_with("ii "))
      expected.insert(line.substr(line.find('|') + 1));
  }
  ASSERT_GT(expected.size(), 50u);

  nlohmann::json sbom = nlohmann::json::parse(slurp(out));
  std::set<std::string> listed;
  std::map<std::string, nlohmann::json> by_name;
  for (const auto& p : sbom["packages"]) {
    if (p["SPDXID"] == "SPDXRef-Image")
      continue;
    std::string purl = p["externalRefs"][0]["referenceLocator"];
    std::string arch = purl.substr(purl.find("arch=") + 5);
    arch = arch.substr(0, arch.find('&'));
    listed.insert(p["name"].get<std::string>() + "|" + p["versionInfo"].get<std::string>() + "|" +
                  arch);
    by_name[p["name"]] = p;
  }
  EXPECT_EQ(listed, expected);
  // Licences from machine-readable copyright files, as SPDX expressions; purls with the distro.
  EXPECT_THAT(by_name["bash"]["licenseDeclared"].get<std::string>(), HasSubstr("GPL-3.0-or-later"));
  EXPECT_THAT(by_name["bash"]["externalRefs"][0]["referenceLocator"].get<std::string>(),
              ::testing::StartsWith("pkg:deb/debian/bash@"));
  EXPECT_THAT(by_name["bash"]["externalRefs"][0]["referenceLocator"].get<std::string>(),
              HasSubstr("&distro=debian-12"));
  EXPECT_EQ(by_name["adduser"]["licenseDeclared"], "NOASSERTION");  // no copyright file here
  // The attested SBOM is the one written out; the purl list has one line per package.
  auto found = statements("deb:1");
  EXPECT_EQ(found["https://spdx.dev/Document"]["predicate"], sbom);
  std::string purls = slurp(work_.path() / "purls");
  EXPECT_EQ(static_cast<size_t>(std::count(purls.begin(), purls.end(), '\n')), expected.size());
}

TEST_F(Attestations, SkopeoCopiesAttestationsBetweenRegistriesIntact) {
  LocalRegistry registry, other;
  std::ofstream(ctx_ / "Containerfile") << "FROM scratch\nCOPY a.txt /a.txt\n";
  std::ofstream(ctx_ / "a.txt") << "a\n";
  std::string first = registry.host() + "/team/app:1";
  ProcessResult pushed = kiln({"build", "-q", "--sbom", "--provenance", "--tls-verify=false",
                               "--push", "-t", first, ctx_.string()});
  ASSERT_EQ(pushed.exit_code, 0) << pushed.err << registry.logs();
  std::string second = other.host() + "/mirror/app:1";
  ProcessResult copied =
      run_program({"skopeo", "copy", "--all", "--preserve-digests", "--src-tls-verify=false",
                   "--dest-tls-verify=false", "docker://" + first, "docker://" + second});
  ASSERT_EQ(copied.exit_code, 0) << copied.err;
  // Read back from the copy, without pulling: the same statements about the same manifest.
  auto local = statements(first);  // the tag kiln built
  auto remote = statements("docker://" + second, {"--tls-verify=false"});
  ASSERT_EQ(remote.size(), 2u);
  EXPECT_EQ(remote["https://spdx.dev/Document"], local["https://spdx.dev/Document"]);
  EXPECT_EQ(remote["https://slsa.dev/provenance/v1"], local["https://slsa.dev/provenance/v1"]);
}

// --attest-format referrers: OCI 1.1 artifacts whose subject is the image; docker-registry 2.8
// has no referrers API, so they are listed in the fallback tag sha256-<hex>.
TEST_F(Attestations, ReferrersFormatPublishesArtifactsThroughTheFallbackTag) {
  LocalRegistry registry;
  std::ofstream(ctx_ / "Containerfile") << "FROM scratch\nCOPY a.txt /a.txt\n";
  std::ofstream(ctx_ / "a.txt") << "a\n";
  std::string image = registry.host() + "/team/ref:1";
  ProcessResult pushed = kiln({"build", "-q", "--sbom", "--attest-format", "referrers",
                               "--tls-verify=false", "--push", "-t", image, ctx_.string()});
  ASSERT_EQ(pushed.exit_code, 0) << pushed.err << registry.logs();
  auto raw = [&](const std::string& ref) {
    ProcessResult r =
        run_program({"skopeo", "inspect", "--raw", "--tls-verify=false", "docker://" + ref});
    EXPECT_EQ(r.exit_code, 0) << ref << ": " << r.err;
    return nlohmann::json::parse(r.out, nullptr, false);
  };
  // The image is what it would be without attestations: a manifest, no index.
  nlohmann::json manifest = raw(image);
  ASSERT_EQ(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
  std::string digest = nlohmann::json::parse(kiln({"inspect", image}).out)["Digest"];
  nlohmann::json listed = raw(registry.host() + "/team/ref:sha256-" + digest.substr(7));
  ASSERT_EQ(listed["manifests"].size(), 1u) << listed.dump();
  EXPECT_EQ(listed["manifests"][0]["artifactType"], "application/vnd.in-toto+json");
  EXPECT_EQ(listed["manifests"][0]["annotations"]["in-toto.io/predicate-type"],
            "https://spdx.dev/Document");
  nlohmann::json artifact =
      raw(registry.host() + "/team/ref@" + listed["manifests"][0]["digest"].get<std::string>());
  EXPECT_EQ(artifact["subject"]["digest"], digest);
  EXPECT_EQ(artifact["config"]["mediaType"], "application/vnd.oci.empty.v1+json");
  // kiln finds them in the registry and in its store.
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"inspect", "--attestations", "--tls-verify=false",
                                 "docker://" + image},
        std::vector<std::string>{"inspect", "--attestations", image}}) {
    ProcessResult r = kiln(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    nlohmann::json j = nlohmann::json::parse(r.out);
    ASSERT_EQ(j["Attestations"].size(), 1u) << r.out;
    EXPECT_EQ(j["Attestations"][0]["Storage"], "referrers");
    EXPECT_EQ(j["Attestations"][0]["Statements"][0]["predicateType"], "https://spdx.dev/Document");
  }
}

// A registry with the referrers API (docker-registry behind a proxy that adds it): the default
// BuildKit layout is pushed, and the attestations are published as referrers too, with no
// fallback tag; --attest-format referrers uses the API alone.
TEST_F(Attestations, ARegistryWithTheReferrersApiGetsArtifactsWithoutAFallbackTag) {
  LocalRegistry registry;
  FaultProxy api(registry.host(), "referrers-api");
  std::ofstream(ctx_ / "Containerfile") << "FROM scratch\nCOPY a.txt /a.txt\n";
  std::ofstream(ctx_ / "a.txt") << "a\n";
  std::string image = api.host() + "/team/api:1";
  ProcessResult pushed = kiln({"build", "-q", "--sbom", "--provenance", "--tls-verify=false",
                               "--push", "-t", image, ctx_.string()});
  ASSERT_EQ(pushed.exit_code, 0) << pushed.err << api.requests();
  EXPECT_THAT(api.requests(), HasSubstr("/referrers/sha256:"));
  ProcessResult tags = run_program(
      {"skopeo", "list-tags", "--tls-verify=false", "docker://" + registry.host() + "/team/api"});
  EXPECT_EQ(nlohmann::json::parse(tags.out)["Tags"], nlohmann::json::array({"1"})) << tags.out;
  // Both storages are there: the index's attestation manifest and the referrers.
  nlohmann::json j = nlohmann::json::parse(
      kiln({"inspect", "--attestations", "--tls-verify=false", "docker://" + image}).out);
  std::multiset<std::string> storages;
  for (const auto& a : j["Attestations"]) {
    storages.insert(a["Storage"].get<std::string>());
    EXPECT_EQ(a["Statements"].size(), 2u) << a.dump();
  }
  EXPECT_EQ(storages, (std::multiset<std::string>{"index", "referrers"}));
}

// kiln sign --referrers: the image's signature and its attestations' envelopes as OCI 1.1
// referrers (the fallback tag on docker-registry 2.8), which verify and verify-attestation find.
TEST_F(Attestations, SignaturesAndSignedAttestationsAsReferrers) {
  LocalRegistry registry;
  std::ofstream(ctx_ / "Containerfile") << "FROM scratch\nCOPY a.txt /a.txt\n";
  std::ofstream(ctx_ / "a.txt") << "a\n";
  std::string image = registry.host() + "/team/signed:1";
  ASSERT_EQ(kiln({"build", "-q", "--provenance", "--tls-verify=false", "--push", "-t", image,
                  ctx_.string()})
                .exit_code,
            0);
  fs::path prefix = generate_key();
  std::string remote = "docker://" + image;
  ProcessResult sig = with_password(
      {"sign", "--referrers", "--tls-verify=false", "--key", prefix.string() + ".key", remote});
  ASSERT_EQ(sig.exit_code, 0) << sig.err << registry.logs();
  ProcessResult att = with_password({"sign", "--attestations", "--referrers", "--tls-verify=false",
                                     "--key", prefix.string() + ".key", remote});
  ASSERT_EQ(att.exit_code, 0) << att.err << registry.logs();
  // Nothing under .sig or .att; the fallback tags list the artifacts.
  std::string index_digest =
      nlohmann::json::parse(kiln({"inspect", "--tls-verify=false", remote}).out)["Digest"];
  ProcessResult tags = run_program({"skopeo", "list-tags", "--tls-verify=false",
                                    "docker://" + registry.host() + "/team/signed"});
  EXPECT_THAT(tags.out, HasSubstr("sha256-" + index_digest.substr(7)));
  EXPECT_THAT(tags.out, ::testing::Not(HasSubstr(".sig")));
  EXPECT_THAT(tags.out, ::testing::Not(HasSubstr(".att")));
  ProcessResult verified =
      kiln({"verify", "--tls-verify=false", "--key", prefix.string() + ".pub", remote});
  EXPECT_EQ(verified.exit_code, 0) << verified.err;
  ProcessResult attested = kiln({"verify-attestation", "--tls-verify=false", "--key",
                                 prefix.string() + ".pub", "--type", "slsaprovenance", remote});
  EXPECT_EQ(attested.exit_code, 0) << attested.err;
  EXPECT_THAT(attested.out, HasSubstr("\"predicateType\":\"https://slsa.dev/provenance/v1\""));
  // Signing again with the same key adds nothing.
  ProcessResult again = with_password(
      {"sign", "--referrers", "--tls-verify=false", "--key", prefix.string() + ".key", remote});
  EXPECT_THAT(again.out, HasSubstr("Already signed with this key"));
}

// kiln sign --attestations writes cosign's attestation format; openssl verifies the DSSE
// signature over the PAE bytes on its own, and a statement changed after signing fails
// kiln verify-attestation.
TEST_F(Attestations, SignedAttestationsVerifyIndependentlyAndATamperedOneFails) {
  std::ofstream(ctx_ / "Containerfile") << "FROM scratch\nCOPY a.txt /a.txt\n";
  std::ofstream(ctx_ / "a.txt") << "a\n";
  fs::path layout = work_.path() / "layout";
  ASSERT_EQ(kiln({"build", "-q", "--sbom", "--provenance", "-t", "app:1", "-o",
                  "type=oci,dest=" + layout.string(), ctx_.string()})
                .exit_code,
            0);
  fs::path prefix = generate_key();
  std::string image = "oci:" + layout.string();
  ProcessResult signed_ =
      with_password({"sign", "--attestations", "--key", prefix.string() + ".key", image});
  ASSERT_EQ(signed_.exit_code, 0) << signed_.err;
  EXPECT_THAT(signed_.out, HasSubstr("Signed attestation https://slsa.dev/provenance/v1"));
  ProcessResult verified = kiln(
      {"verify-attestation", "--key", prefix.string() + ".pub", "--type", "slsaprovenance", image});
  ASSERT_EQ(verified.exit_code, 0) << verified.err;
  EXPECT_EQ(nlohmann::json::parse(verified.out)["predicateType"], "https://slsa.dev/provenance/v1");

  // The .att manifest, found by its tag in the layout.
  nlohmann::json index = nlohmann::json::parse(slurp(layout / "index.json"));
  std::string att_digest;
  for (const auto& m : index["manifests"]) {
    std::string name = m["annotations"].value("org.opencontainers.image.ref.name", "");
    if (name.ends_with(".att"))
      att_digest = m["digest"];
  }
  ASSERT_FALSE(att_digest.empty()) << index.dump();
  auto blob = [&](const std::string& digest) { return layout / "blobs/sha256" / digest.substr(7); };
  nlohmann::json att = nlohmann::json::parse(slurp(blob(att_digest)));
  ASSERT_EQ(att["layers"].size(), 2u);
  EXPECT_EQ(att["layers"][0]["mediaType"], "application/vnd.dsse.envelope.v1+json");
  nlohmann::json envelope = nlohmann::json::parse(slurp(blob(att["layers"][0]["digest"])));
  std::string payload = base64_decode(envelope["payload"].get<std::string>());
  std::string type = envelope["payloadType"];
  std::string pae = "DSSEv1 " + std::to_string(type.size()) + " " + type + " " +
                    std::to_string(payload.size()) + " " + payload;
  std::ofstream(work_.path() / "pae", std::ios::binary) << pae;
  std::ofstream(work_.path() / "sig", std::ios::binary)
      << base64_decode(envelope["signatures"][0]["sig"].get<std::string>());
  ProcessResult openssl =
      run_program({"openssl", "dgst", "-sha256", "-verify", prefix.string() + ".pub", "-signature",
                   (work_.path() / "sig").string(), (work_.path() / "pae").string()});
  EXPECT_EQ(openssl.exit_code, 0) << openssl.out << openssl.err;
  EXPECT_THAT(openssl.out, HasSubstr("Verified OK"));

  // Change the signed statement, keep the signature, and re-point the manifest and index at it.
  nlohmann::json statement = nlohmann::json::parse(payload);
  statement["predicate"]["tampered"] = true;
  envelope["payload"] = base64_encode(statement.dump());
  auto put = [&](const std::string& bytes) {
    fs::path tmp = work_.path() / "new-blob";
    std::ofstream(tmp, std::ios::binary) << bytes;
    std::string digest = "sha256:" + sha256_hex(tmp);
    fs::copy_file(tmp, blob(digest), fs::copy_options::overwrite_existing);
    return std::make_pair(digest, bytes.size());
  };
  auto [env_digest, env_size] = put(envelope.dump());
  att["layers"][0]["digest"] = env_digest;
  att["layers"][0]["size"] = env_size;
  auto [new_att, att_size] = put(att.dump());
  for (auto& m : index["manifests"]) {
    if (m["digest"] == att_digest) {
      m["digest"] = new_att;
      m["size"] = att_size;
    }
  }
  std::ofstream(layout / "index.json", std::ios::trunc) << index.dump();
  ProcessResult tampered =
      kiln({"verify-attestation", "--key", prefix.string() + ".pub", "--type", "any", image});
  EXPECT_EQ(tampered.exit_code, 1);
  EXPECT_THAT(tampered.err, HasSubstr("signature does not verify"));
}

}  // namespace
}  // namespace kiln::test
