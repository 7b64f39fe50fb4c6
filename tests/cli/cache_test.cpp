// The solver's cache rules and scheduler, observed through `kiln build --progress json`: which
// steps ran and which came from the cache. Builds use a busybox base made offline from Debian's
// busybox-static (examples/busybox/prepare.sh), in a store of their own.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kiln/base/fd.hpp"
#include "process.hpp"

namespace kiln::test {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// What one build did: its exit code, the image ID, and each step's name → "done" | "cached" |
// "failed" | "canceled".
struct Outcome {
  ProcessResult process;
  std::string image;
  std::map<std::string, std::string> steps;
  std::map<std::string, std::string> why;  // step → the reason of its "miss" event
  nlohmann::json explain;                  // the result's "explain" (with --explain)

  std::vector<std::string> ran() const { return with("done"); }
  std::vector<std::string> cached() const { return with("cached"); }
  std::vector<std::string> with(const std::string& status) const {
    std::vector<std::string> out;
    for (const auto& [name, s] : steps) {
      if (s == status && name.find(" FROM ") == std::string::npos)
        out.push_back(name);
    }
    return out;
  }
};

class Cache : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    base_ = new TempDir({}, "kiln-cache-base-");
    ProcessResult prepared = run_program(
        {std::string(KILN_SOURCE_DIR) + "/examples/busybox/prepare.sh", busybox_dir().string()});
    ASSERT_EQ(prepared.exit_code, 0) << prepared.err;
  }
  static void TearDownTestSuite() {
    delete base_;
    base_ = nullptr;
  }
  static fs::path busybox_dir() { return base_->path() / "busybox"; }

  void SetUp() override {
    ProcessResult r = kiln({"build", "-t", "busybox:latest", busybox_dir().string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  ProcessResult kiln(const std::vector<std::string>& args) {
    return run_kiln(args, {}, {}, {"KILN_ROOT=" + (store_.path() / "store").string()});
  }

  void write(const std::string& name, const std::string& content) {
    fs::path p = ctx_.path() / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary | std::ios::trunc) << content;
  }

  Outcome build(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"build", "--progress", "json"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(ctx_.path().string());
    Outcome o;
    o.process = kiln(args);
    std::map<int, std::string> names;
    std::istringstream lines(o.process.err);
    std::string line;
    while (std::getline(lines, line)) {
      nlohmann::json e = nlohmann::json::parse(line, nullptr, false);
      if (e.is_discarded() || !e.is_object() || !e.contains("event"))
        continue;
      std::string event = e["event"];
      if (event == "started") {
        names[e["step"].get<int>()] = e["name"].get<std::string>();
      } else if (event == "miss") {
        o.why[short_name(names[e["step"].get<int>()])] = e["reason"].get<std::string>();
      } else if (event == "done" || event == "cached" || event == "failed" || event == "canceled") {
        o.steps[short_name(names[e["step"].get<int>()])] = event;
      }
    }
    nlohmann::json result = nlohmann::json::parse(o.process.out, nullptr, false);
    if (result.is_object() && result.contains("image"))
      o.image = result["image"];
    if (result.is_object() && result.contains("explain"))
      o.explain = result["explain"];
    return o;
  }

  // "[stage 2/5] RUN x" → "stage RUN x": the position may differ between files.
  static std::string short_name(std::string name) {
    size_t space = name.find(' '), close = name.find("] ");
    if (name.starts_with("[") && space != std::string::npos && close != std::string::npos)
      name = name.substr(1, space - 1) + " " + name.substr(close + 2);
    return name;
  }

  TempDir ctx_{{}, "kiln-cache-ctx-"};
  TempDir store_{{}, "kiln-cache-store-"};
  static TempDir* base_;
};

TempDir* Cache::base_ = nullptr;

constexpr const char* kTwoFiles = R"(FROM busybox:latest
COPY a.txt /a.txt
RUN cat /a.txt > /from-a
COPY b.txt /b.txt
RUN cat /b.txt > /from-b
ENV DONE=1
)";

TEST_F(Cache, UnchangedRebuildIsFullyCachedAndTheSameImage) {
  write("Containerfile", kTwoFiles);
  write("a.txt", "a\n");
  write("b.txt", "b\n");
  Outcome first = build();
  ASSERT_EQ(first.process.exit_code, 0) << first.process.err;
  EXPECT_EQ(first.ran().size(), 5u);
  EXPECT_THAT(first.cached(), IsEmpty());
  Outcome second = build();
  ASSERT_EQ(second.process.exit_code, 0) << second.process.err;
  EXPECT_THAT(second.ran(), IsEmpty());
  EXPECT_EQ(second.cached().size(), 5u);
  EXPECT_EQ(second.image, first.image);
}

TEST_F(Cache, TouchingContextFilesKeepsTheCache) {
  write("Containerfile", kTwoFiles);
  write("a.txt", "a\n");
  write("b.txt", "b\n");
  ASSERT_EQ(build().process.exit_code, 0);
  struct timespec later[2] = {{2000000000, 0}, {2000000000, 0}};
  for (const char* f : {"a.txt", "b.txt"})
    ASSERT_EQ(::utimensat(AT_FDCWD, (ctx_.path() / f).c_str(), later, 0), 0);
  Outcome o = build({"--explain"});
  ASSERT_EQ(o.process.exit_code, 0) << o.process.err;
  EXPECT_THAT(o.ran(), IsEmpty());
  // Nothing missed, so there is nothing to explain.
  EXPECT_THAT(o.why, IsEmpty());
  EXPECT_EQ(o.explain.value("summary", ""), "0 of 5 steps ran");
}

TEST_F(Cache, EditingOneFileRerunsTheStepsThatReadItAndThoseAfter) {
  write("Containerfile", kTwoFiles);
  write("a.txt", "a\n");
  write("b.txt", "b\n");
  ASSERT_EQ(build().process.exit_code, 0);
  write("b.txt", "b, edited\n");
  Outcome o = build();
  ASSERT_EQ(o.process.exit_code, 0) << o.process.err;
  EXPECT_THAT(o.cached(),
              ElementsAre("stage-0 COPY a.txt /a.txt", "stage-0 RUN cat /a.txt > /from-a"));
  EXPECT_THAT(o.ran(), ElementsAre("stage-0 COPY b.txt /b.txt", "stage-0 ENV DONE=1",
                                   "stage-0 RUN cat /b.txt > /from-b"));
  // The same content as the first time: everything from the cache again.
  write("b.txt", "b\n");
  EXPECT_THAT(build().ran(), IsEmpty());
}

TEST_F(Cache, ModeChangesInvalidateButOtherFilesInTheDirectoryDoNot) {
  write("Containerfile", "FROM busybox:latest\nCOPY src/*.sh /bin/\nRUN ls -l /bin/run.sh\n");
  write("src/run.sh", "echo hi\n");
  write("src/README.md", "docs\n");
  ASSERT_EQ(build().process.exit_code, 0);
  write("src/README.md", "docs, edited\n");  // not selected by the wildcard
  EXPECT_THAT(build().ran(), IsEmpty());
  fs::permissions(ctx_.path() / "src/run.sh", fs::perms::owner_exec, fs::perm_options::add);
  EXPECT_EQ(build().ran().size(), 2u);
}

TEST_F(Cache, ChangesToIgnoredFilesChangeNothing) {
  write("Containerfile", "FROM busybox:latest\nCOPY . /ctx/\nRUN ls -R /ctx > /listing\n");
  write(".containerignore", "*.log\nbuild/\n");
  write("main.c", "int main(){}\n");
  write("debug.log", "1\n");
  write("build/out.o", "x\n");
  Outcome first = build();
  ASSERT_EQ(first.process.exit_code, 0) << first.process.err;
  write("debug.log", "2\n");
  write("build/new.o", "y\n");
  Outcome o = build();
  EXPECT_THAT(o.ran(), IsEmpty());
  EXPECT_EQ(o.image, first.image);
  write("main.c", "int main(){return 1;}\n");
  EXPECT_EQ(build().ran().size(), 2u);
}

TEST_F(Cache, BuildArgsReachOnlyTheStepsThatSeeThem) {
  write("Containerfile",
        "FROM busybox:latest\nRUN echo one > /one\nARG VERSION=1\nCOPY a.txt /\n"
        "RUN echo $VERSION > /version\n");
  write("a.txt", "a\n");
  ASSERT_EQ(build().process.exit_code, 0);
  // Not declared anywhere: a warning, and nothing changes.
  Outcome unused = build({"--build-arg", "UNDECLARED=x"});
  ASSERT_EQ(unused.process.exit_code, 0) << unused.process.err;
  EXPECT_THAT(unused.ran(), IsEmpty());
  // Declared after the first RUN: that RUN and the COPY keep their cache.
  Outcome changed = build({"--build-arg", "VERSION=2"});
  EXPECT_THAT(changed.cached(), ElementsAre("stage-0 COPY a.txt /", "stage-0 RUN echo one > /one"));
  EXPECT_THAT(changed.ran(), ElementsAre("stage-0 RUN echo $VERSION > /version"));
}

TEST_F(Cache, ANewBaseImageDigestInvalidatesTheStage) {
  write("Containerfile", "FROM busybox:latest\nRUN echo x > /x\n");
  ASSERT_EQ(build().process.exit_code, 0);
  EXPECT_THAT(build().ran(), IsEmpty());
  // The base is rebuilt with one more file: a new manifest digest under the same tag.
  std::ofstream(busybox_dir() / "rootfs" / "extra") << "new\n";
  ProcessResult rebuilt = kiln({"build", "-t", "busybox:latest", busybox_dir().string()});
  fs::remove(busybox_dir() / "rootfs" / "extra");
  ASSERT_EQ(rebuilt.exit_code, 0) << rebuilt.err;
  Outcome o = build();
  ASSERT_EQ(o.process.exit_code, 0) << o.process.err;
  EXPECT_THAT(o.ran(), ElementsAre("stage-0 RUN echo x > /x"));
}

TEST_F(Cache, NoCacheAndNoCacheFilter) {
  write("Containerfile",
        "FROM busybox:latest AS dep\nRUN echo dep > /dep\n"
        "FROM busybox:latest\nCOPY --from=dep /dep /dep\nRUN cat /dep\n");
  ASSERT_EQ(build().process.exit_code, 0);
  Outcome all = build({"--no-cache"});
  ASSERT_EQ(all.process.exit_code, 0) << all.process.err;
  EXPECT_EQ(all.ran().size(), 3u);
  EXPECT_THAT(all.cached(), IsEmpty());
  // The dep stage re-runs; its result is the same, so the last stage's keys still match.
  Outcome filtered = build({"--no-cache-filter", "dep"});
  ASSERT_EQ(filtered.process.exit_code, 0) << filtered.process.err;
  EXPECT_THAT(filtered.ran(), ElementsAre("dep RUN echo dep > /dep"));
}

TEST_F(Cache, TheSameStepInTwoStagesRunsOnce) {
  write("Containerfile",
        "FROM busybox:latest AS a\nRUN echo shared > /shared\nRUN echo a > /a\n"
        "FROM busybox:latest AS b\nRUN echo shared > /shared\nRUN echo b > /b\n"
        "FROM busybox:latest\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n");
  Outcome o = build();
  ASSERT_EQ(o.process.exit_code, 0) << o.process.err;
  int shared_runs = 0;
  for (const auto& [name, status] : o.steps) {
    if (name.ends_with("RUN echo shared > /shared") && status == "done")
      ++shared_runs;
  }
  EXPECT_EQ(shared_runs, 1);
}

TEST_F(Cache, IndependentStagesRunAtTheSameTime) {
  // Each stage waits for the other's marker in a shared cache mount: run one after the other,
  // the first would time out.
  const char* wait =
      "i=0; while [ ! -e /shared/%s ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; "
      "test -e /shared/%s";
  char a[256], b[256];
  std::snprintf(a, sizeof a, wait, "b", "b");
  std::snprintf(b, sizeof b, wait, "a", "a");
  write(
      "Containerfile",
      std::string("FROM busybox:latest AS a\n"
                  "RUN --mount=type=cache,target=/shared,id=rendezvous touch /shared/a && ") +
          a +
          "\nFROM busybox:latest AS b\n"
          "RUN --mount=type=cache,target=/shared,id=rendezvous touch /shared/b && " +
          b +
          "\nFROM busybox:latest\nCOPY --from=a /bin/busybox /a\nCOPY --from=b /bin/busybox /b\n");
  Outcome o = build();
  EXPECT_EQ(o.process.exit_code, 0) << o.process.err;
}

TEST_F(Cache, AFailureCancelsItsDependentsAndEveryFailureIsReported) {
  write("Containerfile",
        "FROM busybox:latest AS one\nRUN echo first-failure && exit 3\n"
        "FROM busybox:latest AS two\nRUN echo second-failure && exit 4\n"
        "FROM busybox:latest AS fine\nRUN echo fine > /fine\n"
        "FROM busybox:latest\nCOPY --from=one / /one\nCOPY --from=two / /two\n"
        "COPY --from=fine /fine /fine\n");
  Outcome o = build();
  EXPECT_EQ(o.process.exit_code, 1);
  EXPECT_THAT(o.process.err, HasSubstr("Containerfile:2"));
  EXPECT_THAT(o.process.err, HasSubstr("exit code: 3"));
  EXPECT_THAT(o.process.err, HasSubstr("Containerfile:4"));
  EXPECT_THAT(o.process.err, HasSubstr("exit code: 4"));
  EXPECT_EQ(o.steps["fine RUN echo fine > /fine"], "done");
  // Nothing of the failed build is tagged, and the successful stage is cached for next time.
  write("Containerfile", "FROM busybox:latest AS fine\nRUN echo fine > /fine\n");
  EXPECT_THAT(build().ran(), IsEmpty());
}

// --explain: every step that ran says which input differs from the last build of the same step.
TEST_F(Cache, ExplainNamesTheEditedFileThenUpstreamForTheStepsAfterIt) {
  write("Containerfile",
        "FROM busybox:latest\nRUN echo before > /before\nCOPY src/ /app/\n"
        "RUN cat /app/main.c > /copy\nENV DONE=1\n");
  write("src/main.c", "int main(){}\n");
  write("src/util.c", "int util;\n");
  Outcome first = build({"--explain"});
  ASSERT_EQ(first.process.exit_code, 0) << first.process.err;
  EXPECT_EQ(first.why["stage-0 COPY src/ /app/"], "no earlier build of this step");
  EXPECT_EQ(first.explain.value("summary", ""), "4 of 4 steps ran: 4 no earlier build");

  write("src/util.c", "int util = 1;\n");
  Outcome o = build({"--explain"});
  ASSERT_EQ(o.process.exit_code, 0) << o.process.err;
  EXPECT_THAT(o.cached(), ElementsAre("stage-0 RUN echo before > /before"));
  // Named by its path in the context, not where it lands.
  EXPECT_EQ(o.why["stage-0 COPY src/ /app/"], "context file src/util.c changed");
  EXPECT_EQ(o.why["stage-0 RUN cat /app/main.c > /copy"], "input changed upstream");
  EXPECT_EQ(o.why["stage-0 ENV DONE=1"], "input changed upstream");
  EXPECT_EQ(o.explain.value("summary", ""),
            "3 of 4 steps ran: 1 context file changed, 2 input changed upstream");
  ASSERT_EQ(o.explain["steps"].size(), 3u);

  write("src/new.h", "#define X\n");
  EXPECT_EQ(build().why["stage-0 COPY src/ /app/"], "context file src/new.h added");
  // Back to an earlier state: a hit, nothing to explain.
  fs::remove(ctx_.path() / "src/new.h");
  EXPECT_THAT(build().why, IsEmpty());
  fs::remove(ctx_.path() / "src/util.c");
  EXPECT_EQ(build().why["stage-0 COPY src/ /app/"], "context file src/util.c removed");
}

TEST_F(Cache, ExplainNamesAChangedBuildArgButNeverStoresItsValue) {
  write("Containerfile",
        "FROM busybox:latest\nARG API_TOKEN=dev-token-value\nARG VERSION=1\n"
        "RUN echo $VERSION > /version\n");
  ASSERT_EQ(build({"--build-arg", "API_TOKEN=s3cr3t-build-arg-value"}).process.exit_code, 0);
  Outcome o =
      build({"--build-arg", "API_TOKEN=s3cr3t-build-arg-value", "--build-arg", "VERSION=2"});
  ASSERT_EQ(o.process.exit_code, 0) << o.process.err;
  EXPECT_EQ(o.why["stage-0 RUN echo $VERSION > /version"], "build arg VERSION changed");
  Outcome token = build({"--build-arg", "API_TOKEN=another-s3cr3t", "--build-arg", "VERSION=2"});
  EXPECT_EQ(token.why["stage-0 RUN echo $VERSION > /version"], "build arg API_TOKEN changed");
  // The step history holds digests of build-arg values, never the values.
  for (const auto& entry : fs::recursive_directory_iterator(store_.path() / "store" / "cache")) {
    if (!entry.is_regular_file())
      continue;
    std::ifstream in(entry.path());
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(text.find("s3cr3t"), std::string::npos) << entry.path();
  }
}

TEST_F(Cache, ExplainNamesANewBaseImageDigest) {
  write("Containerfile", "FROM busybox:latest\nRUN echo x > /x\nRUN echo y > /y\n");
  ASSERT_EQ(build().process.exit_code, 0);
  std::ofstream(busybox_dir() / "rootfs" / "extra") << "new\n";
  ProcessResult rebuilt = kiln({"build", "-t", "busybox:latest", busybox_dir().string()});
  fs::remove(busybox_dir() / "rootfs" / "extra");
  ASSERT_EQ(rebuilt.exit_code, 0) << rebuilt.err;
  Outcome o = build({"--explain"});
  ASSERT_EQ(o.process.exit_code, 0) << o.process.err;
  EXPECT_THAT(o.why["stage-0 RUN echo x > /x"],
              ::testing::MatchesRegex("base image changed: busybox:latest@sha256:[0-9a-f]{12} "
                                      "\\(was busybox:latest@sha256:[0-9a-f]{12}\\)"));
  EXPECT_EQ(o.why["stage-0 RUN echo y > /y"], "input changed upstream");
  EXPECT_THAT(o.explain.value("summary", ""), HasSubstr("1 base image changed"));
}

TEST_F(Cache, ExplainNamesBindMountFilesInstructionEditsAndNoCache) {
  write("Containerfile",
        "FROM busybox:latest\nRUN --mount=type=bind,source=conf,target=/conf cat /conf/a > /a\n");
  write("conf/a", "1\n");
  ASSERT_EQ(build().process.exit_code, 0);
  write("conf/a", "2\n");
  EXPECT_EQ(build().why["stage-0 RUN --mount=type=bind,source=conf,target=/conf cat /conf/a > /a"],
            "context file conf/a changed (bind mount /conf)");
  write("Containerfile",
        "FROM busybox:latest\nRUN --mount=type=bind,source=conf,target=/conf cat /conf/a > /b\n");
  EXPECT_EQ(build().why["stage-0 RUN --mount=type=bind,source=conf,target=/conf cat /conf/a > /b"],
            "the instruction changed (it was: RUN --mount=type=bind,source=conf,target=/conf cat "
            "/conf/a > /a)");
  EXPECT_EQ(build({"--no-cache"})
                .why["stage-0 RUN --mount=type=bind,source=conf,target=/conf cat /conf/a > /b"],
            "--no-cache");
}

TEST_F(Cache, ExplainHistoryIsPrunedWithTheCache) {
  write("Containerfile", "FROM busybox:latest\nCOPY a.txt /a\n");
  write("a.txt", "a\n");
  ASSERT_EQ(build().process.exit_code, 0);
  fs::path inputs = store_.path() / "store" / "cache" / "inputs";
  ASSERT_FALSE(fs::is_empty(inputs));
  ProcessResult pruned = kiln({"prune", "--all"});
  ASSERT_EQ(pruned.exit_code, 0) << pruned.err;
  EXPECT_TRUE(!fs::exists(inputs) || fs::is_empty(inputs));
  EXPECT_TRUE(!fs::exists(store_.path() / "store" / "cache" / "steps") ||
              fs::is_empty(store_.path() / "store" / "cache" / "steps"));
  ASSERT_EQ(kiln({"build", "-t", "busybox:latest", busybox_dir().string()}).exit_code, 0);
  EXPECT_EQ(build().why["stage-0 COPY a.txt /a"], "no earlier build of this step");
}

// Two machines' stores sharing the cache through an OCI layout (--cache-to/--cache-from
// type=local). Base images are made with SOURCE_DATE_EPOCH so both stores have the same one, as
// they would after pulling it from a registry.
class CacheTransfer : public Cache {
 protected:
  ProcessResult in(const std::string& store, std::vector<std::string> args) {
    return run_kiln(
        args, {}, {},
        {"KILN_ROOT=" + (store_.path() / store).string(), "SOURCE_DATE_EPOCH=1700000000"});
  }
  Outcome build_in(const std::string& store, std::vector<std::string> extra) {
    std::vector<std::string> args = {"build", "--progress", "json"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(ctx_.path().string());
    Outcome o;
    o.process = in(store, args);
    std::istringstream lines(o.process.err);
    std::string line;
    while (std::getline(lines, line)) {
      nlohmann::json e = nlohmann::json::parse(line, nullptr, false);
      if (e.is_object() && e.value("event", "") == "done")
        o.steps[std::to_string(e["step"].get<int>())] = "done";
    }
    nlohmann::json result = nlohmann::json::parse(o.process.out, nullptr, false);
    if (result.is_object()) {
      o.image = result.value("image", "");
      o.steps["run"] = std::to_string(result.value("steps_run", -1));
    }
    return o;
  }
  void SetUp() override {
    for (const char* s : {"a", "b", "c"}) {
      ProcessResult r = in(s, {"build", "-t", "busybox:latest", busybox_dir().string()});
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
    write("Containerfile",
          "FROM busybox:latest AS tools\nRUN echo tool > /tool\n"
          "FROM busybox:latest\nCOPY a.txt /a.txt\nRUN cat /a.txt > /copy\n"
          "COPY --from=tools /tool /tool\nRUN cat /tool /copy > /both\n");
    write("a.txt", "a\n");
  }
  fs::path layout() const { return store_.path() / "cache-layout"; }
};

TEST_F(CacheTransfer, AnEmptyStoreGetsEveryStepFromAnExportedCache) {
  // The build is not reproducible by itself (no SOURCE_DATE_EPOCH for it): only the cache can
  // make store b produce store a's image.
  Outcome a = build_in("a", {"--cache-to", "type=local,mode=max,dest=" + layout().string()});
  ASSERT_EQ(a.process.exit_code, 0) << a.process.err;
  EXPECT_EQ(a.steps["run"], "5");
  Outcome b = build_in("b", {"--cache-from", "type=local,src=" + layout().string()});
  ASSERT_EQ(b.process.exit_code, 0) << b.process.err;
  EXPECT_EQ(b.steps["run"], "0");
  EXPECT_EQ(b.image, a.image);
  ProcessResult check = in("b", {"check"});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
}

TEST_F(CacheTransfer, ModeMinExportsOnlyTheTargetStage) {
  ASSERT_EQ(build_in("a", {"--cache-to", "type=local,dest=" + layout().string()}).process.exit_code,
            0);
  Outcome b = build_in("b", {"--cache-from", "type=local,src=" + layout().string()});
  ASSERT_EQ(b.process.exit_code, 0) << b.process.err;
  EXPECT_EQ(b.steps["run"], "1");  // the tools stage's RUN; the target's four steps hit
}

TEST_F(CacheTransfer, ABrokenCacheLayerMeansRunningTheStepNotFailing) {
  ASSERT_EQ(build_in("a", {"--cache-to", "type=local,mode=max,dest=" + layout().string()})
                .process.exit_code,
            0);
  for (const auto& entry : fs::directory_iterator(layout() / "blobs" / "sha256")) {
    std::ifstream blob(entry.path(), std::ios::binary);
    if (blob.get() == 0x1f && blob.get() == 0x8b)  // a gzip layer, not a JSON document
      std::ofstream(entry.path(), std::ios::app) << "garbage";
  }
  Outcome c = build_in("c", {"--cache-from", "type=local,src=" + layout().string()});
  ASSERT_EQ(c.process.exit_code, 0) << c.process.err;
  EXPECT_THAT(c.process.err, HasSubstr("running the step instead"));
  ProcessResult check = in("c", {"check"});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
}

TEST_F(CacheTransfer, AnUnreadableCacheIsAWarning) {
  fs::create_directories(layout());
  std::ofstream(layout() / "index.json") << "{not json";
  Outcome b = build_in("b", {"--cache-from", "type=local,src=" + layout().string()});
  ASSERT_EQ(b.process.exit_code, 0) << b.process.err;
  EXPECT_THAT(b.process.err, HasSubstr("building without it"));
}

TEST_F(CacheTransfer, NoCacheAtTheSourceIsNotAnError) {
  Outcome b =
      build_in("b", {"--cache-from", "type=local,src=" + (store_.path() / "none").string()});
  ASSERT_EQ(b.process.exit_code, 0) << b.process.err;
  EXPECT_THAT(b.process.err, HasSubstr("No cache to import"));
}

}  // namespace
}  // namespace kiln::test
