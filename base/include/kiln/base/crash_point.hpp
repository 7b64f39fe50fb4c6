// A test hook for crash-safety tests: with KILN_TEST_CRASH_AT=NAME in the environment, the
// process kills itself with SIGKILL the first time it reaches crash_point("NAME");
// KILN_TEST_CRASH_AT=NAME:N at the N-th time. Without the variable it costs one getenv per
// process. The points are named where they are placed (grep for crash_point).
#pragma once

namespace kiln {

void crash_point(const char* name);

}  // namespace kiln
