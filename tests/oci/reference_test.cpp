#include "kiln/oci/reference.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kiln/base/error.hpp"

namespace kiln::oci {
namespace {

using ::testing::HasSubstr;

const std::string kDigest = "sha256:" + std::string(64, 'a');

struct Normalised {
  std::string input;
  std::string domain, path, tag;
  bool has_digest;
  std::string familiar;
};

// Expectations follow docker's ParseNormalizedNamed + TagNameOnly and FamiliarString.
const Normalised kCases[] = {
    {"alpine", "docker.io", "library/alpine", "latest", false, "alpine:latest"},
    {"alpine:3.20", "docker.io", "library/alpine", "3.20", false, "alpine:3.20"},
    {"docker.io/alpine", "docker.io", "library/alpine", "latest", false, "alpine:latest"},
    {"docker.io/library/alpine:edge", "docker.io", "library/alpine", "edge", false, "alpine:edge"},
    {"index.docker.io/library/x", "docker.io", "library/x", "latest", false, "x:latest"},
    {"index.docker.io/x", "docker.io", "library/x", "latest", false, "x:latest"},
    {"library/alpine", "docker.io", "library/alpine", "latest", false, "alpine:latest"},
    {"org/app:1", "docker.io", "org/app", "1", false, "org/app:1"},
    {"docker.io/org/app:1", "docker.io", "org/app", "1", false, "org/app:1"},
    {"org/team/app", "docker.io", "org/team/app", "latest", false, "org/team/app:latest"},
    // Nested official-looking paths keep "library/", as docker's familiarizeName does.
    {"library/a/b", "docker.io", "library/a/b", "latest", false, "library/a/b:latest"},
    {"ghcr.io/x/y:1", "ghcr.io", "x/y", "1", false, "ghcr.io/x/y:1"},
    {"ghcr.io/x", "ghcr.io", "x", "latest", false, "ghcr.io/x:latest"},
    {"localhost/x", "localhost", "x", "latest", false, "localhost/x:latest"},
    {"localhost:5000/a/b:1", "localhost:5000", "a/b", "1", false, "localhost:5000/a/b:1"},
    {"host:5000/x", "host:5000", "x", "latest", false, "host:5000/x:latest"},
    {"127.0.0.1:5000/x:y", "127.0.0.1:5000", "x", "y", false, "127.0.0.1:5000/x:y"},
    {"[::1]:5000/x", "[::1]:5000", "x", "latest", false, "[::1]:5000/x:latest"},
    {"My.Registry/x", "My.Registry", "x", "latest", false, "My.Registry/x:latest"},
    // An upper-case first component cannot be a namespace, so docker takes it for a host.
    {"Registry/x", "Registry", "x", "latest", false, "Registry/x:latest"},
    {"a@" + kDigest, "docker.io", "library/a", "", true, "a@" + kDigest},
    {"a:1@" + kDigest, "docker.io", "library/a", "1", true, "a:1@" + kDigest},
    {"quay.io/o/r@" + kDigest, "quay.io", "o/r", "", true, "quay.io/o/r@" + kDigest},
    {"a-b__c_d/f--g.h", "docker.io", "a-b__c_d/f--g.h", "latest", false, "a-b__c_d/f--g.h:latest"},
    {"x:V1.0_rc-2", "docker.io", "library/x", "V1.0_rc-2", false, "x:V1.0_rc-2"},
    {"x:" + std::string(128, 't'), "docker.io", "library/x", std::string(128, 't'), false,
     "x:" + std::string(128, 't')},
    {"example.com/" + std::string(255, 'p'), "example.com", std::string(255, 'p'), "latest", false,
     "example.com/" + std::string(255, 'p') + ":latest"},
    // A bare "localhost:5000" is an image named localhost tagged 5000, as in docker.
    {"localhost:5000", "docker.io", "library/localhost", "5000", false, "localhost:5000"},
};

TEST(Reference, NormalisationTable) {
  for (const Normalised& c : kCases) {
    SCOPED_TRACE(c.input);
    Reference r = parse_reference(c.input);
    EXPECT_EQ(r.domain, c.domain);
    EXPECT_EQ(r.path, c.path);
    EXPECT_EQ(r.tag, c.tag);
    EXPECT_EQ(r.digest.has_value(), c.has_digest);
    if (c.has_digest) {
      EXPECT_EQ(r.digest->str(), kDigest);
    }
    EXPECT_EQ(r.familiar(), c.familiar);
    // Both printed forms parse back to the same reference.
    EXPECT_EQ(parse_reference(r.str()), r);
    EXPECT_EQ(parse_reference(r.familiar()), r);
    EXPECT_EQ(try_parse_reference(c.input), r);
  }
}

TEST(Reference, PrintedForms) {
  Reference r = parse_reference("alpine:3.20");
  EXPECT_EQ(r.name(), "docker.io/library/alpine");
  EXPECT_EQ(r.str(), "docker.io/library/alpine:3.20");
  EXPECT_EQ(r.familiar(), "alpine:3.20");
  r = parse_reference("localhost:5000/a/b:1@" + kDigest);
  EXPECT_EQ(r.name(), "localhost:5000/a/b");
  EXPECT_EQ(r.str(), "localhost:5000/a/b:1@" + kDigest);
  r = parse_reference("a@" + kDigest);
  EXPECT_EQ(r.str(), "docker.io/library/a@" + kDigest);
}

struct Rejected {
  std::string input;
  std::string reason;
};

const Rejected kRejected[] = {
    {"", "empty reference"},
    {std::string(64, 'f'), "is an image ID, not a repository name"},
    {"Alpine", "repository name \"library/Alpine\" must be lowercase"},
    {"org/App:1", "repository name \"org/App\" must be lowercase"},
    {"ghcr.io/Org/app", "repository name \"Org/app\" must be lowercase"},
    {"x:" + std::string(129, 't'), "invalid tag"},
    {"x:", "invalid tag \"\""},
    {"x:.a", "invalid tag \".a\""},
    {"x:-a", "invalid tag \"-a\""},
    // A ':' before the first '/' makes that component a registry host, whose port is not numeric.
    {"x:a/b", "invalid registry host \"x:a\""},
    {"x:1:2", "invalid tag \"1:2\""},
    {"x@", "missing digest after '@'"},
    {"x@sha256:abc", "invalid digest \"sha256:abc\""},
    {"x@sha256:" + std::string(64, 'A'), "invalid digest"},
    {"x@md5:" + std::string(32, 'a'), "invalid digest"},
    {"a//b", "empty component in repository name"},
    {"a/", "empty component in repository name"},
    {"/a", "empty component in repository name"},
    {"docker.io/", "empty component"},
    {"-a", "invalid repository name component \"-a\""},
    {"a..b", "invalid repository name component \"a..b\""},
    {"a___b", "invalid repository name component \"a___b\""},
    {"a b", "invalid repository name component \"a b\""},
    {"a-", "invalid repository name component \"a-\""},
    {"-host.io/x", "invalid registry host \"-host.io\""},
    {"host:port/x", "invalid registry host \"host:port\""},
    {"host:/x", "invalid registry host \"host:\""},
    {"[zz]:5000/x", "invalid registry host \"[zz]:5000\""},
    {"example.com/" + std::string(256, 'p'), "256 characters long, more than 255"},
};

TEST(Reference, RejectsWithReason) {
  for (const Rejected& c : kRejected) {
    SCOPED_TRACE(c.input);
    try {
      parse_reference(c.input);
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      std::string message = e.what();
      EXPECT_EQ(message.rfind("invalid image reference ", 0), 0u) << message;
      EXPECT_THAT(message, HasSubstr(c.reason));
    }
    EXPECT_FALSE(try_parse_reference(c.input).has_value());
  }
}

TEST(Reference, FullMessage) {
  try {
    parse_reference("Foo/Bar:1");
    FAIL() << "accepted";
  } catch (const Error& e) {
    // "Foo" is taken for a registry host (upper case), so the path is "Bar".
    EXPECT_STREQ(e.what(),
                 "invalid image reference \"Foo/Bar:1\": repository name \"Bar\" must be "
                 "lowercase");
  }
}

}  // namespace
}  // namespace kiln::oci
