// kiln build against a real registry (Debian's docker-registry on 127.0.0.1, started and stopped
// by the test): FROM a registry image into an empty store, --push read back by skopeo, and the
// build farm — store A exports its cache to the registry, an empty store B imports it, runs no
// step and produces A's image. The farm test prints both times and their ratio.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kiln/base/fd.hpp"
#include "process.hpp"
#include "registry_fixture.hpp"

namespace kiln::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class RegistryBuild : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::path busybox = work_.path() / "busybox";
    ProcessResult prepared = run_program(
        {std::string(KILN_SOURCE_DIR) + "/examples/busybox/prepare.sh", busybox.string()});
    ASSERT_EQ(prepared.exit_code, 0) << prepared.err;
    // The base image reaches the registry once, from a store of its own.
    ProcessResult base = kiln("base", {"build", "-t", "busybox:latest", busybox.string()});
    ASSERT_EQ(base.exit_code, 0) << base.err;
    ProcessResult push = kiln("base", {"push", "--tls-verify=false", "busybox:latest",
                                       registry_.host() + "/library/busybox:1"});
    ASSERT_EQ(push.exit_code, 0) << push.err << registry_.logs();
    ctx_ = work_.path() / "ctx";
    fs::create_directories(ctx_);
    std::ofstream(ctx_ / "Containerfile")
        << "FROM " << registry_.host() << "/library/busybox:1 AS tools\n"
        << "RUN echo tool > /tool && sleep 1\n"
        << "FROM " << registry_.host() << "/library/busybox:1\n"
        << "COPY app.txt /app.txt\n"
        << "RUN cat /app.txt > /copy && sleep 1\n"
        << "COPY --from=tools /tool /tool\n"
        << "RUN cat /tool /copy > /both && sleep 1\n"
        << "CMD [\"cat\", \"/both\"]\n";
    std::ofstream(ctx_ / "app.txt") << "app\n";
  }

  ProcessResult kiln(const std::string& store, const std::vector<std::string>& args) {
    return run_kiln(
        args, {}, {},
        {"KILN_ROOT=" + (work_.path() / store).string(), "SOURCE_DATE_EPOCH=1700000000"});
  }
  // Builds without SOURCE_DATE_EPOCH: only the cache can make two stores agree.
  ProcessResult build(const std::string& store, std::vector<std::string> args) {
    std::vector<std::string> all = {"build", "--progress", "json", "--tls-verify=false"};
    all.insert(all.end(), args.begin(), args.end());
    all.push_back(ctx_.string());
    return run_kiln(all, {}, {}, {"KILN_ROOT=" + (work_.path() / store).string()});
  }
  static nlohmann::json result(const ProcessResult& r) {
    return nlohmann::json::parse(r.out, nullptr, false);
  }

  TempDir work_{{}, "kiln-registry-build-"};
  LocalRegistry registry_;
  fs::path ctx_;
};

// --all-platforms reads the base's platforms from the registry (its manifest and config, not its
// layers) before anything is pulled.
TEST_F(RegistryBuild, AllPlatformsAsksTheRegistryWhatTheBaseOffers) {
  ProcessResult r = build("a", {"--all-platforms", "-t", "all:1"});
  ASSERT_EQ(r.exit_code, 0) << r.err << registry_.logs();
  EXPECT_THAT(r.out + r.err,
              HasSubstr("Listing the platforms of " + registry_.host() + "/library/busybox:1"));
  ProcessResult inspect = kiln("a", {"inspect", "all:1"});
  ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
  EXPECT_EQ(result(inspect)["Config"]["architecture"], "amd64");
}

TEST_F(RegistryBuild, FromARegistryImageIntoAnEmptyStoreAndPushReadBySkopeo) {
  std::string ref = registry_.host() + "/team/app:1";
  ProcessResult r = build("a", {"-t", ref, "--push"});
  ASSERT_EQ(r.exit_code, 0) << r.err << registry_.logs();
  EXPECT_THAT(r.err, HasSubstr("Pulling " + registry_.host() + "/library/busybox:1"));
  EXPECT_THAT(r.err, HasSubstr("Pushed " + ref + "@sha256:"));
  ProcessResult raw =
      run_program({"skopeo", "inspect", "--raw", "--tls-verify=false", "docker://" + ref});
  ASSERT_EQ(raw.exit_code, 0) << raw.err;
  nlohmann::json manifest = nlohmann::json::parse(raw.out);
  EXPECT_EQ(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
  EXPECT_EQ(manifest["config"]["digest"], result(r)["image"]);
  ProcessResult config = run_program(
      {"skopeo", "inspect", "--config", "--raw", "--tls-verify=false", "docker://" + ref});
  ASSERT_EQ(config.exit_code, 0) << config.err;
  EXPECT_THAT(config.out, HasSubstr("\"cat\",\"/both\""));
  ProcessResult copied = run_program({"skopeo", "copy", "--src-tls-verify=false", "docker://" + ref,
                                      "oci:" + (work_.path() / "copied").string() + ":app"});
  EXPECT_EQ(copied.exit_code, 0) << copied.err;
}

TEST_F(RegistryBuild, TheBuildFarmSharesItsCacheThroughTheRegistry) {
  std::string cache = registry_.host() + "/team/app:buildcache";
  auto start = std::chrono::steady_clock::now();
  ProcessResult a = build("a", {"--cache-to", "type=registry,mode=max,ref=" + cache});
  double a_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(a.exit_code, 0) << a.err << registry_.logs();
  EXPECT_EQ(result(a)["steps_run"], 6);

  start = std::chrono::steady_clock::now();
  ProcessResult b = build("b", {"--cache-from", "type=registry,ref=" + cache});
  double b_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(b.exit_code, 0) << b.err << registry_.logs();
  EXPECT_EQ(result(b)["steps_run"], 0);
  EXPECT_EQ(result(b)["steps_cached"], 6);
  EXPECT_EQ(result(b)["image"], result(a)["image"]);
  std::printf(
      "build farm: store A (runs every step) %.2f s, empty store B with --cache-from "
      "%.2f s: %.1fx\n",
      a_seconds, b_seconds, a_seconds / b_seconds);
  ProcessResult check = kiln("b", {"check"});
  EXPECT_EQ(check.exit_code, 0) << check.out;
}

TEST_F(RegistryBuild, ACacheRefThatDoesNotExistYetIsNotAnError) {
  ProcessResult r =
      build("a", {"--cache-from", "type=registry,ref=" + registry_.host() + "/team/none:cache"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("No cache to import"));
}

// Only the stages the target needs are planned against their images: a stage --target prunes
// is never looked up. Its image is reachable only through a logging proxy, which must see no
// request; the control build of that stage goes through the proxy.
TEST_F(RegistryBuild, APrunedStageBaseIsNeverLookedUp) {
  FaultProxy proxy(registry_.host(), "none");
  fs::path ctx = work_.path() / "pruned";
  fs::create_directories(ctx);
  std::ofstream(ctx / "Containerfile")
      << "FROM " << proxy.host() << "/library/busybox:1 AS unused\n"
      << "RUN echo never\n"
      << "FROM " << registry_.host() << "/library/busybox:1 AS app\n"
      << "COPY --from=" << proxy.host() << "/library/busybox:1 /bin/busybox /copied\n"
      << "FROM " << registry_.host() << "/library/busybox:1 AS target\n"
      << "RUN echo built > /built\n";
  auto build = [&](const std::string& target) {
    return run_kiln(
        {"build", "--progress", "plain", "--tls-verify=false", "--target", target, ctx.string()},
        {}, {}, {"KILN_ROOT=" + (work_.path() / "pruned-store").string()});
  };
  ProcessResult r = build("target");
  ASSERT_EQ(r.exit_code, 0) << r.err << registry_.logs();
  // (The proxy's own readiness probe is a bare "GET /v2/".)
  EXPECT_THAT(proxy.requests(), ::testing::Not(HasSubstr("/v2/library/busybox"))) << r.err;
  // The control: a target that needs the proxied image does reach the proxy.
  ProcessResult control = build("app");
  ASSERT_EQ(control.exit_code, 0) << control.err << proxy.requests();
  EXPECT_THAT(proxy.requests(), HasSubstr("/v2/library/busybox/manifests/1"));
}

TEST(RegistryCommands, LoginPushLogoutWithBasicAuth) {
  LocalRegistry registry(RegistryAuth::kBasic);
  TempDir work({}, "kiln-registry-login-");
  std::string auth = (work.path() / "auth.json").string();
  std::vector<std::string> env = {"KILN_ROOT=" + (work.path() / "store").string(),
                                  "REGISTRY_AUTH_FILE=" + auth, "SOURCE_DATE_EPOCH=1700000000"};
  fs::create_directories(work.path() / "ctx");
  std::ofstream(work.path() / "ctx" / "Containerfile") << "FROM scratch\nCOPY f /f\n";
  std::ofstream(work.path() / "ctx" / "f") << "f\n";
  ProcessResult built =
      run_kiln({"build", "-t", "app:1", (work.path() / "ctx").string()}, {}, {}, env);
  ASSERT_EQ(built.exit_code, 0) << built.err;
  std::string dest = registry.host() + "/team/app:1";

  ProcessResult anonymous = run_kiln({"push", "--tls-verify=false", "app:1", dest}, {}, {}, env);
  EXPECT_EQ(anonymous.exit_code, 1);
  EXPECT_THAT(anonymous.err, HasSubstr("401"));
  ProcessResult wrong = run_kiln(
      {"login", "--tls-verify=false", "-u", registry.user(), "-p", "not-it", registry.host()}, {},
      {}, env);
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_THAT(wrong.err, HasSubstr("unauthorized"));
  EXPECT_FALSE(fs::exists(auth));
  ProcessResult login = run_kiln(
      {"login", "--tls-verify=false", "-u", registry.user(), "--password-stdin", registry.host()},
      {}, registry.password() + "\n", env);
  ASSERT_EQ(login.exit_code, 0) << login.err;
  EXPECT_EQ(fs::status(auth).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  ProcessResult push = run_kiln({"push", "--tls-verify=false", "app:1", dest}, {}, {}, env);
  ASSERT_EQ(push.exit_code, 0) << push.err << registry.logs();
  EXPECT_THAT(push.out, HasSubstr("Pushed " + dest + "@sha256:"));
  ProcessResult inspect = run_program(
      {"skopeo", "inspect", "--raw", "--tls-verify=false", "--authfile", auth, "docker://" + dest});
  EXPECT_EQ(inspect.exit_code, 0) << inspect.err;
  ProcessResult logout = run_kiln({"logout", registry.host()}, {}, {}, env);
  EXPECT_EQ(logout.exit_code, 0) << logout.err;
  ProcessResult again = run_kiln({"push", "--tls-verify=false", "app:1", dest}, {}, {}, env);
  EXPECT_EQ(again.exit_code, 1);
}

}  // namespace
}  // namespace kiln::test
