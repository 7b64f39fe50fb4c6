// kiln's images as other OCI tools see them: skopeo, umoci and podman read what kiln writes,
// config fields land where docker/buildah put them, and builds are reproducible.
//
// Needs skopeo, umoci, podman, runc, tar and Debian's busybox-static (scripts/install-deps.sh
// installs them). Every test uses its own store (KILN_ROOT) and podman storage under a
// temporary directory; nothing on the host is changed.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "kiln/base/fd.hpp"
#include "process.hpp"
#include "test_files.hpp"

namespace kiln::test {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr const char* kEpoch = "SOURCE_DATE_EPOCH=1700000000";

std::string read(const fs::path& path) {
  return read_or(path, "");
}

class Interop : public ::testing::Test {
 public:
  static void SetUpTestSuite() {
    work_ = new TempDir({}, "kiln-interop-");
    for (const char* tool : {"skopeo", "umoci", "podman", "runc", "tar"}) {
      ProcessResult r = run_program({"sh", "-c", std::string("command -v ") + tool});
      ASSERT_EQ(r.exit_code, 0) << tool << " is missing: run scripts/install-deps.sh";
    }
    ASSERT_TRUE(fs::exists("/bin/busybox")) << "busybox-static is missing";
    // The base image every test builds on, made offline from Debian's busybox-static.
    fs::path ctx = dir() / "busybox";
    ProcessResult prepared =
        run_program({std::string(KILN_SOURCE_DIR) + "/examples/busybox/prepare.sh", ctx.string()});
    ASSERT_EQ(prepared.exit_code, 0) << prepared.err;
    ProcessResult r = kiln({"build", "-t", "busybox:latest", ctx.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  static void TearDownTestSuite() {
    delete work_;
    work_ = nullptr;
  }

  static fs::path dir() { return work_->path(); }
  static std::string store() { return (dir() / "store").string(); }
  static ProcessResult kiln_public(const std::vector<std::string>& args) { return kiln(args); }
  static std::string store_public() { return store(); }
  static ProcessResult tool_public(const std::vector<std::string>& argv) { return tool(argv); }
  static ProcessResult kiln(const std::vector<std::string>& args,
                            std::vector<std::string> env = {kEpoch}) {
    env.push_back("KILN_ROOT=" + store());
    return run_kiln(args, {}, {}, env);
  }
  static ProcessResult tool(const std::vector<std::string>& argv) {
    return run_program(argv, {}, {}, {"CONTAINERS_CONF=" + podman_conf()});
  }
  // podman with its own storage under the test directory (`name` picks the subdirectory).
  static ProcessResult podman(const std::string& name, const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"podman",
                                     "--root",
                                     (dir() / name / "root").string(),
                                     "--runroot",
                                     (dir() / name / "run").string(),
                                     "--storage-driver",
                                     "vfs"};
    argv.insert(argv.end(), args.begin(), args.end());
    return tool(argv);
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
  EXPECT_THAT(c["Env"],
              ElementsAre("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                          "APP_HOME=/srv/app", "GREETING=hello world"));
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

// buildx's --load: the image ends up in docker's store, or podman's when there is no docker
// daemon (as here: docker's client may be installed, its daemon is not running).
TEST_F(Interop, LoadPutsTheImageIntoPodman) {
  build_app();
  fs::path storage = dir() / "load-storage.conf";
  write(storage, "[storage]\ndriver = \"vfs\"\ngraphroot = \"" +
                     (dir() / "load" / "root").string() + "\"\nrunroot = \"" +
                     (dir() / "load" / "run").string() + "\"\n");
  ProcessResult b = kiln(
      {"build", "--load", "-t", "loaded:1", app_context().string()},
      {kEpoch, "CONTAINERS_CONF=" + podman_conf(), "CONTAINERS_STORAGE_CONF=" + storage.string(),
       "DOCKER_HOST=unix://" + (dir() / "no-docker.sock").string()});
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_THAT(b.err, HasSubstr("Loaded into podman"));
  ProcessResult images = podman("load", {"images", "--format", "{{.Repository}}:{{.Tag}}"});
  ASSERT_EQ(images.exit_code, 0) << images.err;
  EXPECT_THAT(images.out, HasSubstr("loaded:1"));
  ProcessResult run = podman("load", {"run", "--rm", "--network", "none", "loaded:1"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, "hello from a COPYed file\n");
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
  auto with = [&](const std::vector<std::string>& args) { return podman("podman", args); };
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
  write(ctx / "Containerfile", "FROM busybox:latest\nUSER nosuchuser\nRUN true\n");
  write(ctx / "x", "x\n");
  ProcessResult r = kiln({"build", "-t", "broken:1", ctx.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("Containerfile:3:1: RUN: unable to find user nosuchuser"));
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
              HasSubstr("Containerfile:1:6: image \"nosuchimage:1\" is not in the local store, "
                        "and pulling it failed: pulling manifest docker.io/library/nosuchimage:1"));
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

// --- RUN -----------------------------------------------------------------------------------

// Builds `containerfile` (in its own context) into a filesystem directory; returns the result.
ProcessResult build_fs(const fs::path& ctx, const std::string& containerfile, const fs::path& out,
                       std::vector<std::string> extra = {}) {
  write(ctx / "Containerfile", containerfile);
  fs::remove_all(out);
  std::vector<std::string> args = {"build", "-o", "type=local,dest=" + out.string()};
  args.insert(args.end(), extra.begin(), extra.end());
  args.push_back(ctx.string());
  return Interop::kiln_public(args);
}

// RUN steps that create, change, chown and delete files, checked on the filesystem and in the
// last layer's tar (whiteouts), with the given snapshotter.
void check_run_changes(const fs::path& base, const std::string& snapshotter,
                       const std::vector<std::string>& more = {}) {
  auto dir = [&] { return base; };
  auto store = [] { return Interop::store_public(); };
  auto tool = [](const std::vector<std::string>& argv) { return Interop::tool_public(argv); };

  fs::path ctx = dir() / ("run-changes-" + snapshotter);
  fs::path out = dir() / ("run-changes-fs-" + snapshotter);
  ProcessResult r = build_fs(
      ctx,
      "FROM busybox:latest\n"
      "RUN mkdir -p /data/keep /data/gone /data/opq && echo one > "
      "/data/keep/f && echo x > /data/gone/x && echo old > /data/opq/old && "
      "echo motd > /etc/motd\n"
      "RUN rm -rf /data/gone /data/opq && mkdir /data/opq && echo new > "
      "/data/opq/new && echo two >> /data/keep/f && rm /etc/motd && chown "
      "1000:1000 /data/keep/f\n",
      out, [&] {
        std::vector<std::string> args = {"-t", "run-changes:1", "--snapshotter", snapshotter};
        args.insert(args.end(), more.begin(), more.end());
        return args;
      }());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read(out / "data/keep/f"), "one\ntwo\n");
  EXPECT_FALSE(fs::exists(out / "data/gone"));
  EXPECT_FALSE(fs::exists(out / "etc/motd"));
  EXPECT_FALSE(fs::exists(out / "data/opq/old"));
  EXPECT_EQ(read(out / "data/opq/new"), "new\n");
  struct stat st {};
  ASSERT_EQ(::lstat((out / "data/keep/f").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_gid, 1000u);
  // The last layer holds the deletions as whiteouts and nothing of the sandbox's mountpoints.
  fs::path copy = dir() / ("run-changes-dir-" + snapshotter);
  ASSERT_EQ(tool({"skopeo", "copy", "oci:" + store() + ":run-changes:1", "dir:" + copy.string()})
                .exit_code,
            0);
  nlohmann::json manifest = nlohmann::json::parse(read(copy / "manifest.json"));
  std::string last = manifest["layers"].back()["digest"].get<std::string>().substr(7);
  ProcessResult list = run_program({"tar", "tvzf", (copy / last).string()});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("data/.wh.gone"));
  EXPECT_THAT(list.out, HasSubstr("etc/.wh.motd"));
  EXPECT_THAT(list.out, HasSubstr("1000/1000"));
  EXPECT_THAT(list.out, ::testing::Not(HasSubstr("etc/hosts")));
  EXPECT_THAT(list.out, ::testing::Not(HasSubstr("etc/resolv.conf")));
}

TEST_F(Interop, RunChangesFilesAndTheLayersCarryWhiteoutsWithOverlay) {
  check_run_changes(dir(), "overlay");
}

TEST_F(Interop, RunChangesFilesAndTheLayersCarryWhiteoutsWithCopy) {
  check_run_changes(dir(), "copy");
}

TEST_F(Interop, RunFailureShowsExitCodeAndLastOutput) {
  fs::path ctx = dir() / "run-fails";
  ProcessResult r =
      build_fs(ctx, "FROM busybox:latest\nRUN echo compiling; echo oops >&2; exit 3\n",
               dir() / "run-fails-fs");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err,
              HasSubstr((ctx / "Containerfile").string() +
                        ":2:1: RUN: process \"/bin/sh -c echo compiling; echo oops >&2; exit 3\" "
                        "did not complete successfully: exit code: 3"));
  EXPECT_THAT(r.err, HasSubstr("  compiling"));
  EXPECT_THAT(r.err, HasSubstr("  oops"));
}

TEST_F(Interop, RunFormsUserWorkdirAndEnvironment) {
  fs::path ctx = dir() / "run-forms";
  fs::path out = dir() / "run-forms-fs";
  ProcessResult r =
      build_fs(ctx,
               "FROM busybox:latest\n"
               "ARG FROM_ARG=argvalue\n"
               "ENV FROM_ENV=envvalue\n"
               "RUN mkdir -m 1777 /out\n"
               "RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo exec > /out/exec\"]\n"
               "RUN <<EOF\necho heredoc > /out/heredoc\nEOF\n"
               "RUN <<EOF\n#!/bin/busybox sh\necho shebang > /out/shebang\nEOF\n"
               "RUN cat <<A > /out/two && cat <<B >> /out/two\nfirst\nA\nsecond\nB\n"
               "WORKDIR /out\n"
               "USER nobody\n"
               "RUN id -u > uid && pwd > pwd && echo \"$FROM_ARG $FROM_ENV\" > vars\n",
               out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read(out / "out/exec"), "exec\n");
  EXPECT_EQ(read(out / "out/heredoc"), "heredoc\n");
  EXPECT_EQ(read(out / "out/shebang"), "shebang\n");
  EXPECT_EQ(read(out / "out/two"), "first\nsecond\n");
  EXPECT_EQ(read(out / "out/uid"), "65534\n");
  EXPECT_EQ(read(out / "out/pwd"), "/out\n");
  EXPECT_EQ(read(out / "out/vars"), "argvalue envvalue\n");
}

// What a RUN sees and what WORKDIR and FROM <stage> do, as under docker build (BuildKit): HOME
// from passwd, the primary group among the groups, no no_new_privs, WORKDIR made as the USER, a
// removed working directory made again, and a stage's ONBUILD triggers run in a stage FROM it.
TEST_F(Interop, RunWorkdirAndStageTriggersFollowBuildKit) {
  fs::path ctx = dir() / "buildkit-run";
  fs::path out = dir() / "buildkit-run-fs";
  ProcessResult r = build_fs(ctx,
                             "FROM busybox:latest AS base\n"
                             "ONBUILD RUN echo from-stage > /stage-triggered\n"
                             "FROM base\n"
                             "RUN mkdir -m 1777 /out\n"
                             "RUN echo \"$HOME\" > /out/home-root && id -G > /out/groups-root && "
                             "grep NoNewPrivs /proc/self/status > /out/nnp\n"
                             "USER nobody\n"
                             "WORKDIR /work/deep\n"
                             "RUN echo \"$HOME\" > /out/home-nobody && id -G > /out/groups-nobody\n"
                             "USER root\n"
                             "WORKDIR /gone\n"
                             "RUN rmdir /gone\n"
                             "RUN pwd > /out/pwd\n",
                             out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read(out / "stage-triggered"), "from-stage\n");
  EXPECT_EQ(read(out / "out/home-root"), "/root\n");
  EXPECT_EQ(read(out / "out/groups-root"), "0\n");
  EXPECT_EQ(read(out / "out/nnp"), "NoNewPrivs:\t0\n");
  EXPECT_EQ(read(out / "out/home-nobody"), "/nonexistent\n");
  EXPECT_EQ(read(out / "out/groups-nobody"), "65534\n");
  EXPECT_EQ(read(out / "out/pwd"), "/gone\n");
  for (const char* created : {"work", "work/deep"}) {
    struct stat st {};
    ASSERT_EQ(::stat((out / created).c_str(), &st), 0) << created;
    EXPECT_EQ(st.st_uid, 65534u) << created;
    EXPECT_EQ(st.st_gid, 65534u) << created;
    EXPECT_EQ(st.st_mode & 07777, 0755u) << created;
  }
  EXPECT_TRUE(fs::is_directory(out / "gone"));
}

// podman's --dns, --dns-search, --dns-option and --no-hosts shape what RUN steps see.
TEST_F(Interop, DnsAndHostsFlagsReachRunSteps) {
  fs::path ctx = dir() / "dns";
  fs::path out = dir() / "dns-fs";
  const std::string containerfile =
      "FROM busybox:latest\n"
      "RUN (cat /etc/resolv.conf 2>/dev/null || echo absent) > /r && "
      "(cat /etc/hosts 2>/dev/null || echo none) > /h\n";
  ProcessResult r = build_fs(ctx, containerfile, out,
                             {"--dns", "192.0.2.1", "--dns-search", "example.com", "--dns-option",
                              "ndots:2", "--no-hosts"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read(out / "r"), "nameserver 192.0.2.1\nsearch example.com\noptions ndots:2\n");
  EXPECT_EQ(read(out / "h"), "none\n");
  ProcessResult none = build_fs(ctx, containerfile, out, {"--dns", "none", "--no-cache"});
  ASSERT_EQ(none.exit_code, 0) << none.err;
  EXPECT_EQ(read(out / "r"), "absent\n");
  EXPECT_THAT(read(out / "h"), HasSubstr("buildkitsandbox"));
  ProcessResult bad = build_fs(ctx, containerfile, out, {"--dns", "not-an-ip"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("--dns \"not-an-ip\": expected an IP address or none"));
}

// podman's --cap-add, --cap-drop, --security-opt, --ulimit and --shm-size shape RUN's process.
TEST_F(Interop, ProcessFlagsReachRunSteps) {
  fs::path ctx = dir() / "process-flags";
  fs::path out = dir() / "process-flags-fs";
  const std::string containerfile =
      "FROM busybox:latest\n"
      "RUN grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status > /status && "
      "ulimit -n > /nofile && ulimit -Hn >> /nofile && "
      "df -k /dev/shm | tail -1 | awk '{print $2}' > /shm\n";
  ProcessResult r =
      build_fs(ctx, containerfile, out,
               {"--cap-add", "net_admin", "--cap-drop", "CAP_CHOWN,MKNOD", "--security-opt",
                "no-new-privileges", "--security-opt", "seccomp=unconfined", "--ulimit",
                "nofile=512:1024", "--shm-size", "8m"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The default 0xa80425fb, less CHOWN (bit 0) and MKNOD (bit 27), plus NET_ADMIN (bit 12).
  EXPECT_EQ(read(out / "status"), "CapEff:\t00000000a00435fa\nNoNewPrivs:\t1\nSeccomp:\t0\n");
  EXPECT_EQ(read(out / "nofile"), "512\n1024\n");
  EXPECT_EQ(read(out / "shm"), "8192\n");
  for (const std::vector<std::string>& bad : std::vector<std::vector<std::string>>{
           {"--security-opt", "seccomp=/etc/profile.json"},
           {"--ulimit", "files=1"},
           {"--ulimit", "nofile=9:1"},
           {"--shm-size", "lots"},
           {"--cap-add", "NET ADMIN"},
       }) {
    ProcessResult refused = build_fs(ctx, containerfile, out, bad);
    EXPECT_EQ(refused.exit_code, 2) << bad[1];
    EXPECT_THAT(refused.err, HasSubstr(bad[0])) << refused.err;
  }
  ProcessResult unknown = build_fs(ctx, containerfile, out, {"--cap-add", "FLY", "--no-cache"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("unknown capability \"FLY\""));
}

// buildah's -v/--volume binds host directories into RUN steps, outside the layers; --logfile
// takes the progress.
TEST_F(Interop, VolumesAndLogfile) {
  fs::path ctx = dir() / "volumes";
  fs::path out = dir() / "volumes-fs";
  fs::path host = dir() / "volume-host";
  fs::create_directories(host);
  write(host / "in.txt", "from the host\n");
  fs::path log = dir() / "volumes.log";
  ProcessResult r = build_fs(ctx,
                             "FROM busybox:latest\n"
                             "RUN cat /vol/in.txt > /copied && echo written > /vol/out.txt && "
                             "(touch /ro/x 2>/dev/null && echo writable || echo read-only) > /ro-"
                             "state\n",
                             out,
                             {"-v", host.string() + ":/vol", "--volume", host.string() + ":/ro:ro",
                              "--logfile", log.string(), "--progress", "plain"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read(out / "copied"), "from the host\n");
  EXPECT_EQ(read(out / "ro-state"), "read-only\n");
  EXPECT_EQ(read(host / "out.txt"), "written\n");
  EXPECT_FALSE(fs::exists(out / "vol/out.txt"));
  EXPECT_FALSE(fs::exists(out / "vol"));
  EXPECT_THAT(read(log), HasSubstr("RUN cat /vol/in.txt"));
  EXPECT_THAT(r.err, ::testing::Not(HasSubstr("RUN cat /vol/in.txt")));
  for (const std::vector<std::string>& bad : std::vector<std::vector<std::string>>{
           {"--volume", "/nonexistent/kiln:/x"},
           {"--volume", host.string() + ":relative"},
           {"--volume", host.string() + ":/x:shared"},
           {"--retry-delay", "soon"},
       }) {
    ProcessResult refused = build_fs(ctx, "FROM busybox:latest\n", out, bad);
    EXPECT_EQ(refused.exit_code, 2) << bad[1];
    EXPECT_THAT(refused.err, HasSubstr(bad[0])) << refused.err;
  }
}

// podman's --device binds a host device into RUN's /dev (never into a layer); --http-proxy
// passes the caller's proxy variables; --isolation chroot is refused, naming why.
TEST_F(Interop, DevicesProxiesAndIsolation) {
  fs::path ctx = dir() / "devices";
  fs::path out = dir() / "devices-fs";
  ::setenv("http_proxy", "http://proxy.invalid:3128", 1);
  ProcessResult r = build_fs(ctx,
                             "FROM busybox:latest\n"
                             "RUN (test -c /dev/kiln-null && echo device || echo none) > /d && "
                             "echo \"$http_proxy\" > /p\n",
                             out, {"--device", "/dev/null:/dev/kiln-null:rw", "--http-proxy"});
  ::unsetenv("http_proxy");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read(out / "d"), "device\n");
  EXPECT_EQ(read(out / "p"), "http://proxy.invalid:3128\n");
  EXPECT_FALSE(fs::exists(fs::symlink_status(out / "dev/kiln-null")));
  for (const std::vector<std::string>& bad : std::vector<std::vector<std::string>>{
           {"--device", "/etc/hostname"},
           {"--device", "/dev/null:/dev/n:rwx"},
           {"--isolation", "vm"},
           {"--userns", "container:abc"},
       }) {
    ProcessResult refused = build_fs(ctx, "FROM busybox:latest\n", out, bad);
    EXPECT_EQ(refused.exit_code, 2) << bad[1];
    EXPECT_THAT(refused.err, HasSubstr(bad[0])) << refused.err;
  }
}

// buildah's --squash (the build's layers as one, over the base's) and --squash-all (one layer in
// all): the same filesystem, deletions of base files included, in fewer layers.
TEST_F(Interop, SquashAndSquashAll) {
  fs::path ctx = dir() / "squash";
  fs::path out = dir() / "squash-fs";
  const std::string containerfile =
      "FROM busybox:latest\nRUN echo one > /one\nRUN echo two > /two && rm /bin/true\n"
      "RUN rm /one\n";
  size_t base_layers =
      nlohmann::json::parse(kiln({"inspect", "busybox:latest"}).out)["Manifest"]["layers"].size();
  for (const char* flag : {"--squash", "--squash-all"}) {
    std::string tag = std::string("squashed") + flag + ":1";
    ProcessResult r = build_fs(ctx, containerfile, out, {flag, "-t", tag});
    ASSERT_EQ(r.exit_code, 0) << flag << ": " << r.err;
    EXPECT_EQ(read(out / "two"), "two\n") << flag;
    EXPECT_FALSE(fs::exists(out / "one")) << flag;
    EXPECT_FALSE(fs::exists(fs::symlink_status(out / "bin/true"))) << flag;
    EXPECT_TRUE(fs::exists(out / "bin/busybox")) << flag;
    nlohmann::json image = nlohmann::json::parse(kiln({"inspect", tag}).out);
    size_t layers = image["Manifest"]["layers"].size();
    EXPECT_EQ(layers, std::string(flag) == "--squash" ? base_layers + 1 : 1u) << flag;
    size_t with_layer = 0;
    for (const auto& h : image["Config"]["history"])
      with_layer += h.value("empty_layer", false) ? 0 : 1;
    EXPECT_EQ(with_layer, layers) << flag;
    // Its layers hold that tree: an image FROM it, unpacked from them, sees the same.
    fs::path from = dir() / ("squash-from" + std::string(flag));
    ProcessResult child =
        build_fs(dir() / ("squash-child" + std::string(flag)), "FROM " + tag + "\n", from);
    ASSERT_EQ(child.exit_code, 0) << child.err;
    EXPECT_EQ(read(from / "two"), "two\n") << flag;
    EXPECT_FALSE(fs::exists(from / "one")) << flag;
    EXPECT_FALSE(fs::exists(fs::symlink_status(from / "bin/true"))) << flag;
    EXPECT_TRUE(fs::exists(from / "bin/busybox")) << flag;
  }
}

TEST_F(Interop, CacheMountsPersistAndStayOutOfTheImage) {
  fs::path ctx = dir() / "run-cache";
  ProcessResult first = build_fs(
      ctx, "FROM busybox:latest\nRUN --mount=type=cache,target=/cache echo kept > /cache/x\n",
      dir() / "run-cache-1");
  ASSERT_EQ(first.exit_code, 0) << first.err;
  fs::path out = dir() / "run-cache-2";
  ProcessResult second = build_fs(
      ctx,
      "FROM busybox:latest\nRUN --mount=type=cache,target=/cache,sharing=locked cat /cache/x > "
      "/seen\n",
      out);
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(read(out / "seen"), "kept\n");
  EXPECT_FALSE(fs::exists(out / "cache/x"));
}

TEST_F(Interop, SecretsAreReadableButNeverStored) {
  fs::path ctx = dir() / "run-secret";
  write(dir() / "token.txt", "s3cr3t-value");
  fs::path out = dir() / "run-secret-fs";
  ProcessResult r = build_fs(
      ctx,
      // The command never spells the value: history must not contain it either.
      "FROM busybox:latest\nRUN --mount=type=secret,id=token md5sum < /run/secrets/token > /ok\n"
      "RUN --mount=type=secret,id=token,target=/etc/token,required=true cat /etc/token | wc -c > "
      "/len\n"
      // env=: the value in the environment only (BuildKit), no file unless a target is given.
      "RUN --mount=type=secret,id=token,env=TOKEN sh -c 'echo -n $TOKEN | md5sum > /env; "
      "test ! -e /run/secrets/token'\n",
      out, {"--secret", "id=token,src=" + (dir() / "token.txt").string(), "-t", "secret:1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read(out / "ok"), "e74a7345b906b2dd50c8e026a10bc02f  -\n");
  EXPECT_EQ(read(out / "len"), "12\n");
  EXPECT_EQ(read(out / "env"), "e74a7345b906b2dd50c8e026a10bc02f  -\n");
  EXPECT_FALSE(fs::exists(out / "run/secrets/token"));
  EXPECT_FALSE(fs::exists(out / "etc/token"));
  fs::path copy = dir() / "secret-dir";
  ASSERT_EQ(
      tool({"skopeo", "copy", "oci:" + store() + ":secret:1", "dir:" + copy.string()}).exit_code,
      0);
  for (const auto& entry : fs::directory_iterator(copy)) {
    std::string name = entry.path().filename().string();
    ProcessResult content = run_program(
        {"sh", "-c", "zcat -f '" + entry.path().string() + "' | grep -c s3cr3t || true"});
    EXPECT_EQ(content.out, "0\n") << name << " contains the secret";
  }
  ProcessResult missing =
      build_fs(ctx, "FROM busybox:latest\nRUN --mount=type=secret,id=nope,required=true true\n",
               dir() / "run-secret-missing");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("secret \"nope\" is required"));
}

// A build stopped by SIGTERM or SIGINT while a step with a secret runs removes the secret's
// plaintext copy (and every scratch directory) before it dies; nothing of the step is left
// running.
TEST_F(Interop, AStoppedBuildLeavesNoSecretBehind) {
  fs::path ctx = dir() / "stopped-secret";
  write(ctx / "Containerfile", "FROM busybox:latest\nRUN --mount=type=secret,id=tok sleep 47\n");
  write(dir() / "tok.txt", "stopped-secret-value");
  for (const char* signal : {"TERM", "INT"}) {
    // The shell starts kiln, waits until the secret file exists, then stops it.
    std::string script = "\"" + std::string(KILN_BINARY) +
                         "\" build --secret id=tok,src=" + (dir() / "tok.txt").string() + " " +
                         ctx.string() +
                         " >/dev/null 2>&1 & pid=$!; "
                         "for i in $(seq 100); do "
                         "  grep -rl stopped-secret-value " +
                         store() +
                         "/tmp >/dev/null 2>&1 && break; sleep 0.1; done; "
                         "kill -" +
                         signal + " $pid; wait $pid; echo $?";
    ProcessResult r =
        run_program({"sh", "-c", script}, {}, {}, {"KILN_ROOT=" + store(), std::string(kEpoch)});
    EXPECT_EQ(r.out, std::string(signal) == "TERM" ? "143\n" : "130\n") << r.err;
    ProcessResult left = run_program(
        {"sh", "-c", "grep -rl stopped-secret-value " + store() + "/tmp 2>/dev/null | wc -l"});
    EXPECT_EQ(left.out, "0\n") << signal;
    ProcessResult sleeping =
        run_program({"sh", "-c", "pgrep -x 'sleep' -a | grep -c ' 47$' || true"});
    EXPECT_EQ(sleeping.out, "0\n") << signal;
  }
}

// A one-shot TCP server on 127.0.0.1: answers each connection with a line, stops by itself.
class LoopbackServer {
 public:
  LoopbackServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    ::listen(fd_, 8);
    thread_ = std::thread([this] {
      for (int served = 0; served < 8 && !stop_; ++served) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 200) <= 0) {
          --served;
          continue;
        }
        int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0)
          continue;
        const char reply[] = "HTTP/1.0 200 OK\r\nContent-Length: 8\r\n\r\nreached\n";
        (void)!::write(c, reply, sizeof reply - 1);
        ::close(c);
      }
    });
  }
  ~LoopbackServer() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// The default network is a namespace of the step's own (through pasta or slirp4netns):
// the host's loopback is unreachable from it, as from --network=none; RUN --network=host, with
// the network.host entitlement, reaches it (tests/interop/isolation_test.cpp has the rest).
TEST_F(Interop, NetworkNoneCannotReachTheHost) {
  LoopbackServer server;
  std::string url = "http://127.0.0.1:" + std::to_string(server.port()) + "/";
  fs::path ctx = dir() / "run-net";
  fs::path out = dir() / "run-net-fs";
  ProcessResult r = build_fs(ctx,
                             "FROM busybox:latest\n"
                             "RUN timeout 5 wget -q -O /default " +
                                 url +
                                 " || echo isolated > /default\n"
                                 "RUN --network=none timeout 5 wget -q -O /none " +
                                 url +
                                 " || echo blocked > /none\n"
                                 "RUN --network=host timeout 5 wget -q -O /host " +
                                 url + " || echo failed > /host\n",
                             out, {"--allow", "network.host"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read(out / "default"), "isolated\n");
  EXPECT_EQ(read(out / "none"), "blocked\n");
  EXPECT_EQ(read(out / "host"), "reached\n");
}

TEST_F(Interop, RunIsIsolated) {
  write(dir() / "host-sentinel", "host only\n");
  fs::path ctx = dir() / "run-isolated";
  fs::path out = dir() / "run-isolated-fs";
  ProcessResult r = build_fs(
      ctx,
      "FROM busybox:latest\n"
      "RUN mkdir /r /mnt && (ls /proc | grep -c '^[0-9]' > /r/procs) && "
      "(mount -t tmpfs none /mnt 2>/dev/null && echo mounted > /r/mount || echo denied > /r/mount) "
      "&& "
      "(date -s 2001-01-01 2>&1 | grep -q \"can't set\" && echo denied > /r/clock || echo changed "
      "> /r/clock) && "
      "(test -e " +
          (dir() / "host-sentinel").string() +
          " && echo visible > /r/host || echo hidden > /r/host) && "
          "(echo x > /dev/null && echo ok > /r/devnull) && "
          "(touch /sys/kiln 2>/dev/null && echo writable > /r/sys || echo readonly > /r/sys) && "
          "(grep -q buildkitsandbox /etc/hosts && echo yes > /r/hosts || echo no > /r/hosts)\n",
      out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_LE(std::stoi(read(out / "r/procs")), 4);
  EXPECT_EQ(read(out / "r/mount"), "denied\n");
  EXPECT_EQ(read(out / "r/clock"), "denied\n");
  EXPECT_EQ(read(out / "r/host"), "hidden\n");
  EXPECT_EQ(read(out / "r/devnull"), "ok\n");
  EXPECT_EQ(read(out / "r/sys"), "readonly\n");
  EXPECT_EQ(read(out / "r/hosts"), "yes\n");
}

TEST_F(Interop, InsecureNeedsTheEntitlement) {
  fs::path ctx = dir() / "run-insecure";
  std::string file =
      "FROM busybox:latest\nRUN --security=insecure mkdir /mnt && mount -t tmpfs none /mnt && echo "
      "ok > /ok\n";
  ProcessResult refused = build_fs(ctx, file, dir() / "run-insecure-1");
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr("--allow security.insecure"));
  ProcessResult allowed =
      build_fs(ctx, file, dir() / "run-insecure-2", {"--allow", "security.insecure"});
  EXPECT_EQ(allowed.exit_code, 0) << allowed.err;
}

TEST_F(Interop, MultiStageWithRunAndOnbuildRun) {
  fs::path ctx = dir() / "run-multi";
  write(ctx / "Containerfile.base",
        "FROM busybox:latest\nONBUILD RUN echo triggered > /triggered\n");
  ProcessResult base = kiln(
      {"build", "-t", "onbuild-run:1", "-f", (ctx / "Containerfile.base").string(), ctx.string()});
  ASSERT_EQ(base.exit_code, 0) << base.err;
  fs::path out = dir() / "run-multi-fs";
  ProcessResult r = build_fs(ctx,
                             "FROM onbuild-run:1 AS build\n"
                             "RUN mkdir /out && echo built > /out/artifact\n"
                             "FROM scratch\n"
                             "COPY --from=build /out/artifact /triggered /\n",
                             out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read(out / "artifact"), "built\n");
  EXPECT_EQ(read(out / "triggered"), "triggered\n");
}

// The same build as an unprivileged user with /etc/subuid and /etc/subgid ranges: files chowned
// to 1000 inside are owned by 1000 in the layer, whatever host ids they had on disk.
TEST_F(Interop, RootlessBuildKeepsInContainerOwners) {
  if (::geteuid() != 0)
    GTEST_SKIP() << "creating the test user needs root";
  const std::string user = "kiln-rootless";
  if (run_program({"id", user}).exit_code != 0) {
    // A regular (non-system) user: Debian's useradd gives it subordinate id ranges.
    ProcessResult add = run_program({"useradd", "--create-home", "--shell", "/bin/sh", user});
    ASSERT_EQ(add.exit_code, 0) << add.err;
  }
  ProcessResult ranges =
      run_program({"sh", "-c", "grep -c '^" + user + ":' /etc/subuid /etc/subgid"});
  ASSERT_EQ(ranges.out, "/etc/subuid:1\n/etc/subgid:1\n") << "no subordinate ids for " << user;
  fs::path home = dir() / "rootless";
  ASSERT_EQ(run_program({std::string(KILN_SOURCE_DIR) + "/examples/busybox/prepare.sh",
                         (home / "ctx").string()})
                .exit_code,
            0);
  fs::permissions(dir(), fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  ASSERT_EQ(run_program({"chown", "-R", user, home.string()}).exit_code, 0);
  auto as_user = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {"runuser",
                                     "-u",
                                     user,
                                     "--",
                                     "env",
                                     "KILN_ROOT=" + (home / "store").string(),
                                     "HOME=" + home.string(),
                                     "TMPDIR=" + home.string(),
                                     kEpoch,
                                     KILN_BINARY};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_program(argv);
  };
  ProcessResult base = as_user({"build", "-t", "busybox:latest", (home / "ctx").string()});
  ASSERT_EQ(base.exit_code, 0) << base.err;
  write(home / "app/Containerfile",
        "FROM busybox:latest\nRUN mkdir /d && echo x > /d/f && chown 1000:1000 /d/f && rm "
        "/etc/group\n");
  ASSERT_EQ(run_program({"chown", "-R", user, (home / "app").string()}).exit_code, 0);
  fs::path layout = home / "layout";
  ProcessResult app = as_user({"build", "-t", "rootless:1", "-o",
                               "type=oci,dest=" + layout.string(), (home / "app").string()});
  ASSERT_EQ(app.exit_code, 0) << app.err;
  ProcessResult manifest =
      tool({"skopeo", "inspect", "--raw", "oci:" + layout.string() + ":rootless:1"});
  ASSERT_EQ(manifest.exit_code, 0) << manifest.err;
  std::string last =
      nlohmann::json::parse(manifest.out)["layers"].back()["digest"].get<std::string>().substr(7);
  ProcessResult list = run_program({"tar", "tvzf", (layout / "blobs/sha256" / last).string()});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("1000/1000"));
  EXPECT_THAT(list.out, HasSubstr("d/f"));
  EXPECT_THAT(list.out, HasSubstr("etc/.wh.group"));
  EXPECT_THAT(list.out, HasSubstr("0/0"));  // the directory made by root inside is root's

  // Cache mounts persist, secrets are readable and absent from the image, failures say why.
  write(home / "token", "rootless-secret");
  write(home / "more/Containerfile",
        "FROM busybox:latest\n"
        "RUN --mount=type=cache,target=/cache,uid=1000 echo cached > /cache/v && chown 1000 "
        "/cache/v\n"
        "RUN --mount=type=cache,target=/cache,uid=1000 cp /cache/v /seen\n"
        "RUN --mount=type=secret,id=t wc -c < /run/secrets/t > /secret-len\n");
  ASSERT_EQ(run_program({"chown", "-R", user, home.string()}).exit_code, 0);
  fs::path out = home / "more-fs";
  ProcessResult more = as_user({"build", "--secret", "id=t,src=" + (home / "token").string(), "-o",
                                "type=local,dest=" + out.string(), (home / "more").string()});
  ASSERT_EQ(more.exit_code, 0) << more.err;
  EXPECT_EQ(read(out / "seen"), "cached\n");
  EXPECT_EQ(read(out / "secret-len"), "15\n");
  EXPECT_FALSE(fs::exists(out / "run/secrets/t"));
  write(home / "fail/Containerfile", "FROM busybox:latest\nRUN echo nope; exit 7\n");
  ASSERT_EQ(run_program({"chown", "-R", user, (home / "fail").string()}).exit_code, 0);
  ProcessResult fail = as_user({"build", (home / "fail").string()});
  EXPECT_EQ(fail.exit_code, 1);
  EXPECT_THAT(fail.err, HasSubstr("exit code: 7"));
  EXPECT_THAT(fail.err, HasSubstr("  nope"));

  // kiln unshare: files owned by a subordinate id, which the user cannot remove outside.
  ProcessResult made = as_user({"unshare", "sh", "-c",
                                "mkdir -p \"$HOME/sub\" && touch \"$HOME/sub/f\" && chown -R "
                                "1000:1000 \"$HOME/sub\" && echo \"$KILN_UNSHARE\""});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  EXPECT_EQ(made.out, "1\n");
  struct stat st {};
  ASSERT_EQ(::stat((home / "sub/f").c_str(), &st), 0);
  ProcessResult uid = run_program({"id", "-u", user});
  EXPECT_NE(std::to_string(st.st_uid) + "\n", uid.out) << "the file is not a subordinate id's";
  std::vector<std::string> rm_outside = {
      "runuser", "-u", user, "--", "rm", "-rf", (home / "sub").string()};
  EXPECT_NE(run_program(rm_outside).exit_code, 0);
  ProcessResult removed = as_user({"unshare", "rm", "-rf", (home / "sub").string()});
  EXPECT_EQ(removed.exit_code, 0) << removed.err;
  EXPECT_FALSE(fs::exists(home / "sub"));
}

// The real multi-stage example: a toolchain stage from the host's Debian gcc packages compiles a
// static binary that a FROM scratch image ships; podman runs it.
TEST_F(Interop, CMultiStageExampleRunsUnderPodman) {
  fs::path ctx = dir() / "c-example";
  ProcessResult prepared = run_program(
      {std::string(KILN_SOURCE_DIR) + "/examples/c-multistage/prepare.sh", ctx.string()});
  ASSERT_EQ(prepared.exit_code, 0) << prepared.err;
  fs::path archive = dir() / "hello-c.tar";
  ProcessResult b = kiln(
      {"build", "-t", "hello-c:1", "-o", "type=docker,dest=" + archive.string(), ctx.string()});
  ASSERT_EQ(b.exit_code, 0) << b.err;
  auto with = [&](const std::vector<std::string>& args) { return podman("podman-c", args); };
  ProcessResult load = with({"load", "-i", archive.string()});
  ASSERT_EQ(load.exit_code, 0) << load.err;
  ProcessResult run = with({"run", "--rm", "--network", "none", "hello-c:1"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, "hello from a static C binary built by kiln\n");
  nlohmann::json config = inspect_config("hello-c:1");
  EXPECT_EQ(config["rootfs"]["diff_ids"].size(), 1u);  // only the binary
}

// The same RUN behaviour through an external OCI runtime (Debian's runc).
TEST_F(Interop, RuncBackendRunsTheSameSteps) {
  check_run_changes(dir() / "runc", "overlay", {"--runtime", "runc"});
  LoopbackServer server;
  std::string url = "http://127.0.0.1:" + std::to_string(server.port()) + "/";
  fs::path ctx = dir() / "runc-isolated";
  fs::path out = dir() / "runc-isolated-fs";
  ProcessResult r = build_fs(
      ctx,
      "FROM busybox:latest\n"
      "RUN mkdir /r /mnt && (mount -t tmpfs none /mnt 2>/dev/null && echo mounted > /r/mount || "
      "echo denied > /r/mount) && (ls /proc | grep -c '^[0-9]' > /r/procs)\n"
      "RUN --network=none timeout 5 wget -q -O /r/none " +
          url + " || echo blocked > /r/none\n",
      out, {"--runtime", "runc"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read(out / "r/mount"), "denied\n");
  EXPECT_LE(std::stoi(read(out / "r/procs")), 4);
  EXPECT_EQ(read(out / "r/none"), "blocked\n");
  ProcessResult missing = build_fs(ctx, "FROM busybox:latest\nRUN true\n", dir() / "runc-missing",
                                   {"--runtime", "/nonexistent/runtime"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("/nonexistent/runtime"));
}

// Debian's crun refuses hosts with hybrid cgroups: that must be a clear error, not a success.
TEST_F(Interop, CrunRunsOrSaysWhyNot) {
  if (run_program({"sh", "-c", "command -v crun"}).exit_code != 0)
    GTEST_SKIP() << "no crun";
  fs::path ctx = dir() / "crun";
  ProcessResult r = build_fs(ctx, "FROM busybox:latest\nRUN echo ran > /ran\n", dir() / "crun-fs",
                             {"--runtime", "crun"});
  if (r.exit_code == 0) {
    EXPECT_EQ(read(dir() / "crun-fs/ran"), "ran\n");
  } else {
    EXPECT_THAT(r.err, HasSubstr("crun"));
    EXPECT_THAT(r.err, HasSubstr("Containerfile:2:1: RUN"));
  }
}

// A rw bind mount lets the step write, into a copy: never into the user's context, another
// stage or the unpacked image that later builds reuse.
TEST_F(Interop, ReadWriteBindMountsWriteToAThrowawayCopy) {
  fs::path ctx = dir() / "bind-rw";
  fs::path out = dir() / "bind-rw-fs";
  write(ctx / "a.txt", "original\n");
  ProcessResult r =
      build_fs(ctx,
               "FROM busybox:latest AS base\n"
               "RUN mkdir /data && echo base > /data/f\n"
               "FROM busybox:latest\n"
               "RUN --mount=type=bind,rw,target=/ctx echo changed > /ctx/a.txt && touch /ctx/new\n"
               "RUN --mount=type=bind,from=base,source=/data,target=/d,rw echo changed > /d/f\n"
               "RUN --mount=type=bind,from=busybox:latest,rw,target=/img rm /img/bin/busybox\n"
               "COPY --from=base /data/f /f\n"
               "RUN --mount=type=bind,target=/ctx cat /ctx/a.txt > /seen\n",
               out, {"--no-cache"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read(ctx / "a.txt"), "original\n");
  EXPECT_FALSE(fs::exists(ctx / "new"));
  EXPECT_EQ(read(out / "f"), "base\n");
  EXPECT_EQ(read(out / "seen"), "original\n");
  EXPECT_TRUE(fs::exists(out / "bin/busybox"));
  ProcessResult again =
      build_fs(ctx, "FROM busybox:latest\nRUN echo ok > /ok\n", out, {"--no-cache"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(read(out / "ok"), "ok\n");
}

// --build-context as buildx defines it: images and OCI layouts for FROM, replaced stages and
// --from; directories (with their own .dockerignore) for COPY --from and RUN --mount from.
TEST_F(Interop, NamedBuildContexts) {
  fs::path ctx = dir() / "named";
  fs::path docs = dir() / "named-docs";
  fs::path layout = dir() / "named-layout";
  fs::path out = dir() / "named-fs";
  write(docs / "guide.md", "guide v1\n");
  write(docs / "secret.txt", "secret\n");
  write(docs / ".dockerignore", "secret.txt\n");
  ASSERT_EQ(
      kiln({"save", "--format", "oci-dir", "-o", layout.string(), "busybox:latest"}).exit_code, 0);
  write(ctx / "Containerfile",
        "FROM base AS build\n"
        "RUN echo built > /out\n"
        "FROM scratch AS replaced\n"
        "RUN exit 1\n"
        "FROM docker.io/library/alpine:latest\n"
        "RUN --mount=from=docs,target=/d cat /d/guide.md > /guide-copy\n"
        "COPY --from=build /out /out\n"
        "COPY --from=replaced /bin/busybox /copied-busybox\n"
        "COPY --from=docs . /docs/\n");
  std::vector<std::string> args = {"build",
                                   "--progress",
                                   "json",
                                   "--build-context",
                                   "base=docker-image://busybox:latest",
                                   "--build-context",
                                   "replaced=oci-layout://" + layout.string() + ":busybox:latest",
                                   "--build-context",
                                   "alpine=docker-image://busybox:latest",
                                   "--build-context",
                                   "docs=" + docs.string(),
                                   "-o",
                                   "type=local,dest=" + out.string(),
                                   ctx.string()};
  auto steps_run = [](const ProcessResult& r) {
    return nlohmann::json::parse(r.out)["steps_run"].get<int>();
  };
  ProcessResult r = kiln(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read(out / "out"), "built\n");
  EXPECT_TRUE(fs::exists(out / "copied-busybox"));
  EXPECT_TRUE(fs::exists(out / "bin/busybox")) << "FROM alpine was not replaced";
  EXPECT_EQ(read(out / "docs/guide.md"), "guide v1\n");
  EXPECT_FALSE(fs::exists(out / "docs/secret.txt")) << "the context's .dockerignore was ignored";
  EXPECT_EQ(read(out / "guide-copy"), "guide v1\n");

  ProcessResult cached = kiln(args);
  ASSERT_EQ(cached.exit_code, 0) << cached.err;
  EXPECT_EQ(steps_run(cached), 0);
  write(docs / "secret.txt", "changed, but ignored\n");
  ProcessResult ignored = kiln(args);
  ASSERT_EQ(ignored.exit_code, 0) << ignored.err;
  EXPECT_EQ(steps_run(ignored), 0);
  write(docs / "guide.md", "guide v2\n");
  ProcessResult edited = kiln(args);
  ASSERT_EQ(edited.exit_code, 0) << edited.err;
  EXPECT_EQ(steps_run(edited), 4) << "the RUN with the mount, and the three COPYs after it";
  EXPECT_EQ(read(out / "guide-copy"), "guide v2\n");

  write(ctx / "Containerfile", "FROM docs\n");
  ProcessResult as_base = kiln({"build", "--build-context", "docs=" + docs.string(), ctx.string()});
  EXPECT_EQ(as_base.exit_code, 1);
  EXPECT_THAT(as_base.err, HasSubstr("Containerfile:1:"));
  EXPECT_THAT(as_base.err, HasSubstr("COPY --from and RUN --mount from"));
  for (const std::string& bad :
       {std::string("x=ftp://example.com/a.tar"), std::string("x=target:other"),
        "x=" + (dir() / "nope").string(), std::string("noequals"),
        std::string("x=docker-image://Not A Ref")}) {
    ProcessResult e = kiln({"build", "--build-context", bad, ctx.string()});
    EXPECT_EQ(e.exit_code, 2) << bad << ": " << e.err;
  }
}

// A static client that asks the SSH agent at $SSH_AUTH_SOCK how many keys it holds (the agent
// protocol's REQUEST_IDENTITIES) and prints the number: busybox has no unix-socket client.
constexpr const char* kAgentClient = R"(#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
int main(void) {
  const char *path = getenv("SSH_AUTH_SOCK");
  if (!path) { fprintf(stderr, "no SSH_AUTH_SOCK\n"); return 2; }
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  strncpy(a.sun_path, path, sizeof a.sun_path - 1);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) { perror("connect"); return 3; }
  unsigned char request[5] = {0, 0, 0, 1, 11};
  if (write(fd, request, 5) != 5) return 4;
  unsigned char head[9];
  size_t got = 0;
  while (got < 9) { ssize_t n = read(fd, head + got, 9 - got); if (n <= 0) return 5; got += n; }
  if (head[4] != 12) return 6;
  printf("%u\n", (unsigned)head[5] << 24 | head[6] << 16 | head[7] << 8 | head[8]);
  return 0;
}
)";

// RUN --mount=type=ssh reaches the user's agent through a socket with the mount's owner and
// mode, and the socket never lands in the image.
TEST_F(Interop, SshMountsForwardTheAgent) {
  fs::path ctx = dir() / "ssh";
  fs::path out = dir() / "ssh-fs";
  fs::path agent = dir() / "agent.sock";
  write(ctx / "client.c", kAgentClient);
  ProcessResult cc = run_program({"gcc", "-static", "-O2", "-o", (ctx / "agent-client").string(),
                                  (ctx / "client.c").string()});
  ASSERT_EQ(cc.exit_code, 0) << cc.err;
  ProcessResult key = run_program(
      {"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", (dir() / "id_test").string()});
  ASSERT_EQ(key.exit_code, 0) << key.err;
  ProcessResult started = run_program({"ssh-agent", "-s", "-a", agent.string()});
  ASSERT_EQ(started.exit_code, 0) << started.err;
  std::smatch pid;
  ASSERT_TRUE(std::regex_search(started.out, pid, std::regex("SSH_AGENT_PID=([0-9]+)")))
      << started.out;
  struct Stop {
    std::string pid;
    ~Stop() { run_program({"kill", pid}); }
  } stop{pid[1]};
  ProcessResult added = run_program({"ssh-add", (dir() / "id_test").string()}, {}, {},
                                    {"SSH_AUTH_SOCK=" + agent.string()});
  ASSERT_EQ(added.exit_code, 0) << added.err;

  ProcessResult r = build_fs(
      ctx,
      "FROM busybox:latest\n"
      "COPY agent-client /usr/local/bin/agent-client\n"
      "RUN mkdir -m 1777 /results\n"
      "RUN --mount=type=ssh agent-client > /results/default && "
      "echo $SSH_AUTH_SOCK > /results/path && stat -c '%a %u' $SSH_AUTH_SOCK > /results/stat\n"
      "USER nobody\n"
      "RUN --mount=type=ssh,id=work,target=/tmp/work.sock,uid=65534,mode=0600 "
      "SSH_AUTH_SOCK=/tmp/work.sock agent-client > /results/nobody\n"
      "RUN --mount=type=ssh,id=absent echo \"[$SSH_AUTH_SOCK]\" > /results/absent\n",
      out, {"--ssh", "default=" + agent.string(), "--ssh", "work=" + agent.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read(out / "results/default"), "1\n");
  EXPECT_EQ(read(out / "results/path"), "/run/buildkit/ssh_agent.0\n");
  EXPECT_EQ(read(out / "results/stat"), "600 0\n");
  EXPECT_EQ(read(out / "results/nobody"), "1\n");
  EXPECT_EQ(read(out / "results/absent"), "[]\n");
  EXPECT_FALSE(fs::exists(out / "run/buildkit")) << "the agent's mountpoint is in the image";
  EXPECT_FALSE(fs::exists(out / "tmp/work.sock"));

  write(ctx / "Containerfile", "FROM busybox:latest\nRUN --mount=type=ssh,required true\n");
  ProcessResult missing = kiln({"build", "--no-cache", ctx.string()});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("Containerfile:2:"));
  EXPECT_THAT(missing.err, HasSubstr("--ssh"));
  ProcessResult from_env = kiln({"build", "--no-cache", "--ssh", "default", ctx.string()},
                                {kEpoch, "SSH_AUTH_SOCK=" + agent.string()});
  EXPECT_EQ(from_env.exit_code, 0) << from_env.err;
  ProcessResult not_socket = kiln({"build", "--ssh", "default=/etc/passwd", ctx.string()});
  EXPECT_EQ(not_socket.exit_code, 2) << not_socket.err;
}

// Flags that buildah, podman and buildx users pass in scripts.
TEST_F(Interop, CompatibleBuildFlags) {
  fs::path ctx = dir() / "compat";
  fs::path out = dir() / "compat-fs";
  write(ctx / "kept.txt", "kept\n");
  write(ctx / "dropped.txt", "dropped\n");
  write(ctx / "my.ignore", "dropped.txt\n");
  std::string containerfile = "FROM busybox:latest\nCOPY . /ctx/\nRUN cat /etc/hosts > /hosts\n";
  ProcessResult r = build_fs(
      ctx, containerfile, out,
      {"--add-host", "db.internal:10.1.2.3", "--add-host", "v6.internal=fd00::1", "--ignorefile",
       (ctx / "my.ignore").string(), "--layers", "--rm", "--force-rm=true", "--jobs", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string hosts = read(out / "hosts");
  EXPECT_THAT(hosts, HasSubstr("127.0.0.1\tlocalhost buildkitsandbox\n"));
  EXPECT_THAT(hosts, HasSubstr("10.1.2.3\tdb.internal\n"));
  EXPECT_THAT(hosts, HasSubstr("fd00::1\tv6.internal\n"));
  EXPECT_TRUE(fs::exists(out / "ctx/kept.txt"));
  EXPECT_FALSE(fs::exists(out / "ctx/dropped.txt")) << "--ignorefile was not applied";

  // The hosts are part of the RUN step's key.
  ProcessResult other = build_fs(
      ctx, containerfile, out,
      {"--add-host", "db.internal:10.9.9.9", "--ignorefile", (ctx / "my.ignore").string()});
  ASSERT_EQ(other.exit_code, 0) << other.err;
  EXPECT_THAT(read(out / "hosts"), HasSubstr("10.9.9.9\tdb.internal\n"));

  // -q: the image ID alone on stdout, nothing on stderr.
  fs::path meta = dir() / "compat-metadata.json";
  ProcessResult quiet = kiln(
      {"build", "-q", "-t", "compat:1", "--annotation", "org.example.team=build", "--annotation",
       "manifest:org.example.kind=app", "--metadata-file", meta.string(), ctx.string()});
  ASSERT_EQ(quiet.exit_code, 0) << quiet.err;
  EXPECT_EQ(quiet.err, "");
  EXPECT_THAT(quiet.out, ::testing::MatchesRegex("sha256:[0-9a-f]{64}\n"));
  nlohmann::json m = nlohmann::json::parse(read(meta));
  EXPECT_EQ(m["containerimage.config.digest"], quiet.out.substr(0, quiet.out.size() - 1));
  EXPECT_EQ(m["image.name"], "compat:1");
  std::string digest = m["containerimage.digest"];
  EXPECT_EQ(m["containerimage.descriptor"]["digest"], digest);
  ProcessResult raw = tool({"skopeo", "inspect", "--raw", "oci:" + store() + ":compat:1"});
  ASSERT_EQ(raw.exit_code, 0) << raw.err;
  nlohmann::json manifest = nlohmann::json::parse(raw.out);
  EXPECT_EQ(manifest["annotations"]["org.example.team"], "build");
  EXPECT_EQ(manifest["annotations"]["org.example.kind"], "app");
  EXPECT_EQ(digest, "sha256:" + run_program({"sh", "-c",
                                             "printf %s \"$0\" | sha256sum | cut -c1-64", raw.out})
                                    .out.substr(0, 64));

  for (const std::vector<std::string>& bad : {std::vector<std::string>{"--add-host", "nocolon"},
                                              {"--add-host", "h:not-an-ip"},
                                              {"--annotation", "manifest-descriptor:k=v"},
                                              {"--layers=maybe"},
                                              {"--jobs", "0"}}) {
    std::vector<std::string> args = {"build"};
    args.insert(args.end(), bad.begin(), bad.end());
    args.push_back(ctx.string());
    ProcessResult e = kiln(args);
    EXPECT_EQ(e.exit_code, 2) << bad.front() << ": " << e.err;
  }
  ProcessResult docker =
      kiln({"build", "--format", "docker", "--annotation", "k=v", "-q", ctx.string()});
  EXPECT_EQ(docker.exit_code, 1);
  EXPECT_THAT(docker.err, HasSubstr("annotations need OCI manifests"));
}

}  // namespace
}  // namespace kiln::test
