#include "kiln/oci/digest.hpp"

#include <gtest/gtest.h>

#include <fstream>

#include "kiln/base/error.hpp"
#include "kiln/base/fd.hpp"

namespace kiln::oci {
namespace {

TEST(Digest, KnownValues) {
  EXPECT_EQ(sha256_of("").str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  Sha256 h;
  h.update("a");
  h.update("bc");
  EXPECT_EQ(h.finish(), sha256_of("abc"));
  EXPECT_EQ(sha256_of("abc").hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_of("abc").short_id(), "ba7816bf8f01");
}

TEST(Digest, ParseValidates) {
  std::string good = "sha256:" + std::string(64, 'a');
  EXPECT_EQ(Digest::parse(good).str(), good);
  EXPECT_THROW(Digest::parse("sha256:" + std::string(63, 'a')), Error);
  EXPECT_THROW(Digest::parse("sha256:" + std::string(64, 'A')), Error);
  EXPECT_THROW(Digest::parse("md5:abc"), Error);
  EXPECT_THROW(Digest::parse(std::string(64, 'a')), Error);
  EXPECT_FALSE(Digest::try_parse("sha256:").has_value());
  EXPECT_FALSE(Digest().valid());
}

TEST(Digest, File) {
  TempDir dir;
  std::ofstream(dir.path() / "f") << "abc";
  EXPECT_EQ(sha256_of_file(dir.path() / "f"), sha256_of("abc"));
  EXPECT_THROW(sha256_of_file(dir.path() / "missing"), Error);
}

}  // namespace
}  // namespace kiln::oci
