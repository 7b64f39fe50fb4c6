// Progress renderers: ProgressSinks that show a build's events to a person or a program, in the
// styles of BuildKit's `--progress` (which `docker buildx build` users know).
//
// kPlain   Line oriented, for CI logs. Every line carries its step's id, so interleaved stages
//          stay readable; a blank line separates runs of lines that belong to different steps:
//            #3 [build 2/5] RUN make
//            #3 0.512 cc -c main.c          (seconds since the step started, then the line)
//            #3 DONE 1.2s                   (or "#3 CACHED", "#3 ERROR: <error>", "#3 CANCELED")
//            Built image sha256:… (manifest sha256:…) in 3.4s      (or "Build failed after 3.4s")
//          kMessage text is printed as it is, on lines of its own.
// kTty     A live view redrawn in place with ANSI escapes, by a background thread about every
//          100 ms and at once when a step starts or ends or a message arrives:
//            [+] Building 12.3s (5/9)                        (finished steps / steps seen)
//             => CACHED [build 1/5] COPY . /src                     0.0s
//             => [build 2/5] RUN make                               4.1s
//             => => # cc -c main.c                (the last 6 lines of each running step)
//          The view is as wide as the terminal (TIOCGWINSZ when `out` is std::cerr, std::clog or
//          std::cout and that fd is a terminal, else $COLUMNS, else 80) and at most 30 lines
//          high (fewer on a shorter terminal); when steps do not fit, finished steps are hidden
//          first, oldest first. Messages are printed above the view. finish() draws the final
//          view, then for each failed step its last output lines and its error, then the
//          kBuildDone line as in kPlain.
// kJson    One JSON object per line, for programs; "time" is the clock at the event:
//            {"event":"started","step":3,"name":"[build 2/5] RUN make","time":0.123}
//            {"event":"output","step":3,"line":"cc -c main.c","time":0.635}
//            {"event":"done","step":3,"seconds":1.2,"time":1.323}
//              ("cached", "canceled" alike; "failed" adds "error":"<error>")
//            {"event":"message","text":"…","time":0.2}
//            {"event":"build","success":true,"image":"sha256:…","manifest":"sha256:…",
//             "seconds":3.4,"time":3.4}        (a failed build has no "image" nor "manifest")
//          Times are rounded to milliseconds; bytes that are not UTF-8 become U+FFFD.
// kQuiet   Only warnings (kMessage text starting with "warning", in any case) and the errors of
//          failed steps ("ERROR: <step name>: <error>").
//
// Every sink made here is safe for concurrent use from several threads without external
// synchronisation: events are serialised, so no line is ever split by another. finish() may be
// called more than once (only the first call counts) and the destructor calls it; events after
// it are ignored. `out` must outlive the sink, and nothing else should write to it while the sink
// lives, or the tty view is corrupted.
#pragma once

#include <functional>
#include <iosfwd>
#include <memory>
#include <string_view>

#include "kiln/solver/progress.hpp"

namespace kiln::solver {

enum class ProgressMode { kTty, kPlain, kJson, kQuiet };

// The value of `--progress`: "auto" gives kTty when `is_terminal` (the build's stderr is a
// terminal) and kPlain otherwise; "tty", "plain", "json" and "quiet" give their modes. Throws
// kiln::Error naming the value for anything else.
ProgressMode parse_progress_mode(std::string_view text, bool is_terminal);

// A sink that renders events in `mode` to `out` (the build's stderr). `clock` returns the seconds
// since the build started; an empty one measures with std::chrono::steady_clock from this call.
// kTty starts its refresh thread here and stops it in finish(); `clock` is then called from that
// thread too.
std::unique_ptr<ProgressSink> make_progress_sink(ProgressMode mode, std::ostream& out,
                                                 std::function<double()> clock = {});

}  // namespace kiln::solver
