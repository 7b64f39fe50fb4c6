#include "kiln/solver/progress_renderer.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "kiln/base/error.hpp"
#include "kiln/base/strings.hpp"

namespace kiln::solver {
namespace {

using Kind = ProgressEvent::Kind;

// `seconds` with `decimals` digits after the point; negative values (a clock that stepped back)
// show as zero.
std::string seconds_text(double seconds, int decimals) {
  char text[32];
  std::snprintf(text, sizeof text, "%.*f", decimals, std::max(seconds, 0.0));
  return text;
}

// The lines of a message or an error, without a trailing empty one.
std::vector<std::string> lines_of(std::string_view text) {
  while (!text.empty() && text.back() == '\n')
    text.remove_suffix(1);
  return split(text, '\n');
}

// A step name on one line: RUN instructions with heredocs have newlines in their names.
std::string one_line(std::string_view text) {
  std::string line(text);
  std::replace(line.begin(), line.end(), '\n', ' ');
  return line;
}

// kBuildDone as plain and tty show it.
std::string build_summary(const ProgressEvent& e) {
  if (e.text.empty())
    return "Build failed after " + seconds_text(e.seconds, 1) + "s";
  std::string manifest = e.detail.empty() ? "" : " (manifest " + e.detail + ")";
  return "Built image " + e.text + manifest + " in " + seconds_text(e.seconds, 1) + "s";
}

// What every sink shares: one mutex around all it does (so that lines never mix), the clock,
// which is only called under that mutex, and the end.
class LockedSink : public ProgressSink {
 public:
  LockedSink(std::ostream& out, std::function<double()> clock)
      : out_(out), clock_(std::move(clock)) {}
  // A sink whose finish() does more overrides it and calls it from its own destructor.
  ~LockedSink() override { LockedSink::finish(); }
  LockedSink(const LockedSink&) = delete;
  LockedSink& operator=(const LockedSink&) = delete;

  void event(const ProgressEvent& e) final {
    std::lock_guard lock(mutex_);
    if (finished_)
      return;
    render(e, clock_());
    out_.flush();
  }

  void finish() override {
    std::lock_guard lock(mutex_);
    finished_ = true;
    out_.flush();
  }

 protected:
  // Called under mutex_ with clock() at the event.
  virtual void render(const ProgressEvent& e, double now) = 0;

  std::mutex mutex_;
  std::ostream& out_;
  std::function<double()> clock_;
  bool finished_ = false;
};

class PlainSink final : public LockedSink {
 public:
  using LockedSink::LockedSink;

 private:
  void render(const ProgressEvent& e, double now) override {
    switch (e.kind) {
      case Kind::kStarted:
        started_[e.step] = now;
        step_line(e.step, one_line(e.name));
        break;
      case Kind::kExplain:
        step_line(e.step, "cache miss: " + e.text);
        break;
      case Kind::kOutput:
        step_line(e.step, seconds_text(now - started(e.step, now), 3) + " " + e.text);
        break;
      case Kind::kDone:
        step_line(e.step, "DONE " + seconds_text(e.seconds, 1) + "s");
        started_.erase(e.step);
        break;
      case Kind::kCached:
        step_line(e.step, "CACHED");
        started_.erase(e.step);
        break;
      case Kind::kFailed: {
        std::vector<std::string> lines = lines_of(e.text);
        step_line(e.step, "ERROR: " + lines.front());
        for (size_t i = 1; i < lines.size(); ++i)
          step_line(e.step, lines[i]);
        started_.erase(e.step);
        break;
      }
      case Kind::kCanceled:
        step_line(e.step, "CANCELED");
        started_.erase(e.step);
        break;
      case Kind::kMessage:
        enter_group(kNoStep);
        for (const std::string& line : lines_of(e.text))
          out_ << line << '\n';
        break;
      case Kind::kBuildDone:
        enter_group(kNoStep);
        out_ << build_summary(e) << '\n';
        break;
    }
  }

  // When the step started; a step whose kStarted never came is taken to start now.
  double started(size_t step, double now) { return started_.try_emplace(step, now).first->second; }

  void step_line(size_t step, std::string_view text) {
    enter_group(step);
    out_ << '#' << step << ' ' << text << '\n';
  }

  // As BuildKit does, a blank line separates runs of lines that belong to different steps.
  void enter_group(size_t group) {
    if (last_group_ && *last_group_ != group)
      out_ << '\n';
    last_group_ = group;
  }

  static constexpr size_t kNoStep = 0;  // the group of messages and the build's summary
  std::map<size_t, double> started_;
  std::optional<size_t> last_group_;
};

class JsonSink final : public LockedSink {
 public:
  using LockedSink::LockedSink;

 private:
  static double milliseconds(double seconds) { return std::round(seconds * 1000) / 1000; }

  void render(const ProgressEvent& e, double now) override {
    nlohmann::ordered_json j;
    switch (e.kind) {
      case Kind::kStarted:
        j["event"] = "started";
        j["step"] = e.step;
        j["name"] = e.name;
        break;
      case Kind::kExplain:
        j["event"] = "miss";
        j["step"] = e.step;
        j["cause"] = e.detail;
        j["reason"] = e.text;
        break;
      case Kind::kOutput:
        j["event"] = "output";
        j["step"] = e.step;
        j["line"] = e.text;
        break;
      case Kind::kDone:
      case Kind::kCached:
      case Kind::kFailed:
      case Kind::kCanceled:
        j["event"] = e.kind == Kind::kDone     ? "done"
                     : e.kind == Kind::kCached ? "cached"
                     : e.kind == Kind::kFailed ? "failed"
                                               : "canceled";
        j["step"] = e.step;
        j["seconds"] = milliseconds(e.seconds);
        if (e.kind == Kind::kFailed)
          j["error"] = e.text;
        break;
      case Kind::kMessage:
        j["event"] = "message";
        j["text"] = e.text;
        break;
      case Kind::kBuildDone:
        j["event"] = "build";
        j["success"] = !e.text.empty();
        if (!e.text.empty()) {
          j["image"] = e.text;
          j["manifest"] = e.detail;
        }
        j["seconds"] = milliseconds(e.seconds);
        break;
    }
    j["time"] = milliseconds(now);
    // A program's output need not be UTF-8; JSON must be.
    out_ << j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << '\n';
  }
};

class QuietSink final : public LockedSink {
 public:
  using LockedSink::LockedSink;

 private:
  void render(const ProgressEvent& e, double /*now*/) override {
    switch (e.kind) {
      case Kind::kStarted:
        names_[e.step] = one_line(e.name);
        break;
      case Kind::kFailed:
        out_ << "ERROR: " << names_[e.step] << ": " << e.text << '\n';
        names_.erase(e.step);
        break;
      case Kind::kDone:
      case Kind::kCached:
      case Kind::kCanceled:
        names_.erase(e.step);
        break;
      case Kind::kMessage:
        if (!starts_with(to_lower(e.text.substr(0, 7)), "warning"))
          break;  // "Tagged ...", "Pushed ...": quiet means the result alone
        for (const std::string& line : lines_of(e.text))
          out_ << line << '\n';
        break;
      case Kind::kExplain:
      case Kind::kOutput:
      case Kind::kBuildDone:
        break;
    }
  }

  std::map<size_t, std::string> names_;
};

// What a terminal would show of a program's output line: the text after its last carriage
// return (progress bars redraw themselves with \r), without escape sequences or other control
// characters, which would break the view; tabs and newlines become spaces.
std::string printable(std::string_view line) {
  while (!line.empty() && line.back() == '\r')
    line.remove_suffix(1);
  if (size_t cr = line.rfind('\r'); cr != std::string_view::npos)
    line.remove_prefix(cr + 1);
  std::string text;
  for (size_t i = 0; i < line.size(); ++i) {
    auto c = static_cast<unsigned char>(line[i]);
    if (c == 0x1b && i + 1 < line.size() && line[i + 1] == '[') {  // CSI: up to a final byte
      for (i += 2; i < line.size(); ++i) {
        auto b = static_cast<unsigned char>(line[i]);
        if (b >= 0x40 && b <= 0x7e)
          break;
      }
    } else if (c == 0x1b && i + 1 < line.size() && line[i + 1] == ']') {  // OSC: up to BEL or ST
      for (i += 2; i < line.size() && line[i] != '\a'; ++i) {
        if (line[i] == 0x1b) {
          ++i;
          break;
        }
      }
    } else if (c == '\t' || c == '\n') {
      text += ' ';
    } else if (c >= 0x20 && c != 0x7f) {
      text += line[i];
    }
  }
  return text;
}

// Terminal columns taken by UTF-8 `text`: one per code point (wide characters aside).
size_t columns_of(std::string_view text) {
  return static_cast<size_t>(std::count_if(text.begin(), text.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xc0) != 0x80;
  }));
}

// `text` cut to at most `columns` columns, never inside a code point.
std::string_view clip(std::string_view text, size_t columns) {
  size_t seen = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xc0) == 0x80)
      continue;
    if (seen == columns)
      return text.substr(0, i);
    ++seen;
  }
  return text;
}

// The terminal `out` writes to, when it is one of the standard streams on a terminal.
std::optional<winsize> window_size(const std::ostream& out) {
  int fd = &out == &std::cout                         ? STDOUT_FILENO
           : &out == &std::cerr || &out == &std::clog ? STDERR_FILENO
                                                      : -1;
  winsize size{};
  if (fd < 0 || ioctl(fd, TIOCGWINSZ, &size) != 0 || size.ws_col == 0)
    return std::nullopt;
  return size;
}

std::optional<size_t> columns_from_environment() {
  const char* value = std::getenv("COLUMNS");
  if (value == nullptr)
    return std::nullopt;
  std::string_view text(value);
  size_t columns = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), columns);
  if (error != std::errc() || end != text.data() + text.size() || columns == 0)
    return std::nullopt;
  return columns;
}

class TtySink final : public LockedSink {
 public:
  TtySink(std::ostream& out, std::function<double()> clock)
      : LockedSink(out, std::move(clock)),
        environment_columns_(columns_from_environment().value_or(80)),
        refresher_([this] { refresh_until_finished(); }) {}

  ~TtySink() override { finish(); }

  void finish() override {
    {
      std::lock_guard lock(mutex_);
      if (finished_)
        return;
      finished_ = true;
    }
    wake_.notify_all();
    refresher_.join();
    std::lock_guard lock(mutex_);
    if (!drawing_)
      return;
    draw(clock_(), {}, /*final=*/true);
    for (const auto& [id, step] : steps_) {
      if (step.state != State::kFailed)
        continue;
      out_ << "------\n > " << step.name << ":\n";
      for (const std::string& line : step.last_lines)
        out_ << line << '\n';
      out_ << "------\nERROR: " << step.name << ": " << step.error << '\n';
    }
    if (build_summary_)
      out_ << *build_summary_ << '\n';
    out_.flush();
  }

 private:
  enum class State { kRunning, kDone, kCached, kFailed, kCanceled };

  struct Step {
    std::string name;
    State state = State::kRunning;
    double started = 0;  // clock() at kStarted
    double seconds = 0;  // the step's time, once it has ended
    std::string error;
    std::deque<std::string> last_lines;  // printable, at most kKeptLines
  };

  static constexpr size_t kTailLines = 6;      // shown under a running step
  static constexpr size_t kKeptLines = 10;     // shown under a failed step at the end
  static constexpr size_t kMaxViewLines = 30;  // header included
  static constexpr size_t kMinColumns = 20;    // room for a step's time and a bit of its name
  static constexpr auto kRefreshInterval = std::chrono::milliseconds(100);

  void render(const ProgressEvent& e, double now) override {
    drawing_ = true;
    std::vector<std::string> above;
    switch (e.kind) {
      case Kind::kStarted:
        step(e.step, now).name = printable(e.name);
        break;
      case Kind::kExplain:
        return;  // --explain prints the reasons after the build
      case Kind::kOutput: {
        std::deque<std::string>& lines = step(e.step, now).last_lines;
        lines.push_back(printable(e.text));
        if (lines.size() > kKeptLines)
          lines.pop_front();
        return;  // the refresher shows it; a chatty step must not cost a redraw per line
      }
      case Kind::kDone:
        end(e, now, State::kDone);
        break;
      case Kind::kCached:
        end(e, now, State::kCached);
        break;
      case Kind::kFailed:
        end(e, now, State::kFailed).error = e.text;
        break;
      case Kind::kCanceled:
        end(e, now, State::kCanceled);
        break;
      case Kind::kMessage:
        above = lines_of(e.text);
        break;
      case Kind::kBuildDone:
        build_summary_ = build_summary(e);
        break;
    }
    draw(now, above, /*final=*/false);
  }

  Step& step(size_t id, double now) {
    auto [it, inserted] = steps_.try_emplace(id);
    if (inserted)
      it->second.started = now;
    return it->second;
  }

  Step& end(const ProgressEvent& e, double now, State state) {
    Step& s = step(e.step, now);
    s.state = state;
    s.seconds = e.seconds;
    return s;
  }

  void refresh_until_finished() {
    std::unique_lock lock(mutex_);
    while (!wake_.wait_for(lock, kRefreshInterval, [this] { return finished_; })) {
      if (drawing_)
        draw(clock_(), {}, /*final=*/false);
    }
  }

  // Replaces the view drawn last with the current one, printing `above` (permanent lines)
  // first. Every line is cleared before it is written, and what is left below the new view
  // (when it is shorter than the old one) is erased.
  void draw(double now, const std::vector<std::string>& above, bool final) {
    std::string frame;
    if (drawn_lines_ > 0)
      frame += "\x1b[" + std::to_string(drawn_lines_) + "A";
    for (const std::string& line : above)
      frame += "\x1b[2K" + line + "\n";
    std::vector<std::string> lines = view(now, final);
    for (const std::string& line : lines)
      frame += "\x1b[2K" + line + "\n";
    frame += "\x1b[J";
    drawn_lines_ = lines.size();
    out_ << frame;
    out_.flush();
  }

  std::vector<std::string> view(double now, bool final) const {
    std::optional<winsize> size = window_size(out_);
    size_t columns = std::max<size_t>(size ? size->ws_col : environment_columns_, kMinColumns);
    size_t max_lines = kMaxViewLines;
    if (size && size->ws_row > 0)  // one row stays free for the cursor
      max_lines = std::clamp<size_t>(size->ws_row - 1u, 2, kMaxViewLines);

    size_t ended = static_cast<size_t>(std::count_if(
        steps_.begin(), steps_.end(), [](auto& s) { return s.second.state != State::kRunning; }));
    std::vector<std::string> lines;
    lines.emplace_back(clip("[+] Building " + seconds_text(now, 1) + "s (" + std::to_string(ended) +
                                "/" + std::to_string(steps_.size()) + ")" +
                                (final ? " FINISHED" : ""),
                            columns));

    for (const Step* s : shown_steps(max_lines - 1)) {
      lines.push_back(step_line(*s, now, columns));
      if (s->state != State::kRunning)
        continue;
      size_t tail = std::min(s->last_lines.size(), kTailLines);
      for (auto it = s->last_lines.end() - static_cast<std::ptrdiff_t>(tail);
           it != s->last_lines.end(); ++it)
        lines.emplace_back(clip(" => => # " + *it, columns));
    }
    return lines;
  }

  static size_t height(const Step& s) {
    return 1 + (s.state == State::kRunning ? std::min(s.last_lines.size(), kTailLines) : 0);
  }

  // The steps, in id order, whose lines fit in `room` lines: ended steps are hidden first, then
  // running ones, oldest first.
  std::vector<const Step*> shown_steps(size_t room) const {
    std::vector<const Step*> shown;
    size_t needed = 0;
    for (const auto& [id, s] : steps_) {
      shown.push_back(&s);
      needed += height(s);
    }
    for (bool hide_running : {false, true}) {
      for (const Step*& s : shown) {
        if (needed <= room)
          break;
        if (s != nullptr && (hide_running || s->state != State::kRunning)) {
          needed -= height(*s);
          s = nullptr;
        }
      }
    }
    std::erase(shown, nullptr);
    return shown;
  }

  // " => CACHED [build 1/5] COPY . /src      0.0s", the time at the right edge.
  static std::string step_line(const Step& s, double now, size_t columns) {
    std::string_view state = s.state == State::kCached     ? "CACHED "
                             : s.state == State::kFailed   ? "ERROR "
                             : s.state == State::kCanceled ? "CANCELED "
                                                           : "";
    double seconds = s.state == State::kRunning ? now - s.started : s.seconds;
    std::string time = seconds_text(seconds, 1) + "s";
    size_t room = columns - 1 - time.size();
    std::string line(clip(" => " + std::string(state) + s.name, room));
    line.append(room - columns_of(line) + 1, ' ');
    return line + time;
  }

  size_t environment_columns_;
  std::map<size_t, Step> steps_;
  std::optional<std::string> build_summary_;
  bool drawing_ = false;  // set by the first event: a build that never started draws nothing
  size_t drawn_lines_ = 0;
  std::condition_variable wake_;
  std::thread refresher_;  // last: it starts in the constructor and uses all the above
};

}  // namespace

ProgressMode parse_progress_mode(std::string_view text, bool is_terminal) {
  if (text == "auto")
    return is_terminal ? ProgressMode::kTty : ProgressMode::kPlain;
  if (text == "tty")
    return ProgressMode::kTty;
  if (text == "plain")
    return ProgressMode::kPlain;
  if (text == "json")
    return ProgressMode::kJson;
  if (text == "quiet")
    return ProgressMode::kQuiet;
  throw Error("invalid progress mode " + quote(text) + ": want auto, tty, plain, json or quiet");
}

std::unique_ptr<ProgressSink> make_progress_sink(ProgressMode mode, std::ostream& out,
                                                 std::function<double()> clock) {
  if (!clock) {
    clock = [start = std::chrono::steady_clock::now()] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
  }
  switch (mode) {
    case ProgressMode::kTty:
      return std::make_unique<TtySink>(out, std::move(clock));
    case ProgressMode::kPlain:
      return std::make_unique<PlainSink>(out, std::move(clock));
    case ProgressMode::kJson:
      return std::make_unique<JsonSink>(out, std::move(clock));
    case ProgressMode::kQuiet:
      return std::make_unique<QuietSink>(out, std::move(clock));
  }
  throw Error("make_progress_sink: invalid ProgressMode " + std::to_string(static_cast<int>(mode)));
}

}  // namespace kiln::solver
