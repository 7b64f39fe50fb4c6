// Multi-platform builds as other tools see them: `kiln build --platform linux/amd64,linux/arm64`
// makes one OCI index that skopeo, `kiln inspect` and a real registry read with the right image
// per platform; arm64 RUN steps run under QEMU; a platform this machine cannot run fails before
// any step; a BUILDPLATFORM stage cross-compiles without emulation.
//
// Needs root on an x86_64 host, skopeo and docker-registry (scripts/install-deps.sh), and
// scripts/setup-foreign-arch.sh, which the suite runs: it downloads Debian's arm64 busybox-static
// and enables the qemu-aarch64 binfmt_misc handler. Where binfmt_misc cannot be had, the one test
// that runs arm64 code skips.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <tuple>

#include "kiln/base/fd.hpp"
#include "process.hpp"
#include "registry_fixture.hpp"
#include "test_files.hpp"

namespace kiln::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

const fs::path kArm64Busybox = "/var/cache/kiln-test/arm64/bin/busybox";
const fs::path kBinfmt = "/proc/sys/fs/binfmt_misc";
constexpr const char* kBothPlatforms = "linux/amd64,linux/arm64";

std::string read(const fs::path& path) {
  return read_or(path, "");
}

// The first line of a binfmt_misc file ("enabled" or "disabled"); empty when there is none.
std::string binfmt_state(const std::string& name) {
  std::ifstream in(kBinfmt / name);
  std::string line;
  std::getline(in, line);
  return line;
}

bool qemu_arm64_usable() {
  return binfmt_state("status") == "enabled" && binfmt_state("qemu-aarch64") == "enabled";
}

// e_machine of an ELF file: 0xB7 aarch64, 0x3E x86_64; -1 when it is no ELF file.
int elf_machine(const fs::path& path) {
  std::string bytes = read(path);
  if (bytes.size() < 20 || bytes.compare(0, 4, "\177ELF") != 0)
    return -1;
  return static_cast<unsigned char>(bytes[18]) | static_cast<unsigned char>(bytes[19]) << 8;
}

// A platform whose RUN steps this machine cannot execute: one with no enabled QEMU handler, or,
// when qemu-user-static registered them all, one whose handler is disabled until destruction.
class PlatformWithoutEmulation {
 public:
  PlatformWithoutEmulation() {
    for (const char* arch : {"riscv64", "s390x", "ppc64le"}) {
      if (binfmt_state("status") != "enabled" ||
          binfmt_state(std::string("qemu-") + arch) != "enabled") {
        architecture_ = arch;
        return;
      }
    }
    architecture_ = "riscv64";
    std::ofstream(kBinfmt / "qemu-riscv64") << "0";
    disabled_ = binfmt_state("qemu-riscv64") == "disabled";
  }
  ~PlatformWithoutEmulation() {
    if (disabled_)
      std::ofstream(kBinfmt / "qemu-riscv64") << "1";
  }
  PlatformWithoutEmulation(const PlatformWithoutEmulation&) = delete;
  PlatformWithoutEmulation& operator=(const PlatformWithoutEmulation&) = delete;

  std::string platform() const { return "linux/" + architecture_; }
  const std::string& architecture() const { return architecture_; }
  // False when every candidate had an enabled handler and disabling one failed.
  bool unusable() const {
    return binfmt_state("status") != "enabled" ||
           binfmt_state("qemu-" + architecture_) != "enabled";
  }

 private:
  // QEMU names these architectures as OCI does.
  std::string architecture_;
  bool disabled_ = false;
};

class MultiPlatform : public ::testing::Test {
 public:
  static void SetUpTestSuite() {
    utsname host{};
    ::uname(&host);
    if (::geteuid() != 0 || std::string(host.machine) != "x86_64") {
      skip_reason_ = new std::string("needs root on an x86_64 host");
      return;
    }
    work_ = new TempDir({}, "kiln-multiplatform-");
    ProcessResult setup =
        run_program({std::string(KILN_SOURCE_DIR) + "/scripts/setup-foreign-arch.sh"});
    ASSERT_EQ(setup.exit_code, 0) << setup.out << setup.err;
    std::printf("%s", setup.out.c_str());
    ASSERT_EQ(elf_machine(kArm64Busybox), 0xB7) << kArm64Busybox << " is no arm64 binary";

    // busybox:latest for both platforms: each platform copies its own rootfs.
    fs::path base = dir() / "busybox";
    std::string prepare = std::string(KILN_SOURCE_DIR) + "/examples/busybox/prepare.sh";
    for (const auto& [arch, binary] : std::map<std::string, std::string>{
             {"amd64", "/bin/busybox"}, {"arm64", kArm64Busybox.string()}}) {
      fs::path laid_out = dir() / ("prepare-" + arch);
      ProcessResult prepared = run_program({prepare, laid_out.string(), binary});
      ASSERT_EQ(prepared.exit_code, 0) << prepared.err;
      fs::create_directories(base);
      fs::rename(laid_out / "rootfs", base / ("rootfs-" + arch));
    }
    write(base / "Containerfile",
          "FROM scratch\n"
          "ARG TARGETARCH\n"
          "COPY rootfs-$TARGETARCH/ /\n"
          "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
          "CMD [\"/bin/sh\"]\n");
    ProcessResult built =
        kiln({"build", "--platform", kBothPlatforms, "-t", "busybox:latest", base.string()});
    ASSERT_EQ(built.exit_code, 0) << built.err;
    ready_ = true;
  }
  static void TearDownTestSuite() {
    delete work_;
    work_ = nullptr;
    delete skip_reason_;
    skip_reason_ = nullptr;
  }

 protected:
  void SetUp() override {
    if (skip_reason_)
      GTEST_SKIP() << *skip_reason_;
    ASSERT_TRUE(ready_) << "the suite's setup failed (see above)";
  }

  static fs::path dir() { return work_->path(); }
  static ProcessResult kiln(const std::vector<std::string>& args) {
    return run_kiln(args, {}, {},
                    {"KILN_ROOT=" + (dir() / "store").string(), "SOURCE_DATE_EPOCH=1700000000"});
  }
  // A build context under the test directory with these files.
  static fs::path context(const std::string& name,
                          const std::map<std::string, std::string>& files) {
    fs::path ctx = dir() / name;
    for (const auto& [path, content] : files)
      write(ctx / path, content);
    return ctx;
  }
  static nlohmann::json parse(const ProcessResult& r) {
    return nlohmann::json::parse(r.out, nullptr, false);
  }
  // "amd64" for an index entry of linux/amd64; empty when it names no platform.
  static std::string architecture(const nlohmann::json& descriptor) {
    return descriptor.value("platform", nlohmann::json::object()).value("architecture", "");
  }
  // The platforms ("linux/amd64") an index lists.
  static std::vector<std::string> platforms(const nlohmann::json& index) {
    std::vector<std::string> out;
    for (const auto& m : index.value("manifests", nlohmann::json::array()))
      out.push_back(m.value("platform", nlohmann::json::object()).value("os", "") + "/" +
                    architecture(m));
    return out;
  }
  static fs::path scratch_context() {
    return context("scratch", {{"hello.txt", "hello\n"},
                               {"Containerfile",
                                "FROM scratch\n"
                                "ARG TARGETARCH\n"
                                "COPY hello.txt /hello.txt\n"
                                "LABEL built.for=$TARGETARCH\n"}});
  }

 private:
  static inline TempDir* work_ = nullptr;
  static inline std::string* skip_reason_ = nullptr;
  static inline bool ready_ = false;
};

TEST_F(MultiPlatform, TwoPlatformsFromScratchMakeAnIndex) {
  fs::path layout = dir() / "scratch-oci";
  ProcessResult r = kiln({"build", "--platform", kBothPlatforms, "-t", "multi:1", "-o",
                          "type=oci,dest=" + layout.string(), scratch_context().string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string ref = "oci:" + layout.string() + ":multi:1";

  ProcessResult raw = run_program({"skopeo", "inspect", "--raw", ref});
  ASSERT_EQ(raw.exit_code, 0) << raw.err;
  nlohmann::json index = nlohmann::json::parse(raw.out);
  EXPECT_EQ(index["mediaType"], "application/vnd.oci.image.index.v1+json");
  EXPECT_THAT(platforms(index), UnorderedElementsAre("linux/amd64", "linux/arm64"));
  // Each manifest the index names holds a config of its own platform.
  for (const auto& m : index["manifests"]) {
    std::string digest = m.value("digest", "").substr(7);
    nlohmann::json manifest = nlohmann::json::parse(read(layout / "blobs/sha256" / digest));
    std::string config_digest = manifest["config"]["digest"].get<std::string>().substr(7);
    nlohmann::json config = nlohmann::json::parse(read(layout / "blobs/sha256" / config_digest));
    EXPECT_EQ(config["architecture"], architecture(m));
    EXPECT_EQ(config["os"], "linux");
    EXPECT_EQ(config["config"]["Labels"]["built.for"], architecture(m));
  }
  for (const std::string arch : {"amd64", "arm64"}) {
    ProcessResult config =
        run_program({"skopeo", "inspect", "--override-arch", arch, "--config", "--raw", ref});
    ASSERT_EQ(config.exit_code, 0) << config.err;
    EXPECT_EQ(nlohmann::json::parse(config.out)["architecture"], arch);
  }

  ProcessResult inspect = kiln({"inspect", "multi:1"});
  ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
  nlohmann::json shown = parse(inspect);
  EXPECT_EQ(shown["MediaType"], "application/vnd.oci.image.index.v1+json");
  EXPECT_THAT(platforms(shown["Index"]), UnorderedElementsAre("linux/amd64", "linux/arm64"));
  std::set<std::string> seen;
  for (const auto& m : shown["Manifests"]) {
    std::string platform = m.value("Platform", "");
    seen.insert(platform);
    EXPECT_EQ("linux/" + m.value("Config", nlohmann::json::object()).value("architecture", ""),
              platform);
  }
  EXPECT_EQ(seen, (std::set<std::string>{"linux/amd64", "linux/arm64"}));
}

TEST_F(MultiPlatform, ArmRunStepRunsUnderQemu) {
  if (!qemu_arm64_usable()) {
    GTEST_SKIP() << kBinfmt / "qemu-aarch64"
                 << " is not enabled (binfmt_misc not mountable here?): run "
                    "scripts/setup-foreign-arch.sh as root";
  }
  fs::path ctx =
      context("uname", {{"Containerfile", "FROM busybox:latest\nRUN uname -m > /arch\n"}});
  fs::path layout = dir() / "uname-oci";
  ProcessResult r = kiln({"build", "--platform", kBothPlatforms, "--progress", "json", "-t",
                          "uname:1", "-o", "type=oci,dest=" + layout.string(), ctx.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(parse(r)["steps_run"], 2) << r.err;  // the RUN, once per platform
  ProcessResult raw =
      run_program({"skopeo", "inspect", "--raw", "oci:" + layout.string() + ":uname:1"});
  ASSERT_EQ(raw.exit_code, 0) << raw.err;
  EXPECT_THAT(platforms(nlohmann::json::parse(raw.out)),
              UnorderedElementsAre("linux/amd64", "linux/arm64"));

  // The same build again, as files: every step is cached, so these are the image's files.
  fs::path files = dir() / "uname-files";
  ProcessResult local = kiln({"build", "--platform", kBothPlatforms, "--progress", "json", "-o",
                              "type=local,dest=" + files.string(), ctx.string()});
  ASSERT_EQ(local.exit_code, 0) << local.err;
  EXPECT_EQ(parse(local)["steps_run"], 0) << local.err;
  EXPECT_EQ(parse(local)["steps_cached"], 2) << local.err;
  EXPECT_EQ(read(files / "linux_amd64" / "arch"), "x86_64\n");
  EXPECT_EQ(read(files / "linux_arm64" / "arch"), "aarch64\n");
  EXPECT_EQ(elf_machine(files / "linux_arm64" / "bin" / "busybox"), 0xB7);

  fs::path arm = dir() / "uname-arm64";
  ProcessResult one = kiln({"build", "--platform", "linux/arm64", "--progress", "json", "-o",
                            "type=local,dest=" + arm.string(), ctx.string()});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_EQ(parse(one)["steps_cached"], 1) << one.err;  // the arm64 RUN of the build above
  EXPECT_EQ(read(arm / "arch"), "aarch64\n");
}

TEST_F(MultiPlatform, ForeignRunWithoutBinfmtIsAClearErrorBeforeAnyStep) {
  PlatformWithoutEmulation foreign;
  ASSERT_TRUE(foreign.unusable()) << "could not disable qemu-" << foreign.architecture();
  fs::path ctx = context(
      "foreign",
      {{"f.txt", "f\n"}, {"Containerfile", "FROM scratch\nCOPY f.txt /f.txt\nRUN echo hi\n"}});
  for (const std::string& list : {foreign.platform(), "linux/amd64," + foreign.platform()}) {
    SCOPED_TRACE(list);
    ProcessResult r = kiln({"build", "--progress", "plain", "--platform", list, ctx.string()});
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_THAT(r.err, HasSubstr(foreign.platform()));
    EXPECT_THAT(r.err, HasSubstr("update-binfmts"));
    EXPECT_THAT(r.err, Not(HasSubstr("DONE"))) << "a step ran before the platform check";
    EXPECT_THAT(r.err, Not(HasSubstr("COPY f.txt"))) << "a step started before the check";
  }
}

TEST_F(MultiPlatform, CrossCompileStageRunsOncePerTargetArch) {
  fs::path ctx = dir() / "cross";
  ProcessResult prepared =
      run_program({std::string(KILN_SOURCE_DIR) + "/examples/cross-compile/prepare.sh",
                   ctx.string(), "/bin/busybox", kArm64Busybox.string()});
  ASSERT_EQ(prepared.exit_code, 0) << prepared.err;
  fs::path files = dir() / "cross-files";
  ProcessResult r = kiln({"build", "--platform", kBothPlatforms, "--progress", "json", "-t",
                          "cross:1", "-o", "type=local,dest=" + files.string(), ctx.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  // How often each RUN ran, and how often it was taken from another platform's run.
  std::map<size_t, std::string> names;
  std::map<std::string, int> done, cached;
  std::istringstream events(r.err);
  for (std::string line; std::getline(events, line);) {
    nlohmann::json e = nlohmann::json::parse(line, nullptr, false);
    if (e.is_discarded() || !e.contains("step"))
      continue;
    size_t step = e["step"];
    if (e["event"] == "started")
      names[step] = e["name"];
    std::string what = names[step].find("sha256sum") != std::string::npos              ? "shared"
                       : names[step].find("cp /bins/$TARGETARCH") != std::string::npos ? "per-arch"
                                                                                       : "other";
    if (e["event"] == "done")
      ++done[what];
    if (e["event"] == "cached")
      ++cached[what];
  }
  EXPECT_EQ(done["shared"], 1) << "the RUN before ARG TARGETARCH runs once\n" << r.err;
  EXPECT_EQ(cached["shared"], 1) << r.err;
  EXPECT_EQ(done["per-arch"], 2) << "the RUN that uses TARGETARCH runs per target\n" << r.err;

  for (const auto& [arch, machine, source] : {std::tuple{"amd64", 0x3E, fs::path("/bin/busybox")},
                                              std::tuple{"arm64", 0xB7, kArm64Busybox}}) {
    fs::path root = files / ("linux_" + std::string(arch));
    EXPECT_EQ(elf_machine(root / "busybox"), machine) << arch;
    EXPECT_TRUE(read(root / "busybox") == read(source)) << arch << ": not " << source;
    EXPECT_EQ(read(root / "etc" / "build-info"),
              "built on linux/amd64 for " + std::string(arch) + "\n");
  }

  // No emulation is needed: a target nobody can run here builds just as well.
  PlatformWithoutEmulation foreign;
  ASSERT_TRUE(foreign.unusable());
  write(ctx / "bin" / foreign.architecture() / "busybox", "a prebuilt binary\n");
  fs::path foreign_files = dir() / "cross-foreign";
  ProcessResult other = kiln({"build", "--platform", "linux/amd64," + foreign.platform(), "-o",
                              "type=local,dest=" + foreign_files.string(), ctx.string()});
  ASSERT_EQ(other.exit_code, 0) << other.err;
  std::string foreign_dir = "linux_" + foreign.architecture();
  EXPECT_EQ(read(foreign_files / foreign_dir / "busybox"), "a prebuilt binary\n");
}

TEST_F(MultiPlatform, DockerArchiveWithTwoPlatformsIsRefused) {
  fs::path archive = dir() / "two.tar";
  ProcessResult two = kiln({"build", "--platform", kBothPlatforms, "-o",
                            "type=docker,dest=" + archive.string(), scratch_context().string()});
  EXPECT_TRUE(two.exit_code == 1 || two.exit_code == 2) << two.exit_code << two.err;
  EXPECT_THAT(two.err, HasSubstr("type=docker"));
  EXPECT_THAT(two.err, HasSubstr("--platform"));
  EXPECT_FALSE(fs::exists(archive));

  fs::path one = dir() / "arm64.tar";
  ProcessResult single = kiln({"build", "--platform", "linux/arm64", "-o",
                               "type=docker,dest=" + one.string(), scratch_context().string()});
  ASSERT_EQ(single.exit_code, 0) << single.err;
  ProcessResult config =
      run_program({"skopeo", "inspect", "--config", "--raw", "docker-archive:" + one.string()});
  ASSERT_EQ(config.exit_code, 0) << config.err;
  EXPECT_EQ(nlohmann::json::parse(config.out)["architecture"], "arm64");
}

TEST_F(MultiPlatform, PushIndexToRegistry) {
  LocalRegistry registry;
  std::string ref = registry.host() + "/x/app:1";
  ProcessResult r = kiln({"build", "--platform", kBothPlatforms, "--push", "-t", ref,
                          "--tls-verify=false", scratch_context().string()});
  ASSERT_EQ(r.exit_code, 0) << r.err << registry.logs();

  ProcessResult raw =
      run_program({"skopeo", "inspect", "--raw", "--tls-verify=false", "docker://" + ref});
  ASSERT_EQ(raw.exit_code, 0) << raw.err;
  nlohmann::json index = nlohmann::json::parse(raw.out);
  EXPECT_EQ(index["mediaType"], "application/vnd.oci.image.index.v1+json");
  EXPECT_THAT(platforms(index), UnorderedElementsAre("linux/amd64", "linux/arm64"));
  ProcessResult arm = run_program({"skopeo", "inspect", "--override-arch", "arm64", "--config",
                                   "--raw", "--tls-verify=false", "docker://" + ref});
  ASSERT_EQ(arm.exit_code, 0) << arm.err;
  EXPECT_EQ(nlohmann::json::parse(arm.out)["architecture"], "arm64");

  fs::path copy = dir() / "pushed-copy";
  ProcessResult copied = run_program({"skopeo", "copy", "--all", "--src-tls-verify=false",
                                      "docker://" + ref, "oci:" + copy.string() + ":app"});
  ASSERT_EQ(copied.exit_code, 0) << copied.err;
  ProcessResult back = run_program({"skopeo", "inspect", "--raw", "oci:" + copy.string() + ":app"});
  ASSERT_EQ(back.exit_code, 0) << back.err;
  EXPECT_THAT(platforms(nlohmann::json::parse(back.out)),
              UnorderedElementsAre("linux/amd64", "linux/arm64"));
}

}  // namespace
}  // namespace kiln::test
