#include "kiln/solver/progress_renderer.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"

namespace kiln::solver {
namespace {

using Kind = ProgressEvent::Kind;
using ::testing::HasSubstr;

// A clock the test moves by hand; the tty refresher reads it from its own thread.
struct FakeClock {
  std::atomic<double> now{0};
  std::function<double()> function() {
    return [this] { return now.load(); };
  }
};

ProgressEvent event(Kind kind, size_t step, std::string text = "", double seconds = 0) {
  ProgressEvent e;
  e.kind = kind;
  e.step = step;
  e.text = std::move(text);
  e.seconds = seconds;
  return e;
}
ProgressEvent started(size_t step, std::string name) {
  ProgressEvent e = event(Kind::kStarted, step);
  e.name = std::move(name);
  return e;
}
ProgressEvent output(size_t step, std::string line) {
  return event(Kind::kOutput, step, std::move(line));
}
ProgressEvent ended(Kind kind, size_t step, double seconds, std::string error = "") {
  return event(kind, step, std::move(error), seconds);
}
ProgressEvent message(std::string text) {
  return event(Kind::kMessage, 0, std::move(text));
}
ProgressEvent build_done(std::string image, std::string manifest, double seconds) {
  ProgressEvent e = event(Kind::kBuildDone, 0, std::move(image), seconds);
  e.detail = std::move(manifest);
  return e;
}

const char kMakeError[] = "process \"/bin/sh -c make\" did not complete successfully: exit code: 2";

// Two stages that interleave: one step of each is cached, done, failed and canceled, with output
// and a message in between; the build fails. Each event happens at its clock time.
void play_failed_build(ProgressSink& sink, FakeClock& clock) {
  auto at = [&](double time, const ProgressEvent& e) {
    clock.now = time;
    sink.event(e);
  };
  at(0.0, started(1, "[base 1/2] FROM docker.io/library/alpine:3.19"));
  at(0.1, started(2, "[build 1/3] COPY . /src"));
  at(0.2, ended(Kind::kCached, 2, 0));
  at(0.25, started(3, "[build 2/3] RUN make"));
  at(0.5, output(3, "cc -c main.c"));
  at(0.7, ended(Kind::kDone, 1, 0.7));
  at(0.8, message("warning: no .containerignore"));
  at(1.0, output(3, "main.c:1: error: expected ';'"));
  at(1.25, ended(Kind::kFailed, 3, 1.0, kMakeError));
  at(1.3, started(4, "[base 2/2] RUN sleep 10"));
  at(1.5, ended(Kind::kCanceled, 4, 0.2));
  at(1.5, build_done("", "", 1.5));
}

// The screen a terminal shows after `bytes`, for the sequences the tty renderer writes: text,
// newline, cursor up (CSI n A), clear line (CSI 2 K) and erase below (CSI J). Trailing empty
// rows are dropped.
std::vector<std::string> screen(std::string_view bytes) {
  std::vector<std::string> rows(1);
  size_t row = 0, column = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    char c = bytes[i];
    if (c == '\n') {
      column = 0;
      if (++row == rows.size())
        rows.emplace_back();
    } else if (c == '\x1b') {
      EXPECT_EQ(bytes.at(i + 1), '[') << "an escape that is not CSI at " << i;
      size_t end = bytes.find_first_of("AKJ", i + 2);
      std::string parameter(bytes.substr(i + 2, end - i - 2));
      switch (bytes[end]) {
        case 'A':
          row -= std::min(row, parameter.empty() ? size_t{1} : std::stoul(parameter));
          break;
        case 'K':
          EXPECT_EQ(parameter, "2");
          rows[row].assign(column, ' ');
          break;
        case 'J':
          EXPECT_EQ(parameter, "");
          rows[row].resize(std::min(rows[row].size(), column));
          rows.resize(row + 1);
          break;
      }
      i = end;
    } else {
      if (rows[row].size() <= column)
        rows[row].resize(column + 1, ' ');
      rows[row][column++] = c;
    }
  }
  while (!rows.empty() && rows.back().empty())
    rows.pop_back();
  return rows;
}

// A string buffer that the tty refresher may write to while the test reads it.
class SharedBuffer : public std::stringbuf {
 public:
  std::string snapshot() {
    std::lock_guard lock(mutex_);
    return str();
  }

 protected:
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    std::lock_guard lock(mutex_);
    return std::stringbuf::xsputn(s, n);
  }
  int_type overflow(int_type c) override {
    std::lock_guard lock(mutex_);
    return std::stringbuf::overflow(c);
  }

 private:
  std::recursive_mutex mutex_;  // xsputn may call overflow
};

std::unique_ptr<ProgressSink> make_tty_sink(std::ostream& out, FakeClock& clock) {
  setenv("COLUMNS", "60", 1);
  return make_progress_sink(ProgressMode::kTty, out, clock.function());
}

TEST(ProgressMode, AutoIsTtyOnATerminalAndPlainOtherwise) {
  EXPECT_EQ(parse_progress_mode("auto", true), ProgressMode::kTty);
  EXPECT_EQ(parse_progress_mode("auto", false), ProgressMode::kPlain);
}

TEST(ProgressMode, NamedModesIgnoreTheTerminal) {
  for (bool terminal : {true, false}) {
    EXPECT_EQ(parse_progress_mode("tty", terminal), ProgressMode::kTty);
    EXPECT_EQ(parse_progress_mode("plain", terminal), ProgressMode::kPlain);
    EXPECT_EQ(parse_progress_mode("json", terminal), ProgressMode::kJson);
    EXPECT_EQ(parse_progress_mode("quiet", terminal), ProgressMode::kQuiet);
  }
}

TEST(ProgressMode, RejectsUnknownModesNamingTheValue) {
  for (std::string_view bad : {"fancy", "", "TTY", "plain "}) {
    try {
      parse_progress_mode(bad, true);
      ADD_FAILURE() << "accepted " << quote(bad);
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(quote(bad)));
      EXPECT_THAT(e.what(), HasSubstr("auto, tty, plain, json or quiet"));
    }
  }
}

TEST(ProgressPlain, PrintsEveryLineWithItsStepIdLikeBuildKit) {
  std::ostringstream out;
  FakeClock clock;
  auto sink = make_progress_sink(ProgressMode::kPlain, out, clock.function());
  play_failed_build(*sink, clock);
  sink->finish();
  EXPECT_EQ(out.str(),
            "#1 [base 1/2] FROM docker.io/library/alpine:3.19\n"
            "\n"
            "#2 [build 1/3] COPY . /src\n"
            "#2 CACHED\n"
            "\n"
            "#3 [build 2/3] RUN make\n"
            "#3 0.250 cc -c main.c\n"
            "\n"
            "#1 DONE 0.7s\n"
            "\n"
            "warning: no .containerignore\n"
            "\n"
            "#3 0.750 main.c:1: error: expected ';'\n"
            "#3 ERROR: process \"/bin/sh -c make\" did not complete successfully: exit code: 2\n"
            "\n"
            "#4 [base 2/2] RUN sleep 10\n"
            "#4 CANCELED\n"
            "\n"
            "Build failed after 1.5s\n");
}

TEST(ProgressPlain, NamesTheImageAndManifestOfASuccessfulBuild) {
  std::ostringstream out;
  auto sink = make_progress_sink(ProgressMode::kPlain, out, [] { return 0.0; });
  sink->event(build_done("sha256:aaa", "sha256:bbb", 3.42));
  EXPECT_EQ(out.str(), "Built image sha256:aaa (manifest sha256:bbb) in 3.4s\n");
}

TEST(ProgressPlain, MultiLineErrorsAndMessagesKeepEveryLineWhole) {
  std::ostringstream out;
  auto sink = make_progress_sink(ProgressMode::kPlain, out, [] { return 0.0; });
  sink->event(started(7, "[a 1/1] RUN <<EOF\nmake\nEOF"));
  sink->event(ended(Kind::kFailed, 7, 0.5, "exit code: 2\nlast line\n"));
  sink->event(message("one\ntwo\n"));
  EXPECT_EQ(out.str(),
            "#7 [a 1/1] RUN <<EOF make EOF\n"
            "#7 ERROR: exit code: 2\n"
            "#7 last line\n"
            "\n"
            "one\n"
            "two\n");
}

TEST(ProgressPlain, IgnoresEventsAfterFinish) {
  std::ostringstream out;
  auto sink = make_progress_sink(ProgressMode::kPlain, out, [] { return 0.0; });
  sink->event(message("before"));
  sink->finish();
  sink->finish();
  sink->event(message("after"));
  EXPECT_EQ(out.str(), "before\n");
}

TEST(ProgressPlain, ConcurrentEventsNeverSplitALine) {
  std::ostringstream out;
  auto sink = make_progress_sink(ProgressMode::kPlain, out);
  constexpr int kThreads = 4, kEvents = 500;
  std::vector<std::thread> threads;
  for (int t = 1; t <= kThreads; ++t) {
    threads.emplace_back([&sink, t] {
      for (int i = 0; i < kEvents; ++i)
        sink->event(output(static_cast<size_t>(t), "thread " + std::to_string(t) + " line " +
                                                       std::to_string(i) + std::string(40, '.')));
    });
  }
  for (std::thread& thread : threads)
    thread.join();
  sink->finish();

  std::regex line_format(R"(#(\d) \d+\.\d{3} thread (\d) line (\d+)\.{40})");
  std::vector<int> next(kThreads + 1, 0);
  int lines = 0;
  for (const std::string& line : split(out.str(), '\n')) {
    if (line.empty())
      continue;  // between runs of different steps, and after the last line
    std::smatch match;
    ASSERT_TRUE(std::regex_match(line, match, line_format)) << line;
    int thread = std::stoi(match[2]);
    EXPECT_EQ(std::stoi(match[1]), thread);
    EXPECT_EQ(std::stoi(match[3]), next[thread]++) << "thread " << thread << "'s lines in order";
    ++lines;
  }
  EXPECT_EQ(lines, kThreads * kEvents);
}

TEST(ProgressQuiet, PrintsOnlyWarningsAndErrors) {
  std::ostringstream out;
  FakeClock clock;
  auto sink = make_progress_sink(ProgressMode::kQuiet, out, clock.function());
  play_failed_build(*sink, clock);
  sink->event(message("Tagged app:1"));
  sink->event(message("WARNING: cache unreadable"));
  sink->finish();
  EXPECT_EQ(out.str(), std::string("warning: no .containerignore\n") +
                           "ERROR: [build 2/3] RUN make: " + kMakeError + "\n" +
                           "WARNING: cache unreadable\n");
}

TEST(ProgressJson, WritesOneObjectPerEventWithTheClockTime) {
  std::ostringstream out;
  FakeClock clock;
  auto sink = make_progress_sink(ProgressMode::kJson, out, clock.function());
  play_failed_build(*sink, clock);
  sink->finish();

  std::vector<nlohmann::json> events;
  for (const std::string& line : split(out.str(), '\n')) {
    if (!line.empty())
      events.push_back(nlohmann::json::parse(line));
  }
  ASSERT_EQ(events.size(), 12u);
  EXPECT_EQ(events[0], nlohmann::json::parse(R"({"event":"started","step":1,
      "name":"[base 1/2] FROM docker.io/library/alpine:3.19","time":0.0})"));
  EXPECT_EQ(events[2],
            nlohmann::json::parse(R"({"event":"cached","step":2,"seconds":0.0,"time":0.2})"));
  EXPECT_EQ(events[4], nlohmann::json::parse(
                           R"({"event":"output","step":3,"line":"cc -c main.c","time":0.5})"));
  EXPECT_EQ(events[5],
            nlohmann::json::parse(R"({"event":"done","step":1,"seconds":0.7,"time":0.7})"));
  EXPECT_EQ(events[6], nlohmann::json::parse(
                           R"({"event":"message","text":"warning: no .containerignore",
                               "time":0.8})"));
  EXPECT_EQ(events[8], (nlohmann::json{{"event", "failed"},
                                       {"step", 3},
                                       {"seconds", 1.0},
                                       {"error", kMakeError},
                                       {"time", 1.25}}));
  EXPECT_EQ(events[10],
            nlohmann::json::parse(R"({"event":"canceled","step":4,"seconds":0.2,"time":1.5})"));
  EXPECT_EQ(events[11],
            nlohmann::json::parse(R"({"event":"build","success":false,"seconds":1.5,"time":1.5})"));
  EXPECT_TRUE(starts_with(out.str(), R"({"event":"started","step":1,)"))
      << "the kind of event comes first, for people reading the stream";
}

TEST(ProgressJson, ReportsASuccessfulBuildAndSurvivesOutputThatIsNotUtf8) {
  std::ostringstream out;
  auto sink = make_progress_sink(ProgressMode::kJson, out, [] { return 2.0004; });
  sink->event(output(1, "caf\xe9"));
  sink->event(build_done("sha256:aaa", "sha256:bbb", 3.4));
  std::vector<std::string> lines = split(out.str(), '\n');
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(nlohmann::json::parse(lines[0])["line"], "caf\xef\xbf\xbd");
  EXPECT_EQ(nlohmann::json::parse(lines[1]),
            nlohmann::json::parse(R"({"event":"build","success":true,"image":"sha256:aaa",
                                      "manifest":"sha256:bbb","seconds":3.4,"time":2.0})"));
}

TEST(ProgressTty, FinalFrameShowsEveryStepThenWhyTheBuildFailed) {
  std::ostringstream out;
  FakeClock clock;
  auto sink = make_tty_sink(out, clock);
  play_failed_build(*sink, clock);
  sink->finish();
  EXPECT_EQ(
      screen(out.str()),
      std::vector<std::string>(
          {"warning: no .containerignore", "[+] Building 1.5s (4/4) FINISHED",
           " => [base 1/2] FROM docker.io/library/alpine:3.19       0.7s",
           " => CACHED [build 1/3] COPY . /src                      0.0s",
           " => ERROR [build 2/3] RUN make                          1.0s",
           " => CANCELED [base 2/2] RUN sleep 10                    0.2s", "------",
           " > [build 2/3] RUN make:", "cc -c main.c", "main.c:1: error: expected ';'", "------",
           std::string("ERROR: [build 2/3] RUN make: ") + kMakeError, "Build failed after 1.5s"}));
}

TEST(ProgressTty, RunningStepShowsItsLastSixOutputLines) {
  SharedBuffer buffer;
  std::ostream out(&buffer);
  FakeClock clock;
  auto sink = make_tty_sink(out, clock);
  sink->event(started(1, "[build 2/5] RUN make"));
  for (int i = 1; i <= 6; ++i)
    sink->event(output(1, "line " + std::to_string(i)));
  sink->event(output(1, "downloading 50%\rdownloading 100%"));
  sink->event(output(1, "\x1b[31mred\x1b[0m\tand tabbed"));
  sink->event(output(1, std::string(100, 'x')));
  clock.now = 4.125;
  sink->event(started(2, "[other 1/1] FROM scratch"));  // a step starting redraws at once
  EXPECT_EQ(screen(buffer.snapshot()),
            std::vector<std::string>(
                {"[+] Building 4.1s (0/2)",
                 " => [build 2/5] RUN make                                4.1s", " => => # line 4",
                 " => => # line 5", " => => # line 6", " => => # downloading 100%",
                 " => => # red and tabbed", " => => # " + std::string(51, 'x'),
                 " => [other 1/1] FROM scratch                            0.0s"}));

  clock.now = 6.0;
  sink->event(ended(Kind::kDone, 1, 6.0));
  sink->event(ended(Kind::kDone, 2, 2.0));
  sink->finish();
  EXPECT_EQ(
      screen(buffer.snapshot()),
      std::vector<std::string>({"[+] Building 6.0s (2/2) FINISHED",
                                " => [build 2/5] RUN make                                6.0s",
                                " => [other 1/1] FROM scratch                            2.0s"}));
}

TEST(ProgressTty, RefreshesRunningTimesWithoutEvents) {
  SharedBuffer buffer;
  std::ostream out(&buffer);
  FakeClock clock;
  auto sink = make_tty_sink(out, clock);
  sink->event(started(1, "[build 1/1] RUN sleep 3"));
  clock.now = 2.5;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::vector<std::string> rows;
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    rows = screen(buffer.snapshot());
  } while (rows.at(0) != "[+] Building 2.5s (0/1)" && std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(rows, std::vector<std::string>(
                      {"[+] Building 2.5s (0/1)",
                       " => [build 1/1] RUN sleep 3                             2.5s"}));
}

TEST(ProgressTty, MessagesGoAboveTheLiveView) {
  std::ostringstream out;
  FakeClock clock;
  auto sink = make_tty_sink(out, clock);
  sink->event(started(1, "[a 1/1] RUN true"));
  sink->event(message("first"));
  sink->event(message("second\nthird"));
  sink->event(ended(Kind::kDone, 1, 0));
  sink->event(build_done("sha256:aaa", "sha256:bbb", 0.25));
  sink->finish();
  EXPECT_EQ(screen(out.str()), std::vector<std::string>(
                                   {"first", "second", "third", "[+] Building 0.0s (1/1) FINISHED",
                                    " => [a 1/1] RUN true                                    0.0s",
                                    "Built image sha256:aaa (manifest sha256:bbb) in 0.2s"}));
}

TEST(ProgressTty, ShowsTheLatestStepsAndRunningOnesWhenTheyDoNotFit) {
  std::ostringstream out;
  FakeClock clock;
  auto sink = make_tty_sink(out, clock);
  sink->event(started(1, "[a 1/1] RUN long"));
  sink->event(output(1, "still going"));
  for (size_t step = 2; step <= 40; ++step) {
    sink->event(started(step, "[b " + std::to_string(step) + "/40] RUN true"));
    sink->event(ended(Kind::kDone, step, 0));
  }
  sink->finish();
  std::vector<std::string> rows = screen(out.str());
  ASSERT_EQ(rows.size(), 30u);
  EXPECT_EQ(rows[0], "[+] Building 0.0s (39/40) FINISHED");
  EXPECT_THAT(rows[1], HasSubstr("[a 1/1] RUN long"));
  EXPECT_EQ(rows[2], " => => # still going");
  EXPECT_THAT(rows[3], HasSubstr("[b 14/40] RUN true"));
  EXPECT_THAT(rows[29], HasSubstr("[b 40/40] RUN true"));
}

TEST(ProgressTty, ClipsLongNamesButKeepsTheTime) {
  std::ostringstream out;
  FakeClock clock;
  auto sink = make_tty_sink(out, clock);
  sink->event(started(1, "[a 1/1] RUN " + std::string(100, 'y')));
  sink->event(ended(Kind::kDone, 1, 12.5));
  sink->finish();
  std::vector<std::string> rows = screen(out.str());
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1], " => [a 1/1] RUN " + std::string(38, 'y') + " 12.5s");
  EXPECT_EQ(rows[1].size(), 60u);
}

TEST(ProgressTty, ConcurrentStepsEndInOneConsistentFrame) {
  std::ostringstream out;
  auto sink = make_progress_sink(ProgressMode::kTty, out);  // the real clock, the real refresher
  std::vector<std::thread> threads;
  for (size_t t = 1; t <= 4; ++t) {
    threads.emplace_back([&sink, t] {
      sink->event(started(t, "[s" + std::to_string(t) + " 1/1] RUN work"));
      for (int i = 0; i < 500; ++i) {
        sink->event(output(t, "line " + std::to_string(i)));
        if (i % 100 == 0)
          std::this_thread::sleep_for(std::chrono::milliseconds(30));  // let the refresher in
      }
      sink->event(ended(Kind::kDone, t, 1.0));
    });
  }
  for (std::thread& thread : threads)
    thread.join();
  sink->finish();
  std::vector<std::string> rows = screen(out.str());
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_THAT(rows[0], HasSubstr("(4/4) FINISHED"));
  for (size_t t = 1; t <= 4; ++t)
    EXPECT_THAT(rows[t], HasSubstr("[s" + std::to_string(t) + " 1/1] RUN work"));
}

TEST(ProgressTty, DrawsNothingForABuildWithoutEventsAndFinishesOnce) {
  std::ostringstream idle;
  FakeClock clock;
  make_tty_sink(idle, clock)->finish();
  EXPECT_EQ(idle.str(), "");

  std::ostringstream out;
  auto sink = make_tty_sink(out, clock);
  sink->event(started(1, "[a 1/1] RUN true"));
  sink->finish();
  sink->finish();
  sink->event(message("late"));
  sink.reset();
  std::string text = out.str();
  EXPECT_EQ(text.find("FINISHED"), text.rfind("FINISHED"));
  EXPECT_NE(text.find("FINISHED"), std::string::npos);
  EXPECT_EQ(text.find("late"), std::string::npos);
}

}  // namespace
}  // namespace kiln::solver
