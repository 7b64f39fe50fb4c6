#include "kiln/base/strings.hpp"

#include <gtest/gtest.h>

#include "kiln/base/error.hpp"

namespace kiln {
namespace {

TEST(Strings, CaseAndTrim) {
  EXPECT_EQ(to_lower("CoPy"), "copy");
  EXPECT_EQ(to_upper("run"), "RUN");
  EXPECT_TRUE(iequals("Healthcheck", "HEALTHCHECK"));
  EXPECT_FALSE(iequals("RUN", "RUNS"));
  EXPECT_EQ(trim(" \t a b \r\n"), "a b");
  EXPECT_EQ(trim_left("  x "), "x ");
  EXPECT_EQ(trim_right("  x "), "  x");
}

TEST(Strings, SplitJoinQuote) {
  EXPECT_EQ(split("a,,b", ','), (std::vector<std::string>{"a", "", "b"}));
  EXPECT_EQ(split("", ','), (std::vector<std::string>{""}));
  EXPECT_EQ(join({"a", "b", "c"}, ", "), "a, b, c");
  EXPECT_EQ(split_unquoted("type=bind,src=\"a,b\",ro", ','),
            (std::vector<std::string>{"type=bind", "src=a,b", "ro"}));
  EXPECT_EQ(quote("a\"b\\\n\x01"), "\"a\\\"b\\\\\\n\\x01\"");
}

TEST(Error, InputErrorFormatsPosition) {
  InputError e({"Containerfile", 3, 7}, "unknown instruction: FOO");
  EXPECT_STREQ(e.what(), "Containerfile:3:7: unknown instruction: FOO");
  EXPECT_EQ(e.where().line, 3);
  EXPECT_EQ(SourceLocation({"f", 2, 0}).to_string(), "f:2");
  EXPECT_EQ(SourceLocation({"f", 0, 0}).to_string(), "f");
}

}  // namespace
}  // namespace kiln
