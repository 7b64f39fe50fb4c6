// kiln's images as other OCI tools see them: skopeo, umoci and podman read what kiln writes,
// config fields land where docker/buildah put them, and builds are reproducible.
//
// Needs skopeo, umoci, podman, runc, tar and Debian's busybox-static (scripts/install-deps.sh
// installs them). Every test uses its own store (KILN_ROOT) and podman storage under a
// temporary directory; nothing on the host is changed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kiln/base/fd.hpp"
#include "process.hpp"

namespace kiln::test {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr const char* kEpoch = "SOURCE_DATE_EPOCH=1700000000";

void write(const fs::path& path, const std::string& content) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << content;
}

std::string read(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class Interop : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    work_ = new TempDir({}, "kiln-interop-");
    for (const char* tool : {"skopeo", "umoci", "podman", "runc", "tar"}) {
      ProcessResult r = run_program({"sh", "-c", std::string("command -v ") + tool});
      ASSERT_EQ(r.exit_code, 0) << tool << " is missing: run scripts/install-deps.sh";
    }
    ASSERT_TRUE(fs::exists("/bin/busybox")) << "busybox-static is missing";
    // The base image every test builds on, made offline from Debian's busybox-static.
    fs::path ctx = dir() / "busybox";
    fs::create_directories(ctx);
    fs::copy_file(std::string(KILN_SOURCE_DIR) + "/examples/busybox/Containerfile",
                  ctx / "Containerfile");
    fs::copy_file("/bin/busybox", ctx / "busybox");
    ProcessResult r = kiln({"build", "-t", "busybox:latest", ctx.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  static void TearDownTestSuite() {
    delete work_;
    work_ = nullptr;
  }

  static fs::path dir() { return work_->path(); }
  static std::string store() { return (dir() / "store").string(); }
  static ProcessResult kiln(const std::vector<std::string>& args,
                            std::vector<std::string> env = {kEpoch}) {
    env.push_back("KILN_ROOT=" + store());
    return run_kiln(args, {}, {}, env);
  }
  static ProcessResult tool(const std::vector<std::string>& argv) {
    return run_program(argv, {}, {}, {"CONTAINERS_CONF=" + podman_conf()});
  }
  static std::string podman_conf() {
    fs::path conf = dir() / "containers.conf";
    if (!fs::exists(conf)) {
      // Hosts like ours need runc and explicit ulimits; never touch the host's config.
      write(conf,
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n"
            "[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = "
            "\"file\"\n");
    }
    return conf.string();
  }
  static nlohmann::json inspect_config(const std::string& image) {
    ProcessResult r =
        tool({"skopeo", "inspect", "--config", "--raw", "oci:" + store() + ":" + image});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? nlohmann::json::parse(r.out) : nlohmann::json{};
  }

  // A context with an app that exercises every instruction.
  static fs::path app_context() {
    fs::path ctx = dir() / "app";
    if (fs::exists(ctx))
      return ctx;
    write(ctx / "hello.txt", "hello from a COPYed file\n");
    write(ctx / "run.sh", "#!/bin/busybox sh\necho running\n");
    write(ctx / "secret.key", "never in the image\n");
    write(ctx / "files" / "a.txt", "a\n");
    write(ctx / "files" / "sub" / "b.txt", "b\n");
    EXPECT_EQ(run_program({"tar", "czf", (ctx / "files.tar.gz").string(), "-C",
                           (ctx / "files").string(), "."})
                  .exit_code,
              0);
    write(ctx / ".containerignore", "secret.key\nfiles/\n");
    write(ctx / "Containerfile", R"(# syntax=docker/dockerfile:1
FROM busybox:latest AS base
FROM base
ARG VERSION=1.2.3
LABEL org.opencontainers.image.version=$VERSION team="kiln team"
MAINTAINER kiln@example.com
ENV APP_HOME=/srv/app GREETING="hello world"
WORKDIR $APP_HOME
COPY --chown=nobody:nogroup hello.txt ./
COPY --chmod=0755 run.sh /usr/local/bin/run
ADD files.tar.gz /opt/files/
COPY <<EOF /etc/app.conf
version=$VERSION
EOF
EXPOSE 8080 53/udp
VOLUME ["/data", "/cache"]
USER nobody
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=30s --timeout=3s --start-period=1s --retries=2 CMD ["/bin/busybox", "true"]
SHELL ["/bin/busybox", "sh", "-c"]
ONBUILD COPY . /onbuild
ENTRYPOINT ["/bin/busybox", "cat"]
CMD ["/srv/app/hello.txt"]
)");
    return ctx;
  }

  static void build_app() {
    static bool built = false;
    if (built)
      return;
    ProcessResult r = kiln({"build", "-t", "app:1", app_context().string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    built = true;
  }

 private:
  static inline TempDir* work_ = nullptr;
};

TEST_F(Interop, ConfigFieldsAreWhereDockerPutsThem) {
  build_app();
  nlohmann::json config = inspect_config("app:1");
  const nlohmann::json& c = config["config"];
  EXPECT_EQ(config["architecture"], "amd64");
  EXPECT_EQ(config["os"], "linux");
  EXPECT_EQ(config["author"], "kiln@example.com");
  EXPECT_EQ(config["created"], "2023-11-14T22:13:20Z");
  EXPECT_THAT(c["Env"], ElementsAre("PATH=/bin:/usr/bin:/sbin:/usr/sbin", "APP_HOME=/srv/app",
                                    "GREETING=hello world"));
  EXPECT_EQ(c["Labels"]["org.opencontainers.image.version"], "1.2.3");
  EXPECT_EQ(c["Labels"]["team"], "kiln team");
  EXPECT_THAT(c["Entrypoint"], ElementsAre("/bin/busybox", "cat"));
  EXPECT_THAT(c["Cmd"], ElementsAre("/srv/app/hello.txt"));
  EXPECT_EQ(c["WorkingDir"], "/srv/app");
  EXPECT_EQ(c["User"], "nobody");
  EXPECT_TRUE(c["ExposedPorts"].contains("8080/tcp"));
  EXPECT_TRUE(c["ExposedPorts"].contains("53/udp"));
  EXPECT_TRUE(c["Volumes"].contains("/data"));
  EXPECT_TRUE(c["Volumes"].contains("/cache"));
  EXPECT_EQ(c["StopSignal"], "SIGQUIT");
  EXPECT_THAT(c["Healthcheck"]["Test"], ElementsAre("CMD", "/bin/busybox", "true"));
  EXPECT_EQ(c["Healthcheck"]["Interval"], 30'000'000'000LL);
  EXPECT_EQ(c["Healthcheck"]["Timeout"], 3'000'000'000LL);
  EXPECT_EQ(c["Healthcheck"]["StartPeriod"], 1'000'000'000LL);
  EXPECT_EQ(c["Healthcheck"]["Retries"], 2);
  EXPECT_THAT(c["Shell"], ElementsAre("/bin/busybox", "sh", "-c"));
  EXPECT_THAT(c["OnBuild"], ElementsAre("COPY . /onbuild"));
  // History: the base's entries, then one per instruction; metadata-only ones are empty layers.
  const nlohmann::json& history = config["history"];
  ASSERT_GE(history.size(), 6u);
  size_t layers = 0;
  for (const auto& h : history) {
    if (!h.value("empty_layer", false))
      ++layers;
  }
  EXPECT_EQ(layers, config["rootfs"]["diff_ids"].size());
  EXPECT_EQ(history.back()["created_by"], "CMD [\"/srv/app/hello.txt\"]");
  EXPECT_TRUE(history.back()["empty_layer"].get<bool>());
}

TEST_F(Interop, SkopeoCopiesTheStoreTheLayoutAndTheArchive) {
  build_app();
  fs::path layout = dir() / "layout";
  fs::path archive = dir() / "app-oci.tar";
  ProcessResult r = kiln({"build", "-t", "app:1", "-o", "type=oci,dest=" + layout.string(), "-o",
                          "type=oci,dest=" + archive.string(), app_context().string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const std::string& ref : {"oci:" + store() + ":app:1", "oci:" + layout.string() + ":app:1",
                                 "oci-archive:" + archive.string() + ":app:1"}) {
    ProcessResult copy = tool({"skopeo", "copy", ref, "oci:" + (dir() / "copied").string() + ":x"});
    EXPECT_EQ(copy.exit_code, 0) << ref << ": " << copy.err;
    ProcessResult inspect = tool({"skopeo", "inspect", ref});
    EXPECT_EQ(inspect.exit_code, 0) << ref << ": " << inspect.err;
  }
}

TEST_F(Interop, UmociUnpacksTheFilesystem) {
  build_app();
  fs::path layout = dir() / "umoci-layout";
  ASSERT_EQ(kiln({"save", "--format", "oci-dir", "-o", layout.string(), "app:1"}).exit_code, 0);
  fs::path bundle = dir() / "bundle";
  ProcessResult r = tool(
      {"umoci", "unpack", "--rootless", "--image", layout.string() + ":app:1", bundle.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  fs::path rootfs = bundle / "rootfs";
  EXPECT_EQ(read(rootfs / "srv/app/hello.txt"), "hello from a COPYed file\n");
  EXPECT_EQ(read(rootfs / "etc/app.conf"), "version=1.2.3\n");
  EXPECT_EQ(read(rootfs / "opt/files/a.txt"), "a\n");  // ADD extracted the local archive
  EXPECT_EQ(read(rootfs / "opt/files/sub/b.txt"), "b\n");
  EXPECT_FALSE(fs::exists(rootfs / "srv/app/secret.key"));
  EXPECT_TRUE((fs::status(rootfs / "usr/local/bin/run").permissions() & fs::perms::owner_exec) !=
              fs::perms::none);
}

TEST_F(Interop, PodmanLoadsTheDockerArchiveAndRunsIt) {
  build_app();
  fs::path archive = dir() / "app-docker.tar";
  ProcessResult b = kiln({"build", "-t", "app:1", "-o", "type=docker,dest=" + archive.string(),
                          app_context().string()});
  ASSERT_EQ(b.exit_code, 0) << b.err;
  std::vector<std::string> podman = {"podman",
                                     "--root",
                                     (dir() / "podman/root").string(),
                                     "--runroot",
                                     (dir() / "podman/run").string(),
                                     "--storage-driver",
                                     "vfs"};
  auto with = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = podman;
    argv.insert(argv.end(), args.begin(), args.end());
    return tool(argv);
  };
  ProcessResult load = with({"load", "-i", archive.string()});
  ASSERT_EQ(load.exit_code, 0) << load.err;
  ProcessResult run = with({"run", "--rm", "--network", "none", "app:1"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, "hello from a COPYed file\n");
  ProcessResult owner =
      with({"run", "--rm", "--network", "none", "--entrypoint", "/bin/busybox", "app:1", "stat",
            "-c", "%U:%G %a", "/srv/app/hello.txt", "/usr/local/bin/run"});
  EXPECT_EQ(owner.out, "nobody:nogroup 644\nroot:root 755\n") << owner.err;
}

TEST_F(Interop, SameSourceDateEpochGivesTheSameDigest) {
  build_app();
  auto digest = [&](const std::string& epoch) {
    ProcessResult r = kiln({"build", "-t", "repro:1", app_context().string()}, {epoch});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  };
  std::string first = digest(kEpoch);
  EXPECT_EQ(digest(kEpoch), first);
  EXPECT_NE(digest("SOURCE_DATE_EPOCH=1600000000"), first);
}

TEST_F(Interop, OnbuildTriggersRunInTheChildBuild) {
  build_app();
  fs::path ctx = dir() / "child";
  write(ctx / "Containerfile", "FROM app:1\nUSER root\n");
  write(ctx / "note.txt", "from the child context\n");
  fs::path out = dir() / "child-fs";
  ProcessResult r =
      kiln({"build", "-t", "child:1", "-o", "type=local,dest=" + out.string(), ctx.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read(out / "onbuild/note.txt"), "from the child context\n");
  nlohmann::json config = inspect_config("child:1");
  EXPECT_TRUE(!config["config"].contains("OnBuild") || config["config"]["OnBuild"].empty());
}

TEST_F(Interop, BaseImagesFromLayoutsArchivesAndStages) {
  build_app();
  std::string layout = (dir() / "base-layout").string();
  std::string oci_tar = (dir() / "base-oci.tar").string();
  std::string docker_tar = (dir() / "base-docker.tar").string();
  ASSERT_EQ(kiln({"save", "--format", "oci-dir", "-o", layout, "busybox:latest"}).exit_code, 0);
  ASSERT_EQ(kiln({"save", "--format", "oci-archive", "-o", oci_tar, "busybox:latest"}).exit_code,
            0);
  ASSERT_EQ(
      kiln({"save", "--format", "docker-archive", "-o", docker_tar, "busybox:latest"}).exit_code,
      0);
  fs::path ctx = dir() / "bases";
  write(ctx / "Containerfile", "FROM oci:" + layout + ":busybox:latest AS a\n" +
                                   "COPY a.txt /a.txt\n" + "FROM oci-archive:" + oci_tar +
                                   " AS b\n" + "COPY --from=a /a.txt /from-a.txt\n" +
                                   "FROM docker-archive:" + docker_tar + "\n" +
                                   "COPY --from=b /from-a.txt /etc/passwd /copied/\n" +
                                   "COPY --from=app:1 /srv/app/hello.txt /copied/\n");
  write(ctx / "a.txt", "stage a\n");
  fs::path out = dir() / "bases-fs";
  ProcessResult r = kiln({"build", "-o", "type=local,dest=" + out.string(), ctx.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read(out / "copied/from-a.txt"), "stage a\n");
  EXPECT_THAT(read(out / "copied/passwd"), HasSubstr("root:x:0:0"));
  EXPECT_EQ(read(out / "copied/hello.txt"), "hello from a COPYed file\n");
  EXPECT_TRUE(fs::exists(out / "bin/busybox"));
}

TEST_F(Interop, RootfsTarOutput) {
  build_app();
  fs::path tar = dir() / "rootfs.tar";
  ProcessResult r = kiln({"build", "-o", "type=tar,dest=" + tar.string(), app_context().string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ProcessResult list = run_program({"tar", "tvf", tar.string()});
  EXPECT_THAT(list.out, HasSubstr("srv/app/hello.txt"));
  EXPECT_THAT(list.out, HasSubstr("bin/busybox"));
}

TEST_F(Interop, BuildErrorsNameTheLineAndLeaveNoTag) {
  fs::path ctx = dir() / "broken";
  write(ctx / "Containerfile", "FROM busybox:latest\nCOPY --chown=nosuchuser x /x\n");
  write(ctx / "x", "x\n");
  ProcessResult r = kiln({"build", "-t", "broken:1", ctx.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("Containerfile:2:1: COPY: unable to find user nosuchuser"));
  EXPECT_NE(kiln({"inspect", "broken:1"}).exit_code, 0);

  write(ctx / "Containerfile", "FROM busybox:latest\nCOPY missing.txt /\n");
  r = kiln({"build", ctx.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(
      r.err,
      HasSubstr("Containerfile:2:1: COPY: source \"missing.txt\" in the build context not found"));

  write(ctx / "Containerfile", "FROM nosuchimage:1\n");
  r = kiln({"build", ctx.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err,
              HasSubstr("Containerfile:1:6: image \"nosuchimage:1\" is not in the local store"));
}

TEST_F(Interop, StoreCommands) {
  build_app();
  ProcessResult images = kiln({"images", "--format", "json"});
  ASSERT_EQ(images.exit_code, 0) << images.err;
  EXPECT_THAT(images.out, HasSubstr("\"name\": \"app:1\""));
  ASSERT_EQ(kiln({"tag", "app:1", "app:alias", "registry.example.com/team/app:2"}).exit_code, 0);
  ProcessResult inspect = kiln({"inspect", "registry.example.com/team/app:2"});
  ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
  nlohmann::json j = nlohmann::json::parse(inspect.out);
  EXPECT_EQ(j["Config"]["config"]["User"], "nobody");
  std::string id = j["Id"];
  EXPECT_EQ(kiln({"inspect", id.substr(7, 12)}).exit_code, 0);
  EXPECT_EQ(kiln({"rmi", "app:alias"}).exit_code, 0);
  EXPECT_NE(kiln({"inspect", "app:alias"}).exit_code, 0);
  EXPECT_EQ(kiln({"inspect", "app:1"}).exit_code, 0);
  ProcessResult ambiguous_rmi = kiln({"rmi", id});
  EXPECT_EQ(ambiguous_rmi.exit_code, 1);
  EXPECT_THAT(ambiguous_rmi.err, HasSubstr("several names"));
}

}  // namespace
}  // namespace kiln::test
