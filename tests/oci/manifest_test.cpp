#include "kiln/oci/manifest.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kiln/base/error.hpp"
#include "kiln/oci/image_config.hpp"
#include "kiln/oci/media_types.hpp"

namespace kiln::oci {
namespace {

using ::testing::HasSubstr;

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

std::string hex_of(char c) {
  return std::string(64, c);
}
Digest digest_of(char c) {
  return Digest::parse("sha256:" + hex_of(c));
}

// Shaped like what Docker Hub serves for library/nginx:alpine (linux/amd64), pretty-printed.
constexpr const char* kDockerHubManifest = R"({
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {
      "mediaType": "application/vnd.docker.container.image.v1+json",
      "size": 11017,
      "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111"
   },
   "layers": [
      {
         "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "size": 3408729,
         "digest": "sha256:2222222222222222222222222222222222222222222222222222222222222222"
      },
      {
         "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "size": 1795,
         "digest": "sha256:3333333333333333333333333333333333333333333333333333333333333333"
      }
   ]
})";

TEST(MediaType, Predicates) {
  EXPECT_TRUE(media_type::is_manifest(media_type::kOciManifest));
  EXPECT_TRUE(media_type::is_manifest(media_type::kDockerManifest));
  EXPECT_FALSE(media_type::is_manifest(media_type::kOciIndex));
  EXPECT_TRUE(media_type::is_index(media_type::kOciIndex));
  EXPECT_TRUE(media_type::is_index(media_type::kDockerManifestList));
  EXPECT_FALSE(media_type::is_index(media_type::kDockerManifest));
  for (const char* layer :
       {media_type::kOciLayer, media_type::kOciLayerGzip, media_type::kOciLayerZstd,
        media_type::kDockerLayer, media_type::kDockerLayerGzip, media_type::kDockerLayerZstd,
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"}) {
    EXPECT_TRUE(media_type::is_layer(layer)) << layer;
  }
  EXPECT_FALSE(media_type::is_layer(media_type::kOciConfig));
  EXPECT_FALSE(media_type::is_layer("application/vnd.oci.image.layer.v1.tar+lz4"));
  EXPECT_FALSE(media_type::is_layer(""));
}

TEST(Manifest, ParsesDockerHubSchema2) {
  Manifest m = parse_manifest(kDockerHubManifest);
  EXPECT_EQ(m.schema_version, 2);
  EXPECT_EQ(m.media_type, media_type::kDockerManifest);
  EXPECT_EQ(m.config.media_type, media_type::kDockerConfig);
  EXPECT_EQ(m.config.size, 11017);
  EXPECT_EQ(m.config.digest, digest_of('1'));
  ASSERT_EQ(m.layers.size(), 2u);
  EXPECT_EQ(m.layers[0].media_type, media_type::kDockerLayerGzip);
  EXPECT_EQ(m.layers[0].size, 3408729);
  EXPECT_EQ(m.layers[1].digest, digest_of('3'));
  EXPECT_FALSE(m.subject.has_value());
  EXPECT_TRUE(m.annotations.empty());
  // Canonical form: fixed key order (mediaType before digest and size), no whitespace.
  EXPECT_EQ(
      serialize(m),
      R"({"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",)"
      R"("config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:)" +
          hex_of('1') +
          R"(","size":11017},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:)" +
          hex_of('2') +
          R"(","size":3408729},{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:)" +
          hex_of('3') + R"(","size":1795}]})");
}

Manifest full_manifest() {
  Manifest m;
  m.media_type = media_type::kOciManifest;
  m.artifact_type = "application/vnd.example+type";
  m.config = {media_type::kOciConfig, digest_of('a'), 1234, {}, std::nullopt, {}, "", ""};
  Descriptor layer{media_type::kOciLayerZstd, digest_of('b'), 99, {}, std::nullopt, {}, "", ""};
  layer.urls = {"https://example.com/blob"};
  layer.annotations = {{"z", "last"}, {"a", "first"}};
  m.layers = {layer, {media_type::kOciLayer, digest_of('c'), 0, {}, std::nullopt, {}, "", ""}};
  m.subject = Descriptor{media_type::kOciManifest, digest_of('d'), 7, {}, std::nullopt, {}, "", ""};
  m.annotations = {{"org.opencontainers.image.created", "2024-01-02T03:04:05Z"}};
  return m;
}

TEST(Manifest, SerializesEveryFieldInFixedOrder) {
  EXPECT_EQ(
      serialize(full_manifest()),
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",)"
      R"("artifactType":"application/vnd.example+type",)"
      R"("config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:)" +
          hex_of('a') +
          R"(","size":1234},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"sha256:)" +
          hex_of('b') +
          R"(","size":99,"urls":["https://example.com/blob"],"annotations":{"a":"first","z":"last"}},)"
          R"({"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:)" +
          hex_of('c') +
          R"(","size":0}],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:)" +
          hex_of('d') +
          R"(","size":7},"annotations":{"org.opencontainers.image.created":"2024-01-02T03:04:05Z"}})");
}

TEST(Manifest, RoundTripsAndIsDeterministic) {
  Manifest m = full_manifest();
  std::string bytes = serialize(m);
  EXPECT_EQ(parse_manifest(bytes), m);
  EXPECT_EQ(serialize(parse_manifest(bytes)), bytes);
  EXPECT_EQ(serialize(m), bytes);
  EXPECT_EQ(sha256_of(serialize(full_manifest())), sha256_of(bytes));
  // Key order and whitespace of the input do not matter.
  Manifest shuffled =
      parse_manifest(R"( { "layers" : [ ], "config" : { "size" : 5,
      "digest" : "sha256:)" +
                     hex_of('e') + R"(", "mediaType" : "application/vnd.oci.image.config.v1+json" },
      "schemaVersion" : 2 } )");
  EXPECT_TRUE(shuffled.media_type.empty());
  EXPECT_EQ(
      serialize(shuffled),
      R"({"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:)" +
          hex_of('e') + R"(","size":5},"layers":[]})");
}

TEST(Manifest, ToleratesUnknownFieldsAndNulls) {
  Manifest m =
      parse_manifest(R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
      "future":{"x":1},"annotations":null,"subject":null,"artifactType":null,
      "config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:)" +
                     hex_of('4') + R"(","size":2,"data":"e30=","urls":null,"annotations":null},
      "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:)" +
                     hex_of('5') + R"(","size":10,"platform":null}]})");
  EXPECT_EQ(m.config.media_type, media_type::kOciEmpty);
  EXPECT_TRUE(m.config.urls.empty());
  EXPECT_FALSE(m.subject.has_value());
  EXPECT_FALSE(m.layers[0].platform.has_value());
}

// An OCI index as BuildKit pushes a multi-platform image with provenance attestations.
std::string buildkit_index() {
  return R"({
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.index.v1+json",
  "manifests": [
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:)" +
         hex_of('1') + R"(", "size": 1000,
     "platform": {"architecture": "amd64", "os": "linux"}},
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:)" +
         hex_of('2') + R"(", "size": 1001,
     "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}},
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:)" +
         hex_of('3') + R"(", "size": 1002,
     "platform": {"architecture": "arm64", "os": "linux", "variant": "v8", "features": ["sse4"]}},
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:)" +
         hex_of('4') + R"(", "size": 566,
     "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                     "vnd.docker.reference.digest": "sha256:)" +
         hex_of('1') + R"("},
     "platform": {"architecture": "unknown", "os": "unknown"}}
  ],
  "annotations": {"org.opencontainers.image.ref.name": "1.0"}
})";
}

TEST(Index, ParsesMultiPlatformIndexWithAttestations) {
  Index index = parse_index(buildkit_index());
  EXPECT_EQ(index.media_type, media_type::kOciIndex);
  ASSERT_EQ(index.manifests.size(), 4u);
  EXPECT_EQ(index.manifests[0].platform, (Platform{"linux", "amd64", ""}));
  EXPECT_EQ(index.manifests[1].platform->to_string(), "linux/arm/v7");
  // Recorded as written, not normalised (arm64/v8 stays), so that re-serialising keeps the bytes.
  EXPECT_EQ(index.manifests[2].platform, (Platform{"linux", "arm64", "v8"}));
  EXPECT_EQ(index.manifests[3].platform, (Platform{"unknown", "unknown", ""}));
  EXPECT_EQ(index.manifests[3].annotations.at("vnd.docker.reference.type"), "attestation-manifest");
  EXPECT_EQ(index.annotations.at("org.opencontainers.image.ref.name"), "1.0");
  std::string bytes = serialize(index);
  EXPECT_THAT(bytes, HasSubstr(R"("platform":{"architecture":"arm","os":"linux","variant":"v7"})"));
  EXPECT_THAT(bytes, HasSubstr(R"("platform":{"architecture":"unknown","os":"unknown"})"));
  EXPECT_EQ(parse_index(bytes), index);
  EXPECT_EQ(serialize(parse_index(bytes)), bytes);
}

TEST(Index, FindsThePlatformManifestAndNeverAnAttestation) {
  Index index = parse_index(buildkit_index());
  EXPECT_EQ(find_platform_manifest(index, parse_platform("linux/amd64"))->digest, digest_of('1'));
  EXPECT_EQ(find_platform_manifest(index, parse_platform("linux/arm"))->digest, digest_of('2'));
  // "arm64/v8" in the index is the normalised arm64.
  EXPECT_EQ(find_platform_manifest(index, parse_platform("linux/arm64"))->digest, digest_of('3'));
  EXPECT_FALSE(find_platform_manifest(index, parse_platform("linux/arm/v6")));
  EXPECT_FALSE(find_platform_manifest(index, Platform{"unknown", "unknown", ""}));
  EXPECT_EQ(platforms_in(index), "linux/amd64, linux/arm/v7, linux/arm64");

  index.manifests[0].platform.reset();  // an entry without a platform is no image for any
  EXPECT_FALSE(find_platform_manifest(index, parse_platform("linux/amd64")));
  EXPECT_EQ(platforms_in(index), "linux/arm/v7, linux/arm64");
  EXPECT_EQ(platforms_in(Index{}), "none");
}

TEST(Index, ParsesDockerManifestListAndWindowsOsVersion) {
  Index index = parse_index(R"({"schemaVersion":2,
    "mediaType":"application/vnd.docker.distribution.manifest.list.v2+json",
    "manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":7143,
      "digest":"sha256:)" + hex_of('6') +
                            R"(",
      "platform":{"architecture":"amd64","os":"windows","os.version":"10.0.17763.5820"}}]})");
  EXPECT_EQ(index.media_type, media_type::kDockerManifestList);
  ASSERT_EQ(index.manifests.size(), 1u);
  EXPECT_EQ(index.manifests[0].platform_os_version, "10.0.17763.5820");
  EXPECT_THAT(
      serialize(index),
      HasSubstr(
          R"("platform":{"architecture":"amd64","os":"windows","os.version":"10.0.17763.5820"})"));
}

TEST(Index, SerializesMinimalAndFullIndexes) {
  Index empty;
  empty.media_type = media_type::kOciIndex;
  EXPECT_EQ(
      serialize(empty),
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]})");
  Index full = empty;
  full.artifact_type = "application/x";
  full.manifests.push_back({media_type::kOciManifest,
                            digest_of('7'),
                            3,
                            {{"k", "v"}},
                            Platform{"linux", "arm64", ""},
                            {},
                            "application/y",
                            ""});
  full.subject = Descriptor{media_type::kOciIndex, digest_of('8'), 4, {}, std::nullopt, {}, "", ""};
  full.annotations = {{"b", "2"}, {"a", "1"}};
  EXPECT_EQ(
      serialize(full),
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","artifactType":"application/x",)"
      R"("manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/y",)"
      R"("digest":"sha256:)" +
          hex_of('7') +
          R"(","size":3,"annotations":{"k":"v"},"platform":{"architecture":"arm64","os":"linux"}}],)"
          R"("subject":{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:)" +
          hex_of('8') + R"(","size":4},"annotations":{"a":"1","b":"2"}})");
  EXPECT_EQ(parse_index(serialize(full)), full);
}

TEST(Manifest, Errors) {
  std::string good_config =
      R"("config":{"mediaType":"m","digest":"sha256:)" + hex_of('1') + R"(","size":1})";
  EXPECT_THAT(error_of([] { parse_manifest("{not json"); }),
              HasSubstr("invalid image manifest: not valid JSON: parse error at line 1"));
  EXPECT_EQ(error_of([] { parse_manifest("[]"); }),
            "invalid image manifest: expected a JSON object, got array");
  EXPECT_EQ(error_of([&] { parse_manifest("{" + good_config + R"(,"layers":[]})"); }),
            "invalid image manifest: missing \"schemaVersion\"");
  EXPECT_EQ(
      error_of([] { parse_manifest(R"({"schemaVersion":1,"name":"x","fsLayers":[]})"); }),
      "invalid image manifest: schemaVersion: 1 (Docker schema 1) is not supported; expected 2");
  EXPECT_EQ(error_of([] { parse_manifest(R"({"schemaVersion":"2"})"); }),
            "invalid image manifest: schemaVersion: expected an integer, got string");
  EXPECT_EQ(error_of([] { parse_manifest(R"({"schemaVersion":2,"layers":[]})"); }),
            "invalid image manifest: missing \"config\"");
  EXPECT_EQ(error_of([&] { parse_manifest(R"({"schemaVersion":2,)" + good_config + "}"); }),
            "invalid image manifest: missing \"layers\"");
  EXPECT_EQ(error_of([&] {
              parse_manifest(R"({"schemaVersion":2,)" + good_config + R"(,"layers":{}})");
            }),
            "invalid image manifest: layers: expected an array of descriptors, got object");
  EXPECT_EQ(error_of([] { parse_index(R"({"schemaVersion":2})"); }),
            "invalid image index: missing \"manifests\"");
}

TEST(Manifest, RejectsTheOtherKindOfDocument) {
  EXPECT_EQ(error_of([] { parse_manifest(buildkit_index()); }),
            "invalid image manifest: got an image index "
            "(application/vnd.oci.image.index.v1+json) where a manifest was expected");
  EXPECT_EQ(error_of([] { parse_manifest(R"({"schemaVersion":2,"manifests":[]})"); }),
            "invalid image manifest: got an image index where a manifest was expected");
  EXPECT_EQ(error_of([] { parse_index(kDockerHubManifest); }),
            "invalid image index: got an image manifest "
            "(application/vnd.docker.distribution.manifest.v2+json) where an index was expected");
  EXPECT_THAT(error_of([] { parse_manifest(R"({"schemaVersion":2,"mediaType":"text/plain"})"); }),
              HasSubstr("mediaType: unsupported media type \"text/plain\""));
}

TEST(Descriptor, ErrorsNameTheField) {
  auto manifest_with_layer = [](const std::string& layer) {
    return R"({"schemaVersion":2,"config":{"mediaType":"m","digest":"sha256:)" + hex_of('1') +
           R"(","size":1},"layers":[)" + layer + "]}";
  };
  std::string digest = R"("digest":"sha256:)" + hex_of('2') + R"(")";
  EXPECT_EQ(error_of([&] { parse_manifest(manifest_with_layer(R"({"size":1,)" + digest + "}")); }),
            "invalid image manifest: layers[0]: missing \"mediaType\"");
  EXPECT_EQ(error_of([&] { parse_manifest(manifest_with_layer(R"({"mediaType":"m","size":1})")); }),
            "invalid image manifest: layers[0]: missing \"digest\"");
  EXPECT_EQ(
      error_of([&] { parse_manifest(manifest_with_layer(R"({"mediaType":"m",)" + digest + "}")); }),
      "invalid image manifest: layers[0]: missing \"size\"");
  EXPECT_EQ(error_of([&] {
              parse_manifest(manifest_with_layer(R"({"mediaType":"m","size":"1",)" + digest + "}"));
            }),
            "invalid image manifest: layers[0].size: expected an integer, got string");
  EXPECT_EQ(error_of([&] {
              parse_manifest(manifest_with_layer(R"({"mediaType":"m","size":1.5,)" + digest + "}"));
            }),
            "invalid image manifest: layers[0].size: expected an integer, got number");
  EXPECT_EQ(error_of([&] {
              parse_manifest(manifest_with_layer(R"({"mediaType":"m","size":-1,)" + digest + "}"));
            }),
            "invalid image manifest: layers[0].size: negative size -1");
  EXPECT_EQ(
      error_of([&] {
        parse_manifest(manifest_with_layer(R"({"mediaType":"m","size":1,"digest":"sha256:abc"})"));
      }),
      "invalid image manifest: layers[0].digest: \"sha256:abc\" is not a valid digest "
      "(expected sha256:<64 lower-case hex digits>)");
  EXPECT_EQ(error_of([&] {
              parse_manifest(manifest_with_layer(R"({"mediaType":"m","size":1,)" + digest +
                                                 R"(,"annotations":{"k":1}})"));
            }),
            "invalid image manifest: layers[0].annotations.\"k\": expected a string, got integer");
  EXPECT_EQ(error_of([&] {
              parse_manifest(manifest_with_layer(R"({"mediaType":"m","size":1,)" + digest +
                                                 R"(,"platform":{"os":"linux"}})"));
            }),
            "invalid image manifest: layers[0].platform: missing \"architecture\"");
  EXPECT_EQ(error_of([] { descriptor_from_json(nlohmann::json::parse(R"({"size":1})")); }),
            "invalid descriptor: missing \"mediaType\"");
  EXPECT_EQ(error_of([] { descriptor_from_json(nlohmann::json::array()); }),
            "invalid descriptor: expected an object, got array");
}

TEST(Descriptor, JsonRoundTrip) {
  Descriptor d{
      media_type::kOciManifest,   digest_of('9'),  42, {{"x", "y"}}, Platform{"linux", "arm", "v7"},
      {"https://a", "https://b"}, "application/t", ""};
  nlohmann::ordered_json j = to_json(d);
  EXPECT_EQ(j.dump(), R"({"mediaType":"application/vnd.oci.image.manifest.v1+json",)"
                      R"("artifactType":"application/t","digest":"sha256:)" +
                          hex_of('9') +
                          R"(","size":42,"urls":["https://a","https://b"],"annotations":{"x":"y"},)"
                          R"("platform":{"architecture":"arm","os":"linux","variant":"v7"}})");
  EXPECT_EQ(descriptor_from_json(nlohmann::json::parse(j.dump())), d);
}

TEST(Descriptor, SerializeRejectsIncompleteDescriptorsAndBadUtf8) {
  Manifest m = full_manifest();
  m.layers[1].digest = Digest();
  EXPECT_THAT(error_of([&] { serialize(m); }), HasSubstr("no digest"));
  m = full_manifest();
  m.config.media_type.clear();
  EXPECT_THAT(error_of([&] { serialize(m); }), HasSubstr("empty media type"));
  m = full_manifest();
  m.annotations["bad"] = "\xff\xfe";
  EXPECT_EQ(error_of([&] { serialize(m); }),
            "cannot serialize image manifest: a string is not valid UTF-8 (JSON can only carry "
            "UTF-8 text)");
  // Non-ASCII UTF-8 is written as is, not \u-escaped.
  m.annotations["bad"] = "caf\xc3\xa9";
  EXPECT_THAT(serialize(m), HasSubstr("\"bad\":\"caf\xc3\xa9\""));
}

// Found by the registry fuzzer: nlohmann reports a number no double holds as out_of_range, not
// as a parse error; it must still be a kiln::Error, never an escaping exception.
TEST(Manifest, ANumberOverflowIsAnError) {
  for (std::string_view text : {R"({"schemaVersion":1e999})", "7e9649e94"}) {
    EXPECT_THROW((void)parse_manifest(text), Error) << text;
    EXPECT_THROW((void)parse_index(text), Error) << text;
    EXPECT_THROW((void)parse_image_config(text), Error) << text;
  }
}

}  // namespace
}  // namespace kiln::oci
