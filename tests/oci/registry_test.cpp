// The registry client against Debian's docker-registry (plain, basic auth, token auth), with
// skopeo as the independent peer that puts images in and reads kiln's pushes back, and proxies
// that corrupt, cut off or refuse traffic (tests/support/registry_helpers.py).
#include "kiln/oci/registry.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <mutex>
#include <random>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"
#include "kiln/oci/auth_config.hpp"
#include "kiln/oci/image_config.hpp"
#include "kiln/oci/manifest.hpp"
#include "kiln/oci/media_types.hpp"
#include "process.hpp"
#include "registry_fixture.hpp"

namespace kiln::oci {
namespace {

namespace fs = std::filesystem;
using test::FaultProxy;
using test::LocalRegistry;
using test::ProcessResult;
using test::RegistryAuth;
using test::run_program;
using ::testing::HasSubstr;

const Platform kAmd64{"linux", "amd64", ""};
const Platform kArm64{"linux", "arm64", ""};

Descriptor describe(const char* media_type, const Digest& digest, size_t size) {
  return {media_type, digest, static_cast<int64_t>(size), {}, {}, {}, {}};
}

struct TestImage {
  Descriptor manifest;
  Descriptor config;
  Descriptor layer;
};

// A one-layer image for `platform` in `store`. The layer holds a file with `text` and
// `random_bytes` random (so incompressible) bytes: the layer is about that large.
TestImage make_image(Store& store, const Platform& platform, const std::string& text,
                     size_t random_bytes = 0) {
  TempDir work;
  fs::create_directory(work.path() / "root");
  std::string content = text;
  std::mt19937 random(std::random_device{}());
  for (size_t i = 0; i < random_bytes; ++i)
    content += static_cast<char>(random() & 0xff);
  std::ofstream(work.path() / "root" / "file.txt", std::ios::binary) << content;
  fs::path tar = work.path() / "layer.tar";
  EXPECT_EQ(run_program({"tar", "-C", (work.path() / "root").string(), "-cf", tar.string(), "."})
                .exit_code,
            0);
  EXPECT_EQ(run_program({"gzip", "-nk", tar.string()}).exit_code, 0);

  TestImage image;
  std::string gzipped = read_file(tar.string() + ".gz");
  image.layer = describe(media_type::kOciLayerGzip, store.put_blob(gzipped), gzipped.size());
  ImageConfig config;
  config.os = platform.os;
  config.architecture = platform.architecture;
  config.variant = platform.variant;
  config.diff_ids = {sha256_of_file(tar)};
  std::string config_bytes = serialize(config);
  image.config =
      describe(media_type::kOciConfig, store.put_blob(config_bytes), config_bytes.size());
  Manifest manifest;
  manifest.media_type = media_type::kOciManifest;
  manifest.config = image.config;
  manifest.layers = {image.layer};
  std::string bytes = serialize(manifest);
  image.manifest = describe(media_type::kOciManifest, store.put_blob(bytes), bytes.size());
  return image;
}

Descriptor make_index(Store& store, const std::vector<std::pair<TestImage, Platform>>& images) {
  Index index;
  index.media_type = media_type::kOciIndex;
  for (const auto& [image, platform] : images) {
    Descriptor entry = image.manifest;
    entry.platform = platform;
    index.manifests.push_back(entry);
  }
  std::string bytes = serialize(index);
  return describe(media_type::kOciIndex, store.put_blob(bytes), bytes.size());
}

// The message of the kiln::Error that f throws, or "" when it throws nothing.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// The HTTP status of the RegistryError that f throws, or -1.
template <typename F>
int status_of(F&& f) {
  try {
    f();
  } catch (const RegistryError& e) {
    return e.http_status();
  }
  return -1;
}

class RegistryTest : public ::testing::Test {
 protected:
  TempDir dir_;
  Store source_{dir_.path() / "source"};  // what skopeo pushes from
  Store store_{dir_.path() / "store"};    // what kiln pulls into and pushes from

  // Options that read no real auth file and collect the log lines.
  RegistryOptions options() {
    RegistryOptions options;
    options.auth_file = dir_.path() / "no-auth.json";
    options.log = [this](const std::string& line) {
      std::lock_guard lock(log_mutex_);
      log_.push_back(line);
    };
    return options;
  }

  size_t logged(const std::string& part) {
    std::lock_guard lock(log_mutex_);
    return static_cast<size_t>(std::count_if(log_.begin(), log_.end(), [&](const std::string& l) {
      return l.find(part) != std::string::npos;
    }));
  }
  void clear_log() {
    std::lock_guard lock(log_mutex_);
    log_.clear();
  }
  std::string log_text() {
    std::lock_guard lock(log_mutex_);
    std::string text;
    for (const std::string& line : log_)
      text += line + "\n";
    return text;
  }

  // skopeo copies the image tagged `name` in source_ to docker://DEST.
  void skopeo_push(const std::string& name, const std::string& dest, bool all = false,
                   const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {"skopeo", "copy", "--dest-tls-verify=false"};
    if (all)
      argv.push_back("--all");
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back("oci:" + source_.root().string() + ":" + name);
    argv.push_back("docker://" + dest);
    ProcessResult result = run_program(argv);
    ASSERT_EQ(result.exit_code, 0) << result.err;
  }

  // What skopeo reads from docker://REF, byte for byte.
  std::string skopeo_raw(const std::string& ref, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {"skopeo", "inspect", "--raw", "--tls-verify=false"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back("docker://" + ref);
    ProcessResult result = run_program(argv);
    EXPECT_EQ(result.exit_code, 0) << result.err;
    return result.out;
  }

  // skopeo copies docker://REF into a fresh OCI layout and reports whether it worked.
  void skopeo_pull(const std::string& ref, bool all = false) {
    fs::path out = dir_.path() / ("copy-" + std::to_string(copies_++));
    std::vector<std::string> argv = {"skopeo", "copy", "--src-tls-verify=false"};
    if (all)
      argv.push_back("--all");
    argv.push_back("docker://" + ref);
    argv.push_back("oci:" + out.string() + ":copy");
    ProcessResult result = run_program(argv);
    EXPECT_EQ(result.exit_code, 0) << result.err;
  }

 private:
  std::mutex log_mutex_;
  std::vector<std::string> log_;
  int copies_ = 0;
};

TEST_F(RegistryTest, PullsAnImageSkopeoPushed) {
  LocalRegistry registry;
  TestImage image = make_image(source_, host_platform(), "single", 5000);
  source_.tag(image.manifest, "single:1");
  skopeo_push("single:1", registry.host() + "/single:1");

  Reference ref = parse_reference(registry.host() + "/single:1");
  ResolvedImage pulled = pull_image(store_, ref, host_platform(), options());
  EXPECT_EQ(pulled.manifest.digest, image.manifest.digest);
  EXPECT_EQ(pulled.parsed.config, image.config);
  EXPECT_EQ(pulled.parsed.layers, std::vector<Descriptor>{image.layer});
  EXPECT_EQ(pulled.config.architecture, host_platform().architecture);
  for (const Descriptor& d : {image.manifest, image.config, image.layer})
    EXPECT_EQ(store_.read_blob(d.digest), source_.read_blob(d.digest));
  std::optional<TaggedImage> tagged = store_.find(registry.host() + "/single:1");
  ASSERT_TRUE(tagged);
  EXPECT_EQ(tagged->descriptor.digest, image.manifest.digest);
  EXPECT_EQ(logged("pulled blob"), 2u) << log_text();

  clear_log();
  pull_image(store_, ref, host_platform(), options());
  EXPECT_EQ(logged("pulled blob"), 0u) << "blobs in the store are not fetched again";

  RegistryClient client(registry.host(), options());
  client.ping();
  EXPECT_EQ(client.list_tags("single"), std::vector<std::string>{"1"});
  EXPECT_EQ(client.get_manifest("single", image.manifest.digest.str()).bytes,
            source_.read_blob(image.manifest.digest));
  std::optional<Descriptor> head = client.head_manifest("single", "1");
  ASSERT_TRUE(head);
  EXPECT_EQ(head->digest, image.manifest.digest);
  EXPECT_EQ(head->size, image.manifest.size);
  EXPECT_EQ(head->media_type, media_type::kOciManifest);
  EXPECT_FALSE(client.head_manifest("single", "2"));
  EXPECT_TRUE(client.blob_exists("single", image.layer.digest));
  EXPECT_FALSE(client.blob_exists("single", sha256_of("not pushed")));
  EXPECT_THAT(
      error_of([&] { client.get_manifest("single", "2"); }),
      HasSubstr("pulling manifest " + registry.host() + "/single:2: manifest unknown (HTTP 404)"));
}

TEST_F(RegistryTest, PullsThePlatformAskedForFromAnIndex) {
  LocalRegistry registry;
  TestImage amd64 = make_image(source_, kAmd64, "amd64");
  TestImage arm64 = make_image(source_, kArm64, "arm64");
  Descriptor index = make_index(source_, {{amd64, kAmd64}, {arm64, kArm64}});
  source_.tag(index, "multi:1");
  skopeo_push("multi:1", registry.host() + "/multi:1", /*all=*/true);

  ResolvedImage pulled =
      pull_image(store_, parse_reference(registry.host() + "/multi:1"), kArm64, options());
  EXPECT_EQ(pulled.manifest.digest, arm64.manifest.digest);
  EXPECT_EQ(pulled.manifest.platform, kArm64);
  EXPECT_EQ(pulled.config.architecture, "arm64");
  EXPECT_TRUE(store_.has_blob(arm64.layer.digest));
  EXPECT_FALSE(store_.has_blob(amd64.layer.digest));
  EXPECT_EQ(store_.find(registry.host() + "/multi:1")->descriptor.digest, arm64.manifest.digest);

  EXPECT_THAT(error_of([&] {
                pull_image(store_, parse_reference(registry.host() + "/multi:1"),
                           parse_platform("linux/s390x"), options());
              }),
              HasSubstr("pulling " + registry.host() +
                        "/multi:1: no image for platform linux/s390x (it has: linux/amd64, "
                        "linux/arm64)"));

  // By digest: the index's digest, then the manifest picked from it.
  ResolvedImage by_digest = pull_image(
      store_, parse_reference(registry.host() + "/multi@" + index.digest.str()), kAmd64, options());
  EXPECT_EQ(by_digest.manifest.digest, amd64.manifest.digest);
  EXPECT_THAT(error_of([&] {
                pull_image(store_,
                           parse_reference(registry.host() + "/multi@" +
                                           sha256_of("no such manifest").str()),
                           kAmd64, options());
              }),
              HasSubstr("manifest unknown"));
}

TEST_F(RegistryTest, PushesImagesAndIndexesThatSkopeoReadsBack) {
  LocalRegistry registry;
  TestImage image = make_image(store_, kAmd64, "pushed", 3000);
  Digest pushed =
      push_image(store_, image.manifest, parse_reference(registry.host() + "/pushed:1"), options());
  EXPECT_EQ(pushed, image.manifest.digest);
  EXPECT_EQ(skopeo_raw(registry.host() + "/pushed:1"), store_.read_blob(image.manifest.digest));
  skopeo_pull(registry.host() + "/pushed:1");

  TestImage arm64 = make_image(store_, kArm64, "pushed arm64");
  Descriptor index = make_index(store_, {{image, kAmd64}, {arm64, kArm64}});
  EXPECT_EQ(
      push_image(store_, index, parse_reference(registry.host() + "/pushed:multi"), options()),
      index.digest);
  EXPECT_EQ(skopeo_raw(registry.host() + "/pushed:multi"), store_.read_blob(index.digest));
  EXPECT_EQ(skopeo_raw(registry.host() + "/pushed@" + arm64.manifest.digest.str()),
            store_.read_blob(arm64.manifest.digest));
  skopeo_pull(registry.host() + "/pushed:multi", /*all=*/true);

  // Chunked upload: PATCHes of 1000 bytes, then the closing PUT.
  RegistryOptions chunked = options();
  chunked.chunk_size = 1000;
  push_image(store_, image.manifest, parse_reference(registry.host() + "/chunked:1"), chunked);
  EXPECT_EQ(skopeo_raw(registry.host() + "/chunked:1"), store_.read_blob(image.manifest.digest));
  skopeo_pull(registry.host() + "/chunked:1");

  // A digest reference must name the image pushed.
  EXPECT_THAT(error_of([&] {
                push_image(store_, image.manifest,
                           parse_reference(registry.host() + "/pushed@" + index.digest.str()),
                           options());
              }),
              HasSubstr("the image's digest is " + image.manifest.digest.str()));
}

TEST_F(RegistryTest, SkipsBlobsTheRegistryHasAndMountsFromOtherRepositories) {
  LocalRegistry registry;
  TestImage image = make_image(store_, kAmd64, "shared", 2000);
  push_image(store_, image.manifest, parse_reference(registry.host() + "/a:1"), options());
  EXPECT_EQ(logged("pushed blob"), 2u) << log_text();

  clear_log();
  push_image(store_, image.manifest, parse_reference(registry.host() + "/a:2"), options());
  EXPECT_EQ(logged("pushed blob"), 0u) << log_text();
  EXPECT_EQ(logged("already in a"), 2u) << log_text();

  clear_log();
  push_image(store_, image.manifest, parse_reference(registry.host() + "/b:1"), options(), {"a"});
  EXPECT_EQ(logged("pushed blob"), 0u) << log_text();
  EXPECT_EQ(logged("mounted blob"), 2u) << log_text();
  EXPECT_EQ(skopeo_raw(registry.host() + "/b:1"), store_.read_blob(image.manifest.digest));
  skopeo_pull(registry.host() + "/b:1");

  RegistryClient client(registry.host(), options());
  EXPECT_FALSE(client.mount_blob("c", sha256_of("nowhere"), "a"));
  EXPECT_TRUE(client.mount_blob("c", image.layer.digest, "a"));
  EXPECT_TRUE(client.blob_exists("c", image.layer.digest));
}

TEST_F(RegistryTest, BasicAuthRefusesWrongCredentialsAndTakesRightOnes) {
  LocalRegistry registry(RegistryAuth::kBasic);
  TestImage image = make_image(store_, kAmd64, "basic");
  Reference ref = parse_reference(registry.host() + "/basic:1");

  std::string anonymous = error_of([&] { push_image(store_, image.manifest, ref, options()); });
  EXPECT_THAT(anonymous, HasSubstr("unauthorized: authentication required (HTTP 401)"));
  EXPECT_THAT(anonymous, HasSubstr("no credentials for " + registry.host()));

  RegistryOptions wrong = options();
  wrong.credentials = Credentials{registry.user(), "wrong"};
  EXPECT_EQ(status_of([&] { RegistryClient(registry.host(), wrong).ping(); }), 401);
  EXPECT_THAT(error_of([&] { push_image(store_, image.manifest, ref, wrong); }),
              HasSubstr("unauthorized"));

  RegistryOptions right = options();
  right.credentials = Credentials{registry.user(), registry.password()};
  RegistryClient(registry.host(), right).ping();
  push_image(store_, image.manifest, ref, right);
  EXPECT_EQ(skopeo_raw(ref.str(), {"--creds", registry.user() + ":" + registry.password()}),
            store_.read_blob(image.manifest.digest));

  // Credentials from an auth file as docker writes it: base64 of "kiln:s3cret".
  fs::path auth_file = dir_.path() / "auth.json";
  std::ofstream(auth_file) << R"({"auths": {")" << registry.host()
                           << R"(": {"auth": "a2lsbjpzM2NyZXQ="}}})";
  RegistryOptions from_file = options();
  from_file.auth_file = auth_file;
  Store other(dir_.path() / "other");
  EXPECT_EQ(pull_image(other, ref, kAmd64, from_file).manifest.digest, image.manifest.digest);
}

TEST_F(RegistryTest, TokenAuthGetsTokensFromTheRealm) {
  LocalRegistry registry(RegistryAuth::kToken);
  TestImage image = make_image(store_, kAmd64, "token", 1000);
  Reference ref = parse_reference(registry.host() + "/token:1");

  EXPECT_THAT(error_of([&] { push_image(store_, image.manifest, ref, options()); }),
              HasSubstr("unauthorized"));
  RegistryOptions wrong = options();
  wrong.credentials = Credentials{registry.user(), "wrong"};
  EXPECT_EQ(status_of([&] { RegistryClient(registry.host(), wrong).ping(); }), 401);
  EXPECT_THAT(error_of([&] { push_image(store_, image.manifest, ref, wrong); }),
              HasSubstr("unauthorized: invalid username or password (HTTP 401)"));

  RegistryOptions right = options();
  right.credentials = Credentials{registry.user(), registry.password()};
  RegistryClient(registry.host(), right).ping();
  push_image(store_, image.manifest, ref, right);
  EXPECT_EQ(skopeo_raw(ref.str(), {"--creds", registry.user() + ":" + registry.password()}),
            store_.read_blob(image.manifest.digest));
  Store other(dir_.path() / "other");
  EXPECT_EQ(pull_image(other, ref, kAmd64, right).manifest.digest, image.manifest.digest);
  EXPECT_EQ(RegistryClient(registry.host(), right).list_tags("token"),
            std::vector<std::string>{"1"});
  EXPECT_THAT(registry.logs(),
              HasSubstr("GET /token -> 200 user=kiln scopes=['repository:token:pull,push']"));

  // An identity token ("<token>" as the user name) is exchanged as an OAuth2 refresh token.
  RegistryOptions identity = options();
  identity.credentials = Credentials{"<token>", registry.password()};
  Store third(dir_.path() / "third");
  EXPECT_EQ(pull_image(third, ref, kAmd64, identity).manifest.digest, image.manifest.digest);
  EXPECT_THAT(registry.logs(), HasSubstr("POST /token -> 200 user=kiln"));
}

TEST_F(RegistryTest, ContentThatDoesNotMatchItsDigestIsNotStored) {
  LocalRegistry registry;
  FaultProxy proxy(registry.host(), "corrupt-blobs");
  TestImage image = make_image(source_, kAmd64, "corrupt", 2000);
  source_.tag(image.manifest, "corrupt:1");
  skopeo_push("corrupt:1", registry.host() + "/corrupt:1");

  Reference through_proxy = parse_reference(proxy.host() + "/corrupt:1");
  EXPECT_THAT(error_of([&] { pull_image(store_, through_proxy, kAmd64, options()); }),
              HasSubstr("content does not match its digest"));
  RegistryClient client(proxy.host(), options());
  {
    std::unique_ptr<BlobWriter> writer = store_.begin_blob();
    EXPECT_THAT(error_of([&] { client.get_blob("corrupt", image.layer, *writer); }),
                HasSubstr("pulling blob " + image.layer.digest.str() + " of " + proxy.host() +
                          "/corrupt: content does not match its digest (got sha256:"));
  }
  for (const Descriptor& d : {image.manifest, image.config, image.layer})
    EXPECT_FALSE(store_.has_blob(d.digest)) << d.digest.str();
  EXPECT_FALSE(store_.find(proxy.host() + "/corrupt:1"));
  EXPECT_TRUE(fs::is_empty(store_.root() / "ingest"));
  EXPECT_THAT(proxy.requests(), HasSubstr("GET /v2/corrupt/blobs/" + image.config.digest.str()));
}

TEST_F(RegistryTest, AnInterruptedUploadStartsAgain) {
  LocalRegistry registry;
  TestImage image = make_image(store_, kAmd64, "interrupted", 300'000);
  {
    // Without retries the push fails; the abandoned session does not spoil the next push.
    FaultProxy proxy(registry.host(), "drop-first-upload");
    RegistryOptions no_retries = options();
    no_retries.retries = 0;
    Reference ref = parse_reference(proxy.host() + "/interrupted:1");
    EXPECT_NE(status_of([&] { push_image(store_, image.manifest, ref, no_retries); }), -1)
        << proxy.requests();
    push_image(store_, image.manifest, ref, no_retries);
    EXPECT_THAT(proxy.requests(), HasSubstr("-> dropped"));
  }
  FaultProxy proxy(registry.host(), "drop-first-upload");
  Reference ref = parse_reference(proxy.host() + "/again:1");
  push_image(store_, image.manifest, ref, options());
  EXPECT_THAT(proxy.requests(), HasSubstr("-> dropped"));
  EXPECT_EQ(logged("starting again"), 1u) << log_text();
  EXPECT_EQ(skopeo_raw(registry.host() + "/again:1"), store_.read_blob(image.manifest.digest));
  skopeo_pull(registry.host() + "/again:1");
}

TEST_F(RegistryTest, AnInterruptedDownloadResumes) {
  LocalRegistry registry;
  TestImage image = make_image(source_, kAmd64, "resumed", 300'000);
  source_.tag(image.manifest, "resumed:1");
  skopeo_push("resumed:1", registry.host() + "/resumed:1");
  FaultProxy proxy(registry.host(), "drop-first-download");

  ResolvedImage pulled =
      pull_image(store_, parse_reference(proxy.host() + "/resumed:1"), kAmd64, options());
  EXPECT_EQ(pulled.manifest.digest, image.manifest.digest);
  EXPECT_EQ(store_.read_blob(image.layer.digest), source_.read_blob(image.layer.digest));
  EXPECT_THAT(proxy.requests(), HasSubstr("cut off after"));
  EXPECT_THAT(proxy.requests(), HasSubstr("-> 206 range=bytes="));
  EXPECT_EQ(logged("bytes; retrying"), 1u) << log_text();

  // A registry that ignores Range cannot resume: the pull fails and stores nothing.
  FaultProxy no_range(registry.host(), "drop-first-download-ignore-range");
  Store other(dir_.path() / "other");
  EXPECT_THAT(error_of([&] {
                pull_image(other, parse_reference(no_range.host() + "/resumed:1"), kAmd64,
                           options());
              }),
              HasSubstr("the registry cannot resume it (it ignored Range)"));
  EXPECT_FALSE(other.has_blob(image.layer.digest));
  EXPECT_FALSE(other.has_blob(image.manifest.digest));
  EXPECT_TRUE(fs::is_empty(other.root() / "ingest"));
}

TEST_F(RegistryTest, RetriesA503AfterRetryAfter) {
  LocalRegistry registry;
  TestImage image = make_image(source_, kAmd64, "busy");
  source_.tag(image.manifest, "busy:1");
  skopeo_push("busy:1", registry.host() + "/busy:1");
  FaultProxy proxy(registry.host(), "fail-first-503");

  auto start = std::chrono::steady_clock::now();
  ResolvedImage pulled =
      pull_image(store_, parse_reference(proxy.host() + "/busy:1"), kAmd64, options());
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  EXPECT_EQ(pulled.manifest.digest, image.manifest.digest);
  EXPECT_EQ(logged("service unavailable (HTTP 503); retrying in 1000 ms (1 of 4)"), 1u)
      << log_text();
  EXPECT_THAT(proxy.requests(), HasSubstr("GET /v2/busy/manifests/1 -> 503"));
}

}  // namespace
}  // namespace kiln::oci
