// The store survives what happens to builds in real life: a build killed at any moment (by the
// KILN_TEST_CRASH_AT hook at each named point, or by kill -9 after a delay), builds running at
// the same time on one store, and `kiln prune` running while a build uses the cache. After each,
// `kiln check` finds no problem (leftovers of killed builds are allowed), the next build
// succeeds, and its image is the one an undisturbed build makes.
//
// Needs Debian's busybox-static for the base image, like the interop tests. Every store lives in
// a temporary directory; every process a test starts has ended when the test returns.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
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
using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kEpoch = "SOURCE_DATE_EPOCH=1700000000";
constexpr int kKilled = 128 + SIGKILL;  // how run_program reports a process killed by SIGKILL

// Every crash point kiln has (grep crash_point in the source).
constexpr const char* kCrashPoints[] = {
    "blob-before-rename", "atomic-write-half", "snapshot-unpacked", "layer-written",
    "layer-committed",    "before-record",     "after-record",
};

std::string read(const fs::path& path) {
  return read_or(path, "");
}

class StoreSafety : public ::testing::Test {
 public:
  static void SetUpTestSuite() {
    work_ = new TempDir({}, "kiln-store-safety-");
    ASSERT_TRUE(fs::exists("/bin/busybox")) << "busybox-static is missing";
    ProcessResult prepared = run_program(
        {std::string(KILN_SOURCE_DIR) + "/examples/busybox/prepare.sh", busybox_context()});
    ASSERT_EQ(prepared.exit_code, 0) << prepared.err;
    ProcessResult base = kiln(base_store(), {"build", "-t", "busybox:latest", busybox_context()});
    ASSERT_EQ(base.exit_code, 0) << base.err;
  }
  static void TearDownTestSuite() {
    delete work_;
    work_ = nullptr;
  }

 protected:
  static fs::path dir() { return work_->path(); }
  static std::string busybox_context() { return (dir() / "busybox").string(); }
  static fs::path base_store() { return dir() / "base-store"; }

  static ProcessResult kiln(const fs::path& store, const std::vector<std::string>& args,
                            std::vector<std::string> env = {}) {
    env.push_back(kEpoch);
    env.push_back("KILN_ROOT=" + store.string());
    return run_kiln(args, {}, {}, env);
  }

  // A new store holding only busybox:latest, as the suite built it.
  static fs::path store_with_base(const std::string& name) {
    fs::path store = dir() / name;
    fs::remove_all(store);
    fs::copy(base_store(), store, fs::copy_options::recursive | fs::copy_options::copy_symlinks);
    return store;
  }

  // `kiln check` finds no problem, and a second opinion that shares no code with it agrees:
  // every blob hashes to its name, index.json and every cache record are JSON objects.
  static void expect_store_sound(const fs::path& store, const std::string& when) {
    ProcessResult check = kiln(store, {"check"});
    EXPECT_EQ(check.exit_code, 0) << when << ": kiln check says\n" << check.out << check.err;
    EXPECT_THAT(check.out, Not(HasSubstr("problem:"))) << when;
    ProcessResult hashes = run_program(
        {"sh", "-c", "cd \"$0\" && for f in *; do echo \"$f  $f\"; done | sha256sum -c --quiet",
         (store / "blobs" / "sha256").string()});
    EXPECT_EQ(hashes.exit_code, 0) << when << ": blobs whose content is not their name\n"
                                   << hashes.out << hashes.err;
    EXPECT_TRUE(nlohmann::json::accept(read(store / "index.json")))
        << when << ": index.json is not JSON";
    for (const fs::directory_entry& e : fs::directory_iterator(store / "cache" / "records")) {
      std::string name = e.path().filename().string();
      if (name.ends_with(".tmp"))
        continue;  // an interrupted write's temporary file: a leftover, never read
      nlohmann::json record = nlohmann::json::parse(read(e.path()), nullptr, false);
      EXPECT_TRUE(record.is_object() && record.contains("key"))
          << when << ": cache record " << name << " is not a record";
    }
  }

  // How many failures the running test has reported so far.
  static int failures() {
    const ::testing::TestResult* result =
        ::testing::UnitTest::GetInstance()->current_test_info()->result();
    int failed = 0;
    for (int i = 0; i < result->total_part_count(); ++i)
      failed += result->GetTestPartResult(i).failed();
    return failed;
  }

  // ---- the build that the crash tests interrupt ------------------------------------------

  // Two stages: COPY of context files, RUN steps that write files, COPY --from, ENV, WORKDIR.
  static fs::path crash_context() {
    fs::path ctx = dir() / "crash-app";
    if (fs::exists(ctx))
      return ctx;
    write(ctx / "data" / "a.txt", "hello\n");
    write(ctx / "data" / "sub" / "b.txt", "world\n");
    write(ctx / "note.txt", "note\n");
    write(ctx / "Containerfile", R"(FROM busybox:latest AS builder
WORKDIR /work
COPY data/ ./data/
RUN cat data/a.txt data/sub/b.txt > joined && echo built > status
RUN mkdir -p /out && wc -c < joined > /out/size && cp joined status /out/
FROM busybox:latest
ENV APP=/app
COPY --from=builder /out/ /app/
COPY note.txt /app/
RUN echo "$APP" > /app/env && ls /app > /app/listing
CMD ["cat", "/app/joined"]
)");
    return ctx;
  }

  // The image ID of the crash build on an undisturbed store.
  static const std::string& crash_reference_id() {
    static const std::string id = [] {
      ProcessResult r =
          kiln(store_with_base("reference-store"), {"build", "-t", "app:1", crash_context()});
      EXPECT_EQ(r.exit_code, 0) << r.err;
      return r.out;
    }();
    return id;
  }

  // Builds the crash context again on `store` and expects the undisturbed build's image, with
  // the files its RUN steps wrote.
  static void expect_rebuild_is_reference(const fs::path& store, const std::string& when) {
    fs::path out = dir() / "rebuilt-fs";
    fs::remove_all(out);
    ProcessResult r = kiln(
        store, {"build", "-t", "app:1", "-o", "type=local,dest=" + out.string(), crash_context()});
    ASSERT_EQ(r.exit_code, 0) << when << ": the build after the crash failed\n" << r.err;
    EXPECT_EQ(r.out, crash_reference_id()) << when;
    EXPECT_EQ(read(out / "app" / "joined"), "hello\nworld\n") << when;
    EXPECT_EQ(read(out / "app" / "size"), "12\n") << when;
    EXPECT_EQ(read(out / "app" / "status"), "built\n") << when;
    EXPECT_EQ(read(out / "app" / "note.txt"), "note\n") << when;
    EXPECT_EQ(read(out / "app" / "env"), "/app\n") << when;
    EXPECT_EQ(read(out / "app" / "listing"), "env\njoined\nlisting\nnote.txt\nsize\nstatus\n")
        << when;
    fs::remove_all(out);
  }

  // ---- a build long enough to be killed at chosen delays ---------------------------------

  static fs::path slow_context() {
    fs::path ctx = dir() / "slow-app";
    if (fs::exists(ctx))
      return ctx;
    write(ctx / "big.bin", noise(8 << 20, 0x9e3779b97f4a7c15ULL));
    for (int i = 1; i <= 200; ++i)
      write(ctx / "small" / ("f" + std::to_string(i) + ".txt"), "file " + std::to_string(i) + "\n");
    write(ctx / "Containerfile", R"(FROM busybox:latest AS data
COPY . /src/
RUN cat /src/big.bin /src/big.bin > /twice && md5sum /src/big.bin > /sum && cat /src/small/*.txt | wc -l > /lines
FROM busybox:latest
COPY --from=data /sum /lines /out/
RUN head -c 4000000 /dev/zero | tr '\0' x > /out/filler && wc -c < /out/filler > /out/size
)");
    return ctx;
  }

 private:
  static inline TempDir* work_ = nullptr;
};

// Each crash point at each of its visits during a build, on a store that already has the base
// image: the killed build leaves nothing `kiln check` calls a problem, and the same build then
// succeeds with the image an undisturbed build makes.
TEST_F(StoreSafety, CrashAtEveryPointThenRebuildSucceeds) {
  const std::string& reference = crash_reference_id();
  ASSERT_THAT(reference, HasSubstr("sha256:"));
  constexpr int kMaxVisits = 40;
  for (const char* point : kCrashPoints) {
    int failures_before = failures();
    int visit = 1;
    for (; visit <= kMaxVisits; ++visit) {
      std::string spec = std::string(point) + ":" + std::to_string(visit);
      fs::path store = store_with_base("crash-store");
      ProcessResult crashed =
          kiln(store, {"build", "-t", "app:1", crash_context()}, {"KILN_TEST_CRASH_AT=" + spec});
      if (crashed.exit_code == 0)
        break;  // the build passes this point fewer than `visit` times
      ASSERT_EQ(crashed.exit_code, kKilled) << spec << ": " << crashed.err;
      expect_store_sound(store, "after the crash at " + spec);
      expect_rebuild_is_reference(store, "after the crash at " + spec);
      expect_store_sound(store, "after the rebuild that followed " + spec);
      // What the killed build left behind is harmless and `kiln prune` removes it.
      ProcessResult pruned = kiln(store, {"prune"});
      EXPECT_EQ(pruned.exit_code, 0) << spec << ": " << pruned.out << pruned.err;
      ProcessResult check = kiln(store, {"check"});
      EXPECT_EQ(check.exit_code, 0) << spec << ": " << check.out;
      EXPECT_THAT(check.out, Not(HasSubstr("leftover:")))
          << "after the crash at " << spec << " and kiln prune";
      if (failures() > failures_before)
        break;  // one precise report per point beats dozens of the same
    }
    if (failures() > failures_before)
      continue;
    RecordProperty(std::string(point) + "-visits", visit - 1);
    EXPECT_GT(visit, 1) << point << ": the build never reached this crash point";
    EXPECT_LE(visit, kMaxVisits) << point << ": still crashing after " << kMaxVisits << " visits";
  }
  fs::remove_all(dir() / "crash-store");
}

// kill -9 at delays that land in different phases (context hashing, COPY of a large file,
// RUN, layer compression, the second stage): check and rebuild succeed after each.
TEST_F(StoreSafety, KillAtDelaysThenRebuildSucceeds) {
  fs::path ctx = slow_context();
  ProcessResult reference = kiln(store_with_base("slow-reference"), {"build", ctx.string()});
  ASSERT_EQ(reference.exit_code, 0) << reference.err;
  fs::remove_all(dir() / "slow-reference");
  // The shell starts kiln in the background, kills it by its PID after the delay and waits for
  // it, so nothing outlives the test; it prints kiln's exit status.
  const std::string script =
      "\"$0\" build \"$1\" >/dev/null 2>&1 & pid=$!; sleep \"$2\"; kill -9 \"$pid\" 2>/dev/null; "
      "wait \"$pid\"; echo $?";
  int killed = 0;
  for (const char* delay : {"0.02", "0.1", "0.2", "0.3", "0.4", "0.55"}) {
    fs::path store = store_with_base("slow-store");
    ProcessResult r = run_program({"sh", "-c", script, KILN_BINARY, ctx.string(), delay}, {}, {},
                                  {kEpoch, "KILN_ROOT=" + store.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    int status = std::stoi(r.out);
    ASSERT_TRUE(status == kKilled || status == 0) << "kiln exited with " << status;
    killed += status == kKilled;
    std::string when = std::string("after kill -9 at ") + delay + " s";
    expect_store_sound(store, when);
    ProcessResult rebuilt = kiln(store, {"build", ctx.string()});
    ASSERT_EQ(rebuilt.exit_code, 0) << when << ": " << rebuilt.err;
    EXPECT_EQ(rebuilt.out, reference.out) << when;
    expect_store_sound(store, "after the rebuild " + when);
  }
  RecordProperty("killed", killed);
  // Most delays must have interrupted the build, or this test proves nothing.
  EXPECT_GE(killed, 3);
  fs::remove_all(dir() / "slow-store");
}

// Four builds at once on one store race to unpack the same base snapshot and to run the same
// first RUN step (one cache key); all succeed, the store is sound, and each image is the one a
// build alone on a fresh store makes.
TEST_F(StoreSafety, FourConcurrentBuildsShareTheStore) {
  fs::path ctx = dir() / "concurrent";
  const std::string common =
      "FROM busybox:latest\n"
      "RUN mkdir /common && for i in $(seq 1 300); do echo \"line $i\" > /common/f$i; done\n";
  write(ctx / "a.txt", "some text for a\n");
  write(ctx / "sub" / "b.txt", "b\n");
  write(ctx / "one.Containerfile", common + "COPY a.txt /a.txt\nRUN wc -c < /a.txt > /size\n");
  write(
      ctx / "two.Containerfile",
      common + "ENV MODE=two\nRUN echo \"$MODE\" > /mode\nWORKDIR /w\nCMD [\"cat\", \"/mode\"]\n");
  write(ctx / "three.Containerfile",
        "FROM busybox:latest AS gen\n"
        "RUN mkdir /common && for i in $(seq 1 300); do echo \"line $i\" > /common/f$i; done\n"
        "RUN cat /common/* | md5sum > /sum\n" +
            common + "COPY --from=gen /sum /sum\n");
  write(ctx / "four.Containerfile",
        common + "COPY . /ctx/\nRUN find /ctx | sort > /list\nLABEL variant=four\n");
  const std::vector<std::string> files = {"one", "two", "three", "four"};

  fs::path shared = store_with_base("shared-store");
  std::vector<ProcessResult> concurrent(files.size());
  {
    std::vector<std::thread> builds;
    for (size_t i = 0; i < files.size(); ++i) {
      builds.emplace_back([&, i] {
        concurrent[i] =
            kiln(shared, {"build", "-t", files[i] + ":1", "-f",
                          (ctx / (files[i] + ".Containerfile")).string(), ctx.string()});
      });
    }
    for (std::thread& t : builds)
      t.join();
  }
  for (size_t i = 0; i < files.size(); ++i) {
    ASSERT_EQ(concurrent[i].exit_code, 0) << files[i] << ": " << concurrent[i].err;
    ASSERT_THAT(concurrent[i].out, HasSubstr("sha256:")) << files[i];
  }
  expect_store_sound(shared, "after four concurrent builds");

  fs::path alone = dir() / "sequential-store";
  ProcessResult base = kiln(alone, {"build", "-t", "busybox:latest", busybox_context()});
  ASSERT_EQ(base.exit_code, 0) << base.err;
  for (size_t i = 0; i < files.size(); ++i) {
    ProcessResult r = kiln(alone, {"build", "-t", files[i] + ":1", "-f",
                                   (ctx / (files[i] + ".Containerfile")).string(), ctx.string()});
    ASSERT_EQ(r.exit_code, 0) << files[i] << ": " << r.err;
    EXPECT_EQ(r.out, concurrent[i].out) << files[i] << ": another image than the concurrent build";
  }
  fs::remove_all(shared);
  fs::remove_all(alone);
}

// `kiln prune --all` while a build runs: the cache entries, layers and snapshot the build took
// from an older build stay; what only the older build needed goes; the build succeeds.
TEST_F(StoreSafety, PruneDuringBuildKeepsWhatTheBuildUses) {
  fs::path ctx = dir() / "prune-app";
  const std::string shared_steps =
      "FROM busybox:latest AS tools\n"
      "RUN echo tool > /tool\n"
      "FROM busybox:latest\n"
      "COPY data.txt /data.txt\n"
      "RUN cat /data.txt /data.txt > /pre\n";
  write(ctx / "data.txt", "data\n");
  write(ctx / "old.Containerfile", shared_steps + "RUN echo only in the old build > /old\n");
  write(ctx / "Containerfile", shared_steps +
                                   "RUN sleep 2 && echo slept > /slept\n"
                                   "RUN cat /pre /slept > /result\n"
                                   "COPY --from=tools /tool /tool\n");
  fs::path store = store_with_base("prune-store");
  ProcessResult old =
      kiln(store, {"build", "-f", (ctx / "old.Containerfile").string(), ctx.string()});
  ASSERT_EQ(old.exit_code, 0) << old.err;
  // Prune spares whatever was touched shortly before a running build started; make the old
  // build's cache an hour old so that only the running build's lease keeps what it uses. (A
  // directory's ctime cannot be set back, so the base snapshot stays young either way.)
  ProcessResult aged = run_program(
      {"sh", "-c", "find \"$0\" -exec touch -h -d @$(($(date +%s) - 3600)) {} +", store.string()});
  ASSERT_EQ(aged.exit_code, 0) << aged.err;

  fs::path out = dir() / "prune-fs";
  ProcessResult build;
  std::thread builder([&] {
    build = kiln(
        store, {"build", "-t", "pruned:1", "-o", "type=local,dest=" + out.string(), ctx.string()});
  });
  std::vector<ProcessResult> prunes;
  for (int i = 0; i < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    prunes.push_back(kiln(store, {"prune", "--all"}));
  }
  builder.join();
  for (const ProcessResult& p : prunes)
    EXPECT_EQ(p.exit_code, 0) << p.out << p.err;
  // The old build's last layer and cache entry were only its own: a prune that removed nothing
  // would prove nothing.
  std::smatch deleted;
  ASSERT_TRUE(std::regex_search(prunes.front().out, deleted, std::regex("Deleted ([0-9]+) blob")))
      << prunes.front().out;
  EXPECT_GT(std::stoi(deleted[1]), 0) << prunes.front().out;
  ASSERT_EQ(build.exit_code, 0) << build.err;
  EXPECT_EQ(read(out / "result"), "data\ndata\nslept\n");
  EXPECT_EQ(read(out / "tool"), "tool\n");
  expect_store_sound(store, "after prune --all during a build");
  ProcessResult again = kiln(store, {"build", "-t", "pruned:1", ctx.string()});
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(again.out, build.out);
  fs::remove_all(out);
  fs::remove_all(store);
}

}  // namespace
}  // namespace kiln::test
