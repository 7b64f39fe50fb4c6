#include "kiln/runner/emulation.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "kiln/base/fd.hpp"

namespace kiln::runner {
namespace {

using ::testing::HasSubstr;

oci::Platform foreign() {
  return oci::parse_platform(oci::host_platform().architecture == "arm64" ? "linux/amd64"
                                                                          : "linux/arm64");
}

TEST(Emulation, TheHostPlatformNeedsNothing) {
  TempDir none;
  EXPECT_EQ(cannot_run(oci::host_platform(), none.path() / "missing"), std::nullopt);
}

TEST(Emulation, ExplainsAMissingOrDisabledHandler) {
  TempDir dir;
  std::string handler = "qemu-" + qemu_arch(foreign().architecture);
  auto unmounted = cannot_run(foreign(), dir.path());
  ASSERT_TRUE(unmounted);
  EXPECT_THAT(*unmounted, HasSubstr("not mounted"));
  EXPECT_THAT(*unmounted, HasSubstr(foreign().to_string()));
  EXPECT_THAT(*unmounted, HasSubstr("update-binfmts --enable " + handler));

  std::ofstream(dir.path() / "status") << "enabled\n";
  auto missing = cannot_run(foreign(), dir.path());
  ASSERT_TRUE(missing);
  EXPECT_THAT(*missing, HasSubstr("no " + handler + " handler"));

  std::ofstream(dir.path() / handler) << "disabled\ninterpreter /usr/libexec/qemu-binfmt/x\n";
  auto disabled = cannot_run(foreign(), dir.path());
  ASSERT_TRUE(disabled);
  EXPECT_THAT(*disabled, HasSubstr("disabled"));

  std::ofstream(dir.path() / handler) << "enabled\ninterpreter /usr/bin/qemu-x-static\nflags: PF\n";
  EXPECT_EQ(cannot_run(foreign(), dir.path()), std::nullopt);
}

TEST(Emulation, AHandlerWithoutFixBinaryCannotServeABuildRoot) {
  TempDir dir;
  std::string handler = "qemu-" + qemu_arch(foreign().architecture);
  std::ofstream(dir.path() / "status") << "enabled\n";
  std::ofstream(dir.path() / handler) << "enabled\ninterpreter /usr/bin/qemu-x-static\nflags: P\n"
                                      << "offset 0\nmagic 7f454c46\n";
  auto reason = cannot_run(foreign(), dir.path());
  ASSERT_TRUE(reason);
  EXPECT_THAT(*reason, HasSubstr(foreign().to_string()));
  EXPECT_THAT(*reason, HasSubstr("fix-binary"));
}

TEST(Emulation, AnotherOsCannotBeEmulated) {
  auto windows = cannot_run(oci::parse_platform("windows/amd64"));
  ASSERT_TRUE(windows);
  EXPECT_THAT(*windows, HasSubstr("windows/amd64"));
}

}  // namespace
}  // namespace kiln::runner
