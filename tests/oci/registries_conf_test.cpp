#include "kiln/oci/registries_conf.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kiln::oci {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(RegistriesConf, ReadsV2RegistryTablesMarkedInsecure) {
  EXPECT_THAT(parse_insecure_registries(R"(
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
)"),
              ElementsAre("registry.lan:5000", "other.lan"));
}

TEST(RegistriesConf, ReadsTheV1InsecureList) {
  EXPECT_THAT(parse_insecure_registries(R"(
[registries.search]
registries = ['docker.io']
[registries.insecure]
registries = ['a.lan',
              "b.lan:5000"]
[registries.block]
registries = ['c.lan']
)"),
              ElementsAre("a.lan", "b.lan:5000"));
}

TEST(RegistriesConf, NothingMarkedMeansNothing) {
  EXPECT_THAT(parse_insecure_registries(""), IsEmpty());
  EXPECT_THAT(parse_insecure_registries("# insecure = true\n[[registry]]\nlocation = \"x\"\n"),
              IsEmpty());
}

}  // namespace
}  // namespace kiln::oci
