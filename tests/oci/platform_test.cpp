#include "kiln/oci/platform.hpp"

#include <gtest/gtest.h>

#include "kiln/base/error.hpp"

namespace kiln::oci {
namespace {

TEST(Platform, ParsesAndNormalises) {
  EXPECT_EQ(parse_platform("linux/amd64").to_string(), "linux/amd64");
  EXPECT_EQ(parse_platform("linux/arm64/v8").to_string(), "linux/arm64");
  EXPECT_EQ(parse_platform("linux/aarch64").to_string(), "linux/arm64");
  EXPECT_EQ(parse_platform("linux/arm").to_string(), "linux/arm/v7");
  EXPECT_EQ(parse_platform("linux/arm/v6").to_string(), "linux/arm/v6");
  EXPECT_EQ(parse_platform("Linux/X86_64").to_string(), "linux/amd64");
  EXPECT_EQ(parse_platform("arm64").to_string(), "linux/arm64");
  EXPECT_EQ(parse_platform("armhf").to_string(), "linux/arm/v7");
  EXPECT_EQ(parse_platform("linux/i386").to_string(), "linux/386");
  EXPECT_EQ(parse_platform("linux").os, "linux");
}

TEST(Platform, RejectsMalformedSpecifiers) {
  EXPECT_THROW(parse_platform(""), Error);
  EXPECT_THROW(parse_platform("linux/"), Error);
  EXPECT_THROW(parse_platform("linux/amd64/v1/x"), Error);
  EXPECT_THROW(parse_platform("plumbus"), Error);
  EXPECT_THROW(parse_platform("beos/amd64"), Error);
}

TEST(Platform, MatchesOnOsArchitectureAndAVariantBothName) {
  EXPECT_TRUE(platform_matches(parse_platform("linux/arm64"), {"linux", "arm64", "v8"}));
  EXPECT_TRUE(platform_matches(parse_platform("linux/amd64"), {"linux", "x86_64", ""}));
  EXPECT_TRUE(platform_matches(parse_platform("linux/amd64"), {"linux", "amd64", "v3"}));
  EXPECT_FALSE(platform_matches(parse_platform("linux/arm/v7"), {"linux", "arm", "v6"}));
  EXPECT_FALSE(platform_matches(parse_platform("linux/amd64"), {"windows", "amd64", ""}));
  EXPECT_FALSE(platform_matches(parse_platform("linux/amd64"), {"linux", "arm64", ""}));
}

TEST(Platform, HostIsLinux) {
  Platform host = host_platform();
  EXPECT_EQ(host.os, "linux");
  EXPECT_FALSE(host.architecture.empty());
}

}  // namespace
}  // namespace kiln::oci
