// What a build reports while it runs, as events; how they look (tty, plain, json) is the
// renderer's business (solver/progress_renderer.hpp).
//
// A step is one vertex of the build: a stage's FROM or one of its instructions. Steps get ids in
// the order the build learns of them (1, 2, ...), and their events arrive in this order:
// kStarted, at most one kExplain (why a step that missed the cache runs), any number of kOutput,
// then exactly one of kDone, kCached, kFailed or kCanceled.
// A step that is satisfied from the cache without running sends kStarted then kCached. Steps of
// independent stages interleave. kMessage (warnings, notices) and kBuildDone are not tied to a
// step. Sinks are called from several threads at once and must serialise themselves.
#pragma once

#include <cstddef>
#include <string>

namespace kiln::solver {

struct ProgressEvent {
  enum class Kind {
    kStarted,
    kExplain,
    kOutput,
    kDone,
    kCached,
    kFailed,
    kCanceled,
    kMessage,
    kBuildDone
  };
  Kind kind = Kind::kMessage;
  size_t step = 0;     // the step's id (0 for kMessage and kBuildDone)
  std::string name;    // kStarted: "[stage-name 2/5] RUN make" (BuildKit's vertex name)
  std::string text;    // kOutput: one line of the step's output, without the newline;
                       // kFailed: the error; kMessage: the message;
                       // kExplain: why it missed ("context file a.c changed");
                       // kBuildDone: the image ID (config digest), empty when the build failed
  std::string detail;  // kBuildDone: the manifest digest; kExplain: the cause ("file", ...)
  double seconds = 0;  // kDone/kCached/kFailed/kCanceled: the step's time;
                       // kBuildDone: the whole build's time
};

class ProgressSink {
 public:
  virtual ~ProgressSink() = default;
  virtual void event(const ProgressEvent& e) = 0;
  // Called once at the end (after kBuildDone, or after an error): draw the final state and stop
  // any refresh thread. Events after finish() are ignored.
  virtual void finish() = 0;
};

}  // namespace kiln::solver
