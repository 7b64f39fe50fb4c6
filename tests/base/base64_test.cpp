#include "kiln/base/base64.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "kiln/base/error.hpp"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// RFC 4648 section 10.
TEST(Base64, EncodesTheRfcTestVectors) {
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_encode("foob"), "Zm9vYg==");
  EXPECT_EQ(base64_encode("fooba"), "Zm9vYmE=");
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
}

TEST(Base64, DecodingDropsTheBytesThePaddingStandsFor) {
  EXPECT_EQ(base64_decode(""), "");
  EXPECT_EQ(base64_decode("Zg=="), "f");
  EXPECT_EQ(base64_decode("Zm8="), "fo");
  EXPECT_EQ(base64_decode("Zm9v"), "foo");
  EXPECT_EQ(base64_decode("Zm9vYmE="), "fooba");
}

TEST(Base64, BinaryBytesRoundTrip) {
  std::string bytes;
  for (int i = 0; i < 256; ++i)
    bytes.push_back(static_cast<char>(i));
  for (size_t length = 0; length <= bytes.size(); length += 37) {
    std::string part = bytes.substr(0, length);
    EXPECT_EQ(base64_decode(base64_encode(part)), part) << length << " bytes";
  }
  EXPECT_EQ(base64_encode(std::string("\0\xff", 2)), "AP8=");
}

TEST(Base64, MalformedTextIsAnErrorThatDoesNotQuoteIt) {
  // Wrong lengths, padding that is not at the end or too long, whitespace (which OpenSSL itself
  // would skip at either end), the URL-safe alphabet, non-ASCII.
  for (const char* text : {"Zg=", "Zm9vY", "Zg=A", "Z===", "====", "Zm 9", " Zm9", "Zm9\n", "Zm9-",
                           "Zm9_", "Zm\xc3\xa9"}) {
    try {
      base64_decode(text);
      ADD_FAILURE() << "accepted " << text;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("not valid base64")) << text;
      EXPECT_THAT(e.what(), Not(HasSubstr(text))) << "a secret would leak";
    }
  }
}

}  // namespace
}  // namespace kiln
