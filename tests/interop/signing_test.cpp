// Cosign-compatible signing against a real registry (Debian's docker-registry on 127.0.0.1):
// kiln sign / kiln verify, what must make verification fail (a tampered payload, a wrong key, a
// signature moved to another image, a re-pushed tag), signatures accumulating, indexes and
// --recursive, OCI layouts and the store. Independent peers check the format both ways: openssl
// and sigstore-js (@sigstore/verify, from npm) verify what kiln signed, and kiln verifies a
// signature made with openssl and pushed with curl.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kiln/base/fd.hpp"
#include "kiln/base/strings.hpp"
#include "process.hpp"
#include "registry_fixture.hpp"

namespace kiln::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kSigstoreVerifyVersion = "2.1.1";  // runs on Debian 12's Node.js 18
constexpr const char* kManifestAccept =
    "Accept: application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.oci.image.index.v1+json";

std::string sha256_hex(const std::string& bytes) {
  ProcessResult r = run_program({"sha256sum"}, {}, bytes);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.out.substr(0, 64);
}

void write_text(const fs::path& file, const std::string& text) {
  std::ofstream(file, std::ios::binary) << text;
}

// An npm package installed once per machine in the user's cache (a fresh install goes to a
// temporary directory renamed into place, so parallel tests do not trip over each other). Empty
// with `skip_reason` set when npm cannot reach its registry.
fs::path npm_modules(const std::string& package, const std::string& version,
                     std::string& skip_reason) {
  const char* cache = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  fs::path root = cache && *cache ? fs::path(cache) : fs::path(home ? home : "/tmp") / ".cache";
  std::string slug = package;
  std::replace(slug.begin(), slug.end(), '/', '-');
  std::erase(slug, '@');
  fs::path dir = root / "kiln-tests" / (slug + "-" + version);
  if (fs::exists(dir / "node_modules" / package / "package.json"))
    return dir;
  fs::create_directories(dir.parent_path());
  TempDir staging(dir.parent_path(), "npm-");
  ProcessResult npm =
      run_program({"npm", "install", "--prefix", staging.path().string(), "--no-audit", "--no-fund",
                   "--no-update-notifier", package + "@" + version});
  if (npm.exit_code != 0) {
    for (const char* offline :
         {"ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ETIMEDOUT", "ENETUNREACH", "ECONNRESET"}) {
      if (npm.err.find(offline) != std::string::npos ||
          npm.out.find(offline) != std::string::npos) {
        skip_reason = "npm cannot reach its registry to install " + package + " (" +
                      std::string(offline) + ")";
        return {};
      }
    }
    ADD_FAILURE() << "npm install " << package << " failed: " << npm.err;
    return {};
  }
  std::error_code ignored;
  fs::rename(staging.path(), dir, ignored);  // another test may have won the race: fine
  return dir;
}

fs::path sigstore_modules(std::string& skip_reason) {
  return npm_modules("@sigstore/verify", kSigstoreVerifyVersion, skip_reason);
}

// Writes a private key in cosign's own format, the way cosign generate-key-pair does (scrypt
// N=32768 r=8 p=1 from Node's crypto, NaCl secretbox from tweetnacl, an independent
// implementation of what kiln reads through libsodium).
constexpr const char* kCosignKeyWriter = R"(
const fs = require('fs');
const crypto = require('crypto');
const nacl = require(process.argv[2] + '/node_modules/tweetnacl');
const der = fs.readFileSync(process.argv[3]);
const salt = crypto.randomBytes(32);
const nonce = crypto.randomBytes(24);
const key = crypto.scryptSync(process.argv[5], salt, 32, {N: 32768, r: 8, p: 1, maxmem: 64 << 20});
const box = nacl.secretbox(new Uint8Array(der), new Uint8Array(nonce), new Uint8Array(key));
const doc = JSON.stringify({
  kdf: {name: 'scrypt', params: {N: 32768, r: 8, p: 1}, salt: salt.toString('base64')},
  cipher: {name: 'nacl/secretbox', nonce: nonce.toString('base64')},
  ciphertext: Buffer.from(box).toString('base64')});
const nl = String.fromCharCode(10);
const body = Buffer.from(doc).toString('base64').match(/.{1,64}/g).join(nl);
fs.writeFileSync(process.argv[4], '-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----' + nl + body +
                 nl + '-----END ENCRYPTED SIGSTORE PRIVATE KEY-----' + nl);
)";

class Signing : public ::testing::Test {
 protected:
  void SetUp() override {
    ctx_ = work_.path() / "ctx";
    fs::create_directories(ctx_);
    write_text(ctx_ / "Containerfile", "FROM scratch\nCOPY f /f\n");
    ProcessResult keys = kiln({"key", "generate", "--output-key-prefix", path("cosign")});
    ASSERT_EQ(keys.exit_code, 0) << keys.err;
  }

  std::string path(const std::string& name) const { return (work_.path() / name).string(); }

  ProcessResult kiln(std::vector<std::string> args) {
    return run_kiln(args, {}, {},
                    {"KILN_ROOT=" + path("store"), "SOURCE_DATE_EPOCH=1700000000",
                     "KILN_PASSWORD=" + password_});
  }

  // kiln sign / verify against the test registry.
  ProcessResult sign(const std::string& key, std::vector<std::string> args) {
    args.insert(args.begin(), {"sign", "--tls-verify=false", "--key", path(key)});
    return kiln(args);
  }
  ProcessResult verify(const std::string& key, const std::string& image) {
    return kiln({"verify", "--tls-verify=false", "--key", path(key), image});
  }

  // Builds FROM scratch an image whose /f holds `content` and pushes it as `ref`; returns the
  // manifest digest the registry has.
  std::string push_image(const std::string& ref, const std::string& content,
                         std::vector<std::string> extra = {}) {
    write_text(ctx_ / "f", content);
    std::vector<std::string> args = {"build", "--tls-verify=false", "--push", "-t", ref};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(ctx_.string());
    ProcessResult built = kiln(args);
    EXPECT_EQ(built.exit_code, 0) << built.err << registry_.logs();
    return manifest_digest(ref.substr(ref.find('/') + 1, ref.rfind(':') - ref.find('/') - 1),
                           ref.substr(ref.rfind(':') + 1));
  }

  std::string url(const std::string& repo, const std::string& rest) const {
    return "http://" + registry_.host() + "/v2/" + repo + "/" + rest;
  }

  std::string manifest_digest(const std::string& repo, const std::string& reference) {
    ProcessResult head =
        run_program({"curl", "-sfI", "-H", kManifestAccept, url(repo, "manifests/" + reference)});
    EXPECT_EQ(head.exit_code, 0) << head.err;
    for (const std::string& line : split(head.out, '\n')) {
      if (starts_with(to_lower(line), "docker-content-digest:"))
        return std::string(trim(line.substr(line.find(':') + 1)));
    }
    ADD_FAILURE() << "no Docker-Content-Digest for " << repo << ":" << reference;
    return {};
  }

  std::string get(const std::string& repo, const std::string& rest) {
    ProcessResult r = run_program({"curl", "-sf", "-H", kManifestAccept, url(repo, rest)});
    EXPECT_EQ(r.exit_code, 0) << "GET " << rest << ": " << r.err;
    return r.out;
  }

  nlohmann::json signature_manifest(const std::string& repo, const std::string& digest) {
    std::string tag = "sha256-" + digest.substr(7) + ".sig";
    return nlohmann::json::parse(get(repo, "manifests/" + tag));
  }

  // Pushes `bytes` as a blob the way the distribution spec's two-step upload goes; returns its
  // descriptor.
  nlohmann::json push_blob(const std::string& repo, const std::string& media_type,
                           const std::string& bytes) {
    std::string digest = "sha256:" + sha256_hex(bytes);
    fs::path file = work_.path() / ("blob-" + digest.substr(7));
    write_text(file, bytes);
    ProcessResult start = run_program(
        {"curl", "-sf", "-D", "-", "-o", "/dev/null", "-X", "POST", url(repo, "blobs/uploads/")});
    EXPECT_EQ(start.exit_code, 0) << start.err;
    std::string location;
    for (const std::string& line : split(start.out, '\n')) {
      if (starts_with(to_lower(line), "location:"))
        location = std::string(trim(line.substr(9)));
    }
    if (starts_with(location, "/"))
      location = "http://" + registry_.host() + location;
    location +=
        (location.find('?') == std::string::npos ? "?" : "&") + std::string("digest=") + digest;
    ProcessResult put =
        run_program({"curl", "-sf", "-X", "PUT", "-H", "Content-Type: application/octet-stream",
                     "--data-binary", "@" + file.string(), location});
    EXPECT_EQ(put.exit_code, 0) << put.err << registry_.logs();
    return {{"mediaType", media_type}, {"digest", digest}, {"size", bytes.size()}};
  }

  void put_manifest(const std::string& repo, const std::string& tag, const nlohmann::json& doc) {
    fs::path file = work_.path() / "manifest.json";
    write_text(file, doc.dump());
    ProcessResult put =
        run_program({"curl", "-sf", "-X", "PUT", "-H",
                     "Content-Type: application/vnd.oci.image.manifest.v1+json", "--data-binary",
                     "@" + file.string(), url(repo, "manifests/" + tag)});
    ASSERT_EQ(put.exit_code, 0) << put.err << registry_.logs();
  }

  TempDir work_{{}, "kiln-signing-"};
  LocalRegistry registry_;
  fs::path ctx_;
  std::string password_ = "correct horse";
};

TEST_F(Signing, KeyGenerationWritesAnEncryptedPkcs8KeyAndRefusesToOverwrite) {
  fs::path key = work_.path() / "cosign.key";
  EXPECT_THAT(read_file(key), HasSubstr("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
  EXPECT_THAT(read_file(work_.path() / "cosign.pub"), HasSubstr("-----BEGIN PUBLIC KEY-----"));
  struct stat st {};
  ASSERT_EQ(::stat(key.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // OpenSSL reads it with the password, as an EC key on P-256.
  ProcessResult openssl = run_program(
      {"openssl", "pkey", "-in", key.string(), "-passin", "pass:" + password_, "-noout", "-text"});
  EXPECT_EQ(openssl.exit_code, 0) << openssl.err;
  EXPECT_THAT(openssl.out, HasSubstr("prime256v1"));

  ProcessResult again = kiln({"key", "generate", "--output-key-prefix", path("cosign")});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("already exists (--force overwrites it)"));
  std::string before = read_file(key);
  ProcessResult forced =
      kiln({"key", "generate", "--force", "--output-key-prefix", path("cosign")});
  EXPECT_EQ(forced.exit_code, 0) << forced.err;
  EXPECT_NE(read_file(key), before);

  password_.clear();
  ProcessResult plain = kiln({"key", "generate", "--output-key-prefix", path("plain")});
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_THAT(read_file(work_.path() / "plain.key"), HasSubstr("-----BEGIN PRIVATE KEY-----"));

  // No password variable (glibc's putenv removes a NAME without "=") and no terminal to ask on
  // (setsid: no controlling terminal).
  ProcessResult no_tty =
      run_program({"setsid", KILN_BINARY, "key", "generate", "--output-key-prefix", path("none")},
                  {}, {}, {"KILN_PASSWORD", "COSIGN_PASSWORD"});
  EXPECT_EQ(no_tty.exit_code, 1);
  EXPECT_THAT(no_tty.err, HasSubstr("set KILN_PASSWORD"));
  EXPECT_FALSE(fs::exists(work_.path() / "none.key"));
}

TEST_F(Signing, ACosignGeneratedKeySigns) {
  std::string skip;
  fs::path modules = npm_modules("tweetnacl", "1.0.3", skip);
  if (modules.empty())
    GTEST_SKIP() << skip;
  ASSERT_EQ(run_program({"openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                         "ec_paramgen_curve:P-256", "-out", path("p256.pem")})
                .exit_code,
            0);
  ASSERT_EQ(run_program({"openssl", "pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in",
                         path("p256.pem"), "-out", path("p256.der")})
                .exit_code,
            0);
  ASSERT_EQ(
      run_program({"openssl", "pkey", "-in", path("p256.pem"), "-pubout", "-out", path("p256.pub")})
          .exit_code,
      0);
  write_text(work_.path() / "writer.js", kCosignKeyWriter);
  ProcessResult wrote = run_program({"node", path("writer.js"), modules.string(), path("p256.der"),
                                     path("cosign-format.key"), "kiln-cosign"});
  ASSERT_EQ(wrote.exit_code, 0) << wrote.err;

  std::string ref = registry_.host() + "/team/cosign-key:1";
  push_image(ref, "cosign key\n");
  password_ = "kiln-cosign";
  ProcessResult signed_ = sign("cosign-format.key", {ref});
  ASSERT_EQ(signed_.exit_code, 0) << signed_.err;
  ProcessResult verified = verify("p256.pub", ref);
  EXPECT_EQ(verified.exit_code, 0) << verified.err;
  password_ = "not-the-password";
  ProcessResult wrong = sign("cosign-format.key", {ref});
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_THAT(wrong.err, HasSubstr("wrong password"));
}

TEST_F(Signing, SignAndVerifyAndOpensslAgrees) {
  std::string ref = registry_.host() + "/team/app:1";
  std::string digest = push_image(ref, "one\n");
  ProcessResult signed_ = sign("cosign.key", {"--annotation", "build=42", ref});
  ASSERT_EQ(signed_.exit_code, 0) << signed_.err << registry_.logs();

  ProcessResult verified = verify("cosign.pub", ref);
  EXPECT_EQ(verified.exit_code, 0) << verified.err;
  EXPECT_THAT(verified.out, HasSubstr("Verified " + ref + " (" + digest + ")"));
  EXPECT_THAT(verified.out, HasSubstr("annotations: {\"build\":\"42\"}"));
  EXPECT_EQ(verify("cosign.pub", registry_.host() + "/team/app@" + digest).exit_code, 0);

  // Signing again with the same key and payload adds nothing.
  ProcessResult again = sign("cosign.key", {"--annotation", "build=42", ref});
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.out, HasSubstr("Already signed"));

  nlohmann::json manifest = signature_manifest("team/app", digest);
  EXPECT_EQ(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
  EXPECT_EQ(manifest["config"]["mediaType"], "application/vnd.oci.image.config.v1+json");
  ASSERT_EQ(manifest["layers"].size(), 1u);
  const nlohmann::json& layer = manifest["layers"][0];
  EXPECT_EQ(layer["mediaType"], "application/vnd.dev.cosign.simplesigning.v1+json");
  std::string payload = get("team/app", "blobs/" + layer["digest"].get<std::string>());
  nlohmann::json claims = nlohmann::json::parse(payload);
  EXPECT_EQ(claims["critical"]["identity"]["docker-reference"], registry_.host() + "/team/app");
  EXPECT_EQ(claims["critical"]["image"]["docker-manifest-digest"], digest);
  EXPECT_EQ(claims["critical"]["type"], "cosign container image signature");
  EXPECT_EQ(claims["optional"]["build"], "42");

  // openssl: the annotation is base64 of a DER ECDSA signature over SHA-256 of the payload.
  write_text(work_.path() / "payload", payload);
  write_text(work_.path() / "sig.b64",
             layer["annotations"]["dev.cosignproject.cosign/signature"].get<std::string>());
  ProcessResult der = run_program(
      {"openssl", "base64", "-d", "-A", "-in", path("sig.b64"), "-out", path("sig.der")});
  ASSERT_EQ(der.exit_code, 0) << der.err;
  ProcessResult openssl = run_program({"openssl", "dgst", "-sha256", "-verify", path("cosign.pub"),
                                       "-signature", path("sig.der"), path("payload")});
  EXPECT_EQ(openssl.exit_code, 0) << openssl.out << openssl.err;
  EXPECT_THAT(openssl.out, HasSubstr("Verified OK"));
}

// sigstore-js, with a trust root that holds only the public key, verifies each signature kiln
// pushed, and refuses it with another key.
TEST_F(Signing, SigstoreJsVerifiesWhatKilnSigned) {
  std::string skip;
  fs::path modules = sigstore_modules(skip);
  if (!skip.empty())
    GTEST_SKIP() << skip;
  ASSERT_FALSE(modules.empty());
  std::string ref = registry_.host() + "/team/app:1";
  std::string digest = push_image(ref, "one\n");
  ProcessResult other = kiln({"key", "generate", "--output-key-prefix", path("other")});
  ASSERT_EQ(other.exit_code, 0) << other.err;
  ASSERT_EQ(sign("cosign.key", {"--annotation", "build=42", ref}).exit_code, 0);
  ASSERT_EQ(sign("other.key", {ref}).exit_code, 0);

  std::string helper = std::string(KILN_TEST_SUPPORT_DIR) + "/sigstore_verify.mjs";
  auto sigstore_js = [&](const std::string& key) {
    return run_program(
        {"node", helper, modules.string(), path(key), registry_.host(), "team/app", digest});
  };
  ProcessResult js = sigstore_js("cosign.pub");
  // Each key verifies its own layer and not the other's.
  EXPECT_EQ(js.exit_code, 1) << js.out << js.err;
  nlohmann::json manifest = signature_manifest("team/app", digest);
  ASSERT_EQ(manifest["layers"].size(), 2u);
  std::string mine = manifest["layers"][0]["digest"].get<std::string>();
  std::string theirs = manifest["layers"][1]["digest"].get<std::string>();
  EXPECT_THAT(js.out, HasSubstr("verified " + mine));
  EXPECT_THAT(js.out, HasSubstr("failed " + theirs + ": signature verification failed"));
  ProcessResult js_other = sigstore_js("other.pub");
  EXPECT_THAT(js_other.out, HasSubstr("verified " + theirs));
  EXPECT_THAT(js_other.out, HasSubstr("failed " + mine));

  // A single signature: the helper's exit code says all verified.
  std::string single = push_image(registry_.host() + "/team/one:1", "single\n");
  ASSERT_EQ(sign("cosign.key", {registry_.host() + "/team/one:1"}).exit_code, 0);
  ProcessResult all = run_program(
      {"node", helper, modules.string(), path("cosign.pub"), registry_.host(), "team/one", single});
  EXPECT_EQ(all.exit_code, 0) << all.out << all.err;
}

TEST_F(Signing, BuildPushSignKeySignsWhatItPushed) {
  std::string ref = registry_.host() + "/team/built:1";
  std::string digest = push_image(ref, "built\n", {"--sign-key", path("cosign.key")});
  ProcessResult verified = verify("cosign.pub", ref);
  EXPECT_EQ(verified.exit_code, 0) << verified.err;
  EXPECT_THAT(verified.out, HasSubstr("(" + digest + ")"));
  // Without anything pushed there is nothing to sign: refused before the build.
  write_text(ctx_ / "f", "x\n");
  ProcessResult refused =
      kiln({"build", "--sign-key", path("cosign.key"), "-t", "local:1", ctx_.string()});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr("add --push"));
}

TEST_F(Signing, ATamperedPayloadOrAWrongKeyDoesNotVerify) {
  std::string ref = registry_.host() + "/team/app:1";
  std::string digest = push_image(ref, "one\n");
  ASSERT_EQ(sign("cosign.key", {"--annotation", "build=42", ref}).exit_code, 0);

  ProcessResult other = kiln({"key", "generate", "--output-key-prefix", path("other")});
  ASSERT_EQ(other.exit_code, 0) << other.err;
  ProcessResult wrong_key = verify("other.pub", ref);
  EXPECT_EQ(wrong_key.exit_code, 1);
  EXPECT_THAT(wrong_key.err, HasSubstr("signature does not verify with " + path("other.pub")));
  EXPECT_THAT(wrong_key.out, Not(HasSubstr("Verified")));

  // The payload changed (a new blob, its digest in the layer), the signature kept.
  nlohmann::json manifest = signature_manifest("team/app", digest);
  std::string payload =
      get("team/app", "blobs/" + manifest["layers"][0]["digest"].get<std::string>());
  size_t at = payload.find("\"42\"");
  ASSERT_NE(at, std::string::npos) << payload;
  payload.replace(at, 4, "\"43\"");
  nlohmann::json blob =
      push_blob("team/app", "application/vnd.dev.cosign.simplesigning.v1+json", payload);
  manifest["layers"][0]["digest"] = blob["digest"];
  manifest["layers"][0]["size"] = blob["size"];
  put_manifest("team/app", "sha256-" + digest.substr(7) + ".sig", manifest);
  ProcessResult tampered = verify("cosign.pub", ref);
  EXPECT_EQ(tampered.exit_code, 1);
  EXPECT_THAT(tampered.err, HasSubstr("signature does not verify with " + path("cosign.pub")));
}

TEST_F(Signing, ASignatureMovedToAnotherImageOrARepushedTagDoesNotVerify) {
  std::string a = push_image(registry_.host() + "/team/app:a", "a\n");
  std::string b = push_image(registry_.host() + "/team/app:b", "b\n");
  ASSERT_EQ(sign("cosign.key", {registry_.host() + "/team/app:a"}).exit_code, 0);
  put_manifest("team/app", "sha256-" + b.substr(7) + ".sig", signature_manifest("team/app", a));
  ProcessResult moved = verify("cosign.pub", registry_.host() + "/team/app:b");
  EXPECT_EQ(moved.exit_code, 1);
  EXPECT_THAT(moved.err, HasSubstr("payload is for " + a + ", not " + b));

  // A new image pushed to the signed tag: the tag now names a digest nobody signed.
  std::string ref = registry_.host() + "/team/app:1";
  push_image(ref, "first\n");
  ASSERT_EQ(sign("cosign.key", {ref}).exit_code, 0);
  ASSERT_EQ(verify("cosign.pub", ref).exit_code, 0);
  std::string second = push_image(ref, "second\n");
  ProcessResult repushed = verify("cosign.pub", ref);
  EXPECT_EQ(repushed.exit_code, 1);
  EXPECT_THAT(repushed.err, HasSubstr("no signatures found for " + ref + " (" + second + ")"));
}

TEST_F(Signing, SignaturesByTwoKeysAccumulateAsTwoLayers) {
  std::string ref = registry_.host() + "/team/app:1";
  std::string digest = push_image(ref, "one\n");
  ProcessResult other = kiln({"key", "generate", "--output-key-prefix", path("other")});
  ASSERT_EQ(other.exit_code, 0) << other.err;
  ASSERT_EQ(sign("cosign.key", {ref}).exit_code, 0);
  ASSERT_EQ(sign("other.key", {"--annotation", "by=other", ref}).exit_code, 0);
  ASSERT_EQ(sign("cosign.key", {ref}).exit_code, 0);  // already there: no third layer

  nlohmann::json manifest = signature_manifest("team/app", digest);
  ASSERT_EQ(manifest["layers"].size(), 2u);
  EXPECT_NE(manifest["layers"][0]["digest"], manifest["layers"][1]["digest"]);
  std::string config = get("team/app", "blobs/" + manifest["config"]["digest"].get<std::string>());
  EXPECT_EQ(nlohmann::json::parse(config)["rootfs"]["diff_ids"].size(), 2u);

  for (const char* key : {"cosign.pub", "other.pub"}) {
    ProcessResult r = verify(key, ref);
    EXPECT_EQ(r.exit_code, 0) << key << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr("signature does not verify with"));  // the other key's layer
  }
  EXPECT_THAT(verify("other.pub", ref).out, HasSubstr("annotations: {\"by\":\"other\"}"));
}

TEST_F(Signing, AnIndexIsSignedAsAWholeAndWithRecursiveEachManifestToo) {
  std::string ref = registry_.host() + "/team/multi:1";
  std::string index_digest = push_image(ref, "multi\n", {"--platform", "linux/amd64,linux/arm64"});
  nlohmann::json index = nlohmann::json::parse(get("team/multi", "manifests/1"));
  ASSERT_EQ(index["mediaType"], "application/vnd.oci.image.index.v1+json");
  ASSERT_EQ(index["manifests"].size(), 2u);

  ASSERT_EQ(sign("cosign.key", {ref}).exit_code, 0);
  EXPECT_EQ(verify("cosign.pub", ref).exit_code, 0);
  std::string child =
      registry_.host() + "/team/multi@" + index["manifests"][1]["digest"].get<std::string>();
  ProcessResult unsigned_child = verify("cosign.pub", child);
  EXPECT_EQ(unsigned_child.exit_code, 1);
  EXPECT_THAT(unsigned_child.err, HasSubstr("no signatures found"));

  ProcessResult recursive = sign("cosign.key", {"--recursive", ref});
  ASSERT_EQ(recursive.exit_code, 0) << recursive.err;
  EXPECT_THAT(recursive.out, HasSubstr("Already signed"));  // the index itself
  for (const nlohmann::json& m : index["manifests"]) {
    std::string digest = m["digest"].get<std::string>();
    EXPECT_EQ(verify("cosign.pub", registry_.host() + "/team/multi@" + digest).exit_code, 0)
        << digest;
  }
  EXPECT_EQ(signature_manifest("team/multi", index_digest)["layers"].size(), 1u);
}

TEST_F(Signing, AnOciLayoutAndTheStoreHoldTheirOwnSignatures) {
  write_text(ctx_ / "f", "layout\n");
  fs::path layout = work_.path() / "layout";
  ProcessResult built =
      kiln({"build", "-t", "app:1", "-o", "type=oci,dest=" + layout.string(), ctx_.string()});
  ASSERT_EQ(built.exit_code, 0) << built.err;

  std::string in_layout = "oci:" + layout.string();
  ProcessResult signed_layout = sign("cosign.key", {in_layout});
  ASSERT_EQ(signed_layout.exit_code, 0) << signed_layout.err;
  EXPECT_EQ(verify("cosign.pub", in_layout).exit_code, 0);
  EXPECT_EQ(verify("cosign.pub", in_layout + ":app:1").exit_code, 0);
  ProcessResult other = kiln({"key", "generate", "--output-key-prefix", path("other")});
  ASSERT_EQ(other.exit_code, 0) << other.err;
  EXPECT_EQ(verify("other.pub", in_layout).exit_code, 1);
  // The signature manifest is an ordinary tag of the layout, readable by skopeo.
  nlohmann::json index = nlohmann::json::parse(read_file(layout / "index.json"));
  ASSERT_EQ(index["manifests"].size(), 2u);
  std::string tag =
      index["manifests"][1]["annotations"]["org.opencontainers.image.ref.name"].get<std::string>();
  EXPECT_EQ(tag, "sha256-" + index["manifests"][0]["digest"].get<std::string>().substr(7) + ".sig");
  ProcessResult skopeo = run_program({"skopeo", "inspect", "--raw", in_layout + ":" + tag});
  EXPECT_EQ(skopeo.exit_code, 0) << skopeo.err;
  EXPECT_THAT(skopeo.out, HasSubstr("dev.cosignproject.cosign/signature"));

  ProcessResult unsigned_store = verify("cosign.pub", "app:1");
  EXPECT_EQ(unsigned_store.exit_code, 1);
  EXPECT_THAT(unsigned_store.err, HasSubstr("no signatures found for app:1"));
  ASSERT_EQ(sign("cosign.key", {"app:1"}).exit_code, 0);
  ProcessResult in_store = verify("cosign.pub", "app:1");
  EXPECT_EQ(in_store.exit_code, 0) << in_store.err;
  ProcessResult images = kiln({"images", "--format", "json"});
  EXPECT_THAT(images.out, HasSubstr("app:sha256-"));
  ProcessResult check = kiln({"check"});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
}

TEST_F(Signing, KilnVerifiesASignatureMadeWithOpensslAndPushedWithCurl) {
  std::string ref = registry_.host() + "/team/app:1";
  std::string digest = push_image(ref, "one\n");
  ASSERT_EQ(run_program({"openssl", "ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out",
                         path("ec.pem")})
                .exit_code,
            0);
  ASSERT_EQ(run_program({"openssl", "pkcs8", "-topk8", "-nocrypt", "-in", path("ec.pem"), "-out",
                         path("key.pem")})
                .exit_code,
            0);
  ASSERT_EQ(
      run_program({"openssl", "pkey", "-in", path("key.pem"), "-pubout", "-out", path("key.pub")})
          .exit_code,
      0);
  std::string payload =
      R"({"critical":{"identity":{"docker-reference":")" + registry_.host() +
      R"(/team/app"},"image":{"docker-manifest-digest":")" + digest +
      R"("},"type":"cosign container image signature"},"optional":{"by":"openssl"}})";
  write_text(work_.path() / "payload", payload);
  ProcessResult signed_ = run_program({"openssl", "dgst", "-sha256", "-sign", path("key.pem"),
                                       "-out", path("sig.der"), path("payload")});
  ASSERT_EQ(signed_.exit_code, 0) << signed_.err;
  ProcessResult b64 = run_program({"openssl", "base64", "-A", "-in", path("sig.der")});
  ASSERT_EQ(b64.exit_code, 0) << b64.err;

  nlohmann::json layer =
      push_blob("team/app", "application/vnd.dev.cosign.simplesigning.v1+json", payload);
  layer["annotations"] = {{"dev.cosignproject.cosign/signature", std::string(trim(b64.out))}};
  nlohmann::json config_doc = {{"architecture", ""},
                               {"os", ""},
                               {"rootfs", {{"type", "layers"}, {"diff_ids", {layer["digest"]}}}},
                               {"config", nlohmann::json::object()}};
  nlohmann::json config =
      push_blob("team/app", "application/vnd.oci.image.config.v1+json", config_doc.dump());
  put_manifest("team/app", "sha256-" + digest.substr(7) + ".sig",
               {{"schemaVersion", 2},
                {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                {"config", config},
                {"layers", {layer}}});

  ProcessResult verified = verify("key.pub", ref);
  EXPECT_EQ(verified.exit_code, 0) << verified.err;
  EXPECT_THAT(verified.out, HasSubstr("annotations: {\"by\":\"openssl\"}"));
  // And openssl's keys sign: PKCS#8 and SEC1 ("EC PRIVATE KEY") alike.
  ProcessResult with_sec1 = sign("ec.pem", {"--annotation", "by=kiln", ref});
  EXPECT_EQ(with_sec1.exit_code, 0) << with_sec1.err;
  EXPECT_EQ(signature_manifest("team/app", digest)["layers"].size(), 2u);
}

}  // namespace
}  // namespace kiln::test
