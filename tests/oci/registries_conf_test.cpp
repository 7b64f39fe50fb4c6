#include "kiln/oci/registries_conf.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kiln/base/error.hpp"

namespace kiln::oci {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

RegistriesConf parse(std::string_view text) {
  return parse_registries_conf(text, "registries.conf");
}

std::vector<std::string> sources(const RegistriesConf& conf, const std::string& ref) {
  std::vector<std::string> out;
  for (const PullSource& s : pull_sources(conf, parse_reference(ref)))
    out.push_back(s.ref.str() + (s.mirror ? " mirror" : "") + (s.insecure ? " insecure" : ""));
  return out;
}

TEST(RegistriesConf, ReadsV2RegistryTablesMarkedInsecure) {
  EXPECT_THAT(parse(R"(
unqualified-search-registries = ["docker.io"]

[[registry]]
location = "registry.lan:5000"   # the lab
insecure = true

[[registry]]
prefix = "example.com/foo"
location = "mirror.lan"
insecure = false

[[registry]]
insecure = true
location = 'other.lan'
)")
                  .insecure(),
              ElementsAre("registry.lan:5000", "other.lan"));
}

TEST(RegistriesConf, ReadsTheV1Tables) {
  RegistriesConf conf = parse(R"(
[registries.search]
registries = ['docker.io']
[registries.insecure]
registries = ['a.lan',
              "b.lan:5000"]
[registries.block]
registries = ['c.lan']
)");
  EXPECT_THAT(conf.insecure(), ElementsAre("a.lan", "b.lan:5000"));
  EXPECT_THAT(conf.unqualified_search, ElementsAre("docker.io"));
  EXPECT_THROW(pull_sources(conf, parse_reference("c.lan/x:1")), Error);
}

TEST(RegistriesConf, NothingMarkedMeansNothing) {
  EXPECT_THAT(parse("").insecure(), IsEmpty());
  EXPECT_THAT(parse("# insecure = true\n[[registry]]\nlocation = \"x\"\n").insecure(), IsEmpty());
}

TEST(RegistriesConf, MirrorsComeFirstAsPullFromMirrorAllows) {
  RegistriesConf conf = parse(R"(
[[registry]]
location = "docker.io"
[[registry.mirror]]
location = "mirror.lan:5000"
insecure = true
[[registry.mirror]]
location = "digests.lan"
pull-from-mirror = "digest-only"
)");
  EXPECT_THAT(sources(conf, "alpine:3.20"),
              ElementsAre("mirror.lan:5000/library/alpine:3.20 mirror insecure",
                          "docker.io/library/alpine:3.20"));
  std::string digest = "sha256:" + std::string(64, 'a');
  EXPECT_THAT(sources(conf, "alpine@" + digest),
              ElementsAre("mirror.lan:5000/library/alpine@" + digest + " mirror insecure",
                          "digests.lan/library/alpine@" + digest + " mirror",
                          "docker.io/library/alpine@" + digest));
  EXPECT_THAT(sources(conf, "quay.io/x/y:1"), ElementsAre("quay.io/x/y:1"));
}

TEST(RegistriesConf, TheLongestPrefixWinsAndLocationRewrites) {
  RegistriesConf conf = parse(R"(
[[registry]]
prefix = "example.com"
location = "general.lan"
[[registry]]
prefix = "example.com/team"
location = "team.lan:5000/mirrored"
[[registry]]
prefix = "*.corp.example"
insecure = true
[[registry]]
location = "example.com/team/secret"
blocked = true
)");
  EXPECT_THAT(sources(conf, "example.com/team/app:1"), ElementsAre("team.lan:5000/mirrored/app:1"));
  EXPECT_THAT(sources(conf, "example.com/other/app:1"), ElementsAre("general.lan/other/app:1"));
  EXPECT_THAT(sources(conf, "example.com/teams/app:1"), ElementsAre("general.lan/teams/app:1"));
  EXPECT_THAT(sources(conf, "reg.corp.example/app:1"),
              ElementsAre("reg.corp.example/app:1 insecure"));
  try {
    pull_sources(conf, parse_reference("example.com/team/secret:1"));
    FAIL() << "a blocked registry was pulled from";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("blocked in registries.conf"));
  }
}

TEST(RegistriesConf, LaterFilesReplaceTheSamePrefix) {
  RegistriesConf conf = parse("[[registry]]\nlocation = \"a.lan\"\ninsecure = true\n");
  conf.merge(
      parse("[[registry]]\nlocation = \"a.lan\"\nblocked = true\n[aliases]\nx = \"a.lan/x\"\n"));
  ASSERT_EQ(conf.registries.size(), 1u);
  EXPECT_TRUE(conf.registries[0].blocked);
  EXPECT_FALSE(conf.registries[0].insecure);
  EXPECT_EQ(conf.aliases.at("x"), "a.lan/x");
}

std::vector<std::string> resolved(const RegistriesConf& conf, const std::string& name) {
  std::vector<std::string> out;
  for (const Reference& r : resolve_pull_name(conf, name))
    out.push_back(r.str());
  return out;
}

TEST(RegistriesConf, ShortNamesResolveThroughAliasesAndSearchRegistries) {
  EXPECT_TRUE(is_short_name("alpine"));
  EXPECT_TRUE(is_short_name("team/app:1"));
  EXPECT_FALSE(is_short_name("quay.io/team/app"));
  EXPECT_FALSE(is_short_name("localhost/app"));
  EXPECT_FALSE(is_short_name("registry:5000/app"));
  // Nothing configured: docker.io, as docker and BuildKit.
  EXPECT_THAT(resolved(parse(""), "alpine"), ElementsAre("docker.io/library/alpine:latest"));
  RegistriesConf conf = parse(R"(
unqualified-search-registries = ["registry.lan", "quay.io"]
[aliases]
"alpine" = "quay.io/mirrors/alpine"
)");
  EXPECT_THAT(resolved(conf, "alpine:3.20"), ElementsAre("quay.io/mirrors/alpine:3.20"));
  EXPECT_THAT(resolved(conf, "quay.io/x/y:1"), ElementsAre("quay.io/x/y:1"));
  try {
    resolve_pull_name(conf, "app:1");
    FAIL() << "an ambiguous short name was resolved";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("ambiguous"));
    EXPECT_THAT(e.what(), HasSubstr("registry.lan/app, quay.io/app"));
  }
  conf.short_name_mode = "permissive";
  EXPECT_THAT(resolved(conf, "app:1"), ElementsAre("registry.lan/app:1", "quay.io/app:1"));
  EXPECT_THAT(resolved(parse("unqualified-search-registries = [\"registry.lan\"]\n"), "team/app"),
              ElementsAre("registry.lan/team/app:latest"));
  EXPECT_THROW(parse("short-name-mode = \"sometimes\"\n"), Error);
}

TEST(RegistriesConf, BadTomlNamesTheFileLineAndColumn) {
  try {
    parse("[[registry]]\nlocation = \"a.lan\n");
    FAIL() << "parsed";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("registries.conf:2:"));
  }
  EXPECT_THROW(parse("[[registry]]\ninsecure = true\n"), Error);  // no location or prefix
  EXPECT_THROW(parse("[[registry]]\nlocation = \"a\"\n[[registry.mirror]]\nlocation = \"m\"\n"
                     "pull-from-mirror = \"sometimes\"\n"),
               Error);
}

}  // namespace
}  // namespace kiln::oci
