// registries.conf as containers/image reads it, against two real registries (Debian's
// docker-registry on 127.0.0.1): an upstream and a mirror that alone has the image. A pull and a
// build FROM the upstream's name go to the mirror (the upstream's log shows no request for the
// repository); a location rewrite and a blocked prefix behave as containers-registries.conf(5)
// says.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "kiln/base/fd.hpp"
#include "process.hpp"
#include "registry_fixture.hpp"
#include "test_files.hpp"

namespace kiln::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(RegistriesConf, PullsGoToTheMirrorAndBlockedPrefixesAreRefused) {
  TempDir work;
  LocalRegistry upstream;
  LocalRegistry mirror;
  fs::path conf = work.path() / "registries.conf";
  write(conf, "[[registry]]\nlocation = \"" + upstream.host() +
                  "\"\n[[registry.mirror]]\nlocation = \"" + mirror.host() +
                  "\"\n\n[[registry]]\nprefix = \"example.invalid/foo\"\nlocation = \"" +
                  mirror.host() + "/team\"\n\n[[registry]]\nlocation = \"" + upstream.host() +
                  "/blocked\"\nblocked = true\n\n[aliases]\n\"myapp\" = \"" + mirror.host() +
                  "/team/app\"\n");
  auto kiln = [&](const std::string& store, const std::vector<std::string>& args) {
    return run_kiln(args, {}, {},
                    {"KILN_ROOT=" + (work.path() / store).string(),
                     "CONTAINERS_REGISTRIES_CONF=" + conf.string()});
  };
  // The image exists on the mirror only.
  fs::path ctx = work.path() / "ctx";
  write(ctx / "Containerfile", "FROM scratch\nCOPY a.txt /\n");
  write(ctx / "a.txt", "from the mirror\n");
  ASSERT_EQ(kiln("seed", {"build", "-q", "-t", "app:1", ctx.string()}).exit_code, 0);
  ProcessResult seeded = kiln("seed", {"push", "app:1", mirror.host() + "/team/app:1"});
  ASSERT_EQ(seeded.exit_code, 0) << seeded.err;

  ProcessResult pulled = kiln("a", {"pull", upstream.host() + "/team/app:1"});
  ASSERT_EQ(pulled.exit_code, 0) << pulled.err << mirror.logs();
  EXPECT_THAT(pulled.err, HasSubstr("(a mirror)"));
  fs::path from = work.path() / "from";
  write(from / "Containerfile", "FROM " + upstream.host() + "/team/app:1\nLABEL built=yes\n");
  ProcessResult built = kiln("b", {"build", "-q", from.string()});
  ASSERT_EQ(built.exit_code, 0) << built.err;
  EXPECT_THAT(upstream.logs(), Not(HasSubstr("/v2/team/app")));
  EXPECT_THAT(mirror.logs(), HasSubstr("/v2/team/app/manifests/1"));

  ProcessResult rewritten = kiln("c", {"pull", "example.invalid/foo/app:1"});
  ASSERT_EQ(rewritten.exit_code, 0) << rewritten.err;
  ProcessResult listed = kiln("c", {"images"});
  EXPECT_THAT(listed.out, HasSubstr("example.invalid/foo/app"));

  // A short name through its alias, for kiln pull and for FROM.
  ProcessResult alias = kiln("g", {"pull", "-q", "myapp:1"});
  ASSERT_EQ(alias.exit_code, 0) << alias.err;
  write(from / "Containerfile", "FROM myapp:1\nLABEL via=alias\n");
  ProcessResult aliased = kiln("h", {"build", "-q", from.string()});
  ASSERT_EQ(aliased.exit_code, 0) << aliased.err;

  ProcessResult blocked = kiln("d", {"pull", upstream.host() + "/blocked/x:1"});
  EXPECT_EQ(blocked.exit_code, 1);
  EXPECT_THAT(blocked.err, HasSubstr("blocked in registries.conf"));

  write(conf, "[[registry]]\nlocation = \"a\n");
  ProcessResult bad = kiln("e", {"pull", upstream.host() + "/team/app:1"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err, HasSubstr(conf.string() + ":2:"));
}

}  // namespace
}  // namespace kiln::test
