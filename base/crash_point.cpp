#include "kiln/base/crash_point.hpp"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>

namespace kiln {

void crash_point(const char* name) {
  static const char* spec = std::getenv("KILN_TEST_CRASH_AT");
  if (!spec || !*spec)
    return;
  static std::atomic<int> visits{0};
  std::string s(spec);
  size_t colon = s.find(':');
  std::string point = s.substr(0, colon);
  int nth = colon == std::string::npos ? 1 : std::atoi(s.c_str() + colon + 1);
  if (point == name && ++visits == nth)
    ::kill(::getpid(), SIGKILL);
}

}  // namespace kiln
